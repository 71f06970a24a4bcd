//! The buildspec runner, artifact collection and bundles, with real shells and files.

mod agent;
mod artifacts;
mod runner;

use vending::config::model::Build;
use vending::SourceFile;

/// A buildspec from YAML text, through the same reader `buildspec run` uses.
pub fn buildspec(yaml: &str) -> Build {
    let source = SourceFile::new("buildspec.yml", yaml);
    vending::spec::buildspec::read(&source).unwrap_or_else(|d| panic!("invalid buildspec: {d:?}"))
}
