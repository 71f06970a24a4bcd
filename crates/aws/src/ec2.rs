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
