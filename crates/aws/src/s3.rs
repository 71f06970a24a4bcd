//! S3: the platform's state bucket and the records kept in it.

use anyhow::{bail, Context};
use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
pub use aws_sdk_s3::Client;
use vending::config::model::Platform;

use crate::describe_error;

pub fn client(config: &SdkConfig, local: bool) -> Client {
    logged_client(config, local, None)
}

/// A client whose calls are recorded in `log` (tests and benchmarks count them).
pub fn logged_client(config: &SdkConfig, local: bool, log: Option<&crate::calls::CallLog>) -> Client {
    // Path-style addressing: the emulator's virtual hosts (`bucket.127.0.0.1`) do not resolve.
    let mut builder = aws_sdk_s3::config::Builder::from(config).force_path_style(local);
    if let Some(log) = log {
        builder = builder.interceptor(log.clone());
    }
    Client::from_conf(builder.build())
}

/// Makes sure the platform's state bucket exists. A missing one is created exactly as
/// `platform deploy` makes it (versioned, encrypted, public access blocked, TLS only, tagged), so
/// that deploy later finds nothing to change. Returns whether it had to be created.
pub async fn ensure_state_bucket(client: &Client, platform: &Platform) -> anyhow::Result<bool> {
    let (bucket, region) = (platform.state_bucket.as_str(), platform.region.as_str());
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(false),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        Err(e) => {
            let raw_status = e.raw_response().map(|r| r.status().as_u16());
            match raw_status {
                Some(301) => bail!("the state bucket `{bucket}` is in another region than {region}: check aws.region in customers/platform.toml"),
                Some(403) => bail!("access to the state bucket `{bucket}` is denied: it belongs to another account, or these credentials may not read it"),
                _ => bail!("cannot reach the state bucket `{bucket}`: {}", describe_error(&e)),
            }
        }
    }
    let settings = vending::plan::state_bucket(platform);
    crate::infra::storage::apply_bucket(client, region, bucket, &settings, None, &[])
        .await
        .with_context(|| format!("cannot create the state bucket `{bucket}`"))?;
    Ok(true)
}

pub async fn put_json(client: &Client, bucket: &str, key: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let body = serde_json::to_vec_pretty(value)?;
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot write s3://{bucket}/{key}: {}", describe_error(&e)))?;
    Ok(())
}

/// Reads a JSON object; `None` when there is none.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    client: &Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<T>> {
    Ok(get_json_tagged(client, bucket, key).await?.map(|(value, _)| value))
}

/// The condition of a state write: S3 conditional writes make each one a single atomic put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Only if no object has the key (`If-None-Match: *`).
    Absent,
    /// Only if the object is still the one read, with this ETag (`If-Match`).
    Unchanged(String),
}

/// A conditional write that did not happen: someone else wrote first.
#[derive(Debug)]
pub struct Conflict;

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("another writer changed the object first")
    }
}

impl std::error::Error for Conflict {}

/// Writes a JSON object under a condition; returns its new ETag. Losing the race is
/// `Ok(Err(Conflict))`: S3 answers 412 when the condition does not hold, and 409 when two
/// conditional writes of one key cross.
pub async fn put_json_if(
    client: &Client,
    bucket: &str,
    key: &str,
    value: &impl serde::Serialize,
    condition: &Condition,
) -> anyhow::Result<Result<String, Conflict>> {
    let body = serde_json::to_vec_pretty(value)?;
    let request = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body.clone()));
    let request = match condition {
        Condition::Absent => request.if_none_match("*"),
        Condition::Unchanged(etag) => request.if_match(etag),
    };
    match request.send().await {
        Ok(out) => Ok(Ok(out.e_tag.unwrap_or_default())),
        Err(e) if matches!(e.raw_response().map(|r| r.status().as_u16()), Some(412 | 409)) => {
            // The SDK retries a write whose answer was lost; the retry then finds the write it
            // made. The object holding exactly these bytes (ids and times make them unique) is
            // ours, not a lost race.
            match get_bytes_tagged(client, bucket, key).await? {
                Some((stored, etag)) if stored == body => Ok(Ok(etag)),
                _ => Ok(Err(Conflict)),
            }
        }
        Err(e) => bail!("cannot write s3://{bucket}/{key}: {}", describe_error(&e)),
    }
}

/// Whether an object is there.
pub async fn exists(client: &Client, bucket: &str, key: &str) -> anyhow::Result<bool> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
        Err(e) => bail!("cannot read s3://{bucket}/{key}: {}", describe_error(&e)),
    }
}

/// An object's bytes; `None` when there is none (or no bucket).
pub async fn get_bytes(client: &Client, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(get_bytes_tagged(client, bucket, key).await?.map(|(bytes, _)| bytes))
}

async fn get_bytes_tagged(client: &Client, bucket: &str, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>> {
    let output = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(output) => output,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        // No bucket yet (before the first `platform deploy` or `ami`): nothing is stored.
        Err(e)
            if e.as_service_error().and_then(aws_sdk_s3::error::ProvideErrorMetadata::code) == Some("NoSuchBucket") =>
        {
            return Ok(None)
        }
        Err(e) => bail!("cannot read s3://{bucket}/{key}: {}", describe_error(&e)),
    };
    let etag = output.e_tag.clone().unwrap_or_default();
    let bytes = output.body.collect().await.with_context(|| format!("cannot read s3://{bucket}/{key}"))?.into_bytes();
    Ok(Some((bytes.to_vec(), etag)))
}

/// Reads a JSON object and its ETag; `None` when there is none.
pub async fn get_json_tagged<T: serde::de::DeserializeOwned>(
    client: &Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<(T, String)>> {
    let Some((bytes, etag)) = get_bytes_tagged(client, bucket, key).await? else { return Ok(None) };
    let value =
        serde_json::from_slice(&bytes).with_context(|| format!("s3://{bucket}/{key} is not what this tool wrote"))?;
    Ok(Some((value, etag)))
}

/// The keys under a prefix, in key order.
pub async fn list_keys(client: &Client, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| anyhow::anyhow!("cannot list s3://{bucket}/{prefix}: {}", describe_error(&e)))?;
        keys.extend(page.contents().iter().filter_map(|o| o.key.clone()));
    }
    keys.sort();
    Ok(keys)
}
