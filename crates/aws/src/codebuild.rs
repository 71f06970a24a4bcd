//! A CodeBuild build: `start` one with every input as an override of the project's settings, and
//! follow it as `vending::codebuild::follow_build` sees it: `BatchGetBuilds` for its
//! status and phases, CloudWatch Logs `GetLogEvents` for the log lines written since the last
//! poll, `StopBuild` on Ctrl-C or at the deadline. The mappings take the SDK's own types, so tests
//! drive them with values built by the SDK (the emulator runs no build: it reports `SUCCEEDED` at
//! once, without logs, and is never taken as a result).

use anyhow::Context;
use aws_sdk_cloudwatchlogs::types::OutputLogEvent;
use aws_sdk_codebuild::types::{
    ArtifactNamespace, ArtifactPackaging, ArtifactsType, Build, ComputeType, EnvironmentVariable,
    EnvironmentVariableType, ProjectArtifacts, SourceType,
};
use vending::codebuild::{BuildInputs, BuildSnapshot, BuildSource, Phase};
use vending::release::SourceError;

use crate::infra::{failed, Clients};

/// The build's state: its status and its phases with their messages.
pub fn snapshot(build: &Build) -> BuildSnapshot {
    BuildSnapshot {
        status: build.build_status().map(|s| s.as_str().to_string()).unwrap_or_else(|| "IN_PROGRESS".into()),
        phases: build
            .phases()
            .iter()
            .map(|p| Phase {
                name: p.phase_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                status: p.phase_status().map(|s| s.as_str().to_string()),
                context: p
                    .contexts()
                    .iter()
                    .filter_map(|c| {
                        let message = c.message().unwrap_or_default();
                        let code = c.status_code().unwrap_or_default();
                        match (code.is_empty(), message.is_empty()) {
                            (true, true) => None,
                            (true, false) => Some(message.to_string()),
                            (false, true) => Some(code.to_string()),
                            (false, false) => Some(format!("{code}: {message}")),
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Log events as lines (CodeBuild's carry their own line ends).
pub fn log_lines(events: &[OutputLogEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.message())
        .flat_map(|m| {
            m.trim_end_matches(['\n', '\r'])
                .split('\n')
                .map(|l| l.trim_end_matches('\r').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Starts a build of `inputs` on the environment's project: the source zip at `source_key` in
/// `bucket`, the artifact to `artifact_path`/`artifact_name` there. Every input is an override, so
/// the build is what the inputs say even when the project drifted. The idempotency token is the
/// inputs' hash and this attempt's time: the SDK's retries of the call start no second build, and
/// a new attempt after a failed build starts a new one.
/// Returns the build's id.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    clients: &Clients,
    project: &str,
    bucket: &str,
    source_key: &str,
    artifact_path: &str,
    artifact_name: &str,
    inputs: &BuildInputs,
) -> anyhow::Result<String> {
    let artifacts = ProjectArtifacts::builder()
        .r#type(ArtifactsType::S3)
        .location(bucket)
        .path(artifact_path)
        .name(artifact_name)
        .namespace_type(ArtifactNamespace::None)
        .packaging(ArtifactPackaging::Zip)
        .build()
        .context("build artifacts")?;
    let variables = inputs
        .variables
        .iter()
        .map(|(name, kind, value)| {
            EnvironmentVariable::builder()
                .name(name)
                .value(value)
                .r#type(EnvironmentVariableType::from(kind.as_str()))
                .build()
                .context("a build variable")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = clients
        .codebuild
        .start_build()
        .project_name(project)
        .source_type_override(SourceType::S3)
        .source_location_override(format!("{bucket}/{source_key}"))
        .buildspec_override(&inputs.buildspec)
        .artifacts_override(artifacts)
        .image_override(&inputs.image)
        .compute_type_override(ComputeType::from(inputs.compute_type.as_str()))
        .timeout_in_minutes_override(i32::try_from(inputs.timeout_minutes).context("a timeout in minutes")?)
        .set_environment_variables_override(Some(variables))
        .idempotency_token(format!("{}-{}", &inputs.sha256()[..32], attempt()))
        .send()
        .await
        .map_err(|e| match crate::infra::code(&e) {
            Some("ResourceNotFoundException") => anyhow::anyhow!(
                "the CodeBuild project {project} does not exist: deploy the environment's infrastructure first"
            ),
            _ => failed("start a build", e),
        })?;
    out.build_value().and_then(|b| b.id()).map(str::to_string).context("CodeBuild started a build without an id")
}

/// This attempt: milliseconds since the epoch.
fn attempt() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
}

/// One build on CodeBuild, followed from this machine.
pub struct AwsBuild<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub clients: &'a Clients,
    pub build_id: String,
    /// The log stream, once CodeBuild names it, and where reading left off.
    log: Option<(String, String)>,
    next_token: Option<String>,
}

impl<'a> AwsBuild<'a> {
    pub fn new(runtime: &'a tokio::runtime::Runtime, clients: &'a Clients, build_id: String) -> AwsBuild<'a> {
        AwsBuild { runtime, clients, build_id, log: None, next_token: None }
    }

    async fn get(&self) -> anyhow::Result<Build> {
        let out = self
            .clients
            .codebuild
            .batch_get_builds()
            .ids(&self.build_id)
            .send()
            .await
            .map_err(|e| failed("read the build", e))?;
        out.builds().first().cloned().with_context(|| format!("CodeBuild does not know build {}", self.build_id))
    }
}

impl BuildSource for AwsBuild<'_> {
    fn snapshot(&mut self) -> Result<BuildSnapshot, SourceError> {
        let build = self.runtime.block_on(self.get())?;
        if self.log.is_none() {
            let logs = build.logs();
            if let (Some(group), Some(stream)) = (logs.and_then(|l| l.group_name()), logs.and_then(|l| l.stream_name()))
            {
                self.log = Some((group.to_string(), stream.to_string()));
            }
        }
        Ok(snapshot(&build))
    }

    fn new_log_lines(&mut self) -> Result<Vec<String>, SourceError> {
        let Some((group, stream)) = &self.log else { return Ok(Vec::new()) };
        let out = match self.runtime.block_on(
            self.clients
                .logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(self.next_token.clone())
                .send(),
        ) {
            Ok(out) => out,
            // CodeBuild names the stream before its first line reaches CloudWatch Logs.
            Err(e) if crate::infra::code(&e) == Some("ResourceNotFoundException") => return Ok(Vec::new()),
            Err(e) => return Err(failed("read the build's log", e).into()),
        };
        self.next_token = out.next_forward_token().map(str::to_string);
        Ok(log_lines(out.events()))
    }

    fn stop(&mut self) -> Result<(), SourceError> {
        self.runtime
            .block_on(self.clients.codebuild.stop_build().id(&self.build_id).send())
            .map_err(|e| failed("stop the build", e))?;
        Ok(())
    }
}
