//! An environment's `[database]`: RDS engine, version, class, master user (its password kept by
//! Secrets Manager, never in config), backups, maintenance and the production rules.

use crate::config::model::Database;
use crate::config::raw::RawDatabase;
use crate::names;

use super::refs::security_groups;
use super::{Checker, File};

const DB_ENGINES: &[&str] = &["postgres", "mysql", "mariadb"];

pub(super) fn validate_database(
    raw: &RawDatabase,
    file: &File<'_>,
    production: bool,
    c: &mut Checker,
) -> Option<Database> {
    let engine = c.required(file, "database.engine", raw.engine.clone(), "e.g. engine = \"postgres\"");
    if let Some(engine) = &engine {
        if !DB_ENGINES.contains(&engine.as_str()) {
            c.error_help(
                file,
                "database.engine",
                format!("database engine `{engine}` is not supported"),
                format!("use one of {}", DB_ENGINES.join(", ")),
            );
        }
    }
    let version = c.required(file, "database.version", raw.version.clone(), "e.g. version = \"16.4\"");
    if let Some(version) = &version {
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            c.error(
                file,
                "database.version",
                format!("engine version `{version}` must be digits and dots, e.g. \"16.4\""),
            );
        }
    }
    let instance_class = c.required(
        file,
        "database.instance_class",
        raw.instance_class.clone(),
        "e.g. instance_class = \"db.t4g.medium\"",
    );
    if let Some(class) = &instance_class {
        if class.strip_prefix("db.").is_none_or(|rest| names::instance_type(rest).is_err()) {
            c.error(
                file,
                "database.instance_class",
                format!("DB instance class `{class}` must look like \"db.t4g.medium\""),
            );
        }
    }
    let master_username = c.required(
        file,
        "database.master_username",
        raw.master_username.clone(),
        "name the master user; its password is created and kept by AWS Secrets Manager, never in config",
    );
    if let Some(user) = &master_username {
        c.rule(file, "database.master_username", "master username", user, names::rds_master_username);
    }
    database_name(raw, file, c);
    let security_groups =
        raw.security_groups.as_ref().and_then(|g| security_groups(c, file, "database.security_groups", g));
    let retention = c.range(
        file,
        "database.backup_retention_days",
        raw.backup_retention_days.unwrap_or(7),
        if production { 1..=35 } else { 0..=35 },
        " days",
    );
    windows(raw, file, c);
    let storage = c.range(file, "database.storage_gb", raw.storage_gb.unwrap_or(20), 20..=65536, " GiB");
    let multi_az = match raw.multi_az {
        Some(false) if production => {
            c.error_help(file, "database.multi_az", "production databases are Multi-AZ", "remove `multi_az = false`");
            None
        }
        Some(value) => Some(value),
        None => Some(production),
    };
    Some(Database {
        engine: engine?,
        version: version?,
        instance_class: instance_class?,
        master_username: master_username?,
        database_name: raw.database_name.clone(),
        security_groups,
        backup_retention_days: retention?,
        backup_window: raw.backup_window.clone(),
        maintenance_window: raw.maintenance_window.clone(),
        auto_minor_version_upgrade: raw.auto_minor_version_upgrade.unwrap_or(true),
        allow_major_version_upgrade: raw.allow_major_version_upgrade.unwrap_or(false),
        storage_gb: storage?,
        multi_az: multi_az?,
        deletion_protection: production,
    })
}

fn database_name(raw: &RawDatabase, file: &File<'_>, c: &mut Checker) {
    if let Some(name) = &raw.database_name {
        if name.is_empty()
            || name.len() > 63
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || !name.as_bytes()[0].is_ascii_alphabetic()
        {
            c.error(
                file,
                "database.database_name",
                format!("database name `{name}` must be 1 to 63 letters, digits or `_`, starting with a letter"),
            );
        }
    }
}

/// The backup and maintenance windows, which RDS refuses to overlap.
fn windows(raw: &RawDatabase, file: &File<'_>, c: &mut Checker) {
    if let Some(window) = &raw.backup_window {
        c.rule(file, "database.backup_window", "backup window", window, names::backup_window);
    }
    if let Some(window) = &raw.maintenance_window {
        c.rule(file, "database.maintenance_window", "maintenance window", window, names::maintenance_window);
        if let Some(backup) = raw.backup_window.as_deref().filter(|b| names::windows_overlap(b, window)) {
            c.error_help(
                file,
                "database.maintenance_window",
                format!("maintenance window `{window}` overlaps the backup window `{backup}`; RDS refuses that"),
                "move one of them (both are UTC)",
            );
        }
    }
}
