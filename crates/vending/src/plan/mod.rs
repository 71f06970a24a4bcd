//! Plans without IO: the infrastructure a customer environment should have (`desired`), compared
//! field by field with what AWS reports (`diff`), and the listener-rule priority a new rule gets.
//! The AWS layer reads live resources into the same typed structs (`resources`) and applies a
//! plan in its order.

mod resources;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ami::AmiRecord;
use crate::config::model::{Customer, Environment, ListenerRef, Platform, Routing};

pub use resources::*;

/// One resource of a stack: its name (unique within its kind) and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub resource: Resource,
}

impl Desired {
    pub fn kind(&self) -> Kind {
        self.resource.kind()
    }
}

/// Ids that lookups resolved (the AWS layer fills this before planning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub instance_security_groups: Vec<String>,
    pub alb_security_groups: Vec<String>,
    pub database_security_groups: Vec<String>,
    /// The customer's certificate, for a dedicated load balancer.
    pub certificate_arn: Option<String>,
    pub codedeploy_role_arn: String,
    /// CodeBuild's service role, when the platform builds on CodeBuild.
    pub codebuild_role_arn: Option<String>,
    /// The pool member whose shared listener carries this environment's rule (`crate::pool`),
    /// when the tool manages the shared load balancers.
    pub shared_load_balancer: Option<String>,
    /// How many shared load balancers the platform has (`platform_desired`; at least one).
    pub shared_members: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: String,
}

/// What a plan does to a resource; in JSON `action` and its `fields` (empty when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Update(Vec<FieldChange>),
    Replace(Vec<FieldChange>),
    Unchanged,
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (action, fields): (&str, &[FieldChange]) = match self {
            Action::Create => ("create", &[]),
            Action::Update(fields) => ("update", fields),
            Action::Replace(fields) => ("replace", fields),
            Action::Unchanged => ("unchanged", &[]),
        };
        let mut out = serializer.serialize_struct("Action", 2)?;
        out.serialize_field("action", action)?;
        out.serialize_field("fields", fields)?;
        out.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    #[serde(flatten)]
    pub action: Action,
    pub destructive: bool,
    /// Why this change can never be made as configured (a database downgrade): `deploy` refuses
    /// the whole plan, and no flag overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Changes AWS has accepted and holds for the resource's maintenance window (RDS
    /// `PendingModifiedValues`): `old` is the value in effect, `new` the one waiting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<FieldChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::Unchanged)
    }

    pub fn destructive(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.destructive)
    }

    pub fn refused(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.refused.is_some())
    }

    /// The plan of `deploy --apply-immediately`: changes waiting for a maintenance window are
    /// sent again, to be applied now (RDS applies pending modifications with such a request).
    pub fn with_pending_applied_now(mut self) -> Plan {
        for change in &mut self.changes {
            if change.pending.is_empty() {
                continue;
            }
            let mut fields = match std::mem::replace(&mut change.action, Action::Unchanged) {
                Action::Update(fields) => fields,
                Action::Unchanged => Vec::new(),
                other => {
                    change.action = other;
                    continue;
                }
            };
            for pending in &change.pending {
                if !fields.iter().any(|f| f.field == pending.field) {
                    fields.push(pending.clone());
                }
            }
            change.action = Action::Update(fields);
        }
        self
    }

    /// One line per resource, and one per changed field: `old → new`.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for change in &self.changes {
            let kind = change.kind.word();
            let (mark, word, fields) = match &change.action {
                Action::Create => ("+", "create", None),
                Action::Update(f) => ("~", "update", Some(f)),
                Action::Replace(f) => ("-/+", "replace", Some(f)),
                Action::Unchanged => ("=", "unchanged", None),
            };
            let warning = if change.destructive { "  (DESTRUCTIVE: needs --allow-destructive)" } else { "" };
            out.push_str(&format!("{mark} {kind} {}: {word}{warning}\n", change.name));
            for f in fields.into_iter().flatten() {
                out.push_str(&format!("    {}: {} → {}\n", f.field, f.old.as_deref().unwrap_or("(none)"), f.new));
            }
            let held = fields.into_iter().flatten().any(|f| RDS_DEFERRABLE.contains(&f.field.as_str()));
            if change.kind == Kind::Database && held && change.refused.is_none() {
                out.push_str("    (RDS applies instance class, storage, Multi-AZ and engine version changes in the maintenance window; deploy --apply-immediately applies them now)\n");
            }
            for f in &change.pending {
                out.push_str(&format!(
                    "    pending in the maintenance window: {}: {} → {}\n",
                    f.field,
                    f.old.as_deref().unwrap_or("(none)"),
                    f.new
                ));
            }
            if let Some(why) = &change.refused {
                out.push_str(&format!("    REFUSED: {why}\n"));
            }
        }
        out
    }
}

/// Compares desired resources with live ones (kind and name → settings). Only the settings the
/// tool manages are compared; anything else AWS reports is left alone. A live value that differs
/// from the desired one is drift or an unapplied change; either way the plan puts it back.
pub fn diff(desired: &[Desired], live: &BTreeMap<(Kind, String), Resource>) -> Plan {
    let changes = desired
        .iter()
        .map(|d| {
            let (kind, name) = (d.kind(), d.name.clone());
            let Some(compared) = live.get(&(kind, d.name.clone())).and_then(|l| d.resource.compare(l)) else {
                return Change {
                    kind,
                    name,
                    action: Action::Create,
                    destructive: false,
                    refused: None,
                    pending: Vec::new(),
                };
            };
            let field_changes = |list: Vec<(String, Option<String>, String)>| -> Vec<FieldChange> {
                list.into_iter().map(|(field, old, new)| FieldChange { field, old, new }).collect()
            };
            let changed = field_changes(compared.changed);
            let action = match (changed.is_empty(), compared.replace) {
                (true, _) => Action::Unchanged,
                (false, true) => Action::Replace(changed),
                (false, false) => Action::Update(changed),
            };
            let destructive = matches!(action, Action::Replace(_)) && kind.replacement_is_destructive();
            let pending = field_changes(compared.pending);
            Change { kind, name, action, destructive, refused: compared.refused, pending }
        })
        .collect();
    Plan { changes }
}

/// How a database's running engine version stands to the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionVerdict {
    /// The running version is the configured one or a later minor of it: RDS's automatic minor
    /// upgrades move it ahead of the config, and that is not drift.
    Satisfied,
    MinorUpgrade,
    MajorUpgrade,
    /// RDS cannot downgrade an engine.
    Downgrade,
}

/// Compares engine versions the way RDS numbers them: PostgreSQL's major version is its first
/// number (`16`; `9.6` before 10), MySQL's and MariaDB's the first two (`8.0`, `10.11`). A
/// configured `16` or `16.4` is satisfied by a running `16.6`.
pub fn engine_version_verdict(engine: &str, configured: &str, running: &str) -> VersionVerdict {
    let numbers = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0))
            .collect()
    };
    let (want, have) = (numbers(configured), numbers(running));
    // A configured version shorter than a major version (MySQL's `8`) names only that much.
    let major_len = match engine {
        "postgres" if want.first().is_some_and(|m| *m >= 10) => 1,
        _ => 2,
    }
    .min(want.len());
    let prefix = |v: &[u64], n: usize| -> Vec<u64> { (0..n).map(|i| v.get(i).copied().unwrap_or(0)).collect() };
    let (want_major, have_major) = (prefix(&want, major_len), prefix(&have, major_len));
    if want_major > have_major {
        return VersionVerdict::MajorUpgrade;
    }
    if want_major < have_major {
        return VersionVerdict::Downgrade;
    }
    // Same major version: the running one satisfies every component the config names.
    if prefix(&have, want.len()) >= want {
        VersionVerdict::Satisfied
    } else {
        VersionVerdict::MinorUpgrade
    }
}

/// Whether the database's `engine_version` is to be changed, and why the plan must refuse it.
fn engine_version_change(d: &Database, running: &str) -> (bool, Option<String>) {
    let configured = &d.engine_version;
    match engine_version_verdict(&d.engine, configured, running) {
        VersionVerdict::Satisfied => (false, None),
        VersionVerdict::MinorUpgrade => (true, None),
        VersionVerdict::MajorUpgrade if d.allow_major_version_upgrade => (true, None),
        VersionVerdict::MajorUpgrade => (
            true,
            Some(format!(
                "database.version {configured} is a major upgrade from the running {running}; set `allow_major_version_upgrade = true` in [database] to let deploy upgrade it (take a snapshot and check the parameter group first), or keep the version"
            )),
        ),
        VersionVerdict::Downgrade => (
            true,
            Some(format!(
                "database.version {configured} is older than the running {running}, and RDS cannot downgrade an engine; set database.version to {running} (or its major version)"
            )),
        ),
    }
}

/// The shared listener as plans name it: `<load balancer>:<port>`, or its ARN when the platform
/// file names an existing one.
pub fn shared_listener_name(platform: &Platform) -> String {
    match &platform.shared_alb.listener {
        ListenerRef::Lookup { load_balancer, port } => format!("{load_balancer}:{port}"),
        ListenerRef::Arn(arn) => arn.clone(),
    }
}

pub const MAX_PRIORITY: u32 = 50_000;

/// The priority a new listener rule gets: the lowest one free on the listener. An existing rule
/// keeps its priority forever (the AWS layer finds it by its tags), so deploy order never moves
/// anyone; two deploys racing for one priority retry with the next free one on `PriorityInUse`.
pub fn allocate_priority(taken: &BTreeSet<u32>) -> Option<u32> {
    (1..=MAX_PRIORITY).find(|p| !taken.contains(p))
}

/// A count from the model as AWS takes it (every count the model holds is validated far below
/// `i32::MAX`).
fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted
}

/// Everything a customer environment should have, in the order it is created.
pub fn desired(
    platform: &Platform,
    customer: &Customer,
    env: &Environment,
    ami: &AmiRecord,
    ids: &Resolved,
) -> Vec<Desired> {
    let names = &env.names;
    let tags = &env.tags;
    let one = |name: &str, resource: Resource| Desired { name: name.to_string(), resource };
    let mut out = vec![
        one(&names.bucket, Resource::Bucket(bucket(platform, tags))),
        one(&names.target_group, Resource::TargetGroup(target_group(env, ids))),
    ];
    let listener = if env.routing == Routing::DedicatedAlb {
        out.extend(load_balancer_stack(&names.load_balancer, 443, ids, tags));
        format!("{}:443", names.load_balancer)
    } else {
        match (&platform.shared_alb.listener, &ids.shared_load_balancer) {
            (ListenerRef::Lookup { port, .. }, Some(member)) => format!("{member}:{port}"),
            _ => shared_listener_name(platform),
        }
    };
    out.push(one(
        &format!("{listener}/{}-{}", customer.name, env.name),
        Resource::ListenerRule(ListenerRule {
            host_header: sorted(&env.hosts),
            forward: names.target_group.clone(),
            listener: listener.clone(),
            customer: customer.name.clone(),
            environment: env.name.clone(),
        }),
    ));
    out.push(one(
        &names.launch_template,
        Resource::LaunchTemplate(LaunchTemplate {
            image_id: ami.amis.get(&platform.region).cloned().unwrap_or_default(),
            instance_type: env.instance_type.clone(),
            instance_profile: platform.instance_profile.clone(),
            security_groups: sorted(&ids.instance_security_groups),
            metadata_http_tokens: "required".into(),
            tags: tags.clone(),
        }),
    ));
    out.push(one(&names.auto_scaling_group, Resource::AutoScalingGroup(auto_scaling_group(env, ids))));
    let policy = |metric: &str, target: f64| ScalingPolicy {
        metric: metric.into(),
        target,
        auto_scaling_group: names.auto_scaling_group.clone(),
        target_group: names.target_group.clone(),
        listener: listener.clone(),
    };
    if let Some(cpu) = env.scaling.cpu_target {
        out.push(one(
            &format!("{}-cpu", names.auto_scaling_group),
            Resource::ScalingPolicy(policy("ASGAverageCPUUtilization", cpu)),
        ));
    }
    if let Some(requests) = env.scaling.requests_per_target {
        out.push(one(
            &format!("{}-requests", names.auto_scaling_group),
            Resource::ScalingPolicy(policy("ALBRequestCountPerTarget", requests)),
        ));
    }
    if let Some(db) = &env.database {
        out.push(one(
            &names.database,
            Resource::DbSubnetGroup(DbSubnetGroup { subnets: sorted(&ids.subnet_ids), tags: tags.clone() }),
        ));
        out.push(one(&names.database, Resource::Database(database(db, ids, tags))));
    }
    out.push(one(
        &names.codedeploy_application,
        Resource::CodeDeployApplication(CodeDeployApplication { compute_platform: "Server".into() }),
    ));
    if env.approval.required {
        let mut tags = platform_tags(platform);
        tags.insert("Customer".into(), customer.name.clone());
        out.insert(0, one(&names.approval_topic, Resource::Topic(approval_topic(&customer.approval_emails, tags))));
    }
    out.push(one(
        &format!("{}/{}", names.codedeploy_application, names.deployment_group),
        Resource::DeploymentGroup(deployment_group(env, ids)),
    ));
    if let Some(role) = &ids.codebuild_role_arn {
        out.extend(build_project(customer, env, role));
    }
    out
}

/// The environment's bucket: versioned, encrypted, private, TLS only.
fn bucket(platform: &Platform, tags: &Tags) -> Bucket {
    Bucket {
        region: platform.region.clone(),
        versioning: "Enabled".into(),
        encryption: "aws:kms".into(),
        public_access_block: "all".into(),
        tls_only_policy: true,
        tags: tags.clone(),
    }
}

/// The environment's Auto Scaling group on its launch template, checked by its target group.
fn auto_scaling_group(env: &Environment, ids: &Resolved) -> AutoScalingGroup {
    let names = &env.names;
    AutoScalingGroup {
        launch_template: format!("{}:$Default", names.launch_template),
        min: int(env.capacity.min),
        max: int(env.capacity.max),
        desired: int(env.capacity.desired),
        subnets: sorted(&ids.subnet_ids),
        target_groups: vec![names.target_group.clone()],
        health_check_type: "ELB".into(),
        health_check_grace_period: int(env.capacity.health_check_grace_period),
        tags: env.tags.clone(),
    }
}

/// The environment's deployment group: in place, behind its target group, one configuration,
/// rolling back on failure and on a stop when the config says so.
fn deployment_group(env: &Environment, ids: &Resolved) -> DeploymentGroup {
    let names = &env.names;
    DeploymentGroup {
        service_role: ids.codedeploy_role_arn.clone(),
        auto_scaling_groups: vec![names.auto_scaling_group.clone()],
        target_groups: vec![names.target_group.clone()],
        deployment_style: DeploymentStyle {
            deployment_type: Word::Known(DeploymentType::InPlace),
            option: Word::Known(DeploymentOption::WithTrafficControl),
        },
        deployment_config: env.deployment.config.clone(),
        auto_rollback: if env.deployment.auto_rollback {
            AutoRollback::On(
                [RollbackEvent::DeploymentFailure, RollbackEvent::DeploymentStopOnRequest]
                    .into_iter()
                    .map(Word::Known)
                    .collect(),
            )
        } else {
            AutoRollback::Off
        },
    }
}

/// A build's variables as CodeBuild takes them: plain values, and secrets by their Parameter
/// Store or Secrets Manager name (CodeBuild resolves them inside AWS).
pub fn build_variables(build: &crate::config::model::Build) -> Vec<BuildVariable> {
    [
        ("PLAINTEXT", &build.variables),
        ("PARAMETER_STORE", &build.parameter_store),
        ("SECRETS_MANAGER", &build.secrets_manager),
    ]
    .into_iter()
    .flat_map(|(kind, map)| {
        map.iter().map(move |(name, value)| BuildVariable {
            name: name.clone(),
            kind: kind.into(),
            value: value.clone(),
        })
    })
    .collect()
}

/// The environment's CodeBuild project and its log group, when the platform builds on CodeBuild.
fn build_project(customer: &Customer, env: &Environment, role: &str) -> [Desired; 2] {
    let names = &env.names;
    let build = &env.build;
    let project = &build.project;
    let variables = build_variables(build);
    [
        Desired {
            name: names.build_log_group.clone(),
            resource: Resource::LogGroup(LogGroup {
                retention_days: project.log_retention_days,
                tags: env.tags.clone(),
            }),
        },
        Desired {
            name: names.codebuild_project.clone(),
            resource: Resource::CodeBuildProject(CodeBuildProject {
                image: project.image.clone(),
                compute_type: project.compute_type.as_str().into(),
                image_pull_credentials: if project.image_from_ecr() { "SERVICE_ROLE" } else { "CODEBUILD" }.into(),
                service_role: role.to_string(),
                timeout_minutes: build.timeout_minutes,
                buildspec: crate::render::buildspec::render(customer, env),
                bucket: names.bucket.clone(),
                variables,
                log_group: names.build_log_group.clone(),
                tags: env.tags.clone(),
            }),
        },
    ]
}

/// The environment's target group: HTTP on port 80 with the configured health check.
fn target_group(env: &Environment, ids: &Resolved) -> TargetGroup {
    let hc = &env.health_check;
    TargetGroup {
        protocol: "HTTP".into(),
        port: 80,
        vpc: ids.vpc_id.clone(),
        target_type: "instance".into(),
        health_check: HealthCheck {
            path: hc.path.clone(),
            port: hc.port.clone(),
            protocol: hc.protocol.as_str().to_string(),
            interval: int(hc.interval),
            timeout: int(hc.timeout),
            healthy_threshold: int(hc.healthy_threshold),
            unhealthy_threshold: int(hc.unhealthy_threshold),
            matcher: hc.matcher.clone(),
        },
        deregistration_delay: int(env.deregistration_delay_seconds),
        tags: env.tags.clone(),
    }
}

/// The environment's database: its password managed by AWS, encrypted, in the database security
/// groups.
fn database(db: &crate::config::model::Database, ids: &Resolved, tags: &Tags) -> Database {
    Database {
        engine: db.engine.clone(),
        engine_version: db.version.clone(),
        instance_class: db.instance_class.clone(),
        master_username: db.master_username.clone(),
        database_name: db.database_name.clone().unwrap_or_default(),
        manage_master_user_password: true,
        multi_az: db.multi_az,
        security_groups: sorted(&ids.database_security_groups),
        backup_retention_days: int(db.backup_retention_days),
        // Without a window in the config AWS picks one, and the tool leaves it alone.
        backup_window: db.backup_window.clone(),
        maintenance_window: db.maintenance_window.clone(),
        auto_minor_version_upgrade: db.auto_minor_version_upgrade,
        storage_gb: int(db.storage_gb),
        storage_encrypted: true,
        deletion_protection: db.deletion_protection,
        tags: tags.clone(),
        allow_major_version_upgrade: db.allow_major_version_upgrade,
        pending: PendingDatabase::default(),
    }
}

/// What the platform shares: the state bucket and, unless the platform file names an existing
/// listener by ARN, the shared load balancers (`ids.shared_members` of them), each with its two
/// listeners.
pub fn platform_desired(platform: &Platform, ids: &Resolved) -> Vec<Desired> {
    let mut out = vec![state_bucket_desired(platform)];
    if platform.approval.required {
        let topic = approval_topic(&platform.approval_emails, platform_tags(platform));
        out.insert(0, Desired { name: platform.approval_topic.clone(), resource: Resource::Topic(topic) });
    }
    if let ListenerRef::Lookup { load_balancer, port } = &platform.shared_alb.listener {
        for member in 1..=ids.shared_members.max(1) {
            let name = crate::pool::member_name(load_balancer, member);
            out.extend(load_balancer_stack(&name, *port, ids, &platform_tags(platform)));
        }
    }
    out
}

/// The SNS topic that e-mails approval requests to the approvers. It comes first in its stack:
/// `deploy` sets it up before it asks for an approval (it is how the approvers hear of one).
fn approval_topic(emails: &[String], tags: Tags) -> Topic {
    Topic { subscribers: sorted(emails), pending: Vec::new(), tags }
}

/// The platform's state bucket (AMI records, deploy state): versioned, so every record keeps its
/// history; `ami` creates it this way when it runs before `platform deploy`.
pub fn state_bucket_desired(platform: &Platform) -> Desired {
    Desired { name: platform.state_bucket.clone(), resource: Resource::Bucket(state_bucket(platform)) }
}

/// The state bucket's settings (its name is `platform.state_bucket`).
pub fn state_bucket(platform: &Platform) -> Bucket {
    Bucket {
        region: platform.region.clone(),
        versioning: "Enabled".into(),
        encryption: "AES256".into(),
        public_access_block: "all".into(),
        tls_only_policy: true,
        tags: platform_tags(platform),
    }
}

fn platform_tags(platform: &Platform) -> Tags {
    let mut tags = platform.tags.clone();
    tags.insert("ManagedBy".into(), crate::names::MANAGED_BY.into());
    tags
}

/// An application load balancer with port 80 redirecting to HTTPS and an HTTPS listener that
/// answers 503 "host not found" unless a host rule matches.
fn load_balancer_stack(name: &str, https_port: u16, ids: &Resolved, tags: &Tags) -> Vec<Desired> {
    vec![
        Desired {
            name: name.to_string(),
            resource: Resource::LoadBalancer(LoadBalancer {
                balancer_type: "application".into(),
                scheme: "internet-facing".into(),
                subnets: sorted(&ids.subnet_ids),
                security_groups: sorted(&ids.alb_security_groups),
                tags: tags.clone(),
            }),
        },
        Desired {
            name: format!("{name}:80"),
            resource: Resource::HttpListener(Listener {
                protocol: "HTTP".into(),
                default_actions: vec![ListenerAction::Redirect {
                    protocol: "HTTPS".into(),
                    port: https_port.to_string(),
                    permanent: true,
                }],
                certificate: None,
            }),
        },
        Desired {
            name: format!("{name}:{https_port}"),
            resource: Resource::HttpsListener(Listener {
                protocol: "HTTPS".into(),
                default_actions: vec![ListenerAction::host_not_found()],
                certificate: Some(ids.certificate_arn.clone().unwrap_or_default()),
            }),
        },
    ]
}

/// Rule priorities taken on a listener, for `allocate_priority`.
pub fn taken(priorities: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    priorities.into_iter().collect()
}
