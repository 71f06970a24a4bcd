//! `cargo xtask buildspec run PATH [--src DIR]`: the build runner on any buildspec file, with
//! CodeBuild's semantics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use vending::SourceFile;
use vending_runners::runner::{self, RunOptions};

use crate::output::{self, Format, Summary};
use vending_release::build::{print_report, secrets};

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct BuildspecCommand {
    #[command(subcommand)]
    action: BuildspecAction,
}

#[derive(Subcommand)]
enum BuildspecAction {
    /// Run the phases in one shell session, then list the artifacts the build would upload.
    Run {
        /// The buildspec file.
        path: PathBuf,
        /// The source folder (`CODEBUILD_SRC_DIR`); the current folder by default.
        #[arg(long, value_name = "DIR")]
        src: Option<PathBuf>,
        /// Fetch parameter-store and secrets-manager values from the local emulator.
        #[arg(long)]
        local: bool,
    },
}

impl BuildspecCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let BuildspecAction::Run { path, src, local } = self.action;
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let source = SourceFile::new(path.clone(), text);
        let build = match vending::spec::buildspec::read(&source) {
            Ok(build) => build,
            Err(diagnostics) => {
                output::print(
                    Format::Human,
                    &diagnostics,
                    &Summary {
                        errors: diagnostics.len(),
                        file: Some(path.display().to_string()),
                        ..Summary::default()
                    },
                );
                return Ok(ExitCode::from(output::EXIT_PROBLEMS));
            }
        };
        let src = match src {
            Some(src) => src,
            None => std::env::current_dir()?,
        };
        let src = std::path::absolute(&src)?;
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-west-1".into());
        let options = RunOptions {
            src: src.clone(),
            secrets: secrets(&build, &region, &crate::local::target(root, local)?)?,
            source_version: String::new(),
            build_id: format!("local:{}", std::process::id()),
            // A buildspec file has no timeout (it is a CodeBuild project setting): CodeBuild's default.
            timeout: runner::DEFAULT_TIMEOUT,
        };
        let report = runner::run(&build, &options, &mut |line| println!("{line}"))?;
        println!("{}:", path.display());
        print_report(&report, "");
        if !report.succeeded() {
            return Ok(ExitCode::from(output::EXIT_PROBLEMS));
        }
        if !build.artifacts.files.is_empty() {
            let artifacts = vending_runners::artifacts::collect(&src, &build.artifacts)?;
            println!("artifacts ({}):", artifacts.len());
            for artifact in &artifacts {
                println!("  {}", artifact.path);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
