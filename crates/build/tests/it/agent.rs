//! The local CodeDeploy agent: file copy and overwrite rules, permissions, hook order and
//! variables, timeouts, failing hooks, ApplicationStop from the previous revision, runas.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vending_build::agent::{deploy, Deployment, EventStatus, Report};

struct Revision {
    dir: tempfile::TempDir,
}

impl Revision {
    fn new(appspec: &str) -> Revision {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("appspec.yml"), appspec).unwrap();
        Revision { dir }
    }

    fn file(self, path: &str, text: &str) -> Revision {
        let target = self.dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, text).unwrap();
        self
    }

    /// A script; `body` runs under `#!/bin/sh`. Left without the execute bit on purpose
    /// sometimes: the agent makes scripts executable.
    fn script(self, path: &str, body: &str) -> Revision {
        self.file(path, &format!("#!/bin/sh\n{body}\n"))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn deployment(id: &str) -> Deployment {
    Deployment {
        id: id.into(),
        application: "shop".into(),
        group_name: "shop-dev".into(),
        group_id: "dg-1".into(),
        ignore_application_stop_failures: false,
    }
}

fn run(sandbox: &Path, revision: &Revision, id: &str) -> Report {
    deploy(sandbox, revision.path(), &deployment(id), &mut |_| {}).unwrap()
}

fn statuses(report: &Report) -> Vec<(&'static str, EventStatus)> {
    report.events.iter().map(|e| (e.event, e.status)).collect()
}

fn trace(sandbox: &Path) -> Vec<String> {
    std::fs::read_to_string(sandbox.join("trace")).unwrap_or_default().lines().map(str::to_string).collect()
}

const HOOKS: &str = r#"version: 0.0
os: linux
files:
  - source: app
    destination: /opt/shop
hooks:
  ApplicationStop:
    - location: hooks/log.sh
  BeforeInstall:
    - location: hooks/log.sh
  AfterInstall:
    - location: hooks/log.sh
  ApplicationStart:
    - location: hooks/log.sh
  ValidateService:
    - location: hooks/log.sh
  BeforeAllowTraffic:
    - location: hooks/log.sh
"#;

fn logging_revision(version: &str) -> Revision {
    Revision::new(HOOKS)
        .file("app/index.html", version)
        .script("hooks/log.sh", &format!("echo \"{version} $LIFECYCLE_EVENT $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME\" >> \"$VENDING_SANDBOX/trace\""))
}

#[test]
fn events_run_in_order_and_application_stop_comes_from_the_last_successful_revision() {
    let sandbox = tempfile::tempdir().unwrap();
    let first = run(sandbox.path(), &logging_revision("v1"), "d-1");
    assert!(first.succeeded(), "{first:?}");
    assert_eq!(
        trace(sandbox.path()),
        [
            "v1 BeforeInstall d-1 shop shop-dev",
            "v1 AfterInstall d-1 shop shop-dev",
            "v1 ApplicationStart d-1 shop shop-dev",
            "v1 ValidateService d-1 shop shop-dev",
            "v1 BeforeAllowTraffic d-1 shop shop-dev",
        ],
        "no ApplicationStop on a first deployment"
    );
    assert_eq!(std::fs::read_to_string(sandbox.path().join("opt/shop/index.html")).unwrap(), "v1");
    std::fs::remove_file(sandbox.path().join("trace")).unwrap();
    let second = run(sandbox.path(), &logging_revision("v2"), "d-2");
    assert!(second.succeeded(), "{second:?}");
    assert_eq!(trace(sandbox.path())[0], "v1 ApplicationStop d-2 shop shop-dev", "the old revision stops the old app");
    assert_eq!(trace(sandbox.path())[1], "v2 BeforeInstall d-2 shop shop-dev");
    assert_eq!(std::fs::read_to_string(sandbox.path().join("opt/shop/index.html")).unwrap(), "v2");
    assert_eq!(
        statuses(&second).iter().map(|(e, _)| *e).collect::<Vec<_>>(),
        [
            "BeforeBlockTraffic",
            "AfterBlockTraffic",
            "ApplicationStop",
            "BeforeInstall",
            "Install",
            "AfterInstall",
            "ApplicationStart",
            "ValidateService",
            "BeforeAllowTraffic",
            "AfterAllowTraffic"
        ]
    );
}

#[test]
fn a_failing_script_stops_its_event_and_skips_the_rest() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n    - location: b.sh\n  ApplicationStart:\n    - location: b.sh\n",
    )
    .script("a.sh", "echo first line\necho broken >&2\nexit 7")
    .script("b.sh", "echo b >> \"$VENDING_SANDBOX/trace\"");
    let report = run(sandbox.path(), &revision, "d-1");
    let failure = report.failure.clone().unwrap();
    assert_eq!((failure.event, failure.code), ("AfterInstall", 4));
    assert_eq!(failure.message, "Script at specified location: a.sh failed with exit code 7");
    assert_eq!(failure.log_tail, ["first line", "broken"]);
    assert!(trace(sandbox.path()).is_empty(), "b.sh ran neither in AfterInstall nor later");
    let statuses = statuses(&report);
    assert!(statuses.contains(&("AfterInstall", EventStatus::Failed)));
    assert!(statuses.contains(&("ApplicationStart", EventStatus::Skipped)));
    assert!(statuses.contains(&("ValidateService", EventStatus::Skipped)));
    // A missing script is code 1.
    let missing = Revision::new("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: nope.sh\n");
    let report = run(tempfile::tempdir().unwrap().path(), &missing, "d-2");
    assert_eq!(report.failure.map(|f| f.code), Some(1));
}

#[test]
fn a_script_over_its_timeout_is_killed_with_what_it_started() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nhooks:\n  ValidateService:\n    - location: slow.sh\n      timeout: 1\n",
    )
    .script("slow.sh", "sleep 30 &\necho $! > \"$VENDING_SANDBOX/child.pid\"\nsleep 30");
    let started = std::time::Instant::now();
    let report = run(sandbox.path(), &revision, "d-1");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "killed at the timeout, not after 30 s");
    let failure = report.failure.unwrap();
    assert_eq!(failure.code, 3);
    assert_eq!(failure.message, "Script at specified location: slow.sh failed to complete in 1 seconds");
    let pid: i32 = std::fs::read_to_string(sandbox.path().join("child.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid);
    assert!(!alive, "the script's own child was killed with its process group");
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn file_exists_behavior_and_the_previous_deployment_s_files() {
    let appspec = |behavior: &str| {
        format!("version: 0.0\nos: linux\nfiles:\n  - source: /app\n    destination: /srv\nfile_exists_behavior: {behavior}\n")
    };
    let sandbox = tempfile::tempdir().unwrap();
    let srv = |p: &str| sandbox.path().join("srv").join(p);
    std::fs::create_dir_all(srv("")).unwrap();
    std::fs::write(srv("foreign.txt"), "not ours").unwrap();

    // DISALLOW: a file that is not from the last deployment stops the install.
    let report = run(sandbox.path(), &Revision::new(&appspec("DISALLOW")).file("app/foreign.txt", "new"), "d-1");
    let failure = report.failure.unwrap();
    assert_eq!(failure.event, "Install");
    assert!(failure.message.contains("already exists at this location: /srv/foreign.txt"), "{}", failure.message);
    // RETAIN keeps it; OVERWRITE replaces it.
    let report = run(sandbox.path(), &Revision::new(&appspec("RETAIN")).file("app/foreign.txt", "new"), "d-2");
    assert!(report.succeeded());
    assert_eq!(std::fs::read_to_string(srv("foreign.txt")).unwrap(), "not ours");
    let report = run(
        sandbox.path(),
        &Revision::new(&appspec("OVERWRITE")).file("app/foreign.txt", "new").file("app/old.txt", "old"),
        "d-3",
    );
    assert!(report.succeeded());
    assert_eq!(std::fs::read_to_string(srv("foreign.txt")).unwrap(), "new");
    // The next deployment first removes what the last one installed: under DISALLOW its own
    // files are no conflict, and a file it no longer has is gone.
    let report = run(sandbox.path(), &Revision::new(&appspec("DISALLOW")).file("app/foreign.txt", "newer"), "d-4");
    assert!(report.succeeded(), "{report:?}");
    assert!(!srv("old.txt").exists());
    assert_eq!(std::fs::read_to_string(srv("foreign.txt")).unwrap(), "newer");
}

#[test]
fn permissions_apply_to_the_files_in_an_object() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /opt/app\npermissions:\n  - object: /opt/app/scripts\n    pattern: \"*.sh\"\n    except: [keep.sh]\n    mode: 750\n    type: [file]\n",
    )
    .file("scripts/run.sh", "x")
    .file("scripts/keep.sh", "x")
    .file("scripts/notes.txt", "x");
    let report = run(sandbox.path(), &revision, "d-1");
    assert!(report.succeeded(), "{report:?}");
    let mode = |p: &str| {
        std::fs::metadata(sandbox.path().join("opt/app/scripts").join(p)).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode("run.sh"), 0o750);
    assert_ne!(mode("keep.sh"), 0o750);
    assert_ne!(mode("notes.txt"), 0o750);
    assert!(sandbox.path().join("opt/app/appspec.yml").exists(), "source `/` copies the whole revision");
}

#[test]
fn runas_switches_user_as_root_and_is_a_clear_error_otherwise() {
    let sandbox = tempfile::tempdir().unwrap();
    // The sandbox must be writable for the other user.
    std::fs::set_permissions(sandbox.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: who.sh\n      runas: nobody\n",
    )
    .script("who.sh", "id -un > \"$VENDING_SANDBOX/who\"");
    std::fs::set_permissions(revision.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = run(sandbox.path(), &revision, "d-1");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(std::fs::read_to_string(sandbox.path().join("who")).unwrap().trim(), "nobody");
    } else {
        let failure = report.failure.unwrap();
        assert!(failure.message.contains("runas nobody, which needs the agent to run as root"), "{}", failure.message);
    }
}

#[test]
fn an_invalid_appspec_deploys_nothing() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = Revision::new("version: \"0.0\"\nos: linux\n");
    let error = deploy(sandbox.path(), revision.path(), &deployment("d-1"), &mut |_| {}).unwrap_err();
    assert!(format!("{error:#}").contains("the AppSpec file is invalid"), "{error:#}");
    let _ = PathBuf::new();
}

#[test]
fn a_broken_stop_script_blocks_the_next_deployment_unless_its_failures_are_ignored() {
    let sandbox = tempfile::tempdir().unwrap();
    let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/shop\nhooks:\n  ApplicationStop:\n    - location: stop.sh\n";
    let broken = Revision::new(appspec).file("app/index.html", "v1").script("stop.sh", "echo cannot stop >&2\nexit 3");
    assert!(run(sandbox.path(), &broken, "d-1").succeeded(), "no ApplicationStop on a first deployment");
    let fixed = Revision::new(appspec).file("app/index.html", "v2").script("stop.sh", "exit 0");

    // The last revision's stop script runs, fails, and the new revision is not installed.
    let blocked = run(sandbox.path(), &fixed, "d-2");
    let failure = blocked.failure.clone().expect("ApplicationStop fails");
    assert_eq!(failure.event, "ApplicationStop");
    assert_eq!(failure.log_tail, ["cannot stop"]);
    assert_eq!(std::fs::read_to_string(sandbox.path().join("opt/shop/index.html")).unwrap(), "v1");

    // With ignoreApplicationStopFailures the deployment goes on and says what it ignored.
    let mut lines = Vec::new();
    let deployment = Deployment { ignore_application_stop_failures: true, ..deployment("d-3") };
    let report = deploy(sandbox.path(), fixed.path(), &deployment, &mut |l| lines.push(l.to_string())).unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert!(statuses(&report).contains(&("ApplicationStop", EventStatus::FailedIgnored)), "{report:?}");
    assert!(lines.iter().any(|l| l.contains("ApplicationStop failed, ignored")), "{lines:?}");
    assert_eq!(std::fs::read_to_string(sandbox.path().join("opt/shop/index.html")).unwrap(), "v2");

    // The fixed revision is now the last successful one: its stop script runs next time.
    assert!(run(sandbox.path(), &fixed, "d-4").succeeded());
}
