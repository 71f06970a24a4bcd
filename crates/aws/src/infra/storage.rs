//! S3 buckets: versioning, default encryption, public access blocked, a TLS-only policy, tags.

use anyhow::bail;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};

use super::{code, failed, live_tags, Clients, Current, Found};
use vending::plan::{Bucket, Resource};

pub async fn read_bucket(clients: &Clients, bucket: &str) -> anyhow::Result<Option<Found>> {
    let s3 = &clients.s3;
    if let Err(e) = s3.head_bucket().bucket(bucket).send().await {
        let status = e.raw_response().map(|r| r.status().as_u16());
        match status {
            Some(404) => return Ok(None),
            Some(403) => bail!("bucket `{bucket}` exists but these credentials may not read it (another account owns the name?): choose another naming.prefix"),
            _ => return Err(failed("cannot look up the bucket", e)),
        }
    }
    let location = s3.get_bucket_location().bucket(bucket).send().await.map_err(|e| failed("location", e))?;
    let region = match location.location_constraint.as_ref().map(|l| l.as_str()) {
        None | Some("") => "us-east-1".to_string(),
        Some("EU") => "eu-west-1".to_string(),
        Some(other) => other.to_string(),
    };
    let versioning = s3.get_bucket_versioning().bucket(bucket).send().await.map_err(|e| failed("versioning", e))?;
    let versioning = versioning.status.map(|s| s.as_str().to_string()).unwrap_or_else(|| "off".into());
    let encryption = match s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => out
            .server_side_encryption_configuration
            .and_then(|c| c.rules.into_iter().next())
            .and_then(|r| r.apply_server_side_encryption_by_default)
            .map(|d| d.sse_algorithm.as_str().to_string())
            .unwrap_or_else(|| "none".into()),
        Err(e) if code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => "none".into(),
        Err(e) => return Err(failed("encryption", e)),
    };
    let block = match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(out) => match out.public_access_block_configuration {
            Some(c)
                if c.block_public_acls == Some(true)
                    && c.ignore_public_acls == Some(true)
                    && c.block_public_policy == Some(true)
                    && c.restrict_public_buckets == Some(true) =>
            {
                "all"
            }
            Some(_) => "partial",
            None => "none",
        },
        Err(e) if code(&e) == Some("NoSuchPublicAccessBlockConfiguration") => "none",
        Err(e) => return Err(failed("public access block", e)),
    };
    let tls_only = match s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => out.policy.as_deref().is_some_and(denies_plain_http),
        Err(e) if code(&e) == Some("NoSuchBucketPolicy") => false,
        Err(e) => return Err(failed("bucket policy", e)),
    };
    let tags = match s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => out.tag_set.into_iter().map(|t| (t.key, t.value)).collect(),
        Err(e) if code(&e) == Some("NoSuchTagSet") => Vec::new(),
        Err(e) => return Err(failed("tags", e)),
    };
    let live = Bucket {
        region,
        versioning,
        encryption,
        public_access_block: block.into(),
        tls_only_policy: tls_only,
        tags: live_tags(tags),
    };
    Ok(Some(Found::new(Resource::Bucket(live), bucket.to_string())))
}

/// Whether a policy denies every request that does not come over TLS.
fn denies_plain_http(policy: &str) -> bool {
    let Ok(policy) = serde_json::from_str::<serde_json::Value>(policy) else { return false };
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(list) => list.clone(),
        one => vec![one.clone()],
    };
    statements.iter().any(|s| {
        s["Effect"] == "Deny"
            && s["Condition"]["Bool"]["aws:SecureTransport"].as_str().is_some_and(|v| v.eq_ignore_ascii_case("false"))
    })
}

/// Denies every request to the bucket that does not come over TLS; the ARNs carry the region's
/// partition (`arn:aws-cn:s3:::…` in China).
fn tls_only_policy(bucket: &str, region: &str) -> String {
    let partition = vending::names::partition(region);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:{partition}:s3:::{bucket}"), format!("arn:{partition}:s3:::{bucket}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
    .to_string()
}

pub(crate) async fn apply_bucket(
    s3: &aws_sdk_s3::Client,
    region: &str,
    bucket: &str,
    d: &Bucket,
    current: Option<Current<'_, Bucket>>,
    changed: &[String],
) -> anyhow::Result<()> {
    let create = current.is_none();
    let set = |f: &str| create || changed.iter().any(|c| c == f);
    if create {
        let mut request = s3.create_bucket().bucket(bucket);
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => {}
            Err(e) if code(&e) == Some("BucketAlreadyOwnedByYou") => {}
            Err(e) if code(&e) == Some("BucketAlreadyExists") => {
                bail!("the bucket name `{bucket}` belongs to another AWS account: choose another naming.prefix in customers/platform.toml")
            }
            Err(e) => return Err(failed("create", e)),
        }
    }
    if set("versioning") {
        let config = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(config)
            .send()
            .await
            .map_err(|e| failed("versioning", e))?;
    }
    if set("encryption") {
        let algorithm = ServerSideEncryption::from(d.encryption.as_str());
        let kms = algorithm == ServerSideEncryption::AwsKms;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder().sse_algorithm(algorithm).build()?,
            )
            .set_bucket_key_enabled(kms.then_some(true))
            .build();
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
            .send()
            .await
            .map_err(|e| failed("encryption", e))?;
    }
    if set("public_access_block") {
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(|e| failed("public access block", e))?;
    }
    if set("tls_only_policy") {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(tls_only_policy(bucket, region))
            .send()
            .await
            .map_err(|e| failed("bucket policy", e))?;
    }
    if set("tags") {
        let tags: Vec<Tag> =
            d.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect::<Result<_, _>>()?;
        s3.put_bucket_tagging()
            .bucket(bucket)
            .tagging(Tagging::builder().set_tag_set(Some(tags)).build()?)
            .send()
            .await
            .map_err(|e| failed("tags", e))?;
    }
    if set("region") && !create {
        bail!("a bucket cannot move to another region: empty and delete `{bucket}` by hand, or keep aws.region");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tls_only_policy_names_the_bucket_in_its_regions_partition() {
        for (region, partition) in [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")] {
            let policy: serde_json::Value = serde_json::from_str(&super::tls_only_policy("b", region)).unwrap();
            assert_eq!(
                policy["Statement"][0]["Resource"],
                serde_json::json!([format!("arn:{partition}:s3:::b"), format!("arn:{partition}:s3:::b/*")])
            );
            assert!(super::denies_plain_http(&policy.to_string()));
        }
    }
}
