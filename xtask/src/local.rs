//! `cargo xtask local up|down|status`: the local AWS emulator that `--local` commands talk to.

use std::path::Path;
use std::process::ExitCode;

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
                let state = vending_emulator::up(&crate::project_root(), root)?;
                println!(
                    "local AWS emulator (moto {}) at {} (pid {})",
                    vending_emulator::MOTO_VERSION,
                    state.endpoint,
                    state.pid
                );
                println!(
                    "commands with --local use it; other tools can with: export AWS_ENDPOINT_URL={}",
                    state.endpoint
                );
            }
            Action::Down => {
                if vending_emulator::down(root)? {
                    println!("local AWS emulator stopped");
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

/// Where a command's AWS calls go: the emulator with `--local` (`AWS_ENDPOINT_URL`, else the
/// server of `local up`), AWS otherwise.
pub fn target(root: &std::path::Path, local: bool) -> anyhow::Result<vending_aws::Target> {
    Ok(if local {
        vending_aws::Target::Local { endpoint: vending_emulator::local_endpoint(root)? }
    } else {
        vending_aws::Target::Aws
    })
}
