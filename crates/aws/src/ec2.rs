//! EC2: finding the base AMI before a build, and reading AMIs back.

use std::collections::BTreeMap;

use anyhow::bail;
use aws_config::SdkConfig;
use aws_sdk_ec2::types::Filter;
pub use aws_sdk_ec2::Client;

pub fn client(config: &SdkConfig) -> Client {
    Client::new(config)
}

/// The newest image matching a name pattern and owners (what Packer's `source_ami_filter` with
/// `most_recent` picks), as `(id, name)`.
pub async fn find_image(client: &Client, name: &str, owners: &[String]) -> anyhow::Result<Option<(String, String)>> {
    let mut request = client.describe_images().filters(Filter::builder().name("name").values(name).build());
    for owner in owners {
        request = request.owners(owner);
    }
    let images = match request.send().await {
        Ok(out) => out.images.unwrap_or_default(),
        Err(e) => bail!("cannot look up AMIs: {}", crate::describe_error(&e)),
    };
    let newest = images.into_iter().max_by(|a, b| a.creation_date.cmp(&b.creation_date));
    Ok(newest.and_then(|i| Some((i.image_id?, i.name.unwrap_or_default()))))
}

/// An AMI as the tool checks it: its name, description and tags.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

pub async fn describe_image(client: &Client, id: &str) -> anyhow::Result<Option<Image>> {
    let out = match client.describe_images().image_ids(id).send().await {
        Ok(out) => out,
        Err(e) => bail!("cannot describe {id}: {}", crate::describe_error(&e)),
    };
    Ok(out.images.unwrap_or_default().into_iter().next().map(|i| Image {
        id: i.image_id.unwrap_or_default(),
        name: i.name.unwrap_or_default(),
        description: i.description.unwrap_or_default(),
        tags: i.tags.unwrap_or_default().into_iter().filter_map(|t| Some((t.key?, t.value?))).collect(),
    }))
}

/// What a build killed before it ended may have left: Packer's builder instances of the
/// environment (tagged by the template), temporary key pairs and security groups (named
/// `packer_…`, whose owner cannot be told), and AMIs of the environment that no record names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub instances: Vec<String>,
    pub key_pairs: Vec<String>,
    pub security_groups: Vec<String>,
    pub unrecorded_amis: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
            && self.key_pairs.is_empty()
            && self.security_groups.is_empty()
            && self.unrecorded_amis.is_empty()
    }
}

/// Finds them; `recorded` are the AMI ids the environment's records name.
pub async fn packer_leftovers(
    client: &Client,
    customer: &str,
    env: &str,
    recorded: &[String],
) -> anyhow::Result<Leftovers> {
    let tag = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let describe =
        |what: &str, e: String| anyhow::anyhow!("cannot look for what an interrupted build left ({what}): {e}");
    let instances = client
        .describe_instances()
        .filters(tag("Customer", customer))
        .filters(tag("Environment", env))
        .filters(tag("Name", "Packer Builder"))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .send()
        .await
        .map_err(|e| describe("instances", crate::describe_error(&e)))?;
    let instances =
        instances.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id.clone()).collect();
    let keys =
        client.describe_key_pairs().send().await.map_err(|e| describe("key pairs", crate::describe_error(&e)))?;
    let key_pairs =
        keys.key_pairs().iter().filter_map(|k| k.key_name.clone()).filter(|n| n.starts_with("packer_")).collect();
    let groups = client
        .describe_security_groups()
        .send()
        .await
        .map_err(|e| describe("security groups", crate::describe_error(&e)))?;
    let security_groups = groups
        .security_groups()
        .iter()
        .filter(|g| g.group_name().unwrap_or_default().starts_with("packer_"))
        .filter_map(|g| g.group_id.clone())
        .collect();
    let images = client
        .describe_images()
        .owners("self")
        .filters(tag("Customer", customer))
        .filters(tag("Environment", env))
        .send()
        .await
        .map_err(|e| describe("AMIs", crate::describe_error(&e)))?;
    let unrecorded_amis =
        images.images().iter().filter_map(|i| i.image_id.clone()).filter(|id| !recorded.contains(id)).collect();
    Ok(Leftovers { instances, key_pairs, security_groups, unrecorded_amis })
}
