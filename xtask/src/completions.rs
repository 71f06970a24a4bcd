//! `cargo xtask completions bash|zsh|fish`: shell completions generated from the command line's
//! own definition (clap_complete), so they never drift from it.

use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Print shell completions for `cargo xtask` (bash, zsh, fish, elvish or PowerShell).
#[derive(Args)]
#[command(
    after_help = "Example:\n  cargo xtask completions bash > ~/.local/share/bash-completion/completions/cargo-xtask"
)]
pub struct Completions {
    /// The shell to complete in.
    shell: Shell,
}

impl Completions {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut command = crate::Cli::command();
        clap_complete::generate(self.shell, &mut command, "cargo-xtask", &mut std::io::stdout());
        Ok(ExitCode::SUCCESS)
    }
}
