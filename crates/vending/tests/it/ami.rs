//! AMI builds, the pure parts: Packer's manifest (fixtures in tests/manifests/) and the variables
//! and description made from a commit.

use std::path::Path;

use vending::ami::{description, packer_variables, parse_manifest, Commit};

fn check_manifest(fixture: &str, expected: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests").join(fixture);
    let actual = match parse_manifest(&std::fs::read_to_string(path).unwrap()) {
        Ok(artifact) => {
            let amis: Vec<String> = artifact.amis.iter().map(|(r, a)| format!("{r}={a}")).collect();
            format!("{} {}", artifact.packer_run_uuid, amis.join(" "))
        }
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(actual, expected, "{fixture}");
}

#[test]
fn manifest_takes_the_last_run_not_the_last_line() {
    check_manifest("accumulated-runs.json", "run-2 eu-west-1=ami-0new");
}

#[test]
fn manifest_takes_the_last_build_of_this_source() {
    check_manifest("several-builds-one-run.json", "run-9 eu-west-1=ami-0second");
}

#[test]
fn manifest_reads_every_region() {
    check_manifest("multi-region.json", "r eu-central-1=ami-0ccc eu-west-1=ami-0aaa us-east-1=ami-0bbb");
}

#[test]
fn manifest_errors() {
    check_manifest("missing-last-run.json", "error: has no `last_run_uuid`");
    check_manifest("last-run-without-artifact.json", "error: has no AMI in the last run r (artifact id ``)");
    check_manifest("last-run-of-another-template.json", "error: lists no amazon-ebs build `image` of the last run r");
    check_manifest("bad-artifact-id.json", "error: has an artifact id `ami-0aaa` that is not region:ami-id");
    check_manifest("garbage.json", "error: is not a Packer manifest (expected value at line 1 column 1)");
}

fn commit(message: &str) -> Commit {
    Commit {
        id: "0123456789abcdef0123456789abcdef01234567".into(),
        time: "2026-11-29T18:00:00+01:00".into(),
        author: "Zoë O'Brien".into(),
        message: message.into(),
    }
}

#[test]
fn hostile_commit_text_reaches_packer_verbatim() {
    let message = "Fix \"quoted\" ${var.x} %{ if } \\ back\\slash\nbody: line 2\n- item\n";
    let vars = packer_variables(&commit(message), false);
    let get = |k: &str| vars.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("commit_message"), message.trim_end());
    assert_eq!(get("commit_author"), "Zoë O'Brien");
    assert_eq!(get("dirty"), "false");
    assert_eq!(
        description(&vars),
        "commit id: 0123456789abcdef0123456789abcdef01234567 / time stamp: 2026-11-29T18:00:00+01:00 / commit by: Zoë O'Brien / message: Fix \"quoted\" ${var.x} %{ if } \\ back\\slash\nbody: line 2\n- item"
    );
}

#[test]
fn description_is_cut_to_255_characters_on_a_character_boundary() {
    let vars = packer_variables(&commit(&"é".repeat(400)), true);
    let text = description(&vars);
    assert_eq!(text.chars().count(), 255);
    assert!(text.ends_with('é'));
    assert_eq!(vars.iter().find(|(k, _)| k == "dirty").unwrap().1, "true");
}

#[test]
fn go_template_braces_are_neutralized() {
    let vars = packer_variables(&commit("use {{ .Name }} and {{{x}}}"), false);
    assert_eq!(vars[3].1, "use { { .Name }} and { { {x}}}");
    assert!(!description(&vars).contains("{{"));
}
