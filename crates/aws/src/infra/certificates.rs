//! Certificates for HTTPS listeners: named by ARN or found in ACM by domain, and always checked
//! to be ISSUED and to cover the listener's host names (the emulator accepts a listener on a
//! certificate still pending validation; AWS does not). In local mode a missing certificate is
//! made self-signed (rcgen) and imported into the emulator's ACM by `deploy`; a plan only says so.

use anyhow::bail;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::{CertificateStatus, Tag};
use vending::config::model::{CertificateRef, Tags};
use vending::names::certificate_covers;

use super::{failed, Clients};

/// The certificate a listener should carry. In local mode a domain with no certificate in the
/// emulator's ACM gives `pending_import_marker(domain)`: a plan shows it and changes nothing, and
/// `deploy` imports a self-signed one first (`import_self_signed`).
pub async fn resolve(
    clients: &Clients,
    certificate: &CertificateRef,
    hosts: &[String],
    local: bool,
) -> anyhow::Result<String> {
    match certificate {
        CertificateRef::Arn(arn) => {
            check(clients, arn, hosts).await?;
            Ok(arn.clone())
        }
        CertificateRef::Domain(domain) => {
            if let Some(arn) = find(clients, domain, hosts).await? {
                return Ok(arn);
            }
            if !local {
                bail!("ACM has no ISSUED certificate for `{domain}` covering {}: request one (DNS validation) and wait until it is issued, or name one by ARN", hosts.join(", "));
            }
            Ok(pending_import_marker(domain))
        }
    }
}

const PENDING_IMPORT: &str = "(self-signed, imported by deploy) ";

fn pending_import_marker(domain: &str) -> String {
    format!("{PENDING_IMPORT}{domain}")
}

/// The domain of a certificate that `deploy` is to import in local mode.
pub fn pending_import(certificate: &str) -> Option<&str> {
    certificate.strip_prefix(PENDING_IMPORT)
}

/// Imports a self-signed certificate for `domain` into the emulator's ACM (local mode only).
pub async fn import_self_signed(clients: &Clients, domain: &str, tags: &Tags) -> anyhow::Result<String> {
    let (certificate, key) = self_signed_pem(domain)?;
    let mut tags = tags.clone();
    tags.insert("ManagedBy".into(), vending::names::MANAGED_BY.into());
    let tags: Vec<Tag> = tags.into_iter().filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok()).collect();
    let out = clients
        .acm
        .import_certificate()
        .certificate(Blob::new(certificate))
        .private_key(Blob::new(key))
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| failed(&format!("cannot import a self-signed certificate for `{domain}`"), e))?;
    eprintln!("local mode: imported a self-signed certificate for {domain} into the emulator's ACM");
    out.certificate_arn.ok_or_else(|| anyhow::anyhow!("ACM returned no certificate ARN"))
}

/// A self-signed certificate for `domain` and its private key, both PEM. For the emulator only.
pub fn self_signed_pem(domain: &str) -> anyhow::Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, domain);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

async fn find(clients: &Clients, domain: &str, hosts: &[String]) -> anyhow::Result<Option<String>> {
    let mut pages =
        clients.acm.list_certificates().certificate_statuses(CertificateStatus::Issued).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("cannot list ACM certificates", e))?;
        for summary in page.certificate_summary_list() {
            let (Some(arn), Some(name)) = (&summary.certificate_arn, &summary.domain_name) else { continue };
            if name == domain && check(clients, arn, hosts).await.is_ok() {
                return Ok(Some(arn.clone()));
            }
        }
    }
    Ok(None)
}

async fn check(clients: &Clients, arn: &str, hosts: &[String]) -> anyhow::Result<()> {
    let out = clients
        .acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .map_err(|e| failed(&format!("cannot read certificate {arn}"), e))?;
    let Some(certificate) = out.certificate else { bail!("ACM does not know certificate {arn}") };
    if certificate.status != Some(CertificateStatus::Issued) {
        bail!(
            "certificate {arn} is {}, not ISSUED: finish its validation in ACM first",
            certificate.status.map(|s| s.as_str().to_string()).unwrap_or_default()
        );
    }
    let mut names = certificate.subject_alternative_names.unwrap_or_default();
    names.extend(certificate.domain_name);
    for host in hosts {
        if !names.iter().any(|name| certificate_covers(name, host)) {
            bail!("certificate {arn} does not cover {host} (it covers {}): use one that does", names.join(", "));
        }
    }
    Ok(())
}
