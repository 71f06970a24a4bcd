//! `cargo xtask demo`: the whole product on the embedded local AWS, in one command. It sets up
//! what it needs (the emulator, Packer), then runs the commands a user would, each as its own
//! process and shown as `$ cargo xtask …`: the platform, `validate`, the AMIs, `acme prod`
//! (its production approval requested by one demo person and granted by another) and `globex
//! dev`. It ends with what runs where, and a `curl` line through the local front door that it
//! has tried itself. Run again, it changes nothing and says so, from the AWS calls its commands
//! made (`VENDING_CALL_LOG`: reads only). `--clean` removes what it made.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::front_door;

#[derive(Args)]
pub struct Demo {
    /// Remove what the demo made instead: stop the emulator and the front door, delete the local
    /// fleet and the AMI builds' folders (the installed emulator and Packer stay).
    #[arg(long)]
    clean: bool,
    /// Print the summary as JSON on stdout (everything else goes to stderr): per environment the
    /// AMI, hosts, load balancer, instances, the front door's URL and its answer; and whether the
    /// run changed anything.
    #[arg(long)]
    json: bool,
}

/// One environment as the summary shows it.
#[derive(Debug, Serialize)]
struct Summary {
    environment: String,
    ami: Option<String>,
    ami_commit: Option<String>,
    hosts: Vec<String>,
    load_balancer: String,
    instances: Vec<Instance>,
    /// The front door's URL for the HTTPS listener (send the Host header), and its answer.
    url: Option<String>,
    redirect_url: Option<String>,
    status: Option<u16>,
}

#[derive(Debug, Serialize)]
struct Instance {
    id: String,
    revision_sha256: String,
    local_port: u16,
}

/// The environments the demo deploys (acme prod needs its production approval).
const ENVIRONMENTS: [(&str, &str); 2] = [("acme", "prod"), ("globex", "dev")];
const REQUESTER: &str = "demo-requester";
const APPROVER: &str = "demo-approver";
const STEPS: usize = 7;

/// One of the demo's two people (kept for the emulator run, so a second demo makes no new keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Person {
    arn: String,
    access_key_id: String,
    secret_access_key: String,
}

struct Run<'a> {
    root: &'a Path,
    exe: PathBuf,
    endpoint: String,
    calls: PathBuf,
    started: Instant,
    step: usize,
}

impl Demo {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        if self.clean {
            return clean(root);
        }
        // With --json everything the demo and its commands say goes to stderr; stdout keeps
        // the summary alone.
        let json_out = if self.json { Some(stdout_to_stderr()?) } else { None };
        let started = Instant::now();
        if !root.join(".git").exists() {
            bail!("{} is not a git checkout: the demo builds AMIs and apps from commits; run it in a clone of the project", root.display());
        }
        let changes = crate::git::changes(root)?;
        if !changes.is_empty() {
            eprintln!(
                "demo | warning: {} uncommitted change(s): AMIs and apps are built from the last commit, and `ami` refuses a dirty tree; commit first (git add -A && git commit)",
                changes.len()
            );
        }
        println!("demo | [1/{STEPS}] tools: the local AWS emulator (moto, under target/) and Packer");
        let packer = ensure_packer(root)?;
        println!("demo |   packer: {}", packer.display());
        let (state, _) = crate::local::up(root)?;
        let demo_dir = root.join(crate::local::DEMO_STATE);
        std::fs::create_dir_all(&demo_dir).with_context(|| format!("cannot create {}", demo_dir.display()))?;
        let calls = demo_dir.join("calls.log");
        let _ = std::fs::remove_file(&calls);
        let mut run = Run {
            root,
            exe: std::env::current_exe().context("cannot find this program")?,
            endpoint: state.endpoint.clone(),
            calls,
            started,
            step: 1,
        };
        let requester = person(root, &state.endpoint, REQUESTER)?;
        let approver = person(root, &state.endpoint, APPROVER)?;
        println!("demo |   two people in the emulator: {} asks, {} approves", requester.arn, approver.arn);

        put_secrets(root, &state.endpoint)?;

        run.next("the platform: state bucket, shared load balancer, CodeDeploy role");
        run.xtask(&["platform", "deploy", "--local"], &requester, &[0])?;
        run.next("the pull-request check of every customer and generated file");
        run.xtask(&["validate"], &requester, &[0])?;

        run.next("AMIs with Packer, against the emulator (one per environment, kept while the commit is the same)");
        let head = crate::git::head_commit(root)?.id;
        let mut built = 0;
        for (customer, env) in ENVIRONMENTS {
            match ami_of(&run, customer, env, &requester)? {
                // `status` shows the commit shortened.
                Some((id, commit)) if commit.len() >= 7 && head.starts_with(&commit) => {
                    println!("demo |   {customer}/{env}: AMI {id} was built from this commit: kept")
                }
                _ => {
                    run.xtask(&["ami", customer, env, "--local"], &requester, &[0])?;
                    built += 1;
                }
            }
        }

        run.next("acme prod: production asks for a second person's approval before any change");
        let asked = run.xtask(&["deploy", "acme", "prod", "--local", "--no-wait"], &requester, &[0, 3])?;
        if asked.code == 3 {
            let id = request_id(&asked.stdout).context("the deploy is pending, but its request id was not printed")?;
            println!("demo |   {REQUESTER} asked (request {id}); {APPROVER} reads the plan and approves:");
            run.xtask(&["approve", "acme", "prod", &id, "--local", "--yes"], &approver, &[0])?;
            println!("demo |   approved by another person: {REQUESTER} goes on with exactly the approved plan");
            run.xtask(&["deploy", "acme", "prod", "--local", "--approval", &id], &requester, &[0])?;
        } else {
            println!("demo |   nothing to change in acme/prod: nobody was asked");
        }

        run.next("globex dev: a host rule on the shared load balancer, no approval");
        run.xtask(&["deploy", "globex", "dev", "--local"], &requester, &[0])?;

        run.next("what runs where");
        let mut summaries = Vec::new();
        for (customer, env) in ENVIRONMENTS {
            summaries.push(summary(&run, customer, env, &requester)?);
        }
        let all_answer = summaries.iter().all(|s| s.status == Some(200));

        let log = std::fs::read_to_string(&run.calls).unwrap_or_default();
        let total = log.lines().count();
        let mut mutating: Vec<&str> = log.lines().filter(|c| !vending_aws::calls::is_read(c)).collect();
        mutating.sort_unstable();
        mutating.dedup();
        let elapsed = started.elapsed().as_secs_f64();
        if mutating.is_empty() && built == 0 {
            println!(
                "demo | done in {elapsed:.1} s; nothing changed: {total} AWS call(s), all of them reads; no AMI built, nothing deployed"
            );
        } else {
            println!(
                "demo | done in {elapsed:.1} s: {built} AMI(s) built; {} kind(s) of change in AWS ({}); run it again: it changes nothing",
                mutating.len(),
                mutating.iter().take(6).copied().collect::<Vec<_>>().join(", ")
                    + if mutating.len() > 6 { ", …" } else { "" }
            );
        }
        println!("demo | `cargo xtask status --local` shows the fleet; `cargo xtask demo --clean` removes it all");
        if let Some(mut out) = json_out {
            use std::io::Write;
            let value = serde_json::json!({
                "environments": summaries,
                "changed": !(mutating.is_empty() && built == 0),
                "amis_built": built,
                "aws_calls": total,
                "mutating_calls": mutating,
                "seconds": elapsed,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?).context("cannot write the summary")?;
        }
        Ok(if all_answer { ExitCode::SUCCESS } else { ExitCode::from(crate::output::EXIT_CANNOT_RUN) })
    }
}

/// What a command printed, and how it ended.
struct Done {
    code: i32,
    stdout: String,
}

impl Run<'_> {
    fn next(&mut self, what: &str) {
        self.step += 1;
        println!("demo | [{}/{STEPS}] {what} (at {:.1} s)", self.step, self.started.elapsed().as_secs_f64());
    }

    /// `cargo xtask ARGS` as `who`, on the demo's emulator, its AWS calls in the demo's log.
    fn command(&self, args: &[&str], who: &Person) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .arg("--root")
            .arg(self.root)
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &who.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &who.secret_access_key)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("VENDING_CALL_LOG", &self.calls);
        command
    }

    /// Runs `cargo xtask ARGS` as `who`, its output shown as it comes; fails unless it ends with
    /// one of `expected`.
    fn xtask(&self, args: &[&str], who: &Person, expected: &[i32]) -> anyhow::Result<Done> {
        println!("demo | $ cargo xtask {}", args.join(" "));
        let mut child = self
            .command(args, who)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run cargo xtask {}", args.join(" ")))?;
        let mut stdout = String::new();
        let step = format!("[{}/{STEPS}] cargo xtask {}", self.step, args.join(" "));
        let progress = vending_release::progress::Progress::start("demo", &step);
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line.with_context(|| format!("cannot read the output of cargo xtask {}", args.join(" ")))?;
                progress.println(&format!("  {line}"));
                stdout.push_str(&line);
                stdout.push('\n');
            }
        }
        let status = child.wait().with_context(|| format!("cannot wait for cargo xtask {}", args.join(" ")))?;
        drop(progress);
        let code = status.code().unwrap_or(-1);
        if !expected.contains(&code) {
            bail!(
                "`cargo xtask {}` ended with exit code {code} (its output is above): the demo stops here",
                args.join(" ")
            );
        }
        Ok(Done { code, stdout })
    }
}

/// The demo's person `name`: made in the emulator once per emulator run.
fn person(root: &Path, endpoint: &str, name: &str) -> anyhow::Result<Person> {
    let path = root.join(crate::local::DEMO_STATE).join(format!("{name}.json"));
    if let Some(person) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        return Ok(person);
    }
    let identity = vending_emulator::create_identity(&crate::project_root(), endpoint, name)?;
    let person = Person {
        arn: identity.arn,
        access_key_id: identity.access_key_id,
        secret_access_key: identity.secret_access_key,
    };
    let folder = root.join(crate::local::DEMO_STATE);
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    vending::project::write_atomic(&path, &serde_json::to_vec(&person)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(person)
}

/// The sample customers' builds read secrets from Parameter Store: on the emulator the demo puts
/// a placeholder where none is (never a real secret; the builds mask it like any other).
fn put_secrets(root: &Path, endpoint: &str) -> anyhow::Result<()> {
    let fleet = match crate::infra::fleet(root, None, None)? {
        Ok(fleet) => fleet,
        Err(_) => bail!("the config has errors (above): fix them, then run the demo again"),
    };
    let runtime = vending_aws::runtime()?;
    let target = vending_aws::Target::Local { endpoint: endpoint.to_string() };
    let config = runtime.block_on(vending_aws::sdk_config(&fleet.platform.region, &target));
    for (customer, env) in ENVIRONMENTS {
        let (_, environment) =
            fleet.environment(customer, env).with_context(|| format!("{customer}/{env} is not in customers/"))?;
        for (variable, name) in &environment.build.parameter_store {
            let value = format!("demo-placeholder-for-{variable}");
            if runtime.block_on(vending_aws::secrets::put_parameter_if_absent(&config, name, &value))? {
                println!(
                    "demo |   {customer}/{env}'s {variable}: a placeholder SecureString at {name} in the emulator"
                );
            }
        }
    }
    Ok(())
}

/// The system's Packer; else Debian's package unpacked into the project's target/ (no system
/// install); else one instruction.
fn ensure_packer(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(found) = crate::packer::find(root) {
        return Ok(found);
    }
    let sh = Shell::new()?;
    if which::which("apt-get").is_err() || which::which("dpkg-deb").is_err() {
        bail!(
            "Packer is needed for the AMIs: install it (Debian and Ubuntu: `sudo apt-get install packer`; elsewhere see https://developer.hashicorp.com/packer/install), then run `cargo xtask demo` again"
        );
    }
    let download = root.join("target/packer-download");
    // Only what this download brings: no older package left from before.
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).with_context(|| format!("cannot create {}", download.display()))?;
    println!(
        "demo |   no packer on PATH: Debian's package, unpacked into target/packer (nothing installed on the system)"
    );
    sh.change_dir(&download);
    cmd!(sh, "apt-get download packer").quiet().run().context(
        "`apt-get download packer` failed: refresh the package lists (`sudo apt-get update`) or install it (`sudo apt-get install packer`)",
    )?;
    let deb = std::fs::read_dir(&download)
        .with_context(|| format!("cannot read {}", download.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let into = root.join("target/packer");
    cmd!(sh, "dpkg-deb -x {deb} {into}").quiet().run().context("cannot unpack the packer package")?;
    crate::packer::find(root).context("the packer package held no usr/bin/packer")
}

fn request_id(stdout: &str) -> Option<String> {
    let line = stdout.lines().find(|l| l.contains("waits for a decision"))?;
    Some(line.split("request ").nth(1)?.split_whitespace().next()?.to_string())
}

/// The environment's row of `status --json`.
fn status_row(run: &Run, customer: &str, env: &str, who: &Person) -> anyhow::Result<serde_json::Value> {
    let out = run
        .command(&["status", customer, env, "--local", "--json"], who)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run `cargo xtask status {customer} {env} --local --json`"))?;
    let mut rows: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`cargo xtask status {customer} {env} --local --json` printed no JSON (exit {:?}; its errors are above)",
            out.status.code()
        )
    })?;
    Ok(rows[0].take())
}

/// The environment's AMI id and commit.
fn ami_of(run: &Run, customer: &str, env: &str, who: &Person) -> anyhow::Result<Option<(String, String)>> {
    let row = status_row(run, customer, env, who)?;
    let ami = &row["ami"];
    Ok(ami["id"].as_str().zip(ami["commit"].as_str()).map(|(id, commit)| (id.to_string(), commit.to_string())))
}

/// The front door's loopback port for `load_balancer:port`: it binds a new load balancer within
/// a second of its creation, so a just-deployed one gets a few seconds.
fn door_port(root: &Path, load_balancer: &str, port: u16) -> anyhow::Result<Option<u16>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = front_door::State::read(root)
            .context("the local front door is not running: `cargo xtask local up` starts it")?;
        let found = state.port_of(load_balancer, port);
        if found.is_some() || Instant::now() > deadline {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints one environment: AMI, hosts, the revision on each local instance, and the curl line
/// (tried here first). False when the front door did not answer 200.
fn summary(run: &Run, customer: &str, env: &str, who: &Person) -> anyhow::Result<Summary> {
    let row = &status_row(run, customer, env, who)?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("none").to_string();
    let hosts: Vec<String> = row["hosts"].as_array().into_iter().flatten().map(text).collect();
    let load_balancer = match row["shared_load_balancer"].as_str() {
        Some(shared) => shared.to_string(),
        None => match crate::infra::fleet(run.root, Some(customer), Some(env))? {
            Ok(fleet) => {
                fleet.environment(customer, env).map(|(_, e)| e.names.load_balancer.clone()).unwrap_or_default()
            }
            Err(_) => bail!("the config has errors (above): fix them, then run the demo again"),
        },
    };
    let commit = text(&row["ami"]["commit"]);
    println!("demo | {customer}/{env}");
    println!("demo |   AMI {} (commit {})", text(&row["ami"]["id"]), &commit[..12.min(commit.len())]);
    println!("demo |   hosts {} on load balancer {load_balancer}", hosts.join(", "));
    let fleet = run.root.join("target/vending-local/fleet").join(format!("{customer}-{env}"));
    let mut instances = Vec::new();
    for (instance, revision, port) in vending_release::local_fleet::running(&fleet) {
        println!("demo |   {instance}: revision {}, its app on 127.0.0.1:{port}", &revision[..16.min(revision.len())]);
        instances.push(Instance { id: instance, revision_sha256: revision, local_port: port });
    }
    let mut summary = Summary {
        environment: format!("{customer}/{env}"),
        ami: row["ami"]["id"].as_str().map(str::to_string),
        ami_commit: row["ami"]["commit"].as_str().map(str::to_string),
        hosts: hosts.clone(),
        load_balancer: load_balancer.clone(),
        instances,
        url: None,
        redirect_url: None,
        status: None,
    };
    let (Some(port), Some(host)) = (door_port(run.root, &load_balancer, 443)?, hosts.first()) else {
        println!("demo |   (the front door has no port for {load_balancer}:443 yet: `cargo xtask local status`)");
        return Ok(summary);
    };
    let status = http_status(port, host);
    println!(
        "demo |   curl -H 'Host: {host}' http://127.0.0.1:{port}/    # {}",
        status.map_or("no answer".to_string(), |s| format!("answers {s}"))
    );
    summary.url = Some(format!("http://127.0.0.1:{port}/"));
    summary.status = status;
    if let Some(redirect) = door_port(run.root, &load_balancer, 80)? {
        println!("demo |   curl -I -H 'Host: {host}' http://127.0.0.1:{redirect}/  # port 80: 301 to https");
        summary.redirect_url = Some(format!("http://127.0.0.1:{redirect}/"));
    }
    Ok(summary)
}

/// Points this process's stdout at stderr and returns the original stdout, for `--json`.
fn stdout_to_stderr() -> anyhow::Result<std::fs::File> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    std::io::stdout().flush()?;
    // SAFETY: dup and dup2 only copy file descriptors this process owns (0, 1, 2 are open for
    // a command line program); the duplicate is owned by the File returned, and closed with it.
    unsafe {
        let saved = libc::dup(1);
        if saved < 0 || libc::dup2(2, 1) < 0 {
            anyhow::bail!("cannot send the demo's output to stderr: {}", std::io::Error::last_os_error());
        }
        Ok(std::fs::File::from_raw_fd(saved))
    }
}

/// The status code of `GET /` through the front door.
fn http_status(port: u16, host: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn clean(root: &Path) -> anyhow::Result<ExitCode> {
    crate::local::down(root)?;
    for folder in ["target/vending-local", "target/vending-ami"] {
        let path = root.join(folder);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => println!("demo | removed {folder}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    println!("demo | kept the installed tools: target/moto-venv (the emulator) and, when the demo unpacked it, target/packer");
    Ok(ExitCode::SUCCESS)
}
