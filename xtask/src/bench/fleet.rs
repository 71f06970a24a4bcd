//! `cargo xtask bench fleet`: `plan --all` with nothing to change over a synthetic fleet on the
//! local emulator, one environment at a time beside `--parallel N`, in one run. Setup: the
//! synthetic fleet of `bench validate` (copies of globex), generated and committed, the platform
//! deployed, every AMI built (`ami --all`), every environment deployed (`deploy --all
//! --infra-only`; the `prod` environments are made non-production, so nobody approves). Prints the wall time of each, and the CPU time of the command's own processes
//! (the fleet run and its environments' processes, not the emulator) per environment. The
//! emulator answers on loopback in about a millisecond and spends a CPU of its own on each
//! answer, so on a 2-core machine it is what a parallel run waits for; the second pair of runs
//! goes through a proxy that holds each request `--latency-ms`, AWS's round trip.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use vending_emulator::faults::{FaultProxy, Faults};

use crate::generated::{self, Mode};
use crate::validate::{load_fleet, Selection};

#[derive(Args)]
pub struct BenchFleet {
    /// Customers (each with a dev and a prod environment).
    #[arg(long, default_value_t = 26)]
    customers: usize,
    /// The `--parallel` compared with one at a time.
    #[arg(long, default_value_t = 8)]
    parallel: u16,
    /// Also time both through a loopback proxy that holds every request this long: AWS's
    /// round trip, which the emulator on loopback does not have (0: not at all).
    #[arg(long, default_value_t = 40)]
    latency_ms: u64,
}

/// CPU seconds (user and system) of this process's waited-for descendants so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage(2) fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

impl BenchFleet {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let out = root.join("target/bench-fleet-plan");
        crate::bench::write_fleet(root, &out, self.customers, 2)?;
        // Not production: a production environment's deploy would wait for a second person.
        for i in 1..=self.customers {
            let path = out.join(format!("customers/c{i:05}/prod.toml"));
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(&path, text.replace("production = true", "production = false"))?;
        }
        let loaded = load_fleet(&out, &Selection::default())?;
        ensure!(!loaded.has_errors(), "the synthetic fleet does not validate: {:?}", loaded.diagnostics.first());
        generated::sync(&out, &loaded.files, None, Mode::Write)?;
        crate::bench::commit_all(&out)?;
        let envs = self.customers * 2;
        let moto = vending_emulator::Moto::start(&crate::project_root())?;
        let exe = std::env::current_exe().context("cannot find this program")?;
        let xtask_at = |endpoint: &str, args: &[&str]| -> anyhow::Result<(i32, f64, f64)> {
            let (cpu, started) = (children_cpu(), Instant::now());
            let output = Command::new(&exe)
                .arg("--root")
                .arg(&out)
                .args(args)
                .env("AWS_ENDPOINT_URL", endpoint)
                .output()
                .with_context(|| format!("cannot run {args:?}"))?;
            let code = output.status.code().unwrap_or(-1);
            ensure!(
                code == 0 || code == 2,
                "{args:?} exited {code}: {}",
                String::from_utf8_lossy(&output.stderr).lines().rev().take(5).collect::<Vec<_>>().join("\n")
            );
            Ok((code, started.elapsed().as_secs_f64(), children_cpu() - cpu))
        };
        let xtask = |args: &[&str]| xtask_at(&moto.endpoint(), args);
        println!("fleet: {} customers × 2 environments = {envs} environments ({})", self.customers, out.display());
        for args in [
            &["platform", "deploy", "--local"][..],
            &["ami", "--all", "--local", "--parallel", "4"],
            &["deploy", "--all", "--local", "--infra-only", "--parallel", "4", "--keep-going"],
        ] {
            let (_, took, _) = xtask(args)?;
            println!("setup: {} in {took:.1} s", args.join(" "));
        }
        let sequential = ["plan", "--all", "--local", "--parallel", "1"];
        let parallel = self.parallel.to_string();
        let parallel = ["plan", "--all", "--local", "--parallel", parallel.as_str()];
        println!("| `plan --all`, {envs} environments, no changes | wall time | CPU of the command per environment |");
        println!("|---|---|---|");
        let compare = |endpoint: &str, label: &str| -> anyhow::Result<()> {
            let (code_one, one, cpu_one) = xtask_at(endpoint, &sequential)?;
            let (code_many, many, cpu_many) = xtask_at(endpoint, &parallel)?;
            ensure!(code_one == 0 && code_many == 0, "the fleet has changes left after its deploy");
            let per_env = |cpu: f64| cpu / envs as f64 * 1000.0;
            println!("| {label}`--parallel 1` | {one:.1} s | {:.0} ms |", per_env(cpu_one));
            println!(
                "| {label}`--parallel {}` | {many:.1} s ({:.1}× faster) | {:.0} ms |",
                self.parallel,
                one / many,
                per_env(cpu_many)
            );
            Ok(())
        };
        compare(&moto.endpoint(), "")?;
        if self.latency_ms > 0 {
            let faults = Faults {
                drop: 0.0,
                unavailable: 0.0,
                throttle: 0.0,
                delay: 1.0,
                delay_for: Duration::from_millis(self.latency_ms),
                deny: None,
            };
            let proxy = FaultProxy::start(moto.port, faults, 1)?;
            compare(&proxy.endpoint(), &format!("{} ms a call: ", self.latency_ms))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
