//! `cargo xtask completions bash|zsh|fish`: shell completions generated from the command line's
//! own definition (clap_complete), so they never drift from it.

use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

// Its help line and example are the command's in lib.rs (one for both builds).
#[derive(Args)]
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
