//! The resources of a stack, one struct per kind, for the desired and the live state alike: the
//! desired one is built from the model, the live one read back from AWS. The `Fields` trait lists
//! a resource's settings as (name, text) pairs, which the diff compares and the plan prints; what
//! AWS cannot change in place and what is only given at creation are stated beside them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::model::vocabulary;
pub use crate::config::model::{Tags, Vocabulary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Topic,
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
    LogGroup,
    CodeBuildProject,
}

impl Kind {
    /// Replacing these loses data or traffic, so a plan marks it and `deploy` refuses it unless told.
    pub fn replacement_is_destructive(self) -> bool {
        matches!(self, Kind::Database | Kind::LoadBalancer | Kind::Bucket | Kind::TargetGroup)
    }

    /// `target-group`, as plans and messages name the kind.
    pub fn word(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }
}

/// A setting as plans compare and print it: normalized, so desired and live text compare exactly.
pub trait Text {
    fn text(&self) -> String;
}

impl Text for String {
    fn text(&self) -> String {
        self.clone()
    }
}

macro_rules! text_by_display {
    ($($t:ty),*) => {
        $(impl Text for $t {
            fn text(&self) -> String {
                self.to_string()
            }
        })*
    };
}
text_by_display!(bool, i32, u32, f64);

/// A list as one sorted, comma-separated text: the order AWS reports is not a difference.
impl Text for Vec<String> {
    fn text(&self) -> String {
        let mut sorted = self.clone();
        sorted.sort();
        sorted.join(",")
    }
}

/// Tags as a JSON object (keys sorted): unambiguous whatever the tag text holds.
impl Text for Tags {
    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `(name, text)` pairs of the given settings.
macro_rules! fields {
    ($($name:literal => $value:expr),* $(,)?) => {
        vec![$(($name, Text::text(&$value))),*]
    };
}

/// What the diff knows of a resource.
pub trait Fields {
    /// Every setting the tool manages, as (name, text). Only these are compared; anything else AWS
    /// reports is left alone.
    fn fields(&self) -> Vec<(&'static str, String)>;

    /// Values AWS holds for a maintenance window (RDS `PendingModifiedValues`), as (name, text):
    /// the plan compares the desired value with the pending one, so a deploy does not ask again
    /// for what is already scheduled, and shows them.
    fn pending(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// A setting that does not compare by its text: `Some((differs, why the change is refused))`.
    fn judge(&self, _field: &str, _live: &Self) -> Option<(bool, Option<String>)> {
        None
    }

    /// Settings AWS cannot change in place: changing one replaces the resource.
    const IMMUTABLE: &'static [&'static str] = &[];

    /// Settings given when the resource is created and then left to AWS.
    const CREATE_ONLY: &'static [&'static str] = &[];
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    pub region: String,
    /// `Enabled`, or what AWS reports (`off` when never set).
    pub versioning: String,
    /// `aws:kms`, `AES256`, or `none`.
    pub encryption: String,
    /// `all`, `partial` or `none`.
    pub public_access_block: String,
    pub tls_only_policy: bool,
    pub tags: Tags,
}

impl Fields for Bucket {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields![
            "region" => self.region,
            "versioning" => self.versioning,
            "encryption" => self.encryption,
            "public_access_block" => self.public_access_block,
            "tls_only_policy" => self.tls_only_policy,
            "tags" => self.tags,
        ]
    }
    const IMMUTABLE: &'static [&'static str] = &["region"];
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    /// `traffic-port` or a port number.
    pub port: String,
    pub protocol: String,
    pub interval: i32,
    pub timeout: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    pub matcher: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetGroup {
    pub protocol: String,
    pub port: i32,
    pub vpc: String,
    pub target_type: String,
    pub health_check: HealthCheck,
    pub deregistration_delay: i32,
    pub tags: Tags,
}

impl Fields for TargetGroup {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let hc = &self.health_check;
        fields![
            "protocol" => self.protocol,
            "port" => self.port,
            "vpc" => self.vpc,
            "target_type" => self.target_type,
            "health_check.path" => hc.path,
            "health_check.port" => hc.port,
            "health_check.protocol" => hc.protocol,
            "health_check.interval" => hc.interval,
            "health_check.timeout" => hc.timeout,
            "health_check.healthy_threshold" => hc.healthy_threshold,
            "health_check.unhealthy_threshold" => hc.unhealthy_threshold,
            "health_check.matcher" => hc.matcher,
            "deregistration_delay" => self.deregistration_delay,
            "tags" => self.tags,
        ]
    }
    const IMMUTABLE: &'static [&'static str] = &["protocol", "port", "vpc"];
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadBalancer {
    /// AWS's `Type`: `application`.
    pub balancer_type: String,
    pub scheme: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub tags: Tags,
}

impl Fields for LoadBalancer {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields![
            "type" => self.balancer_type,
            "scheme" => self.scheme,
            "subnets" => self.subnets,
            "security_groups" => self.security_groups,
            "tags" => self.tags,
        ]
    }
    const IMMUTABLE: &'static [&'static str] = &["scheme", "type"];
}

/// What a listener does with a request no rule takes. Elastic Load Balancing's action types; a
/// live one of a type the tool never makes (authentication, weighted forwards) is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerAction {
    /// To `protocol:port`, keeping host, path and query; `HTTP_301` when permanent, else `HTTP_302`.
    Redirect {
        protocol: String,
        port: String,
        permanent: bool,
    },
    FixedResponse {
        status: String,
        content_type: String,
        body: String,
    },
    /// To a target group (its ARN).
    Forward(String),
    /// An action of another type, as AWS names it.
    Other(String),
}

impl ListenerAction {
    /// The default action of every HTTPS listener the tool makes.
    pub fn host_not_found() -> ListenerAction {
        ListenerAction::FixedResponse {
            status: "503".into(),
            content_type: "text/plain".into(),
            body: "host not found".into(),
        }
    }
}

/// As plans print it: `redirect HTTPS:443 HTTP_301`, `fixed-response 503 text/plain "host not found"`.
impl Text for ListenerAction {
    fn text(&self) -> String {
        match self {
            ListenerAction::Redirect { protocol, port, permanent } => {
                format!("redirect {protocol}:{port} {}", if *permanent { "HTTP_301" } else { "HTTP_302" })
            }
            ListenerAction::FixedResponse { status, content_type, body } => {
                format!("fixed-response {status} {content_type} {body:?}")
            }
            ListenerAction::Forward(target_group) => format!("forward {target_group}"),
            ListenerAction::Other(kind) => kind.clone(),
        }
    }
}

/// A listener's default actions (AWS keeps a list), `; `-separated, in order.
impl Text for Vec<ListenerAction> {
    fn text(&self) -> String {
        if self.is_empty() {
            return "none".into();
        }
        self.iter().map(Text::text).collect::<Vec<_>>().join("; ")
    }
}

/// An HTTP or HTTPS listener (the kind says which), named `<load balancer>:<port>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listener {
    pub protocol: String,
    pub default_actions: Vec<ListenerAction>,
    /// The default certificate's ARN; only HTTPS listeners have one.
    pub certificate: Option<String>,
}

impl Fields for Listener {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = fields!["protocol" => self.protocol, "default_action" => self.default_actions];
        out.extend(self.certificate.iter().map(|arn| ("certificate", arn.clone())));
        out
    }
}

/// A host rule, named `<listener>/<customer>-<env>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerRule {
    pub host_header: Vec<String>,
    /// The target group's name.
    pub forward: String,
    /// Inputs, not compared: the listener it sits on (as plans name it) and its owner, whose
    /// tags are how later runs find it.
    pub listener: String,
    pub customer: String,
    pub environment: String,
}

impl Fields for ListenerRule {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields!["host_header" => self.host_header, "forward" => self.forward]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchTemplate {
    pub image_id: String,
    pub instance_type: String,
    pub instance_profile: String,
    pub security_groups: Vec<String>,
    pub metadata_http_tokens: String,
    pub tags: Tags,
}

impl Fields for LaunchTemplate {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields![
            "image_id" => self.image_id,
            "instance_type" => self.instance_type,
            "instance_profile" => self.instance_profile,
            "security_groups" => self.security_groups,
            "metadata_http_tokens" => self.metadata_http_tokens,
            "tags" => self.tags,
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoScalingGroup {
    /// `<launch template>:<version>` (`$Default`).
    pub launch_template: String,
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    pub subnets: Vec<String>,
    /// Target group names.
    pub target_groups: Vec<String>,
    pub health_check_type: String,
    pub health_check_grace_period: i32,
    pub tags: Tags,
}

impl AutoScalingGroup {
    /// The launch template's name, without the version.
    pub fn launch_template_name(&self) -> &str {
        self.launch_template.split(':').next().unwrap_or_default()
    }
}

impl Fields for AutoScalingGroup {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields![
            "launch_template" => self.launch_template,
            "min" => self.min,
            "max" => self.max,
            "desired" => self.desired,
            "subnets" => self.subnets,
            "target_groups" => self.target_groups,
            "health_check_type" => self.health_check_type,
            "health_check_grace_period" => self.health_check_grace_period,
            "tags" => self.tags,
        ]
    }
    /// The desired capacity belongs to the scaling policies once the group runs, so a deploy
    /// never resets it.
    const CREATE_ONLY: &'static [&'static str] = &["desired"];
}

/// A target-tracking policy, named `<group>-cpu` or `<group>-requests`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScalingPolicy {
    /// `ASGAverageCPUUtilization` or `ALBRequestCountPerTarget`.
    pub metric: String,
    pub target: f64,
    /// Inputs, not compared: the group it scales, and for a request count the target group and
    /// listener (as plans name it) whose requests it counts.
    pub auto_scaling_group: String,
    pub target_group: String,
    pub listener: String,
}

impl Fields for ScalingPolicy {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields!["metric" => self.metric, "target" => self.target]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbSubnetGroup {
    pub subnets: Vec<String>,
    pub tags: Tags,
}

impl Fields for DbSubnetGroup {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields!["subnets" => self.subnets, "tags" => self.tags]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Database {
    pub engine: String,
    pub engine_version: String,
    pub instance_class: String,
    pub master_username: String,
    /// Empty: no initial database.
    pub database_name: String,
    pub manage_master_user_password: bool,
    pub multi_az: bool,
    pub security_groups: Vec<String>,
    pub backup_retention_days: i32,
    /// None in the desired state: AWS picks one, and the tool leaves it alone.
    pub backup_window: Option<String>,
    pub maintenance_window: Option<String>,
    pub auto_minor_version_upgrade: bool,
    pub storage_gb: i32,
    pub storage_encrypted: bool,
    pub deletion_protection: bool,
    pub tags: Tags,
    /// Input, not compared: a configured newer major version may be applied.
    pub allow_major_version_upgrade: bool,
    /// Live only: what RDS holds for the maintenance window.
    pub pending: PendingDatabase,
}

/// RDS `PendingModifiedValues`: the values a database will have after its maintenance window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingDatabase {
    pub engine_version: Option<String>,
    pub instance_class: Option<String>,
    pub multi_az: Option<bool>,
    pub backup_retention_days: Option<i32>,
    pub storage_gb: Option<i32>,
}

/// The database settings RDS holds for the maintenance window unless told to apply them
/// immediately; it applies the others (deletion protection, security groups, windows, tags, …) at
/// once either way.
pub const RDS_DEFERRABLE: &[&str] = &["engine_version", "instance_class", "multi_az", "storage_gb"];

impl Fields for Database {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = fields![
            "engine" => self.engine,
            "engine_version" => self.engine_version,
            "instance_class" => self.instance_class,
            "master_username" => self.master_username,
            "database_name" => self.database_name,
            "manage_master_user_password" => self.manage_master_user_password,
            "multi_az" => self.multi_az,
            "security_groups" => self.security_groups,
            "backup_retention_days" => self.backup_retention_days,
            "storage_gb" => self.storage_gb,
            "storage_encrypted" => self.storage_encrypted,
            "deletion_protection" => self.deletion_protection,
            "auto_minor_version_upgrade" => self.auto_minor_version_upgrade,
            "tags" => self.tags,
        ];
        out.extend(self.backup_window.iter().map(|w| ("backup_window", w.clone())));
        out.extend(self.maintenance_window.iter().map(|w| ("maintenance_window", w.clone())));
        out
    }

    fn pending(&self) -> Vec<(&'static str, String)> {
        let p = &self.pending;
        let mut out = Vec::new();
        out.extend(p.engine_version.iter().map(|v| ("engine_version", v.text())));
        out.extend(p.instance_class.iter().map(|v| ("instance_class", v.text())));
        out.extend(p.multi_az.iter().map(|v| ("multi_az", v.text())));
        out.extend(p.backup_retention_days.iter().map(|v| ("backup_retention_days", v.text())));
        out.extend(p.storage_gb.iter().map(|v| ("storage_gb", v.text())));
        out
    }

    /// The engine version by `engine_version_verdict`. Versions of different engines do not
    /// compare: an engine change replaces the database, and the plan says so on `engine`.
    fn judge(&self, field: &str, live: &Self) -> Option<(bool, Option<String>)> {
        if field != "engine_version" || live.engine != self.engine {
            return None;
        }
        let running = live.pending.engine_version.as_ref().unwrap_or(&live.engine_version);
        Some(super::engine_version_change(self, running))
    }

    const IMMUTABLE: &'static [&'static str] = &["engine", "master_username", "database_name"];
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodeDeployApplication {
    pub compute_platform: String,
}

impl Fields for CodeDeployApplication {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields!["compute_platform" => self.compute_platform]
    }
}

/// CodeDeploy's deployment type and option (its words: `IN_PLACE`, `WITH_TRAFFIC_CONTROL`); a
/// word this tool does not know is kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStyle {
    pub deployment_type: Word<DeploymentType>,
    pub option: Word<DeploymentOption>,
}

impl Text for DeploymentStyle {
    fn text(&self) -> String {
        format!("{} {}", self.deployment_type.text(), self.option.text())
    }
}

/// A closed AWS vocabulary's word as read from AWS: one the tool knows, or another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Word<T> {
    Known(T),
    Other(String),
}

impl<T: Vocabulary> Word<T> {
    /// AWS's word, known or not.
    pub fn parse(word: &str) -> Word<T> {
        T::ALL.iter().find(|t| t.word() == word).map_or_else(|| Word::Other(word.to_string()), |t| Word::Known(*t))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Word::Known(t) => t.word(),
            Word::Other(word) => word,
        }
    }
}

impl<T: Vocabulary> Text for Word<T> {
    fn text(&self) -> String {
        self.as_str().to_string()
    }
}

vocabulary! {
    /// CodeDeploy's deployment type.
    DeploymentType { InPlace = "IN_PLACE", BlueGreen = "BLUE_GREEN" }
}

vocabulary! {
    /// Whether CodeDeploy takes instances out of the load balancer while it deploys to them.
    DeploymentOption { WithTrafficControl = "WITH_TRAFFIC_CONTROL", WithoutTrafficControl = "WITHOUT_TRAFFIC_CONTROL" }
}

vocabulary! {
    /// An event on which CodeDeploy rolls a deployment back.
    RollbackEvent {
        DeploymentFailure = "DEPLOYMENT_FAILURE",
        DeploymentStopOnAlarm = "DEPLOYMENT_STOP_ON_ALARM",
        DeploymentStopOnRequest = "DEPLOYMENT_STOP_ON_REQUEST",
    }
}

/// CodeDeploy's automatic rollback: off, or on for these events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AutoRollback {
    #[default]
    Off,
    On(std::collections::BTreeSet<Word<RollbackEvent>>),
}

/// `off`, or the events, sorted, comma-separated.
impl Text for AutoRollback {
    fn text(&self) -> String {
        match self {
            AutoRollback::Off => "off".into(),
            AutoRollback::On(events) => events.iter().map(Text::text).collect::<Vec<_>>().text(),
        }
    }
}

/// A deployment group, named `<application>/<group>`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentGroup {
    pub service_role: String,
    pub auto_scaling_groups: Vec<String>,
    /// Target group names.
    pub target_groups: Vec<String>,
    pub deployment_style: DeploymentStyle,
    pub deployment_config: String,
    pub auto_rollback: AutoRollback,
}

impl Fields for DeploymentGroup {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields![
            "service_role" => self.service_role,
            "auto_scaling_groups" => self.auto_scaling_groups,
            "target_groups" => self.target_groups,
            "deployment_style" => self.deployment_style,
            "deployment_config" => self.deployment_config,
            "auto_rollback" => self.auto_rollback,
        ]
    }
}

/// An SNS topic with its e-mail subscribers. On AWS an e-mail subscription is pending until its
/// recipient confirms, and a pending one cannot be removed through the API: the live state lists
/// the pending addresses too, and a pending address no longer wanted is not a difference (nothing
/// could change it; it lapses unconfirmed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topic {
    /// E-mail addresses, confirmed or not.
    pub subscribers: Vec<String>,
    /// Live only: the addresses that have not confirmed yet.
    pub pending: Vec<String>,
    pub tags: Tags,
}

impl Topic {
    /// The addresses that can be changed: a pending one that is not wanted cannot be removed.
    pub fn removable_difference(&self, live: &Topic) -> (Vec<String>, Vec<String>) {
        let add = self.subscribers.iter().filter(|s| !live.subscribers.contains(s)).cloned().collect();
        let remove = live
            .subscribers
            .iter()
            .filter(|s| !self.subscribers.contains(s) && !live.pending.contains(s))
            .cloned()
            .collect();
        (add, remove)
    }
}

impl Fields for Topic {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields!["subscribers" => self.subscribers, "tags" => self.tags]
    }

    fn judge(&self, field: &str, live: &Self) -> Option<(bool, Option<String>)> {
        if field != "subscribers" {
            return None;
        }
        let (add, remove) = self.removable_difference(live);
        Some((!add.is_empty() || !remove.is_empty(), None))
    }
}

/// What a resource's settings compare to: changed fields, a refusal, and what waits for a window.
pub(super) struct Compared {
    pub changed: Vec<(String, Option<String>, String)>,
    pub refused: Option<String>,
    pub pending: Vec<(String, Option<String>, String)>,
    pub replace: bool,
}

/// Compares the desired settings with the live ones; a live value pending for a maintenance
/// window stands for the live one.
fn compare<R: Fields>(desired: &R, live: &R) -> Compared {
    let current: BTreeMap<&str, String> = live.fields().into_iter().collect();
    let pending: BTreeMap<&str, String> = live.pending().into_iter().collect();
    let effective = |field: &str| pending.get(field).or_else(|| current.get(field)).cloned();
    let mut refused = None;
    let mut wanted = desired.fields();
    wanted.sort_by(|a, b| a.0.cmp(b.0));
    let changed: Vec<_> = wanted
        .into_iter()
        .filter(|(field, value)| {
            if R::CREATE_ONLY.contains(field) {
                return false;
            }
            let Some(live_value) = effective(field) else { return true };
            if let Some((differs, why)) = desired.judge(field, live) {
                refused = refused.take().or(why);
                return differs;
            }
            live_value != *value
        })
        .map(|(field, value)| (field.to_string(), effective(field), value))
        .collect();
    let replace = changed.iter().any(|(field, _, _)| R::IMMUTABLE.contains(&field.as_str()));
    let pending =
        pending.iter().map(|(field, new)| (field.to_string(), current.get(field).cloned(), new.clone())).collect();
    Compared { changed, refused, pending, replace }
}

/// The resource enum over the structs, and what dispatches to them.
macro_rules! resources {
    ($($kind:ident($ty:ty)),* $(,)?) => {
        /// One resource's settings, of its kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Resource {
            $($kind($ty)),*
        }

        impl Resource {
            pub fn kind(&self) -> Kind {
                match self {
                    $(Resource::$kind(_) => Kind::$kind),*
                }
            }

            /// Every setting, by name: what a plan of a new resource shows.
            pub fn fields(&self) -> BTreeMap<&'static str, String> {
                match self {
                    $(Resource::$kind(r) => r.fields().into_iter().collect()),*
                }
            }

            /// None when the two are of different kinds.
            pub(super) fn compare(&self, live: &Resource) -> Option<Compared> {
                match (self, live) {
                    $((Resource::$kind(d), Resource::$kind(l)) => Some(compare(d, l)),)*
                    _ => None,
                }
            }
        }
    };
}

/// A CloudWatch Logs group (the build logs of a CodeBuild project).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogGroup {
    pub retention_days: u32,
    pub tags: Tags,
}

impl Fields for LogGroup {
    fn fields(&self) -> Vec<(&'static str, String)> {
        fields!["retention_days" => self.retention_days, "tags" => self.tags]
    }
}

/// A plain, Parameter Store or Secrets Manager environment variable of a CodeBuild project: a
/// secret's value is its parameter name or secret id, which CodeBuild resolves inside AWS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BuildVariable {
    pub name: String,
    /// `PLAINTEXT`, `PARAMETER_STORE` or `SECRETS_MANAGER`.
    pub kind: String,
    pub value: String,
}

/// `NAME=TYPE:value`, sorted.
impl Text for Vec<BuildVariable> {
    fn text(&self) -> String {
        self.iter().map(|v| format!("{}={}:{}", v.name, v.kind, v.value)).collect::<Vec<_>>().text()
    }
}

/// The environment's CodeBuild project: its generated buildspec inline, the source and the
/// artifacts in the environment's bucket, logs to its log group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodeBuildProject {
    pub image: String,
    pub compute_type: String,
    /// `CODEBUILD` (an image CodeBuild provides) or `SERVICE_ROLE` (a custom image in ECR).
    pub image_pull_credentials: String,
    pub service_role: String,
    pub timeout_minutes: u32,
    /// The buildspec's text; compared and printed by its SHA-256.
    pub buildspec: String,
    /// Where sources are read and artifacts written: the environment's bucket.
    pub bucket: String,
    pub variables: Vec<BuildVariable>,
    pub log_group: String,
    pub tags: Tags,
}

impl Fields for CodeBuildProject {
    fn fields(&self) -> Vec<(&'static str, String)> {
        use sha2::Digest;
        let buildspec = format!("sha256:{:x}", sha2::Sha256::digest(self.buildspec.as_bytes()));
        fields![
            "image" => self.image,
            "compute_type" => self.compute_type,
            "image_pull_credentials" => self.image_pull_credentials,
            "service_role" => self.service_role,
            "timeout_minutes" => self.timeout_minutes,
            "buildspec" => buildspec[..23].to_string(),
            "bucket" => self.bucket,
            "variables" => self.variables,
            "log_group" => self.log_group,
            "tags" => self.tags,
        ]
    }
}

resources! {
    Topic(Topic),
    Bucket(Bucket),
    TargetGroup(TargetGroup),
    LoadBalancer(LoadBalancer),
    HttpListener(Listener),
    HttpsListener(Listener),
    ListenerRule(ListenerRule),
    LaunchTemplate(LaunchTemplate),
    AutoScalingGroup(AutoScalingGroup),
    ScalingPolicy(ScalingPolicy),
    DbSubnetGroup(DbSubnetGroup),
    Database(Database),
    CodeDeployApplication(CodeDeployApplication),
    DeploymentGroup(DeploymentGroup),
    LogGroup(LogGroup),
    CodeBuildProject(CodeBuildProject),
}
