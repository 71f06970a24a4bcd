//! Without the `aws` feature (the build `cargo xtask` makes, so that `validate` never compiles
//! the AWS SDK), the other commands are handed to the `xtask-aws` binary, which cargo builds on
//! first use and runs in this process's place (exec): the same arguments, exit code and Ctrl-C.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Args;

/// Everything after the command name, `--help` included, for `xtask-aws` to parse.
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct Forward {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<OsString>,
}

/// Replaces this process with `cargo run --bin xtask-aws -- <the same arguments>`.
pub fn to_aws_binary() -> anyhow::Result<ExitCode> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = crate::project_root().join("Cargo.toml");
    let built =
        std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("xtask-aws"))).is_some_and(|p| p.exists());
    let mut command = Command::new(&cargo);
    command.arg("run");
    if built {
        // Cargo still rebuilds it when the code changed; only its "Running" lines are left out.
        command.arg("--quiet");
    } else {
        eprintln!("cargo xtask: building the AWS commands on first use (the AWS SDK takes a few minutes to compile; `validate` and `generate` do without it)");
    }
    command.arg("--manifest-path").arg(&manifest).args(["--package", "xtask", "--bin", "xtask-aws", "--"]);
    command.args(std::env::args_os().skip(1));
    let error = command.exec();
    Err(error).with_context(|| format!("cannot run {}", cargo.to_string_lossy()))
}
