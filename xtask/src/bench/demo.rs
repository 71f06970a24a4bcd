//! `cargo xtask bench demo`: times `cargo xtask demo` on a committed copy of the project: the
//! first run (a fresh emulator: platform, AMIs, the approval, two deployments), then reruns that
//! change nothing, then `--clean`. The tools are installed before the clock starts (the first
//! run on a fresh machine adds the emulator's install, about a minute, and the first build).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args;

#[derive(Args)]
pub struct BenchDemo {
    /// Reruns after the first run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl BenchDemo {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        ensure!(self.runs > 0, "--runs must be at least 1");
        let project = super::git_copy(root, "target/bench-demo")?;
        let exe = std::env::current_exe().context("cannot find this program")?;
        // The copy's demo finds the Packer this workspace has (the system's, or the one the demo
        // unpacked here), so that no run times an unpacking.
        let search = std::env::var_os("PATH").unwrap_or_default();
        let packer_dir = crate::packer::find(root).and_then(|p| p.parent().map(Path::to_path_buf));
        let path = std::env::join_paths(packer_dir.into_iter().chain(std::env::split_paths(&search)))?;
        let demo = |args: &[&str]| -> anyhow::Result<(f64, String)> {
            let started = Instant::now();
            let out = Command::new(&exe)
                .arg("--root")
                .arg(&project)
                .arg("demo")
                .args(args)
                .env_remove("AWS_ENDPOINT_URL")
                .env("PATH", &path)
                .stderr(Stdio::inherit())
                .output()?;
            let seconds = started.elapsed().as_secs_f64();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            ensure!(out.status.success(), "demo {args:?} failed:\n{stdout}");
            Ok((seconds, stdout))
        };
        // Whatever an earlier bench left running goes first.
        demo(&["--clean"])?;
        let (first, out) = demo(&[])?;
        ensure!(out.contains("AMI(s) built"), "the first run built nothing:\n{out}");
        let mut again = Vec::new();
        for _ in 0..self.runs {
            let (seconds, out) = demo(&[])?;
            ensure!(out.contains("nothing changed: "), "a rerun changed something:\n{out}");
            again.push(seconds);
        }
        let (clean, _) = demo(&["--clean"])?;
        again.sort_by(f64::total_cmp);
        println!("demo, first run (fresh emulator, 2 AMIs, approval, 2 deployments): {first:.2} s");
        println!(
            "demo, rerun that changes nothing: median {:.2} s (min {:.2}, max {:.2}, {} runs)",
            again[again.len() / 2],
            again[0],
            again[again.len() - 1],
            again.len()
        );
        println!("demo --clean: {clean:.2} s");
        Ok(ExitCode::SUCCESS)
    }
}
