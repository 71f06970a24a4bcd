//! The customer's `[deploy]`: the appspec's content (files, permissions, hooks).

use std::collections::BTreeMap;

use crate::config::model::*;
use crate::config::raw::*;
use crate::names;

use crate::spec::hooks::{self, EVENT_SECONDS, HOOK_EVENTS};

use super::{Checker, File};

pub(super) fn validate_deploy(raw: Option<&RawDeploy>, file: &File<'_>, c: &mut Checker) -> Option<Deploy> {
    let Some(raw) = raw else {
        c.error_help(
            file,
            "deploy",
            "missing `[deploy]`",
            "say where the software goes on the instances: [deploy] destination = \"/opt/app\"",
        );
        return None;
    };
    let source = raw.source.clone().unwrap_or_else(|| "/".into());
    if source.starts_with("..") || source.contains("/../") {
        c.error(file, "deploy.source", format!("deploy.source `{source}` must stay inside the bundle"));
    }
    let destination = c.required(
        file,
        "deploy.destination",
        raw.destination.clone(),
        "an absolute path on the instances, e.g. \"/opt/app\"",
    );
    if let Some(destination) = &destination {
        if !destination.starts_with('/') {
            c.error(file, "deploy.destination", format!("deploy.destination `{destination}` must be an absolute path"));
        } else {
            warn_dot_dot(c, file, "deploy.destination", destination);
        }
    }
    let file_exists_behavior = raw.file_exists_behavior.as_deref().and_then(|behavior| {
        let parsed = behavior.parse::<FileExistsBehavior>().ok();
        if parsed.is_none() {
            c.error(
                file,
                "deploy.file_exists_behavior",
                format!("file_exists_behavior `{behavior}` must be DISALLOW, OVERWRITE or RETAIN"),
            );
        }
        parsed
    });
    let permissions = permissions(raw.permissions.as_deref().unwrap_or_default(), file, c);
    let hooks = hooks(raw.hooks.as_ref(), file, c);
    Some(Deploy { source, destination: destination?, file_exists_behavior, permissions, hooks })
}

fn permissions(raw: &[RawPermission], file: &File<'_>, c: &mut Checker) -> Vec<Permission> {
    let mut permissions = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let path = format!("deploy.permissions[{i}]");
        let Some(object) = c.required(
            file,
            &format!("{path}.object"),
            p.object.clone(),
            "the path on the instance the permissions apply to",
        ) else {
            continue;
        };
        if !object.starts_with('/') {
            c.error(file, &format!("{path}.object"), format!("permissions object `{object}` must be an absolute path"));
        } else {
            warn_dot_dot(c, file, &format!("{path}.object"), &object);
        }
        if let Some(mode) = &p.mode {
            c.rule(file, &format!("{path}.mode"), "mode", mode, mode_rule);
        }
        for (key, value) in [("owner", &p.owner), ("group", &p.group)] {
            if let Some(value) = value {
                c.rule(file, &format!("{path}.{key}"), key, value, names::unix_user);
            }
        }
        let mut kinds = Vec::new();
        for (j, kind) in p.kind.iter().flatten().enumerate() {
            match kind.parse::<PermissionKind>() {
                Ok(kind) => kinds.push(kind),
                Err(()) => c.error(
                    file,
                    &format!("{path}.type[{j}]"),
                    format!("permission type `{kind}` must be \"file\" or \"directory\""),
                ),
            }
        }
        permissions.push(Permission {
            object,
            pattern: p.pattern.clone(),
            except: p.except.clone().unwrap_or_default(),
            owner: p.owner.clone(),
            group: p.group.clone(),
            mode: p.mode.as_ref().map(|m| normalize_mode(m)),
            kinds,
        });
    }
    permissions
}

/// Scripts by lifecycle event, in the order the agent runs the events; the rules are the
/// appspec validator's (`spec::hooks`).
fn hooks(raw: Option<&BTreeMap<String, Vec<RawHook>>>, file: &File<'_>, c: &mut Checker) -> Vec<(String, Vec<Hook>)> {
    let empty = BTreeMap::new();
    let raw_hooks = raw.unwrap_or(&empty);
    for event in raw_hooks.keys() {
        if let Some(finding) = hooks::event(event) {
            c.finding(file, &format!("deploy.hooks.{event}"), finding);
        }
    }
    let mut out = Vec::new();
    for event in HOOK_EVENTS {
        let Some(scripts) = raw_hooks.get(*event) else { continue };
        let mut list = Vec::new();
        let mut timeouts = Vec::new();
        for (i, hook) in scripts.iter().enumerate() {
            let path = format!("deploy.hooks.{event}[{i}]");
            let location = hook.location.clone();
            let location_ok = match hooks::location(&path, location.as_deref()) {
                Some(finding) => {
                    c.finding(file, &format!("{path}.location"), finding);
                    false
                }
                None => true,
            };
            // A script without a timeout is rendered with the agent's default, so it counts as that.
            let timeout = match hooks::timeout(Some(hook.timeout.unwrap_or(i64::from(EVENT_SECONDS)))) {
                Ok(timeout) => {
                    timeouts.push(timeout);
                    Some(timeout)
                }
                Err(finding) => {
                    c.finding(file, &format!("{path}.timeout"), finding);
                    None
                }
            };
            if let Some(finding) = hook.runas.as_deref().and_then(|user| hooks::runas(Some(user), false)) {
                c.finding(file, &format!("{path}.runas"), finding);
            }
            if let (Some(location), Some(timeout), true) = (location, timeout, location_ok) {
                list.push(Hook { location, timeout, runas: hook.runas.clone() });
            }
        }
        if let Some(finding) = hooks::event_total(event, timeouts) {
            c.finding(file, &format!("deploy.hooks.{event}"), finding);
        }
        out.push((event.to_string(), list));
    }
    out
}

/// A `..` in a path on the instances is legal: the CodeDeploy agent expands it, which may not be
/// where the author meant (`/opt/app/../../etc` is `/etc`).
fn warn_dot_dot(c: &mut Checker, file: &File<'_>, path: &str, value: &str) {
    if value.split('/').any(|part| part == "..") {
        let expanded = crate::spec::appspec::expand_instance_path(value);
        c.warning(
            file,
            path,
            format!("`{path}` `{value}` has `..`: the CodeDeploy agent expands it to `{expanded}`"),
            format!("write \"{expanded}\" if that is what you mean"),
        );
    }
}

fn mode_rule(mode: &str) -> Result<(), String> {
    let ok = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if ok {
        Ok(())
    } else {
        Err("must be 3 or 4 octal digits, e.g. \"755\" or \"0644\"".into())
    }
}

/// `0644` → `644`: the form the agent reads unambiguously (an unquoted leading zero is octal to
/// YAML 1.1 parsers).
fn normalize_mode(mode: &str) -> String {
    let trimmed = mode.trim_start_matches('0');
    format!("{trimmed:0>3}")
}
