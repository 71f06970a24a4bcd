//! `cargo xtask ami` with the real Packer against the local AWS emulator (moto's server), checked
//! through the real SDK.
//!
//! What the emulator cannot show: Packer 1.6.6 sets the AMI description after creating the image
//! (ModifyImageAttribute), which moto ignores, so the description stays empty there. The
//! description is proved on Packer's side instead: the exact variables handed to Packer are unit
//! tested (crates/vending tests/it/ami.rs), and here Packer validates and builds with a hostile
//! commit message (Packer renders the description as a Go template during the build, so a bad
//! value fails the build). Tags, which moto keeps, are checked on the AMI. Snapshot tags are not
//! checked here: moto keeps none on the snapshots Packer tags (measured), so `snapshot_tags` is
//! proved by the template snapshot test only.

use vending::ami::AmiRecord;
use vending_emulator::Moto;

use crate::{packer_available, repo_root, Project};

const HOSTILE: &str = "Fix \"quotes\" ${var.x} %{ if } {{ .Name }} \\ back\\slash\n\nBody: line two\n- item: yes\n";

fn emulator() -> Moto {
    Moto::start(&repo_root()).expect("start the local AWS emulator")
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

async fn clients(moto: &Moto) -> (aws_sdk_s3::Client, aws_sdk_ec2::Client) {
    let config = vending_aws::sdk_config("eu-west-1", &vending_aws::Target::Local { endpoint: moto.endpoint() }).await;
    (vending_aws::s3::client(&config, true), vending_aws::ec2::client(&config))
}

fn record_of(run: &crate::Run) -> AmiRecord {
    let json = run.stdout.lines().skip_while(|l| !l.starts_with('{')).collect::<Vec<_>>().join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("no JSON record ({e}): {run:?}"))
}

#[test]
fn builds_tags_and_records_the_ami_then_moves_the_record() {
    if !packer_available() {
        return;
    }
    let moto = emulator();
    let project = Project::copy();
    project.git_init(HOSTILE);
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];

    let run = project.run_with(&["ami", "acme", "prod", "--local", "--json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("acme/prod | packer validate: passed in "), "the first build validates: {run:?}");
    assert!(!run.stdout.contains("packer validate: passed before"), "with the hostile message: {run:?}");
    assert!(run.stdout.contains("acme/prod | packer build: finished in "), "{run:?}");
    assert!(run.stdout.contains("acme/prod | local mode: building against the emulator"), "{run:?}");
    assert!(
        run.stdout.contains("acme/prod | ==> amazon-ebs.local"),
        "Packer's output is streamed with a prefix: {run:?}"
    );
    let first = record_of(&run);
    let commit_id = project.git(&["rev-parse", "HEAD"]);
    assert_eq!(first.commit.id, commit_id);
    assert_eq!(first.commit.author, "Zoë O'Brien");
    assert_eq!(first.commit.message, HOSTILE.trim_end());
    assert!(!first.dirty);
    assert_eq!(first.build, "amazon-ebs.local");
    let first_ami = first.amis.get("eu-west-1").cloned().expect("an AMI in the build region");

    block_on(async {
        let (s3, ec2) = clients(&moto).await;
        let image = vending_aws::ec2::describe_image(&ec2, &first_ami).await.unwrap().expect("the AMI exists");
        assert!(image.name.starts_with("acme-prod-"), "{}", image.name);
        for (key, value) in [
            ("Customer", "acme"),
            ("Environment", "prod"),
            ("ManagedBy", "vending"),
            ("Commit", commit_id.as_str()),
            ("Dirty", "false"),
        ] {
            assert_eq!(
                image.tags.get(key).map(String::as_str),
                Some(value),
                "tag {key} of {first_ami}: {:?}",
                image.tags
            );
        }
        let stored: AmiRecord = vending_aws::s3::get_json(&s3, "vend-platform-state", "amis/acme/prod/current.json")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, first);
        let history: Option<AmiRecord> =
            vending_aws::s3::get_json(&s3, "vend-platform-state", &first.history_key()).await.unwrap();
        assert_eq!(history.as_ref(), Some(&first));
    });

    // A second build from a new commit makes a second AMI, and the record moves to it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    project.git(&["commit", "-q", "--allow-empty", "-m", "Second build"]);
    let run = project.run_with(&["ami", "acme", "prod", "--local", "--json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let second = record_of(&run);
    let second_ami = second.amis.get("eu-west-1").cloned().unwrap();
    assert_ne!(second_ami, first_ami);
    assert_ne!(second.packer_run_uuid, first.packer_run_uuid);
    assert_eq!(second.commit.message, "Second build");
    block_on(async {
        let (s3, ec2) = clients(&moto).await;
        let stored: AmiRecord = vending_aws::s3::get_json(&s3, "vend-platform-state", "amis/acme/prod/current.json")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, second);
        assert!(vending_aws::ec2::describe_image(&ec2, &first_ami).await.unwrap().is_some(), "the first AMI is kept");
    });

    // Commit text is data: the template and build passed `packer validate` before.
    assert!(run.stdout.contains("packer validate: passed before"), "{run:?}");

    // The same commit again: the validation is remembered, the build is not.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = project.run_with(&["ami", "acme", "prod", "--local", "--json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("packer validate: passed before"), "{run:?}");
    let third = record_of(&run);
    assert_ne!(third.amis, second.amis, "a build all the same");
    assert_ne!(third.packer_run_uuid, second.packer_run_uuid);

    // A changed template is validated again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    project.edit("customers/acme/customer.toml", "display_name = \"ACME Corporation\"", "display_name = \"ACME\"");
    project.run(&["generate"]);
    project.git(&["commit", "-q", "-am", "Shorter display name"]);
    let run = project.run_with(&["ami", "acme", "prod", "--local", "--json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("acme/prod | packer validate: passed in "), "a new template is validated: {run:?}");
    assert!(!run.stdout.contains("packer validate: passed before"), "a new template is validated: {run:?}");
    let third = record_of(&run);

    let run = project.run_with(&["ami", "acme", "prod", "--local", "--show"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("eu-west-1: {}", third.amis["eu-west-1"])), "{run:?}");
    assert!(run.stdout.contains("message: Shorter display name"), "{run:?}");
}

#[test]
fn refuses_what_it_should_not_build() {
    if !packer_available() {
        return;
    }
    let moto = emulator();
    let project = Project::copy();
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];

    // A dirty tree, unless allowed; then the AMI says so.
    project.write("notes.txt", "uncommitted\n");
    let run = project.run_with(&["ami", "globex", "dev", "--local"], &env);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("uncommitted changes: commit them first, or pass --allow-dirty"), "{run:?}");
    assert!(run.stderr.contains("\n  ?? notes.txt"), "the files are listed: {run:?}");
    let run = project.run_with(&["ami", "globex", "dev", "--local", "--allow-dirty", "--json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let record = record_of(&run);
    assert!(record.dirty);
    block_on(async {
        let (_, ec2) = clients(&moto).await;
        let image = vending_aws::ec2::describe_image(&ec2, &record.amis["eu-west-1"]).await.unwrap().unwrap();
        assert_eq!(image.tags.get("Dirty").map(String::as_str), Some("true"));
    });
    std::fs::remove_file(project.path("notes.txt")).unwrap();

    // A stale template.
    project.edit("customers/globex/dev.toml", "SITE_ENV = \"development\"", "SITE_ENV = \"dev\"");
    project.edit(
        "customers/globex/customer.toml",
        "display_name = \"Globex Corporation\"",
        "display_name = \"Globex\"",
    );
    project.git(&["commit", "-q", "-am", "config change without generate"]);
    let run = project.run_with(&["ami", "globex", "dev", "--local"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("packer/packer-globex-dev.pkr.hcl is stale or missing: run `cargo xtask generate`"),
        "{run:?}"
    );

    // A base AMI the account does not have.
    project.run(&["generate"]);
    project.edit(
        "customers/platform.toml",
        "local_base_name = \"al2023-ami-2023.12.20260930.0-kernel-6.1-x86_64\"",
        "local_base_name = \"no-such-image\"",
    );
    project.git(&["commit", "-q", "-am", "bad base"]);
    let run = project.run_with(&["ami", "globex", "dev", "--local"], &env);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "base AMI `no-such-image` not found in eu-west-1: check ami.local_base_name in customers/platform.toml"
        ),
        "{run:?}"
    );
}

#[test]
fn local_mode_needs_an_emulator_on_loopback() {
    let project = Project::copy();
    project.git_init("Initial");
    let run = project.run(&["ami", "globex", "dev", "--local"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no local emulator: run `cargo xtask local up` first"), "{run:?}");
    let run = project.run_with(&["ami", "globex", "dev", "--local"], &[("AWS_ENDPOINT_URL", "http://10.1.2.3:5000")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("local mode only talks to this machine"), "{run:?}");
}

/// A stand-in for `packer`, for what the emulator cannot produce on demand: a build that is
/// still running when Ctrl-C comes, and a build that fails. It counts the SIGINTs it receives.
fn fake_packer(dir: &std::path::Path, build: &str) -> String {
    let script = format!(
        "#!/bin/bash\ncase \"$1\" in\n  version) echo 'Packer v1.6.6' ;;\n  validate) exit 0 ;;\n  build) {build} ;;\nesac\n"
    );
    let path = dir.join("packer");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn ctrl_c_reaches_packer_once_and_the_command_fails() {
    use std::io::{BufRead, BufReader};
    let moto = emulator();
    let project = Project::copy();
    project.git_init("Initial");
    let bin = tempfile::tempdir().unwrap();
    let marker = bin.path().join("signals");
    let path = fake_packer(
        bin.path(),
        &format!(
            "trap 'echo sigint >> {m}; echo cleaning up; exit 1' INT; echo '==> fake build started'; for i in $(seq 1 600); do sleep 0.1; done",
            m = marker.display()
        ),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(project.dir.path())
        .args(["ami", "globex", "dev", "--local"])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("PATH", path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("fake build started") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("globex/dev | ==> fake build started"), "{seen}");
    // SAFETY: signalling a child process we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted: packer was asked to stop and clean up"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "sigint\n", "packer gets exactly one SIGINT");
}

/// The real Packer, slowed down by a proxy that holds every request for 200 ms, interrupted while
/// it builds: by Ctrl-C (SIGINT) and by SIGTERM (a cancelled CI job). Packer cleans up what it
/// made, and no AMI is recorded.
#[test]
fn an_interrupted_packer_build_cleans_up_and_records_nothing() {
    use std::io::{BufRead, BufReader};
    if !packer_available() {
        return;
    }
    let moto = emulator();
    let project = Project::copy();
    project.git_init("Initial");
    let proxy = crate::proxy::Proxy::start(moto.port, std::time::Duration::from_millis(200));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut child = project
            .command(&["ami", "globex", "dev", "--local"], &[("AWS_ENDPOINT_URL", &proxy.endpoint())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let launched = line.contains("Launching a source AWS instance");
            seen.push(line);
            if launched {
                break;
            }
        }
        assert!(seen.last().is_some_and(|l| l.contains("Launching")), "{seen:?}");
        // SAFETY: signalling a child process we spawned.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        seen.extend(lines.map_while(Result::ok));
        let output = child.wait_with_output().unwrap();
        let (stdout, stderr) = (seen.join("\n"), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(stderr.contains("no AMI was recorded"), "{stderr}");
        assert!(stdout.contains("Deleting temporary keypair"), "packer cleaned up: {stdout}");
        assert!(!stdout.contains("Builds finished. The artifacts"), "the build did not finish: {stdout}");
    }
    let run =
        project.run_with(&["ami", "globex", "dev", "--local", "--show"], &[("AWS_ENDPOINT_URL", &moto.endpoint())]);
    assert_ne!(run.code, 0, "no record: {run:?}");
    // Nothing of Packer's is left in the emulator.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let target = vending_aws::Target::Local { endpoint: moto.endpoint() };
        let config = vending_aws::sdk_config("eu-west-1", &target).await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let keys = ec2.describe_key_pairs().send().await.unwrap();
        assert!(keys.key_pairs().iter().all(|k| !k.key_name().unwrap_or_default().starts_with("packer_")), "{keys:?}");
        let groups = ec2.describe_security_groups().send().await.unwrap();
        assert!(groups.security_groups().iter().all(|g| !g.group_name().unwrap_or_default().starts_with("packer_")));
        let images = ec2.describe_images().owners("self").send().await.unwrap();
        assert!(images.images().is_empty(), "no AMI: {images:?}");
    });

    // kill -9: nothing can pass a signal on. Packer goes on alone until its output has nowhere to
    // go, leaving its builder instance, key pair and group (or a finished AMI nobody recorded). The
    // next build finds what it left and says so, with the commands that remove it.
    let mut child = project
        .command(&["ami", "globex", "dev", "--local"], &[("AWS_ENDPOINT_URL", &proxy.endpoint())])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if line.contains("Launching a source AWS instance") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lines);
    let template = project.path("packer/packer-globex-dev.pkr.hcl").display().to_string();
    let started = std::time::Instant::now();
    while crate::build::processes_with(&template).iter().any(|p| p.contains("packer")) {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "packer never ended on its own");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let run = project.run_with(&["ami", "globex", "dev", "--local"], &[("AWS_ENDPOINT_URL", &moto.endpoint())]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("an earlier build that was killed before it ended left these"), "{run:?}");
    assert!(run.stdout.contains("aws ec2 "), "{run:?}");
}

/// Two builds of one environment at once: one waits for the lock or is refused (exit 6), and a
/// build records only the AMI its own Packer made (both used to read one manifest).
#[test]
fn two_ami_builds_at_once_never_record_each_other_s_ami() {
    if !packer_available() {
        return;
    }
    let moto = emulator();
    let project = Project::copy();
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    let children: Vec<_> = (0..2)
        .map(|_| {
            project
                .command(&["ami", "globex", "dev", "--local"], &[("AWS_ENDPOINT_URL", &endpoint)])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<crate::Run> = children.into_iter().map(|c| crate::Run::from(c.wait_with_output().unwrap())).collect();
    assert!(runs.iter().any(|r| r.code == 0), "{runs:?}");
    for run in &runs {
        match run.code {
            0 => {
                let built =
                    run.stdout.split("amazon-ebs.local: AMI: ").nth(1).and_then(|r| r.split_whitespace().next());
                let recorded = run.stdout.split("  eu-west-1: ").nth(1).and_then(|r| r.split_whitespace().next());
                assert!(built.is_some() && built == recorded, "records its own AMI: {run:?}");
            }
            6 => assert!(run.stderr.contains("globex/dev is locked by"), "{run:?}"),
            _ => panic!("{run:?}"),
        }
    }
}

#[test]
fn a_base_ami_given_by_id_builds_locally_from_the_emulator_s_image() {
    if !packer_available() {
        return;
    }
    let moto = emulator();
    let project = Project::copy();
    project.edit(
        "customers/platform.toml",
        "base = { name = \"al2023-ami-2023.*-kernel-6.1-x86_64\", owners = [\"amazon\"] }",
        "base = \"ami-0123456789abcdef0\"",
    );
    project.run(&["generate"]);
    assert!(project.read("packer/packer-globex-dev.pkr.hcl").contains("source_ami = var.source_ami"));
    project.git_init("Base AMI by id");
    let endpoint = moto.endpoint();
    let run =
        project.run_with(&["ami", "globex", "dev", "--local", "--json"], &[("AWS_ENDPOINT_URL", endpoint.as_str())]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(record_of(&run).amis["eu-west-1"].starts_with("ami-"), "{run:?}");
}

#[test]
fn a_failed_build_shows_packer_s_last_lines() {
    let moto = emulator();
    let project = Project::copy();
    project.git_init("Initial");
    let bin = tempfile::tempdir().unwrap();
    let path = fake_packer(
        bin.path(),
        "echo '==> amazon-ebs.local: Error launching source instance: UnauthorizedOperation'; exit 1",
    );
    let endpoint = moto.endpoint();
    let run = project.run_with(
        &["ami", "globex", "dev", "--local"],
        &[("AWS_ENDPOINT_URL", endpoint.as_str()), ("PATH", path.as_str())],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("packer build failed (exit status: 1); its last lines:\n    ==> amazon-ebs.local: Error launching source instance: UnauthorizedOperation"), "{run:?}");
}

#[test]
fn missing_packer_says_how_to_install_it() {
    let project = Project::copy();
    project.git_init("Initial");
    let run = project.run_with(
        &["ami", "globex", "dev", "--local"],
        &[("PATH", "/nonexistent"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("`packer` is not installed or not on PATH; install it (Debian: `apt-get install packer`)"),
        "{run:?}"
    );
}

#[test]
fn local_up_status_down() {
    let project = Project::copy();
    let run = project.run(&["local", "status"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("not running: start it with `cargo xtask local up`"), "{run:?}");
    // Two `up` at once start one server, and both name it.
    let both: Vec<_> = (0..2)
        .map(|_| project.command(&["local", "up"], &[]).stdout(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    let runs: Vec<crate::Run> = both.into_iter().map(|c| crate::Run::from(c.wait_with_output().unwrap())).collect();
    assert!(runs.iter().all(|r| r.code == 0), "{runs:?}");
    let endpoint_of = |run: &crate::Run| {
        let at = run.stdout.find("http://127.0.0.1:").unwrap_or_else(|| panic!("{run:?}"));
        run.stdout[at..].split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(endpoint_of(&runs[0]), endpoint_of(&runs[1]), "one server: {runs:?}");
    let started: Vec<_> = runs.iter().filter(|r| r.stdout.contains("local AWS emulator (moto 5.2.5) at ")).collect();
    assert_eq!(started.len(), 1, "one started it: {runs:?}");
    let again = project.run(&["local", "up"]);
    assert!(again.stdout.contains("the local AWS emulator already runs at "), "{again:?}");
    assert_eq!(endpoint_of(&again), endpoint_of(&runs[0]), "a second `up` finds the running server");
    let run = project.run(&["local", "status"]);
    assert_eq!(run.code, 0, "{run:?}");
    let pid = run.stdout.rsplit("(pid ").next().unwrap().trim_end().trim_end_matches(')').to_string();
    // --local commands find it without AWS_ENDPOINT_URL.
    project.git_init("Initial");
    let run = project.run(&["ami", "globex", "dev", "--local", "--show"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("globex/dev has no AMI yet: build one with `cargo xtask ami globex dev --local`"),
        "{run:?}"
    );
    // The local fleet belongs to this emulator run: `down` takes it along, and waits for the end.
    project.write("target/vending-local/fleet/globex-dev/successful.json", "[]");
    let run = project.run(&["local", "down"]);
    assert!(run.stdout.contains("local AWS emulator stopped: what it held is gone"), "{run:?}");
    // (A zombie left for a parent that does not reap has no command line.)
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("vending_moto_server"),
        "the emulator ({pid}) is gone when `down` returns"
    );
    assert!(!project.path("target/vending-local/fleet").exists(), "the local fleet went with it");
    assert_eq!(project.run(&["local", "status"]).code, 1);

    // After a crash the recorded pid may be another process's: `down` leaves it alone.
    let mut bystander = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let record = format!("{{\"pid\": {}, \"port\": 9, \"endpoint\": \"http://127.0.0.1:9\"}}", bystander.id());
    project.write("target/vending-local/server.json", &record);
    let run = project.run(&["local", "down"]);
    assert!(run.stdout.contains("no local AWS emulator was running"), "{run:?}");
    assert!(bystander.try_wait().unwrap().is_none(), "the other process still runs");
    bystander.kill().unwrap();
    // A damaged record is reported, and blocks nothing.
    project.write("target/vending-local/server.json", "{ not json");
    let run = project.run(&["local", "status"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("server.json is damaged"), "{run:?}");
    let run = project.run(&["local", "up"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(project.run(&["local", "status"]).code, 0);
    assert!(project.run(&["local", "down"]).stdout.contains("local AWS emulator stopped"));
}
