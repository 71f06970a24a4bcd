//! `cargo xtask plan|deploy <customer> <env>` and `cargo xtask platform plan|deploy`: the
//! infrastructure, read live, compared with the config and changed in order.
//!
//! Exit codes of `plan` (README.md, "Exit codes"): 0 nothing to change, 2 changes, 1 error (also a
//! plan that `deploy` would refuse, such as a database downgrade).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use vending::config::model::Fleet;
use vending_aws::infra::{self, ApplyOptions, Clients, Planned};

use crate::output::{self, Format};
use crate::software::Release;
use crate::validate::{load_fleet, Selection};

/// `plan`: something to change.
const EXIT_CHANGES: u8 = 2;

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct PlanCommand {
    customer: String,
    env: String,
    /// Use the local AWS emulator (see `cargo xtask local up`).
    #[arg(long)]
    local: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct DeployCommand {
    customer: String,
    env: String,
    /// Use the local AWS emulator (see `cargo xtask local up`).
    #[arg(long)]
    local: bool,
    /// Only the infrastructure (load balancing, instances, database, CodeDeploy), not a release
    /// of the software.
    #[arg(long, conflicts_with = "software_only")]
    infra_only: bool,
    /// Only a release of the software (build, upload, CodeDeploy), on infrastructure deployed
    /// before.
    #[arg(long)]
    software_only: bool,
    /// Release the software even when the revision is the one deployed last.
    #[arg(long)]
    redeploy: bool,
    /// Go on when the running revision's ApplicationStop (or block-traffic) script fails
    /// (CodeDeploy's `ignoreApplicationStopFailures`): the way past a broken stop script.
    #[arg(long)]
    ignore_application_stop_failures: bool,
    /// Carry out replacements that lose data or traffic (a database, a load balancer).
    #[arg(long)]
    allow_destructive: bool,
    /// Apply database changes now (RDS `ApplyImmediately`), with any waiting for the maintenance
    /// window; by default RDS holds instance class, storage, Multi-AZ and engine version changes
    /// for the window.
    #[arg(long)]
    apply_immediately: bool,
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct RollbackCommand {
    customer: String,
    env: String,
    /// Use the local AWS emulator (see `cargo xtask local up`).
    #[arg(long)]
    local: bool,
    /// Go on when the running revision's ApplicationStop script fails (see `deploy`).
    #[arg(long)]
    ignore_application_stop_failures: bool,
    /// Roll back to this revision instead: the start of its SHA-256 (as the output of `deploy`
    /// shows it), among the group's successful deployments.
    #[arg(long, value_name = "SHA256_PREFIX")]
    to: Option<String>,
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct PlatformCommand {
    #[command(subcommand)]
    action: PlatformAction,
}

#[derive(Subcommand)]
enum PlatformAction {
    /// Show what `platform deploy` would change (exit 0: nothing, 2: changes).
    Plan {
        #[arg(long)]
        local: bool,
        #[arg(long)]
        json: bool,
    },
    /// Create or update the shared resources.
    Deploy {
        #[arg(long)]
        local: bool,
        #[arg(long)]
        allow_destructive: bool,
    },
}

/// The selected part of the fleet, validated: nothing reaches AWS from a config with errors.
fn fleet(root: &Path, customer: Option<&str>, env: Option<&str>) -> anyhow::Result<Result<Fleet, ExitCode>> {
    let selection = Selection { customer: customer.map(str::to_string), env: env.map(str::to_string) };
    let loaded = load_fleet(root, &selection)?;
    if loaded.has_errors() {
        output::print(Format::Human, &loaded.diagnostics, &loaded.summary());
        eprintln!("error: the config has errors; fix them first (nothing was read from or changed in AWS)");
        return Ok(Err(ExitCode::from(output::EXIT_PROBLEMS)));
    }
    let fleet = loaded.fleet.context("no platform config")?;
    if let (Some(c), Some(e)) = (customer, env) {
        fleet.environment(c, e).with_context(|| format!("{c}/{e} is not in customers/"))?;
    }
    Ok(Ok(fleet))
}

#[derive(Serialize)]
struct PlanJson<'a> {
    stack: &'a str,
    has_changes: bool,
    destructive: bool,
    #[serde(flatten)]
    plan: &'a vending::plan::Plan,
}

fn print_plan(planned: &Planned, json: bool) -> anyhow::Result<()> {
    if json {
        let out = PlanJson {
            stack: &planned.stack.label,
            has_changes: planned.plan.has_changes(),
            destructive: planned.plan.destructive().next().is_some(),
            plan: &planned.plan,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("plan for {}:", planned.stack.label);
    print!("{}", planned.plan.render_human());
    let count = planned.plan.changes.iter().filter(|c| c.action != vending::plan::Action::Unchanged).count();
    if count == 0 {
        println!("{}: no changes", planned.stack.label);
    } else {
        println!("{}: {count} resource(s) to change", planned.stack.label);
    }
    Ok(())
}

fn plan_exit(planned: &Planned) -> ExitCode {
    if planned.plan.refused().next().is_some() {
        eprintln!(
            "error: {}: deploy would refuse this plan (see REFUSED above); change the config",
            planned.stack.label
        );
        ExitCode::from(1)
    } else if planned.plan.has_changes() {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    }
}

/// Between the plan and its application: production approval and the deploy lock (their own
/// issues) go here, so that nothing is changed before they pass.
fn apply(
    runtime: &tokio::runtime::Runtime,
    clients: &Clients,
    mut planned: Planned,
    options: ApplyOptions,
) -> anyhow::Result<ExitCode> {
    print_plan(&planned, false)?;
    let pending_now = options.apply_immediately && planned.plan.changes.iter().any(|c| !c.pending.is_empty());
    if !planned.plan.has_changes() && !pending_now {
        return Ok(ExitCode::SUCCESS);
    }
    let applied = runtime.block_on(infra::apply(clients, &mut planned, &options))?;
    for note in &applied.notes {
        println!("note: {note}");
    }
    println!("{}: {} resource(s) changed", planned.stack.label, applied.changed.len());
    Ok(ExitCode::SUCCESS)
}

/// The runtime and clients for the platform's region, on AWS or the emulator.
fn connect(root: &Path, fleet: &Fleet, local: bool) -> anyhow::Result<(tokio::runtime::Runtime, Clients)> {
    let runtime = vending_aws::runtime()?;
    let config = runtime.block_on(vending_aws::sdk_config(&fleet.platform.region, &crate::local::target(root, local)?));
    let clients = Clients::new(&config, local, None);
    Ok((runtime, clients))
}

/// Reads and plans one environment of a validated fleet.
fn plan_environment(
    runtime: &tokio::runtime::Runtime,
    clients: &Clients,
    fleet: &Fleet,
    customer: &str,
    env: &str,
    local: bool,
) -> anyhow::Result<Planned> {
    let (customer, env) = fleet.environment(customer, env).context("not in the fleet")?;
    runtime.block_on(async {
        let stack = infra::environment_stack(clients, &fleet.platform, customer, env, local).await?;
        infra::plan(clients, stack).await
    })
}

impl PlanCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match fleet(root, Some(&self.customer), Some(&self.env))? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (runtime, clients) = connect(root, &fleet, self.local)?;
        let planned = plan_environment(&runtime, &clients, &fleet, &self.customer, &self.env, self.local)?;
        print_plan(&planned, self.json)?;
        Ok(plan_exit(&planned))
    }
}

impl DeployCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match fleet(root, Some(&self.customer), Some(&self.env))? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (runtime, clients) = connect(root, &fleet, self.local)?;
        if !self.software_only {
            let planned = plan_environment(&runtime, &clients, &fleet, &self.customer, &self.env, self.local)?;
            let options = ApplyOptions {
                allow_destructive: self.allow_destructive,
                apply_immediately: self.apply_immediately,
                ..ApplyOptions::default()
            };
            let code = apply(&runtime, &clients, planned, options)?;
            if code != ExitCode::SUCCESS || self.infra_only {
                return Ok(code);
            }
        }
        let release = Release::of(root, &runtime, &clients, &fleet, &self.customer, &self.env, self.local)?;
        Release {
            redeploy: self.redeploy,
            ignore_application_stop_failures: self.ignore_application_stop_failures,
            ..release
        }
        .run()
    }
}

impl RollbackCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match fleet(root, Some(&self.customer), Some(&self.env))? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (runtime, clients) = connect(root, &fleet, self.local)?;
        let release = Release::of(root, &runtime, &clients, &fleet, &self.customer, &self.env, self.local)?;
        Release { ignore_application_stop_failures: self.ignore_application_stop_failures, ..release }
            .roll_back(self.to.as_deref())
    }
}

impl PlatformCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match fleet(root, None, None)? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let local = match self.action {
            PlatformAction::Plan { local, .. } | PlatformAction::Deploy { local, .. } => local,
        };
        let (runtime, clients) = connect(root, &fleet, local)?;
        let planned = runtime.block_on(async {
            let stack = infra::platform_stack(&clients, &fleet.platform, local).await?;
            infra::plan(&clients, stack).await
        })?;
        match self.action {
            PlatformAction::Plan { json, .. } => {
                print_plan(&planned, json)?;
                Ok(plan_exit(&planned))
            }
            PlatformAction::Deploy { allow_destructive, .. } => {
                apply(&runtime, &clients, planned, ApplyOptions { allow_destructive, ..ApplyOptions::default() })
            }
        }
    }
}
