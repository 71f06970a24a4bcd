//! The buildspec and appspec validators on files users bring: each `tests/specs/<name>.yml` has
//! the exact diagnostics it must give in `<name>.expected` (empty for files AWS accepts).

use std::fs;
use std::path::{Path, PathBuf};

use vending::spec::check_spec;
use vending::SourceFile;

#[test]
fn every_spec_fixture_gives_its_exact_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "found only {} spec fixtures", files.len());
    for path in files {
        let name = PathBuf::from(path.file_name().unwrap());
        let source = SourceFile::new(name, fs::read_to_string(&path).unwrap());
        let mut diagnostics = check_spec(&source, None);
        vending::diag::sort(&mut diagnostics);
        expect_test::expect_file![path.with_extension("expected")].assert_eq(&crate::diagnostics_text(&diagnostics));
    }
}

#[test]
fn files_aws_accepts_have_no_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs");
    for name in ["buildspec-windows-batch-reports.yml", "appspec-linux-full.yml", "appspec-windows.yml"] {
        let source = SourceFile::new(name, fs::read_to_string(dir.join(name)).unwrap());
        let errors: Vec<_> = check_spec(&source, None).into_iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{name}: {}", crate::diagnostics_text(&errors));
    }
}

#[test]
fn kind_can_be_forced() {
    let source = SourceFile::new("x.yml", "version: 0.2\n");
    let text = crate::diagnostics_text(&check_spec(&source, Some(vending::spec::SpecKind::Buildspec)));
    assert_eq!(text, "x.yml:1:1: error: missing `phases`; a buildspec needs at least one of install, pre_build, build, post_build [phases]\n");
}
