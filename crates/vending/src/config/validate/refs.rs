//! Settings that name an AWS resource (an id or ARN, or a table that says how to find it) and
//! users' tags: the same rules wherever they appear.

use crate::config::model::{CertificateRef, SecurityGroupsRef, Tags};
use crate::config::raw::{Map, RawCertificate, RawSecurityGroups, RawTagLookup};
use crate::names::{self, RESERVED_TAGS};

use super::{Checker, File};

pub(super) fn certificate(
    c: &mut Checker,
    file: &File<'_>,
    path: &str,
    raw: &RawCertificate,
) -> Option<CertificateRef> {
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

pub(super) fn security_groups(
    c: &mut Checker,
    file: &File<'_>,
    path: &str,
    raw: &RawSecurityGroups,
) -> Option<SecurityGroupsRef> {
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

pub(super) fn id_list(
    c: &mut Checker,
    file: &File<'_>,
    path: &str,
    prefix: &str,
    ids: &[String],
) -> Option<Vec<String>> {
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
pub(super) fn tag_lookup(c: &mut Checker, file: &File<'_>, path: &str, lookup: &RawTagLookup) -> Option<Option<Tags>> {
    match (lookup.default, &lookup.tags) {
        (Some(true), None) => Some(None),
        (None, Some(tags)) if !tags.is_empty() => Some(Some(tags.clone())),
        _ => {
            c.error(file, path, format!("`{path}` takes either {{ default = true }} or {{ tags = {{ ... }} }}"));
            None
        }
    }
}

pub(super) fn user_tags(c: &mut Checker, file: &File<'_>, path: &str, tags: Option<&Map>) -> Tags {
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
