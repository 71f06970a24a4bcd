//! `cargo xtask`: the command line of the PaaS vending machine.

mod ami;
mod bench;
mod bench_build;
mod bench_deploy;
mod build;
mod generate;
mod generated;
mod git;
mod infra;
mod interrupt;
mod local;
mod local_fleet;
mod output;
mod packer;
mod parallel;
mod software;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Turns customer config under customers/ into Packer templates, buildspecs and appspecs, and
/// checks all of it before anything reaches AWS.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    /// Project root (the folder with customers/); defaults to this workspace.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Validate(validate::Validate),
    Generate(generate::Generate),
    Ami(ami::Ami),
    Local(local::Local),
    Plan(infra::PlanCommand),
    Deploy(infra::DeployCommand),
    Rollback(infra::RollbackCommand),
    Platform(infra::PlatformCommand),
    Build(build::BuildCommand),
    Buildspec(build::BuildspecCommand),
    Appspec(build::AppspecCommand),
    Bench(bench::Bench),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Absolute, because Packer runs in a work folder and is handed paths under the root.
    let root = cli.root.unwrap_or_else(project_root);
    let root = std::path::absolute(&root).unwrap_or(root);
    // `plan` exits 2 for "changes", so its errors exit 1 (README.md, "Exit codes").
    let error_code = match cli.command {
        Command::Plan(_) | Command::Platform(_) | Command::Deploy(_) | Command::Rollback(_) => output::EXIT_PROBLEMS,
        _ => output::EXIT_CANNOT_RUN,
    };
    let result = match cli.command {
        Command::Validate(cmd) => cmd.run(&root),
        Command::Generate(cmd) => cmd.run(&root),
        Command::Ami(cmd) => cmd.run(&root),
        Command::Local(cmd) => cmd.run(&root),
        Command::Plan(cmd) => cmd.run(&root),
        Command::Deploy(cmd) => cmd.run(&root),
        Command::Rollback(cmd) => cmd.run(&root),
        Command::Platform(cmd) => cmd.run(&root),
        Command::Build(cmd) => cmd.run(&root),
        Command::Buildspec(cmd) => cmd.run(&root),
        Command::Appspec(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(&root),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(error_code)
        }
    }
}

/// The workspace root: xtask lives one level below it.
pub fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}
