//! `cargo xtask appspec run REVISION --root SANDBOX`: a revision deployed the way the CodeDeploy
//! agent does, into a sandbox folder that stands for the instance, without AWS.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::output;

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct AppspecCommand {
    #[command(subcommand)]
    action: AppspecAction,
}

#[derive(Subcommand)]
enum AppspecAction {
    /// Deploy a revision (zip or folder with appspec.yml at its root) into a sandbox folder that
    /// stands for the instance's file system.
    Run {
        /// The revision: a zip (from `cargo xtask build`) or a folder.
        revision: PathBuf,
        /// The sandbox: `/opt/app` in the AppSpec is `SANDBOX/opt/app`.
        #[arg(long = "root", value_name = "SANDBOX")]
        sandbox: PathBuf,
        #[arg(long, default_value = "local-application")]
        application: String,
        #[arg(long, default_value = "LocalFleet")]
        deployment_group: String,
        /// Go on when the last revision's ApplicationStop (or block-traffic) script fails, as
        /// CodeDeploy's `ignoreApplicationStopFailures` does.
        #[arg(long)]
        ignore_application_stop_failures: bool,
    },
}

impl AppspecCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let AppspecAction::Run { revision, sandbox, application, deployment_group, ignore_application_stop_failures } =
            self.action;
        let id = format!("d-local{}", std::process::id());
        let deployment = vending_runners::agent::Deployment {
            id: id.clone(),
            application,
            group_id: format!("local-{deployment_group}"),
            group_name: deployment_group,
            ignore_application_stop_failures,
        };
        println!(
            "local agent: deploying {} into {} ({id}); hooks run here, not on AWS",
            revision.display(),
            sandbox.display()
        );
        let report = vending_runners::agent::deploy(&sandbox, &revision, &deployment, &mut |line| println!("{line}"))?;
        for event in &report.events {
            let status = match event.status {
                vending_runners::agent::EventStatus::Succeeded => "Succeeded",
                vending_runners::agent::EventStatus::Failed => "Failed",
                vending_runners::agent::EventStatus::FailedIgnored => "Failed (ignored)",
                vending_runners::agent::EventStatus::Skipped => "Skipped",
            };
            println!("  {:<20} {status}", event.event);
        }
        match report.failure {
            None => {
                println!("AppSpec file valid. Local deployment successful");
                Ok(ExitCode::SUCCESS)
            }
            Some(failure) => {
                eprintln!("error: {} failed (script error code {}): {}", failure.event, failure.code, failure.message);
                for line in &failure.log_tail {
                    eprintln!("    {line}");
                }
                Ok(ExitCode::from(output::EXIT_PROBLEMS))
            }
        }
    }
}
