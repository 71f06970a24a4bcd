//! CodeBuild and CloudWatch Logs: each environment's build project (its generated buildspec
//! inline, sources from and artifacts to the environment's bucket, secrets as Parameter Store and
//! Secrets Manager variables that CodeBuild resolves inside AWS) and the log group its builds log
//! to, with a retention.
//!
//! The emulator (moto 5.2.5) has no UpdateProject; the launcher adds one that stores the new
//! settings (labelled in `moto_fixes.py`). What it never does is run a build.

use anyhow::Context;
use aws_sdk_codebuild::types::{
    ArtifactPackaging, ArtifactsType, CloudWatchLogsConfig, ComputeType, EnvironmentType, EnvironmentVariable,
    EnvironmentVariableType, ImagePullCredentialsType, LogsConfig, LogsConfigStatusType, ProjectArtifacts,
    ProjectEnvironment, ProjectSource, SourceType, Tag,
};
use vending::plan::{BuildVariable, CodeBuildProject, LogGroup, Resource, Tags};

use super::{failed, live_tags, Clients, Current, Found};

/// Where a project reads sources and writes artifacts, under the environment's bucket.
pub const SOURCES: &str = "sources";
pub const BUILDS: &str = "builds";

pub async fn read_log_group(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|e| failed("describe", e))?;
    let Some(group) = out.log_groups().iter().find(|g| g.log_group_name() == Some(name)) else { return Ok(None) };
    // DescribeLogGroups gives the ARN with a `:*` suffix; the tagging calls take it without.
    let arn = group.arn().unwrap_or_default().trim_end_matches(":*").to_string();
    let tags = clients
        .logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(|e| failed("list the tags of", e))?;
    let live = LogGroup {
        retention_days: group.retention_in_days().and_then(|d| u32::try_from(d).ok()).unwrap_or(0),
        tags: live_tags(tags.tags().cloned().unwrap_or_default()),
    };
    Ok(Some(Found::new(Resource::LogGroup(live), arn)))
}

pub(crate) async fn apply_log_group(
    clients: &Clients,
    name: &str,
    d: &LogGroup,
    current: Option<Current<'_, LogGroup>>,
) -> anyhow::Result<()> {
    let logs = &clients.logs;
    let days = i32::try_from(d.retention_days).context("a retention in days")?;
    if current.is_none() {
        logs.create_log_group()
            .log_group_name(name)
            .set_tags(Some(d.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| failed("create", e))?;
    }
    // A new group keeps logs forever until told otherwise.
    if current.as_ref().is_none_or(|c| c.live.retention_days != d.retention_days) {
        logs.put_retention_policy()
            .log_group_name(name)
            .retention_in_days(days)
            .send()
            .await
            .map_err(|e| failed("set the retention of", e))?;
    }
    if let Some(current) = current.filter(|c| c.live.tags != d.tags) {
        let arn = current.id;
        let put = logs.tag_resource().resource_arn(arn).set_tags(Some(d.tags.clone().into_iter().collect()));
        super::retag(
            &d.tags,
            &current.live.tags,
            async { put.send().await.map(|_| ()).map_err(|e| failed("tag", e)) },
            |stale| async move {
                let keys = stale.into_keys().collect();
                logs.untag_resource()
                    .resource_arn(arn)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| failed("untag", e))
            },
        )
        .await?;
    }
    Ok(())
}

pub async fn read_project(clients: &Clients, name: &str) -> anyhow::Result<Option<Found>> {
    let out = clients.codebuild.batch_get_projects().names(name).send().await.map_err(|e| failed("get", e))?;
    let Some(project) = out.projects().iter().find(|p| p.name() == Some(name)) else { return Ok(None) };
    let environment = project.environment();
    let variables = environment
        .map(|e| e.environment_variables())
        .unwrap_or_default()
        .iter()
        .map(|v| BuildVariable {
            name: v.name().to_string(),
            kind: v.r#type().map_or("PLAINTEXT", |t| t.as_str()).to_string(),
            value: v.value().to_string(),
        })
        .collect();
    let source = project.source();
    let bucket = source.and_then(|s| s.location()).and_then(|l| l.strip_suffix(&format!("/{SOURCES}/")));
    let artifacts = project.artifacts().and_then(|a| a.location());
    // Sources and artifacts in one bucket is what the tool makes; anything else differs.
    let bucket = match (bucket, artifacts) {
        (Some(bucket), Some(artifacts)) if bucket == artifacts => bucket.to_string(),
        (bucket, artifacts) => format!("sources {} artifacts {}", bucket.unwrap_or("-"), artifacts.unwrap_or("-")),
    };
    let live = CodeBuildProject {
        image: environment.map(|e| e.image().to_string()).unwrap_or_default(),
        compute_type: environment.map(|e| e.compute_type().as_str().to_string()).unwrap_or_default(),
        image_pull_credentials: environment
            .and_then(|e| e.image_pull_credentials_type())
            .map_or("CODEBUILD", |t| t.as_str())
            .to_string(),
        service_role: project.service_role().unwrap_or_default().to_string(),
        timeout_minutes: project.timeout_in_minutes().and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
        buildspec: source.and_then(|s| s.buildspec()).unwrap_or_default().to_string(),
        bucket,
        variables,
        log_group: project
            .logs_config()
            .and_then(|l| l.cloud_watch_logs())
            .and_then(|c| c.group_name())
            .unwrap_or_default()
            .to_string(),
        tags: live_tags(project.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))),
    };
    Ok(Some(Found::new(Resource::CodeBuildProject(live), project.arn().unwrap_or_default().to_string())))
}

/// The project's settings as CodeBuild takes them, on create and update alike.
struct Settings {
    source: ProjectSource,
    artifacts: ProjectArtifacts,
    environment: ProjectEnvironment,
    logs: LogsConfig,
    tags: Vec<Tag>,
}

fn settings(d: &CodeBuildProject) -> anyhow::Result<Settings> {
    let source = ProjectSource::builder()
        .r#type(SourceType::S3)
        .location(format!("{}/{SOURCES}/", d.bucket))
        .buildspec(&d.buildspec)
        .build()
        .context("a project source")?;
    let artifacts = ProjectArtifacts::builder()
        .r#type(ArtifactsType::S3)
        .location(&d.bucket)
        .path(BUILDS)
        // Each build names its own artifact (StartBuild's artifactsOverride); AWS wants one here.
        .name("revision.zip")
        .packaging(ArtifactPackaging::Zip)
        .build()
        .context("project artifacts")?;
    let variables = d
        .variables
        .iter()
        .map(|v| {
            EnvironmentVariable::builder()
                .name(&v.name)
                .value(&v.value)
                .r#type(EnvironmentVariableType::from(v.kind.as_str()))
                .build()
                .context("a project variable")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let environment = ProjectEnvironment::builder()
        .r#type(EnvironmentType::LinuxContainer)
        .image(&d.image)
        .compute_type(ComputeType::from(d.compute_type.as_str()))
        .image_pull_credentials_type(ImagePullCredentialsType::from(d.image_pull_credentials.as_str()))
        .set_environment_variables(Some(variables))
        .build()
        .context("a project environment")?;
    let logs = LogsConfig::builder()
        .cloud_watch_logs(
            CloudWatchLogsConfig::builder()
                .status(LogsConfigStatusType::Enabled)
                .group_name(&d.log_group)
                .build()
                .context("a logs config")?,
        )
        .build();
    Ok(Settings { source, artifacts, environment, logs, tags: tags(&d.tags) })
}

fn tags(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

pub(crate) async fn apply_project(
    clients: &Clients,
    name: &str,
    d: &CodeBuildProject,
    exists: bool,
) -> anyhow::Result<()> {
    let s = settings(d)?;
    let timeout = i32::try_from(d.timeout_minutes).context("a timeout in minutes")?;
    /// The same settings on either request (two types with the same setters).
    macro_rules! project_settings {
        ($request:expr) => {
            $request
                .name(name)
                .source(s.source)
                .artifacts(s.artifacts)
                .environment(s.environment)
                .service_role(&d.service_role)
                .timeout_in_minutes(timeout)
                .logs_config(s.logs)
                .set_tags(Some(s.tags))
        };
    }
    let codebuild = &clients.codebuild;
    if exists {
        // UpdateProject replaces what it is given, tags included.
        project_settings!(codebuild.update_project()).send().await.map_err(|e| failed("update", e))?;
    } else {
        project_settings!(codebuild.create_project()).send().await.map_err(|e| failed("create", e))?;
    }
    Ok(())
}
