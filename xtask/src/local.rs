//! `cargo xtask local up|down|status`: the local AWS emulator that `--local` commands talk to.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

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
    /// Say whether it runs, and where.
    Status,
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
                println!(
                    "commands with --local use it; other tools can with: export AWS_ENDPOINT_URL={}",
                    state.endpoint
                );
            }
            Action::Down => {
                if vending_emulator::down(root)? {
                    forget_local_fleet(root)?;
                    println!(
                        "local AWS emulator stopped: what it held is gone (buckets, AMIs, load balancers, deployments), and with it the local fleet ({LOCAL_FLEET}); `local up` starts empty"
                    );
                } else {
                    println!("no local AWS emulator was running");
                }
            }
            Action::Identity { name } => {
                let endpoint = vending_emulator::local_endpoint(root)?;
                let identity = vending_emulator::create_identity(&crate::project_root(), &endpoint, &name)?;
                println!("# {} in the local emulator (its credentials work nowhere else):", identity.arn);
                println!("export AWS_ACCESS_KEY_ID={}", identity.access_key_id);
                println!("export AWS_SECRET_ACCESS_KEY={}", identity.secret_access_key);
            }
            Action::Status => match vending_emulator::status(root)? {
                Some(state) => println!("running at {} (pid {})", state.endpoint, state.pid),
                None => {
                    println!("not running: start it with `cargo xtask local up`");
                    return Ok(ExitCode::from(1));
                }
            },
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The local agent's instance sandboxes and deployment history: they belong to one emulator run.
const LOCAL_FLEET: &str = "target/vending-local/fleet";

fn forget_local_fleet(root: &Path) -> anyhow::Result<()> {
    let fleet = root.join(LOCAL_FLEET);
    match std::fs::remove_dir_all(&fleet) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot clear {}", fleet.display()))
        }
        _ => Ok(()),
    }
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
