//! `cargo xtask generate`: writes what changed, removes what no customer produces, and changes
//! nothing while any config is invalid.

use crate::Project;

#[test]
fn generate_on_a_fresh_tree_changes_nothing() {
    let project = Project::copy();
    let before = project.snapshot();
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("0 written, 0 removed, 15 unchanged"), "{run:?}");
    assert_eq!(project.snapshot(), before);
}

#[test]
fn a_config_change_rewrites_exactly_its_files() {
    let project = Project::copy();
    project.edit("customers/globex/prod.toml", "requests_per_target = 500.0", "requests_per_target = 800.0");
    project.edit("customers/globex/prod.toml", "CostCenter = \"globex-web\"", "CostCenter = \"globex-www\"");
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("wrote packer/packer-globex-prod.pkr.hcl\n1 written, 0 removed, 14 unchanged"),
        "{run:?}"
    );
    assert!(project.read("packer/packer-globex-prod.pkr.hcl").contains("\"CostCenter\" = \"globex-www\""));
    assert_eq!(project.run(&["validate", "--no-packer"]).code, 0);
}

#[test]
fn invalid_config_writes_nothing() {
    let project = Project::copy();
    project.edit("customers/globex/prod.toml", "CostCenter = \"globex-web\"", "CostCenter = \"globex-www\"");
    project.edit("customers/acme/prod.toml", "min = 2", "min = 9");
    project.write("packer/packer-gone-prod.pkr.hcl", "# left over\n");
    let before = project.snapshot();
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("nothing was written"), "{run:?}");
    assert_eq!(project.snapshot(), before);
}

#[test]
fn files_no_customer_produces_are_removed() {
    let project = Project::copy();
    std::fs::remove_file(project.path("customers/globex/dev.toml")).unwrap();
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 0, "{run:?}");
    for path in
        ["packer/packer-globex-dev.pkr.hcl", "buildspecs/globex/dev/buildspec.yaml", "appspecs/globex/dev/appspec.yaml"]
    {
        assert!(run.stdout.contains(&format!("removed {path}")), "{run:?}");
        assert!(!project.path(path).exists());
    }
    assert_eq!(project.run(&["validate", "--no-packer"]).code, 0);
}

#[test]
fn one_customer_only_touches_its_files() {
    let project = Project::copy();
    project.edit("customers/globex/prod.toml", "CostCenter = \"globex-web\"", "CostCenter = \"globex-www\"");
    project.edit("customers/acme/prod.toml", "CostCenter = \"acme-prod\"", "CostCenter = \"acme-eu\"");
    let run = project.run(&["generate", "acme"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("1 written, 0 removed, 5 unchanged"), "{run:?}");
    assert!(project.read("packer/packer-globex-prod.pkr.hcl").contains("globex-web"));
}

/// `new`: a commented customer folder that generates and validates as it is; refused over an
/// existing folder or with a name against the naming rule, writing nothing. Completions generate.
#[test]
fn new_makes_a_customer_that_validates_and_completions_generate() {
    let project = Project::copy();
    let run = project.run(&["new", "initech"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("cargo xtask generate initech"), "the next commands: {run:?}");
    for file in ["customer.toml", "dev.toml", "prod.toml"] {
        let text = project.read(&format!("customers/initech/{file}"));
        assert!(text.starts_with("# "), "{file} is commented: {text}");
    }
    assert!(project.read("customers/initech/dev.toml").contains("hosts = [\"initech-dev.apps.example.com\"]"));
    assert!(project.read("customers/initech/customer.toml").contains("destination = \"/opt/initech\""));
    assert!(project.read("customers/initech/customer.toml").contains("display_name = \"Initech\""));
    let run = project.run(&["generate", "initech"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = project.run(&["validate", "--no-packer"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("0 error(s), 0 warning(s) in 3 customer(s), 6 environment(s)"), "{run:?}");

    let before = project.snapshot();
    let run = project.run(&["new", "initech"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("exists already: nothing was written"), "{run:?}");
    let run = project.run(&["new", "Bad_Name"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("customer name `Bad_Name` may contain only lowercase letters"), "{run:?}");
    assert_eq!(project.snapshot(), before, "nothing changed");

    for shell in ["bash", "zsh", "fish"] {
        let run = project.run(&["completions", shell]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("cargo-xtask") && run.stdout.contains("deploy"), "{shell}: {run:?}");
    }
}

/// Every command's `--help` has an example (and those that report, their exit codes).
#[test]
fn every_command_help_has_an_example() {
    let project = Project::copy();
    let commands = [
        "validate",
        "generate",
        "new",
        "completions",
        "ami",
        "local",
        "plan",
        "status",
        "deploy",
        "rollback",
        "platform",
        "approve",
        "reject",
        "approvals",
        "history",
        "lock",
        "build",
        "buildspec",
        "appspec",
        "bench",
    ];
    for command in commands {
        let run = project.run(&[command, "--help"]);
        assert_eq!(run.code, 0, "{command}: {run:?}");
        assert!(run.stdout.contains("Example"), "{command} --help has no example: {run:?}");
    }
    for command in ["validate", "generate", "ami", "plan", "status", "deploy", "build"] {
        let run = project.run(&[command, "--help"]);
        assert!(run.stdout.contains("Exit codes:") && run.stdout.contains("7 an unknown name"), "{command}: {run:?}");
    }
}
