//! Checks across customers: what no single file can show.

use std::collections::BTreeMap;

use crate::config::load::locate;
use crate::config::model::{Fleet, Routing};
use crate::config::validate::{CustomerSources, FleetSources};
use crate::diag::{Diagnostic, Severity};
use crate::names::hosts_overlap;

/// The default quota of rules per ALB, excluding default rules (adjustable with AWS Support).
const RULES_PER_ALB: usize = 100;

pub fn check_fleet(fleet: &Fleet, sources: &FleetSources, out: &mut Vec<Diagnostic>) {
    let env_source = |customer: &str, env: &str| {
        sources
            .customers
            .iter()
            .find(|c: &&CustomerSources| c.name == customer)
            .and_then(|c| c.environments.iter().find(|(name, _)| name == env))
            .map(|(_, source)| source)
    };
    let report = |out: &mut Vec<Diagnostic>, customer: &str, env: &str, path: &str, message: String, help: String| {
        let Some(source) = env_source(customer, env) else { return };
        let span = locate(source, path);
        let d = Diagnostic::at(Severity::Error, source, span, message).with_help(help);
        out.push(if path.is_empty() { d } else { d.with_key(path) });
    };

    // Host names: each may be claimed by one environment only (case-insensitive, as ALB matches),
    // and on the shared listener no pattern of one environment may match a host of another:
    // which rule wins would depend on the rules' priorities, that is on deploy order.
    let mut hosts: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    let mut patterns: Vec<(&str, &str, &str)> = Vec::new();
    let mut shared_hosts: Vec<(String, &str, &str)> = Vec::new();
    for customer in &fleet.customers {
        for env in &customer.environments {
            for (i, host) in env.hosts.iter().enumerate() {
                let key = host.to_ascii_lowercase();
                let at = format!("hosts[{i}]");
                if let Some((other_customer, other_env)) = hosts.get(&key) {
                    report(
                        out,
                        &customer.name,
                        &env.name,
                        &at,
                        format!("host `{host}` is already claimed by {other_customer}/{other_env}"),
                        "a host name routes to one environment; remove it from one of them".into(),
                    );
                    continue;
                }
                // Rule order decides only among rules of one listener: the shared one.
                let shared = env.routing == Routing::SharedAlb;
                let wildcard = host.contains(['*', '?']);
                let earlier = shared_hosts.iter().filter(|_| wildcard).map(|(h, c, e)| (h.as_str(), *c, *e));
                let overlap = patterns.iter().map(|(p, c, e)| (*p, *c, *e)).chain(earlier).filter(|_| shared).find(
                    |(other, c, e)| {
                        (*c, *e) != (customer.name.as_str(), env.name.as_str()) && hosts_overlap(host, other)
                    },
                );
                if let Some((other, other_customer, other_env)) = overlap {
                    report(
                        out,
                        &customer.name,
                        &env.name,
                        &at,
                        format!(
                            "host `{host}` overlaps `{other}` of {other_customer}/{other_env}: a request can match both rules, and which one wins depends on deploy order"
                        ),
                        "make the patterns disjoint (a wildcard matches any characters, `?` one)".into(),
                    );
                    continue;
                }
                hosts.insert(key.clone(), (&customer.name, &env.name));
                if shared {
                    shared_hosts.push((key, &customer.name, &env.name));
                    if wildcard {
                        patterns.push((host, &customer.name, &env.name));
                    }
                }
            }
        }
    }

    // Resource names: two customers must never derive the same name (`a-b`/`c` and `a`/`b-c`).
    let mut owners: BTreeMap<(&str, &str), (&str, &str)> = BTreeMap::new();
    for customer in &fleet.customers {
        for env in &customer.environments {
            let n = &env.names;
            let mut own = vec![
                ("S3 bucket", n.bucket.as_str()),
                ("target group", n.target_group.as_str()),
                ("launch template", n.launch_template.as_str()),
                ("Auto Scaling group", n.auto_scaling_group.as_str()),
                ("CodeDeploy deployment group", n.deployment_group.as_str()),
            ];
            if env.routing == Routing::DedicatedAlb {
                own.push(("load balancer", n.load_balancer.as_str()));
            }
            if env.database.is_some() {
                own.push(("RDS DB identifier", n.database.as_str()));
            }
            let mut clashes: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
            for (kind, name) in own {
                match owners.get(&(kind, name)) {
                    Some(other) => clashes.entry(*other).or_default().push(format!("{kind} `{name}`")),
                    None => {
                        owners.insert((kind, name), (&customer.name, &env.name));
                    }
                }
            }
            for ((other_customer, other_env), what) in clashes {
                report(
                    out,
                    &customer.name,
                    &env.name,
                    "",
                    format!(
                        "{}/{} derives the same resource names as {other_customer}/{other_env}: {}",
                        customer.name,
                        env.name,
                        what.join(", ")
                    ),
                    "rename the customer folder or the environment file so the names differ".into(),
                );
            }
        }
    }

    let shared_rules =
        fleet.customers.iter().flat_map(|c| &c.environments).filter(|e| e.routing == Routing::SharedAlb).count();
    if shared_rules > RULES_PER_ALB {
        let mut d = Diagnostic::file(
            Severity::Warning,
            "customers/platform.toml",
            format!(
                "{shared_rules} environments share the ALB `{}`; the default quota is {RULES_PER_ALB} rules per ALB",
                fleet.platform.shared_alb.name
            ),
        )
        .with_help("ask AWS Support to raise \"Rules per Application Load Balancer\" before deploying them all");
        if let Some(source) = &sources.platform {
            d = Diagnostic::at(Severity::Warning, source, locate(source, "shared_alb.name"), d.message.clone())
                .with_help(d.help.clone().unwrap_or_default());
        }
        out.push(d);
    }
}
