//! `cargo xtask build <customer> <env>`: the environment's software built, as `deploy` builds
//! it but without deploying: on this machine by `vending_release::build` (clone, buildspec,
//! revision zip), or on the environment's CodeBuild project (`Release::build_only`). `buildspec` and `appspec` are the
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
use vending_release::{BuildMode, Release};

use crate::interrupt::CtrlC;

use crate::output;

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct BuildCommand {
    /// The customer (a folder under customers/).
    customer: String,
    /// The environment (a file customers/CUSTOMER/ENV.toml).
    env: String,
    /// Use the local AWS emulator (parameter-store and secrets-manager values come from it).
    #[arg(long)]
    local: bool,
    /// Where to build: `codebuild` (the environment's CodeBuild project; the default on AWS when
    /// platform.toml names iam.codebuild_service_role) or `local` (this machine).
    #[arg(long, value_enum, value_name = "WHERE")]
    build: Option<crate::infra::BuildWhere>,
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
        let mode = BuildMode::chosen(self.build.map(crate::infra::BuildWhere::mode), &fleet.platform, &target)?;
        let built = match mode {
            BuildMode::Local => {
                build::build(&Site { root, platform: &fleet.platform, customer, env, target: &target })?
            }
            BuildMode::CodeBuild => {
                let (runtime, clients) = crate::infra::connect(root, &fleet, self.local)?;
                let release = Release {
                    build_mode: mode,
                    ..Release::of(root, &runtime, &clients, &fleet, &self.customer, &self.env, &target, &CtrlC)?
                };
                release.build_only()?
            }
        };
        let Some(record) = built else {
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
