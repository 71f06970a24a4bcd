//! `cargo xtask platform plan|deploy`, `plan` and `deploy --infra-only` from the command line
//! against the local emulator: exit codes (plan: 0 nothing, 2 changes, 1 error), the JSON plan,
//! and a second deploy that finds nothing to do. The resources themselves are checked through
//! the SDK in crates/aws (tests/it/infra.rs).

use vending_emulator::Moto;

use crate::{packer_available, repo_root, Project};

#[test]
fn plan_exit_codes_json_and_a_deploy_that_converges() {
    if !packer_available() {
        return;
    }
    let moto = Moto::start(&repo_root()).expect("start the local AWS emulator");
    let project = Project::copy();
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];

    // The first local run's notices (a certificate made for the emulator) go to stderr: stdout is
    // JSON.
    let run = project.run_with(&["platform", "plan", "--local", "--json"], &env);
    assert_eq!(run.code, 2, "changes to make: {run:?}");
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    assert!(plan["changes"].as_array().unwrap().iter().all(|c| c["fields"].is_array()), "{plan}");
    let run = project.run_with(&["platform", "deploy", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("platform | created load-balancer vend-shared"), "{run:?}");
    let run = project.run_with(&["platform", "plan", "--local"], &env);
    assert_eq!(run.code, 0, "nothing left: {run:?}");

    // No AMI yet: an error (exit 1) that says what to do.
    let run = project.run_with(&["plan", "globex", "dev", "--local"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("build one with `cargo xtask ami globex dev --local`"), "{run:?}");

    let run = project.run_with(&["ami", "globex", "dev", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let run = project.run_with(&["plan", "globex", "dev", "--local", "--json"], &env);
    assert_eq!(run.code, 2, "{run:?}");
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    assert_eq!(plan["stack"], "globex/dev");
    assert_eq!(plan["has_changes"], true);
    assert_eq!(plan["destructive"], false);
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 8);
    assert_eq!(
        changes[0],
        serde_json::json!({"kind": "bucket", "name": "vend-globex-dev", "action": "create", "fields": [], "destructive": false})
    );
    assert_eq!(plan["shared_load_balancer"], "vend-shared");

    let run = project.run_with(&["deploy", "globex", "dev", "--local", "--infra-only", "--software-only"], &env);
    assert_eq!(run.code, 2, "one or the other: {run:?}");
    assert!(run.stderr.contains("cannot be used with"), "{run:?}");

    let run = project.run_with(&["deploy", "globex", "dev", "--local", "--infra-only"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("globex/dev: 8 resource(s) changed"), "{run:?}");
    let run = project.run_with(&["plan", "globex", "dev", "--local", "--json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(plan["changes"].as_array().unwrap().iter().all(|c| c["action"] == "unchanged"), "{plan}");
    let run = project.run_with(&["deploy", "globex", "dev", "--local", "--infra-only"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("globex/dev: no changes"), "{run:?}");

    // A config error: exit 1 and nothing read from AWS.
    project.edit("customers/globex/dev.toml", "production = false", "production = maybe");
    let run = project.run_with(&["plan", "globex", "dev", "--local"], &env);
    assert_eq!(run.code, 1, "{run:?}");
}

/// Forgetting `--local` on a machine without AWS credentials: one line that says so and names
/// `--local`, not the SDK's account of every credential provider it tried.
#[test]
fn without_credentials_one_line_names_local() {
    let project = Project::copy();
    let mut command = project.command(&["plan", "globex", "dev"], &[]);
    for variable in
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"]
    {
        command.env_remove(variable);
    }
    command
        .env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let run = crate::Run::from(command.output().unwrap());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no AWS credentials found"), "{run:?}");
    assert!(run.stderr.contains("for the local emulator add --local"), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    assert!(run.stderr.len() < 400, "{} characters: {run:?}", run.stderr.len());
}
