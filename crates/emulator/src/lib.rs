//! The local AWS emulator: moto's server, pinned, installed on first use into a Python virtual
//! environment under `target/`, started on a free loopback port. Tests use `Moto::start`; the
//! `cargo xtask local up|down|status` command uses `up`/`down`/`status`, which keep the server's
//! address in the project's `target/vending-local/server.json`. The virtual environment belongs to
//! the tool's workspace (`install_root`), so every project it works on shares one install.
//! Only loopback addresses, ever.

pub mod faults;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

/// The emulator version every test and local run uses.
pub const MOTO_VERSION: &str = "5.2.5";
/// How long a new server may take to answer (Python imports moto first: slow on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// A server is started this many times at most: the port it is given is free when chosen, but
/// only bound once Python has imported moto, and another process may take it meanwhile.
const START_ATTEMPTS: u32 = 3;

fn venv_dir(root: &Path) -> PathBuf {
    root.join("target/moto-venv")
}

fn state_file(root: &Path) -> PathBuf {
    root.join("target/vending-local/server.json")
}

/// Fixes to the emulator's answers where they differ from AWS (see the file). Test and local-mode
/// scaffolding, labelled as such; each fix has a test in `crates/aws/tests/it/emulator.rs`.
pub const MOTO_FIXES: &str = include_str!("moto_fixes.py");

/// Installs `moto[server]==MOTO_VERSION` into `target/moto-venv` unless it is there already, and
/// returns the launcher script (moto's server with `MOTO_FIXES`). A lock file keeps parallel test binaries from installing
/// twice.
pub fn ensure_installed(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = venv_dir(root);
    let server = venv.join("bin/moto_server");
    let marker = venv.join(format!(".installed-moto-{MOTO_VERSION}"));
    if marker.is_file() && server.is_file() {
        return write_launcher(&venv);
    }
    fs::create_dir_all(root.join("target")).context("cannot create target/")?;
    let lock = fs::File::create(root.join("target/moto-venv.lock")).context("cannot create the install lock")?;
    lock.lock().context("cannot take the install lock")?;
    if marker.is_file() && server.is_file() {
        return write_launcher(&venv);
    }
    let sh = Shell::new()?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("installing moto[server]=={MOTO_VERSION} into {} (first use only)", venv.display());
    cmd!(sh, "{python} -m venv {venv}").quiet().run().context(
        "cannot create a Python virtual environment: install Python 3 with its venv module (Debian: apt-get install python3-venv)",
    )?;
    let pip = venv.join("bin/pip");
    let requirement = format!("moto[server]=={MOTO_VERSION}");
    cmd!(sh, "{pip} install --quiet --disable-pip-version-check {requirement}")
        .quiet()
        .run()
        .with_context(|| format!("cannot install {requirement} from PyPI"))?;
    fs::write(&marker, b"").context("cannot mark the install as done")?;
    write_launcher(&venv)
}

/// Writes the launcher next to the install when it changed (an atomic rename: parallel test
/// binaries may start servers at the same time).
fn write_launcher(venv: &Path) -> anyhow::Result<PathBuf> {
    let launcher = venv.join("vending_moto_server.py");
    if fs::read_to_string(&launcher).is_ok_and(|text| text == MOTO_FIXES) {
        return Ok(launcher);
    }
    vending::project::write_atomic(&launcher, MOTO_FIXES.as_bytes()).context("cannot write the emulator launcher")?;
    Ok(launcher)
}

/// A running emulator. Dropping it stops the server; its log is removed unless the thread is
/// panicking (a failed test keeps it, under `target/vending-local/emulators/`).
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Moto {
    /// Installs if needed, starts a server on a free loopback port and waits until it answers.
    pub fn start(root: &Path) -> anyhow::Result<Moto> {
        let server = ensure_installed(root)?;
        let logs = root.join("target/vending-local/emulators");
        fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log = logs.join(format!("moto-{port}.log"));
            let file = fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
            let child = spawn(&server, port, Stdio::from(file), false)?;
            let mut moto = Moto { child, port, log };
            match wait_ready(&mut moto.child, port, &moto.log) {
                Ok(()) => return Ok(moto),
                // Dropped: stopped, and its log removed.
                Err(_) if attempt < START_ATTEMPTS && moto.child.try_wait().is_ok_and(|s| s.is_some()) => {}
                Err(e) => {
                    let log = fs::read_to_string(&moto.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    bail!("{e}; the end of its log:\n{}", tail.join("\n"));
                }
            }
        }
    }

    pub fn endpoint(&self) -> String {
        endpoint(self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn spawn(launcher: &Path, port: u16, log: Stdio, detach: bool) -> anyhow::Result<Child> {
    let sh = Shell::new()?;
    let port_text = port.to_string();
    let python = launcher.with_file_name("bin/python");
    let mut command = Command::from(cmd!(sh, "{python} {launcher} -H 127.0.0.1 -p {port_text}"));
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    if detach {
        // A server for `local up` outlives this process and ignores the terminal's Ctrl-C.
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    command.spawn().with_context(|| format!("cannot start {}", launcher.display()))
}

/// A minimal HTTP/1.0 request on loopback; returns the status code.
fn http(port: u16, method: &str, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    status.context("the emulator sent no HTTP status")
}

/// Waits until the server `child` answers on `port`; an error when it exits first. The answer
/// counts only once `child` has said in its `log` that it listens there: until then another
/// emulator that took the port meanwhile could be the one answering.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> anyhow::Result<()> {
    let listening = format!("Running on http://127.0.0.1:{port}");
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if let Some(status) = child.try_wait()? {
            bail!("the emulator stopped before it answered on port {port} ({status})");
        }
        if fs::read_to_string(log).is_ok_and(|text| text.contains(&listening))
            && http(port, "GET", "/moto-api/").is_ok_and(|status| status == 200)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the emulator did not answer on port {port} within {} s", READY_TIMEOUT.as_secs())
}

/// Wipes the emulator's state, every account and region (tests that reuse one server).
pub fn reset(port: u16) -> anyhow::Result<()> {
    let status = http(port, "POST", "/moto-api/reset")?;
    if status != 200 {
        bail!("the emulator answered {status} to a reset");
    }
    Ok(())
}

/// What `local up` leaves behind for later commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerState {
    pub pid: u32,
    pub port: u16,
    pub endpoint: String,
}

/// Starts a server that outlives this process (`cargo xtask local up`), or returns the one running.
/// Two `local up` at once start one server: the second waits for the first (a file lock) and then
/// finds its server.
/// Starts the emulator in the background, or finds the one running: the state, and whether this
/// call started it.
pub fn up(install_root: &Path, root: &Path) -> anyhow::Result<(ServerState, bool)> {
    fs::create_dir_all(root.join("target/vending-local"))?;
    let lock_path = root.join("target/vending-local/up.lock");
    let lock = fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    flock_exclusive(&lock).with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if let Some(state) = status(root)? {
        return Ok((state, false));
    }
    let server = ensure_installed(install_root)?;
    let (child, port) = {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let log_path = root.join("target/vending-local/moto.log");
            let log = fs::File::create(&log_path).context("cannot create the emulator log")?;
            let mut child = spawn(&server, port, Stdio::from(log), true)?;
            match wait_ready(&mut child, port, &log_path) {
                Ok(()) => break (child, port),
                Err(e) => {
                    let exited = child.try_wait().is_ok_and(|s| s.is_some());
                    let _ = child.kill();
                    let _ = child.wait();
                    if !(exited && attempt < START_ATTEMPTS) {
                        bail!("{e:#}; see {}", log_path.display());
                    }
                    attempt += 1;
                }
            }
        }
    };
    let state = ServerState { pid: child.id(), port, endpoint: endpoint(port) };
    vending::project::write_atomic(&state_file(root), &serde_json::to_vec_pretty(&state)?)
        .context("cannot record the server")?;
    Ok((state, true))
}

fn flock_exclusive(file: &fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own; the kernel drops the lock when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What `server.json` records; a damaged file is reported and counts as no server (`up`
/// replaces it; `down` removes it).
fn recorded(root: &Path) -> Option<ServerState> {
    let text = fs::read_to_string(state_file(root)).ok()?;
    match serde_json::from_str(&text) {
        Ok(state) => Some(state),
        Err(_) => {
            eprintln!(
                "warning: {} is damaged (not what `local up` wrote); it is ignored. If an emulator still runs, stop it with `pkill -f vending_moto_server`",
                state_file(root).display()
            );
            None
        }
    }
}

/// Whether `pid` is an emulator this tool started (a pid reused by another process is not).
fn is_emulator(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("vending_moto_server"))
}

/// The server `local up` started, if it still answers.
pub fn status(root: &Path) -> anyhow::Result<Option<ServerState>> {
    let Some(state) = recorded(root) else { return Ok(None) };
    let alive = http(state.port, "GET", "/moto-api/").is_ok_and(|s| s == 200);
    Ok(alive.then_some(state))
}

/// Stops the server `local up` started. Returns whether there was one. The pid is signalled only
/// while it is still the emulator's: after a crash the number may belong to another process.
pub fn down(root: &Path) -> anyhow::Result<bool> {
    let file = state_file(root);
    if !file.exists() {
        return Ok(false);
    }
    let running = recorded(root).filter(|state| is_emulator(state.pid));
    if let Some(state) = &running {
        let sh = Shell::new()?;
        let pid = state.pid.to_string();
        cmd!(sh, "kill {pid}").quiet().ignore_status().ignore_stderr().run()?;
        // Stopped is when the process is gone, not when it was asked to go.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while is_emulator(state.pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_emulator(state.pid) {
            cmd!(sh, "kill -KILL {pid}").quiet().ignore_status().ignore_stderr().run()?;
        }
    }
    fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
    Ok(running.is_some())
}

/// The endpoint local mode talks to: `AWS_ENDPOINT_URL` when set (it must be a loopback
/// address), else the server of `local up`.
pub fn local_endpoint(root: &Path) -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        require_loopback(&url)?;
        return Ok(url);
    }
    match status(root)? {
        Some(state) => Ok(state.endpoint),
        None => {
            bail!("no local emulator: run `cargo xtask local up` first (or set AWS_ENDPOINT_URL to a loopback address)")
        }
    }
}

/// Local mode talks only to this machine.
pub fn require_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("local mode only talks to this machine, but AWS_ENDPOINT_URL is {url}: use a loopback address such as http://127.0.0.1:5000");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::require_loopback;

    #[test]
    fn only_loopback_endpoints() {
        for ok in ["http://127.0.0.1:5000", "http://localhost:1", "http://[::1]:8080/", "http://127.8.0.1"] {
            assert!(require_loopback(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1:5000", "https://ec2.eu-west-1.amazonaws.com", "http://192.168.1.2"] {
            assert!(require_loopback(bad).is_err(), "{bad}");
        }
    }
}

/// Credentials of a person in the emulator, for playing two roles locally (a requester and an
/// approver): an IAM user made there, with an access key. The emulator's STS answers
/// `GetCallerIdentity` with the user whose key signed the request, so two such users are two
/// people. Local only: made with boto3 from the emulator's own Python environment.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Makes the IAM user `user` (if it is not there) and a new access key for it.
pub fn create_identity(install_root: &Path, endpoint: &str, user: &str) -> anyhow::Result<Identity> {
    require_loopback(endpoint)?;
    let launcher = ensure_installed(install_root)?;
    let python = launcher.with_file_name("bin/python");
    const SCRIPT: &str = r#"
import json, sys
import boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
name = sys.argv[2]
try:
    arn = iam.create_user(UserName=name)["User"]["Arn"]
except iam.exceptions.EntityAlreadyExistsException:
    arn = iam.get_user(UserName=name)["User"]["Arn"]
key = iam.create_access_key(UserName=name)["AccessKey"]
print(json.dumps({"arn": arn, "id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;
    let sh = Shell::new()?;
    let out = cmd!(sh, "{python} -c {SCRIPT} {endpoint} {user}")
        .quiet()
        .read()
        .with_context(|| format!("cannot make the IAM user {user} in the emulator at {endpoint}"))?;
    let value: serde_json::Value = serde_json::from_str(&out).context("unexpected answer from the emulator's IAM")?;
    let text = |key: &str| value[key].as_str().map(str::to_string).context("incomplete answer from the emulator's IAM");
    Ok(Identity {
        user: user.to_string(),
        arn: text("arn")?,
        access_key_id: text("id")?,
        secret_access_key: text("secret")?,
    })
}
