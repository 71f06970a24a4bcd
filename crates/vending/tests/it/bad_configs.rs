//! Each folder under tests/bad-configs/ lays files over the sample customers (a file there
//! replaces the sample's file of the same path; an empty `<path>.delete` removes it) and
//! `expected.txt` holds the exact diagnostics validation must give. tests/config-warnings/ holds
//! cases of the same shape that validate, with warnings only. `UPDATE_EXPECT=1` rewrites the
//! expectations, to be reviewed as a diff.

use std::fs;
use std::path::{Path, PathBuf};

use vending::config::validate::validate_fleet;

fn overlay(case: &Path, dir: &Path, tree: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            overlay(case, &path, tree);
            continue;
        }
        let relative = path.strip_prefix(case).unwrap().to_path_buf();
        if relative == Path::new("expected.txt") {
            continue;
        }
        match relative.to_string_lossy().strip_suffix(".delete") {
            Some(deleted) => {
                assert!(
                    tree.remove(Path::new(deleted)).is_some(),
                    "{}: nothing to delete at {deleted}",
                    case.display()
                );
            }
            None => {
                tree.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
}

fn check(case: &Path, errors: bool) {
    let mut tree = crate::sample_tree();
    overlay(case, case, &mut tree);
    let (_, diagnostics) = validate_fleet(&vending::project::fleet_sources(&tree));
    if errors {
        assert!(diagnostics.iter().any(|d| d.is_error()), "{}: the config validated without error", case.display());
    } else {
        assert!(!diagnostics.iter().any(|d| d.is_error()), "{}: the config has errors", case.display());
        assert!(!diagnostics.is_empty(), "{}: the config validated without warning", case.display());
    }
    expect_test::expect_file![case.join("expected.txt")].assert_eq(&crate::diagnostics_text(&diagnostics));
}

fn cases(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(folder);
    let mut cases: Vec<PathBuf> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    cases
}

#[test]
fn every_bad_config_gives_its_exact_errors() {
    let cases = cases("bad-configs");
    assert!(cases.len() >= 30, "expected at least 30 bad configs, found {}", cases.len());
    for case in cases {
        check(&case, true);
    }
}

#[test]
fn every_config_with_warnings_gives_its_exact_warnings() {
    for case in cases("config-warnings") {
        check(&case, false);
    }
}
