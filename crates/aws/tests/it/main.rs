//! The AWS layer against the local emulator (moto's server), with the real SDK. Each test starts
//! its own server, so tests never share state.

mod approval;
mod calls;
mod codebuild;
mod emulator;
mod faults;
mod infra;
mod release;

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}
