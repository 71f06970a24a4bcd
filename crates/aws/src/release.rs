//! Releasing a revision through S3 and CodeDeploy: upload under a content-addressed key, find
//! the group's last successful revision, register, create a deployment, and read its status for
//! `vending::release::follow` (`AwsStatus`).

use anyhow::Context;
use aws_sdk_codedeploy::types::{
    BundleType, DeploymentCreator, DeploymentInfo, DeploymentStatus, DeploymentTarget, LifecycleEventStatus,
    RevisionLocation, RevisionLocationType, S3Location,
};
use sha2::Digest;
use vending::release::{self as core, Deployed, InstanceFailure, Snapshot, SourceError, StatusSource};

use crate::infra::{code, failed, Clients};

/// A revision in the customer's bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub bucket: String,
    pub key: String,
    pub e_tag: Option<String>,
}

impl Revision {
    fn location(&self) -> RevisionLocation {
        let s3 = S3Location::builder()
            .bucket(&self.bucket)
            .key(&self.key)
            .bundle_type(BundleType::Zip)
            .set_e_tag(self.e_tag.clone())
            .build();
        RevisionLocation::builder().revision_type(RevisionLocationType::S3).s3_location(s3).build()
    }
}

/// Uploads `path` to `bucket/key` unless the key is there already (the key names the content,
/// so a second upload would change nothing). Returns the revision and whether it was uploaded.
pub async fn upload(
    clients: &Clients,
    bucket: &str,
    key: &str,
    path: &std::path::Path,
    metadata: &[(&str, &str)],
) -> anyhow::Result<(Revision, bool)> {
    let context = || format!("s3://{bucket}/{key}");
    match clients.s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => {
            // Already there under its content's name; it must say it is that content (an object
            // put there by other hands is not deployed under an approval for this SHA-256).
            let wanted = metadata.iter().find(|(name, _)| *name == "sha256").map(|(_, v)| *v);
            let stored = head.metadata().and_then(|m| m.get("sha256")).map(String::as_str);
            if wanted.is_some() && stored != wanted {
                anyhow::bail!(
                    "s3://{bucket}/{key} is there but does not say it holds that revision (its sha256 is {}): delete it and deploy again",
                    stored.unwrap_or("missing")
                );
            }
            let revision = Revision { bucket: bucket.into(), key: key.into(), e_tag: head.e_tag };
            return Ok((revision, false));
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        Err(e) => return Err(failed("cannot read", e)).with_context(context),
    }
    let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut put = clients.s3.put_object().bucket(bucket).key(key).body(body).content_type("application/zip");
    for (name, value) in metadata {
        put = put.metadata(*name, *value);
    }
    // The answer comes after the whole body: the upload's own, longer timeouts.
    let longer = aws_sdk_s3::config::Builder::default().timeout_config(crate::UPLOAD.config());
    let out = put
        .customize()
        .config_override(longer)
        .send()
        .await
        .map_err(|e| failed("cannot upload", e))
        .with_context(context)?;
    Ok((Revision { bucket: bucket.into(), key: key.into(), e_tag: out.e_tag }, true))
}

/// Downloads a revision (`rollback` and the local fleet's rollback redeploy one from S3) and
/// writes it only when its SHA-256 is the one it is stored under: the bucket is not trusted to
/// hold what was uploaded.
pub async fn download(
    clients: &Clients,
    bucket: &str,
    key: &str,
    sha256: &str,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let out = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| failed("cannot download", e))
        .with_context(|| format!("s3://{bucket}/{key}"))?;
    // The call's timeouts end with the answer's first bytes; the body gets the upload's bound.
    let bytes = tokio::time::timeout(crate::UPLOAD.operation, out.body.collect())
        .await
        .map_err(|_| anyhow::anyhow!("s3://{bucket}/{key}: the download stalled"))?
        .with_context(|| format!("s3://{bucket}/{key}"))?
        .into_bytes();
    let found = format!("{:x}", sha2::Sha256::digest(&bytes));
    anyhow::ensure!(
        found == sha256,
        "s3://{bucket}/{key} holds a file whose SHA-256 is {found}, not {sha256}: it was changed after the upload"
    );
    vending::project::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// A deployment group as a release needs it: its id, and its last successful deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub last_successful_deployment: Option<String>,
}

/// The deployment group, or an error that says to deploy the infrastructure first.
pub async fn deployment_group(clients: &Clients, application: &str, group: &str) -> anyhow::Result<Group> {
    find_deployment_group(clients, application, group).await?.with_context(|| {
        format!("deployment group {application}/{group} does not exist: deploy the infrastructure first")
    })
}

/// The deployment group, or `None` before the infrastructure has made it.
pub async fn find_deployment_group(clients: &Clients, application: &str, group: &str) -> anyhow::Result<Option<Group>> {
    let Some(info) = crate::infra::codedeploy::get_group(clients, application, group).await? else { return Ok(None) };
    Ok(Some(Group {
        id: info.deployment_group_id.unwrap_or_default(),
        last_successful_deployment: info.last_successful_deployment.and_then(|d| d.deployment_id),
    }))
}

/// The S3 key of the revision a deployment deployed.
pub async fn revision_key_of(clients: &Clients, deployment_id: &str) -> anyhow::Result<Option<String>> {
    let info = get(clients, deployment_id).await?;
    Ok(info.revision.and_then(|r| r.s3_location).and_then(|s| s.key))
}

/// Registers the revision with the application, so that it is listed with its description.
pub async fn register(
    clients: &Clients,
    application: &str,
    revision: &Revision,
    description: &str,
) -> anyhow::Result<()> {
    clients
        .codedeploy
        .register_application_revision()
        .application_name(application)
        .revision(revision.location())
        .description(description)
        .send()
        .await
        .map_err(|e| failed("cannot register the revision", e))?;
    Ok(())
}

/// Creates a deployment of `revision` on the group and returns its id.
pub async fn create_deployment(
    clients: &Clients,
    application: &str,
    group: &str,
    revision: &Revision,
    description: &str,
    ignore_application_stop_failures: bool,
) -> anyhow::Result<String> {
    let out = clients
        .codedeploy
        .create_deployment()
        .application_name(application)
        .deployment_group_name(group)
        .revision(revision.location())
        .description(description)
        .ignore_application_stop_failures(ignore_application_stop_failures)
        .send()
        .await;
    match out {
        Ok(out) => out.deployment_id.context("CodeDeploy returned no deployment id"),
        Err(e) if code(&e) == Some("DeploymentLimitExceededException") => anyhow::bail!(
            "another deployment to {application}/{group} is still running: wait for it, or stop it in CodeDeploy"
        ),
        Err(e) => Err(failed("cannot create the deployment", e)),
    }
}

async fn get(clients: &Clients, id: &str) -> anyhow::Result<DeploymentInfo> {
    clients
        .codedeploy
        .get_deployment()
        .deployment_id(id)
        .send()
        .await
        .map_err(|e| failed(&format!("cannot read deployment {id}"), e))?
        .deployment_info
        .with_context(|| format!("CodeDeploy returned nothing for deployment {id}"))
}

async fn targets(clients: &Clients, id: &str) -> anyhow::Result<Vec<DeploymentTarget>> {
    let mut ids = Vec::new();
    let mut next = None;
    loop {
        let out = clients
            .codedeploy
            .list_deployment_targets()
            .deployment_id(id)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| failed("cannot list the deployment's instances", e))?;
        ids.extend(out.target_ids.unwrap_or_default());
        next = out.next_token;
        if next.is_none() {
            break;
        }
    }
    let mut targets = Vec::new();
    // BatchGetDeploymentTargets takes at most 25 ids.
    for chunk in ids.chunks(25) {
        let out = clients
            .codedeploy
            .batch_get_deployment_targets()
            .deployment_id(id)
            .set_target_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| failed("cannot read the deployment's instances", e))?;
        targets.extend(out.deployment_targets.unwrap_or_default());
    }
    Ok(targets)
}

/// A deployment as `follow` sees it: the status and overview, the lifecycle event running, what
/// failed where (with the log tail AWS keeps), and the rollback with its status.
pub fn snapshot(info: &DeploymentInfo, targets: &[DeploymentTarget], rollback_status: Option<&str>) -> Snapshot {
    let overview = info.deployment_overview();
    let count = |get: fn(&aws_sdk_codedeploy::types::DeploymentOverview) -> i64| {
        overview.map_or(0, |o| u32::try_from(get(o)).unwrap_or(0))
    };
    let done = count(|o| o.succeeded()) + count(|o| o.failed()) + count(|o| o.skipped());
    let total = done + count(|o| o.pending()) + count(|o| o.in_progress()) + count(|o| o.ready());
    let mut current_event = None;
    let mut instance_failures = Vec::new();
    for target in targets.iter().filter_map(|t| t.instance_target()) {
        let instance = target.target_id().unwrap_or("an instance").to_string();
        for event in target.lifecycle_events() {
            let name = event.lifecycle_event_name().unwrap_or_default();
            match event.status() {
                Some(LifecycleEventStatus::InProgress) if current_event.is_none() => {
                    current_event = Some(format!("{name} on {instance}"));
                }
                Some(LifecycleEventStatus::Failed) => {
                    let diagnostics = event.diagnostics();
                    let script =
                        diagnostics.and_then(|d| d.script_name()).map(|s| format!(" ({s})")).unwrap_or_default();
                    instance_failures.push(InstanceFailure {
                        instance: instance.clone(),
                        event: name.to_string(),
                        message: format!("{}{script}", diagnostics.and_then(|d| d.message()).unwrap_or("no message")),
                        log_tail: diagnostics.and_then(|d| d.log_tail()).unwrap_or_default().to_string(),
                    });
                }
                _ => {}
            }
        }
    }
    let error = info
        .error_information()
        .map(|e| format!("{}: {}", e.code().map(|c| c.as_str()).unwrap_or("error"), e.message().unwrap_or_default()));
    let rollback = info
        .rollback_info()
        .and_then(|r| r.rollback_deployment_id())
        .map(|id| (id.to_string(), rollback_status.unwrap_or("started").to_string()));
    Snapshot {
        status: info.status().map(|s| core::DeploymentStatus::from(s.as_str())).unwrap_or_default(),
        instances_done: done,
        instances_total: total,
        current_event,
        error,
        instance_failures,
        rollback,
    }
}

/// CodeDeploy as `follow`'s status source: GetDeployment every poll; the instances
/// (ListDeploymentTargets, BatchGetDeploymentTargets) while it runs and when it failed; the
/// rollback deployment's status when one started.
pub struct AwsStatus<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub clients: &'a Clients,
    pub deployment_id: String,
    /// Whether a stop rolls back the instances already updated (the group's auto rollback).
    pub roll_back_on_stop: bool,
}

impl AwsStatus<'_> {
    async fn read(&self) -> anyhow::Result<Snapshot> {
        let info = get(self.clients, &self.deployment_id).await?;
        let status = info.status().map(|s| core::DeploymentStatus::from(s.as_str())).unwrap_or_default();
        let targets = match status {
            core::DeploymentStatus::InProgress | core::DeploymentStatus::Failed | core::DeploymentStatus::Stopped => {
                targets(self.clients, &self.deployment_id).await?
            }
            _ => Vec::new(),
        };
        let rollback_status = match info.rollback_info().and_then(|r| r.rollback_deployment_id()) {
            Some(id) => get(self.clients, id).await?.status().map(|s| s.as_str().to_string()),
            None => None,
        };
        Ok(snapshot(&info, &targets, rollback_status.as_deref()))
    }
}

impl StatusSource for AwsStatus<'_> {
    fn snapshot(&mut self) -> Result<Snapshot, SourceError> {
        self.runtime.block_on(self.read()).map_err(Into::into)
    }

    fn stop(&mut self) -> Result<(), SourceError> {
        let stopped = self.runtime.block_on(
            self.clients
                .codedeploy
                .stop_deployment()
                .deployment_id(&self.deployment_id)
                .auto_rollback_enabled(self.roll_back_on_stop)
                .send(),
        );
        match stopped {
            Ok(_) => Ok(()),
            // It ended between the last poll and the stop: the next poll says how.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_deployment_already_completed_exception()) => Ok(()),
            Err(e) => Err(failed("cannot stop the deployment", e).into()),
        }
    }
}

/// The Auto Scaling group's instances that a deployment goes to (in service or starting), by id.
pub async fn group_instances(clients: &Clients, asg: &str) -> anyhow::Result<Vec<String>> {
    let out = clients
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| failed(&format!("cannot read Auto Scaling group {asg}"), e))?;
    let group = out
        .auto_scaling_groups()
        .first()
        .with_context(|| format!("Auto Scaling group {asg} does not exist: deploy the infrastructure first"))?;
    let mut ids: Vec<String> = group
        .instances()
        .iter()
        .filter(|i| {
            let state = i.lifecycle_state().map(|s| s.as_str()).unwrap_or_default();
            state == "InService" || state.starts_with("Pending")
        })
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The group's successful deployments, with their time and revision (what `rollback` chooses
/// from). CodeDeploy keeps the history; the emulator's deployments never succeed.
pub async fn succeeded_deployments(clients: &Clients, application: &str, group: &str) -> anyhow::Result<Vec<Deployed>> {
    let mut pages = clients
        .codedeploy
        .list_deployments()
        .application_name(application)
        .deployment_group_name(group)
        .include_only_statuses(DeploymentStatus::Succeeded)
        .into_paginator()
        .send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        ids.extend(page.map_err(|e| failed("cannot list the deployments", e))?.deployments.unwrap_or_default());
    }
    let mut out = Vec::new();
    // BatchGetDeployments takes 25 ids at a time.
    for chunk in ids.chunks(25) {
        let batch = clients
            .codedeploy
            .batch_get_deployments()
            .set_deployment_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| failed("cannot read the deployments", e))?;
        out.extend(batch.deployments_info.unwrap_or_default().into_iter().filter_map(|info| {
            let rollback = info.creator == Some(DeploymentCreator::CodeDeployRollback)
                || info.description.as_deref().is_some_and(vending::release::is_rollback_description);
            Some(Deployed {
                id: info.deployment_id?,
                created: info.create_time.map_or(0, |t| t.secs()),
                key: info.revision?.s3_location?.key?,
                rollback,
            })
        }));
    }
    Ok(out)
}

/// The group's newest instance refresh, if it ever had one. The emulator has none (moto 5.2.5),
/// so this runs only on AWS; `refresh_of` is tested with SDK-built values.
pub async fn latest_instance_refresh(
    clients: &Clients,
    group: &str,
) -> anyhow::Result<Option<vending::release::InstanceRefresh>> {
    let out = clients
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .max_records(1)
        .send()
        .await
        .map_err(|e| failed(&format!("cannot read the instance refreshes of {group}"), e))?;
    Ok(out.instance_refreshes().first().map(refresh_of))
}

/// An instance refresh as the core reads it.
pub fn refresh_of(refresh: &aws_sdk_autoscaling::types::InstanceRefresh) -> vending::release::InstanceRefresh {
    vending::release::InstanceRefresh {
        id: refresh.instance_refresh_id.clone().unwrap_or_default(),
        status: refresh.status.as_ref().map(|s| s.as_str().to_string()).unwrap_or_default(),
        percent_complete: refresh.percentage_complete,
        status_reason: refresh.status_reason.clone().unwrap_or_default(),
    }
}

/// CodeDeploy's BlockTraffic (`serve = false`) and AllowTraffic (`true`) for one instance: out of
/// the target group, or back in it. The local fleet plays them; on AWS CodeDeploy does.
pub async fn set_traffic(clients: &Clients, target_group: &str, instance: &str, serve: bool) -> anyhow::Result<()> {
    let found = clients
        .elb
        .describe_target_groups()
        .names(target_group)
        .send()
        .await
        .map_err(|e| failed(&format!("cannot read target group {target_group}"), e))?;
    let arn = found
        .target_groups()
        .first()
        .and_then(|g| g.target_group_arn.clone())
        .with_context(|| format!("target group {target_group} does not exist"))?;
    // Already where it should be (a rollback after a failed deployment finds it out of the
    // group): nothing to do, as CodeDeploy does nothing.
    let registered = crate::front_door::targets(clients, &arn).await?.iter().any(|id| id == instance);
    if registered == serve {
        return Ok(());
    }
    let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder().id(instance).build();
    if serve {
        let call = clients.elb.register_targets().target_group_arn(&arn).targets(target).send().await;
        call.map_err(|e| failed(&format!("cannot register {instance} in {target_group}"), e))?;
    } else {
        let call = clients.elb.deregister_targets().target_group_arn(&arn).targets(target).send().await;
        call.map_err(|e| failed(&format!("cannot deregister {instance} from {target_group}"), e))?;
    }
    Ok(())
}
