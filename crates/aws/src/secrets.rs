//! Values a buildspec takes from Parameter Store (`env.parameter-store`) and Secrets Manager
//! (`env.secrets-manager`), fetched for the build runner, which sets and masks them. They are
//! never written anywhere.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use aws_config::SdkConfig;

use crate::describe_error;

/// `secret-id[:json-key[:version-stage[:version-id]]]`; a secret id may be an ARN (which has
/// colons of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub id: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

pub fn parse_secret_ref(text: &str) -> anyhow::Result<SecretRef> {
    let parts: Vec<&str> = text.split(':').collect();
    let (id, rest) = if text.starts_with("arn:") {
        if parts.len() < 7 {
            bail!("`{text}` is not a Secrets Manager ARN");
        }
        (parts[..7].join(":"), &parts[7..])
    } else {
        (parts[0].to_string(), &parts[1..])
    };
    if id.is_empty() {
        bail!("`{text}` names no secret");
    }
    let field = |i: usize| rest.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string());
    let secret = SecretRef { id, json_key: field(0), version_stage: field(1), version_id: field(2) };
    if secret.version_stage.is_some() && secret.version_id.is_some() {
        bail!("`{text}` gives both a version stage and a version id; give one");
    }
    Ok(secret)
}

/// Fetches every value; the first that cannot be read is an error naming the variable.
pub async fn fetch(
    config: &SdkConfig,
    parameter_store: &BTreeMap<String, String>,
    secrets_manager: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    // Tests read the call log to prove where secrets are (and are not) read.
    let log = crate::calls::CallLog::from_environment()?;
    if !parameter_store.is_empty() {
        let mut builder = aws_sdk_ssm::config::Builder::from(config);
        if let Some(log) = &log {
            builder = builder.interceptor(log.clone());
        }
        let ssm = aws_sdk_ssm::Client::from_conf(builder.build());
        for (variable, name) in parameter_store {
            let value = match ssm.get_parameter().name(name).with_decryption(true).send().await {
                Ok(found) => found.parameter.and_then(|p| p.value).context("the parameter has no value")?,
                Err(e) => bail!(
                    "{variable}: cannot read the parameter {name}: {} (create it, or check the role's ssm:GetParameter)",
                    describe_error(&e)
                ),
            };
            out.insert(variable.clone(), value);
        }
    }
    if !secrets_manager.is_empty() {
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(config);
        if let Some(log) = &log {
            builder = builder.interceptor(log.clone());
        }
        let client = aws_sdk_secretsmanager::Client::from_conf(builder.build());
        for (variable, reference) in secrets_manager {
            let secret = parse_secret_ref(reference).with_context(|| variable.to_string())?;
            let found = client
                .get_secret_value()
                .secret_id(&secret.id)
                .set_version_stage(secret.version_stage.clone())
                .set_version_id(secret.version_id.clone())
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("{variable}: cannot read the secret {}: {}", secret.id, describe_error(&e))
                })?;
            let text = found.secret_string.context("the secret is binary; the build takes text")?;
            let value = match &secret.json_key {
                None => text,
                Some(key) => {
                    let json: serde_json::Value =
                        serde_json::from_str(&text).with_context(|| format!("{variable}: the secret is not JSON"))?;
                    match &json[key] {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => bail!("{variable}: the secret has no key `{key}`"),
                        other => other.to_string(),
                    }
                }
            };
            out.insert(variable.clone(), value);
        }
    }
    Ok(out)
}

/// Puts a SecureString parameter unless one by that name exists (the demo's stand-ins for a
/// customer's secrets on the emulator); true when it made it.
pub async fn put_parameter_if_absent(config: &SdkConfig, name: &str, value: &str) -> anyhow::Result<bool> {
    let ssm = aws_sdk_ssm::Client::new(config);
    match ssm.get_parameter().name(name).send().await {
        Ok(_) => return Ok(false),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => {}
        Err(e) => bail!("cannot read the parameter {name}: {}", describe_error(&e)),
    }
    let put = ssm
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(false)
        .send()
        .await;
    match put {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => Ok(false),
        Err(e) => bail!("cannot put the parameter {name}: {}", describe_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_secret_ref;

    #[test]
    fn secret_references() {
        let r = parse_secret_ref("prod/db:password").unwrap();
        assert_eq!((r.id.as_str(), r.json_key.as_deref()), ("prod/db", Some("password")));
        let r = parse_secret_ref("arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf:user::v1").unwrap();
        assert_eq!(r.id, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf");
        assert_eq!((r.json_key.as_deref(), r.version_stage, r.version_id.as_deref()), (Some("user"), None, Some("v1")));
        assert!(parse_secret_ref("x::AWSCURRENT:v1").is_err());
        assert!(parse_secret_ref(":key").is_err());
    }
}
