//! The local CodeDeploy agent: file copy and overwrite rules, permissions, hook order and
//! variables, timeouts and output left open, failing hooks, ApplicationStop from the last
//! installed revision, runas, and paths that try to leave the sandbox or the revision.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use vending_runners::agent::{deploy, Deployment, EventStatus, Report};

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
fn a_failing_script_s_tail_is_bounded_and_lossy() {
    let sandbox = tempfile::tempdir().unwrap();
    // 3 MB on one line, then bytes that are not UTF-8, then the last word.
    let revision = Revision::new("version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n")
        .script("a.sh", "head -c 3000000 /dev/zero | tr '\\0' x\necho\nprintf 'caf\\351\\n'\necho last\nexit 3");
    let report = run(sandbox.path(), &revision, "d-1");
    let tail = report.failure.unwrap().log_tail;
    assert_eq!(tail.len(), 3, "{:?}", tail.iter().map(|l| l.len()).collect::<Vec<_>>());
    assert!(
        tail[0].len() < 1000 && tail[0].ends_with("more characters)"),
        "{}",
        &tail[0][tail[0].len().saturating_sub(80)..]
    );
    assert_eq!(tail[1], "caf\u{fffd}");
    assert_eq!(tail[2], "last");
}

#[test]
fn a_script_over_its_timeout_is_killed_with_what_it_started() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nhooks:\n  ValidateService:\n    - location: slow.sh\n      timeout: 5\n",
    )
    .script("slow.sh", "sleep 30 &\necho $! > \"$VENDING_SANDBOX/child.pid\"\nsleep 30");
    let started = std::time::Instant::now();
    let report = run(sandbox.path(), &revision, "d-1");
    // 5 s leaves a loaded machine time to start the script and its child.
    assert!(started.elapsed() < std::time::Duration::from_secs(25), "killed at the timeout, not after 30 s");
    let failure = report.failure.unwrap();
    assert_eq!(failure.code, 3);
    assert_eq!(failure.message, "Script at specified location: slow.sh failed to complete in 5 seconds");
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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A user whose login shell refuses logins (`nobody` on most systems), from /etc/passwd.
fn nologin_user() -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find_map(|f| {
        (f.len() == 7 && (f[6].ends_with("/nologin") || f[6].ends_with("/false"))).then(|| f[0].to_string())
    })
}

fn runas_revision(user: &str) -> Revision {
    let revision = Revision::new(&format!(
        "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: who.sh\n      runas: {user}\n"
    ))
    .script("who.sh", "id -un > \"$VENDING_SANDBOX/who\"");
    // Readable for the other user: only the login shell may stop it.
    std::fs::set_permissions(revision.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    revision
}

fn runas(user: &str) -> (Report, Option<String>) {
    let sandbox = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sandbox.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let report = run(sandbox.path(), &runas_revision(user), "d-1");
    let who = std::fs::read_to_string(sandbox.path().join("who")).ok().map(|w| w.trim().to_string());
    (report, who)
}

#[test]
fn runas_is_su_with_the_user_s_own_shell_as_root_and_a_clear_error_otherwise() {
    // Only root can switch user, so only as root can the `nologin` failure show.
    if is_root() {
        let (report, who) = runas("root");
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(who.as_deref(), Some("root"));
        // The agent runs `su USER -c SCRIPT`: a user without a login shell cannot run hooks.
        let user = nologin_user().expect("a user with a nologin shell in /etc/passwd");
        let (report, who) = runas(&user);
        let failure = report.failure.unwrap_or_else(|| panic!("{user} has no login shell, yet the hook ran"));
        assert_eq!(failure.code, 4);
        assert_eq!(
            failure.message,
            format!("Script at specified location: who.sh run as user {user} failed with exit code 1")
        );
        assert_eq!(who, None);
    } else {
        let (report, who) = runas("root");
        let failure = report.failure.unwrap();
        assert_eq!(failure.code, 5);
        assert!(failure.message.contains("runas root, which needs the agent to run as root"), "{}", failure.message);
        assert_eq!(who, None, "nothing ran as someone else");
        // The current user needs no switch.
        let me = String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let (report, who) = runas(me.trim());
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(who.as_deref(), Some(me.trim()));
    }
}

#[test]
fn an_invalid_appspec_deploys_nothing() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = Revision::new("version: \"0.0\"\nos: linux\n");
    let error = deploy(sandbox.path(), revision.path(), &deployment("d-1"), &mut |_| {}).unwrap_err();
    assert!(format!("{error:#}").contains("the AppSpec file is invalid"), "{error:#}");
    assert_eq!(entries(sandbox.path()), Vec::<String>::new(), "the sandbox is left as it was");
    // Nor does a sandbox that did not exist appear.
    let missing = sandbox.path().join("new");
    deploy(&missing, revision.path(), &deployment("d-1"), &mut |_| {}).unwrap_err();
    assert!(!missing.exists());
}

/// The names in a folder, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_revision_that_installed_but_failed_later_runs_its_stop_script_next_time() {
    let sandbox = tempfile::tempdir().unwrap();
    let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/shop\nhooks:\n  ApplicationStop:\n    - location: stop.sh\n  ValidateService:\n    - location: validate.sh\n";
    let good = || {
        Revision::new(appspec).file("app/index.html", "v1").script("stop.sh", "exit 0").script("validate.sh", "exit 0")
    };
    assert!(run(sandbox.path(), &good(), "d-1").succeeded());
    let broken = Revision::new(appspec)
        .file("app/index.html", "v2")
        .script("stop.sh", "echo cannot stop >&2\nexit 3")
        .script("validate.sh", "exit 1");
    let report = run(sandbox.path(), &broken, "d-2");
    assert_eq!(report.failure.map(|f| f.event), Some("ValidateService"));

    // The rollback to v1: the agent recorded v2 as the last successful install, so v2's broken
    // stop script runs, and blocks it.
    let rollback = run(sandbox.path(), &good(), "d-3");
    let failure = rollback.failure.expect("v2's ApplicationStop fails the rollback");
    assert_eq!((failure.event, failure.log_tail.as_slice()), ("ApplicationStop", &["cannot stop".to_string()][..]));
    assert_eq!(std::fs::read_to_string(sandbox.path().join("opt/shop/index.html")).unwrap(), "v2");
    // The way out.
    let deployment = Deployment { ignore_application_stop_failures: true, ..deployment("d-4") };
    let report = deploy(sandbox.path(), good().path(), &deployment, &mut |_| {}).unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(std::fs::read_to_string(sandbox.path().join("opt/shop/index.html")).unwrap(), "v1");
}

#[test]
fn disallow_is_checked_for_every_file_before_anything_is_copied() {
    let sandbox = tempfile::tempdir().unwrap();
    let srv = |p: &str| sandbox.path().join("srv").join(p);
    std::fs::create_dir_all(srv("")).unwrap();
    std::fs::write(srv("b.txt"), "not ours").unwrap();
    let revision = || {
        Revision::new("version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /srv\n")
            .file("app/a.txt", "a")
            .file("app/b.txt", "b")
            .file("app/c.txt", "c")
    };
    let report = run(sandbox.path(), &revision(), "d-1");
    let failure = report.failure.unwrap();
    assert!(failure.message.contains("already exists at this location: /srv/b.txt"), "{}", failure.message);
    assert_eq!(entries(&srv("")), ["b.txt"], "nothing was copied");
    // Once the conflict is gone, the next deployment goes through.
    std::fs::remove_file(srv("b.txt")).unwrap();
    let report = run(sandbox.path(), &revision(), "d-2");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(entries(&srv("")), ["a.txt", "b.txt", "c.txt"]);
}

#[test]
fn permissions_apply_only_to_what_the_deployment_copied_and_an_object_may_be_a_file() {
    let sandbox = tempfile::tempdir().unwrap();
    let app = |p: &str| sandbox.path().join("opt/app").join(p);
    std::fs::create_dir_all(app("scripts")).unwrap();
    std::fs::write(app("scripts/old.sh"), "not this deployment's").unwrap();
    std::fs::set_permissions(app("scripts/old.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /opt/app\npermissions:\n  - object: /opt/app/scripts\n    mode: 750\n    type: [file]\n  - object: /opt/app/config.ini\n    mode: 600\n  - object: /opt/app/conf.d\n    mode: 700\n    type: [directory]\n",
    )
    .file("scripts/run.sh", "x")
    .file("config.ini", "secret")
    .file("conf.d/nested/x.conf", "x");
    let report = run(sandbox.path(), &revision, "d-1");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(mode(&app("scripts/run.sh")), 0o750);
    assert_eq!(mode(&app("scripts/old.sh")), 0o644, "a file the deployment did not copy keeps its mode");
    assert_eq!(mode(&app("config.ini")), 0o600, "a file object gets the permissions itself");
    assert_eq!(mode(&app("conf.d/nested")), 0o700, "a folder the deployment created");
    assert_ne!(mode(&app("conf.d")), 0o700, "not the object itself");
}

#[test]
fn a_background_process_holding_the_output_fails_the_script_at_its_timeout() {
    let sandbox = tempfile::tempdir().unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: detached.sh\n    - location: holding.sh\n      timeout: 5\n",
    )
    .script("detached.sh", "sleep 30 >/dev/null 2>&1 &\necho $! > \"$VENDING_SANDBOX/detached.pid\"")
    .script("holding.sh", "echo starting\nsleep 30 &\necho $! > \"$VENDING_SANDBOX/holding.pid\"");
    let started = std::time::Instant::now();
    let report = run(sandbox.path(), &revision, "d-1");
    let elapsed = started.elapsed();
    for pid in ["detached.pid", "holding.pid"] {
        let pid = std::fs::read_to_string(sandbox.path().join(pid)).unwrap();
        std::process::Command::new("kill").arg(pid.trim()).status().unwrap();
    }
    let failure = report.failure.expect("the agent waits for the output to close");
    assert_eq!((failure.code, failure.script.as_deref()), (6, Some("holding.sh")), "{failure:?}");
    assert!(
        failure.message.starts_with("Script at specified location: holding.sh failed to close STDOUT"),
        "{}",
        failure.message
    );
    assert_eq!(failure.log_tail, ["starting"]);
    assert!(
        elapsed >= std::time::Duration::from_secs(5) && elapsed < std::time::Duration::from_secs(25),
        "{elapsed:?}"
    );
}

/// A sandbox inside a folder of its own, so that what leaves it can be seen.
fn boxed() -> (tempfile::TempDir, std::path::PathBuf) {
    let outer = tempfile::tempdir().unwrap();
    let sandbox = outer.path().join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    (outer, sandbox)
}

#[test]
fn dot_dot_never_climbs_above_the_sandbox_which_is_the_root_directory() {
    let (outer, sandbox) = boxed();
    std::fs::write(outer.path().join("victim.txt"), "x").unwrap();
    std::fs::set_permissions(outer.path().join("victim.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let revision = Revision::new(
        "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/app/../../../etc\npermissions:\n  - object: /../..\n    mode: 700\n",
    )
    .file("app/passwd", "sandboxed");
    let report = run(&sandbox, &revision, "d-1");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("etc/passwd")).unwrap(),
        "sandboxed",
        "/opt/app/../../../etc is /etc"
    );
    assert_eq!(entries(outer.path()), ["sandbox", "victim.txt"], "nothing written beside the sandbox");
    assert_eq!(mode(&outer.path().join("victim.txt")), 0o644, "nothing changed beside the sandbox");
    // The next deployment removes what this one installed: inside the sandbox only.
    let report = run(&sandbox, &Revision::new("version: 0.0\nos: linux\n"), "d-2");
    assert!(report.succeeded(), "{report:?}");
    assert!(!sandbox.join("etc/passwd").exists());
    assert_eq!(entries(outer.path()), ["sandbox", "victim.txt"]);
}

#[test]
fn a_symbolic_link_out_of_the_sandbox_is_refused() {
    let (outer, sandbox) = boxed();
    let elsewhere = outer.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir(sandbox.join("opt")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, sandbox.join("opt/app")).unwrap();
    let revision = Revision::new("version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/app\n")
        .file("app/index.html", "x");
    let report = run(&sandbox, &revision, "d-1");
    let failure = report.failure.expect("refused");
    assert_eq!(failure.event, "Install");
    assert!(failure.message.contains("outside the sandbox"), "{}", failure.message);
    assert_eq!(entries(&elsewhere), Vec::<String>::new());
}

#[test]
fn a_hook_location_that_leaves_the_revision_is_refused_before_anything_runs() {
    let sandbox = tempfile::tempdir().unwrap();
    // Where `../outside.sh` would lead from the unpacked revision, a script that must not run.
    let work = sandbox.path().join(".codedeploy-agent/dg-1/d-1");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("outside.sh"), "#!/bin/sh\ntouch \"$VENDING_SANDBOX/ran\"\n").unwrap();
    std::fs::set_permissions(work.join("outside.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let revision = Revision::new("version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: ../outside.sh\n");
    let error = deploy(sandbox.path(), revision.path(), &deployment("d-1"), &mut |_| {}).unwrap_err();
    assert!(format!("{error:#}").contains("script location `../outside.sh` leaves the revision"), "{error:#}");
    assert!(!sandbox.path().join("ran").exists());
}

#[test]
fn a_folder_revision_s_link_out_of_the_folder_is_refused_and_one_inside_stays_a_link() {
    let sandbox = tempfile::tempdir().unwrap();
    let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/app\n";
    let revision = Revision::new(appspec).file("app/index.html", "x");
    std::os::unix::fs::symlink("/etc/passwd", revision.path().join("app/passwd")).unwrap();
    let error = deploy(sandbox.path(), revision.path(), &deployment("d-1"), &mut |_| {}).unwrap_err();
    assert!(
        format!("{error:#}").contains("app/passwd, a symbolic link to /etc/passwd, outside the folder"),
        "{error:#}"
    );
    assert_eq!(entries(sandbox.path()), Vec::<String>::new(), "nothing deployed");

    let revision = Revision::new(appspec).file("app/index.html", "x");
    std::os::unix::fs::symlink("index.html", revision.path().join("app/current")).unwrap();
    let report = run(sandbox.path(), &revision, "d-2");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(std::fs::read_link(sandbox.path().join("opt/app/current")).unwrap(), Path::new("index.html"));
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

#[test]
fn a_relative_link_in_a_revision_does_not_block_the_next_deployment() {
    for behavior in ["DISALLOW", "OVERWRITE"] {
        let sandbox = tempfile::tempdir().unwrap();
        let revision = || {
            let revision = Revision::new(&format!(
                "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/app\nfile_exists_behavior: {behavior}\n"
            ))
            .file("app/index.html", "x");
            std::os::unix::fs::symlink("index.html", revision.path().join("app/current")).unwrap();
            revision
        };
        assert!(run(sandbox.path(), &revision(), "d-1").succeeded());
        // The cleanup removes index.html before the link to it: the link goes all the same.
        let report = run(sandbox.path(), &revision(), "d-2");
        assert!(report.succeeded(), "{behavior}: {report:?}");
        assert_eq!(std::fs::read_link(sandbox.path().join("opt/app/current")).unwrap(), Path::new("index.html"));
    }
}

/// What is in a folder and below it, the agent's own folder left out.
fn tree(dir: &Path) -> Vec<String> {
    let mut paths: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".codedeploy-agent")
        .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    paths.sort();
    paths
}

/// A `permissions` entry the Install refuses, before anything is copied.
fn check_refused_permissions(permissions: &str, expected: &str) {
    let (outer, sandbox) = boxed();
    std::fs::create_dir_all(sandbox.join("opt/app")).unwrap();
    std::fs::create_dir(outer.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(outer.path().join("elsewhere"), sandbox.join("opt/app/data")).unwrap();
    let before = tree(&sandbox);
    let revision = Revision::new(&format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/app\npermissions:\n{permissions}"
    ))
    .file("app/config.ini", "x")
    .file("app/conf.d/site.conf", "x");
    let report = run(&sandbox, &revision, "d-1");
    let failure = report.failure.expect("refused");
    assert_eq!(failure.event, "Install");
    assert!(failure.message.contains(expected), "{}", failure.message);
    assert_eq!(tree(&sandbox), before, "nothing was copied");
}

#[test]
fn a_pattern_on_a_file_object_is_refused_before_anything_is_copied() {
    check_refused_permissions(
        "  - object: /opt/app/config.ini\n    pattern: \"*.ini\"\n    mode: 600\n",
        "/opt/app/config.ini is a file, so `pattern` and `except` cannot apply",
    );
}

#[test]
fn an_object_covered_by_two_entries_is_refused_before_anything_is_copied() {
    check_refused_permissions(
        "  - object: /opt/app\n    mode: 755\n  - object: /opt/app/conf.d\n    mode: 700\n",
        "/opt/app/conf.d/site.conf gets permissions from more than one entry",
    );
}

#[test]
fn an_object_through_a_link_out_of_the_sandbox_is_refused_before_anything_is_copied() {
    check_refused_permissions("  - object: /opt/app/data/x\n    mode: 700\n", "outside the sandbox");
}

#[test]
fn a_revision_that_cannot_be_recorded_keeps_the_record_of_the_last_successful_one() {
    let sandbox = tempfile::tempdir().unwrap();
    let appspec = "version: 0.0\nos: linux\nhooks:\n  ApplicationStop:\n    - location: stop.sh\n  BeforeInstall:\n    - location: before.sh\n";
    let revision = |version: &str, before: &str| {
        Revision::new(appspec)
            .script("stop.sh", &format!("echo {version} >> \"$VENDING_SANDBOX/trace\""))
            .script("before.sh", before)
    };
    assert!(run(sandbox.path(), &revision("v1", "exit 0"), "d-1").succeeded());
    // v2's BeforeInstall puts a socket into the unpacked revision, which cannot be copied into
    // the record.
    let _socket = std::os::unix::net::UnixListener::bind(sandbox.path().join("socket")).unwrap();
    let report = run(sandbox.path(), &revision("v2", "mv \"$VENDING_SANDBOX/socket\" ."), "d-2");
    let failure = report.failure.expect("the record cannot be written");
    assert_eq!(failure.event, "Install");
    assert!(failure.message.contains("cannot record the last successful revision"), "{}", failure.message);
    assert!(failure.message.contains("dg-1/last-successful.new"), "{}", failure.message);
    assert!(
        failure.message.contains("cannot copy ") && failure.message.contains("/archive/socket to "),
        "{}",
        failure.message
    );
    // v1 is still the last successful revision: its stop script runs next.
    assert!(run(sandbox.path(), &revision("v3", "exit 0"), "d-3").succeeded());
    assert_eq!(trace(sandbox.path()), ["v1", "v1"]);
}

#[test]
fn a_hook_location_that_leaves_the_revision_through_a_link_is_not_found_when_it_runs() {
    let sandbox = tempfile::tempdir().unwrap();
    std::fs::write(sandbox.path().join("outside.sh"), "#!/bin/sh\ntouch \"$VENDING_SANDBOX/ran\"\n").unwrap();
    std::fs::set_permissions(sandbox.path().join("outside.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The validator sees a plain path, and the revision has no link when it is unpacked: the
    // link out of the revision appears only when BeforeInstall makes it.
    let revision = Revision::new(
        "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: link.sh\n  AfterInstall:\n    - location: scripts/x.sh\n",
    )
    .script("link.sh", "mkdir -p scripts && ln -s \"$VENDING_SANDBOX/outside.sh\" scripts/x.sh");
    let report = run(sandbox.path(), &revision, "d-1");
    let failure = report.failure.expect("the script is not in the revision");
    assert_eq!((failure.event, failure.code), ("AfterInstall", 1), "{failure:?}");
    assert_eq!(failure.message, "Script does not exist at specified location: scripts/x.sh");
    assert!(!sandbox.path().join("ran").exists(), "nothing outside the revision ran");
}

#[test]
fn a_files_source_that_leaves_the_revision_is_not_found() {
    let sandbox = tempfile::tempdir().unwrap();
    // `../app` is not the revision's `app`: the agent joins it onto the revision folder.
    let revision = Revision::new("version: 0.0\nos: linux\nfiles:\n  - source: ../app\n    destination: /opt/app\n")
        .file("app/index.html", "x");
    let failure = run(sandbox.path(), &revision, "d-1").failure.expect("not found");
    assert_eq!(failure.event, "Install");
    assert_eq!(failure.message, "files: the source `../app` is not in the revision");
    assert!(!sandbox.path().join("opt").exists());
}
