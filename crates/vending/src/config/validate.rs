//! Raw structs → validated model. Every problem in every file is collected in one pass; a
//! customer with errors is left out of the returned fleet, so generation never sees bad input.

use std::collections::BTreeMap;

use crate::config::load::{load_toml, Loaded};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::schema::{allowed_keys, FileKind};
use crate::diag::{Diagnostic, Severity};
use crate::names::{self, ResourceNames};
use crate::source::{Locator, SourceFile};
use crate::spec::appspec::{HOOK_EVENTS, RESERVED_EVENTS};

/// The config files of a fleet, read from disk by the caller.
#[derive(Debug, Clone, Default)]
pub struct FleetSources {
    pub platform: Option<SourceFile>,
    pub customers: Vec<CustomerSources>,
}

#[derive(Debug, Clone)]
pub struct CustomerSources {
    pub name: String,
    pub customer: Option<SourceFile>,
    /// `(env name, file)`, sorted by name.
    pub environments: Vec<(String, SourceFile)>,
}

pub const MANAGED_BY: &str = "vending";
const RESERVED_TAGS: &[&str] = &["Customer", "Environment", "ManagedBy"];
const DEFAULT_DEPLOYMENT_CONFIG: &str = "CodeDeployDefault.OneAtATime";
const DEPLOYMENT_CONFIGS: &[&str] =
    &["CodeDeployDefault.OneAtATime", "CodeDeployDefault.HalfAtATime", "CodeDeployDefault.AllAtOnce"];
const DB_ENGINES: &[&str] = &["postgres", "mysql", "mariadb"];
const MAX_HOSTS_PER_RULE: usize = 5;

/// A loaded file and where its keys are.
struct File<'a> {
    source: &'a SourceFile,
    locator: Locator,
}

/// Collects diagnostics; `error` and friends point at a key of a file.
struct Checker {
    diagnostics: Vec<Diagnostic>,
    errors_at_start: usize,
}

impl Checker {
    fn report(&mut self, severity: Severity, file: &File<'_>, path: &str, message: String, help: Option<String>) {
        let span = if file.locator.contains(path) { file.locator.value(path) } else { file.locator.key(path) };
        let mut d = Diagnostic::at(severity, file.source, span, message);
        if !path.is_empty() {
            d = d.with_key(path);
        }
        if let Some(help) = help {
            d = d.with_help(help);
        }
        self.diagnostics.push(d);
    }

    fn error(&mut self, file: &File<'_>, path: &str, message: impl Into<String>) {
        self.report(Severity::Error, file, path, message.into(), None);
    }

    fn error_help(&mut self, file: &File<'_>, path: &str, message: impl Into<String>, help: impl Into<String>) {
        self.report(Severity::Error, file, path, message.into(), Some(help.into()));
    }

    fn warning(&mut self, file: &File<'_>, path: &str, message: impl Into<String>, help: impl Into<String>) {
        self.report(Severity::Warning, file, path, message.into(), Some(help.into()));
    }

    fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Marks the start of a unit (a customer) whose errors decide whether it enters the model.
    fn begin(&mut self) {
        self.errors_at_start = self.errors();
    }

    fn clean_since_begin(&self) -> bool {
        self.errors() == self.errors_at_start
    }

    fn required<T>(&mut self, file: &File<'_>, path: &str, value: Option<T>, help: &str) -> Option<T> {
        if value.is_none() {
            self.error_help(file, path, format!("missing `{path}`"), help);
        }
        value
    }

    /// Applies a naming or format rule; the rule's sentence is completed with the value.
    fn rule(
        &mut self,
        file: &File<'_>,
        path: &str,
        what: &str,
        value: &str,
        rule: impl Fn(&str) -> Result<(), String>,
    ) -> bool {
        match rule(value) {
            Ok(()) => true,
            Err(why) => {
                self.error(file, path, format!("{what} `{value}` {why}"));
                false
            }
        }
    }

    fn range(
        &mut self,
        file: &File<'_>,
        path: &str,
        value: i64,
        range: std::ops::RangeInclusive<i64>,
        unit: &str,
    ) -> Option<u32> {
        if range.contains(&value) {
            u32::try_from(value).ok()
        } else {
            self.error(
                file,
                path,
                format!("`{path}` is {value}{unit}; allowed is {} to {}{unit}", range.start(), range.end()),
            );
            None
        }
    }
}

fn load<'a, T: serde::de::DeserializeOwned>(
    source: &'a SourceFile,
    kind: FileKind,
    checker: &mut Checker,
) -> (Option<T>, File<'a>) {
    let known = move |path: &str| allowed_keys(kind, path);
    let Loaded { raw, locator } = load_toml::<T>(source, &known, &mut checker.diagnostics);
    (raw, File { source, locator })
}

/// Validates the whole fleet. The returned fleet holds the platform and every customer that
/// validated without error; it is `None` when the platform file itself is unusable.
pub fn validate_fleet(sources: &FleetSources) -> (Option<Fleet>, Vec<Diagnostic>) {
    let mut checker = Checker { diagnostics: Vec::new(), errors_at_start: 0 };
    let Some(platform_source) = &sources.platform else {
        checker.diagnostics.push(
            Diagnostic::file(Severity::Error, "customers/platform.toml", "missing `customers/platform.toml`")
                .with_help("create it; README.md lists its keys"),
        );
        return (None, checker.diagnostics);
    };
    let (raw_platform, platform_file) = load::<RawPlatform>(platform_source, FileKind::Platform, &mut checker);
    let platform = raw_platform.and_then(|raw| {
        checker.begin();
        let platform = validate_platform(&raw, &platform_file, &mut checker);
        platform.filter(|_| checker.clean_since_begin()).map(|p| (p, raw.defaults.unwrap_or_default()))
    });

    // Fleet-wide checks see every environment that validated on its own, so a conflict is found
    // even while another file of the same customer has errors; generation gets clean customers only.
    // Customers are independent until the fleet-wide checks, so they validate in parallel; the
    // results are put back in folder order, so the output does not depend on the thread count.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(sources.customers.len()).max(1);
    let chunk = sources.customers.len().div_ceil(workers).max(1);
    let platform_ref = platform.as_ref();
    let platform_file_ref = &platform_file;
    let parts: Vec<(Vec<(Customer, bool)>, Vec<Diagnostic>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .customers
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut checker = Checker { diagnostics: Vec::new(), errors_at_start: 0 };
                    let mut validated = Vec::new();
                    for customer in part {
                        checker.begin();
                        if let Some(customer) =
                            validate_customer(customer, platform_ref, platform_file_ref, &mut checker)
                        {
                            validated.push((customer, checker.clean_since_begin()));
                        }
                    }
                    (validated, checker.diagnostics)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut checked = Vec::new();
    let mut clean = Vec::new();
    for (validated, diagnostics) in parts {
        checker.diagnostics.extend(diagnostics);
        for (customer, is_clean) in validated {
            checked.push(customer);
            clean.push(is_clean);
        }
    }
    let fleet = platform.map(|(platform, _)| Fleet { platform, customers: checked });
    let fleet = fleet.map(|mut fleet| {
        crate::fleet::check_fleet(&fleet, sources, &mut checker.diagnostics);
        let mut clean = clean.into_iter();
        fleet.customers.retain(|_| clean.next().unwrap_or(false));
        fleet
    });
    crate::diag::sort(&mut checker.diagnostics);
    // A layered value from customer.toml or platform.toml is judged once per environment.
    checker.diagnostics.dedup();
    (fleet, checker.diagnostics)
}

fn validate_platform(raw: &RawPlatform, file: &File<'_>, c: &mut Checker) -> Option<Platform> {
    let prefix = c.required(
        file,
        "naming.prefix",
        raw.naming.as_ref().and_then(|n| n.prefix.clone()),
        "set `[naming] prefix`, a short lowercase name of your organisation; it makes S3 bucket names globally unique",
    );
    if let Some(prefix) = &prefix {
        c.rule(file, "naming.prefix", "prefix", prefix, names::customer_or_env_name);
    }
    let region = c.required(
        file,
        "aws.region",
        raw.aws.as_ref().and_then(|a| a.region.clone()),
        "set `[aws] region`, e.g. \"eu-west-1\"",
    );
    if let Some(region) = &region {
        c.rule(file, "aws.region", "region", region, region_rule);
    }
    let network = raw.network.as_ref();
    let vpc = match network.and_then(|n| n.vpc.as_ref()) {
        None => Some(VpcRef::Default),
        Some(RawVpc::Id(id)) => {
            c.rule(file, "network.vpc", "VPC id", id, |v| names::resource_id(v, "vpc")).then(|| VpcRef::Id(id.clone()))
        }
        Some(RawVpc::Lookup(lookup)) => {
            tag_lookup(c, file, "network.vpc", lookup).map(|t| t.map_or(VpcRef::Default, VpcRef::Tags))
        }
    };
    let subnets = match network.and_then(|n| n.subnets.as_ref()) {
        None => Some(SubnetsRef::DefaultForAz),
        Some(RawSubnets::Ids(ids)) => id_list(c, file, "network.subnets", "subnet", ids).map(SubnetsRef::Ids),
        Some(RawSubnets::Lookup(lookup)) => {
            tag_lookup(c, file, "network.subnets", lookup).map(|t| t.map_or(SubnetsRef::DefaultForAz, SubnetsRef::Tags))
        }
    };
    let instance_security_groups = network
        .and_then(|n| n.security_groups.as_ref())
        .map(|g| security_groups(c, file, "network.security_groups", g));
    let alb = raw.shared_alb.as_ref();
    let alb_name = c.required(
        file,
        "shared_alb.name",
        alb.and_then(|a| a.name.clone()),
        "name the shared ALB that carries the host rules of customers without a dedicated one",
    );
    if let Some(name) = &alb_name {
        c.rule(file, "shared_alb.name", "load balancer name", name, names::load_balancer_name);
    }
    let listener = match alb.and_then(|a| a.listener.as_ref()) {
        None => alb_name.clone().map(|name| ListenerRef::Lookup { load_balancer: name, port: 443 }),
        Some(RawListener::Arn(arn)) => c
            .rule(file, "shared_alb.listener", "listener ARN", arn, |v| names::arn(v, "elasticloadbalancing"))
            .then(|| ListenerRef::Arn(arn.clone())),
        Some(RawListener::Lookup(l)) => c
            .range(file, "shared_alb.listener.port", l.port, 1..=65535, "")
            .map(|port| ListenerRef::Lookup { load_balancer: l.load_balancer.clone(), port: port as u16 }),
    };
    let alb_certificate =
        alb.and_then(|a| a.certificate.as_ref()).and_then(|cert| certificate(c, file, "shared_alb.certificate", cert));
    let alb_security_groups =
        alb.and_then(|a| a.security_groups.as_ref()).map(|g| security_groups(c, file, "shared_alb.security_groups", g));
    let state_bucket = c.required(
        file,
        "state.bucket",
        raw.state.as_ref().and_then(|s| s.bucket.clone()),
        "name the S3 bucket that holds AMI records and deploy state",
    );
    if let Some(bucket) = &state_bucket {
        c.rule(file, "state.bucket", "bucket name", bucket, names::bucket_name);
    }
    let ami = raw.ami.as_ref();
    let base = match ami.and_then(|a| a.base.as_ref()) {
        None => {
            c.error_help(
                file,
                "ami.base",
                "missing `ami.base`",
                "give an AMI id or { name = \"al2023-ami-2023.*-x86_64\", owners = [\"amazon\"] }",
            );
            None
        }
        Some(RawAmi::Id(id)) => {
            c.rule(file, "ami.base", "AMI id", id, |v| names::resource_id(v, "ami")).then(|| AmiRef::Id(id.clone()))
        }
        Some(RawAmi::Lookup(l)) => {
            if l.owners.is_empty() {
                c.error_help(
                    file,
                    "ami.base.owners",
                    "`ami.base.owners` is empty",
                    "Packer requires an owner for an AMI filter, e.g. [\"amazon\"]",
                );
            }
            Some(AmiRef::Filter { name: l.name.clone(), owners: l.owners.clone() })
        }
    };
    let local_base_name = c.required(file, "ami.local_base_name", ami.and_then(|a| a.local_base_name.clone()), "give the exact name of a base AMI that the local emulator ships, e.g. \"al2023-ami-2023.12.20260930.0-kernel-6.1-x86_64\"");
    let ssh_username = ami.and_then(|a| a.ssh_username.clone()).unwrap_or_else(|| "ec2-user".into());
    c.rule(file, "ami.ssh_username", "ssh user", &ssh_username, names::unix_user);
    let builder_instance_type = ami.and_then(|a| a.builder_instance_type.clone()).unwrap_or_else(|| "t3.small".into());
    c.rule(file, "ami.builder_instance_type", "instance type", &builder_instance_type, instance_type_rule);
    let volume_size_gb =
        c.range(file, "ami.volume_size_gb", ami.and_then(|a| a.volume_size_gb).unwrap_or(8), 1..=16384, " GiB");
    let iam = raw.iam.as_ref();
    let role = match iam.and_then(|i| i.codedeploy_service_role.as_ref()) {
        None => {
            c.error_help(
                file,
                "iam.codedeploy_service_role",
                "missing `iam.codedeploy_service_role`",
                "give the ARN of CodeDeploy's service role, or { name = \"...\" }",
            );
            None
        }
        Some(RawRole::Arn(arn)) => c
            .rule(file, "iam.codedeploy_service_role", "role ARN", arn, |v| names::arn(v, "iam"))
            .then(|| RoleRef::Arn(arn.clone())),
        Some(RawRole::Lookup(l)) => Some(RoleRef::Name(l.name.clone())),
    };
    let instance_profile = c.required(
        file,
        "iam.instance_profile",
        iam.and_then(|i| i.instance_profile.clone()),
        "name the instance profile of the application instances",
    );
    if let Some(profile) = instance_profile.as_deref().filter(|p| p.starts_with("arn:")) {
        c.rule(file, "iam.instance_profile", "instance profile ARN", profile, |v| names::arn(v, "iam"));
    }
    let tags = user_tags(c, file, "tags", raw.tags.as_ref());
    Some(Platform {
        prefix: prefix?,
        region: region?,
        vpc: vpc?,
        subnets: subnets?,
        instance_security_groups: instance_security_groups.flatten(),
        shared_alb: SharedAlb {
            name: alb_name?,
            listener: listener?,
            certificate: alb_certificate,
            security_groups: alb_security_groups.flatten(),
        },
        state_bucket: state_bucket?,
        ami: PlatformAmi {
            base: base?,
            local_base_name: local_base_name?,
            ssh_username,
            builder_instance_type,
            volume_size_gb: volume_size_gb?,
        },
        codedeploy_service_role: role?,
        instance_profile: instance_profile?,
        tags,
    })
}

fn validate_customer(
    sources: &CustomerSources,
    platform: Option<&(Platform, RawLayer)>,
    platform_file: &File<'_>,
    c: &mut Checker,
) -> Option<Customer> {
    let Some(customer_source) = &sources.customer else {
        c.diagnostics.push(
            Diagnostic::file(
                Severity::Error,
                format!("customers/{}/customer.toml", sources.name),
                format!("customer `{}` has no customer.toml", sources.name),
            )
            .with_help("every directory under customers/ is a customer and needs customer.toml"),
        );
        return None;
    };
    let (raw, file) = load::<RawCustomer>(customer_source, FileKind::Customer, c);
    let name_ok = match names::customer_or_env_name(&sources.name) {
        Ok(()) => true,
        Err(why) => {
            c.diagnostics.push(
                Diagnostic::file(
                    Severity::Error,
                    customer_source.path.clone(),
                    format!("customer directory name `{}` {why}", sources.name),
                )
                .with_help("rename the directory; the name goes into every AWS resource name"),
            );
            false
        }
    };
    if sources.environments.is_empty() {
        c.diagnostics.push(
            Diagnostic::file(
                Severity::Error,
                customer_source.path.clone(),
                format!("customer `{}` has no environment files", sources.name),
            )
            .with_help(format!("add customers/{}/dev.toml (one TOML file per environment)", sources.name)),
        );
    }
    let raw = raw?;
    let display_name = raw.display_name.clone().unwrap_or_else(|| sources.name.clone());
    if display_name.contains("{{") {
        c.error_help(
            &file,
            "display_name",
            "display_name contains `{{`, which Packer reads as a template (it goes into the AMI's tags)",
            "remove the braces",
        );
    }
    if names::tag("CustomerName", &display_name).is_err() {
        c.error_help(
            &file,
            "display_name",
            format!(
                "display_name is {} characters long; it becomes the AMI's `CustomerName` tag, and AWS allows 256",
                display_name.chars().count()
            ),
            "shorten it",
        );
    }
    let domain = raw.domain.clone();
    if let Some(domain) = &domain {
        c.rule(&file, "domain", "domain", domain, names::domain_name);
    }
    let certificate = raw.certificate.as_ref().and_then(|cert| certificate(c, &file, "certificate", cert));
    if domain.is_some() && raw.certificate.is_none() {
        c.error_help(
            &file,
            "domain",
            "a custom domain needs a certificate",
            "add `certificate = \"arn:aws:acm:...\"` or `certificate = { domain = \"...\" }`",
        );
    }
    let approval_emails = raw.approval_emails.clone().unwrap_or_default();
    for (i, email) in approval_emails.iter().enumerate() {
        c.rule(&file, &format!("approval_emails[{i}]"), "e-mail", email, names::email);
    }
    let software = raw.software.as_ref();
    let repository = c.required(
        &file,
        "software.repository",
        software.and_then(|s| s.repository.clone()),
        "give the git repository of the customer's software (https, ssh, file:// or a path in this repository)",
    );
    if let Some(repository) = &repository {
        c.rule(&file, "software.repository", "repository", &redact_url_password(repository), |_| {
            repository_rule(repository)
        });
    }
    let git_ref = software.and_then(|s| s.git_ref.clone()).unwrap_or_else(|| "main".into());
    if git_ref.trim().is_empty() || git_ref.starts_with('-') || git_ref.contains(char::is_whitespace) {
        c.error(&file, "software.ref", format!("git ref `{git_ref}` is not a branch, tag or commit name"));
    }
    let build = validate_build(raw.build.as_ref(), &file, c);
    let deploy = validate_deploy(raw.deploy.as_ref(), &file, c);
    let provision = raw.ami.as_ref().and_then(|a| a.provision.clone()).unwrap_or_default();
    for (i, command) in provision.iter().enumerate() {
        if command.trim().is_empty() {
            c.error(&file, &format!("ami.provision[{i}]"), "empty provisioning command");
        }
    }

    let customer_defaults = raw.defaults.clone().unwrap_or_default();
    let mut environments = Vec::new();
    for (env_name, env_source) in &sources.environments {
        let (raw_env, env_file) = load::<RawEnv>(env_source, FileKind::Environment, c);
        if let Err(why) = names::customer_or_env_name(env_name) {
            c.diagnostics.push(
                Diagnostic::file(
                    Severity::Error,
                    env_source.path.clone(),
                    format!("environment name `{env_name}` {why}"),
                )
                .with_help("rename the file; the name goes into every AWS resource name"),
            );
            continue;
        }
        let (Some(raw_env), Some((platform, platform_defaults)), Some(build)) = (raw_env, platform, build.as_ref())
        else {
            continue;
        };
        let layers = [
            Layer { raw: platform_defaults, file: platform_file, prefix: "defaults." },
            Layer { raw: &customer_defaults, file: &file, prefix: "defaults." },
            Layer { raw: &raw_env.layer(), file: &env_file, prefix: "" },
        ];
        let customer_view = CustomerView {
            name: &sources.name,
            domain: domain.as_deref(),
            certificate: certificate.as_ref(),
            approval_emails: &approval_emails,
            file: &file,
        };
        let errors_before = c.errors();
        let env = validate_env(env_name, &raw_env, &env_file, &layers, &customer_view, platform, build, c);
        if let Some(env) = env.filter(|_| c.errors() == errors_before) {
            environments.push(env);
        }
    }
    if !name_ok {
        return None;
    }
    Some(Customer {
        name: sources.name.clone(),
        display_name,
        domain,
        certificate,
        approval_emails,
        software: Software { repository: repository?, git_ref },
        deploy: deploy?,
        provision,
        environments,
    })
}

struct CustomerView<'a> {
    name: &'a str,
    domain: Option<&'a str>,
    certificate: Option<&'a CertificateRef>,
    approval_emails: &'a [String],
    file: &'a File<'a>,
}

/// One layer of layered settings; `prefix` is where the layer sits in its file.
struct Layer<'a> {
    raw: &'a RawLayer,
    file: &'a File<'a>,
    prefix: &'static str,
}

/// The most specific layer's value for a setting, and that layer (for error positions).
fn pick<'l, T>(layers: &'l [Layer<'l>], get: impl Fn(&RawLayer) -> Option<T>) -> Option<(T, &'l Layer<'l>)> {
    layers.iter().rev().find_map(|layer| get(layer.raw).map(|value| (value, layer)))
}

#[allow(clippy::too_many_arguments)]
fn validate_env(
    env_name: &str,
    raw: &RawEnv,
    file: &File<'_>,
    layers: &[Layer<'_>],
    customer: &CustomerView<'_>,
    platform: &Platform,
    customer_build: &Build,
    c: &mut Checker,
) -> Option<Environment> {
    let production = c.required(file, "production", raw.production, "say `production = true` or `production = false`; production turns on approval, Multi-AZ and one-at-a-time deploys");
    let production_on = production.unwrap_or(false);
    let missing_help = |key: &str| {
        format!("set `{key}` in this file, under [defaults] in customer.toml, or under [defaults] in platform.toml")
    };

    let instance_type = match pick(layers, |l| l.instance_type.clone()) {
        Some((value, layer)) => c
            .rule(layer.file, &format!("{}instance_type", layer.prefix), "instance type", &value, instance_type_rule)
            .then_some(value),
        None => c.required(file, "instance_type", None, &missing_help("instance_type")),
    };

    // Capacity.
    let cap = |get: fn(&RawCapacity) -> Option<i64>| pick(layers, move |l| l.capacity.as_ref().and_then(get));
    let capacity_value = |c: &mut Checker,
                          key: &str,
                          get: fn(&RawCapacity) -> Option<i64>,
                          range: std::ops::RangeInclusive<i64>,
                          default: Option<i64>|
     -> Option<(u32, String, usize)> {
        match cap(get) {
            Some((value, layer)) => {
                let path = format!("{}capacity.{key}", layer.prefix);
                let index = layers.iter().position(|l| std::ptr::eq(l, layer)).unwrap_or(0);
                c.range(layer.file, &path, value, range, "").map(|v| (v, path, index))
            }
            None => match default {
                Some(d) => Some((d as u32, format!("capacity.{key}"), layers.len() - 1)),
                None => c.required(file, &format!("capacity.{key}"), None, &missing_help(&format!("capacity.{key}"))),
            },
        }
    };
    let min = capacity_value(c, "min", |r| r.min, 0..=1000, None);
    let max = capacity_value(c, "max", |r| r.max, 1..=1000, None);
    let desired = match (&min, cap(|r| r.desired)) {
        (Some((min, _, _)), None) => Some((*min, String::new(), 0)),
        _ => capacity_value(c, "desired", |r| r.desired, 0..=1000, None),
    };
    let grace = capacity_value(c, "health_check_grace_period", |r| r.health_check_grace_period, 0..=7200, Some(300));
    if let (Some((min, min_path, min_layer)), Some((max, _, _)), Some((desired, desired_path, desired_layer))) =
        (&min, &max, &desired)
    {
        if min > max {
            c.error_help(
                layers[*min_layer].file,
                min_path,
                format!("capacity.min ({min}) is greater than capacity.max ({max})"),
                "Auto Scaling needs min ≤ desired ≤ max",
            );
        } else if desired < min || desired > max {
            let (file, path) = if desired_path.is_empty() {
                (layers[*min_layer].file, min_path)
            } else {
                (layers[*desired_layer].file, desired_path)
            };
            c.error_help(
                file,
                path,
                format!("capacity.desired ({desired}) is outside min..max ({min}..{max})"),
                "Auto Scaling needs min ≤ desired ≤ max",
            );
        }
    }
    if production_on {
        if let Some((min, path, layer)) = &min {
            if *min < 2 {
                c.warning(
                    layers[*layer].file,
                    path,
                    format!("production runs with capacity.min = {min}"),
                    "one instance means downtime on every deploy and instance failure; consider min = 2",
                );
            }
        }
    }

    // Scaling.
    let cpu_target = pick(layers, |l| l.scaling.as_ref().and_then(|s| s.cpu_target));
    if let Some((value, layer)) = &cpu_target {
        if !(1.0..=100.0).contains(value) {
            c.error(
                layer.file,
                &format!("{}scaling.cpu_target", layer.prefix),
                format!("scaling.cpu_target is {value}; a CPU target is a percentage from 1 to 100"),
            );
        }
    }
    let requests = pick(layers, |l| l.scaling.as_ref().and_then(|s| s.requests_per_target));
    if let Some((value, layer)) = &requests {
        if !(*value > 0.0 && value.is_finite()) {
            c.error(layer.file, &format!("{}scaling.requests_per_target", layer.prefix), format!("scaling.requests_per_target is {value}; it must be a positive number of requests per target per minute"));
        }
    }
    let scaling = Scaling { cpu_target: cpu_target.map(|(v, _)| v), requests_per_target: requests.map(|(v, _)| v) };

    let health_check = validate_health_check(layers, file, c);
    let deregistration_delay = match pick(layers, |l| l.deregistration_delay_seconds) {
        Some((value, layer)) => {
            c.range(layer.file, &format!("{}deregistration_delay_seconds", layer.prefix), value, 0..=3600, " s")
        }
        None => Some(300), // AWS's default
    };

    // Routing and hosts.
    let dedicated = production_on && customer.domain.is_some();
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
        if c.rule(file, &path, "host name", host, names::host_header) {
            if let Some(CertificateRef::Domain(cert_domain)) = customer.certificate.filter(|_| dedicated) {
                if !certificate_covers(cert_domain, host) {
                    c.error_help(file, &path, format!("host `{host}` is not covered by the certificate for `{cert_domain}`"), "the dedicated ALB serves HTTPS with the customer's certificate; use a host it covers or another certificate");
                }
            }
            if let Some(CertificateRef::Domain(cert_domain)) =
                platform.shared_alb.certificate.as_ref().filter(|_| !dedicated)
            {
                if !certificate_covers(cert_domain, host) {
                    c.warning(
                        file,
                        &path,
                        format!("host `{host}` is not covered by the shared ALB's certificate for `{cert_domain}`"),
                        "browsers will refuse HTTPS for it unless another certificate on the shared listener covers it",
                    );
                }
            }
        }
    }

    // Database.
    let database = raw.database.as_ref().and_then(|db| validate_database(db, file, production_on, c));
    let db_identifier = raw.database.as_ref().and_then(|db| db.identifier.clone());

    // Deployment.
    let deployment = validate_deployment(layers, production_on, c);

    // Production rules, enforced.
    if production_on && customer.approval_emails.is_empty() {
        c.error_help(customer.file, "approval_emails", format!("environment `{env_name}` is production but customer `{}` has no approval e-mail addresses", customer.name), "production changes wait for a human approval; add approval_emails = [\"ops@example.com\"] to customer.toml");
    }

    // Tags: platform < platform defaults < customer defaults < environment, then ours.
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

    let build = merge_build(customer_build, raw.build.as_ref(), file, c);

    let names = ResourceNames::derive(&platform.prefix, customer.name, env_name, db_identifier.as_deref());
    for (kind, name, rule) in names.checks(dedicated, raw.database.is_some()) {
        if let Err(why) = rule(name) {
            let path = if kind == "RDS DB identifier" && db_identifier.is_some() { "database.identifier" } else { "" };
            c.error_help(file, path, format!("{kind} name `{name}` {why}"), "the name is derived from the customer and environment names; shorten them (or set database.identifier)");
        }
    }

    let (min, max, desired, grace) = (min?, max?, desired?, grace?);
    Some(Environment {
        name: env_name.to_string(),
        production: production?,
        instance_type: instance_type?,
        capacity: Capacity { min: min.0, max: max.0, desired: desired.0, health_check_grace_period: grace.0 },
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

fn validate_health_check(layers: &[Layer<'_>], env_file: &File<'_>, c: &mut Checker) -> Option<HealthCheck> {
    let get = |f: fn(&RawHealthCheck) -> Option<i64>| pick(layers, move |l| l.health_check.as_ref().and_then(f));
    let path_of = |layer: &Layer<'_>, key: &str| format!("{}health_check.{key}", layer.prefix);
    let number = |c: &mut Checker,
                  key: &str,
                  f: fn(&RawHealthCheck) -> Option<i64>,
                  range: std::ops::RangeInclusive<i64>,
                  default: i64|
     -> Option<(u32, Option<(String, usize)>)> {
        match get(f) {
            Some((value, layer)) => {
                let path = path_of(layer, key);
                let index = layers.iter().position(|l| std::ptr::eq(l, layer)).unwrap_or(0);
                c.range(layer.file, &path, value, range, " s").map(|v| (v, Some((path, index))))
            }
            None => Some((default as u32, None)),
        }
    };
    let interval = number(c, "interval", |h| h.interval, 5..=300, 30);
    let timeout = number(c, "timeout", |h| h.timeout, 2..=120, 5);
    let healthy = thresholds(c, layers, "healthy_threshold", |h| h.healthy_threshold, 5);
    let unhealthy = thresholds(c, layers, "unhealthy_threshold", |h| h.unhealthy_threshold, 2);
    if let (Some((interval, interval_at)), Some((timeout, timeout_at))) = (&interval, &timeout) {
        if interval <= timeout {
            let (file, path) = match (interval_at, timeout_at) {
                (Some((path, i)), _) | (None, Some((path, i))) => (layers[*i].file, path.clone()),
                (None, None) => (env_file, "health_check".to_string()),
            };
            c.error_help(
                file,
                &path,
                format!("health_check.interval ({interval} s) must be greater than health_check.timeout ({timeout} s)"),
                "Elastic Load Balancing rejects an interval that is not longer than the timeout",
            );
        }
    }
    let path = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.path.clone())) {
        Some((path, layer)) => {
            let ok = path.starts_with('/') && path.len() <= 1024 && path.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                c.error(layer.file, &path_of(layer, "path"), format!("health_check.path `{path}` must start with `/`, be at most 1024 characters and contain no spaces"));
            }
            path
        }
        None => "/".into(),
    };
    let port = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.port.clone())) {
        Some((RawPort::Number(n), layer)) => {
            c.range(layer.file, &path_of(layer, "port"), n, 1..=65535, "").map(|n| n.to_string())
        }
        Some((RawPort::Name(name), layer)) if name != "traffic-port" => {
            c.error(
                layer.file,
                &path_of(layer, "port"),
                format!("health_check.port `{name}` must be a number or \"traffic-port\""),
            );
            None
        }
        _ => Some("traffic-port".into()),
    };
    let protocol = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.protocol.clone())) {
        Some((p, layer)) if p != "HTTP" && p != "HTTPS" => {
            c.error(
                layer.file,
                &path_of(layer, "protocol"),
                format!("health_check.protocol `{p}` must be \"HTTP\" or \"HTTPS\""),
            );
            None
        }
        Some((p, _)) => Some(p),
        None => Some("HTTP".into()),
    };
    let matcher = match pick(layers, |l| l.health_check.as_ref().and_then(|h| h.matcher.clone())) {
        Some((m, layer)) => {
            c.rule(layer.file, &path_of(layer, "matcher"), "health_check.matcher", &m, names::http_matcher).then_some(m)
        }
        None => Some("200".into()),
    };
    Some(HealthCheck {
        path,
        port: port?,
        protocol: protocol?,
        interval: interval?.0,
        timeout: timeout?.0,
        healthy_threshold: healthy?,
        unhealthy_threshold: unhealthy?,
        matcher: matcher?,
    })
}

fn thresholds(
    c: &mut Checker,
    layers: &[Layer<'_>],
    key: &str,
    f: fn(&RawHealthCheck) -> Option<i64>,
    default: u32,
) -> Option<u32> {
    match pick(layers, |l| l.health_check.as_ref().and_then(f)) {
        Some((value, layer)) => c.range(layer.file, &format!("{}health_check.{key}", layer.prefix), value, 2..=10, ""),
        None => Some(default),
    }
}

/// How long a software deployment is followed by default, and at most: CodeDeploy ends an
/// in-place deployment after 12 hours (CodeDeploy quotas), so following one longer means nothing.
const DEFAULT_DEPLOYMENT_TIMEOUT: u32 = 60;
const DEPLOYMENT_TIMEOUT_MAX: i64 = 720;

fn validate_deployment(layers: &[Layer<'_>], production: bool, c: &mut Checker) -> Option<Deployment> {
    let config = pick(layers, |l| l.deployment.as_ref().and_then(|d| d.config.clone()));
    let rollback = pick(layers, |l| l.deployment.as_ref().and_then(|d| d.auto_rollback));
    let timeout = match pick(layers, |l| l.deployment.as_ref().and_then(|d| d.timeout_minutes)) {
        Some((value, layer)) => {
            let path = format!("{}deployment.timeout_minutes", layer.prefix);
            c.range(layer.file, &path, value, 1..=DEPLOYMENT_TIMEOUT_MAX, "")
        }
        None => Some(DEFAULT_DEPLOYMENT_TIMEOUT),
    };
    let mut ok = timeout.is_some();
    if let Some((config, layer)) = &config {
        let path = format!("{}deployment.config", layer.prefix);
        if config.starts_with("CodeDeployDefault.") && !DEPLOYMENT_CONFIGS.contains(&config.as_str()) {
            c.error_help(
                layer.file,
                &path,
                format!("unknown deployment config `{config}`"),
                format!("the predefined EC2 configs are {}", DEPLOYMENT_CONFIGS.join(", ")),
            );
            ok = false;
        } else if !c.rule(layer.file, &path, "deployment config", config, names::codedeploy_name) {
            ok = false;
        } else if production && config != DEFAULT_DEPLOYMENT_CONFIG {
            c.error_help(
                layer.file,
                &path,
                format!("production deploys one instance at a time, not with `{config}`"),
                format!("remove the setting or set it to \"{DEFAULT_DEPLOYMENT_CONFIG}\""),
            );
            ok = false;
        }
    }
    if let Some((false, layer)) = &rollback {
        if production {
            c.error_help(
                layer.file,
                &format!("{}deployment.auto_rollback", layer.prefix),
                "production deploys roll back automatically on failure",
                "remove `auto_rollback = false`",
            );
            ok = false;
        }
    }
    ok.then(|| Deployment {
        config: config.map_or_else(|| DEFAULT_DEPLOYMENT_CONFIG.to_string(), |(c, _)| c),
        auto_rollback: rollback.is_none_or(|(r, _)| r),
        timeout_minutes: timeout.unwrap_or(DEFAULT_DEPLOYMENT_TIMEOUT),
    })
}

fn validate_database(raw: &RawDatabase, file: &File<'_>, production: bool, c: &mut Checker) -> Option<Database> {
    let engine = c.required(file, "database.engine", raw.engine.clone(), "e.g. engine = \"postgres\"");
    if let Some(engine) = &engine {
        if !DB_ENGINES.contains(&engine.as_str()) {
            c.error_help(
                file,
                "database.engine",
                format!("database engine `{engine}` is not supported"),
                format!("use one of {}", DB_ENGINES.join(", ")),
            );
        }
    }
    let version = c.required(file, "database.version", raw.version.clone(), "e.g. version = \"16.4\"");
    if let Some(version) = &version {
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            c.error(
                file,
                "database.version",
                format!("engine version `{version}` must be digits and dots, e.g. \"16.4\""),
            );
        }
    }
    let instance_class = c.required(
        file,
        "database.instance_class",
        raw.instance_class.clone(),
        "e.g. instance_class = \"db.t4g.medium\"",
    );
    if let Some(class) = &instance_class {
        if class.strip_prefix("db.").is_none_or(|rest| instance_type_rule(rest).is_err()) {
            c.error(
                file,
                "database.instance_class",
                format!("DB instance class `{class}` must look like \"db.t4g.medium\""),
            );
        }
    }
    let master_username = c.required(
        file,
        "database.master_username",
        raw.master_username.clone(),
        "name the master user; its password is created and kept by AWS Secrets Manager, never in config",
    );
    if let Some(user) = &master_username {
        c.rule(file, "database.master_username", "master username", user, names::rds_master_username);
    }
    if let Some(name) = &raw.database_name {
        if name.is_empty()
            || name.len() > 63
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || !name.as_bytes()[0].is_ascii_alphabetic()
        {
            c.error(
                file,
                "database.database_name",
                format!("database name `{name}` must be 1 to 63 letters, digits or `_`, starting with a letter"),
            );
        }
    }
    let security_groups =
        raw.security_groups.as_ref().and_then(|g| security_groups(c, file, "database.security_groups", g));
    let retention = c.range(
        file,
        "database.backup_retention_days",
        raw.backup_retention_days.unwrap_or(7),
        if production { 1..=35 } else { 0..=35 },
        " days",
    );
    if let Some(window) = &raw.backup_window {
        c.rule(file, "database.backup_window", "backup window", window, names::backup_window);
    }
    if let Some(window) = &raw.maintenance_window {
        c.rule(file, "database.maintenance_window", "maintenance window", window, names::maintenance_window);
        if let Some(backup) = raw.backup_window.as_deref().filter(|b| names::windows_overlap(b, window)) {
            c.error_help(
                file,
                "database.maintenance_window",
                format!("maintenance window `{window}` overlaps the backup window `{backup}`; RDS refuses that"),
                "move one of them (both are UTC)",
            );
        }
    }
    let storage = c.range(file, "database.storage_gb", raw.storage_gb.unwrap_or(20), 20..=65536, " GiB");
    let multi_az = match raw.multi_az {
        Some(false) if production => {
            c.error_help(file, "database.multi_az", "production databases are Multi-AZ", "remove `multi_az = false`");
            None
        }
        Some(value) => Some(value),
        None => Some(production),
    };
    Some(Database {
        engine: engine?,
        version: version?,
        instance_class: instance_class?,
        master_username: master_username?,
        database_name: raw.database_name.clone(),
        security_groups,
        backup_retention_days: retention?,
        backup_window: raw.backup_window.clone(),
        maintenance_window: raw.maintenance_window.clone(),
        auto_minor_version_upgrade: raw.auto_minor_version_upgrade.unwrap_or(true),
        allow_major_version_upgrade: raw.allow_major_version_upgrade.unwrap_or(false),
        storage_gb: storage?,
        multi_az: multi_az?,
        deletion_protection: production,
    })
}

/// CodeBuild's build timeout: 60 minutes by default, 5 to 2160 (36 hours) allowed.
pub const DEFAULT_BUILD_TIMEOUT: u32 = 60;
const BUILD_TIMEOUT_RANGE: std::ops::RangeInclusive<i64> = 5..=2160;

fn validate_build(raw: Option<&RawBuild>, file: &File<'_>, c: &mut Checker) -> Option<Build> {
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
    let mut phases = Vec::new();
    let raw_phases = raw.phases.as_ref();
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
        if let Some(on_failure) = &phase.on_failure {
            c.rule(
                file,
                &format!("{path}.on_failure"),
                "on_failure",
                on_failure,
                crate::spec::buildspec::on_failure_rule,
            );
        }
        if let Some(user) = &phase.run_as {
            c.rule(file, &format!("{path}.run_as"), "run_as user", user, names::unix_user);
        }
        phases.push(Phase {
            name,
            commands,
            finally: phase.finally.clone().unwrap_or_default(),
            on_failure: phase.on_failure.clone(),
            run_as: phase.run_as.clone(),
        });
    }
    if phases.iter().all(|p| p.commands.is_empty()) {
        c.error_help(
            file,
            "build.phases",
            "the build has no commands",
            "add [build.phases.build] commands = [\"...\"]",
        );
    }
    let runtime_versions = raw.runtime_versions.clone().unwrap_or_default();
    let artifacts = match &raw.artifacts {
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
    };
    let timeout_minutes = match raw.timeout_minutes {
        Some(value) => c.range(file, "build.timeout_minutes", value, BUILD_TIMEOUT_RANGE, ""),
        None => Some(DEFAULT_BUILD_TIMEOUT),
    };
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
    })
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

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "PRIVATE_KEY", "API_KEY", "ACCESS_KEY"].iter().any(|s| upper.contains(s))
}

/// The environment's `[build]` adds to and overrides the customer's variables.
fn merge_build(customer: &Build, raw: Option<&RawEnvBuild>, file: &File<'_>, c: &mut Checker) -> Option<Build> {
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

fn validate_deploy(raw: Option<&RawDeploy>, file: &File<'_>, c: &mut Checker) -> Option<Deploy> {
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
    if let Some(behavior) = &raw.file_exists_behavior {
        if !["DISALLOW", "OVERWRITE", "RETAIN"].contains(&behavior.as_str()) {
            c.error(
                file,
                "deploy.file_exists_behavior",
                format!("file_exists_behavior `{behavior}` must be DISALLOW, OVERWRITE or RETAIN"),
            );
        }
    }
    let mut permissions = Vec::new();
    for (i, p) in raw.permissions.iter().flatten().enumerate() {
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
        for (j, kind) in p.kind.iter().flatten().enumerate() {
            if kind != "file" && kind != "directory" {
                c.error(
                    file,
                    &format!("{path}.type[{j}]"),
                    format!("permission type `{kind}` must be \"file\" or \"directory\""),
                );
            }
        }
        permissions.push(Permission {
            object,
            pattern: p.pattern.clone(),
            except: p.except.clone().unwrap_or_default(),
            owner: p.owner.clone(),
            group: p.group.clone(),
            mode: p.mode.as_ref().map(|m| normalize_mode(m)),
            kinds: p.kind.clone().unwrap_or_default(),
        });
    }
    let mut hooks = Vec::new();
    let empty = BTreeMap::new();
    let raw_hooks = raw.hooks.as_ref().unwrap_or(&empty);
    for event in raw_hooks.keys() {
        if RESERVED_EVENTS.contains(&event.as_str()) {
            c.error_help(
                file,
                &format!("deploy.hooks.{event}"),
                format!("`{event}` is reserved for the CodeDeploy agent and cannot run scripts"),
                format!("use one of {}", HOOK_EVENTS.join(", ")),
            );
        } else if !HOOK_EVENTS.contains(&event.as_str()) {
            let near = HOOK_EVENTS
                .iter()
                .max_by(|a, b| strsim::jaro_winkler(event, a).total_cmp(&strsim::jaro_winkler(event, b)));
            c.error_help(
                file,
                &format!("deploy.hooks.{event}"),
                format!("unknown lifecycle event `{event}`"),
                match near {
                    Some(near) if strsim::jaro_winkler(event, near) > 0.8 => format!("did you mean `{near}`?"),
                    _ => format!("use one of {}", HOOK_EVENTS.join(", ")),
                },
            );
        }
    }
    for event in HOOK_EVENTS {
        let Some(scripts) = raw_hooks.get(*event) else { continue };
        let mut total = 0u32;
        let mut list = Vec::new();
        for (i, hook) in scripts.iter().enumerate() {
            let path = format!("deploy.hooks.{event}[{i}]");
            let location = c.required(
                file,
                &format!("{path}.location"),
                hook.location.clone(),
                "the script's path relative to the bundle root",
            );
            if let Some(location) = &location {
                if location.is_empty() || location.starts_with('/') || location.split('/').any(|p| p == "..") {
                    c.error(
                        file,
                        &format!("{path}.location"),
                        format!("script location `{location}` must be relative to the bundle root, without `..`"),
                    );
                }
            }
            let timeout = c.range(file, &format!("{path}.timeout"), hook.timeout.unwrap_or(3600), 1..=3600, " s");
            if let Some(user) = &hook.runas {
                c.rule(file, &format!("{path}.runas"), "runas user", user, names::unix_user);
            }
            total += timeout.unwrap_or(0);
            if let (Some(location), Some(timeout)) = (location, timeout) {
                list.push(Hook { location, timeout, runas: hook.runas.clone() });
            }
        }
        if total > 3600 {
            c.error_help(file, &format!("deploy.hooks.{event}"), format!("the scripts of `{event}` may take {total} s together; CodeDeploy allows 3600 s per lifecycle event"), "lower their `timeout` values (a script without one counts as 3600 s)");
        }
        hooks.push((event.to_string(), list));
    }
    Some(Deploy {
        source,
        destination: destination?,
        file_exists_behavior: raw.file_exists_behavior.clone(),
        permissions,
        hooks,
    })
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

fn certificate(c: &mut Checker, file: &File<'_>, path: &str, raw: &RawCertificate) -> Option<CertificateRef> {
    match raw {
        RawCertificate::Arn(arn) => c
            .rule(file, path, "certificate ARN", arn, |v| names::arn(v, "acm"))
            .then(|| CertificateRef::Arn(arn.clone())),
        RawCertificate::Lookup(l) => {
            let domain = l.domain.strip_prefix("*.").unwrap_or(&l.domain);
            c.rule(file, &format!("{path}.domain"), "certificate domain", domain, names::domain_name)
                .then(|| CertificateRef::Domain(l.domain.clone()))
        }
    }
}

/// Whether a certificate for `domain` (possibly `*.example.com`) covers `host`.
pub fn certificate_covers(domain: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    match domain.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| rest == parent && !label.is_empty() && !label.contains(['*', '?'])),
        None => host == domain,
    }
}

fn security_groups(c: &mut Checker, file: &File<'_>, path: &str, raw: &RawSecurityGroups) -> Option<SecurityGroupsRef> {
    match raw {
        RawSecurityGroups::Ids(ids) => id_list(c, file, path, "sg", ids).map(SecurityGroupsRef::Ids),
        RawSecurityGroups::Lookup(l) => match (&l.names, &l.tags) {
            (Some(names), None) if !names.is_empty() => Some(SecurityGroupsRef::Names(names.clone())),
            (None, Some(tags)) if !tags.is_empty() => Some(SecurityGroupsRef::Tags(tags.clone())),
            _ => {
                c.error(file, path, "a security group lookup takes exactly one of `names` or `tags`, not empty");
                None
            }
        },
    }
}

fn id_list(c: &mut Checker, file: &File<'_>, path: &str, prefix: &str, ids: &[String]) -> Option<Vec<String>> {
    if ids.is_empty() {
        c.error(file, path, format!("`{path}` is an empty list"));
        return None;
    }
    let mut ok = true;
    for (i, id) in ids.iter().enumerate() {
        ok &= c.rule(file, &format!("{path}[{i}]"), "id", id, |v| names::resource_id(v, prefix));
    }
    ok.then(|| ids.to_vec())
}

/// `{ default = true }` → `None` (the default resource), `{ tags = {...} }` → the tags.
fn tag_lookup(c: &mut Checker, file: &File<'_>, path: &str, lookup: &RawTagLookup) -> Option<Option<Tags>> {
    match (lookup.default, &lookup.tags) {
        (Some(true), None) => Some(None),
        (None, Some(tags)) if !tags.is_empty() => Some(Some(tags.clone())),
        _ => {
            c.error(file, path, format!("`{path}` takes either {{ default = true }} or {{ tags = {{ ... }} }}"));
            None
        }
    }
}

fn user_tags(c: &mut Checker, file: &File<'_>, path: &str, tags: Option<&Map>) -> Tags {
    let mut out = Tags::new();
    for (key, value) in tags.into_iter().flatten() {
        let key_path = format!("{path}.{key}");
        if RESERVED_TAGS.contains(&key.as_str()) {
            c.error_help(
                file,
                &key_path,
                format!("tag `{key}` is set by the tool"),
                "remove it; every resource gets Customer, Environment and ManagedBy",
            );
            continue;
        }
        if let Err(why) = names::tag(key, value) {
            c.error(file, &key_path, why);
            continue;
        }
        if value.contains("{{") {
            c.error_help(
                file,
                &key_path,
                format!("tag `{key}` contains `{{{{`, which Packer reads as a template"),
                "remove the braces",
            );
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    out
}

fn region_rule(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err("is not an AWS region name such as \"eu-west-1\"".into())
    }
}

fn instance_type_rule(value: &str) -> Result<(), String> {
    let ok = value.split_once('.').is_some_and(|(family, size)| {
        !family.is_empty()
            && family.as_bytes()[0].is_ascii_lowercase()
            && family.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err("is not an EC2 instance type such as \"t3.small\"".into())
    }
}

fn repository_rule(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("is empty".into());
    }
    if value.starts_with("http://") {
        return Err("uses plain http; use https or ssh so credentials and code travel encrypted".into());
    }
    if value.contains(char::is_whitespace) {
        return Err("contains white space".into());
    }
    if redact_url_password(value) != value {
        return Err("carries a password; give credentials through the environment or git's credential helper".into());
    }
    Ok(())
}

/// `https://user:secret@host/x` → `https://user:***@host/x`, so no message repeats a password.
pub fn redact_url_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_string() };
    match rest.split_once('@').filter(|(userinfo, _)| !userinfo.contains('/')) {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => value.to_string(),
        },
        None => value.to_string(),
    }
}
