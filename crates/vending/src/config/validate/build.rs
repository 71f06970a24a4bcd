//! The customer's `[build]` (the buildspec's content and CodeBuild's timeout) and an
//! environment's `[build]` variables over it.

use std::collections::BTreeMap;

use crate::config::model::*;
use crate::config::raw::*;
use crate::names;
use crate::secrets::looks_secret;

use super::{Checker, File};

/// CodeBuild's build timeout: 5 to 2160 minutes (36 hours); `DEFAULT_BUILD_TIMEOUT` when not set.
const BUILD_TIMEOUT_RANGE: std::ops::RangeInclusive<i64> = 5..=2160;

pub(super) fn validate_build(raw: Option<&RawBuild>, file: &File<'_>, c: &mut Checker) -> Option<Build> {
    let Some(raw) = raw else {
        c.error_help(file, "build", "missing `[build]`", "describe how the software is built: [build.phases.build] commands = [...] and [build.artifacts] files = [...]");
        return None;
    };
    if let Some(shell) = &raw.shell {
        if !["bash", "/bin/sh"].contains(&shell.as_str()) {
            c.error(
                file,
                "build.shell",
                format!("build shell `{shell}` must be \"bash\" or \"/bin/sh\" (Linux builds)"),
            );
        }
    }
    let maps =
        env_maps(c, file, "build", raw.variables.as_ref(), raw.parameter_store.as_ref(), raw.secrets_manager.as_ref());
    let phases = phases(raw.phases.as_ref(), file, c);
    if phases.iter().all(|p| p.commands.is_empty()) {
        c.error_help(
            file,
            "build.phases",
            "the build has no commands",
            "add [build.phases.build] commands = [\"...\"]",
        );
    }
    let runtime_versions = raw.runtime_versions.clone().unwrap_or_default();
    let artifacts = artifacts(raw.artifacts.as_ref(), file, c);
    let timeout_minutes = match raw.timeout_minutes {
        Some(value) => c.range(file, "build.timeout_minutes", value, BUILD_TIMEOUT_RANGE, ""),
        None => Some(DEFAULT_BUILD_TIMEOUT),
    };
    let project = project(raw, file, c);
    let (variables, parameter_store, secrets_manager) = maps?;
    Some(Build {
        shell: raw.shell.clone(),
        runtime_versions,
        variables,
        parameter_store,
        secrets_manager,
        phases,
        artifacts: artifacts?,
        cache_paths: raw.cache_paths.clone().unwrap_or_default(),
        timeout_minutes: timeout_minutes?,
        project: project?,
    })
}

/// The CodeBuild project's image, compute type and log retention.
fn project(raw: &RawBuild, file: &File<'_>, c: &mut Checker) -> Option<BuildProject> {
    let defaults = BuildProject::default();
    let image = match &raw.image {
        None => Some(defaults.image),
        Some(image) if image.is_empty() || image.len() > 255 || image.chars().any(char::is_whitespace) => {
            c.error_help(
                file,
                "build.image",
                format!("build image `{image}` is not an image name"),
                "an AWS-managed image (aws/codebuild/amazonlinux-x86_64-standard:5.0) or an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG)",
            );
            None
        }
        Some(image) => Some(image.clone()),
    };
    let compute_type = match &raw.compute_type {
        None => Some(defaults.compute_type),
        Some(word) => match word.parse::<ComputeType>() {
            Ok(compute_type) => Some(compute_type),
            Err(()) => {
                let words: Vec<&str> = ComputeType::ALL.iter().map(|t| t.as_str()).collect();
                c.error(
                    file,
                    "build.compute_type",
                    format!("build.compute_type `{word}` must be one of {}", words.join(", ")),
                );
                None
            }
        },
    };
    let log_retention_days = match raw.log_retention_days {
        None => Some(defaults.log_retention_days),
        Some(days) if LOG_RETENTION_DAYS.iter().any(|&d| i64::from(d) == days) => u32::try_from(days).ok(),
        Some(days) => {
            let allowed: Vec<String> = LOG_RETENTION_DAYS.iter().map(u32::to_string).collect();
            c.error_help(
                file,
                "build.log_retention_days",
                format!("build.log_retention_days {days} is not a period CloudWatch Logs keeps logs for"),
                format!("one of {}", allowed.join(", ")),
            );
            None
        }
    };
    Some(BuildProject { image: image?, compute_type: compute_type?, log_retention_days: log_retention_days? })
}

/// The phases given, in CodeBuild's order.
fn phases(raw_phases: Option<&RawPhases>, file: &File<'_>, c: &mut Checker) -> Vec<Phase> {
    let mut phases = Vec::new();
    for (name, phase) in [
        ("install", raw_phases.and_then(|p| p.install.as_ref())),
        ("pre_build", raw_phases.and_then(|p| p.pre_build.as_ref())),
        ("build", raw_phases.and_then(|p| p.build.as_ref())),
        ("post_build", raw_phases.and_then(|p| p.post_build.as_ref())),
    ] {
        let Some(phase) = phase else { continue };
        let path = format!("build.phases.{name}");
        let commands = phase.commands.clone().unwrap_or_default();
        if commands.is_empty() && name != "install" {
            c.error_help(
                file,
                &path,
                format!("phase `{name}` has no commands"),
                "CodeBuild requires `commands` in every phase it is given; remove the phase or add commands",
            );
        }
        for (i, command) in commands.iter().chain(phase.finally.iter().flatten()).enumerate() {
            if command.trim().is_empty() {
                c.error(file, &format!("{path}.commands[{i}]"), "empty command");
            }
        }
        let on_failure = phase.on_failure.as_deref().and_then(|value| match value.parse::<OnFailure>() {
            Ok(on_failure) => Some(on_failure),
            Err(why) => {
                c.error(file, &format!("{path}.on_failure"), format!("on_failure `{value}` {why}"));
                None
            }
        });
        if let Some(user) = &phase.run_as {
            c.rule(file, &format!("{path}.run_as"), "run_as user", user, names::unix_user);
        }
        phases.push(Phase {
            name,
            commands,
            finally: phase.finally.clone().unwrap_or_default(),
            on_failure,
            run_as: phase.run_as.clone(),
        });
    }
    phases
}

fn artifacts(raw: Option<&RawArtifacts>, file: &File<'_>, c: &mut Checker) -> Option<Artifacts> {
    match raw {
        None => {
            c.error_help(
                file,
                "build.artifacts",
                "missing `[build.artifacts]`",
                "name what the build produces: files = [\"**/*\"], usually with base_directory",
            );
            None
        }
        Some(a) => {
            let files = a.files.clone().unwrap_or_default();
            if files.is_empty() {
                c.error_help(
                    file,
                    "build.artifacts.files",
                    "`build.artifacts.files` is missing or empty",
                    "CodeBuild requires `files`, e.g. [\"**/*\"]",
                );
            }
            for (i, pattern) in files.iter().enumerate() {
                if pattern.is_empty() || pattern.starts_with('/') || pattern.split('/').any(|p| p == "..") {
                    c.error(
                        file,
                        &format!("build.artifacts.files[{i}]"),
                        format!("artifact path `{pattern}` must be relative to the source directory, without `..`"),
                    );
                }
            }
            if let Some(base) = &a.base_directory {
                if base.is_empty() || base.starts_with('/') || base.split('/').any(|p| p == "..") {
                    c.error(
                        file,
                        "build.artifacts.base_directory",
                        format!("base_directory `{base}` must be relative to the source directory, without `..`"),
                    );
                }
            }
            Some(Artifacts {
                files,
                base_directory: a.base_directory.clone(),
                discard_paths: a.discard_paths.unwrap_or(false),
                exclude_paths: a.exclude_paths.clone().unwrap_or_default(),
                name: a.name.clone(),
            })
        }
    }
}

type EnvMaps = (BTreeMap<String, String>, BTreeMap<String, String>, BTreeMap<String, String>);

/// Checks the three variable maps of a build: names, no name twice, no secret in plain text.
fn env_maps(
    c: &mut Checker,
    file: &File<'_>,
    prefix: &str,
    variables: Option<&Map>,
    parameter_store: Option<&Map>,
    secrets_manager: Option<&Map>,
) -> Option<EnvMaps> {
    let mut ok = true;
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (kind, map) in
        [("variables", variables), ("parameter_store", parameter_store), ("secrets_manager", secrets_manager)]
    {
        for (name, value) in map.into_iter().flatten() {
            let path = format!("{prefix}.{kind}.{name}");
            ok &= c.rule(file, &path, "variable name", name, names::env_var_name);
            if let Some(other) = seen.insert(name, kind) {
                c.error(file, &path, format!("variable `{name}` is set both in `{other}` and in `{kind}`"));
                ok = false;
            }
            if kind == "variables" && looks_secret(name) && !value.is_empty() {
                c.error_help(file, &path, format!("`{name}` looks like a secret and is written in plain text"), format!("store it in SSM Parameter Store or Secrets Manager and reference it under `{prefix}.parameter_store` or `{prefix}.secrets_manager`"));
                ok = false;
            }
            if kind != "variables" && value.trim().is_empty() {
                c.error(file, &path, format!("`{name}` names no parameter or secret"));
                ok = false;
            }
        }
    }
    ok.then(|| {
        (
            variables.cloned().unwrap_or_default(),
            parameter_store.cloned().unwrap_or_default(),
            secrets_manager.cloned().unwrap_or_default(),
        )
    })
}

/// The environment's `[build]` adds to and overrides the customer's variables.
pub(super) fn merge_build(
    customer: &Build,
    raw: Option<&RawEnvBuild>,
    file: &File<'_>,
    c: &mut Checker,
) -> Option<Build> {
    let mut build = customer.clone();
    let Some(raw) = raw else { return Some(build) };
    let (variables, parameter_store, secrets_manager) =
        env_maps(c, file, "build", raw.variables.as_ref(), raw.parameter_store.as_ref(), raw.secrets_manager.as_ref())?;
    // A name moves to the kind the environment gives it, so it is never in two maps.
    for name in variables.keys().chain(parameter_store.keys()).chain(secrets_manager.keys()) {
        build.variables.remove(name);
        build.parameter_store.remove(name);
        build.secrets_manager.remove(name);
    }
    build.variables.extend(variables);
    build.parameter_store.extend(parameter_store);
    build.secrets_manager.extend(secrets_manager);
    Some(build)
}
