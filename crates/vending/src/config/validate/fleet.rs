//! Checks across customers: what no single file can show.

use std::collections::BTreeMap;

use super::{CustomerSources, FleetSources};
use crate::config::load::locate;
use crate::config::model::{Fleet, ListenerRef, Routing};
use crate::diag::{Diagnostic, Severity};
use crate::names::hosts_overlap;

/// Reports an error at a key of an environment's file, found again by its path.
struct Reporter<'a> {
    sources: &'a FleetSources,
}

impl Reporter<'_> {
    fn report(&self, out: &mut Vec<Diagnostic>, customer: &str, env: &str, path: &str, message: String, help: String) {
        let source = self
            .sources
            .customers
            .iter()
            .find(|c: &&CustomerSources| c.name == customer)
            .and_then(|c| c.environments.iter().find(|(name, _)| name == env))
            .map(|(_, source)| source);
        let Some(source) = source else { return };
        let span = locate(source, path);
        let d = Diagnostic::at(Severity::Error, source, span, message).with_help(help);
        out.push(if path.is_empty() { d } else { d.with_key(path) });
    }
}

pub(super) fn check_fleet(fleet: &Fleet, sources: &FleetSources, out: &mut Vec<Diagnostic>) {
    let reporter = Reporter { sources };
    host_conflicts(fleet, &reporter, out);
    name_clashes(fleet, &reporter, out);
    rule_quota(fleet, sources, out);
}

fn host_conflicts(fleet: &Fleet, reporter: &Reporter<'_>, out: &mut Vec<Diagnostic>) {
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
                    reporter.report(
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
                    reporter.report(
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
}

fn name_clashes(fleet: &Fleet, reporter: &Reporter<'_>, out: &mut Vec<Diagnostic>) {
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
                reporter.report(
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
}

/// A listener named by ARN is not the tool's: it cannot grow a pool, so more environments than
/// its quota of rules is a warning. (The tool's own shared load balancer grows a pool instead.)
fn rule_quota(fleet: &Fleet, sources: &FleetSources, out: &mut Vec<Diagnostic>) {
    let alb = &fleet.platform.shared_alb;
    let shared_rules =
        fleet.customers.iter().flat_map(|c| &c.environments).filter(|e| e.routing == Routing::SharedAlb).count();
    let quota = alb.rules_per_alb;
    if let ListenerRef::Lookup { load_balancer, .. } = &alb.listener {
        // The pool's later members are `<name>-<n>`: the last one the fleet needs must be a name too.
        let last = crate::pool::member_name(load_balancer, crate::pool::members_needed(shared_rules, quota));
        if let Err(why) = crate::names::load_balancer_name(&last) {
            let message = format!("the fleet needs shared load balancers up to `{last}`, which {why}");
            let help = "shorten shared_alb.name (later load balancers add `-<n>`), or raise shared_alb.rules_per_alb if AWS raised the quota";
            out.push(
                match &sources.platform {
                    Some(source) => Diagnostic::at(Severity::Error, source, locate(source, "shared_alb.name"), message),
                    None => Diagnostic::file(Severity::Error, "customers/platform.toml", message),
                }
                .with_help(help),
            );
        }
        return;
    }
    if shared_rules > quota as usize {
        let mut d = Diagnostic::file(
            Severity::Warning,
            "customers/platform.toml",
            format!("{shared_rules} environments share the listener `shared_alb.listener`, which holds {quota} rules (shared_alb.rules_per_alb)"),
        )
        .with_help("ask AWS Support to raise \"Rules per Application Load Balancer\" (and shared_alb.rules_per_alb), or let the tool manage the shared load balancers (no shared_alb.listener ARN): they grow as a pool");
        if let Some(source) = &sources.platform {
            d = Diagnostic::at(Severity::Warning, source, locate(source, "shared_alb.listener"), d.message.clone())
                .with_help(d.help.clone().unwrap_or_default());
        }
        out.push(d);
    }
}
