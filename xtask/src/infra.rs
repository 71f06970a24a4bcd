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
use vending::approval::{LastApplied, Proposal, ReleaseBinding, Scope};
use vending::config::model::{Approval, Fleet, Platform};
use vending::plan::{Kind, Resource};
use vending_aws::approval::Store;
use vending_aws::infra::{self, ApplyOptions, Clients, Planned};

use crate::approval::{Gate, Pass};
use crate::fleet::{FleetFlags, Verb};
use crate::interrupt::CtrlC;
use crate::lock::{Guard, Locker, WaitLock};
use crate::output::{self, Format};
use crate::validate::{load_fleet, Selection};
use vending_release::{BuildMode, PlannedRevision, Prepared, Release, Shipped};

/// `plan`: something to change.
const EXIT_CHANGES: u8 = 2;

/// A deployment that failed, timed out or was stopped (on Ctrl-C too).
const EXIT_DEPLOYMENT_FAILED: u8 = 1;

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct PlanCommand {
    /// The customer (a folder under customers/).
    customer: Option<String>,
    /// The environment (a file customers/CUSTOMER/ENV.toml).
    env: Option<String>,
    /// Use the local AWS emulator (see `cargo xtask local up`).
    #[arg(long)]
    local: bool,
    /// Print the plan as JSON (with --all: the summary, each environment's plan in it).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    fleet: FleetFlags,
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct DeployCommand {
    /// The customer (a folder under customers/).
    customer: Option<String>,
    /// The environment (a file customers/CUSTOMER/ENV.toml).
    env: Option<String>,
    #[command(flatten)]
    fleet: FleetFlags,
    /// With --all: print the summary as JSON.
    #[arg(long)]
    json: bool,
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
    /// Where the software is built: `codebuild` (the environment's CodeBuild project; the default
    /// on AWS when platform.toml names iam.codebuild_service_role) or `local` (this machine; the
    /// default otherwise, and with --local, since the emulator runs no build).
    #[arg(long, value_enum, value_name = "WHERE")]
    build: Option<BuildWhere>,
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
    #[command(flatten)]
    approval: ApprovalFlags,
    #[command(flatten)]
    wait_lock: WaitLock,
}

/// Where `deploy --build` builds.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum BuildWhere {
    Local,
    Codebuild,
}

impl BuildWhere {
    pub(crate) fn mode(self) -> BuildMode {
        match self {
            BuildWhere::Local => BuildMode::Local,
            BuildWhere::Codebuild => BuildMode::CodeBuild,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            BuildWhere::Local => "local",
            BuildWhere::Codebuild => "codebuild",
        }
    }
}

/// How a gated command meets its approval (production, or `approval = true`).
#[derive(Args, Clone)]
pub struct ApprovalFlags {
    /// Record the approval request, print its id and exit (3) instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
    /// Go on with this approval request (made before with --no-wait, or left on Ctrl-C).
    #[arg(long, value_name = "ID")]
    approval: Option<String>,
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct RollbackCommand {
    /// The customer (a folder under customers/).
    customer: String,
    /// The environment (a file customers/CUSTOMER/ENV.toml).
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
    #[command(flatten)]
    approval: ApprovalFlags,
    #[command(flatten)]
    wait_lock: WaitLock,
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
        #[command(flatten)]
        approval: ApprovalFlags,
        #[command(flatten)]
        wait_lock: WaitLock,
    },
}

/// The selected part of the fleet, validated: nothing reaches AWS from a config with errors.
pub(crate) fn fleet(root: &Path, customer: Option<&str>, env: Option<&str>) -> anyhow::Result<Result<Fleet, ExitCode>> {
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
    /// The member of the pool of shared load balancers that serves the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_load_balancer: Option<&'a str>,
    #[serde(flatten)]
    plan: &'a vending::plan::Plan,
}

fn print_plan(planned: &Planned, json: bool) -> anyhow::Result<()> {
    if json {
        let out = PlanJson {
            stack: &planned.stack.label,
            has_changes: planned.plan.has_changes(),
            destructive: planned.plan.destructive().next().is_some(),
            shared_load_balancer: planned.stack.placement.as_ref().map(|p| p.load_balancer.as_str()),
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
    if let Some(placement) = &planned.stack.placement {
        let hosts = planned.stack.desired.iter().find_map(|d| match &d.resource {
            Resource::ListenerRule(rule) => Some(rule.host_header.join(", ")),
            _ => None,
        });
        let when = match (placement.new, placement.adopted) {
            (false, _) => "placed there before",
            (true, true) => "its rule is there from before the pool",
            (true, false) => "a new placement",
        };
        println!(
            "{} | {} served by shared load balancer {} ({when})",
            planned.stack.label,
            hosts.unwrap_or_default(),
            placement.load_balancer
        );
    }
    Ok(())
}

/// Which shared load balancer serves which environments (`platform plan|deploy`).
fn print_pool(runtime: &tokio::runtime::Runtime, clients: &Clients, fleet: &Fleet, members: u32) -> anyhow::Result<()> {
    let vending::config::model::ListenerRef::Lookup { load_balancer, .. } = &fleet.platform.shared_alb.listener else {
        return Ok(());
    };
    let (placements, _) = runtime.block_on(infra::pool::read(clients, &fleet.platform.state_bucket))?;
    let by_member = placements.by_member();
    let quota = fleet.platform.shared_alb.rules_per_alb;
    for member in 1..=members.max(placements.members()) {
        let placed = by_member.get(&member).map(Vec::as_slice).unwrap_or_default();
        let list = if placed.is_empty() { String::new() } else { format!(": {}", placed.join(", ")) };
        println!(
            "platform | shared load balancer {}: {} of {quota} environment(s) placed{list}",
            vending::pool::member_name(load_balancer, member),
            placed.len()
        );
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

/// The runtime and clients for the platform's region, on AWS or the emulator.
pub(crate) fn connect(root: &Path, fleet: &Fleet, local: bool) -> anyhow::Result<(tokio::runtime::Runtime, Clients)> {
    let runtime = vending_aws::runtime()?;
    let config = runtime.block_on(vending_aws::sdk_config(&fleet.platform.region, &crate::local::target(root, local)?));
    // Every AWS call, appended to a file: how tests see what a command called (and did not).
    let log = vending_aws::calls::CallLog::from_environment()?;
    let clients = Clients::new(&config, local, log.as_ref());
    Ok((runtime, clients))
}

/// Reads and plans one environment of a validated fleet.
pub(crate) fn plan_environment(
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

/// One gated (or not) run: plan, approval, apply, release. Nothing is changed before the gate
/// passes, except the approval topic, which is how approvers hear of a request and touches no
/// running resource.
struct Run<'a> {
    runtime: &'a tokio::runtime::Runtime,
    clients: &'a Clients,
    root: &'a Path,
    platform: &'a Platform,
    scope: Scope,
    approval: Approval,
    topic: &'a str,
    local: bool,
}

impl<'a> Run<'a> {
    fn environment(
        runtime: &'a tokio::runtime::Runtime,
        clients: &'a Clients,
        root: &'a Path,
        platform: &'a Platform,
        customer: &vending::config::model::Customer,
        env: &'a vending::config::model::Environment,
        local: bool,
    ) -> Run<'a> {
        Run {
            runtime,
            clients,
            root,
            platform,
            scope: Scope::environment(&customer.name, &env.name),
            approval: env.approval,
            topic: &env.names.approval_topic,
            local,
        }
    }

    fn store(&self) -> Store<'_> {
        Store { s3: &self.clients.s3, bucket: &self.platform.state_bucket }
    }

    fn gate(&self, command_line: String, flags: &ApprovalFlags) -> Gate<'_> {
        Gate {
            runtime: self.runtime,
            clients: self.clients,
            root: self.root,
            bucket: &self.platform.state_bucket,
            region: &self.platform.region,
            scope: self.scope.clone(),
            approval: self.approval,
            topic: self.topic,
            command_line,
            no_wait: flags.no_wait,
            resume: flags.approval.clone(),
            flags: local_flag(self.local),
        }
    }

    /// The options of the apply that follows the gate: the lock is checked and Ctrl-C asks to stop
    /// before each change (the first press stops after the change in progress; a second leaves).
    fn applying(&self, options: &ApplyOptions, guard: Option<&Guard>) -> anyhow::Result<ApplyOptions> {
        crate::interrupt::install()?;
        let label = self.scope.label();
        crate::interrupt::set_notes(
            Some(format!("{label}: interrupted: stopping after the change in progress (Ctrl-C again leaves at once)")),
            format!("{label}: left in the middle of its changes; run the command again to finish"),
        );
        // Any press counts: one during an approval wait ended the run there, so a press seen here
        // came after the gate (while waiting for the lock, or planning again).
        let asked = std::sync::Arc::new(crate::interrupt::interrupted);
        Ok(ApplyOptions {
            held: guard.map(Guard::held),
            interrupted: Some(infra::Interrupted(asked)),
            ..options.clone()
        })
    }

    /// Fails when this run's lock was taken over or released by force meanwhile.
    fn still_held(&self, guard: Option<&Guard>) -> anyhow::Result<()> {
        match guard {
            Some(guard) => self.runtime.block_on(vending_aws::lock::check_held(&self.clients.s3, &guard.held())),
            None => Ok(()),
        }
    }

    /// Takes the scope's lock for `command`; `Err(code)` when another run holds it.
    fn lock(&self, command: &str, wait: Option<std::time::Duration>) -> anyhow::Result<Result<Guard, ExitCode>> {
        self.locker().acquire(&self.scope, command, wait)
    }

    fn locker(&self) -> Locker<'_> {
        Locker { runtime: self.runtime, clients: self.clients, bucket: &self.platform.state_bucket, root: self.root }
    }

    /// Whether another run holds the scope's lock (read only).
    fn lock_held(&self) -> anyhow::Result<bool> {
        Ok(self.locker().holder(&self.scope)?.is_some())
    }

    /// Waits until no other run holds the scope's lock (without taking it); `Some(code)` when
    /// it is still held.
    fn wait_free(&self, wait: Option<std::time::Duration>) -> anyhow::Result<Option<ExitCode>> {
        self.locker().wait_free(&self.scope, wait)
    }

    /// The lock of a gated run, taken when its approval arrives (into `guard`); `Some(code)` when
    /// another run holds it.
    fn lock_into(
        &self,
        guard: &mut Option<Guard>,
        command: &str,
        wait: Option<std::time::Duration>,
    ) -> anyhow::Result<Option<ExitCode>> {
        if guard.is_some() {
            return Ok(None);
        }
        Ok(match self.lock(command, wait)? {
            Ok(held) => {
                *guard = Some(held);
                None
            }
            Err(code) => Some(code),
        })
    }

    /// In a gated stack, sets up the approval topic (its own changes only) and plans again.
    fn topic_first(&self, planned: Planned, replan: &dyn Fn() -> anyhow::Result<Planned>) -> anyhow::Result<Planned> {
        let topic_changes =
            planned.plan.changes.iter().any(|c| c.kind == Kind::Topic && c.action != vending::plan::Action::Unchanged);
        if !self.approval.required || !topic_changes {
            return Ok(planned);
        }
        let mut planned = planned;
        let options = ApplyOptions { only: Some(Kind::Topic), ..ApplyOptions::default() };
        let changed: Vec<String> = planned
            .plan
            .changes
            .iter()
            .filter(|c| c.kind == Kind::Topic)
            .flat_map(|c| match &c.action {
                vending::plan::Action::Update(fields) => fields
                    .iter()
                    .map(|f| format!("{}: {} → {}", f.field, f.old.as_deref().unwrap_or("(none)"), f.new))
                    .collect(),
                _ => vec![format!("created {}", c.name)],
            })
            .collect();
        let applied = self.runtime.block_on(infra::apply(self.clients, &mut planned, &options))?;
        for note in &applied.notes {
            println!("note: {note}");
        }
        // Who is notified changes without an approval (it changes nothing that runs): on record.
        let me = self.runtime.block_on(vending_aws::identity::caller(&self.clients.sts))?.arn;
        let event = vending::approval::AuditEvent::new(
            "approvers-changed",
            &me,
            None,
            changed.join("; "),
            std::time::SystemTime::now(),
        );
        self.runtime.block_on(self.store().audit(&self.scope, &event))?;
        replan()
    }

    /// What the approval binds: the plan's changes (with held RDS changes when they are to be
    /// applied now) and the release.
    fn proposal(
        &self,
        command: &str,
        planned: Option<&Planned>,
        release: Option<ReleaseBinding>,
        last: Option<&LastApplied>,
        options: &ApplyOptions,
    ) -> Proposal {
        match planned {
            Some(planned) => {
                let plan = if options.apply_immediately {
                    planned.plan.clone().with_pending_applied_now()
                } else {
                    planned.plan.clone()
                };
                Proposal::new(command, &planned.stack.desired, &plan, release, last)
            }
            None => Proposal { command: command.to_string(), changes: Vec::new(), release },
        }
    }

    /// What was last applied, in a gated stack (to tell config changes from drift).
    fn last_applied(&self) -> anyhow::Result<Option<(LastApplied, String)>> {
        if !self.approval.required {
            return Ok(None);
        }
        self.runtime.block_on(self.store().last_applied(&self.scope))
    }

    /// Applies the plan; in a gated stack, records what was applied.
    fn apply(&self, planned: &mut Planned, options: &ApplyOptions, last_etag: Option<&str>) -> anyhow::Result<()> {
        let pending_now = options.apply_immediately && planned.plan.changes.iter().any(|c| !c.pending.is_empty());
        if !planned.plan.has_changes() && !pending_now {
            // Nothing written, not even the placement of a rule from before the pool: it is found
            // where it is each time, and recorded with the next change.
            return Ok(());
        }
        let applied = self.runtime.block_on(infra::apply(self.clients, planned, options))?;
        for note in &applied.notes {
            println!("note: {note}");
        }
        println!("{}: {} resource(s) changed", planned.stack.label, applied.changed.len());
        if self.approval.required {
            let record = LastApplied::of(&planned.stack.desired);
            if let Err(e) = self.runtime.block_on(self.store().record_applied(&self.scope, &record, last_etag)) {
                println!("warning: {e:#}");
            }
        }
        Ok(())
    }
}

/// The AMI a release runs on: the launch template's image, or the environment's AMI record.
/// A release with nothing new to deploy: says why (and tells a fleet run's summary).
fn nothing_to_release(why: &str) -> Option<PlannedRevision> {
    println!("{why}");
    crate::report::note("revision", "unchanged");
    None
}

/// What a fleet run's summary shows of this deploy: the AMI and the revision.
fn note_for_summary(ami: Option<String>, revision: Option<&PlannedRevision>) {
    if let Some(ami) = ami {
        crate::report::note("ami", &ami);
    }
    match revision.map(|r| (r, r.build_inputs())) {
        Some((_, Some(inputs))) => crate::report::note("revision", &format!("to build ({})", &inputs[..16])),
        Some((revision, None)) => crate::report::note("revision", &revision.sha256[..16]),
        None => {}
    }
}

/// The AMI the planned launch template runs.
fn planned_ami(planned: &Planned) -> Option<String> {
    planned.stack.desired.iter().find_map(|d| match &d.resource {
        Resource::LaunchTemplate(lt) => Some(lt.image_id.clone()),
        _ => None,
    })
}

fn ami_of(
    planned: Option<&Planned>,
    runtime: &tokio::runtime::Runtime,
    clients: &Clients,
    platform: &Platform,
    customer: &str,
    env: &str,
) -> anyhow::Result<Option<String>> {
    let from_plan = planned.and_then(planned_ami);
    if from_plan.is_some() {
        return Ok(from_plan);
    }
    let key = vending::ami::AmiRecord::current_key(customer, env);
    let record: Option<vending::ami::AmiRecord> =
        runtime.block_on(vending_aws::s3::get_json(&clients.s3, &platform.state_bucket, &key))?;
    Ok(record.and_then(|r| r.amis.get(&platform.region).cloned()))
}

/// The exit code of a release that succeeded, or failed (the output said why).
fn shipped(shipped: Shipped) -> ExitCode {
    if let Some(sha256) = &shipped.built {
        crate::report::note("revision", &sha256[..16]);
    }
    if shipped.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DEPLOYMENT_FAILED)
    }
}

fn binding(revision: &PlannedRevision, ami: Option<String>, ignore_application_stop_failures: bool) -> ReleaseBinding {
    ReleaseBinding {
        revision_sha256: revision.sha256.clone(),
        build_inputs: revision.build_inputs().map(str::to_string),
        ami,
        kind: if revision.rollback { "rollback" } else { "release" }.into(),
        ignore_application_stop_failures,
    }
}

pub(crate) fn local_flag(local: bool) -> &'static str {
    if local {
        " --local"
    } else {
        ""
    }
}

/// `customer()` and `env()` of a command named by `CUSTOMER ENV`, or in its fleet form by a
/// selection (where they are empty and unused).
macro_rules! named_by_option {
    ($($command:ty),*) => {
        $(impl $command {
            fn customer(&self) -> &str {
                self.customer.as_deref().unwrap_or_default()
            }

            fn env(&self) -> &str {
                self.env.as_deref().unwrap_or_default()
            }
        })*
    };
}
pub(crate) use named_by_option;
named_by_option!(PlanCommand, DeployCommand);

impl RollbackCommand {
    fn customer(&self) -> &str {
        &self.customer
    }

    fn env(&self) -> &str {
        &self.env
    }
}

/// A fleet run of `verb` over the environments `flags` select, each with `args`.
pub(crate) fn run_fleet(
    root: &Path,
    verb: Verb,
    flags: &FleetFlags,
    local: bool,
    args: Vec<String>,
    json: bool,
    no_wait: bool,
) -> anyhow::Result<ExitCode> {
    let fleet = match fleet(root, None, None)? {
        Ok(fleet) => fleet,
        Err(code) => return Ok(code),
    };
    let jobs = crate::fleet::select(&fleet, flags)?;
    let mut args = args;
    if local {
        args.insert(0, "--local".into());
    }
    let run = |approvals: Option<&crate::fleet::ReadApproval>| {
        let stopping = std::cell::Cell::new(false);
        crate::fleet::Run {
            root,
            verb,
            flags,
            jobs: jobs.clone(),
            args: args.clone(),
            json,
            no_wait,
            approvals,
            stopping,
        }
        .run()
    };
    if verb == Verb::Deploy && jobs.iter().any(|j| j.gated) {
        // The requests of gated environments are read here while they wait.
        let (runtime, clients) = connect(root, &fleet, local)?;
        let store = Store { s3: &clients.s3, bucket: &fleet.platform.state_bucket };
        let read = crate::fleet::approval_reader(&runtime, store);
        return run(Some(&read));
    }
    run(None)
}

impl PlanCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        if crate::fleet::one_or_fleet(&self.customer, &self.env, &self.fleet)?.is_none() {
            return run_fleet(root, Verb::Plan, &self.fleet, self.local, Vec::new(), self.json, false);
        }
        let fleet = match fleet(root, Some(self.customer()), Some(self.env()))? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (runtime, clients) = connect(root, &fleet, self.local)?;
        let planned = plan_environment(&runtime, &clients, &fleet, self.customer(), self.env(), self.local)?;
        print_plan(&planned, self.json)?;
        if !self.json {
            topic_notes(&planned);
        }
        Ok(plan_exit(&planned))
    }
}

/// Approvers who have not confirmed their subscription get no e-mail: say so.
fn topic_notes(planned: &Planned) {
    for found in planned.live.found.values() {
        if let Resource::Topic(topic) = &found.resource {
            if !topic.pending.is_empty() {
                println!(
                    "note: not confirmed yet (no approval e-mails until they click the link SNS sent): {}",
                    topic.pending.join(", ")
                );
            }
            if topic.subscribers.iter().all(|s| topic.pending.contains(s)) {
                println!("warning: no approver has confirmed the subscription to the approval topic: nobody is e-mailed when an approval is needed");
            }
        }
    }
}

impl DeployCommand {
    /// The flags each environment of a fleet run gets.
    fn fleet_args(&self) -> anyhow::Result<Vec<String>> {
        if self.approval.approval.is_some() {
            anyhow::bail!("--approval names one environment's request: use it without --all");
        }
        let mut args = Vec::new();
        for (on, flag) in [
            (self.infra_only, "--infra-only"),
            (self.software_only, "--software-only"),
            (self.redeploy, "--redeploy"),
            (self.ignore_application_stop_failures, "--ignore-application-stop-failures"),
            (self.allow_destructive, "--allow-destructive"),
            (self.apply_immediately, "--apply-immediately"),
        ] {
            if on {
                args.push(flag.to_string());
            }
        }
        if let Some(wait) = self.wait_lock.wait_lock {
            args.extend(["--wait-lock".to_string(), humantime::format_duration(wait).to_string()]);
        }
        if let Some(build) = self.build {
            args.extend(["--build".to_string(), build.flag().to_string()]);
        }
        Ok(args)
    }

    /// How to run this deploy again (printed and e-mailed with an approval request).
    fn command_line(&self) -> String {
        let mut flags = String::new();
        if self.software_only {
            flags.push_str(" --software-only");
        }
        if self.infra_only {
            flags.push_str(" --infra-only");
        }
        if let Some(build) = self.build {
            flags.push_str(" --build ");
            flags.push_str(build.flag());
        }
        format!("cargo xtask deploy {} {}{}{flags}", self.customer(), self.env(), local_flag(self.local))
    }

    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        if crate::fleet::one_or_fleet(&self.customer, &self.env, &self.fleet)?.is_none() {
            let args = self.fleet_args()?;
            return run_fleet(root, Verb::Deploy, &self.fleet, self.local, args, self.json, self.approval.no_wait);
        }
        let fleet = match fleet(root, Some(self.customer()), Some(self.env()))? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        // Read, planned and decided again after waiting for another run that held the lock.
        loop {
            if let Some(code) = self.deploy_one(root, &fleet)? {
                return Ok(code);
            }
        }
    }

    /// One attempt of a single environment's deploy; `None`: another run held the lock while
    /// this one had nothing to do, and has let it go: read everything again.
    fn deploy_one(&self, root: &Path, fleet: &Fleet) -> anyhow::Result<Option<ExitCode>> {
        let (runtime, clients) = connect(root, fleet, self.local)?;
        let target = crate::local::target(root, self.local)?;
        let (customer, env) = fleet.environment(self.customer(), self.env()).context("not in the fleet")?;
        let run = Run::environment(&runtime, &clients, root, &fleet.platform, customer, env, self.local);
        let release = Release {
            redeploy: self.redeploy,
            ignore_application_stop_failures: self.ignore_application_stop_failures,
            build_mode: BuildMode::chosen(self.build.map(BuildWhere::mode), &fleet.platform, &target)?,
            ..Release::of(root, &runtime, &clients, fleet, self.customer(), self.env(), &target, &CtrlC)?
        };
        let options = ApplyOptions {
            allow_destructive: self.allow_destructive,
            apply_immediately: self.apply_immediately,
            ..ApplyOptions::default()
        };
        // The lock: where nobody approves, once the plan and the build show something to do
        // (a run with nothing to change writes nothing, not even a lock); in a gated run once
        // the approval arrives (a request may wait an hour, and nobody else is kept out meanwhile).
        let command = format!("deploy {} {}", customer.name, env.name);
        let mut guard = None;
        let replan = || plan_environment(&runtime, &clients, fleet, self.customer(), self.env(), self.local);
        let mut planned = match self.software_only {
            true => None,
            false => {
                let planned = replan()?;
                print_plan(&planned, false)?;
                infra::check(&planned, &options)?;
                Some(run.topic_first(planned, &replan)?)
            }
        };
        let prepared = match self.infra_only {
            true => None,
            false => match release.prepare(!self.software_only)? {
                Prepared::BuildFailed => return Ok(Some(ExitCode::from(output::EXIT_PROBLEMS))),
                Prepared::Nothing(why) => nothing_to_release(&why),
                Prepared::Ship(revision) => Some(revision),
            },
        };
        let pending_now = options.apply_immediately
            && planned.as_ref().is_some_and(|p| p.plan.changes.iter().any(|c| !c.pending.is_empty()));
        let to_do = planned.as_ref().is_some_and(|p| p.plan.has_changes()) || prepared.is_some() || pending_now;
        // Nothing to do: no lock, and nobody asked. Unless another run holds the lock: it may be
        // changing what this run just read, so this one waits for it (--wait-lock) and reads
        // everything again, or is refused.
        if !to_do && run.lock_held()? {
            return match run.wait_free(self.wait_lock.wait_lock)? {
                Some(code) => Ok(Some(code)),
                None => Ok(None),
            };
        }
        if !env.approval.required && to_do {
            if let Some(code) = run.lock_into(&mut guard, &command, self.wait_lock.wait_lock)? {
                return Ok(Some(code));
            }
            // Another run may have changed things before this one had the lock: plan again.
            if let Some(printed) = planned.take() {
                let fresh = replan()?;
                if fresh.plan != printed.plan {
                    println!("{}: the plan changed while the lock was taken; now:", printed.stack.label);
                    print_plan(&fresh, false)?;
                    infra::check(&fresh, &options)?;
                }
                planned = Some(fresh);
            }
        }
        let ami = match &prepared {
            Some(_) => ami_of(planned.as_ref(), &runtime, &clients, &fleet.platform, &customer.name, &env.name)?,
            None => None,
        };
        note_for_summary(ami.clone().or_else(|| planned.as_ref().and_then(planned_ami)), prepared.as_ref());
        let last = run.last_applied()?;
        let bind = || prepared.as_ref().map(|r| binding(r, ami.clone(), self.ignore_application_stop_failures));
        let proposal = run.proposal("deploy", planned.as_ref(), bind(), last.as_ref().map(|l| &l.0), &options);
        let gate = run.gate(self.command_line(), &self.approval);
        let mut replanned = None;
        let mut again = || -> anyhow::Result<Proposal> {
            let fresh = match self.software_only {
                true => None,
                false => Some(replan()?),
            };
            let proposal = run.proposal("deploy", fresh.as_ref(), bind(), last.as_ref().map(|l| &l.0), &options);
            replanned = fresh;
            Ok(proposal)
        };
        let mut take_lock = || run.lock_into(&mut guard, &command, self.wait_lock.wait_lock);
        let used = match gate.pass(proposal, &mut take_lock, &mut again)? {
            Pass::Open => None,
            Pass::Approved(used) => Some(used),
            Pass::Stop(code) => return Ok(Some(code)),
        };
        if replanned.is_some() {
            planned = replanned;
        }
        let options = run.applying(&options, guard.as_ref())?;
        let outcome = (|| {
            if let Some(planned) = planned.as_mut() {
                infra::check(planned, &options)?;
                run.apply(planned, &options, last.as_ref().map(|l| l.1.as_str()))?;
            }
            if prepared.is_some() {
                run.still_held(guard.as_ref())?;
            }
            match &prepared {
                Some(revision) => release.ship(revision).map(shipped),
                None => Ok(ExitCode::SUCCESS),
            }
        })();
        if let Some(used) = &used {
            gate.finish(used, &outcome);
        }
        outcome.map(Some)
    }
}

impl RollbackCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match fleet(root, Some(self.customer()), Some(self.env()))? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (runtime, clients) = connect(root, &fleet, self.local)?;
        let target = crate::local::target(root, self.local)?;
        let (customer, env) = fleet.environment(self.customer(), self.env()).context("not in the fleet")?;
        let release = Release {
            ignore_application_stop_failures: self.ignore_application_stop_failures,
            ..Release::of(root, &runtime, &clients, &fleet, self.customer(), self.env(), &target, &CtrlC)?
        };
        let revision = match release.prepare_rollback(self.to.as_deref())? {
            Prepared::Ship(revision) => revision,
            Prepared::Nothing(why) => {
                println!("{why}");
                return Ok(ExitCode::SUCCESS);
            }
            Prepared::BuildFailed => return Ok(ExitCode::from(output::EXIT_PROBLEMS)),
        };
        let run = Run::environment(&runtime, &clients, root, &fleet.platform, customer, env, self.local);
        let ami = ami_of(None, &runtime, &clients, &fleet.platform, &customer.name, &env.name)?;
        let ignore = self.ignore_application_stop_failures;
        let proposal_of = |revision: Option<&PlannedRevision>| {
            let release = revision.map(|r| binding(r, ami.clone(), ignore));
            run.proposal("rollback", None, release, None, &ApplyOptions::default())
        };
        let command = format!("rollback {} {}", customer.name, env.name);
        let mut guard = None;
        let mut revision = revision;
        if !env.approval.required {
            if let Some(code) = run.lock_into(&mut guard, &command, self.wait_lock.wait_lock)? {
                return Ok(code);
            }
            // Found again under the lock: another release or rollback may have run meanwhile.
            revision = match release.prepare_rollback(self.to.as_deref())? {
                Prepared::Ship(revision) => revision,
                Prepared::Nothing(why) => {
                    println!("{why}");
                    return Ok(ExitCode::SUCCESS);
                }
                Prepared::BuildFailed => return Ok(ExitCode::from(output::EXIT_PROBLEMS)),
            };
        }
        let proposal = proposal_of(Some(&revision));
        let to = self.to.as_deref().map(|t| format!(" --to {t}")).unwrap_or_default();
        let command_line = format!("cargo xtask rollback {} {}{}{to}", customer.name, env.name, local_flag(run.local));
        let gate = run.gate(command_line, &self.approval);
        // After the approval the target is found again: another release meanwhile changes it.
        let mut again = || match release.prepare_rollback(self.to.as_deref())? {
            Prepared::Ship(fresh) => Ok(proposal_of(Some(&fresh))),
            _ => Ok(proposal_of(None)),
        };
        let mut take_lock = || run.lock_into(&mut guard, &command, self.wait_lock.wait_lock);
        let used = match gate.pass(proposal, &mut take_lock, &mut again)? {
            Pass::Open => None,
            Pass::Approved(used) => Some(used),
            Pass::Stop(code) => return Ok(code),
        };
        run.applying(&ApplyOptions::default(), guard.as_ref())?;
        let outcome = run.still_held(guard.as_ref()).and_then(|()| release.ship(&revision).map(shipped));
        if let Some(used) = &used {
            gate.finish(used, &outcome);
        }
        outcome
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
        let shared = vending::pool::shared_environments(&fleet);
        let replan = || {
            runtime.block_on(async {
                let stack = infra::platform_stack(&clients, &fleet.platform, &shared, local).await?;
                infra::plan(&clients, stack).await
            })
        };
        let planned = replan()?;
        match self.action {
            PlatformAction::Plan { json, .. } => {
                print_plan(&planned, json)?;
                if !json {
                    topic_notes(&planned);
                    print_pool(&runtime, &clients, &fleet, planned.stack.resolved.shared_members)?;
                }
                Ok(plan_exit(&planned))
            }
            PlatformAction::Deploy { allow_destructive, approval, wait_lock, .. } => {
                let run = Run {
                    runtime: &runtime,
                    clients: &clients,
                    root,
                    platform: &fleet.platform,
                    scope: Scope::Platform,
                    approval: fleet.platform.approval,
                    topic: &fleet.platform.approval_topic,
                    local,
                };
                let options = ApplyOptions { allow_destructive, ..ApplyOptions::default() };
                // Locks and approval requests live in the state bucket: on a new account it is
                // made first, exactly as this deploy would make it (as `ami` does).
                let made = runtime.block_on(vending_aws::s3::ensure_state_bucket(&clients.s3, &fleet.platform))?;
                let mut guard = None;
                // Read again what the bucket's creation changed.
                let mut planned = if made { replan()? } else { planned };
                // Nothing to change while another run holds the lock: wait for it (or be
                // refused) and plan again, as `deploy` does.
                while !planned.plan.has_changes() && run.lock_held()? {
                    if let Some(code) = run.wait_free(wait_lock.wait_lock)? {
                        return Ok(code);
                    }
                    planned = replan()?;
                }
                // Ungated, the lock is taken when there is something to change.
                if !run.approval.required && planned.plan.has_changes() {
                    if let Some(code) = run.lock_into(&mut guard, "platform deploy", wait_lock.wait_lock)? {
                        return Ok(code);
                    }
                }
                // Read again what the lock's wait may have changed.
                let planned = if guard.is_some() { replan()? } else { planned };
                print_plan(&planned, false)?;
                infra::check(&planned, &options)?;
                let mut planned = run.topic_first(planned, &replan)?;
                let last = run.last_applied()?;
                let proposal =
                    run.proposal("platform deploy", Some(&planned), None, last.as_ref().map(|l| &l.0), &options);
                let gate = run.gate(format!("cargo xtask platform deploy{}", local_flag(local)), &approval);
                let mut replanned = None;
                let mut again = || -> anyhow::Result<Proposal> {
                    let fresh = replan()?;
                    let proposal =
                        run.proposal("platform deploy", Some(&fresh), None, last.as_ref().map(|l| &l.0), &options);
                    replanned = Some(fresh);
                    Ok(proposal)
                };
                let mut take_lock = || run.lock_into(&mut guard, "platform deploy", wait_lock.wait_lock);
                let used = match gate.pass(proposal, &mut take_lock, &mut again)? {
                    Pass::Open => None,
                    Pass::Approved(used) => Some(used),
                    Pass::Stop(code) => return Ok(code),
                };
                if let Some(fresh) = replanned {
                    planned = fresh;
                }
                let options = run.applying(&options, guard.as_ref())?;
                let outcome =
                    run.apply(&mut planned, &options, last.as_ref().map(|l| l.1.as_str())).map(|()| ExitCode::SUCCESS);
                if let Some(used) = &used {
                    gate.finish(used, &outcome);
                }
                if outcome.is_ok() {
                    print_pool(&runtime, &clients, &fleet, planned.stack.resolved.shared_members)?;
                }
                outcome
            }
        }
    }
}
