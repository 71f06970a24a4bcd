//! Integration tests of the core: fixtures on disk, snapshots of generated files, properties.

mod ami;
mod approval;
mod bad_configs;
mod names;
mod plan;
mod release;
mod roundtrip;
mod samples;
mod schema;
mod specs;
mod tidy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The sample customers of the repository, as relative path → text.
pub fn sample_tree() -> BTreeMap<PathBuf, Vec<u8>> {
    vending::project::read_tree(&root(), None).expect("read customers/")
}

/// `file:line:col: severity: message` lines, the form fixtures expect.
pub fn diagnostics_text(diagnostics: &[vending::Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| {
            let severity = match d.severity {
                vending::Severity::Error => "error",
                vending::Severity::Warning => "warning",
                vending::Severity::Note => "note",
            };
            let key = d.key.as_deref().map(|k| format!(" [{k}]")).unwrap_or_default();
            let help = d.help.as_deref().map(|h| format!("\n    help: {h}")).unwrap_or_default();
            format!("{}:{}:{}: {severity}: {}{key}{help}\n", d.file.display(), d.line, d.column, d.message)
        })
        .collect()
}
