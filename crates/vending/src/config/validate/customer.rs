//! `customers/<customer>/customer.toml`: who the customer is, where the software comes from and
//! how it is built and deployed; then each of its environment files over the layered defaults.

use crate::config::model::*;
use crate::config::raw::*;
use crate::config::schema::FileKind;
use crate::diag::{Diagnostic, Severity};
use crate::names;
use crate::secrets::redact_url_password;
use crate::source::SourceFile;

use super::build::validate_build;
use super::deploy::validate_deploy;
use super::environment::validate_env;
use super::layered::Layer;
use super::refs::certificate;
use super::{load, Checker, CustomerSources, File};

/// What an environment's checks need to know of its customer.
pub(super) struct CustomerView<'a> {
    pub(super) name: &'a str,
    pub(super) domain: Option<&'a str>,
    pub(super) certificate: Option<&'a CertificateRef>,
    pub(super) approval_emails: &'a [String],
    pub(super) build: &'a Build,
    pub(super) file: &'a File<'a>,
}

pub(super) fn validate_customer(
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
    let name_ok = directory_name_ok(sources, customer_source, c);
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
    let display_name = display_name(&raw, &sources.name, &file, c);
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
    let software = software(raw.software.as_ref(), &file, c);
    let build = validate_build(raw.build.as_ref(), &file, c);
    let deploy = validate_deploy(raw.deploy.as_ref(), &file, c);
    let provision = provision(&raw, &file, c);
    // A customer name against the naming rule makes every derived name wrong for the same reason:
    // the environments are read for their own errors only.
    let environments = match (platform, build.as_ref()) {
        (Some(platform), Some(build)) if name_ok => {
            let customer = CustomerView {
                name: &sources.name,
                domain: domain.as_deref(),
                certificate: certificate.as_ref(),
                approval_emails: &approval_emails,
                build,
                file: &file,
            };
            let defaults = raw.defaults.clone().unwrap_or_default();
            environments(sources, &customer, &defaults, platform, platform_file, c)
        }
        // The environment files are still read, for their own errors.
        _ => environments_unchecked(sources, c),
    };
    if !name_ok {
        return None;
    }
    Some(Customer {
        name: sources.name.clone(),
        display_name,
        domain,
        certificate,
        approval_emails,
        software: software?,
        deploy: deploy?,
        provision,
        environments,
    })
}

fn directory_name_ok(sources: &CustomerSources, customer_source: &SourceFile, c: &mut Checker) -> bool {
    match names::customer_or_env_name(&sources.name) {
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
    }
}

fn display_name(raw: &RawCustomer, name: &str, file: &File<'_>, c: &mut Checker) -> String {
    let display_name = raw.display_name.clone().unwrap_or_else(|| name.to_string());
    if display_name.contains("{{") {
        c.error_help(
            file,
            "display_name",
            "display_name contains `{{`, which Packer reads as a template (it goes into the AMI's tags)",
            "remove the braces",
        );
    }
    if names::tag("CustomerName", &display_name).is_err() {
        c.error_help(
            file,
            "display_name",
            format!(
                "display_name is {} characters long; it becomes the AMI's `CustomerName` tag, and AWS allows 256",
                display_name.chars().count()
            ),
            "shorten it",
        );
    }
    display_name
}

fn provision(raw: &RawCustomer, file: &File<'_>, c: &mut Checker) -> Vec<String> {
    let provision = raw.ami.as_ref().and_then(|a| a.provision.clone()).unwrap_or_default();
    for (i, command) in provision.iter().enumerate() {
        if command.trim().is_empty() {
            c.error(file, &format!("ami.provision[{i}]"), "empty provisioning command");
        }
    }
    provision
}

fn software(software: Option<&RawSoftware>, file: &File<'_>, c: &mut Checker) -> Option<Software> {
    let repository = c.required(
        file,
        "software.repository",
        software.and_then(|s| s.repository.clone()),
        "give the git repository of the customer's software (https, ssh, file:// or a path in this repository)",
    );
    if let Some(repository) = &repository {
        c.rule(file, "software.repository", "repository", &redact_url_password(repository), |_| {
            repository_rule(repository)
        });
    }
    let git_ref = software.and_then(|s| s.git_ref.clone()).unwrap_or_else(|| "main".into());
    if git_ref.trim().is_empty() || git_ref.starts_with('-') || git_ref.contains(char::is_whitespace) {
        c.error(file, "software.ref", format!("git ref `{git_ref}` is not a branch, tag or commit name"));
    }
    Some(Software { repository: repository?, git_ref })
}

/// Loads an environment file and checks its name; `None` when it cannot be validated further.
fn load_env<'a>(env_name: &str, env_source: &'a SourceFile, c: &mut Checker) -> Option<(RawEnv, File<'a>)> {
    let (raw_env, env_file) = load::<RawEnv>(env_source, FileKind::Environment, c);
    if let Err(why) = names::customer_or_env_name(env_name) {
        c.diagnostics.push(
            Diagnostic::file(Severity::Error, env_source.path.clone(), format!("environment name `{env_name}` {why}"))
                .with_help("rename the file; the name goes into every AWS resource name"),
        );
        return None;
    }
    Some((raw_env?, env_file))
}

/// The environments that validated without error.
fn environments(
    sources: &CustomerSources,
    customer: &CustomerView<'_>,
    customer_defaults: &RawLayer,
    (platform, platform_defaults): &(Platform, RawLayer),
    platform_file: &File<'_>,
    c: &mut Checker,
) -> Vec<Environment> {
    let mut environments = Vec::new();
    for (env_name, env_source) in &sources.environments {
        let Some((raw_env, env_file)) = load_env(env_name, env_source, c) else { continue };
        let layers = [
            Layer { raw: platform_defaults, file: platform_file, prefix: "defaults." },
            Layer { raw: customer_defaults, file: customer.file, prefix: "defaults." },
            Layer { raw: &raw_env.layer(), file: &env_file, prefix: "" },
        ];
        let errors_before = c.errors();
        let env = validate_env(env_name, &raw_env, &env_file, &layers, customer, platform, c);
        if let Some(env) = env.filter(|_| c.errors() == errors_before) {
            environments.push(env);
        }
    }
    environments
}

/// Without a usable platform or build, each environment file is still read for its own errors.
fn environments_unchecked(sources: &CustomerSources, c: &mut Checker) -> Vec<Environment> {
    for (env_name, env_source) in &sources.environments {
        load_env(env_name, env_source, c);
    }
    Vec::new()
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
