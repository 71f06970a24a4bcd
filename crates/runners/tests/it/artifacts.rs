//! Artifact globs as CodeBuild reads them, and bundles that are byte-reproducible.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use vending::config::model::Artifacts;
use vending_runners::artifacts::collect;
use vending_runners::bundle::bundle;

fn tree(root: &Path, files: &[&str]) {
    for file in files {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("content of {file}")).unwrap();
    }
}

fn artifacts(files: &[&str], base: Option<&str>, discard: bool, exclude: &[&str]) -> Artifacts {
    Artifacts {
        files: files.iter().map(|s| s.to_string()).collect(),
        base_directory: base.map(str::to_string),
        discard_paths: discard,
        exclude_paths: exclude.iter().map(|s| s.to_string()).collect(),
        name: None,
    }
}

#[test]
fn globs_base_directory_exclusions_and_discarded_paths() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &["dist/app.py", "dist/scripts/start.sh", "dist/scripts/stop.sh", "dist/notes.md", "src/x.py", "top.txt"],
    );
    let cases: &[(&str, Artifacts, &[&str])] = &[
        (
            "everything under the base directory, the folder itself left out",
            artifacts(&["**/*"], Some("dist"), false, &[]),
            &["app.py", "notes.md", "scripts/start.sh", "scripts/stop.sh"],
        ),
        ("`*` stays within one folder", artifacts(&["*"], Some("dist"), false, &[]), &["app.py", "notes.md"]),
        (
            "a folder's files",
            artifacts(&["dist/scripts/*"], None, false, &[]),
            &["dist/scripts/start.sh", "dist/scripts/stop.sh"],
        ),
        (
            "exclude-paths relative to the base directory",
            artifacts(&["**/*"], Some("dist"), false, &["**/*.md", "scripts/stop.sh"]),
            &["app.py", "scripts/start.sh"],
        ),
        (
            "discard-paths flattens",
            artifacts(&["dist/scripts/*", "top.txt"], None, true, &[]),
            &["start.sh", "stop.sh", "top.txt"],
        ),
        ("a base directory given as a glob", artifacts(&["*.py"], Some("di*"), false, &[]), &["app.py"]),
    ];
    for (what, spec, expected) in cases {
        let found: Vec<String> = collect(dir.path(), spec).unwrap().into_iter().map(|a| a.path).collect();
        assert_eq!(found, *expected, "{what}");
    }
    let none = collect(dir.path(), &artifacts(&["*.jar"], None, false, &[])).unwrap_err();
    assert!(format!("{none:#}").contains("no matching artifact paths found"), "{none:#}");
    let missing = collect(dir.path(), &artifacts(&["**/*"], Some("build"), false, &[])).unwrap_err();
    assert!(format!("{missing:#}").contains("base-directory `build` does not exist"), "{missing:#}");
    let clash = collect(dir.path(), &artifacts(&["**/app.py", "dist/app.py", "src/x.py"], None, true, &[]));
    assert!(clash.is_ok(), "one file matched twice is one artifact");
    tree(dir.path(), &["other/app.py"]);
    let clash = collect(dir.path(), &artifacts(&["**/app.py"], None, true, &[])).unwrap_err();
    assert!(format!("{clash:#}").contains("discard-paths puts two files at `app.py`"), "{clash:#}");
}

#[test]
fn bundles_are_byte_reproducible_and_keep_modes() {
    let make = |order: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        // Files written in another order and at another time give the same zip.
        tree(dir.path(), order);
        let script = dir.path().join("dist/scripts/start.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let found = collect(dir.path(), &artifacts(&["**/*"], Some("dist"), false, &[])).unwrap();
        bundle("version: 0.0\nos: linux\n", &found).unwrap()
    };
    let a = make(&["dist/app.py", "dist/scripts/start.sh"]);
    let b = make(&["dist/scripts/start.sh", "dist/app.py"]);
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.bytes, b.bytes);

    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(a.bytes)).unwrap();
    let names: Vec<String> = (0..zip.len()).map(|i| zip.by_index(i).unwrap().name().unwrap().to_string()).collect();
    assert_eq!(names, ["app.py", "appspec.yml", "scripts/start.sh"]);
    assert_eq!(zip.by_name("scripts/start.sh").unwrap().unix_mode().map(|m| m & 0o777), Some(0o755));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("appspec.yml").unwrap(), &mut text).unwrap();
    assert_eq!(text, "version: 0.0\nos: linux\n");

    let other = {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["dist/app.py"]);
        std::fs::write(dir.path().join("dist/app.py"), "changed").unwrap();
        bundle(
            "version: 0.0\nos: linux\n",
            &collect(dir.path(), &artifacts(&["**/*"], Some("dist"), false, &[])).unwrap(),
        )
        .unwrap()
    };
    assert_ne!(other.sha256, a.sha256, "other content, other hash");
}
