//! The keys each table of the config files allows, for "unknown key" errors that say what would
//! have been accepted. A test checks this table against the raw structs (`tests/it/schema.rs`).

/// Which file a key path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Platform,
    Customer,
    Environment,
}

const LAYER: &[&str] =
    &["instance_type", "capacity", "scaling", "health_check", "deregistration_delay_seconds", "deployment", "tags"];
const CAPACITY: &[&str] = &["min", "max", "desired", "health_check_grace_period"];
const SCALING: &[&str] = &["cpu_target", "requests_per_target"];
const HEALTH_CHECK: &[&str] =
    &["path", "port", "protocol", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "matcher"];
const DEPLOYMENT: &[&str] = &["config", "auto_rollback", "timeout_minutes"];

/// Allowed keys under `path` (array indices written `[]`), or empty when the path is not a table
/// of fixed keys.
pub fn allowed_keys(kind: FileKind, path: &str) -> Vec<&'static str> {
    let layered = |rest: &str| -> &'static [&'static str] {
        match rest {
            "" => LAYER,
            "capacity" => CAPACITY,
            "scaling" => SCALING,
            "health_check" => HEALTH_CHECK,
            "deployment" => DEPLOYMENT,
            _ => &[],
        }
    };
    let keys: &[&str] = match (kind, path) {
        (FileKind::Platform, "") => {
            &["naming", "aws", "network", "shared_alb", "state", "ami", "iam", "defaults", "tags"]
        }
        (FileKind::Platform, "naming") => &["prefix"],
        (FileKind::Platform, "aws") => &["region"],
        (FileKind::Platform, "network") => &["vpc", "subnets", "security_groups"],
        (FileKind::Platform, "shared_alb") => &["name", "listener", "certificate", "security_groups"],
        (FileKind::Platform, "state") => &["bucket"],
        (FileKind::Platform, "ami") => {
            &["base", "local_base_name", "ssh_username", "builder_instance_type", "volume_size_gb"]
        }
        (FileKind::Platform, "iam") => &["codedeploy_service_role", "instance_profile"],
        (FileKind::Customer, "") => &[
            "display_name",
            "domain",
            "certificate",
            "approval_emails",
            "software",
            "build",
            "deploy",
            "ami",
            "defaults",
        ],
        (FileKind::Customer, "software") => &["repository", "ref"],
        (FileKind::Customer, "build") => &[
            "shell",
            "runtime_versions",
            "variables",
            "parameter_store",
            "secrets_manager",
            "phases",
            "artifacts",
            "cache_paths",
            "timeout_minutes",
        ],
        (FileKind::Customer, "build.phases") => &["install", "pre_build", "build", "post_build"],
        (FileKind::Customer, p) if p.starts_with("build.phases.") => &["commands", "finally", "on_failure", "run_as"],
        (FileKind::Customer, "build.artifacts") => {
            &["files", "base_directory", "discard_paths", "exclude_paths", "name"]
        }
        (FileKind::Customer, "deploy") => &["source", "destination", "file_exists_behavior", "permissions", "hooks"],
        (FileKind::Customer, "deploy.permissions[]") => {
            &["object", "pattern", "except", "owner", "group", "mode", "type"]
        }
        (FileKind::Customer, p) if p.starts_with("deploy.hooks.") => &["location", "timeout", "runas"],
        (FileKind::Customer, "ami") => &["provision"],
        (FileKind::Platform | FileKind::Customer, p) if p == "defaults" || p.starts_with("defaults.") => {
            layered(p.strip_prefix("defaults").unwrap_or("").trim_start_matches('.'))
        }
        (FileKind::Environment, "") => &[
            "production",
            "hosts",
            "instance_type",
            "capacity",
            "scaling",
            "health_check",
            "deregistration_delay_seconds",
            "deployment",
            "tags",
            "database",
            "build",
        ],
        (FileKind::Environment, "database") => &[
            "engine",
            "version",
            "instance_class",
            "master_username",
            "identifier",
            "database_name",
            "security_groups",
            "backup_retention_days",
            "backup_window",
            "maintenance_window",
            "auto_minor_version_upgrade",
            "allow_major_version_upgrade",
            "storage_gb",
            "multi_az",
        ],
        (FileKind::Environment, "build") => &["variables", "parameter_store", "secrets_manager"],
        (FileKind::Environment, p) => layered(p),
        _ => &[],
    };
    keys.to_vec()
}
