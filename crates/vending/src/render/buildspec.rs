//! Model → CodeBuild buildspec (version 0.2).

use saphyr::Yaml;

use super::yaml_build::{map, plain, seq, string, string_map, strings};
use crate::config::model::{Customer, Environment};

pub fn render(customer: &Customer, env: &Environment) -> String {
    let build = &env.build;
    let mut top: Vec<(&str, Yaml<'static>)> = vec![("version", plain("0.2"))];

    let mut env_section = Vec::new();
    if let Some(shell) = &build.shell {
        env_section.push(("shell", string(shell)));
    }
    if !build.variables.is_empty() {
        env_section.push(("variables", string_map(&build.variables)));
    }
    if !build.parameter_store.is_empty() {
        env_section.push(("parameter-store", string_map(&build.parameter_store)));
    }
    if !build.secrets_manager.is_empty() {
        env_section.push(("secrets-manager", string_map(&build.secrets_manager)));
    }
    if !env_section.is_empty() {
        top.push(("env", map(env_section)));
    }

    let mut phases = Vec::new();
    for phase in &build.phases {
        let mut fields = Vec::new();
        if let Some(user) = &phase.run_as {
            fields.push(("run-as", string(user)));
        }
        if let Some(on_failure) = &phase.on_failure {
            fields.push(("on-failure", string(&on_failure.to_string())));
        }
        if phase.name == "install" && !build.runtime_versions.is_empty() {
            fields.push(("runtime-versions", string_map(&build.runtime_versions)));
        }
        if !phase.commands.is_empty() {
            fields.push(("commands", strings(&phase.commands)));
        }
        if !phase.finally.is_empty() {
            fields.push(("finally", strings(&phase.finally)));
        }
        phases.push((phase.name, map(fields)));
    }
    if build.phases.iter().all(|p| p.name != "install") && !build.runtime_versions.is_empty() {
        phases.insert(0, ("install", map(vec![("runtime-versions", string_map(&build.runtime_versions))])));
    }
    top.push(("phases", map(phases)));

    let artifacts = &build.artifacts;
    let mut artifact_fields = vec![("files", strings(&artifacts.files))];
    if let Some(name) = &artifacts.name {
        artifact_fields.push(("name", string(name)));
    }
    if let Some(base) = &artifacts.base_directory {
        artifact_fields.push(("base-directory", string(base)));
    }
    if artifacts.discard_paths {
        artifact_fields.push(("discard-paths", plain("yes")));
    }
    if !artifacts.exclude_paths.is_empty() {
        artifact_fields.push(("exclude-paths", strings(&artifacts.exclude_paths)));
    }
    top.push(("artifacts", map(artifact_fields)));
    if !build.cache_paths.is_empty() {
        top.push(("cache", map(vec![("paths", seq(build.cache_paths.iter().map(|p| string(p))))])));
    }
    super::emit_yaml(&super::header(&customer.name, &env.name), &map(top))
}
