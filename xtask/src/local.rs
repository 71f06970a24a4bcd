//! `cargo xtask local up|down|status`: the local AWS emulator that `--local` commands talk to.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::front_door;

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct Local {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Start the emulator (installed into target/ on first use), or show the running one.
    Up,
    /// Stop it.
    Down,
    /// Say whether it runs, and where (and the front door's ports).
    Status {
        /// Print it as JSON: `{"emulator": {endpoint, pid} | null, "front_door": {pid, doors} | null}`.
        #[arg(long)]
        json: bool,
    },
    /// Run the local front door in the foreground (`up` starts it in the background): loopback
    /// ports that route like the emulator's load balancers, to the local fleet's apps.
    FrontDoor,
    /// Make a person in the emulator (an IAM user with an access key) and print the `export` lines
    /// that act as them: a requester and an approver are two such people.
    Identity {
        /// The user name, e.g. `alice`.
        name: String,
    },
}

impl Local {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        match self.action {
            Action::Up => {
                up(root)?;
            }
            Action::Down => down(root)?,
            Action::Identity { name } => {
                let endpoint = vending_emulator::local_endpoint(root)?;
                let identity = vending_emulator::create_identity(&crate::project_root(), &endpoint, &name)?;
                println!("# {} in the local emulator (its credentials work nowhere else):", identity.arn);
                println!("export AWS_ACCESS_KEY_ID={}", identity.access_key_id);
                println!("export AWS_SECRET_ACCESS_KEY={}", identity.secret_access_key);
            }
            Action::FrontDoor => {
                if let Some(running) = front_door::State::read(root) {
                    anyhow::bail!(
                        "a local front door already runs (pid {}); `cargo xtask local down` stops it",
                        running.pid
                    );
                }
                let endpoint = vending_emulator::local_endpoint(root)?;
                // Only the region is needed: a customer's config error does not stop the front door.
                let region = platform_region(root)?;
                let runtime = vending_aws::runtime()?;
                let target = vending_aws::Target::Local { endpoint: endpoint.clone() };
                let config = runtime.block_on(vending_aws::sdk_config(&region, &target));
                let clients = vending_aws::infra::Clients::new(&config, true, None);
                crate::front_door::serve(root, runtime, clients, &endpoint)?;
            }
            Action::Status { json: true } => {
                let emulator = vending_emulator::status(root)?;
                let door = emulator.as_ref().and_then(|_| front_door::State::read(root));
                let value = serde_json::json!({
                    "emulator": emulator.as_ref().map(|s| serde_json::json!({ "endpoint": s.endpoint, "pid": s.pid })),
                    "front_door": door,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::from(if emulator.is_some() { 0 } else { 1 }));
            }
            Action::Status { json: false } => match vending_emulator::status(root)? {
                Some(state) => {
                    println!("running at {} (pid {})", state.endpoint, state.pid);
                    match front_door::State::read(root) {
                        Some(door) if door.doors.is_empty() => {
                            println!("front door (pid {}): no load balancer yet", door.pid)
                        }
                        Some(door) => {
                            println!("front door (pid {}):", door.pid);
                            for bound in &door.doors {
                                println!(
                                    "  {}:{} ({}) at http://127.0.0.1:{}",
                                    bound.load_balancer, bound.port, bound.protocol, bound.local_port
                                );
                            }
                        }
                        None => println!("front door: not running (`cargo xtask local up` starts it)"),
                    }
                }
                None => {
                    println!("not running: start it with `cargo xtask local up`");
                    return Ok(ExitCode::from(1));
                }
            },
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `[aws] region` of `customers/platform.toml`, read on its own.
fn platform_region(root: &Path) -> anyhow::Result<String> {
    let path = root.join(vending::project::CUSTOMERS_DIR).join("platform.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML: `cargo xtask validate` says where", path.display()))?;
    doc.get("aws")
        .and_then(|aws| aws.get("region"))
        .and_then(|region| region.as_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no [aws] region: set it (e.g. region = \"eu-west-1\")", path.display()))
}

/// Starts the emulator and the front door, or says that they run.
pub fn up(root: &Path) -> anyhow::Result<(vending_emulator::ServerState, front_door::State)> {
    let (state, started) = vending_emulator::up(&crate::project_root(), root)?;
    if started {
        // A new emulator knows none of the instances an earlier one had.
        forget_local_fleet(root)?;
        println!(
            "local AWS emulator (moto {}) at {} (pid {})",
            vending_emulator::MOTO_VERSION,
            state.endpoint,
            state.pid
        );
    } else {
        println!("the local AWS emulator already runs at {} (pid {})", state.endpoint, state.pid);
    }
    println!("commands with --local use it; other tools can with: export AWS_ENDPOINT_URL={}", state.endpoint);
    let door = start_front_door(root, &state.endpoint)?;
    println!(
        "local front door (pid {}): each load balancer's listeners on loopback ports, once they exist; `cargo xtask local status` lists them",
        door.pid
    );
    Ok((state, door))
}

/// Stops the front door and the emulator; the local fleet goes with them.
pub fn down(root: &Path) -> anyhow::Result<()> {
    stop_front_door(root);
    if vending_emulator::down(root)? {
        forget_local_fleet(root)?;
        println!(
            "local AWS emulator stopped: what it held is gone (buckets, AMIs, load balancers, deployments), and with it the local fleet ({LOCAL_FLEET}); `local up` starts empty"
        );
    } else {
        println!("no local AWS emulator was running");
    }
    Ok(())
}

/// Starts the front door in the background, unless one runs; waits until it has said where.
/// Two `local up` at once start one: the second waits for the first (a file lock) and finds it.
fn start_front_door(root: &Path, endpoint: &str) -> anyhow::Result<front_door::State> {
    let folder = root.join("target/vending-local");
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let lock_path = folder.join("front-door.lock");
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if let Some(state) = front_door::State::read(root) {
        return Ok(state);
    }
    let _ = std::fs::remove_file(root.join(front_door::STATE));
    let log_path = root.join(front_door::LOG);
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find this program to start the front door")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--root")
        .arg(root)
        .args(["local", "front-door"])
        .env("AWS_ENDPOINT_URL", endpoint)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().with_context(|| format!("cannot share {}", log_path.display()))?)
        .stderr(log);
    // Its own process group: Ctrl-C in this terminal is not for it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("cannot start the local front door")?;
    // A loaded machine may take a while; one that never says where is stopped, not left behind.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(state) = front_door::State::read(root) {
            return Ok(state);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the local front door stopped ({status}); see {}", log_path.display());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the local front door did not start within 60 s; see {}", log_path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops the running front door, if any, and waits until it is gone.
fn stop_front_door(root: &Path) {
    if let Some(state) = front_door::State::read(root) {
        if let Ok(pid) = i32::try_from(state.pid) {
            // SAFETY: kill only sends a signal to the pid the front door recorded as its own.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            for _ in 0..50 {
                // SAFETY: signal 0 only checks that the process exists.
                if unsafe { libc::kill(pid, 0) } != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    let _ = std::fs::remove_file(root.join(front_door::STATE));
}

/// The local agent's instance sandboxes and deployment history: they belong to one emulator run.
const LOCAL_FLEET: &str = "target/vending-local/fleet";

/// What the demo keeps of one emulator run (its two people).
pub const DEMO_STATE: &str = "target/vending-local/demo";

fn forget_local_fleet(root: &Path) -> anyhow::Result<()> {
    for folder in [LOCAL_FLEET, DEMO_STATE] {
        let path = root.join(folder);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot clear {}", path.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Where a command's AWS calls go: the emulator with `--local` (`AWS_ENDPOINT_URL`, else the
/// server of `local up`), AWS otherwise.
pub fn target(root: &std::path::Path, local: bool) -> anyhow::Result<vending_aws::Target> {
    Ok(if local {
        vending_aws::Target::Local { endpoint: vending_emulator::local_endpoint(root)? }
    } else {
        vending_aws::Target::Aws
    })
}
