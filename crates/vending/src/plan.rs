//! Plans without IO: the infrastructure a customer environment should have (`desired`), compared
//! field by field with what AWS reports (`diff`), and the listener-rule priority a new rule gets.
//! The AWS layer reads live resources into the same field maps and applies a plan in its order.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ami::AmiRecord;
use crate::config::model::{Customer, Environment, ListenerRef, Platform, Routing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Bucket,
    TargetGroup,
    LoadBalancer,
    HttpListener,
    HttpsListener,
    ListenerRule,
    LaunchTemplate,
    AutoScalingGroup,
    ScalingPolicy,
    DbSubnetGroup,
    Database,
    CodeDeployApplication,
    DeploymentGroup,
}

impl Kind {
    /// Settings AWS cannot change in place: changing one replaces the resource.
    fn immutable(self) -> &'static [&'static str] {
        match self {
            Kind::TargetGroup => &["protocol", "port", "vpc"],
            Kind::LoadBalancer => &["scheme", "type"],
            Kind::Database => &["engine", "master_username", "database_name"],
            Kind::Bucket => &["region"],
            _ => &[],
        }
    }

    /// Settings given when the resource is created and then left to AWS: an Auto Scaling group's
    /// desired capacity belongs to its scaling policies once it runs, so a deploy never resets it.
    fn create_only(self) -> &'static [&'static str] {
        match self {
            Kind::AutoScalingGroup => &["desired"],
            _ => &[],
        }
    }

    /// Replacing these loses data or traffic, so a plan marks it and `deploy` refuses it unless told.
    fn replacement_is_destructive(self) -> bool {
        matches!(self, Kind::Database | Kind::LoadBalancer | Kind::Bucket | Kind::TargetGroup)
    }
}

/// What one resource should be: its settings as normalized text, so desired and live compare
/// exactly and a plan prints them as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub kind: Kind,
    pub name: String,
    pub fields: BTreeMap<String, String>,
    /// What creating it needs besides its settings (the group a policy scales, the listener a
    /// rule sits on, the rule's owner); not compared.
    #[serde(skip)]
    pub inputs: BTreeMap<String, String>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "fields", rename_all = "snake_case")]
pub enum Action {
    Create,
    Update(Vec<FieldChange>),
    Replace(Vec<FieldChange>),
    Unchanged,
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
            let kind =
                serde_json::to_value(change.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
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
            if change.kind == Kind::Database && held {
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

/// The database settings RDS holds for the maintenance window unless told to apply them
/// immediately; it applies the others (deletion protection, security groups, windows, tags, …) at
/// once either way.
pub const RDS_DEFERRABLE: &[&str] = &["engine_version", "instance_class", "multi_az", "storage_gb"];

/// Live fields under this prefix are values AWS holds for the maintenance window (RDS
/// `PendingModifiedValues`): `pending.instance_class` is the class the database will have. The
/// plan compares the desired value with the pending one, so a deploy does not ask again for what
/// is already scheduled, and shows them.
pub const PENDING: &str = "pending.";

/// Compares desired resources with live ones (kind and name → fields). Only the fields the tool
/// sets are compared; anything else AWS reports is left alone. A live value that differs from the
/// desired one is drift or an unapplied change; either way the plan puts it back.
pub fn diff(desired: &[Desired], live: &BTreeMap<(Kind, String), BTreeMap<String, String>>) -> Plan {
    let changes = desired
        .iter()
        .map(|d| {
            let Some(current) = live.get(&(d.kind, d.name.clone())) else {
                return Change {
                    kind: d.kind,
                    name: d.name.clone(),
                    action: Action::Create,
                    destructive: false,
                    refused: None,
                    pending: Vec::new(),
                };
            };
            let effective = |field: &str| current.get(&format!("{PENDING}{field}")).or_else(|| current.get(field));
            let mut refused = None;
            let changed: Vec<FieldChange> = d
                .fields
                .iter()
                .filter(|(field, value)| {
                    if d.kind.create_only().contains(&field.as_str()) {
                        return false;
                    }
                    let Some(live) = effective(field) else { return true };
                    // Versions of different engines do not compare: an engine change replaces
                    // the database, and the plan says so on `engine`.
                    let same_engine = effective("engine") == d.fields.get("engine");
                    if d.kind == Kind::Database && field.as_str() == "engine_version" && same_engine {
                        let (differs, why) = engine_version_change(d, value, live);
                        refused = refused.take().or(why);
                        return differs;
                    }
                    live != *value
                })
                .map(|(field, value)| FieldChange {
                    field: field.clone(),
                    old: effective(field).cloned(),
                    new: value.clone(),
                })
                .collect();
            let pending: Vec<FieldChange> = current
                .iter()
                .filter_map(|(key, new)| {
                    let field = key.strip_prefix(PENDING)?;
                    Some(FieldChange { field: field.to_string(), old: current.get(field).cloned(), new: new.clone() })
                })
                .collect();
            let replace = changed.iter().any(|c| d.kind.immutable().contains(&c.field.as_str()));
            let action = match (changed.is_empty(), replace) {
                (true, _) => Action::Unchanged,
                (false, true) => Action::Replace(changed),
                (false, false) => Action::Update(changed),
            };
            let destructive = matches!(action, Action::Replace(_)) && d.kind.replacement_is_destructive();
            Change { kind: d.kind, name: d.name.clone(), action, destructive, refused, pending }
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
fn engine_version_change(d: &Desired, configured: &str, running: &str) -> (bool, Option<String>) {
    let engine = d.fields.get("engine").map(String::as_str).unwrap_or_default();
    match engine_version_verdict(engine, configured, running) {
        VersionVerdict::Satisfied => (false, None),
        VersionVerdict::MinorUpgrade => (true, None),
        VersionVerdict::MajorUpgrade if d.inputs.get("allow_major_version_upgrade").is_some_and(|v| v == "true") => {
            (true, None)
        }
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

fn fields(entries: &[(&str, String)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect()
}

fn list(items: &[String]) -> String {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.join(",")
}

/// Tags as a JSON object (keys sorted): unambiguous whatever the tag text holds.
pub fn tags_text(tags: &std::collections::BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_default()
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
    let hc = &env.health_check;
    let tags = tags_text(&env.tags);
    let mut out = vec![
        Desired {
            inputs: BTreeMap::new(),
            kind: Kind::Bucket,
            name: names.bucket.clone(),
            fields: fields(&[
                ("region", platform.region.clone()),
                ("versioning", "Enabled".into()),
                ("encryption", "aws:kms".into()),
                ("public_access_block", "all".into()),
                ("tls_only_policy", "true".into()),
                ("tags", tags.clone()),
            ]),
        },
        Desired {
            inputs: BTreeMap::new(),
            kind: Kind::TargetGroup,
            name: names.target_group.clone(),
            fields: fields(&[
                ("protocol", "HTTP".into()),
                ("port", "80".into()),
                ("vpc", ids.vpc_id.clone()),
                ("target_type", "instance".into()),
                ("health_check.path", hc.path.clone()),
                ("health_check.port", hc.port.clone()),
                ("health_check.protocol", hc.protocol.as_str().into()),
                ("health_check.interval", hc.interval.to_string()),
                ("health_check.timeout", hc.timeout.to_string()),
                ("health_check.healthy_threshold", hc.healthy_threshold.to_string()),
                ("health_check.unhealthy_threshold", hc.unhealthy_threshold.to_string()),
                ("health_check.matcher", hc.matcher.clone()),
                ("tags", tags.clone()),
            ]),
        },
    ];
    let listener = if env.routing == Routing::DedicatedAlb {
        out.extend(load_balancer_stack(&names.load_balancer, 443, ids, &tags));
        format!("{}:443", names.load_balancer)
    } else {
        shared_listener_name(platform)
    };
    out.push(Desired {
        inputs: fields(&[
            ("listener", listener.clone()),
            ("customer", customer.name.clone()),
            ("environment", env.name.clone()),
        ]),
        kind: Kind::ListenerRule,
        name: format!("{listener}/{}-{}", customer.name, env.name),
        fields: fields(&[("host_header", list(&env.hosts)), ("forward", names.target_group.clone())]),
    });
    let ami_id = ami.amis.get(&platform.region).cloned().unwrap_or_default();
    out.push(Desired {
        inputs: BTreeMap::new(),
        kind: Kind::LaunchTemplate,
        name: names.launch_template.clone(),
        fields: fields(&[
            ("image_id", ami_id),
            ("instance_type", env.instance_type.clone()),
            ("instance_profile", platform.instance_profile.clone()),
            ("security_groups", list(&ids.instance_security_groups)),
            ("metadata_http_tokens", "required".into()),
            ("tags", tags.clone()),
        ]),
    });
    out.push(Desired {
        inputs: BTreeMap::new(),
        kind: Kind::AutoScalingGroup,
        name: names.auto_scaling_group.clone(),
        fields: fields(&[
            ("launch_template", format!("{}:$Default", names.launch_template)),
            ("min", env.capacity.min.to_string()),
            ("max", env.capacity.max.to_string()),
            ("desired", env.capacity.desired.to_string()),
            ("subnets", list(&ids.subnet_ids)),
            ("target_groups", names.target_group.clone()),
            ("health_check_type", "ELB".into()),
            ("health_check_grace_period", env.capacity.health_check_grace_period.to_string()),
            ("tags", tags.clone()),
        ]),
    });
    let policy_inputs = fields(&[
        ("auto_scaling_group", names.auto_scaling_group.clone()),
        ("target_group", names.target_group.clone()),
        ("listener", listener.clone()),
    ]);
    if let Some(cpu) = env.scaling.cpu_target {
        out.push(Desired {
            inputs: policy_inputs.clone(),
            kind: Kind::ScalingPolicy,
            name: format!("{}-cpu", names.auto_scaling_group),
            fields: fields(&[("metric", "ASGAverageCPUUtilization".into()), ("target", format!("{cpu}"))]),
        });
    }
    if let Some(requests) = env.scaling.requests_per_target {
        out.push(Desired {
            inputs: policy_inputs.clone(),
            kind: Kind::ScalingPolicy,
            name: format!("{}-requests", names.auto_scaling_group),
            fields: fields(&[("metric", "ALBRequestCountPerTarget".into()), ("target", format!("{requests}"))]),
        });
    }
    if let Some(db) = &env.database {
        out.push(Desired {
            inputs: BTreeMap::new(),
            kind: Kind::DbSubnetGroup,
            name: names.database.clone(),
            fields: fields(&[("subnets", list(&ids.subnet_ids)), ("tags", tags.clone())]),
        });
        let mut database = Desired {
            inputs: fields(&[("allow_major_version_upgrade", db.allow_major_version_upgrade.to_string())]),
            kind: Kind::Database,
            name: names.database.clone(),
            fields: fields(&[
                ("engine", db.engine.clone()),
                ("engine_version", db.version.clone()),
                ("instance_class", db.instance_class.clone()),
                ("master_username", db.master_username.clone()),
                ("database_name", db.database_name.clone().unwrap_or_default()),
                ("manage_master_user_password", "true".into()),
                ("multi_az", db.multi_az.to_string()),
                ("security_groups", list(&ids.database_security_groups)),
                ("backup_retention_days", db.backup_retention_days.to_string()),
                ("storage_gb", db.storage_gb.to_string()),
                ("storage_encrypted", "true".into()),
                ("deletion_protection", db.deletion_protection.to_string()),
                ("auto_minor_version_upgrade", db.auto_minor_version_upgrade.to_string()),
                ("tags", tags.clone()),
            ]),
        };
        // Without a window in the config AWS picks one, and the tool leaves it alone.
        if let Some(window) = &db.backup_window {
            database.fields.insert("backup_window".into(), window.clone());
        }
        if let Some(window) = &db.maintenance_window {
            database.fields.insert("maintenance_window".into(), window.clone());
        }
        out.push(database);
    }
    out.push(Desired {
        inputs: BTreeMap::new(),
        kind: Kind::CodeDeployApplication,
        name: names.codedeploy_application.clone(),
        fields: fields(&[("compute_platform", "Server".into())]),
    });
    out.push(Desired {
        inputs: BTreeMap::new(),
        kind: Kind::DeploymentGroup,
        name: format!("{}/{}", names.codedeploy_application, names.deployment_group),
        fields: fields(&[
            ("service_role", ids.codedeploy_role_arn.clone()),
            ("auto_scaling_groups", names.auto_scaling_group.clone()),
            ("target_groups", names.target_group.clone()),
            ("deployment_style", "IN_PLACE WITH_TRAFFIC_CONTROL".into()),
            ("deployment_config", env.deployment.config.clone()),
            (
                "auto_rollback",
                if env.deployment.auto_rollback {
                    "DEPLOYMENT_FAILURE,DEPLOYMENT_STOP_ON_REQUEST".into()
                } else {
                    "off".into()
                },
            ),
        ]),
    });
    out
}

/// What the platform shares: the state bucket and, unless the platform file names an existing
/// listener by ARN, the shared load balancer with its two listeners.
pub fn platform_desired(platform: &Platform, ids: &Resolved) -> Vec<Desired> {
    let mut out = vec![state_bucket_desired(platform)];
    if let ListenerRef::Lookup { load_balancer, port } = &platform.shared_alb.listener {
        out.extend(load_balancer_stack(load_balancer, *port, ids, &platform_tags(platform)));
    }
    out
}

/// The platform's state bucket (AMI records, deploy state): versioned, so every record keeps its
/// history; `ami` creates it this way when it runs before `platform deploy`.
pub fn state_bucket_desired(platform: &Platform) -> Desired {
    Desired {
        inputs: BTreeMap::new(),
        kind: Kind::Bucket,
        name: platform.state_bucket.clone(),
        fields: fields(&[
            ("region", platform.region.clone()),
            ("versioning", "Enabled".into()),
            ("encryption", "AES256".into()),
            ("public_access_block", "all".into()),
            ("tls_only_policy", "true".into()),
            ("tags", platform_tags(platform)),
        ]),
    }
}

fn platform_tags(platform: &Platform) -> String {
    let mut tags = platform.tags.clone();
    tags.insert("ManagedBy".into(), crate::config::validate::MANAGED_BY.into());
    tags_text(&tags)
}

/// An application load balancer with port 80 redirecting to HTTPS and an HTTPS listener that
/// answers 503 "host not found" unless a host rule matches.
fn load_balancer_stack(name: &str, https_port: u16, ids: &Resolved, tags: &str) -> Vec<Desired> {
    vec![
        Desired {
            inputs: BTreeMap::new(),
            kind: Kind::LoadBalancer,
            name: name.to_string(),
            fields: fields(&[
                ("type", "application".into()),
                ("scheme", "internet-facing".into()),
                ("subnets", list(&ids.subnet_ids)),
                ("security_groups", list(&ids.alb_security_groups)),
                ("tags", tags.to_string()),
            ]),
        },
        Desired {
            inputs: BTreeMap::new(),
            kind: Kind::HttpListener,
            name: format!("{name}:80"),
            fields: fields(&[
                ("protocol", "HTTP".into()),
                ("default_action", format!("redirect HTTPS:{https_port} HTTP_301")),
            ]),
        },
        Desired {
            inputs: BTreeMap::new(),
            kind: Kind::HttpsListener,
            name: format!("{name}:{https_port}"),
            fields: fields(&[
                ("protocol", "HTTPS".into()),
                ("certificate", ids.certificate_arn.clone().unwrap_or_default()),
                ("default_action", HOST_NOT_FOUND.into()),
            ]),
        },
    ]
}

/// The default action of every HTTPS listener the tool makes, as plans print it.
pub const HOST_NOT_FOUND: &str = "fixed-response 503 text/plain \"host not found\"";

/// Rule priorities taken on a listener, for `allocate_priority`.
pub fn taken(priorities: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    priorities.into_iter().collect()
}
