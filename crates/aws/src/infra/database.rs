//! RDS: the database's subnet group and instance. The master password is always managed by AWS
//! in Secrets Manager (`ManageMasterUserPassword`): the tool has no way to send one, so none can
//! reach config, files, output or logs.

use std::time::{Duration, Instant};

use anyhow::bail;
use aws_sdk_rds::types::{DbInstance as DBInstance, Tag};
use vending::plan::{
    engine_version_verdict, Database, DbSubnetGroup, PendingDatabase, Resource, Tags, VersionVerdict, RDS_DEFERRABLE,
};

use super::{code, failed, live_tags, Clients, Current, Found};

fn rds_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

async fn tags_of(clients: &Clients, arn: &str) -> anyhow::Result<Tags> {
    let out = clients
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| failed("cannot read tags", e))?;
    Ok(live_tags(out.tag_list().iter().filter_map(|t| Some((t.key.clone()?, t.value.clone()?)))))
}

async fn retag(clients: &Clients, arn: &str, wanted: &Tags, old: &Tags) -> anyhow::Result<()> {
    let rds = &clients.rds;
    let put = rds.add_tags_to_resource().resource_name(arn).set_tags(Some(rds_tags(wanted))).send();
    super::retag(wanted, old, async { put.await.map(|_| ()).map_err(|e| failed("tag", e)) }, |stale| async {
        let remove = rds.remove_tags_from_resource().resource_name(arn).set_tag_keys(Some(stale.into_keys().collect()));
        remove.send().await.map(|_| ()).map_err(|e| failed("remove old tags", e))
    })
    .await
}

pub async fn read_subnet_group(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = match clients.rds.describe_db_subnet_groups().db_subnet_group_name(name).send().await {
        Ok(out) => out,
        Err(e) if code(&e) == Some("DBSubnetGroupNotFoundFault") => return Ok(None),
        Err(e) => return Err(failed("describe", e)),
    };
    let Some(group) = out.db_subnet_groups().first() else { return Ok(None) };
    let arn = group.db_subnet_group_arn.clone().unwrap_or_default();
    let live = DbSubnetGroup {
        subnets: group.subnets().iter().filter_map(|s| s.subnet_identifier.clone()).collect(),
        tags: tags_of(clients, &arn).await?,
    };
    Ok(Some(Found::new(Resource::DbSubnetGroup(live), arn)))
}

pub(crate) async fn apply_subnet_group(
    clients: &Clients,
    name: &str,
    d: &DbSubnetGroup,
    current: Option<Current<'_, DbSubnetGroup>>,
    changed: &[String],
) -> anyhow::Result<()> {
    let subnets = d.subnets.clone();
    let Some(current) = current else {
        clients
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(name)
            .db_subnet_group_description(format!("{name} (cargo xtask deploy)"))
            .set_subnet_ids(Some(subnets))
            .set_tags(Some(rds_tags(&d.tags)))
            .send()
            .await
            .map_err(|e| failed("create", e))?;
        return Ok(());
    };
    if changed.iter().any(|f| f == "subnets") {
        clients
            .rds
            .modify_db_subnet_group()
            .db_subnet_group_name(name)
            .set_subnet_ids(Some(subnets))
            .send()
            .await
            .map_err(|e| failed("modify", e))?;
    }
    if changed.iter().any(|f| f == "tags") {
        retag(clients, current.id, &d.tags, &current.live.tags).await?;
    }
    Ok(())
}

pub async fn read_database(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = match clients.rds.describe_db_instances().db_instance_identifier(name).send().await {
        Ok(out) => out,
        Err(e) if code(&e) == Some("DBInstanceNotFound") => return Ok(None),
        Err(e) => return Err(failed("describe", e)),
    };
    Ok(out.db_instances().first().map(database_found))
}

/// A database as the plan compares it. Changes RDS holds for the maintenance window
/// (`PendingModifiedValues`) are its `pending` values, so the plan neither asks for them again
/// nor hides them. Only AWS reports pending values (the emulator applies every change at once);
/// this mapping is tested with SDK-built answers.
pub fn database_found(db: &DBInstance) -> Found {
    let text = |v: Option<String>| v.unwrap_or_default();
    let pending = db.pending_modified_values.as_ref();
    let live = Database {
        engine: text(db.engine.clone()),
        engine_version: text(db.engine_version.clone()),
        instance_class: text(db.db_instance_class.clone()),
        master_username: text(db.master_username.clone()),
        database_name: text(db.db_name.clone()),
        manage_master_user_password: db.master_user_secret.is_some(),
        multi_az: db.multi_az.unwrap_or_default(),
        security_groups: db.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id.clone()).collect(),
        backup_retention_days: db.backup_retention_period.unwrap_or_default(),
        backup_window: Some(text(db.preferred_backup_window.clone())),
        maintenance_window: Some(text(db.preferred_maintenance_window.clone())),
        auto_minor_version_upgrade: db.auto_minor_version_upgrade.unwrap_or_default(),
        storage_gb: db.allocated_storage.unwrap_or_default(),
        storage_encrypted: db.storage_encrypted.unwrap_or_default(),
        deletion_protection: db.deletion_protection.unwrap_or_default(),
        tags: live_tags(db.tag_list().iter().filter_map(|t| Some((t.key.clone()?, t.value.clone()?)))),
        allow_major_version_upgrade: false,
        pending: PendingDatabase {
            engine_version: pending.and_then(|p| p.engine_version.clone()),
            instance_class: pending.and_then(|p| p.db_instance_class.clone()),
            multi_az: pending.and_then(|p| p.multi_az),
            backup_retention_days: pending.and_then(|p| p.backup_retention_period),
            storage_gb: pending.and_then(|p| p.allocated_storage),
        },
    };
    let mut found = Found::new(Resource::Database(live), text(db.db_instance_arn.clone()));
    found.extra.insert("status".to_string(), text(db.db_instance_status.clone()));
    if let Some(secret) = db.master_user_secret.as_ref().and_then(|s| s.secret_arn.clone()) {
        found.extra.insert("secret_arn".to_string(), secret);
    }
    found
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// Creates the database, or changes it: with `apply_immediately` at once, otherwise RDS holds
/// the changes it can hold (instance class, storage, Multi-AZ, engine version) for the
/// maintenance window and applies the rest (deletion protection, security groups, windows, …) at
/// once, as it always does. Returns a note when changes wait.
pub(crate) async fn apply_database(
    clients: &Clients,
    name: &str,
    d: &Database,
    current: Option<Current<'_, Database>>,
    changed: &[String],
    apply_immediately: bool,
) -> anyhow::Result<Option<String>> {
    if !d.manage_master_user_password {
        bail!("the master password must be managed by AWS (ManageMasterUserPassword); the tool never sets one");
    }
    let Some(current) = current else {
        clients
            .rds
            .create_db_instance()
            .db_instance_identifier(name)
            .engine(&d.engine)
            .engine_version(&d.engine_version)
            .db_instance_class(&d.instance_class)
            .master_username(&d.master_username)
            .manage_master_user_password(true)
            .set_db_name(non_empty(&d.database_name))
            .multi_az(d.multi_az)
            .set_vpc_security_group_ids(Some(d.security_groups.clone()))
            .db_subnet_group_name(name)
            .backup_retention_period(d.backup_retention_days)
            .set_preferred_backup_window(d.backup_window.clone())
            .set_preferred_maintenance_window(d.maintenance_window.clone())
            .auto_minor_version_upgrade(d.auto_minor_version_upgrade)
            .allocated_storage(d.storage_gb)
            .storage_encrypted(true)
            .deletion_protection(d.deletion_protection)
            .publicly_accessible(false)
            .set_tags(Some(rds_tags(&d.tags)))
            .send()
            .await
            .map_err(|e| failed("create", e))?;
        return Ok(None);
    };
    let is = |f: &str| changed.iter().any(|c| c == f);
    let settings = changed.iter().any(|f| f != "tags");
    if settings {
        let mut request =
            clients.rds.modify_db_instance().db_instance_identifier(name).apply_immediately(apply_immediately);
        if is("engine_version") {
            // The plan refused a downgrade and a major upgrade that the config does not allow.
            let major = engine_version_verdict(&d.engine, &d.engine_version, &current.live.engine_version)
                == VersionVerdict::MajorUpgrade;
            request = request.engine_version(&d.engine_version).allow_major_version_upgrade(major);
        }
        if is("instance_class") {
            request = request.db_instance_class(&d.instance_class);
        }
        if is("multi_az") {
            request = request.multi_az(d.multi_az);
        }
        if is("security_groups") {
            request = request.set_vpc_security_group_ids(Some(d.security_groups.clone()));
        }
        if is("backup_retention_days") {
            request = request.backup_retention_period(d.backup_retention_days);
        }
        if is("backup_window") {
            request = request.set_preferred_backup_window(d.backup_window.clone());
        }
        if is("storage_gb") {
            request = request.allocated_storage(d.storage_gb);
        }
        if is("deletion_protection") {
            request = request.deletion_protection(d.deletion_protection);
        }
        if is("maintenance_window") {
            request = request.set_preferred_maintenance_window(d.maintenance_window.clone());
        }
        if is("auto_minor_version_upgrade") {
            request = request.auto_minor_version_upgrade(d.auto_minor_version_upgrade);
        }
        if is("manage_master_user_password") {
            request = request.manage_master_user_password(true);
        }
        request.send().await.map_err(|e| failed("modify", e))?;
    }
    if is("tags") {
        retag(clients, current.id, &d.tags, &current.live.tags).await?;
    }
    let deferred: Vec<&str> = RDS_DEFERRABLE.iter().copied().filter(|f| is(f)).collect();
    Ok((!apply_immediately && !deferred.is_empty()).then(|| {
        let window = current.live.maintenance_window.as_ref().filter(|w| !w.is_empty());
        format!(
            "{name}: RDS applies {} in its maintenance window{}; `deploy --apply-immediately` applies {} now",
            deferred.join(", "),
            window.map(|w| format!(" ({w} UTC)")).unwrap_or_default(),
            if deferred.len() == 1 { "it" } else { "them" }
        )
    }))
}

/// Deletes a database that must be replaced, keeping a final snapshot. Deletion protection is not
/// lifted here: whoever turned it on turns it off.
pub async fn delete_database(clients: &Clients, name: &str) -> anyhow::Result<()> {
    let snapshot = format!(
        "{name}-final-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.as_secs()).unwrap_or_default()
    );
    match clients
        .rds
        .delete_db_instance()
        .db_instance_identifier(name)
        .skip_final_snapshot(false)
        .final_db_snapshot_identifier(&snapshot)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if code(&e) == Some("InvalidParameterCombination") => bail!(
            "{name} has deletion protection: turn it off yourself if it really must be replaced (final snapshot {snapshot} would be kept)"
        ),
        Err(e) => return Err(failed("delete the old database", e)),
    }
    println!("{name}: deleting; final snapshot {snapshot}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3600) {
        if read_database(clients, name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    bail!("{name} was still being deleted after an hour; deploy again when it is gone")
}
