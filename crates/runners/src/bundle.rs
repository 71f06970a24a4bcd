//! The revision CodeDeploy deploys: the artifacts with the appspec at the root, as a zip whose
//! bytes depend only on the files' paths, contents and permission bits (entries sorted, every
//! time stamp the zip epoch), so the same inputs give the same zip and the same hash.

use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::artifacts::Artifact;

/// The appspec's name at the revision root (the agent also finds `appspec.yaml`).
pub const APPSPEC: &str = "appspec.yml";

pub struct Bundle {
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

pub fn bundle(appspec: &str, artifacts: &[Artifact]) -> anyhow::Result<Bundle> {
    let mut entries: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for artifact in artifacts {
        if artifact.path == APPSPEC || artifact.path == "appspec.yaml" {
            bail!("the artifacts hold an `{}` of their own; the environment's appspec goes there", artifact.path);
        }
        let bytes =
            std::fs::read(&artifact.file).with_context(|| format!("cannot read {}", artifact.file.display()))?;
        let mode = std::fs::metadata(&artifact.file)?.permissions().mode() & 0o777;
        entries.push((artifact.path.clone(), bytes, mode));
    }
    entries.push((APPSPEC.to_string(), appspec.as_bytes().to_vec(), 0o644));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (path, bytes, mode) in entries {
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(mode);
        zip.start_file(path.as_str(), options)?;
        zip.write_all(&bytes)?;
    }
    let bytes = zip.finish()?.into_inner();
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    Ok(Bundle { bytes, sha256 })
}

/// Writes the bundle whole or not at all.
pub fn write(bundle: &Bundle, path: &Path) -> anyhow::Result<()> {
    vending::project::write_atomic(path, &bundle.bytes).with_context(|| format!("cannot write {}", path.display()))
}
