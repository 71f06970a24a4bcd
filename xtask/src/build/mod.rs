//! `cargo xtask build <customer> <env>`: the environment's software built on this machine by
//! `vending_release::build` (clone, buildspec, revision zip). `buildspec` and `appspec` are the
//! runner and the local agent on any file.

mod appspec;
mod buildspec;

pub use appspec::AppspecCommand;
pub use buildspec::BuildspecCommand;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use vending_release::build::{self, Site};

use crate::output;

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct BuildCommand {
    customer: String,
    env: String,
    /// Fetch parameter-store and secrets-manager values from the local emulator.
    #[arg(long)]
    local: bool,
    /// Print the build record as JSON.
    #[arg(long)]
    json: bool,
}

impl BuildCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match crate::infra::fleet(root, Some(&self.customer), Some(&self.env))? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (customer, env) = fleet.environment(&self.customer, &self.env).context("not in the fleet")?;
        let target = crate::local::target(root, self.local)?;
        let site = Site { root, platform: &fleet.platform, customer, env, target: &target };
        let Some(record) = build::build(&site)? else {
            return Ok(ExitCode::from(output::EXIT_PROBLEMS));
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&record)?);
        } else {
            println!(
                "{}/{} | revision {} ({} files, sha256 {})",
                record.customer,
                record.environment,
                record.revision.display(),
                record.files,
                record.sha256
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
