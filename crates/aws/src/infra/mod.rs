//! Infrastructure: reads the live state of a stack (a customer environment, or the platform)
//! into the core's field maps, plans with `vending::plan::diff`, and applies a plan in the stack's
//! order. Everything is found by its deterministic name (or, for listener rules, by its tags)
//! before anything is created, so a re-run after an interruption converges instead of
//! duplicating; the emulator would happily create a second load balancer of the same name.

mod certificates;
mod codedeploy;
mod compute;
mod database;
mod elb;
mod resolve;
pub(crate) mod storage;

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use aws_config::SdkConfig;
use vending::ami::AmiRecord;
use vending::config::model::{Customer, Environment, Platform, Tags};
use vending::plan::{self, Action, Desired, Kind, Plan, Resolved};

use crate::calls::CallLog;

pub use certificates::self_signed_pem;
pub use database::database_found;

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
    pub desired: Vec<Desired>,
    /// Tags for a self-signed certificate that `apply` imports first (local mode only).
    pub certificate_tags: Tags,
}

/// A live resource: its settings as the plan compares them, its ARN or id, and what applying a
/// change needs to know (a rule's priority, a launch template's version).
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub fields: BTreeMap<String, String>,
    pub id: String,
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Live {
    pub found: BTreeMap<(Kind, String), Found>,
}

impl Live {
    fn id(&self, kind: Kind, name: &str) -> Option<&str> {
        self.found.get(&(kind, name.to_string())).map(|f| f.id.as_str())
    }

    pub fn fields(&self) -> BTreeMap<(Kind, String), BTreeMap<String, String>> {
        self.found.iter().map(|(k, f)| (k.clone(), f.fields.clone())).collect()
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
        bail!("{label}: its AMI record has no image in {}: rebuild it with `cargo xtask ami`", platform.region);
    }
    let resolved = resolve::environment(clients, platform, customer, env, local).await.context(label.clone())?;
    let shared_listener_arn = match env.routing {
        vending::config::model::Routing::SharedAlb => {
            Some(resolve::shared_listener(clients, platform).await.context(label.clone())?)
        }
        vending::config::model::Routing::DedicatedAlb => None,
    };
    let desired = plan::desired(platform, customer, env, &record, &resolved);
    Ok(Stack {
        label,
        region: platform.region.clone(),
        local,
        resolved,
        shared_listener_arn,
        desired,
        certificate_tags: platform.tags.clone(),
    })
}

/// The platform's stack: the state bucket and the shared load balancer (unless the platform file
/// names an existing listener).
pub async fn platform_stack(clients: &Clients, platform: &Platform, local: bool) -> anyhow::Result<Stack> {
    let resolved = resolve::platform(clients, platform, local).await.context("platform")?;
    let desired = plan::platform_desired(platform, &resolved);
    Ok(Stack {
        label: "platform".into(),
        region: platform.region.clone(),
        local,
        resolved,
        shared_listener_arn: None,
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
            .with_context(|| format!("{}: cannot read {} {}", stack.label, kind_word(desired.kind), desired.name))?;
        if let Some(found) = found {
            live.found.insert((desired.kind, desired.name.clone()), found);
        }
    }
    let plan = plan::diff(&stack.desired, &live.fields());
    Ok(Planned { stack, live, plan })
}

async fn read(clients: &Clients, stack: &Stack, live: &Live, d: &Desired) -> anyhow::Result<Option<Found>> {
    match d.kind {
        Kind::Bucket => storage::read_bucket(clients, d).await,
        Kind::TargetGroup => elb::read_target_group(clients, d).await,
        Kind::LoadBalancer => elb::read_load_balancer(clients, d).await,
        Kind::HttpListener | Kind::HttpsListener => elb::read_listener(clients, live, d).await,
        Kind::ListenerRule => elb::read_rule(clients, stack, live, d).await,
        Kind::LaunchTemplate => compute::read_launch_template(clients, d).await,
        Kind::AutoScalingGroup => compute::read_auto_scaling_group(clients, live, d).await,
        Kind::ScalingPolicy => compute::read_scaling_policy(clients, d).await,
        Kind::DbSubnetGroup => database::read_subnet_group(clients, d).await,
        Kind::Database => database::read_database(clients, d).await,
        Kind::CodeDeployApplication => codedeploy::read_application(clients, d).await,
        Kind::DeploymentGroup => codedeploy::read_deployment_group(clients, d).await,
    }
}

/// Applies a plan in the stack's order. Destructive replacements are refused before anything is
/// touched unless allowed. After each resource, `live` knows its id, so later resources (a
/// listener on a new load balancer) find it.
pub async fn apply(clients: &Clients, planned: &mut Planned, options: &ApplyOptions) -> anyhow::Result<Applied> {
    let label = planned.stack.label.clone();
    let impossible: Vec<String> = planned
        .plan
        .refused()
        .map(|c| format!("{} {}: {}", kind_word(c.kind), c.name, c.refused.as_deref().unwrap_or_default()))
        .collect();
    if !impossible.is_empty() {
        bail!(
            "{label}: nothing was changed, since the plan asks for what AWS cannot do:\n  {}",
            impossible.join("\n  ")
        );
    }
    if options.apply_immediately {
        planned.plan = std::mem::take(&mut planned.plan).with_pending_applied_now();
    }
    let refused: Vec<String> =
        planned.plan.destructive().map(|c| format!("{} {}", kind_word(c.kind), c.name)).collect();
    if !refused.is_empty() && !options.allow_destructive {
        bail!(
            "{label}: the plan replaces {} (data or traffic would be lost); nothing was changed. Review the plan, then deploy with --allow-destructive if that is what you want",
            refused.join(", ")
        );
    }
    import_pending_certificate(clients, &mut planned.stack).await.context(label.clone())?;
    let mut applied = Applied::default();
    let changes = planned.plan.changes.clone();
    for (desired, change) in planned.stack.desired.clone().iter().zip(changes) {
        if change.action == Action::Unchanged {
            continue;
        }
        if options.stop_after.is_some_and(|limit| applied.changed.len() >= limit) {
            applied.notes.push(format!("stopped after {} changes, as asked", applied.changed.len()));
            return Ok(applied);
        }
        let what = format!("{} {}", kind_word(desired.kind), desired.name);
        let found = change_one(clients, &planned.stack, &mut planned.live, desired, &change.action, options, &mut applied.notes)
            .await
            .with_context(|| {
                format!(
                    "{label}: cannot {} {what} ({} change(s) before it were made and are kept; fix the cause and deploy again to continue)",
                    verb(&change.action),
                    applied.changed.len()
                )
            })?;
        planned.live.found.insert((desired.kind, desired.name.clone()), found);
        println!("{label} | {} {what}", past(&change.action));
        applied.changed.push(what);
    }
    Ok(applied)
}

/// In local mode a plan only names the self-signed certificate a listener needs; applying
/// imports it, and the listener gets its ARN.
async fn import_pending_certificate(clients: &Clients, stack: &mut Stack) -> anyhow::Result<()> {
    let Some(marker) = stack.resolved.certificate_arn.clone() else { return Ok(()) };
    let Some(domain) = certificates::pending_import(&marker) else { return Ok(()) };
    let arn = certificates::import_self_signed(clients, domain, &stack.certificate_tags).await?;
    for d in &mut stack.desired {
        if d.fields.get("certificate") == Some(&marker) {
            d.fields.insert("certificate".into(), arn.clone());
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
    let current = live.found.get(&(d.kind, d.name.clone())).cloned();
    let changed: Vec<String> = match action {
        Action::Update(fields) | Action::Replace(fields) => fields.iter().map(|f| f.field.clone()).collect(),
        _ => Vec::new(),
    };
    if let (Action::Replace(_), Some(current)) = (action, &current) {
        delete(clients, d, current).await?;
        live.found.remove(&(d.kind, d.name.clone()));
    }
    let current = if matches!(action, Action::Update(_)) { current } else { None };
    match d.kind {
        Kind::Bucket => storage::apply_bucket(&clients.s3, &stack.region, d, current.is_none(), &changed).await?,
        Kind::TargetGroup => elb::apply_target_group(clients, d, current.as_ref(), &changed).await?,
        Kind::LoadBalancer => elb::apply_load_balancer(clients, d, current.as_ref(), &changed).await?,
        Kind::HttpListener | Kind::HttpsListener => elb::apply_listener(clients, live, d, current.as_ref()).await?,
        Kind::ListenerRule => elb::apply_rule(clients, stack, live, d, current.as_ref()).await?,
        Kind::LaunchTemplate => compute::apply_launch_template(clients, d, current.as_ref(), &changed).await?,
        Kind::AutoScalingGroup => {
            compute::apply_auto_scaling_group(clients, live, d, current.as_ref(), &changed).await?
        }
        Kind::ScalingPolicy => compute::apply_scaling_policy(clients, stack, live, d).await?,
        Kind::DbSubnetGroup => database::apply_subnet_group(clients, d, current.as_ref(), &changed).await?,
        Kind::Database => {
            let note =
                database::apply_database(clients, d, current.as_ref(), &changed, options.apply_immediately).await?;
            notes.extend(note);
        }
        Kind::CodeDeployApplication => codedeploy::apply_application(clients, d).await?,
        Kind::DeploymentGroup => codedeploy::apply_deployment_group(clients, stack, live, d, current.is_some()).await?,
    }
    // A new launch template version reaches running instances only when they are replaced.
    if d.kind == Kind::LaunchTemplate && current.is_some() && changed.iter().any(|f| f != "tags") {
        let group = stack.desired.iter().find(|g| {
            g.kind == Kind::AutoScalingGroup && field(g, "launch_template").split(':').next() == Some(&d.name)
        });
        if let Some(group) = group.filter(|g| live.id(Kind::AutoScalingGroup, &g.name).is_some()) {
            compute::roll_instances(clients, stack, &group.name, notes).await?;
        }
    }
    // Read back what AWS now reports: the next resource may need its id, and a later plan starts
    // from it.
    read(clients, stack, live, d)
        .await?
        .with_context(|| format!("AWS does not report {} {} after the change", kind_word(d.kind), d.name))
}

/// Deletes a resource that must be replaced (only after `--allow-destructive`).
async fn delete(clients: &Clients, d: &Desired, current: &Found) -> anyhow::Result<()> {
    match d.kind {
        Kind::LoadBalancer => elb::delete_load_balancer(clients, current).await,
        Kind::TargetGroup => elb::delete_target_group(clients, current).await,
        Kind::Database => database::delete_database(clients, d).await,
        other => bail!(
            "replacing a {} is not automated: change it by hand in the AWS console, or restore the setting in the config",
            kind_word(other)
        ),
    }
}

pub fn kind_word(kind: Kind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
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
pub(crate) fn failed<E, R>(what: &str, error: aws_sdk_s3::error::SdkError<E, R>) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    anyhow::anyhow!("{what}: {}", crate::describe_error(&error))
}

/// Tags as the plan compares them (AWS's own `aws:` tags left out).
pub(crate) fn tags_text(tags: impl IntoIterator<Item = (String, String)>) -> String {
    let tags: BTreeMap<String, String> = tags.into_iter().filter(|(k, _)| !k.starts_with("aws:")).collect();
    plan::tags_text(&tags)
}

/// The desired tags of a resource, parsed back from its `tags` field.
pub(crate) fn desired_tags(d: &Desired) -> BTreeMap<String, String> {
    d.fields.get("tags").and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
}

pub(crate) fn list(items: impl IntoIterator<Item = String>) -> String {
    let mut items: Vec<String> = items.into_iter().collect();
    items.sort();
    items.join(",")
}

pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

pub(crate) fn field<'a>(d: &'a Desired, name: &str) -> &'a str {
    d.fields.get(name).map(String::as_str).unwrap_or_default()
}

pub(crate) fn input<'a>(d: &'a Desired, name: &str) -> &'a str {
    d.inputs.get(name).map(String::as_str).unwrap_or_default()
}
