//! Reads a project tree (customers/ and the generated folders) into memory. The only module of
//! this crate that touches the file system, and it only reads.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::validate::{CustomerSources, FleetSources};
use crate::source::SourceFile;

pub const CUSTOMERS_DIR: &str = "customers";
pub const PLATFORM_FILE: &str = "customers/platform.toml";
pub const CUSTOMER_FILE: &str = "customer.toml";

fn read_source(root: &Path, relative: &Path) -> io::Result<SourceFile> {
    let text = fs::read_to_string(root.join(relative))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", relative.display())))?;
    Ok(SourceFile::new(relative, text))
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display())))?
        .collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Reads `customers/`; `only` restricts it to one customer (the platform file is always read).
pub fn read_fleet(root: &Path, only: Option<&str>) -> io::Result<FleetSources> {
    let platform_path = Path::new(PLATFORM_FILE);
    let platform = if root.join(platform_path).is_file() { Some(read_source(root, platform_path)?) } else { None };
    let mut customers = Vec::new();
    let customers_dir = root.join(CUSTOMERS_DIR);
    if customers_dir.is_dir() {
        for entry in sorted_entries(&customers_dir)? {
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if only.is_some_and(|only| only != name) {
                continue;
            }
            let dir = PathBuf::from(CUSTOMERS_DIR).join(&name);
            let customer_path = dir.join(CUSTOMER_FILE);
            let customer =
                if root.join(&customer_path).is_file() { Some(read_source(root, &customer_path)?) } else { None };
            let mut environments = Vec::new();
            for file in sorted_entries(&root.join(&dir))? {
                let file_name = file.file_name().to_string_lossy().into_owned();
                let Some(env) = file_name.strip_suffix(".toml") else { continue };
                if file_name == CUSTOMER_FILE || !file.file_type()?.is_file() {
                    continue;
                }
                environments.push((env.to_string(), read_source(root, &dir.join(&file_name))?));
            }
            customers.push(CustomerSources { name, customer, environments });
        }
    }
    Ok(FleetSources { platform, customers })
}

/// Every file under the generated folders, relative to the root, sorted.
pub fn list_generated(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in crate::render::GENERATED_DIRS {
        walk(root, Path::new(dir), &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let full = root.join(relative);
    if !full.is_dir() {
        return Ok(());
    }
    for entry in sorted_entries(&full)? {
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else if entry.file_name() != ".gitkeep" {
            out.push(path);
        }
    }
    Ok(())
}
