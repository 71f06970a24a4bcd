//! The validated model. Everything here has passed `validate`: names are legal for AWS, ranges
//! hold, production rules are met. Renderers and AWS code take only these types.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::names::ResourceNames;

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    pub platform: Platform,
    pub customers: Vec<Customer>,
}

impl Fleet {
    pub fn environment(&self, customer: &str, env: &str) -> Option<(&Customer, &Environment)> {
        let customer = self.customers.iter().find(|c| c.name == customer)?;
        let env = customer.environments.iter().find(|e| e.name == env)?;
        Some((customer, env))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    pub prefix: String,
    pub region: String,
    pub vpc: VpcRef,
    pub subnets: SubnetsRef,
    pub instance_security_groups: Option<SecurityGroupsRef>,
    pub shared_alb: SharedAlb,
    pub state_bucket: String,
    pub ami: PlatformAmi,
    pub codedeploy_service_role: RoleRef,
    /// CodeBuild's service role: with it, builds on AWS run on a CodeBuild project per
    /// environment; without it, on the operator's machine.
    pub codebuild_service_role: Option<RoleRef>,
    pub instance_profile: String,
    /// Who approves `platform deploy`, notified through `approval_topic`; empty: not gated.
    pub approval_emails: Vec<String>,
    pub approval: Approval,
    /// The SNS topic of the platform's approval requests.
    pub approval_topic: String,
    pub tags: Tags,
}

/// Whether changes wait for a second person's approval, and for how long a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub required: bool,
    pub timeout_minutes: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SharedAlb {
    pub name: String,
    pub listener: ListenerRef,
    /// Listener rules one ALB holds (AWS's quota, 100 unless raised): past it, the pool of
    /// shared load balancers grows (`crate::pool`).
    pub rules_per_alb: u32,
    pub certificate: Option<CertificateRef>,
    pub security_groups: Option<SecurityGroupsRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformAmi {
    pub base: AmiRef,
    /// Exact name of the base AMI on the local emulator, whose bundled AMIs all share one
    /// creation date (so "most recent" cannot choose).
    pub local_base_name: String,
    pub ssh_username: String,
    pub builder_instance_type: String,
    pub volume_size_gb: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VpcRef {
    Id(String),
    Default,
    Tags(Tags),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubnetsRef {
    Ids(Vec<String>),
    DefaultForAz,
    Tags(Tags),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityGroupsRef {
    Ids(Vec<String>),
    Names(Vec<String>),
    Tags(Tags),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateRef {
    Arn(String),
    Domain(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AmiRef {
    Id(String),
    Filter { name: String, owners: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleRef {
    Arn(String),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerRef {
    Arn(String),
    Lookup { load_balancer: String, port: u16 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Customer {
    pub name: String,
    pub display_name: String,
    pub domain: Option<String>,
    pub certificate: Option<CertificateRef>,
    pub approval_emails: Vec<String>,
    pub software: Software,
    pub deploy: Deploy,
    /// Shell commands that provision the AMI (Packer's shell provisioner).
    pub provision: Vec<String>,
    pub environments: Vec<Environment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Software {
    /// https, ssh (`git@host:path`), `file://` or a path relative to the project root.
    pub repository: String,
    pub git_ref: String,
}

/// CodeBuild's build timeout when none is set: 60 minutes.
pub const DEFAULT_BUILD_TIMEOUT: u32 = 60;

/// The buildspec's content: CodeBuild 0.2.
#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub shell: Option<String>,
    pub runtime_versions: BTreeMap<String, String>,
    pub variables: BTreeMap<String, String>,
    pub parameter_store: BTreeMap<String, String>,
    pub secrets_manager: BTreeMap<String, String>,
    pub phases: Vec<Phase>,
    pub artifacts: Artifacts,
    pub cache_paths: Vec<String>,
    /// How long the build may run: a CodeBuild project setting, not part of the buildspec file
    /// (read back from a buildspec, it is CodeBuild's default).
    pub timeout_minutes: u32,
    /// The CodeBuild project's image, compute type and log retention (project settings too).
    pub project: BuildProject,
}

/// Where a build runs on CodeBuild: settings of the environment's project, not of the buildspec.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BuildProject {
    /// An AWS-managed image (`aws/codebuild/...`) or an image in ECR, pulled with the service role.
    pub image: String,
    pub compute_type: ComputeType,
    /// How long CloudWatch Logs keeps the build logs.
    pub log_retention_days: u32,
}

/// CodeBuild's current Amazon Linux standard image.
pub const DEFAULT_BUILD_IMAGE: &str = "aws/codebuild/amazonlinux-x86_64-standard:5.0";
/// Build logs are kept a month unless said otherwise.
pub const DEFAULT_LOG_RETENTION_DAYS: u32 = 30;
/// The retention periods CloudWatch Logs accepts (PutRetentionPolicy), in days.
pub const LOG_RETENTION_DAYS: &[u32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

impl Default for BuildProject {
    fn default() -> BuildProject {
        BuildProject {
            image: DEFAULT_BUILD_IMAGE.into(),
            compute_type: ComputeType::Small,
            log_retention_days: DEFAULT_LOG_RETENTION_DAYS,
        }
    }
}

impl BuildProject {
    /// Whether the image is pulled from ECR with the service role (a custom image), rather than
    /// one CodeBuild provides.
    pub fn image_from_ecr(&self) -> bool {
        self.image.contains(".dkr.ecr.")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `install`, `pre_build`, `build` or `post_build`, in that order.
    pub name: &'static str,
    pub commands: Vec<String>,
    pub finally: Vec<String>,
    pub on_failure: Option<OnFailure>,
    pub run_as: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifacts {
    pub files: Vec<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    pub exclude_paths: Vec<String>,
    pub name: Option<String>,
}

/// The appspec's content: CodeDeploy EC2/on-premises, `version: 0.0`, Linux.
#[derive(Debug, Clone, Serialize)]
pub struct Deploy {
    pub source: String,
    pub destination: String,
    pub file_exists_behavior: Option<FileExistsBehavior>,
    pub permissions: Vec<Permission>,
    /// Lifecycle events in the order the agent runs them.
    pub hooks: Vec<(String, Vec<Hook>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Permission {
    pub object: String,
    pub pattern: Option<String>,
    pub except: Vec<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Octal digits as the agent takes them, e.g. `755`.
    pub mode: Option<String>,
    /// The appspec's `type`; empty means both.
    pub kinds: Vec<PermissionKind>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hook {
    pub location: String,
    pub timeout: u32,
    pub runas: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub production: bool,
    /// Production always; other environments when their file says `approval = true`.
    pub approval: Approval,
    pub instance_type: String,
    pub capacity: Capacity,
    pub scaling: Scaling,
    pub health_check: HealthCheck,
    /// How long the target group lets in-flight requests finish on a deregistering instance.
    pub deregistration_delay_seconds: u32,
    pub hosts: Vec<String>,
    pub routing: Routing,
    pub database: Option<Database>,
    pub deployment: Deployment,
    /// Platform, customer and environment tags merged, plus Customer/Environment/ManagedBy.
    pub tags: Tags,
    pub build: Build,
    pub names: ResourceNames,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// A host-header rule on the platform's shared ALB.
    SharedAlb,
    /// Production with a custom domain: an ALB of its own (80 → 443, 443 with the certificate).
    DedicatedAlb,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Capacity {
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub health_check_grace_period: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scaling {
    pub cpu_target: Option<f64>,
    pub requests_per_target: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheck {
    pub path: String,
    /// `traffic-port` or a port number.
    pub port: String,
    pub protocol: HealthCheckProtocol,
    pub interval: u32,
    pub timeout: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub engine: String,
    pub version: String,
    pub instance_class: String,
    pub master_username: String,
    pub database_name: Option<String>,
    pub security_groups: Option<SecurityGroupsRef>,
    pub backup_retention_days: u32,
    pub backup_window: Option<String>,
    /// `ddd:hh24:mi-ddd:hh24:mi`, UTC: when RDS applies changes that wait (without
    /// `deploy --apply-immediately`) and its own minor upgrades. None: AWS picks one.
    pub maintenance_window: Option<String>,
    /// RDS moves to new minor versions by itself in the maintenance window (AWS's default).
    pub auto_minor_version_upgrade: bool,
    /// A configured version of a newer major version than the database runs may be applied.
    pub allow_major_version_upgrade: bool,
    pub storage_gb: u32,
    pub multi_az: bool,
    pub deletion_protection: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub config: String,
    pub auto_rollback: bool,
    /// How long `deploy` follows a software deployment before it stops it.
    pub timeout_minutes: u32,
}

// Closed sets of AWS vocabulary, parsed when the config (or a spec file) is validated.

/// What a phase does when a command fails (buildspec `on-failure`): `ABORT`, `CONTINUE`, or
/// `RETRY`, `RETRY-<count>`, `RETRY-<regex>`, `RETRY-<count>-<regex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum OnFailure {
    Abort,
    Continue,
    /// `count` retries (CodeBuild's default is 3), while the output matches `pattern` if given.
    Retry {
        count: Option<u32>,
        pattern: Option<String>,
    },
}

impl std::str::FromStr for OnFailure {
    /// What is wrong, to complete "on-failure `VALUE` …".
    type Err = String;

    fn from_str(value: &str) -> Result<OnFailure, String> {
        match value {
            "ABORT" => return Ok(OnFailure::Abort),
            "CONTINUE" => return Ok(OnFailure::Continue),
            "RETRY" => return Ok(OnFailure::Retry { count: None, pattern: None }),
            _ => {}
        }
        let Some(rest) = value.strip_prefix("RETRY-") else {
            return Err("must be ABORT, CONTINUE or RETRY[-<count>][-<regex>]".into());
        };
        if rest.is_empty() {
            return Err("has nothing after `RETRY-`".into());
        }
        let (first, after) = rest.split_once('-').map_or((rest, None), |(first, after)| (first, Some(after)));
        match first.parse::<u32>() {
            Ok(n) if n > 100 => Err(format!("retries {n} times; CodeBuild allows 0 to 100")),
            Ok(n) => Ok(OnFailure::Retry { count: Some(n), pattern: after.map(str::to_string) }),
            Err(_) => Ok(OnFailure::Retry { count: None, pattern: Some(rest.to_string()) }),
        }
    }
}

impl std::fmt::Display for OnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnFailure::Abort => f.write_str("ABORT"),
            OnFailure::Continue => f.write_str("CONTINUE"),
            OnFailure::Retry { count, pattern } => {
                f.write_str("RETRY")?;
                if let Some(count) = count {
                    write!(f, "-{count}")?;
                }
                if let Some(pattern) = pattern {
                    write!(f, "-{pattern}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<OnFailure> for String {
    fn from(value: OnFailure) -> String {
        value.to_string()
    }
}

/// A closed set of AWS words, as `vocabulary!` defines one.
pub trait Vocabulary: Sized + Copy + 'static {
    const ALL: &'static [Self];
    /// AWS's word for it.
    fn word(self) -> &'static str;
}

/// Defines a closed set of AWS words: the enum, `as_str`, `FromStr` (the error lists the words),
/// serialization as the word, and `Vocabulary`.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        pub enum $name {
            $(#[serde(rename = $word)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();

            fn from_str(value: &str) -> Result<$name, ()> {
                $name::ALL.iter().copied().find(|v| v.as_str() == value).ok_or(())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::config::model::Vocabulary for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            fn word(self) -> &'static str {
                self.as_str()
            }
        }
    };
}
pub(crate) use vocabulary;

vocabulary! {
    /// What the CodeDeploy agent does with a file that is already where the revision puts one.
    FileExistsBehavior { Disallow = "DISALLOW", Overwrite = "OVERWRITE", Retain = "RETAIN" }
}

vocabulary! {
    /// What a permissions entry applies to (the appspec's `type`).
    PermissionKind { File = "file", Directory = "directory" }
}

impl Default for FileExistsBehavior {
    /// The agent's default.
    fn default() -> FileExistsBehavior {
        FileExistsBehavior::Disallow
    }
}

vocabulary! {
    /// How much a CodeBuild build gets (Linux containers).
    ComputeType {
        Small = "BUILD_GENERAL1_SMALL",
        Medium = "BUILD_GENERAL1_MEDIUM",
        Large = "BUILD_GENERAL1_LARGE",
        XLarge = "BUILD_GENERAL1_XLARGE",
        XXLarge = "BUILD_GENERAL1_2XLARGE",
    }
}

vocabulary! {
    /// The protocol of a target group's health checks.
    HealthCheckProtocol { Http = "HTTP", Https = "HTTPS" }
}
