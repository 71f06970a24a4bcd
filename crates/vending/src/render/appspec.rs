//! Model → CodeDeploy AppSpec for EC2/on-premises (`version: 0.0`, Linux).

use saphyr::Yaml;

use super::yaml_build::{int, map, plain, seq, string, strings};
use crate::config::model::{Customer, Environment};

pub fn render(customer: &Customer, env: &Environment) -> String {
    let deploy = &customer.deploy;
    // The agent compares `version` with the number 0.0, so it is written unquoted.
    let mut top: Vec<(&str, Yaml<'static>)> = vec![("version", plain("0.0")), ("os", string("linux"))];
    top.push((
        "files",
        seq([map(vec![("source", string(&deploy.source)), ("destination", string(&deploy.destination))])]),
    ));
    if let Some(behavior) = &deploy.file_exists_behavior {
        top.push(("file_exists_behavior", string(behavior.as_str())));
    }
    if !deploy.permissions.is_empty() {
        let entries = deploy.permissions.iter().map(|p| {
            let mut fields = vec![("object", string(&p.object))];
            if let Some(pattern) = &p.pattern {
                fields.push(("pattern", string(pattern)));
            }
            if !p.except.is_empty() {
                fields.push(("except", strings(&p.except)));
            }
            if let Some(owner) = &p.owner {
                fields.push(("owner", string(owner)));
            }
            if let Some(group) = &p.group {
                fields.push(("group", string(group)));
            }
            if let Some(mode) = &p.mode {
                // Octal digits written as a plain number without a leading zero (`755`): what the
                // agent reads the same under YAML 1.1 and 1.2. Validation guarantees the digits.
                fields.push(("mode", int(mode.parse().unwrap_or(0))));
            }
            if !p.kinds.is_empty() {
                let kinds: Vec<String> = p.kinds.iter().map(|k| k.as_str().to_string()).collect();
                fields.push(("type", strings(&kinds)));
            }
            map(fields)
        });
        top.push(("permissions", seq(entries)));
    }
    let hooks: Vec<(&str, Yaml<'static>)> = deploy
        .hooks
        .iter()
        .filter(|(_, scripts)| !scripts.is_empty())
        .map(|(event, scripts)| {
            let list = scripts.iter().map(|hook| {
                let mut fields = vec![("location", string(&hook.location)), ("timeout", int(i64::from(hook.timeout)))];
                if let Some(user) = &hook.runas {
                    fields.push(("runas", string(user)));
                }
                map(fields)
            });
            (event.as_str(), seq(list))
        })
        .collect();
    if !hooks.is_empty() {
        top.push(("hooks", map(hooks)));
    }
    super::emit_yaml(&super::header(&customer.name, &env.name), &map(top))
}
