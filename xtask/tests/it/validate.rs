//! `cargo xtask validate`: exit codes, output formats, generated-file freshness, real `packer
//! validate` with its cache, `--spec`, and the promise that it never runs a customer's commands.

use crate::{packer_available, Project};

#[test]
fn samples_pass_with_real_packer() {
    if !packer_available() {
        return;
    }
    let project = Project::copy();
    let run = project.run(&["validate", "--require-packer"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("packer validate: 4 template(s) run"), "{run:?}");
    assert!(
        run.stdout.contains("0 error(s), 0 warning(s) in 2 customer(s), 4 environment(s), 15 generated file(s)"),
        "{run:?}"
    );
}

#[test]
fn packer_results_are_cached_by_content() {
    if !packer_available() {
        return;
    }
    let project = Project::copy();
    assert_eq!(project.run(&["validate", "--require-packer"]).code, 0);
    let run = project.run(&["validate", "--require-packer"]);
    assert!(run.stdout.contains("packer validate: 0 template(s) run, 4 unchanged"), "{run:?}");
    // One customer changes: only its templates run again.
    project.edit(
        "customers/globex/customer.toml",
        "display_name = \"Globex Corporation\"",
        "display_name = \"Globex Corp.\"",
    );
    assert_eq!(project.run(&["generate"]).code, 0);
    let run = project.run(&["validate", "--require-packer"]);
    assert!(run.stdout.contains("packer validate: 2 template(s) run, 2 unchanged"), "{run:?}");
}

#[test]
fn hostile_text_passes_real_packer() {
    if !packer_available() {
        return;
    }
    let project = Project::copy();
    let hostile = r#"Globex \"quoted\" ${var.x} %{ if true }x%{ endif } $${ 100% \\ back \n new 'single' é"#;
    project.edit(
        "customers/globex/customer.toml",
        "display_name = \"Globex Corporation\"",
        &format!("display_name = \"{hostile}\""),
    );
    project.edit(
        "customers/globex/customer.toml",
        "\"sudo dnf install -y python3 ruby wget\",",
        &format!("\"echo {hostile}\","),
    );
    project.edit("customers/globex/prod.toml", "CostCenter = \"globex-web\"", &format!("CostCenter = \"{hostile}\""));
    assert_eq!(project.run(&["generate"]).code, 0);
    let run = project.run(&["validate", "--require-packer", "globex"]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn require_packer_fails_without_packer() {
    let project = Project::copy();
    let run = project.run_with(&["validate", "--require-packer"], &[("PATH", "/nonexistent")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("apt-get install packer"), "{run:?}");
    let run = project.run_with(&["validate"], &[("PATH", "/nonexistent")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("packer validate skipped"), "{run:?}");
}

#[test]
fn config_errors_exit_1_with_position_and_help() {
    let project = Project::copy();
    project.edit("customers/acme/prod.toml", "interval = 15", "interval = 4");
    let run = project.run(&["validate", "--no-packer"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "error: `health_check.interval` is 4 s; allowed is 5 to 300 s\n  --> customers/acme/prod.toml:16:12"
        ),
        "{run:?}"
    );
    assert!(run.stdout.contains("16 | interval = 4\n   |            ^"), "{run:?}");
}

#[test]
fn github_format_gives_annotations() {
    let project = Project::copy();
    project.edit("customers/acme/prod.toml", "interval = 15", "interval = 4");
    let run = project.run(&["validate", "--no-packer", "--format", "github"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("::error file=customers/acme/prod.toml,line=16,col=12,title=health_check.interval::`health_check.interval` is 4 s; allowed is 5 to 300 s"),
        "{run:?}"
    );
}

#[test]
fn json_format_is_machine_readable() {
    let project = Project::copy();
    project.edit("customers/globex/dev.toml", "production = false", "production = \"no\"");
    let run = project.run(&["validate", "--no-packer", "--format", "json"]);
    assert_eq!(run.code, 1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["summary"]["errors"], 1);
    let d = &report["diagnostics"][0];
    assert_eq!(d["file"], "customers/globex/dev.toml");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(1), Some(14)));
    assert_eq!(d["key"], "production");
    assert_eq!(d["severity"], "error");
}

#[test]
fn stale_generated_file_names_the_command() {
    let project = Project::copy();
    project.edit("customers/acme/customer.toml", "timeout = 300", "timeout = 240");
    let run = project.run(&["validate", "--no-packer"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("error: generated file is stale (differs from its config from line 30)\n  --> appspecs/acme/dev/appspec.yaml:30:1"), "{run:?}");
    assert!(run.stdout.contains("run `cargo xtask generate` and commit the result"), "{run:?}");
    assert!(!run.stdout.contains("fix the config errors above first"), "{run:?}");
    // With a config error elsewhere, `generate` would refuse: that is said first.
    project.edit("customers/globex/dev.toml", "production = false", "production = \"no\"");
    let run = project.run(&["validate", "--no-packer"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("help: fix the config errors above first"), "{run:?}");
}

#[test]
fn a_file_no_customer_generates_is_an_error() {
    let project = Project::copy();
    project.write("buildspecs/initech/prod/buildspec.yaml", "version: 0.2\n");
    let run = project.run(&["validate", "--no-packer"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("error: no customer generates this file any more\n  --> buildspecs/initech/prod/buildspec.yaml"),
        "{run:?}"
    );
}

#[test]
fn one_customer_or_environment() {
    let project = Project::copy();
    let run = project.run(&["validate", "--no-packer", "acme", "prod"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("in 1 customer(s), 1 environment(s), 3 generated file(s)"), "{run:?}");
    let run = project.run(&["validate", "--no-packer", "initech"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("no customer `initech` in customers/ (there are: acme, globex)"), "{run:?}");
    let run = project.run(&["validate", "--no-packer", "acme", "qa"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("no environment `qa` in customers/acme/ (there are: dev, prod)"), "{run:?}");
    // The same code and help from every command; a near miss is named.
    let run = project.run(&["plan", "acm", "dev"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stderr.contains("no customer `acm` in customers/: did you mean `acme`? (there are: acme, globex)"),
        "{run:?}"
    );
    let run = project.run(&["deploy", "acme", "prd"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("no environment `prd` in customers/acme/: did you mean `prod`?"), "{run:?}");
}

#[test]
fn not_a_project_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"));
    let run = crate::Run::from(command.arg("--root").arg(dir.path()).arg("validate").output().unwrap());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no customers/ folder"), "{run:?}");
}

#[test]
fn spec_files_are_checked_on_their_own() {
    let project = Project::copy();
    project.write("mine/appspec.yml", "version: 0.0\nos: linux\npermissions:\n  - object: /x\n    mode: 0644\nhooks:\n  Install:\n    - location: a.sh\n");
    let path = project.path("mine/appspec.yml");
    let run = project.run(&["validate", "--spec", path.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("warning: mode 0644 is unquoted with a leading zero"), "{run:?}");
    assert!(run.stdout.contains("appspec.yml:7:3"), "{run:?}");
    // The summary speaks of the file checked.
    assert!(run.stdout.ends_with(&format!("1 error(s), 1 warning(s) in {}\n", path.display())), "{run:?}");
    assert!(!run.stdout.contains("generated file(s)"), "{run:?}");
    // Generated files pass the same validators.
    let generated = project.path("buildspecs/acme/prod/buildspec.yaml");
    let run = project.run(&["validate", "--spec", generated.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    // A file whose kind cannot be told needs --kind.
    project.write("mine/spec.yml", "version: 0.2\n");
    let path = project.path("mine/spec.yml");
    assert_eq!(project.run(&["validate", "--spec", path.to_str().unwrap()]).code, 1);
    let run = project.run(&["validate", "--spec", path.to_str().unwrap(), "--kind", "buildspec"]);
    assert!(run.stdout.contains("missing `phases`"), "{run:?}");
}

#[test]
fn a_packer_template_given_to_spec_is_checked_by_packer() {
    let project = Project::copy();
    let template = project.path("packer/packer-acme-prod.pkr.hcl");
    let path = template.to_str().unwrap();
    // Without Packer the file cannot be checked: exit 2, saying how to check it.
    let run = project.run_with(&["validate", "--spec", path], &[("PATH", "/nonexistent")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("is a Packer template, which `validate --spec` checks with `packer validate`"),
        "{run:?}"
    );
    assert!(run.stderr.contains(&format!("run `packer validate {path}` yourself")), "{run:?}");
    assert!(!run.stderr.contains("--kind") && !run.stdout.contains("--kind"), "{run:?}");
    if !packer_available() {
        return;
    }
    let run = project.run(&["validate", "--spec", path]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("0 error(s), 0 warning(s) in {path}")), "{run:?}");
    // A broken copy under another name is still recognised, and Packer's error is shown.
    let text = project.read("packer/packer-acme-prod.pkr.hcl");
    project.write(
        "mine/template.hcl",
        &text.replace("source \"amazon-ebs\" \"image\" {", "source \"amazon-ebs\" \"image\" {\n  no_such_setting = 1"),
    );
    let broken = project.path("mine/template.hcl");
    let run = project.run(&["validate", "--spec", broken.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("error: packer validate failed"), "{run:?}");
    assert!(run.stdout.contains("no_such_setting"), "{run:?}");
}

#[test]
fn validate_never_runs_customer_commands() {
    let project = Project::copy();
    let marker = project.path("ran");
    let command = format!("touch {}", marker.display());
    project.edit("customers/globex/customer.toml", "\"rm -rf dist && mkdir -p dist\",", &format!("\"{command}\","));
    project.edit(
        "customers/globex/customer.toml",
        "\"sudo dnf install -y python3 ruby wget\",",
        &format!("\"{command}\","),
    );
    project.edit("customers/globex/customer.toml", "\"cd apps/globex-site\"", &format!("\"{command}\""));
    assert_eq!(project.run(&["generate"]).code, 0);
    let run = project.run(&["validate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!marker.exists(), "validate ran a customer's command");
}

#[test]
fn a_customer_folder_that_is_a_symbolic_link_is_followed_and_a_broken_one_is_refused() {
    let project = Project::copy();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("globex");
    std::fs::rename(project.path("customers/globex"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, project.path("customers/globex")).unwrap();
    let run = project.run(&["validate", "globex"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("in 1 customer(s), 2 environment(s)"), "{run:?}");
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(project.path("packer/packer-globex-dev.pkr.hcl").exists(), "generate keeps its files: {run:?}");

    std::fs::remove_dir_all(&outside).unwrap();
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("customers/globex is a symbolic link to "), "{run:?}");
    assert!(run.stderr.contains("which cannot be read"), "{run:?}");
    assert!(project.path("packer/packer-globex-dev.pkr.hcl").exists(), "nothing is deleted: {run:?}");
}

/// `cargo xtask` builds without the `aws` feature: the pull-request check must not compile the
/// AWS SDK (it took minutes on a fresh runner), whatever a later change adds to xtask.
#[test]
fn the_pull_request_check_builds_without_the_aws_sdk() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let tree = |features: &[&str]| {
        let out = std::process::Command::new(&cargo)
            .args(["tree", "--locked", "--offline", "-e", "normal", "--prefix", "none", "--manifest-path"])
            .arg(&manifest)
            .args(["--package", "xtask"])
            .args(features)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let sdk = |text: &str| text.lines().filter(|l| l.starts_with("aws-sdk-")).count();
    assert_eq!(sdk(&tree(&["--no-default-features"])), 0, "the SDK-free build pulls an SDK crate");
    assert!(sdk(&tree(&[])) > 0, "the default build has the AWS commands");
    let alias = std::fs::read_to_string(manifest.parent().unwrap().join("../.cargo/config.toml")).unwrap();
    assert!(alias.contains("xtask = \"run --package xtask --bin xtask --no-default-features --\""), "{alias}");
}

#[test]
fn spec_files_that_are_not_regular_or_too_large_are_refused() {
    let project = Project::copy();
    let run = project.run(&["validate", "--spec", "/dev/zero"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("/dev/zero is not a regular file"), "{run:?}");
    let fifo = project.path("target/spec.fifo");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let run = project.run(&["validate", "--spec", fifo.to_str().unwrap()]);
    assert_eq!(run.code, 2, "a FIFO is refused, not waited on: {run:?}");
    let big = project.path("target/big.yml");
    std::fs::write(&big, "version: 0.2\n".repeat(400_000)).unwrap();
    let run = project.run(&["validate", "--spec", big.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is larger than 4 MiB"), "{run:?}");
}
