//! AMI builds without IO: the Packer variables made from a commit, Packer's manifest, and the
//! AMI record that deploys read. The `ami` command (xtask) does the git, Packer and S3 parts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::render::packer::DESCRIPTION_LIMIT;

/// The commit an AMI is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub id: String,
    /// Committer time, ISO 8601 (`git log --format=%cI`).
    pub time: String,
    pub author: String,
    /// Subject and body, as git stores them.
    pub message: String,
}

impl Commit {
    pub fn subject(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }
}

/// `commit id: … / time stamp: … / commit by: … / message: …`: the text the template's
/// `ami_description` formats from the variables, before truncation.
fn description_prefix(commit: &Commit) -> String {
    format!("commit id: {} / time stamp: {} / commit by: {} / message: ", commit.id, commit.time, commit.author)
}

/// Packer renders `ami_description` as a Go template (twice), so `{{` in commit text would be
/// executed. It is written `{ {` instead: the one change made to commit text.
fn neutralize_template(text: &str) -> String {
    let mut out = text.to_string();
    while out.contains("{{") {
        out = out.replace("{{", "{ {");
    }
    out
}

/// Cuts to at most `limit` characters, never inside a character.
fn truncate_chars(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// The variables `cargo xtask ami` hands to Packer. The message is cut so that the whole
/// description fits EC2's 255 characters (the template's own `substr` then changes nothing).
///
/// Their values are data: strings copied into the description, the tags and the manifest, with
/// `{{` neutralized and the message cut to fit. No value of theirs changes whether a template is
/// valid, so a `packer validate` that passed for one commit holds for the next (`ami` remembers
/// it by the template and the other variables only).
pub fn packer_variables(commit: &Commit, dirty: bool) -> Vec<(String, String)> {
    let id = neutralize_template(&commit.id);
    let time = neutralize_template(&commit.time);
    let author = neutralize_template(&commit.author);
    let safe = Commit { id: id.clone(), time: time.clone(), author: author.clone(), message: String::new() };
    let room = DESCRIPTION_LIMIT.saturating_sub(description_prefix(&safe).chars().count());
    let message = neutralize_template(&commit.message);
    let message = truncate_chars(message.trim_end(), room).to_string();
    vec![
        ("commit_id".into(), id),
        ("commit_time".into(), time),
        ("commit_author".into(), author),
        ("commit_message".into(), message),
        ("dirty".into(), dirty.to_string()),
    ]
}

/// The description the AMI gets from these variables (what the template computes).
pub fn description(variables: &[(String, String)]) -> String {
    let get = |name: &str| variables.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    let text = format!(
        "commit id: {} / time stamp: {} / commit by: {} / message: {}",
        get("commit_id"),
        get("commit_time"),
        get("commit_author"),
        get("commit_message")
    );
    truncate_chars(&text, DESCRIPTION_LIMIT).to_string()
}

/// Packer's manifest post-processor output (`manifest-<customer>-<env>.json`).
#[derive(Debug, Deserialize)]
struct Manifest {
    builds: Vec<ManifestBuild>,
    last_run_uuid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManifestBuild {
    name: String,
    builder_type: String,
    artifact_id: String,
    packer_run_uuid: String,
}

/// What one Packer run produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildArtifact {
    pub packer_run_uuid: String,
    /// Region → AMI id; with `ami_regions` there are several.
    pub amis: BTreeMap<String, String>,
}

/// The source block's name in every generated template; the manifest names builds by it.
pub const SOURCE_NAME: &str = "image";

/// Reads the AMIs of the last run from a manifest: the builds of `last_run_uuid` from this
/// template's amazon-ebs source (the last one if several), every `region:ami` pair of it.
pub fn parse_manifest(text: &str) -> Result<BuildArtifact, String> {
    let manifest: Manifest = serde_json::from_str(text).map_err(|e| format!("is not a Packer manifest ({e})"))?;
    let run = manifest.last_run_uuid.filter(|r| !r.is_empty()).ok_or("has no `last_run_uuid`")?;
    let build = manifest
        .builds
        .iter()
        .rev()
        .find(|b| b.packer_run_uuid == run && b.builder_type == "amazon-ebs" && b.name == SOURCE_NAME)
        .ok_or_else(|| format!("lists no amazon-ebs build `{SOURCE_NAME}` of the last run {run}"))?;
    let mut amis = BTreeMap::new();
    for pair in build.artifact_id.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (region, ami) =
            pair.split_once(':').ok_or_else(|| format!("has an artifact id `{pair}` that is not region:ami-id"))?;
        if !ami.starts_with("ami-") || region.is_empty() {
            return Err(format!("has an artifact id `{pair}` that is not region:ami-id"));
        }
        amis.insert(region.to_string(), ami.to_string());
    }
    if amis.is_empty() {
        return Err(format!("has no AMI in the last run {run} (artifact id `{}`)", build.artifact_id));
    }
    Ok(BuildArtifact { packer_run_uuid: run, amis })
}

/// What `deploy` reads: the AMI of a customer environment, where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmiRecord {
    pub customer: String,
    pub environment: String,
    /// Region → AMI id.
    pub amis: BTreeMap<String, String>,
    pub commit: Commit,
    pub dirty: bool,
    pub packer_run_uuid: String,
    /// `amazon-ebs.aws` or `amazon-ebs.local`.
    pub build: String,
    /// When the build finished, RFC 3339 UTC.
    pub built_at: String,
    /// The template the AMI was built from (SHA-256 of the generated file).
    pub template_sha256: String,
}

impl AmiRecord {
    /// The record `deploy` reads.
    pub fn current_key(customer: &str, env: &str) -> String {
        format!("amis/{customer}/{env}/current.json")
    }

    /// Every build is also kept, so a rollback can find the previous AMI.
    pub fn history_key(&self) -> String {
        let ami = self.amis.values().next().map(String::as_str).unwrap_or("none");
        format!("amis/{}/{}/history/{}-{ami}.json", self.customer, self.environment, self.built_at.replace(':', ""))
    }
}
