//! Raw serde structs that mirror the TOML files one to one. Nothing here is validated beyond types;
//! `validate` turns them into the model. Unknown keys are collected by `load` (through
//! `serde_ignored`) so that every one of them is reported, not only the first.

use std::collections::BTreeMap;

use serde::Deserialize;

pub type Map = BTreeMap<String, String>;

/// `customers/platform.toml`.
#[derive(Debug, Deserialize, Default)]
pub struct RawPlatform {
    pub naming: Option<RawNaming>,
    pub aws: Option<RawAws>,
    pub network: Option<RawNetwork>,
    pub shared_alb: Option<RawSharedAlb>,
    pub state: Option<RawState>,
    pub ami: Option<RawPlatformAmi>,
    pub iam: Option<RawIam>,
    /// Who approves `platform deploy`; none means it is not gated.
    pub approval_emails: Option<Vec<String>>,
    pub approval: Option<RawApprovalSettings>,
    pub defaults: Option<RawLayer>,
    pub tags: Option<Map>,
}

#[derive(Debug, Deserialize)]
pub struct RawNaming {
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawAws {
    pub region: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawNetwork {
    pub vpc: Option<RawVpc>,
    pub subnets: Option<RawSubnets>,
    pub security_groups: Option<RawSecurityGroups>,
}

#[derive(Debug, Deserialize)]
pub struct RawSharedAlb {
    pub name: Option<String>,
    pub rules_per_alb: Option<i64>,
    pub listener: Option<RawListener>,
    pub certificate: Option<RawCertificate>,
    pub security_groups: Option<RawSecurityGroups>,
}

#[derive(Debug, Deserialize)]
pub struct RawState {
    pub bucket: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawPlatformAmi {
    pub base: Option<RawAmi>,
    pub local_base_name: Option<String>,
    pub ssh_username: Option<String>,
    pub builder_instance_type: Option<String>,
    pub volume_size_gb: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawIam {
    pub codedeploy_service_role: Option<RawRole>,
    pub codebuild_service_role: Option<RawRole>,
    pub instance_profile: Option<String>,
}

/// `customers/<customer>/customer.toml`.
#[derive(Debug, Deserialize, Default)]
pub struct RawCustomer {
    pub display_name: Option<String>,
    pub domain: Option<String>,
    pub certificate: Option<RawCertificate>,
    pub approval_emails: Option<Vec<String>>,
    pub software: Option<RawSoftware>,
    pub build: Option<RawBuild>,
    pub deploy: Option<RawDeploy>,
    pub ami: Option<RawCustomerAmi>,
    pub defaults: Option<RawLayer>,
}

#[derive(Debug, Deserialize)]
pub struct RawSoftware {
    pub repository: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawBuild {
    pub shell: Option<String>,
    pub runtime_versions: Option<Map>,
    pub variables: Option<Map>,
    pub parameter_store: Option<Map>,
    pub secrets_manager: Option<Map>,
    pub phases: Option<RawPhases>,
    pub artifacts: Option<RawArtifacts>,
    pub cache_paths: Option<Vec<String>>,
    pub timeout_minutes: Option<i64>,
    pub image: Option<String>,
    pub compute_type: Option<String>,
    pub log_retention_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawPhases {
    pub install: Option<RawPhase>,
    pub pre_build: Option<RawPhase>,
    pub build: Option<RawPhase>,
    pub post_build: Option<RawPhase>,
}

#[derive(Debug, Deserialize)]
pub struct RawPhase {
    pub commands: Option<Vec<String>>,
    pub finally: Option<Vec<String>>,
    pub on_failure: Option<String>,
    pub run_as: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawArtifacts {
    pub files: Option<Vec<String>>,
    pub base_directory: Option<String>,
    pub discard_paths: Option<bool>,
    pub exclude_paths: Option<Vec<String>>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawDeploy {
    pub source: Option<String>,
    pub destination: Option<String>,
    pub file_exists_behavior: Option<String>,
    pub permissions: Option<Vec<RawPermission>>,
    pub hooks: Option<BTreeMap<String, Vec<RawHook>>>,
}

#[derive(Debug, Deserialize)]
pub struct RawPermission {
    pub object: Option<String>,
    pub pattern: Option<String>,
    pub except: Option<Vec<String>>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawHook {
    pub location: Option<String>,
    pub timeout: Option<i64>,
    pub runas: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawCustomerAmi {
    pub provision: Option<Vec<String>>,
}

/// The settings that layer: platform `[defaults]` < customer `[defaults]` < environment file.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct RawLayer {
    pub instance_type: Option<String>,
    pub capacity: Option<RawCapacity>,
    pub scaling: Option<RawScaling>,
    pub health_check: Option<RawHealthCheck>,
    pub deregistration_delay_seconds: Option<i64>,
    pub deployment: Option<RawDeployment>,
    pub tags: Option<Map>,
}

/// `customers/<customer>/<env>.toml`: the layered settings plus what only an environment has.
#[derive(Debug, Deserialize, Default)]
pub struct RawEnv {
    pub production: Option<bool>,
    pub approval: Option<RawApproval>,
    pub hosts: Option<Vec<String>>,
    pub instance_type: Option<String>,
    pub capacity: Option<RawCapacity>,
    pub scaling: Option<RawScaling>,
    pub health_check: Option<RawHealthCheck>,
    pub deregistration_delay_seconds: Option<i64>,
    pub deployment: Option<RawDeployment>,
    pub tags: Option<Map>,
    pub database: Option<RawDatabase>,
    pub build: Option<RawEnvBuild>,
}

impl RawEnv {
    /// The part of the environment file that layers over the defaults.
    pub fn layer(&self) -> RawLayer {
        RawLayer {
            instance_type: self.instance_type.clone(),
            capacity: self.capacity.clone(),
            scaling: self.scaling.clone(),
            health_check: self.health_check.clone(),
            deregistration_delay_seconds: self.deregistration_delay_seconds,
            deployment: self.deployment.clone(),
            tags: self.tags.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct RawCapacity {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub desired: Option<i64>,
    pub health_check_grace_period: Option<i64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct RawScaling {
    pub cpu_target: Option<f64>,
    pub requests_per_target: Option<f64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub port: Option<RawPort>,
    pub protocol: Option<String>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
    pub matcher: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged, expecting = "a port number or \"traffic-port\"")]
pub enum RawPort {
    Number(i64),
    Name(String),
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct RawDeployment {
    pub config: Option<String>,
    pub auto_rollback: Option<bool>,
    pub timeout_minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawDatabase {
    pub engine: Option<String>,
    pub version: Option<String>,
    pub instance_class: Option<String>,
    pub master_username: Option<String>,
    pub identifier: Option<String>,
    pub database_name: Option<String>,
    pub security_groups: Option<RawSecurityGroups>,
    pub backup_retention_days: Option<i64>,
    pub backup_window: Option<String>,
    pub maintenance_window: Option<String>,
    pub auto_minor_version_upgrade: Option<bool>,
    pub allow_major_version_upgrade: Option<bool>,
    pub storage_gb: Option<i64>,
    pub multi_az: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct RawEnvBuild {
    pub variables: Option<Map>,
    pub parameter_store: Option<Map>,
    pub secrets_manager: Option<Map>,
}

// Settings that name an AWS resource: an id or ARN as a string, or a table that says how to find it.

#[derive(Debug, Deserialize, Clone)]
#[serde(
    untagged,
    expecting = "a VPC id (\"vpc-...\") or a lookup table: { default = true } or { tags = { Name = \"...\" } }"
)]
pub enum RawVpc {
    Id(String),
    Lookup(RawTagLookup),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTagLookup {
    pub default: Option<bool>,
    pub tags: Option<Map>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(
    untagged,
    expecting = "a list of subnet ids or a lookup table: { default = true } or { tags = { Tier = \"...\" } }"
)]
pub enum RawSubnets {
    Ids(Vec<String>),
    Lookup(RawTagLookup),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(
    untagged,
    expecting = "a list of security group ids or a lookup table: { names = [\"...\"] } or { tags = { ... } }"
)]
pub enum RawSecurityGroups {
    Ids(Vec<String>),
    Lookup(RawGroupLookup),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawGroupLookup {
    pub names: Option<Vec<String>>,
    pub tags: Option<Map>,
}

/// `approval = true`, `false`, or `{ timeout_minutes = 120 }` (which asks for approval too).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged, expecting = "true, false, or a table: { timeout_minutes = 60 }")]
pub enum RawApproval {
    Required(bool),
    Settings(RawApprovalSettings),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawApprovalSettings {
    pub timeout_minutes: Option<i64>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged, expecting = "a certificate ARN or a lookup table: { domain = \"example.com\" }")]
pub enum RawCertificate {
    Arn(String),
    Lookup(RawDomainLookup),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDomainLookup {
    pub domain: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged, expecting = "an AMI id (\"ami-...\") or a lookup table: { name = \"...\", owners = [\"amazon\"] }")]
pub enum RawAmi {
    Id(String),
    Lookup(RawAmiLookup),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAmiLookup {
    pub name: String,
    pub owners: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged, expecting = "an IAM role ARN or a lookup table: { name = \"...\" }")]
pub enum RawRole {
    Arn(String),
    Lookup(RawNameLookup),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawNameLookup {
    pub name: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged, expecting = "a listener ARN or a lookup table: { load_balancer = \"...\", port = 443 }")]
pub enum RawListener {
    Arn(String),
    Lookup(RawListenerLookup),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawListenerLookup {
    pub load_balancer: String,
    pub port: i64,
}
