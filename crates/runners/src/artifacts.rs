//! Collects a build's artifacts as CodeBuild does: `files` globs relative to the source root or
//! to `base-directory` (itself possibly a glob; the matched folder is not included, only what it
//! holds), `exclude-paths`, `discard-paths`. No matching file is an error, as on CodeBuild.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use vending::config::model::Artifacts;

/// One collected file: its path inside the artifact (always `/`-separated) and on disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Artifact {
    pub path: String,
    pub file: PathBuf,
}

fn glob(pattern: &str) -> anyhow::Result<Glob> {
    GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .with_context(|| format!("`{pattern}` is not a valid glob"))
}

fn set(patterns: &[String]) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(glob(pattern)?);
    }
    Ok(builder.build()?)
}

/// Relative `/`-separated paths of every file under `dir`, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(dir)?;
            out.push(relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
        }
    }
    Ok(out)
}

fn base_directory(src: &Path, base: &str) -> anyhow::Result<PathBuf> {
    let has_glob = base.contains(['*', '?', '[', '{']);
    if !has_glob {
        let dir = src.join(base);
        if !dir.is_dir() {
            bail!("artifacts.base-directory `{base}` does not exist after the build");
        }
        return Ok(dir);
    }
    let matcher = glob(base)?.compile_matcher();
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(src)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .filter(|e| e.path().strip_prefix(src).is_ok_and(|r| matcher.is_match(r)))
        .map(|e| e.into_path())
        .collect();
    found.sort();
    found.into_iter().next().with_context(|| format!("no folder matches artifacts.base-directory `{base}`"))
}

pub fn collect(src: &Path, artifacts: &Artifacts) -> anyhow::Result<Vec<Artifact>> {
    if artifacts.files.is_empty() {
        bail!("the buildspec has no artifacts.files: nothing to bundle");
    }
    let base = match &artifacts.base_directory {
        Some(base) => base_directory(src, base)?,
        None => src.to_path_buf(),
    };
    let include = set(&artifacts.files)?;
    let exclude = set(&artifacts.exclude_paths)?;
    let mut out: Vec<Artifact> = Vec::new();
    for relative in files_under(&base)? {
        if !include.is_match(&relative) || exclude.is_match(&relative) {
            continue;
        }
        let path = if artifacts.discard_paths {
            relative.rsplit('/').next().unwrap_or(&relative).to_string()
        } else {
            relative.clone()
        };
        out.push(Artifact { path, file: base.join(&relative) });
    }
    if out.is_empty() {
        bail!(
            "CLIENT_ERROR: no matching artifact paths found (files {:?} under {})",
            artifacts.files,
            base.strip_prefix(src).map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    out.sort();
    for pair in out.windows(2) {
        if pair[0].path == pair[1].path {
            bail!("discard-paths puts two files at `{}`: rename one, or keep the paths", pair[0].path);
        }
    }
    Ok(out)
}

/// A build artifact zip as CodeBuild writes it (its files at the root), unpacked into `dest`
/// (emptied first) with the permission bits it records. An entry that would land outside `dest`
/// (an absolute path, `..`) is refused.
pub fn unpack(zip_bytes: &[u8], dest: &Path) -> anyhow::Result<Vec<Artifact>> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("cannot clear {}", dest.display()))?;
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).context("the artifact is not a zip")?;
    let mut out = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let Some(relative) = entry.enclosed_name() else {
            bail!("the artifact holds `{}`, a path outside its root", String::from_utf8_lossy(entry.name_raw()));
        };
        let file = dest.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&file)?;
            continue;
        }
        let path = relative.to_string_lossy().replace('\\', "/");
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).with_context(|| format!("cannot read `{path}` in the artifact"))?;
        std::fs::write(&file, &bytes).with_context(|| format!("cannot write {}", file.display()))?;
        let mode = entry.unix_mode().map_or(0o644, |m| m & 0o777);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
        out.push(Artifact { path, file });
    }
    if out.is_empty() {
        bail!("the artifact is empty");
    }
    out.sort();
    Ok(out)
}
