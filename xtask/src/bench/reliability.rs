//! `cargo xtask bench reliability`: deploys through a proxy that injects transient faults between
//! the tool and the local emulator (dropped connections, 503, throttling, delays), and deploys
//! killed (SIGKILL) at random points and run again; prints, per kind, the faults injected, the
//! outcomes, and whether each environment converged (a later plan is empty). Each run starts a
//! fresh emulator, so runs do not see each other's resources.

use std::path::Path;
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

use anyhow::ensure;
use clap::Args;
use vending_emulator::faults::{FaultProxy, Faults};

#[derive(Args)]
pub struct BenchReliability {
    /// Deploys through the fault-injecting proxy.
    #[arg(long, default_value_t = 10)]
    runs: u64,
    /// Deploys killed at a random point, each followed by a re-run.
    #[arg(long, default_value_t = 20)]
    kills: u64,
    /// Seeds the faults and the kill times (printed, so a run can be repeated).
    #[arg(long, default_value_t = 20261202)]
    seed: u64,
}

const DEPLOY: [&str; 5] = ["deploy", "globex", "dev", "--local", "--infra-only"];

impl BenchReliability {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let project = crate::bench::git_copy(root, "target/bench-reliability")?;
        let exe = std::env::current_exe()?;
        let xtask = |args: &[&str], endpoint: &str| -> anyhow::Result<Output> {
            Ok(Command::new(&exe).arg("--root").arg(&project).args(args).env("AWS_ENDPOINT_URL", endpoint).output()?)
        };
        let prepare = |moto: &vending_emulator::Moto| -> anyhow::Result<()> {
            for args in [&["platform", "deploy", "--local"][..], &["ami", "globex", "dev", "--local"]] {
                let out = xtask(args, &moto.endpoint())?;
                ensure!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        let converged = |moto: &vending_emulator::Moto| -> anyhow::Result<bool> {
            Ok(xtask(&["plan", "globex", "dev", "--local"], &moto.endpoint())?.status.code() == Some(0))
        };
        println!("seed {}: {} deploys through injected faults, {} killed deploys", self.seed, self.runs, self.kills);

        let mut totals = [0u64; 7];
        let (mut succeeded, mut converged_runs, mut seconds) = (0, 0, Vec::new());
        for run in 0..self.runs {
            let moto = vending_emulator::Moto::start(&crate::project_root())?;
            prepare(&moto)?;
            let faults = Faults {
                drop: 0.04,
                unavailable: 0.04,
                throttle: 0.06,
                delay: 0.05,
                delay_for: Duration::from_millis(300),
                deny: None,
            };
            let proxy = FaultProxy::start(moto.port, faults, self.seed + run)?;
            let started = Instant::now();
            let out = xtask(&DEPLOY, &proxy.endpoint())?;
            seconds.push(started.elapsed().as_secs_f64());
            succeeded += u64::from(out.status.success());
            converged_runs += u64::from(converged(&moto)?);
            for (total, (_, n)) in totals.iter_mut().zip(proxy.counts.snapshot()) {
                *total += n;
            }
        }
        let names = ["requests", "forwarded", "dropped", "503", "throttled", "delayed", "denied"];
        println!("| runs | succeeded | converged | requests | dropped | 503 | throttled | delayed 300 ms | retried | median time |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        seconds.sort_by(f64::total_cmp);
        let median = seconds.get(seconds.len() / 2).copied().unwrap_or_default();
        let get = |name: &str| totals[names.iter().position(|n| *n == name).unwrap_or(0)];
        println!(
            "| {} | {succeeded} | {converged_runs} | {} | {} | {} | {} | {} | {} | {median:.1} s |",
            self.runs,
            get("requests"),
            get("dropped"),
            get("503"),
            get("throttled"),
            get("delayed"),
            get("dropped") + get("503") + get("throttled"),
        );

        let mut random = self.seed.max(1);
        let (mut killed_running, mut repaired) = (0, 0);
        for kill in 0..self.kills {
            let moto = vending_emulator::Moto::start(&crate::project_root())?;
            prepare(&moto)?;
            let slow = Faults { delay: 1.0, delay_for: Duration::from_millis(20), ..Faults::default() };
            let proxy = FaultProxy::start(moto.port, slow, self.seed + kill)?;
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let after = Duration::from_millis(random % 2500);
            let mut child = Command::new(&exe)
                .arg("--root")
                .arg(&project)
                .args(DEPLOY)
                .env("AWS_ENDPOINT_URL", proxy.endpoint())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let started = Instant::now();
            while started.elapsed() < after && child.try_wait()?.is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            killed_running += u64::from(child.try_wait()?.is_none());
            let _ = child.kill();
            let _ = child.wait();
            let again = xtask(&DEPLOY, &moto.endpoint())?;
            repaired += u64::from(again.status.success() && converged(&moto)?);
        }
        println!("| killed deploys | killed while running | re-run converged (plan empty) |");
        println!("|---|---|---|");
        println!("| {} | {killed_running} | {repaired} |", self.kills);
        Ok(ExitCode::SUCCESS)
    }
}
