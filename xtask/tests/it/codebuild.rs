//! `deploy --build codebuild` on the emulator: the source zipped and uploaded under its SHA-256,
//! the build started on the environment's project, secrets never read on this machine (the call
//! log), and the revision made of the build's artifact and the appspec, deployed by the local
//! agent; the same commit and settings again start no build.
//!
//! The emulator runs no build (StartBuild is `SUCCEEDED` at once and writes nothing): the test
//! stands in for CodeBuild by putting the artifact where the build writes it, after the first run
//! said where that is.

use std::io::Write;

use vending_emulator::Moto;

use crate::{packer_available, repo_root, Project, Run};

/// Runs with every AWS call appended to a fresh log; returns the run and the calls.
fn run_logged(project: &Project, args: &[&str], endpoint: &str) -> (Run, Vec<String>) {
    let log = project.path("target/calls.log");
    let _ = std::fs::remove_file(&log);
    let log_text = log.display().to_string();
    let run = project.run_with(args, &[("AWS_ENDPOINT_URL", endpoint), ("VENDING_CALL_LOG", &log_text)]);
    let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
    (run, calls)
}

/// What the sample buildspec's artifact holds: the app, its scripts and unit, and what the build
/// writes, as CodeBuild zips it (files at the root of `base-directory`).
fn artifact(project: &Project) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut add = |name: &str, bytes: &[u8], mode: u32| {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
        zip.start_file(name, options).unwrap();
        zip.write_all(bytes).unwrap();
    };
    for (name, mode) in [
        ("app.py", 0o644),
        ("systemd/acme-shop.service", 0o644),
        ("scripts/stop.sh", 0o755),
        ("scripts/before_install.sh", 0o755),
        ("scripts/after_install.sh", 0o755),
        ("scripts/start.sh", 0o755),
        ("scripts/validate.sh", 0o755),
        ("scripts/sandbox.sh", 0o644),
    ] {
        add(name, &std::fs::read(project.path(&format!("apps/acme-shop/{name}"))).unwrap(), mode);
    }
    add("BUILD", b"acme-shop built-on-codebuild\n", 0o644);
    add("app.env", b"APP_ENV=development\n", 0o644);
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_deploy_builds_on_codebuild_never_reads_secrets_here_and_reuses_a_build_of_the_same_inputs() {
    if !packer_available() {
        return;
    }
    let moto = Moto::start(&repo_root()).expect("start the local AWS emulator");
    let project = Project::copy().with_apps();
    project.edit(
        "customers/platform.toml",
        "[iam]\n",
        "[iam]\ncodebuild_service_role = \"arn:aws:iam::123456789012:role/vend-codebuild\"\n",
    );
    // A secret the build needs: CodeBuild resolves it, this machine never reads it.
    project.edit(
        "customers/acme/dev.toml",
        "[build]\n",
        "[build]\nparameter_store = { SENTRY_DSN = \"/acme/dev/sentry-dsn\" }\n",
    );
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 0, "{run:?}");
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    for args in [&["platform", "deploy", "--local"][..], &["ami", "acme", "dev", "--local"]] {
        let run = project.run_with(args, &[("AWS_ENDPOINT_URL", endpoint.as_str())]);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }

    // Built on this machine, the secret is read here (and fails: the parameter is not there):
    // the call log sees secret reads.
    let (run, calls) = run_logged(&project, &["build", "acme", "dev", "--local"], &endpoint);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("cannot read the parameter /acme/dev/sentry-dsn"), "{run:?}");
    assert!(calls.iter().any(|c| c == "SSM.GetParameter"), "{calls:?}");

    // The infrastructure (with the project), the source, the build; no artifact: the emulator
    // ran nothing, and the error says where the artifact was expected.
    let deploy = ["deploy", "acme", "dev", "--local", "--build", "codebuild"];
    let (run, calls) = run_logged(&project, &deploy, &endpoint);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("+ code-build-project acme-dev: create"), "{run:?}");
    assert!(run.stdout.contains("is built on CodeBuild when the release starts"), "{run:?}");
    assert!(run.stdout.contains("uploaded to s3://vend-acme-dev/sources/"), "{run:?}");
    assert!(run.stdout.contains("CodeBuild build acme-dev:"), "{run:?}");
    assert!(!run.stdout.contains("acme/dev | build:"), "nothing was built on this machine: {run:?}");
    assert!(calls.iter().any(|c| c == "CodeBuild.StartBuild"), "{calls:?}");
    let secrets: Vec<&String> =
        calls.iter().filter(|c| c.starts_with("SSM.") || c.starts_with("SecretsManager.")).collect();
    assert!(secrets.is_empty(), "no secret is read on this machine: {secrets:?}");
    let marker = "left no artifact at s3://vend-acme-dev/";
    let at = run.stderr.find(marker).unwrap_or_else(|| panic!("{run:?}")) + marker.len();
    let key = run.stderr[at..].split_whitespace().next().unwrap().to_string();
    assert!(key.starts_with("builds/") && key.ends_with("/artifact.zip"), "{key}");

    // CodeBuild's part, played by the test: the artifact where the build writes it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = vending_aws::Target::Local { endpoint: endpoint.clone() };
    let config = runtime.block_on(vending_aws::sdk_config("eu-west-1", &target));
    let s3 = vending_aws::s3::client(&config, true);
    let body = aws_sdk_s3::primitives::ByteStream::from(artifact(&project));
    runtime.block_on(s3.put_object().bucket("vend-acme-dev").key(&key).body(body).send()).unwrap();

    // Built again (no record of these inputs yet), the revision made and deployed.
    let (run, calls) = run_logged(&project, &deploy, &endpoint);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("source of commit"), "{run:?}");
    assert!(run.stdout.contains("made of the build's 10 file(s) and the appspec"), "{run:?}");
    assert!(run.stdout.contains("succeeded on the local fleet"), "{run:?}");
    assert_eq!(calls.iter().filter(|c| *c == "CodeBuild.StartBuild").count(), 1, "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("SSM.") || c.starts_with("SecretsManager.")), "{calls:?}");
    let sandboxes = project.path("target/vending-local/fleet/acme-dev");
    let instance = std::fs::read_dir(&sandboxes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("i-"))
        .unwrap();
    let build = std::fs::read_to_string(instance.join("opt/acme-shop/BUILD")).unwrap();
    assert_eq!(build, "acme-shop built-on-codebuild\n", "the build's artifact is what was deployed");

    // The same commit and settings: no build, nothing to release.
    let (run, calls) = run_logged(&project, &deploy, &endpoint);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("no new build"), "{run:?}");
    assert!(run.stdout.contains("nothing to release"), "{run:?}");
    assert!(!calls.iter().any(|c| c == "CodeBuild.StartBuild"), "{calls:?}");
}
