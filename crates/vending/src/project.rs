//! Reads a project tree (customers/ and the generated folders). `read_tree` is the only reading
//! here; `fleet_sources` arranges the files it read, so tests can build fleets in memory.
//! `write_atomic` is the one way the tools write a file that others may read meanwhile.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::validate::{CustomerSources, FleetSources};
use crate::source::SourceFile;

pub const CUSTOMERS_DIR: &str = "customers";
pub const PLATFORM_FILE: &str = "customers/platform.toml";
pub const CUSTOMER_FILE: &str = "customer.toml";

/// Every `.toml` file under customers/ (one level of customer folders), by relative path, as
/// bytes: a file that is not UTF-8 is reported by `fleet_sources` with its position, beside the
/// other files' diagnostics. Symbolic links are followed (a customer folder may live elsewhere);
/// a broken one is an error that names it.
pub fn read_tree(root: &Path, only: Option<&str>) -> io::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let customers = root.join(CUSTOMERS_DIR);
    let read = |relative: PathBuf, files: &mut BTreeMap<PathBuf, Vec<u8>>| -> io::Result<()> {
        let bytes = fs::read(root.join(&relative))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", relative.display())))?;
        files.insert(relative, bytes);
        Ok(())
    };
    for entry in sorted_entries(&customers)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = PathBuf::from(CUSTOMERS_DIR).join(&name);
        if kind(root, &relative)?.is_dir() {
            if only.is_some_and(|only| only != name) {
                continue;
            }
            // An empty folder is still a customer (one without customer.toml, which is an error).
            files.entry(relative.join(".")).or_insert_with(Vec::new);
            for file in sorted_entries(&root.join(&relative))? {
                let file_name = file.file_name().to_string_lossy().into_owned();
                let path = relative.join(&file_name);
                if file_name.ends_with(".toml") && kind(root, &path)?.is_file() {
                    read(path, &mut files)?;
                }
            }
        } else if relative == Path::new(PLATFORM_FILE) {
            read(relative, &mut files)?;
        }
    }
    Ok(files)
}

/// What a path is, through symbolic links.
fn kind(root: &Path, relative: &Path) -> io::Result<fs::FileType> {
    fs::metadata(root.join(relative)).map(|m| m.file_type()).map_err(|e| {
        let link = fs::read_link(root.join(relative)).ok();
        let what = match link {
            Some(target) => format!(
                "{} is a symbolic link to {}, which cannot be read ({e}): fix or remove the link",
                relative.display(),
                target.display()
            ),
            None => format!("cannot read {}: {e}", relative.display()),
        };
        io::Error::new(e.kind(), what)
    })
}

/// Arranges files (relative path → bytes) into the platform, customers and environments.
pub fn fleet_sources(files: &BTreeMap<PathBuf, Vec<u8>>) -> FleetSources {
    let mut sources = FleetSources::default();
    let mut customers: BTreeMap<String, CustomerSources> = BTreeMap::new();
    for (path, bytes) in files {
        let text = SourceFile::from_bytes(path, bytes);
        if path == Path::new(PLATFORM_FILE) {
            sources.platform = Some(text);
            continue;
        }
        let Ok(rest) = path.strip_prefix(CUSTOMERS_DIR) else { continue };
        let parts: Vec<String> = rest.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let (customer, file) = match parts.as_slice() {
            [customer] => (customer, None),
            [customer, file] => (customer, Some(file)),
            _ => continue,
        };
        let entry = customers.entry(customer.clone()).or_insert_with(|| CustomerSources {
            name: customer.clone(),
            customer: None,
            environments: Vec::new(),
        });
        let Some(file) = file else { continue };
        if file == CUSTOMER_FILE {
            entry.customer = Some(text);
        } else if let Some(env) = file.strip_suffix(".toml") {
            entry.environments.push((env.to_string(), text));
        }
    }
    sources.customers = customers.into_values().collect();
    for customer in &mut sources.customers {
        customer.environments.sort_by(|a, b| a.0.cmp(&b.0));
    }
    sources
}

/// Reads customers/; `only` restricts it to one customer (the platform file is always read).
pub fn read_fleet(root: &Path, only: Option<&str>) -> io::Result<FleetSources> {
    Ok(fleet_sources(&read_tree(root, only)?))
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display())))?
        .collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
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

/// Writes a file whole or not at all: through a temporary file in the same folder (created with a
/// unique name, so concurrent writers never share it) renamed over the target, so a reader never
/// sees half a file and a crash leaves the old one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent)?;
    let mut temp = tempfile::NamedTempFile::new_in(parent)?;
    temp.write_all(contents)?;
    temp.persist(path).map(|_| ()).map_err(|e| e.error)
}
