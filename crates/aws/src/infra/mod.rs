//! Infrastructure: reads the live state of a stack (a customer environment, or the platform)
//! into the core's typed resources, plans with `vending::plan::diff`, and applies a plan in the stack's
//! order. Everything is found by its deterministic name (or, for listener rules, by its tags)
//! before anything is created, so a re-run after an interruption converges instead of
//! duplicating; the emulator would happily create a second load balancer of the same name.

mod certificates;
mod codebuild;
pub(crate) mod codedeploy;
mod compute;
mod database;
pub(crate) mod elb;
mod notify;
pub mod pool;
mod resolve;
pub(crate) mod storage;

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use aws_config::SdkConfig;
use vending::ami::AmiRecord;
use vending::config::model::{Customer, Environment, Platform, Tags};
use vending::plan::{self, Action, Desired, Kind, Plan, Resolved, Resource};

use crate::calls::CallLog;

pub use certificates::self_signed_pem;
pub use database::database_found;
pub use notify::publish;

/// The approval topic's ARN and subscribers, if it exists.
pub async fn read_approval_topic(
    clients: &Clients,
    region: &str,
    name: &str,
) -> anyhow::Result<Option<(String, plan::Topic)>> {
    Ok(match notify::read_topic(clients, region, name).await? {
        Some(Found { resource: Resource::Topic(topic), id, .. }) => Some((id, topic)),
        _ => None,
    })
}

/// One client per service, all from the same configuration (and, for tests and benchmarks, the
/// same call log).
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub rds: aws_sdk_rds::Client,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub acm: aws_sdk_acm::Client,
    pub sts: aws_sdk_sts::Client,
    pub sns: aws_sdk_sns::Client,
    pub codebuild: aws_sdk_codebuild::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// On the local emulator: hints name commands with `--local`.
    pub local: bool,
}

impl Clients {
    /// ` --local` on the emulator, for the commands hints name.
    pub fn flag(&self) -> &'static str {
        if self.local {
            " --local"
        } else {
            ""
        }
    }
}

impl Clients {
    pub fn new(config: &SdkConfig, local: bool, log: Option<&CallLog>) -> Clients {
        macro_rules! client {
            ($sdk:ident) => {{
                let mut builder = $sdk::config::Builder::from(config);
                if let Some(log) = log {
                    builder = builder.interceptor(log.clone());
                }
                $sdk::Client::from_conf(builder.build())
            }};
        }
        Clients {
            s3: crate::s3::logged_client(config, local, log),
            ec2: client!(aws_sdk_ec2),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            asg: client!(aws_sdk_autoscaling),
            rds: client!(aws_sdk_rds),
            codedeploy: client!(aws_sdk_codedeploy),
            acm: client!(aws_sdk_acm),
            sts: client!(aws_sdk_sts),
            sns: client!(aws_sdk_sns),
            codebuild: client!(aws_sdk_codebuild),
            logs: client!(aws_sdk_cloudwatchlogs),
            local,
        }
    }
}

/// What a stack is for: errors and output name it.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `acme/prod`, or `platform`.
    pub label: String,
    pub region: String,
    pub local: bool,
    pub resolved: Resolved,
    /// The shared listener's ARN, when a rule goes on it (found, never created here).
    pub shared_listener_arn: Option<String>,
    /// Where the rule goes on the pool of shared load balancers (recorded first when new).
    pub placement: Option<pool::Placement>,
    pub desired: Vec<Desired>,
    /// Tags for a self-signed certificate that `apply` imports first (local mode only).
    pub certificate_tags: Tags,
}

/// A live resource: its settings as the plan compares them, its ARN or id, and what applying a
/// change needs to know (a rule's priority, a launch template's version).
#[derive(Debug, Clone)]
pub struct Found {
    pub resource: Resource,
    pub id: String,
    pub extra: BTreeMap<String, String>,
}

impl Found {
    fn new(resource: Resource, id: String) -> Found {
        Found { resource, id, extra: BTreeMap::new() }
    }
}

/// The live state of a resource that exists, as its struct, for applying a change to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current<'a, R> {
    pub id: &'a str,
    pub live: &'a R,
}

#[derive(Debug, Clone, Default)]
pub struct Live {
    pub found: BTreeMap<(Kind, String), Found>,
}

impl Live {
    fn id(&self, kind: Kind, name: &str) -> Option<&str> {
        self.found.get(&(kind, name.to_string())).map(|f| f.id.as_str())
    }

    pub fn resources(&self) -> BTreeMap<(Kind, String), Resource> {
        self.found.iter().map(|(k, f)| (k.clone(), f.resource.clone())).collect()
    }
}

/// A stack read and compared: what `plan` prints and `deploy` applies.
pub struct Planned {
    pub stack: Stack,
    pub live: Live,
    pub plan: Plan,
}

/// How `deploy` applies a plan.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Carry out replacements that lose data or traffic (the plan marks them).
    pub allow_destructive: bool,
    /// Stop after this many resources were changed (tests simulate an interrupted deploy).
    pub stop_after: Option<usize>,
    /// Apply database changes now, with those RDS holds for the maintenance window
    /// (`ApplyImmediately`); by default they wait for the window.
    pub apply_immediately: bool,
    /// Apply only the changes of this kind (the approval topic, set up before a request).
    pub only: Option<Kind>,
    /// The lock this run holds: checked before each change, so a run whose lock was taken over
    /// stops instead of racing the new holder.
    pub held: Option<crate::lock::Held>,
    /// Whether the operator asked to stop (Ctrl-C): checked before each change.
    pub interrupted: Option<Interrupted>,
}

/// A question asked before each change: has the operator asked to stop?
#[derive(Clone)]
pub struct Interrupted(pub std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupted(..)")
    }
}

/// What applying did, for the output.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub changed: Vec<String>,
    pub notes: Vec<String>,
}

/// The customer environment's stack: its AMI record, the ids its lookups resolve to, and the
/// resources it should have.
pub async fn environment_stack(
    clients: &Clients,
    platform: &Platform,
    customer: &Customer,
    env: &Environment,
    local: bool,
) -> anyhow::Result<Stack> {
    let label = format!("{}/{}", customer.name, env.name);
    let record_key = AmiRecord::current_key(&customer.name, &env.name);
    let record: Option<AmiRecord> = crate::s3::get_json(&clients.s3, &platform.state_bucket, &record_key)
        .await
        .with_context(|| format!("{label}: cannot read its AMI record"))?;
    let Some(record) = record else {
        let flag = if local { " --local" } else { "" };
        bail!(
            "{label} has no AMI yet (no s3://{}/{record_key}): build one with `cargo xtask ami {} {}{flag}`",
            platform.state_bucket,
            customer.name,
            env.name
        );
    };
    if !record.amis.contains_key(&platform.region) {
        bail!(
            "{label}: its AMI record has no image in {}: rebuild it with `cargo xtask ami {} {}{}`",
            platform.region,
            customer.name,
            env.name,
            clients.flag()
        );
    }
    let mut resolved = resolve::environment(clients, platform, customer, env, local).await.context(label.clone())?;
    let (shared_listener_arn, placement) = match env.routing {
        vending::config::model::Routing::SharedAlb => {
            let placement =
                pool::placement(clients, platform, &customer.name, &env.name).await.context(label.clone())?;
            resolved.shared_load_balancer = placement.as_ref().map(|p| p.load_balancer.clone());
            let member = resolved.shared_load_balancer.as_deref();
            (Some(resolve::shared_listener(clients, platform, member).await.context(label.clone())?), placement)
        }
        vending::config::model::Routing::DedicatedAlb => (None, None),
    };
    let desired = plan::desired(platform, customer, env, &record, &resolved);
    Ok(Stack {
        label,
        region: platform.region.clone(),
        local,
        resolved,
        shared_listener_arn,
        placement,
        desired,
        certificate_tags: platform.tags.clone(),
    })
}

/// The platform's stack: the state bucket and the shared load balancers (unless the platform file
/// names an existing listener): as many as the `shared_environments` (`customer/env`) need, each
/// placed where it is or would go.
pub async fn platform_stack(
    clients: &Clients,
    platform: &Platform,
    shared_environments: &[String],
    local: bool,
) -> anyhow::Result<Stack> {
    let mut resolved = resolve::platform(clients, platform, local).await.context("platform")?;
    let (placements, _) = pool::read(clients, &platform.state_bucket).await?;
    let occupancy = pool::occupancy(clients, platform, &placements).await?;
    let wanted = shared_environments.iter().map(String::as_str);
    resolved.shared_members = occupancy.members_for(wanted, platform.shared_alb.rules_per_alb);
    let desired = plan::platform_desired(platform, &resolved);
    Ok(Stack {
        label: "platform".into(),
        region: platform.region.clone(),
        local,
        resolved,
        shared_listener_arn: None,
        placement: None,
        desired,
        certificate_tags: platform.tags.clone(),
    })
}

/// Reads every resource of the stack and compares it with the desired state.
pub async fn plan(clients: &Clients, stack: Stack) -> anyhow::Result<Planned> {
    let mut live = Live::default();
    for desired in &stack.desired {
        let found = read(clients, &stack, &live, desired)
            .await
            .with_context(|| format!("{}: cannot read {} {}", stack.label, desired.kind().word(), desired.name))?;
        if let Some(found) = found {
            live.found.insert((desired.kind(), desired.name.clone()), found);
        }
    }
    let plan = plan::diff(&stack.desired, &live.resources());
    Ok(Planned { stack, live, plan })
}

async fn read(clients: &Clients, stack: &Stack, live: &Live, d: &Desired) -> anyhow::Result<Option<Found>> {
    let name = d.name.as_str();
    match &d.resource {
        Resource::Topic(_) => notify::read_topic(clients, &stack.region, name).await,
        Resource::Bucket(_) => storage::read_bucket(clients, name).await,
        Resource::TargetGroup(_) => elb::read_target_group(clients, name).await,
        Resource::LoadBalancer(_) => elb::read_load_balancer(clients, name).await,
        Resource::HttpListener(l) => elb::read_listener(clients, live, name, l, Resource::HttpListener).await,
        Resource::HttpsListener(l) => elb::read_listener(clients, live, name, l, Resource::HttpsListener).await,
        Resource::ListenerRule(rule) => elb::read_rule(clients, stack, live, name, rule).await,
        Resource::LaunchTemplate(_) => compute::read_launch_template(clients, name).await,
        Resource::AutoScalingGroup(_) => compute::read_auto_scaling_group(clients, live, name).await,
        Resource::ScalingPolicy(policy) => compute::read_scaling_policy(clients, name, policy).await,
        Resource::DbSubnetGroup(_) => database::read_subnet_group(clients, name).await,
        Resource::Database(_) => database::read_database(clients, name).await,
        Resource::CodeDeployApplication(_) => codedeploy::read_application(clients, name).await,
        Resource::DeploymentGroup(_) => codedeploy::read_deployment_group(clients, name).await,
        Resource::LogGroup(_) => codebuild::read_log_group(clients, name).await,
        Resource::CodeBuildProject(_) => codebuild::read_project(clients, name).await,
    }
}

/// Applies a plan in the stack's order. Destructive replacements are refused before anything is
/// touched unless allowed. After each resource, `live` knows its id, so later resources (a
/// listener on a new load balancer) find it.
pub async fn apply(clients: &Clients, planned: &mut Planned, options: &ApplyOptions) -> anyhow::Result<Applied> {
    let label = planned.stack.label.clone();
    check(planned, options)?;
    if options.apply_immediately && options.only.is_none() {
        planned.plan = std::mem::take(&mut planned.plan).with_pending_applied_now();
    }
    if options.only.is_none() {
        import_pending_certificate(clients, &mut planned.stack).await.context(label.clone())?;
    }
    // The place on the shared load balancers is taken before the rule that uses it is made.
    if let Some(placement) = planned.stack.placement.as_ref().filter(|p| p.new) {
        if options.only.is_none_or(|kind| kind == Kind::ListenerRule) {
            pool::record(clients, placement).await.context(label.clone())?;
        }
    }
    let mut applied = Applied::default();
    let changes = planned.plan.changes.clone();
    for (desired, change) in planned.stack.desired.clone().iter().zip(changes) {
        if change.action == Action::Unchanged || options.only.is_some_and(|kind| kind != change.kind) {
            continue;
        }
        if options.stop_after.is_some_and(|limit| applied.changed.len() >= limit) {
            applied.notes.push(format!("stopped after {} changes, as asked", applied.changed.len()));
            return Ok(applied);
        }
        if options.interrupted.as_ref().is_some_and(|asked| (asked.0)()) {
            bail!(
                "{label}: interrupted: stopped after {} change(s), which are kept; deploy again to finish",
                applied.changed.len()
            );
        }
        if let Some(held) = &options.held {
            crate::lock::check_held(&clients.s3, held).await?;
        }
        let what = format!("{} {}", desired.kind().word(), desired.name);
        let found = change_one(clients, &planned.stack, &mut planned.live, desired, &change.action, options, &mut applied.notes)
            .await
            .with_context(|| {
                format!(
                    "{label}: cannot {} {what} ({} change(s) before it were made and are kept; fix the cause and deploy again to continue)",
                    verb(&change.action),
                    applied.changed.len()
                )
            })?;
        planned.live.found.insert((desired.kind(), desired.name.clone()), found);
        println!("{label} | {} {what}", past(&change.action));
        applied.changed.push(what);
    }
    Ok(applied)
}

/// Refuses a plan that cannot or may not be applied, before anything is changed (and before an
/// approval is asked for it): changes AWS cannot make, and destructive ones unless allowed.
pub fn check(planned: &Planned, options: &ApplyOptions) -> anyhow::Result<()> {
    let label = &planned.stack.label;
    let in_scope = |c: &&plan::Change| options.only.is_none_or(|kind| kind == c.kind);
    let impossible: Vec<String> = planned
        .plan
        .refused()
        .filter(in_scope)
        .map(|c| format!("{} {}: {}", c.kind.word(), c.name, c.refused.as_deref().unwrap_or_default()))
        .collect();
    if !impossible.is_empty() {
        bail!(
            "{label}: nothing was changed, since the plan asks for what AWS cannot do:\n  {}",
            impossible.join("\n  ")
        );
    }
    let refused: Vec<String> =
        planned.plan.destructive().filter(in_scope).map(|c| format!("{} {}", c.kind.word(), c.name)).collect();
    if !refused.is_empty() && !options.allow_destructive {
        bail!(
            "{label}: the plan replaces {} (data or traffic would be lost); nothing was changed. Review the plan, then deploy with --allow-destructive if that is what you want",
            refused.join(", ")
        );
    }
    Ok(())
}

/// In local mode a plan only names the self-signed certificate a listener needs; applying
/// imports it, and the listener gets its ARN.
async fn import_pending_certificate(clients: &Clients, stack: &mut Stack) -> anyhow::Result<()> {
    let Some(marker) = stack.resolved.certificate_arn.clone() else { return Ok(()) };
    let Some(domain) = certificates::pending_import(&marker) else { return Ok(()) };
    let arn = certificates::import_self_signed(clients, domain, &stack.certificate_tags).await?;
    for d in &mut stack.desired {
        if let Resource::HttpsListener(listener) = &mut d.resource {
            if listener.certificate.as_ref() == Some(&marker) {
                listener.certificate = Some(arn.clone());
            }
        }
    }
    stack.resolved.certificate_arn = Some(arn);
    Ok(())
}

async fn change_one(
    clients: &Clients,
    stack: &Stack,
    live: &mut Live,
    d: &Desired,
    action: &Action,
    options: &ApplyOptions,
    notes: &mut Vec<String>,
) -> anyhow::Result<Found> {
    let key = (d.kind(), d.name.clone());
    let changed: Vec<String> = match action {
        Action::Update(fields) | Action::Replace(fields) => fields.iter().map(|f| f.field.clone()).collect(),
        _ => Vec::new(),
    };
    if let (Action::Replace(_), Some(current)) = (action, live.found.get(&key)) {
        delete(clients, d, &current.id).await?;
        live.found.remove(&key);
    }
    let found = if matches!(action, Action::Update(_)) { live.found.get(&key).cloned() } else { None };
    let name = d.name.as_str();
    /// The live state of this resource as its struct, when it is being updated.
    macro_rules! current {
        ($kind:ident) => {
            match &found {
                Some(Found { resource: Resource::$kind(r), id, .. }) => Some(Current { id: id.as_str(), live: r }),
                _ => None,
            }
        };
    }
    match &d.resource {
        Resource::Topic(topic) => {
            notes.extend(notify::apply_topic(clients, &stack.region, name, topic, current!(Topic)).await?);
        }
        Resource::Bucket(b) => {
            storage::apply_bucket(&clients.s3, &stack.region, name, b, current!(Bucket), &changed).await?
        }
        Resource::TargetGroup(tg) => {
            elb::apply_target_group(clients, name, tg, current!(TargetGroup), &changed).await?
        }
        Resource::LoadBalancer(lb) => {
            elb::apply_load_balancer(clients, name, lb, current!(LoadBalancer), &changed).await?
        }
        Resource::HttpListener(l) => elb::apply_listener(clients, live, name, l, current!(HttpListener)).await?,
        Resource::HttpsListener(l) => elb::apply_listener(clients, live, name, l, current!(HttpsListener)).await?,
        Resource::ListenerRule(rule) => {
            elb::apply_rule(clients, stack, live, name, rule, current!(ListenerRule)).await?
        }
        Resource::LaunchTemplate(lt) => {
            compute::apply_launch_template(clients, name, lt, current!(LaunchTemplate), &changed).await?;
            // A new launch template version reaches running instances only when they are replaced.
            if found.is_some() && changed.iter().any(|f| f != "tags") {
                let group = stack.desired.iter().find(|g| match &g.resource {
                    Resource::AutoScalingGroup(group) => group.launch_template_name() == name,
                    _ => false,
                });
                if let Some(group) = group.filter(|g| live.id(Kind::AutoScalingGroup, &g.name).is_some()) {
                    compute::roll_instances(clients, stack, &group.name, notes).await?;
                }
            }
        }
        Resource::AutoScalingGroup(group) => {
            compute::apply_auto_scaling_group(clients, live, name, group, current!(AutoScalingGroup), &changed).await?
        }
        Resource::ScalingPolicy(policy) => compute::apply_scaling_policy(clients, stack, live, name, policy).await?,
        Resource::DbSubnetGroup(group) => {
            database::apply_subnet_group(clients, name, group, current!(DbSubnetGroup), &changed).await?
        }
        Resource::Database(db) => {
            let current = current!(Database);
            let note =
                database::apply_database(clients, name, db, current, &changed, options.apply_immediately).await?;
            notes.extend(note);
        }
        Resource::CodeDeployApplication(app) => codedeploy::apply_application(clients, name, app).await?,
        Resource::DeploymentGroup(group) => {
            codedeploy::apply_deployment_group(clients, stack, live, name, group, found.is_some()).await?
        }
        Resource::LogGroup(group) => codebuild::apply_log_group(clients, name, group, current!(LogGroup)).await?,
        Resource::CodeBuildProject(project) => {
            codebuild::apply_project(clients, name, project, found.is_some()).await?
        }
    }
    // Read back what AWS now reports: the next resource may need its id, and a later plan starts
    // from it.
    read(clients, stack, live, d)
        .await?
        .with_context(|| format!("AWS does not report {} {} after the change", d.kind().word(), d.name))
}

/// Deletes a resource that must be replaced (only after `--allow-destructive`).
async fn delete(clients: &Clients, d: &Desired, id: &str) -> anyhow::Result<()> {
    match d.kind() {
        Kind::LoadBalancer => elb::delete_load_balancer(clients, id).await,
        Kind::TargetGroup => elb::delete_target_group(clients, id).await,
        Kind::Database => database::delete_database(clients, &d.name).await,
        other => bail!(
            "replacing a {} is not automated: change it by hand in the AWS console, or restore the setting in the config",
            other.word()
        ),
    }
}

fn verb(action: &Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update(_) => "update",
        Action::Replace(_) => "replace",
        Action::Unchanged => "check",
    }
}

fn past(action: &Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update(_) => "updated",
        Action::Replace(_) => "replaced",
        Action::Unchanged => "checked",
    }
}

/// The service's error code, to tell "not found" from real failures.
pub(crate) fn code<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code())
}

/// An SDK error as a sentence (with the service's code and message).
pub fn failed<E, R>(what: &str, error: aws_sdk_s3::error::SdkError<E, R>) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    anyhow::anyhow!("{what}: {}", crate::describe_error(&error))
}

/// Makes a resource's tags exactly `wanted`: `put` sets (adds or overwrites) them all, then
/// `remove` drops the ones `old` had that are no longer wanted, if any. Every service that tags by
/// key is reconciled this way, only the calls differ (S3's PutBucketTagging replaces the whole
/// set instead).
pub(crate) async fn retag<R, F>(
    wanted: &plan::Tags,
    old: &plan::Tags,
    put: impl std::future::Future<Output = anyhow::Result<()>>,
    remove: R,
) -> anyhow::Result<()>
where
    R: FnOnce(plan::Tags) -> F,
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    put.await?;
    let stale: plan::Tags =
        old.iter().filter(|(k, _)| !wanted.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !stale.is_empty() {
        remove(stale).await?;
    }
    Ok(())
}

/// Tags as the plan compares them (AWS's own `aws:` tags left out).
pub(crate) fn live_tags(tags: impl IntoIterator<Item = (String, String)>) -> plan::Tags {
    tags.into_iter().filter(|(k, _)| !k.starts_with("aws:")).collect()
}

pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}
