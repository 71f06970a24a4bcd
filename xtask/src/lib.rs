//! `cargo xtask`: the command line of the PaaS vending machine.
//!
//! Built in two ways. The `aws` feature (on by default) holds the commands that talk to AWS or
//! its emulator and run builds; `cargo xtask` (the alias in `.cargo/config.toml`) builds without
//! it, so `validate` and `generate`, the pull-request check, never compile the AWS SDK. The other
//! commands are then run by `forward` through the `xtask-aws` binary (the same code with the
//! feature), built by cargo on first use: one `cargo xtask …` interface either way.

// Without `aws`, the Packer build and the interrupt handling it uses have no caller.
#![cfg_attr(not(feature = "aws"), allow(dead_code))]

#[cfg(feature = "aws")]
mod ami;
#[cfg(feature = "aws")]
mod approval;
#[cfg(feature = "aws")]
mod bench;
#[cfg(feature = "aws")]
mod build;
#[cfg(feature = "aws")]
mod completions;
#[cfg(feature = "aws")]
mod demo;
#[cfg(feature = "aws")]
mod fleet;
#[cfg(not(feature = "aws"))]
mod forward;
#[cfg(feature = "aws")]
mod front_door;
mod generate;
mod generated;
#[cfg(feature = "aws")]
mod git;
#[cfg(feature = "aws")]
mod infra;
mod interrupt;
#[cfg(feature = "aws")]
mod local;
#[cfg(feature = "aws")]
mod lock;
mod new;
mod output;
mod packer;
mod parallel;
#[cfg(feature = "aws")]
mod report;
#[cfg(feature = "aws")]
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The arguments of each command that needs the `aws` feature: its own, or (without the
/// feature) everything after the command name, handed on to `xtask-aws`.
#[cfg(feature = "aws")]
mod aws_args {
    pub use crate::ami::Ami;
    pub use crate::approval::{ApprovalsCommand, ApproveCommand, HistoryCommand, RejectCommand};
    pub use crate::bench::Bench;
    pub use crate::build::{AppspecCommand, BuildCommand, BuildspecCommand};
    pub use crate::completions::Completions;
    pub use crate::demo::Demo;
    pub use crate::infra::{DeployCommand, PlanCommand, PlatformCommand, RollbackCommand};
    pub use crate::local::Local;
    pub use crate::lock::LockCommand;
    pub use crate::status::StatusCommand;
}
#[cfg(not(feature = "aws"))]
mod aws_args {
    pub use crate::forward::Forward as Ami;
    pub use crate::forward::Forward as ApproveCommand;
    pub use crate::forward::Forward as RejectCommand;
    pub use crate::forward::Forward as ApprovalsCommand;
    pub use crate::forward::Forward as HistoryCommand;
    pub use crate::forward::Forward as Bench;
    pub use crate::forward::Forward as AppspecCommand;
    pub use crate::forward::Forward as Completions;
    pub use crate::forward::Forward as Demo;
    pub use crate::forward::Forward as BuildCommand;
    pub use crate::forward::Forward as BuildspecCommand;
    pub use crate::forward::Forward as DeployCommand;
    pub use crate::forward::Forward as PlanCommand;
    pub use crate::forward::Forward as PlatformCommand;
    pub use crate::forward::Forward as RollbackCommand;
    pub use crate::forward::Forward as Local;
    pub use crate::forward::Forward as LockCommand;
    pub use crate::forward::Forward as StatusCommand;
}

/// Turns customer config under customers/ into Packer templates, buildspecs and appspecs, and
/// checks all of it before anything reaches AWS.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
pub(crate) struct Cli {
    /// Project root (the folder with customers/); defaults to this workspace.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(
        after_help = "Exit codes: 0 nothing wrong (warnings allowed); 1 errors found; 2 could not run; 7 an unknown name.\n\nExamples:\n  cargo xtask validate\n  cargo xtask validate --format github\n  cargo xtask validate --spec my/buildspec.yml"
    )]
    Validate(validate::Validate),
    #[command(
        after_help = "Exit codes: 0 written (or nothing to write); 1 config errors, nothing written; 7 an unknown name.\n\nExample:\n  cargo xtask generate acme"
    )]
    Generate(generate::Generate),
    New(new::NewCommand),
    /// Print shell completions for `cargo xtask` (bash, zsh, fish, elvish or PowerShell).
    #[command(
        after_help = "Example:\n  cargo xtask completions bash > ~/.local/share/bash-completion/completions/cargo-xtask"
    )]
    Completions(aws_args::Completions),
    /// Build the AMI of a customer environment (or of many: --all) with Packer and record it.
    #[command(
        after_help = "Exit codes: 0 built and recorded; 1 config refusals; 2 a failed build, a dirty tree, or AWS errors; 6 locked; 7 an unknown name.\n\nExamples:\n  cargo xtask ami acme dev --local\n  cargo xtask ami --all --parallel 4"
    )]
    Ami(aws_args::Ami),
    /// The whole product on the local emulator: platform, validate, AMIs, acme prod (with its
    /// approval by a second person) and globex dev, then what runs where and a curl line for each.
    #[command(
        after_help = "Exit codes: 0 done, and every environment answers through the local front door; 2 a step failed or an environment does not answer.\n\nExamples:\n  cargo xtask demo\n  cargo xtask demo --json | jq '.environments[].url'\n  cargo xtask demo --clean"
    )]
    Demo(aws_args::Demo),
    /// Start, stop or show the local AWS emulator (moto's server on a loopback port).
    #[command(
        after_help = "Exit codes: 0; 1 `status` when none runs.\n\nExample:\n  cargo xtask local up && cargo xtask platform deploy --local"
    )]
    Local(aws_args::Local),
    /// Show what `deploy` would change for a customer environment, or many (exit 0: nothing, 2: changes).
    #[command(
        after_help = "Exit codes: 0 nothing to change; 2 changes; 1 errors; 7 an unknown name.\n\nExamples:\n  cargo xtask plan acme prod\n  cargo xtask plan --all --json --local"
    )]
    Plan(aws_args::PlanCommand),
    /// The fleet at a glance: AMI, last release, pending approvals, lock holder, and drift.
    #[command(
        after_help = "Exit codes: 0; 2 when --drift finds changes; 1 when something could not be read; 7 an unknown name.\n\nExample:\n  cargo xtask status acme --drift --local"
    )]
    Status(aws_args::StatusCommand),
    /// Deploy a customer environment (or many: --all): its infrastructure, then its software.
    #[command(
        after_help = "Exit codes: 0 deployed or nothing to do; 1 errors, a failed or stopped deployment; 3 approval pending; 4 rejected; 5 expired; 6 locked; 7 an unknown name; 130 left on a second Ctrl-C.\n\nExamples:\n  cargo xtask deploy acme dev --local\n  cargo xtask deploy acme prod --no-wait\n  cargo xtask deploy --all --envs dev --parallel 4 --canary 1"
    )]
    Deploy(aws_args::DeployCommand),
    /// Deploy again the revision released before the latest release (or `--to` a revision).
    #[command(after_help = "Exit codes: as `deploy`.\n\nExample:\n  cargo xtask rollback acme prod --to 3f2a9c")]
    Rollback(aws_args::RollbackCommand),
    /// Plan or deploy what all customers share: the state bucket and the shared load balancer.
    #[command(
        after_help = "Exit codes: `plan` 0 nothing, 2 changes, 1 errors; `deploy` as `deploy`.\n\nExample:\n  cargo xtask platform deploy --local"
    )]
    Platform(aws_args::PlatformCommand),
    /// Approve a pending production change (another person than its requester).
    #[command(
        after_help = "Exit codes: 0 recorded; 1 refused (your own request, decided, expired); 2 several pending and none named.\n\nExample:\n  cargo xtask approve acme prod"
    )]
    Approve(aws_args::ApproveCommand),
    /// Reject a pending production change, saying why.
    #[command(
        after_help = "Exit codes: as `approve`.\n\nExample:\n  cargo xtask reject acme prod --reason \"not during the sale\""
    )]
    Reject(aws_args::RejectCommand),
    /// List the pending approval requests.
    #[command(after_help = "Example:\n  cargo xtask approvals --local")]
    Approvals(aws_args::ApprovalsCommand),
    /// The audit log of an environment (or the platform): requests, decisions, applies.
    #[command(after_help = "Example:\n  cargo xtask history acme prod")]
    History(aws_args::HistoryCommand),
    /// Who holds the lock of an environment (or the platform), or release it.
    #[command(
        after_help = "Exit codes: 0; 6 `release` of a lock whose run may still work (without --force).\n\nExample:\n  cargo xtask lock status acme prod"
    )]
    Lock(aws_args::LockCommand),
    /// Build a customer environment's software and bundle its CodeDeploy revision.
    #[command(
        after_help = "Exit codes: 0 built; 1 the build failed; 2 errors; 7 an unknown name.\n\nExamples:\n  cargo xtask build globex dev\n  cargo xtask build acme prod --build codebuild"
    )]
    Build(aws_args::BuildCommand),
    /// Run a buildspec locally, with CodeBuild's semantics.
    #[command(after_help = "Example:\n  cargo xtask buildspec run buildspecs/globex/dev/buildspec.yaml --src .")]
    Buildspec(aws_args::BuildspecCommand),
    /// Run an AppSpec the way the CodeDeploy agent does, in a sandbox folder, without AWS.
    #[command(after_help = "Example:\n  cargo xtask appspec run revision.zip --root /tmp/instance")]
    Appspec(aws_args::AppspecCommand),
    /// Benchmarks whose figures go into BENCHMARKS.md.
    #[command(after_help = "Example:\n  cargo xtask bench validate --customers 1000")]
    Bench(aws_args::Bench),
}

/// The command line: parse, then run one command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Absolute, because Packer runs in a work folder and is handed paths under the root.
    let root = cli.root.unwrap_or_else(project_root);
    let root = std::path::absolute(&root).unwrap_or(root);
    // `plan` exits 2 for "changes", so its errors exit 1 (README.md, "Exit codes").
    let error_code = match cli.command {
        Command::Plan(_)
        | Command::Status(_)
        | Command::Platform(_)
        | Command::Deploy(_)
        | Command::Rollback(_)
        | Command::Approve(_)
        | Command::Reject(_)
        | Command::Approvals(_)
        | Command::History(_)
        | Command::Lock(_) => output::EXIT_PROBLEMS,
        _ => output::EXIT_CANNOT_RUN,
    };
    let result = match cli.command {
        Command::Validate(cmd) => cmd.run(&root),
        Command::Generate(cmd) => cmd.run(&root),
        Command::New(cmd) => cmd.run(&root),
        // Without `aws` (the `_` arm) most commands are a catch-all: the full definition completes.
        #[cfg(feature = "aws")]
        Command::Completions(cmd) => cmd.run(),
        #[cfg(not(feature = "aws"))]
        _ => forward::to_aws_binary(),
        #[cfg(feature = "aws")]
        Command::Ami(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Demo(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Local(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Plan(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Status(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Deploy(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Rollback(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Platform(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Approve(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Reject(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Approvals(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::History(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Lock(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Build(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Buildspec(cmd) => cmd.run(&root),
        #[cfg(feature = "aws")]
        Command::Appspec(cmd) => cmd.run(),
        #[cfg(feature = "aws")]
        Command::Bench(cmd) => cmd.run(&root),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            match error.downcast_ref::<output::UnknownName>() {
                Some(_) => ExitCode::from(output::EXIT_UNKNOWN_NAME),
                None => ExitCode::from(error_code),
            }
        }
    }
}

/// The workspace root: xtask lives one level below it.
pub fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}
