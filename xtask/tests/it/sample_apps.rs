//! The sample apps' local lifecycle, through the local CodeDeploy agent (`cargo xtask appspec
//! run`) with no emulator: ApplicationStop really stops the app it started (whatever path the
//! `python3` it ran resolves to, even after a new Install replaced its folder) and nothing else;
//! an app that cannot bind its port fails ValidateService at once, even while something else
//! answers on that port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};

use crate::Project;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

fn lifecycle(customer: &str, app: &str) {
    let project = Project::copy().with_apps();
    project.git_init("Initial");
    let run = project.run(&["build", customer, "dev", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.stdout.lines().skip_while(|l| !l.starts_with('{')).collect::<Vec<_>>().join("\n");
    let record: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    let revision = record["revision"].as_str().unwrap().to_string();
    let sandbox = tempfile::tempdir().unwrap();
    let sandbox = sandbox.path().canonicalize().unwrap();
    let root = sandbox.display().to_string();
    let deploy = || project.run(&["appspec", "run", &revision, "--root", &root]);
    let pid_file = sandbox.join(format!("run/{app}.pid"));
    let pid = || -> u32 { std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap() };
    // ApplicationStop as the agent runs it, from the installed revision.
    let stop = || {
        let stop = Command::new("bash")
            .arg(format!("opt/{app}/scripts/stop.sh"))
            .current_dir(&sandbox)
            .env("VENDING_SANDBOX", &sandbox)
            .output()
            .unwrap();
        assert!(stop.status.success(), "{stop:?}");
    };

    let run = deploy();
    assert_eq!(run.code, 0, "{run:?}");
    let first = pid();
    assert!(alive(first));
    // Its folder replaced under it, as a later Install may do: ApplicationStop stops it all the
    // same, and by the time it returns (not a second later by the app's own watchdog), so that the
    // next start finds the port free.
    let folder = sandbox.join(format!("opt/{app}"));
    let moved = sandbox.join(format!("opt/{app}.before"));
    std::fs::rename(&folder, &moved).unwrap();
    copy_tree(&moved, &folder);
    std::fs::remove_dir_all(&moved).unwrap();
    stop();
    assert!(!alive(first), "ApplicationStop returned while the app it started still runs");

    // A process that is not this sandbox's app, though its command line looks the same, named in
    // the pid file: ApplicationStop leaves it alone.
    let main = if app == "acme-shop" { "app.py" } else { "server.py" };
    let stranger = Killed(Command::new("python3").args(["-c", "import time; time.sleep(60)", main]).spawn().unwrap());
    std::fs::write(&pid_file, format!("{}\n", stranger.0.id())).unwrap();
    stop();
    assert!(alive(stranger.0.id()), "a process that is not the app was killed");
    drop(stranger);

    // Redeploys stop the running app and start the new one on the same port.
    let run = deploy();
    assert_eq!(run.code, 0, "{run:?}");
    let second = pid();
    let run = deploy();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!alive(second), "the previous app still runs after a redeploy");
    assert!(alive(pid()));

    // Something else listens on the sandbox's port and answers every path with 200: the app
    // cannot bind it, and ValidateService says so instead of taking the stranger's answer.
    stop();
    let port: u16 =
        std::fs::read_to_string(sandbox.join(".codedeploy-agent/local-port")).unwrap().trim().parse().unwrap();
    drop(TcpListener::bind(("127.0.0.1", port)).expect("the app's port is free once it stopped"));
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("health"), "ok").unwrap();
    let squatter = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(site.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _squatter = Killed(squatter);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the squatter never listened");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let run = deploy();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("ValidateService failed"), "{run:?}");
    // When the app it started exited, not after the 30 s wait; the app's log says why.
    assert!(run.stderr.contains(") exited; its log:"), "{run:?}");
    assert!(run.stderr.contains("Address already in use"), "{run:?}");
}

#[test]
fn acme_shop_stops_what_it_started_and_fails_validation_when_its_port_is_taken() {
    lifecycle("acme", "acme-shop");
}

#[test]
fn globex_site_stops_what_it_started_and_fails_validation_when_its_port_is_taken() {
    lifecycle("globex", "globex-site");
}
