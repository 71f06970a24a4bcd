//! `cargo xtask deploy <customer> <env> --local` end to end: the sample app built from its
//! repository, uploaded under its content-addressed key, recorded as a CodeDeploy deployment in
//! the emulator, and installed by the local agent in every instance's sandbox; a second deploy
//! of the same revision does nothing; a deliberately broken ValidateService stops the release at
//! the first instance and the rollback puts the last good revision back; so does Ctrl-C; and
//! `rollback` goes back to the revision released before (once: again changes nothing) or to one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use vending_emulator::Moto;

use crate::{packer_available, repo_root, Project};

fn sandboxes(project: &Project) -> Vec<PathBuf> {
    let fleet = project.path("target/vending-local/fleet/acme-dev");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&fleet)
        .unwrap_or_else(|e| panic!("{}: {e}", fleet.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("i-"))
        .collect();
    dirs.sort();
    dirs
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn deploy_releases_to_every_local_instance_skips_an_unchanged_revision_and_rolls_back_a_broken_one() {
    if !packer_available() {
        return;
    }
    let moto = Moto::start(&repo_root()).expect("start the local AWS emulator");
    let project = Project::copy().with_apps();
    // Two instances, so that "every instance" and "one at a time" mean something.
    project.edit("customers/acme/dev.toml", "[capacity]\nmin = 1\nmax = 2", "[capacity]\nmin = 2\nmax = 2");
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];
    for args in [&["platform", "deploy", "--local"][..], &["ami", "acme", "dev", "--local"]] {
        let run = project.run_with(args, &env);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }

    // Software before infrastructure: a clear error, nothing built.
    let run = project.run_with(&["deploy", "acme", "dev", "--local", "--software-only"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("deploy the infrastructure first with `cargo xtask deploy acme dev --local`"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("build:"), "nothing is built: {run:?}");

    // The whole thing: infrastructure, then the release.
    let run = project.run_with(&["deploy", "acme", "dev", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("acme/dev: 10 resource(s) changed"), "{run:?}");
    assert!(run.stdout.contains("uploaded to s3://vend-acme-dev/revisions/"), "{run:?}");
    assert!(run.stdout.contains("the local CodeDeploy agent runs the hooks"), "{run:?}");
    assert!(run.stdout.contains("InProgress: 1/2 instances"), "{run:?}");
    assert!(run.stdout.contains("Succeeded: 2/2 instances"), "{run:?}");
    assert!(run.stdout.contains("succeeded on the local fleet"), "{run:?}");
    let instances = sandboxes(&project);
    assert_eq!(instances.len(), 2, "one sandbox per instance: {instances:?}");
    let first_build = read(instances[0].join("opt/acme-shop/BUILD"));
    assert!(first_build.starts_with("acme-shop "), "{first_build}");
    for sandbox in &instances {
        assert_eq!(read(sandbox.join("opt/acme-shop/BUILD")), first_build, "the same revision everywhere");
        assert!(read(sandbox.join("opt/acme-shop/app.py")).contains("def route"));
        assert!(read(sandbox.join("etc/systemd/system/acme-shop.service")).contains("ExecStart="));
        // The environment's settings reach the app: the unit reads the file the build wrote.
        assert_eq!(read(sandbox.join("opt/acme-shop/app.env")), "APP_ENV=development\n");
        assert!(read(sandbox.join("etc/systemd/system/acme-shop.service"))
            .contains("EnvironmentFile=/opt/acme-shop/app.env"));
        assert!(read(sandbox.join("run/acme-shop.started")).trim().len() > 8, "ApplicationStart ran");
        let mode = fs::metadata(sandbox.join("opt/acme-shop/scripts/validate.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "permissions applied");
    }

    // `status`: the AMI, the release just made (who, which revision, how it ended), no lock left,
    // and no drift.
    let run = project.run_with(&["status", "acme", "dev", "--local", "--json", "--drift"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    let row = &rows[0];
    assert_eq!(row["environment"], "acme/dev", "{row}");
    assert!(row["ami"]["id"].as_str().unwrap().starts_with("ami-"), "{row}");
    assert_eq!(row["last_release"]["result"], "succeeded", "{row}");
    assert_eq!(row["last_release"]["kind"], "release", "{row}");
    assert!(row["last_release"]["by"].as_str().unwrap().starts_with("arn:aws:"), "{row}");
    let sha = row["last_release"]["revision_sha256"].as_str().unwrap().to_string();
    assert!(run.stderr.is_empty() || !run.stderr.contains("error"), "{run:?}");
    assert_eq!(row["lock"], serde_json::Value::Null, "{row}");
    assert_eq!(row["drift"], false, "{row}");
    let run = project.run_with(&["status", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("acme/dev | last release: revision {} succeeded", &sha[..16])), "{run:?}");
    assert!(run.stdout.contains("globex/dev | AMI: none yet"), "{run:?}");

    // One revision ever deployed: nothing to roll back to.
    let run = project.run_with(&["rollback", "acme", "dev", "--local"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("has released one revision only: nothing to roll back to"), "{run:?}");

    // The same revision again: nothing to release, no agent run.
    let run = project.run_with(&["deploy", "acme", "dev", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("acme/dev: no changes"), "{run:?}");
    assert!(run.stdout.contains("nothing to release"), "{run:?}");
    assert!(!run.stdout.contains("local agent on"), "{run:?}");

    // A release whose ValidateService fails: stopped at the first instance, rolled back.
    project.edit(
        "apps/acme-shop/scripts/validate.sh",
        "            echo \"sandbox: $url answers 200\"\n",
        "            echo \"deliberately broken\" >&2\n            exit 1\n",
    );
    // Not committed yet: the build uses the committed ref, and says so.
    let run = project.run_with(&["deploy", "acme", "dev", "--local", "--software-only"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("uncommitted change(s); the build uses the committed main"), "{run:?}");
    assert!(run.stdout.contains("nothing to release"), "{run:?}");
    project.git(&["commit", "-qam", "Break ValidateService"]);
    let run = project.run_with(&["deploy", "acme", "dev", "--local", "--software-only"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    let first = instances[0].file_name().unwrap().to_string_lossy().into_owned();
    let second = instances[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(run.stderr.contains(&format!("{first}: ValidateService failed")), "{run:?}");
    assert!(run.stderr.contains("deliberately broken"), "the log tail: {run:?}");
    assert!(run.stderr.contains("automatic rollback"), "{run:?}");
    assert!(run.stderr.contains(": Succeeded"), "the rollback ended well: {run:?}");
    assert!(
        !run.stdout.contains(&format!("local agent on {second}\n")),
        "one at a time, stopped at the first: {run:?}"
    );
    for sandbox in &instances {
        assert_eq!(read(sandbox.join("opt/acme-shop/BUILD")), first_build, "the last good revision is back");
        assert!(!read(sandbox.join("opt/acme-shop/scripts/validate.sh")).contains("deliberately broken"));
        assert!(sandbox.join("run/acme-shop.started").is_file(), "and started again");
    }

    // Fixed: the next release goes through, and is the one recorded.
    project.edit(
        "apps/acme-shop/scripts/validate.sh",
        "            echo \"deliberately broken\" >&2\n            exit 1\n",
        "            echo \"sandbox: fixed\"\n",
    );
    project.git(&["commit", "-qam", "Fix ValidateService"]);
    let run = project.run_with(&["deploy", "acme", "dev", "--local", "--software-only"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    for sandbox in &instances {
        assert!(read(sandbox.join("opt/acme-shop/scripts/validate.sh")).contains("sandbox: fixed"));
    }

    // The trap: the agent records a revision as the last successful one as soon as it is
    // installed, so a release whose stop script is broken and whose ValidateService fails runs
    // that stop script next: it blocks the automatic rollback, and every later release, until
    // its failures are ignored.
    let broken_stop = "    rm -f \"$ROOT/run/acme-shop.started\"\n    exit 0\n";
    let fixed = "            echo \"sandbox: fixed\"\n";
    let broken_validate = "            echo \"deliberately broken\" >&2\n            exit 1\n";
    project.edit("apps/acme-shop/scripts/stop.sh", broken_stop, "    echo \"cannot stop\" >&2\n    exit 1\n");
    project.edit("apps/acme-shop/scripts/validate.sh", fixed, broken_validate);
    project.git(&["commit", "-qam", "Break ApplicationStop and ValidateService"]);
    let run = project.run_with(&["deploy", "acme", "dev", "--local", "--software-only"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("{first}: ValidateService failed")), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!(": Failed on {first}: ApplicationStop: Script at specified location: scripts/stop.sh")),
        "the broken stop script of the release that failed blocks the rollback: {run:?}"
    );
    project.edit("apps/acme-shop/scripts/validate.sh", broken_validate, fixed);
    project.edit("apps/acme-shop/app.py", "\"Anvil\"", "\"Anvil XL\"");
    project.git(&["commit", "-qam", "A bigger anvil"]);
    let run = project.run_with(&["deploy", "acme", "dev", "--local", "--software-only"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("{first}: ApplicationStop failed")), "{run:?}");
    assert!(run.stderr.contains("cannot stop"), "{run:?}");
    let run = project
        .run_with(&["deploy", "acme", "dev", "--local", "--software-only", "--ignore-application-stop-failures"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("ApplicationStop failed, ignored (ignoreApplicationStopFailures)"), "{run:?}");
    for sandbox in &instances {
        assert!(read(sandbox.join("opt/acme-shop/app.py")).contains("Anvil XL"));
    }

    // Ctrl-C in the middle of a release: the instance at work finishes its hook, no other
    // instance starts, and the rollback puts the last good revision back. A second Ctrl-C leaves.
    project.edit("apps/acme-shop/scripts/stop.sh", "    echo \"cannot stop\" >&2\n    exit 1\n", broken_stop);
    project.edit(
        "apps/acme-shop/scripts/validate.sh",
        "            echo \"sandbox: fixed\"\n",
        "            echo \"sandbox: fixed\"\n            touch \"$ROOT/../validating-$(basename \"$ROOT\")\"\n            while [ ! -f \"$ROOT/../go-$(basename \"$ROOT\")\" ]; do sleep 0.1; done\n",
    );
    project.edit("apps/acme-shop/app.py", "\"Anvil XL\"", "\"Anvil XXL\"");
    project.git(&["commit", "-qam", "The biggest anvil, validated slowly"]);
    let args = ["deploy", "acme", "dev", "--local", "--software-only", "--ignore-application-stop-failures"];
    let run = interrupt_while_validating(&project, &args, &env, &first, 1);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains(&format!("InProgress: 0/2 instances, local agent on {first}")), "{run:?}");
    assert!(
        !run.stdout.contains(&format!("InProgress: 1/2 instances, local agent on {second}")),
        "the second instance is not started: {run:?}"
    );
    assert!(run.stderr.contains("interrupted: the instance at work finishes its hook"), "said at once: {run:?}");
    assert!(run.stderr.contains("was stopped on Ctrl-C"), "{run:?}");
    assert!(run.stderr.contains("stopped on Ctrl-C after 1 of 2 instance(s)"), "{run:?}");
    assert!(run.stderr.contains(": Succeeded"), "the rollback ended well: {run:?}");
    for sandbox in &instances {
        let app = read(sandbox.join("opt/acme-shop/app.py"));
        assert!(app.contains("Anvil XL") && !app.contains("Anvil XXL"), "the last good revision everywhere");
    }

    // Ctrl-C while the last instance validates: said to stop and roll back, so it does (it used
    // to go on and report success).
    let run = interrupt_while_validating(&project, &args, &env, &second, 1);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stdout.contains("succeeded on the local fleet"), "{run:?}");
    assert!(run.stderr.contains("stopped on Ctrl-C after 2 of 2 instance(s)"), "{run:?}");
    assert!(run.stderr.contains(": Succeeded"), "the rollback ended well: {run:?}");

    let run = interrupt_while_validating(&project, &args, &env, &first, 2);
    assert_eq!(run.code, 130, "{run:?}");
    assert!(run.stderr.contains("left the local fleet in the middle of deployment"), "{run:?}");

    // Rollback: the revision released before the latest release ("Fix ValidateService"), from
    // the bucket, to every instance (which also repairs the fleet left in the middle above). Again:
    // nothing to do. `--to` the latest release: forward. Stop scripts of revisions before are
    // broken (see above), hence the flag.
    let rollback = ["rollback", "acme", "dev", "--local", "--ignore-application-stop-failures"];
    let run = project.run_with(&rollback, &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("already in s3://vend-acme-dev/revisions/"), "{run:?}");
    assert!(run.stdout.contains("Succeeded: 2/2 instances"), "{run:?}");
    let latest = run
        .stdout
        .split_once("rolling back from revision ")
        .map(|(_, rest)| rest[..16].to_string())
        .unwrap_or_else(|| panic!("{run:?}"));
    for sandbox in &instances {
        let app = read(sandbox.join("opt/acme-shop/app.py"));
        assert!(app.contains("\"Anvil\"") && !app.contains("Anvil X"), "the revision before everywhere");
    }
    let run = project.run_with(&rollback, &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("is the one running: nothing to roll back"), "{run:?}");
    assert!(!run.stdout.contains("local agent on"), "{run:?}");
    let forward = [&rollback[..], &["--to", &latest]].concat();
    for again in [false, true] {
        let run = project.run_with(&forward, &env);
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.contains("is the one running: nothing to roll back"), again, "{run:?}");
        for sandbox in &instances {
            let app = read(sandbox.join("opt/acme-shop/app.py"));
            assert!(app.contains("Anvil XL") && !app.contains("Anvil XXL"), "forward again: {sandbox:?}");
        }
    }

    // The automatic rollback downloads the running revision from the bucket: changed there, it
    // is refused, not deployed.
    let history: serde_json::Value =
        serde_json::from_str(&read(project.path("target/vending-local/fleet/acme-dev/successful.json"))).unwrap();
    let running = history.as_array().unwrap().last().unwrap()["key"].as_str().unwrap().to_string();
    put_object(&moto, "vend-acme-dev", &running, b"not the revision");
    project.edit("apps/acme-shop/scripts/validate.sh", fixed, broken_validate);
    project.git(&["commit", "-qam", "Break ValidateService again"]);
    let run = project
        .run_with(&["deploy", "acme", "dev", "--local", "--software-only", "--ignore-application-stop-failures"], &env);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("it was changed after the upload"), "{run:?}");
    assert!(!run.stdout.contains("automatic rollback d-"), "no rollback deployment: {run:?}");
}

fn put_object(moto: &Moto, bucket: &str, key: &str, body: &'static [u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let target = vending_aws::Target::Local { endpoint: moto.endpoint() };
        let config = vending_aws::sdk_config("eu-west-1", &target).await;
        let s3 = vending_aws::s3::client(&config, true);
        s3.put_object().bucket(bucket).key(key).body(body.to_vec().into()).send().await.unwrap();
    });
}

/// Runs `args`, waits until `instance`'s ValidateService script says it runs, presses Ctrl-C
/// `presses` times (SIGINT to the command alone: the script goes on), and only then lets the
/// script end.
fn interrupt_while_validating(
    project: &Project,
    args: &[&str],
    env: &[(&str, &str)],
    instance: &str,
    presses: u32,
) -> crate::Run {
    let marker = project.path(&format!("target/vending-local/fleet/acme-dev/validating-{instance}"));
    let go = project.path(&format!("target/vending-local/fleet/acme-dev/go-{instance}"));
    let _ = fs::remove_file(&marker);
    let _ = fs::remove_file(&go);
    let child = crate::Started::spawn(project.command(args, env));
    let started = std::time::Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "ValidateService never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for _ in 0..presses {
        let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    fs::write(&go, "").unwrap();
    child.finish()
}
