//! `cargo xtask bench validate`: writes a synthetic fleet (N customers × M environments, made from
//! the sample customer globex), generates its files, then times `validate` on it in fresh
//! processes of this same binary and reads their peak memory. With `--with-packer` it also warms
//! the `packer validate` cache, changes one customer, and times the validate a pull request pays.

mod build;
mod demo;
mod deploy;
mod fleet;
mod reliability;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::{Args, Subcommand};

use crate::generated::{self, Mode};
use crate::validate::{load_fleet, Selection};

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct Bench {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// Time `validate` on a synthetic fleet.
    Validate(BenchValidate),
    /// `demo`: the first run, reruns that change nothing, and `--clean`.
    Demo(demo::BenchDemo),
    /// The `ami` command's overhead over a bare `packer build`, against the local emulator.
    Ami(BenchAmi),
    /// A no-op `deploy` against the local emulator beside the same reads with the AWS CLI.
    Deploy(deploy::BenchDeploy),
    /// `build` beside the same shell commands run directly, and bundling a 100 MiB tree.
    Build(build::BenchBuild),
    /// Deploys through injected faults, and deploys killed at random points and run again.
    Reliability(reliability::BenchReliability),
    /// `plan --all` over a synthetic fleet on the emulator, one at a time beside `--parallel N`.
    Fleet(fleet::BenchFleet),
}

#[derive(Args)]
struct BenchAmi {
    /// Builds of each kind, alternating.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[derive(Args)]
struct BenchValidate {
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    #[arg(long, default_value_t = 2)]
    envs: usize,
    /// Timed runs of `validate --no-packer`.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also time `validate` with packer after one customer changed (warms the cache first).
    #[arg(long)]
    with_packer: bool,
    /// Where the synthetic fleet is written (replaced).
    #[arg(long, default_value = "target/bench-fleet")]
    out: PathBuf,
    /// The program whose `validate` is timed (default: this one). `target/debug/xtask` after any
    /// `cargo xtask` command is what `cargo xtask validate` runs (the dev profile, no SDK).
    #[arg(long, value_name = "PATH")]
    exe: Option<PathBuf>,
    /// Also time `packer validate -syntax-only` on one generated template (this many runs), the
    /// yardstick of the pull-request check's cost.
    #[arg(long, value_name = "RUNS", default_value_t = 0)]
    packer_runs: usize,
}

impl Bench {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        match self.which {
            Which::Validate(b) => b.run(root),
            Which::Ami(b) => b.run(root),
            Which::Deploy(b) => b.run(root),
            Which::Build(b) => b.run(root),
            Which::Reliability(b) => b.run(root),
            Which::Fleet(b) => b.run(root),
            Which::Demo(b) => b.run(root),
        }
    }
}

struct Measure {
    elapsed_ms: f64,
    peak_rss_kib: u64,
    code: i32,
}

impl BenchValidate {
    fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        ensure!(self.customers > 0 && (1..=20).contains(&self.envs), "--customers must be ≥ 1 and --envs 1 to 20");
        let out = if self.out.is_absolute() { self.out.clone() } else { root.join(&self.out) };
        let started = Instant::now();
        write_fleet(root, &out, self.customers, self.envs)?;
        let loaded = load_fleet(&out, &Selection::default())?;
        ensure!(!loaded.has_errors(), "the synthetic fleet does not validate: {:?}", loaded.diagnostics.first());
        generated::sync(&out, &loaded.files, None, Mode::Write)?;
        println!(
            "fleet: {} customers × {} environments = {} environments, {} generated files, written in {:.1} s ({})",
            self.customers,
            self.envs,
            self.customers * self.envs,
            loaded.files.len(),
            started.elapsed().as_secs_f64(),
            out.display()
        );
        drop(loaded);

        let exe = match &self.exe {
            Some(exe) => std::path::absolute(exe)?,
            None => std::env::current_exe().context("cannot find this program")?,
        };
        let mut runs = Vec::new();
        for _ in 0..self.runs {
            runs.push(measure(&exe, &out, &["validate", "--no-packer", "--format", "json"])?);
        }
        report(&format!("validate --no-packer ({})", exe.display()), &runs);
        if self.packer_runs > 0 {
            let packer = packer_syntax_only(&out, self.packer_runs)?;
            let mut times: Vec<f64> = runs.iter().map(|m| m.elapsed_ms).collect();
            times.sort_by(f64::total_cmp);
            let validate = times.get(times.len() / 2).copied().unwrap_or(0.0);
            println!(
                "packer validate -syntax-only, one template: median {packer:.0} ms over {} run(s); the fleet's validate costs {:.1} such runs",
                self.packer_runs,
                validate / packer
            );
        }

        if self.with_packer {
            let warm = measure(&exe, &out, &["validate", "--require-packer", "--format", "json"])?;
            println!("validate with packer, cold cache (every template): {:.1} s", warm.elapsed_ms / 1000.0);
            let customer = out.join("customers/c00001/customer.toml");
            let text = fs::read_to_string(&customer)?;
            fs::write(&customer, text.replacen("display_name = \"Customer 1\"", "display_name = \"Customer One\"", 1))?;
            let loaded = load_fleet(&out, &Selection::default())?;
            generated::sync(&out, &loaded.files, None, Mode::Write)?;
            let one_changed = measure(&exe, &out, &["validate", "--require-packer", "--format", "json"])?;
            report(
                &format!("validate with packer, warm cache, 1 customer ({} templates) changed", self.envs),
                &[one_changed],
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The median time of `packer validate -syntax-only` on the first customer's first template.
fn packer_syntax_only(fleet: &Path, runs: usize) -> anyhow::Result<f64> {
    let template = vending::render::packer_path("c00001", "dev");
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new("packer")
            .args(["validate", "-syntax-only"])
            .arg(&template)
            .current_dir(fleet)
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run packer")?;
        ensure!(status.success(), "packer validate -syntax-only failed on {}", template.display());
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn measure(exe: &Path, root: &Path, args: &[&str]) -> anyhow::Result<Measure> {
    let started = Instant::now();
    let output = Command::new(exe).arg("--root").arg(root).args(args).arg("--report-resources").output()?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let resources: serde_json::Value = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("validate printed no resource report: {stderr}"))?;
    let code = output.status.code().unwrap_or(-1);
    ensure!(
        code == 0,
        "validate failed on the synthetic fleet (exit {code}): {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(Measure { elapsed_ms, peak_rss_kib: resources["peak_rss_kib"].as_u64().unwrap_or(0), code })
}

fn report(what: &str, runs: &[Measure]) {
    let mut times: Vec<f64> = runs.iter().map(|m| m.elapsed_ms).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let peak = runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0);
    println!(
        "{what}: median {median:.0} ms, min {:.0} ms, max {:.0} ms over {} run(s) (process start to exit); peak memory {:.1} MiB; exit {}",
        times[0],
        times[times.len() - 1],
        runs.len(),
        peak as f64 / 1024.0,
        runs[0].code
    );
}

/// Writes customers/ for the synthetic fleet: the sample platform, and N copies of globex with
/// their own names and hosts.
pub fn write_fleet(root: &Path, out: &Path, customers: usize, envs: usize) -> anyhow::Result<()> {
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    let customers_dir = out.join("customers");
    fs::create_dir_all(&customers_dir)?;
    fs::copy(root.join("customers/platform.toml"), customers_dir.join("platform.toml"))
        .context("cannot copy the sample platform.toml")?;
    let template = fs::read_to_string(root.join("customers/globex/customer.toml"))
        .context("cannot read the sample customer globex")?;
    let env_names: Vec<String> =
        ["dev", "prod"].iter().map(|s| s.to_string()).chain((2..envs).map(|i| format!("env{i}"))).take(envs).collect();
    for i in 1..=customers {
        let name = format!("c{i:05}");
        let dir = customers_dir.join(&name);
        fs::create_dir_all(&dir)?;
        let customer =
            template.replacen("display_name = \"Globex Corporation\"", &format!("display_name = \"Customer {i}\""), 1);
        fs::write(dir.join("customer.toml"), customer)?;
        for env in &env_names {
            let production = env == "prod";
            let text = format!(
                "production = {production}\nhosts = [\"{name}-{env}.apps.example.com\"]\n\n[capacity]\nmin = {min}\nmax = 4\n\n[build]\nvariables = {{ SITE_ENV = \"{env}\" }}\n",
                min = if production { 2 } else { 1 }
            );
            fs::write(dir.join(format!("{env}.toml")), text)?;
        }
    }
    Ok(())
}

impl BenchAmi {
    /// Builds `acme prod` alternately with a bare `packer build` (the same template, variables and
    /// build) and with `xtask ami`, against one emulator, in a git copy of the project.
    fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        ensure!(self.runs > 0, "--runs must be at least 1");
        let packer = crate::packer::find(root).context(crate::packer::NOT_INSTALLED)?;
        let moto = vending_emulator::Moto::start(&crate::project_root())?;
        let endpoint = moto.endpoint();
        let project = git_copy(root, "target/bench-ami")?;
        let sh = xshell::Shell::new()?;
        let exe = std::env::current_exe()?;
        // The copy's `ami` finds the same Packer (the demo may have unpacked it into this workspace).
        let search = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            packer.parent().map(Path::to_path_buf).into_iter().chain(std::env::split_paths(&search)),
        )?;
        let template = project.join("packer/packer-acme-prod.pkr.hcl");
        let commit = crate::git::head_commit(&project)?;
        let mut variables = vending::ami::packer_variables(&commit, false);
        variables.push(("ec2_endpoint".into(), endpoint.clone()));
        variables.push(("source_ami_name".into(), "al2023-ami-2023.12.20260930.0-kernel-6.1-x86_64".into()));
        // The bare build writes its manifest where it runs: outside the tracked tree.
        let bare_dir = project.join("target/bare");
        fs::create_dir_all(&bare_dir)?;
        sh.change_dir(&bare_dir);

        // One unmeasured build of each warms the emulator's EC2 module and the disk cache.
        let (mut bare, mut cold, mut commits, mut tool) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..=self.runs {
            // AMI names carry the time to the second; two builds in one second would collide.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let started = Instant::now();
            let vars = crate::packer::var_args(&variables);
            let out = xshell::cmd!(sh, "{packer} build -color=false -only=amazon-ebs.local {vars...} {template}")
                .env("CHECKPOINT_DISABLE", "1")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .quiet()
                .ignore_stdout()
                .output()?;
            let bare_ms = started.elapsed().as_secs_f64() * 1000.0;
            ensure!(out.status.success(), "bare packer build failed: {}", String::from_utf8_lossy(&out.stderr));
            // Wall-clock time of the command, and of that the time Packer's processes took (as the
            // command reports them): the rest is the command's own work.
            let tool_run = || -> anyhow::Result<(f64, f64)> {
                std::thread::sleep(std::time::Duration::from_millis(1100));
                let started = Instant::now();
                let out = Command::new(&exe)
                    .arg("--root")
                    .arg(&project)
                    .args(["ami", "acme", "prod", "--local"])
                    .env("AWS_ENDPOINT_URL", &endpoint)
                    .env("PATH", &path)
                    .output()?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                ensure!(out.status.success(), "xtask ami failed: {}", String::from_utf8_lossy(&out.stderr));
                let stdout = String::from_utf8_lossy(&out.stdout);
                let packer_ms = reported_ms(&stdout, "packer validate: passed in ").unwrap_or(0.0)
                    + reported_ms(&stdout, "packer build: finished in ").context("no build time in the output")?;
                Ok((ms, ms - packer_ms))
            };
            // The first build of a template: `packer validate` runs (no remembered result).
            let cache = project.join(crate::packer::CACHE_DIR);
            if cache.exists() {
                fs::remove_dir_all(&cache)?;
            }
            let cold_ms = tool_run()?;
            // A new commit, the template unchanged: the usual build.
            let message = format!("bench round {i}");
            xshell::cmd!(sh, "git -C {project} -c user.name=bench -c user.email=bench@example.com commit -q --allow-empty -m {message}")
                .quiet()
                .run()?;
            let commit_ms = tool_run()?;
            // The same commit again (a retry).
            let tool_ms = tool_run()?;
            if i > 0 {
                bare.push(bare_ms);
                cold.push(cold_ms);
                commits.push(commit_ms);
                tool.push(tool_ms);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let bare_median = median(&mut bare);
        let own_medians: Vec<f64> = [&mut cold, &mut commits, &mut tool]
            .into_iter()
            .map(|runs| median(&mut runs.iter().map(|(_, own)| *own).collect()))
            .collect();
        let mut cold: Vec<f64> = cold.into_iter().map(|(ms, _)| ms).collect();
        let mut commits: Vec<f64> = commits.into_iter().map(|(ms, _)| ms).collect();
        let mut tool: Vec<f64> = tool.into_iter().map(|(ms, _)| ms).collect();
        let target = (bare_median * 0.1).max(300.0);
        println!(
            "bare `packer build` (acme prod, local emulator): median {bare_median:.0} ms over {} runs",
            bare.len()
        );
        for ((what, runs), own) in [
            ("a template's first build (packer validate runs)", &mut cold),
            ("a new commit, same template (validation remembered)", &mut commits),
            ("the same commit again (validation remembered)", &mut tool),
        ]
        .into_iter()
        .zip(own_medians)
        {
            let tool_median = median(runs);
            let overhead = tool_median - bare_median;
            println!(
                "`xtask ami acme prod --local`, {what}: median {tool_median:.0} ms over {} runs; overhead {overhead:.0} ms ({:.1} %); target under {target:.0} ms; the command's own work (its time minus Packer's processes) {own:.0} ms",
                runs.len(),
                overhead / bare_median * 100.0,
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A committed copy of the project's config and generated files under `dir` (replaced), for
/// commands that build from a clean tree.
/// Makes `project` a git repository with everything in one commit (as `ami` needs).
pub fn commit_all(project: &Path) -> anyhow::Result<()> {
    fs::write(project.join(".gitignore"), "target/\n")?;
    let sh = xshell::Shell::new()?;
    sh.change_dir(project);
    xshell::cmd!(sh, "git init -q -b main").quiet().run()?;
    xshell::cmd!(sh, "git add -A").quiet().run()?;
    xshell::cmd!(sh, "git -c user.name=bench -c user.email=bench@example.com commit -q -m bench").quiet().run()?;
    Ok(())
}

pub fn git_copy(root: &Path, dir: &str) -> anyhow::Result<PathBuf> {
    let project = root.join(dir);
    if project.exists() {
        fs::remove_dir_all(&project)?;
    }
    for folder in ["customers", "packer", "buildspecs", "appspecs", "schema", "apps"] {
        copy_tree(&root.join(folder), &project.join(folder))?;
    }
    commit_all(&project)?;
    Ok(project)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The milliseconds a line starting with `label` reports (`254 ms` or `12.3 s`).
fn reported_ms(output: &str, label: &str) -> Option<f64> {
    let text = output.lines().find_map(|line| line.split_once(label).map(|(_, rest)| rest.trim()))?;
    let (number, unit) = text.split_once(' ')?;
    let value: f64 = number.parse().ok()?;
    match unit {
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        _ => None,
    }
}
