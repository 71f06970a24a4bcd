//! `customers/<customer>/<env>.toml`: production, host names, the database, the environment's
//! build variables, tags and the derived resource names; the layered settings are in `layered`.

use crate::config::model::*;
use crate::config::raw::*;
use crate::names::{self, ResourceNames, MANAGED_BY};

use super::build::merge_build;
use super::customer::CustomerView;
use super::database::validate_database;
use super::layered::{self, Layer};
use super::refs::user_tags;
use super::{Checker, File};

const MAX_HOSTS_PER_RULE: usize = 5;

pub(super) fn validate_env(
    env_name: &str,
    raw: &RawEnv,
    file: &File<'_>,
    layers: &[Layer<'_>],
    customer: &CustomerView<'_>,
    platform: &Platform,
    c: &mut Checker,
) -> Option<Environment> {
    let production = c.required(file, "production", raw.production, "say `production = true` or `production = false`; production turns on approval, Multi-AZ and one-at-a-time deploys");
    let production_on = production.unwrap_or(false);
    let instance_type = layered::instance_type(layers, file, c);
    let capacity = layered::capacity(layers, file, production_on, c);
    let scaling = layered::scaling(layers, c);
    let health_check = layered::health_check(layers, file, c);
    let deregistration_delay = layered::deregistration_delay(layers, c);
    let dedicated = production_on && customer.domain.is_some();
    let hosts = hosts(raw, file, dedicated, customer, platform, c);
    let database = raw.database.as_ref().and_then(|db| validate_database(db, file, production_on, c));
    let deployment = layered::deployment(layers, production_on, c);

    let approval = approval(raw, file, production_on, c);
    // Production rules, enforced.
    if production_on && customer.approval_emails.is_empty() {
        c.error_help(customer.file, "approval_emails", format!("environment `{env_name}` is production but customer `{}` has no approval e-mail addresses", customer.name), "production changes wait for a human approval; add approval_emails = [\"ops@example.com\"] to customer.toml");
    } else if !production_on && approval.is_some_and(|a| a.required) && customer.approval_emails.is_empty() {
        c.error_help(
            file,
            "approval",
            format!(
                "environment `{env_name}` asks for approval but customer `{}` has no approval e-mail addresses",
                customer.name
            ),
            "add approval_emails = [\"ops@example.com\"] to customer.toml, or remove `approval` from the environment",
        );
    }
    let tags = tags(env_name, file, layers, customer, platform, c);
    let build = merge_build(customer.build, raw.build.as_ref(), file, c);
    let names = derived_names(env_name, raw, file, dedicated, customer, platform, c);
    Some(Environment {
        name: env_name.to_string(),
        production: production?,
        approval: approval?,
        instance_type: instance_type?,
        capacity: capacity?,
        scaling,
        health_check: health_check?,
        deregistration_delay_seconds: deregistration_delay?,
        hosts,
        routing: if dedicated { Routing::DedicatedAlb } else { Routing::SharedAlb },
        database: if raw.database.is_some() { Some(database?) } else { None },
        deployment: deployment?,
        tags,
        build: build?,
        names,
    })
}

/// `approval`: always on in production (`approval = false` there is an error); elsewhere off unless
/// the file says `approval = true` or gives its settings.
fn approval(raw: &RawEnv, file: &File<'_>, production: bool, c: &mut Checker) -> Option<Approval> {
    let (asked, timeout) = match &raw.approval {
        None => (None, None),
        Some(RawApproval::Required(required)) => (Some(*required), None),
        Some(RawApproval::Settings(settings)) => (Some(true), settings.timeout_minutes),
    };
    if production && asked == Some(false) {
        c.error_help(
            file,
            "approval",
            "`approval = false` in a production environment: production changes always wait for a second person's approval",
            "remove `approval = false`; to skip approval, the environment must not be production",
        );
        return None;
    }
    let timeout_minutes = match timeout {
        Some(value) => c.range(file, "approval.timeout_minutes", value, APPROVAL_TIMEOUT_RANGE, " minutes")?,
        None => crate::approval::DEFAULT_TIMEOUT_MINUTES,
    };
    Some(Approval { required: production || asked == Some(true), timeout_minutes })
}

/// How long an approval request stands: at least a few minutes to read a plan, at most a week.
pub(super) const APPROVAL_TIMEOUT_RANGE: std::ops::RangeInclusive<i64> = 5..=10_080;

/// The host names the environment answers to, each checked against the certificate that serves it.
fn hosts(
    raw: &RawEnv,
    file: &File<'_>,
    dedicated: bool,
    customer: &CustomerView<'_>,
    platform: &Platform,
    c: &mut Checker,
) -> Vec<String> {
    let hosts: Vec<String> = match (&raw.hosts, customer.domain) {
        (Some(hosts), _) => hosts.clone(),
        (None, Some(domain)) if dedicated => vec![domain.to_string()],
        (None, _) => {
            c.error_help(
                file,
                "hosts",
                "missing `hosts`",
                "list the host names this environment answers to, e.g. hosts = [\"shop-dev.apps.example.com\"]",
            );
            Vec::new()
        }
    };
    if raw.hosts.as_ref().is_some_and(|h| h.is_empty()) {
        c.error(file, "hosts", "`hosts` is empty; the load balancer rule needs at least one host name");
    }
    if hosts.len() > MAX_HOSTS_PER_RULE {
        c.error_help(
            file,
            "hosts",
            format!("{} host names; an ALB rule takes at most {MAX_HOSTS_PER_RULE} condition values", hosts.len()),
            "use a wildcard such as *.shop.example.com, or fewer names",
        );
    }
    for (i, host) in hosts.iter().enumerate() {
        let path = if raw.hosts.is_some() { format!("hosts[{i}]") } else { "hosts".into() };
        if !c.rule(file, &path, "host name", host, names::host_header) {
            continue;
        }
        if let Some(CertificateRef::Domain(cert_domain)) = customer.certificate.filter(|_| dedicated) {
            if !names::certificate_covers(cert_domain, host) {
                c.error_help(file, &path, format!("host `{host}` is not covered by the certificate for `{cert_domain}`"), "the dedicated ALB serves HTTPS with the customer's certificate; use a host it covers or another certificate");
            }
        }
        if let Some(CertificateRef::Domain(cert_domain)) =
            platform.shared_alb.certificate.as_ref().filter(|_| !dedicated)
        {
            if !names::certificate_covers(cert_domain, host) {
                c.warning(
                    file,
                    &path,
                    format!("host `{host}` is not covered by the shared ALB's certificate for `{cert_domain}`"),
                    "browsers will refuse HTTPS for it unless another certificate on the shared listener covers it",
                );
            }
        }
    }
    hosts
}

/// Platform < platform defaults < customer defaults < environment, then the tool's own.
fn tags(
    env_name: &str,
    file: &File<'_>,
    layers: &[Layer<'_>],
    customer: &CustomerView<'_>,
    platform: &Platform,
    c: &mut Checker,
) -> Tags {
    let mut tags = platform.tags.clone();
    for layer in layers {
        tags.extend(user_tags(c, layer.file, &format!("{}tags", layer.prefix), layer.raw.tags.as_ref()));
    }
    tags.insert("Customer".into(), customer.name.to_string());
    tags.insert("Environment".into(), env_name.to_string());
    tags.insert("ManagedBy".into(), MANAGED_BY.into());
    if tags.len() > 50 {
        c.error(file, "tags", format!("{} tags in all; AWS allows 50 per resource", tags.len()));
    }
    tags
}

fn derived_names(
    env_name: &str,
    raw: &RawEnv,
    file: &File<'_>,
    dedicated: bool,
    customer: &CustomerView<'_>,
    platform: &Platform,
    c: &mut Checker,
) -> ResourceNames {
    let db_identifier = raw.database.as_ref().and_then(|db| db.identifier.clone());
    let names = ResourceNames::derive(&platform.prefix, customer.name, env_name, db_identifier.as_deref());
    for (kind, name, rule) in names.checks(dedicated, raw.database.is_some()) {
        if let Err(why) = rule(name) {
            let path = if kind == "RDS DB identifier" && db_identifier.is_some() { "database.identifier" } else { "" };
            c.error_help(file, path, format!("{kind} name `{name}` {why}"), "the name is derived from the customer and environment names; shorten them (or set database.identifier)");
        }
    }
    names
}
