//! `cargo xtask build` and `cargo xtask buildspec run` on copies of the project: the sample apps
//! cloned from a git repository, built by their generated buildspecs, bundled reproducibly;
//! Parameter Store values fetched from the emulator.

use vending_emulator::Moto;

use crate::{repo_root, Project};

fn record(run: &crate::Run) -> serde_json::Value {
    let json = run.stdout.lines().skip_while(|l| !l.starts_with('{')).collect::<Vec<_>>().join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("no JSON record ({e}): {run:?}"))
}

#[test]
fn builds_the_sample_app_from_its_repository_into_a_reproducible_revision() {
    let project = Project::copy().with_apps();
    project.git_init("Initial");
    let run = project.run(&["build", "globex", "dev", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("globex/dev | [runner] Entering phase PRE_BUILD"), "{run:?}");
    assert!(run.stdout.contains("Ran 2 tests"), "the app's tests ran in the build: {run:?}");
    let first = record(&run);
    assert_eq!(first["commit"], project.git(&["rev-parse", "HEAD"]));
    let zip_path = first["revision"].as_str().unwrap().to_string();
    let bytes = std::fs::read(&zip_path).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names: Vec<String> = (0..zip.len()).map(|i| zip.by_index(i).unwrap().name().unwrap().to_string()).collect();
    names.sort();
    assert!(names.contains(&"appspec.yml".to_string()), "{names:?}");
    assert!(names.contains(&"server.py".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("scripts/")), "{names:?}");
    let appspec = std::fs::read_to_string(project.path("appspecs/globex/dev/appspec.yaml")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("appspec.yml").unwrap(), &mut text).unwrap();
    assert_eq!(text, appspec);

    // A second build of the same commit: the same bytes, though every file was written again.
    let again = record(&project.run(&["build", "globex", "dev", "--json"]));
    assert_eq!(again["sha256"], first["sha256"]);

    // A failing build makes no revision and exits 1.
    project.edit(
        "apps/globex-site/tests/test_site.py",
        "def test_index_exists",
        "def test_index_exists_broken(self):\n        self.fail('broken')\n\n    def test_index_exists",
    );
    project.git(&["commit", "-q", "-am", "break a test"]);
    let run = project.run(&["build", "globex", "dev"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("globex/dev |   pre_build  FAILED"), "{run:?}");
    assert!(run.stdout.contains("globex/dev |   build      not run"), "{run:?}");
    assert!(run.stdout.lines().all(|l| l.starts_with("globex/dev | ")), "every line is prefixed: {run:?}");
    assert!(run.stderr.contains("no revision was made"), "{run:?}");
}

/// Two builds of one environment at once share its work folder: the second waits for the first
/// (it used to delete the first's tree, or fail with a misleading credential hint).
#[test]
fn two_builds_of_one_environment_at_once_both_succeed() {
    let project = Project::copy().with_apps();
    project.git_init("Initial");
    let children: Vec<_> = (0..2)
        .map(|_| {
            project
                .command(&["build", "globex", "dev", "--json"], &[])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<crate::Run> = children.into_iter().map(|c| crate::Run::from(c.wait_with_output().unwrap())).collect();
    for run in &runs {
        assert_eq!(run.code, 0, "{run:?}");
    }
    assert_eq!(record(&runs[0])["sha256"], record(&runs[1])["sha256"], "the same revision");
}

#[test]
fn the_configured_ref_is_built_and_bad_refs_or_repositories_are_clear_errors() {
    let project = Project::copy().with_apps();
    project.git_init("Initial");
    // A branch that exists only in the source repository: the clone has it as origin/release.
    project.git(&["checkout", "-q", "-b", "release"]);
    project.edit("apps/globex-site/site/index.html", "</body>", "<p>release</p></body>");
    project.git(&["commit", "-q", "-am", "release branch"]);
    let release = project.git(&["rev-parse", "HEAD"]);
    project.git(&["checkout", "-q", "main"]);
    project.edit("customers/globex/customer.toml", "ref = \"main\"", "ref = \"release\"");
    let run = project.run(&["build", "globex", "dev", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(record(&run)["commit"], release.as_str());

    project.edit("customers/globex/customer.toml", "ref = \"release\"", "ref = \"no-such-ref\"");
    let run = project.run(&["build", "globex", "dev"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("has no ref `no-such-ref`: check software.ref"), "{run:?}");

    project.edit("customers/globex/customer.toml", "repository = \".\"", "repository = \"no-such-dir\"");
    let run = project.run(&["build", "globex", "dev"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("cannot clone no-such-dir"), "{run:?}");

    // A repository that starts with `-` is a repository, never an option of git's: git refuses
    // it as a host name. Taken as an option, the destination folder would be the repository.
    project.edit(
        "customers/globex/customer.toml",
        "repository = \"no-such-dir\"",
        "repository = \"--upload-pack=touch@h:r\"",
    );
    let run = project.run(&["build", "globex", "dev"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("cannot clone --upload-pack=touch@h:r: fatal: strange hostname"), "{run:?}");
    assert!(!run.stderr.contains("vending-runners"), "git took the destination for the repository: {run:?}");
}

#[test]
fn parameter_store_values_come_from_the_emulator() {
    let moto = Moto::start(&repo_root()).expect("start the local AWS emulator");
    let project = Project::copy().with_apps();
    // The build prints the secret: the runner must mask it.
    project.edit(
        "customers/acme/customer.toml",
        "commands = [\"echo \\\"build finished: succeeding=$CODEBUILD_BUILD_SUCCEEDING\\\"\"]",
        "commands = [\"echo \\\"build finished: succeeding=$CODEBUILD_BUILD_SUCCEEDING\\\"\", \"echo \\\"sentry: $SENTRY_DSN\\\"\"]",
    );
    assert_eq!(project.run(&["generate"]).code, 0);
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];
    let run = project.run_with(&["build", "acme", "prod", "--local"], &env);
    assert_eq!(run.code, 2, "the build could not run: {run:?}");
    assert!(run.stderr.contains("SENTRY_DSN: cannot read the parameter /acme/prod/sentry-dsn"), "{run:?}");

    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let config =
            vending_aws::sdk_config("eu-west-1", &vending_aws::Target::Local { endpoint: endpoint.clone() }).await;
        aws_sdk_ssm::Client::new(&config)
            .put_parameter()
            .name("/acme/prod/sentry-dsn")
            .value("https://s3cr3t@sentry.example/7")
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    });
    let run = project.run_with(&["build", "acme", "prod", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("acme/prod | sentry: ***\n"), "the build printed the secret, masked: {run:?}");
    assert!(!run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"), "{run:?}");
}

#[test]
fn buildspec_run_reports_phases_and_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p out && echo hi > out/a.txt\nartifacts:\n  files: ['**/*']\n  base-directory: out\n",
    )
    .unwrap();
    let project = Project::copy();
    let src = dir.path().display().to_string();
    let spec = dir.path().join("buildspec.yml").display().to_string();
    let run = project.run(&["buildspec", "run", &spec, "--src", &src]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("  build      SUCCEEDED"), "{run:?}");
    assert!(run.stdout.contains("artifacts (1):\n  a.txt"), "{run:?}");

    std::fs::write(
        dir.path().join("broken.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo a: b\n",
    )
    .unwrap();
    let broken = dir.path().join("broken.yml").display().to_string();
    let run = project.run(&["buildspec", "run", &broken, "--src", &src]);
    assert_eq!(run.code, 1, "an invalid buildspec runs nothing: {run:?}");
    assert!(run.stdout.contains("unquoted `: `") || run.stderr.contains("unquoted `: `"), "{run:?}");
}

/// The processes whose command line holds `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn an_interrupted_build_takes_what_it_started_with_it() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let project = Project::copy();
    for (signal, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term"), (libc::SIGKILL, "kill")] {
        let marker = format!("vending-test-marker-{}-{name}", std::process::id());
        let spec = dir.path().join(format!("{name}.yml"));
        std::fs::write(
            &spec,
            format!("version: 0.2\nphases:\n  build:\n    commands:\n      - bash -c 'sleep 300; true' {marker} &\n      - echo started\n      - sleep 300\n"),
        )
        .unwrap();
        let src = dir.path().display().to_string();
        let mut child = project
            .command(&["buildspec", "run", spec.to_str().unwrap(), "--src", &src], &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.map_while(Result::ok) {
            if line.contains("started") {
                break;
            }
        }
        // (`; true` keeps bash from replacing itself with `sleep`, which would drop the marker.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while processes_with(&marker).is_empty() {
            assert!(std::time::Instant::now() < deadline, "{name}: the build's background process never ran");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // SAFETY: signalling a child process we spawned.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let _ = child.wait();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !processes_with(&marker).is_empty() {
            assert!(std::time::Instant::now() < deadline, "{name}: still running: {:?}", processes_with(&marker));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[test]
fn appspec_run_deploys_a_revision_into_a_sandbox() {
    let revision = tempfile::tempdir().unwrap();
    std::fs::write(
        revision.path().join("appspec.yml"),
        "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/site\nhooks:\n  ValidateService:\n    - location: check.sh\n",
    )
    .unwrap();
    std::fs::create_dir_all(revision.path().join("site")).unwrap();
    std::fs::write(revision.path().join("site/index.html"), "hello").unwrap();
    std::fs::write(revision.path().join("check.sh"), "#!/bin/sh\ntest -f \"$VENDING_SANDBOX/srv/site/index.html\"\n")
        .unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    let project = Project::copy();
    let (rev, root) = (revision.path().display().to_string(), sandbox.path().display().to_string());
    let run = project.run(&["appspec", "run", &rev, "--root", &root]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("hooks run here, not on AWS"), "{run:?}");
    assert!(run.stdout.contains("AppSpec file valid. Local deployment successful"), "{run:?}");
    assert_eq!(std::fs::read_to_string(sandbox.path().join("srv/site/index.html")).unwrap(), "hello");

    std::fs::write(revision.path().join("check.sh"), "#!/bin/sh\necho 'site is down' >&2\nexit 3\n").unwrap();
    let run = project.run(&["appspec", "run", &rev, "--root", &root]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("ValidateService failed (script error code 4)"), "{run:?}");
    assert!(run.stderr.contains("    site is down"), "{run:?}");
}
