//! A local CodeDeploy agent: runs a revision's AppSpec the way the agent on an instance does,
//! without AWS, inside a sandbox folder that stands for the instance's file system (`/opt/app`
//! is `<sandbox>/opt/app`).
//!
//! - The AppSpec is validated first (the same validator as `validate --spec`).
//! - Events in the agent's order: BeforeBlockTraffic, AfterBlockTraffic and ApplicationStop run
//!   the scripts of the **last successful** revision (none on a first deployment); then
//!   BeforeInstall, Install (the `files` copy), AfterInstall, ApplicationStart, ValidateService,
//!   BeforeAllowTraffic, AfterAllowTraffic from the new one.
//! - Install first removes the files the last successful deployment installed, then copies,
//!   honouring `file_exists_behavior` (DISALLOW, OVERWRITE, RETAIN); then `permissions`.
//! - Each script runs directly (it needs a shebang; made executable if it is not), with the
//!   agent's variables, its `timeout` enforced by killing its process group, `runas` through
//!   `su` when the agent runs as root (a clear error otherwise), and its output in a log of its
//!   own. The first failing script stops its event; later events are skipped.
//! - Scripts also get `VENDING_SANDBOX`, the sandbox folder (not an AWS variable), so a script
//!   can run both on an instance and locally.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vending::config::model::{Hook, Permission};
use vending::spec::appspec::AppSpec;
use vending::SourceFile;

/// Who is deploying: what the agent tells the scripts.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub application: String,
    pub group_name: String,
    pub group_id: String,
    /// CodeDeploy's `ignoreApplicationStopFailures`: a failing BeforeBlockTraffic,
    /// AfterBlockTraffic or ApplicationStop script (the last revision's) does not fail the
    /// deployment; the way out when a broken stop script would block every later deployment.
    pub ignore_application_stop_failures: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Succeeded,
    Failed,
    /// Failed, and the deployment went on (`ignore_application_stop_failures`).
    FailedIgnored,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReport {
    pub event: &'static str,
    pub status: EventStatus,
    /// Scripts run (or, for Install, files installed).
    pub count: usize,
}

/// Why an instance's deployment failed, as CodeDeploy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub event: &'static str,
    pub script: Option<String>,
    /// The agent's script error code: 1 missing, 2 not executable, 3 timed out, 4 failed.
    pub code: u8,
    pub message: String,
    /// The last lines of the script's log.
    pub log_tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub events: Vec<EventReport>,
    pub failure: Option<Failure>,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// The agent's events in order, and whether their scripts come from the last successful revision.
const EVENTS: &[(&str, bool)] = &[
    ("BeforeBlockTraffic", true),
    ("AfterBlockTraffic", true),
    ("ApplicationStop", true),
    ("BeforeInstall", false),
    ("Install", false),
    ("AfterInstall", false),
    ("ApplicationStart", false),
    ("ValidateService", false),
    ("BeforeAllowTraffic", false),
    ("AfterAllowTraffic", false),
];

fn state_dir(sandbox: &Path, deployment: &Deployment) -> PathBuf {
    sandbox.join(".codedeploy-agent").join(&deployment.group_id)
}

/// Unpacks a revision (zip or folder) into `dest` and returns the revision root (an archive with
/// one top-level folder holding the appspec is entered, as the agent does).
fn unpack(revision: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    fs::create_dir_all(dest)?;
    if revision.is_dir() {
        copy_dir(revision, dest)?;
    } else {
        let file = fs::File::open(revision).with_context(|| format!("cannot open {}", revision.display()))?;
        let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip", revision.display()))?;
        zip.extract(dest).with_context(|| format!("cannot unpack {}", revision.display()))?;
    }
    if appspec_file(dest).is_none() {
        let entries: Vec<_> = fs::read_dir(dest)?.filter_map(Result::ok).collect();
        if let [only] = entries.as_slice() {
            if only.path().is_dir() && appspec_file(&only.path()).is_some() {
                return Ok(only.path());
            }
        }
    }
    Ok(dest.to_path_buf())
}

fn appspec_file(root: &Path) -> Option<PathBuf> {
    ["appspec.yaml", "appspec.yml"].iter().map(|n| root.join(n)).find(|p| p.is_file())
}

fn read_appspec(root: &Path) -> anyhow::Result<AppSpec> {
    let path = appspec_file(root).context("the revision has no appspec.yml at its root")?;
    let source = SourceFile::new(PathBuf::from(path.file_name().unwrap_or_default()), fs::read_to_string(&path)?);
    vending::spec::appspec::read(&source).map_err(|diagnostics| {
        let lines: Vec<String> =
            diagnostics.iter().map(|d| format!("{}: {}", d.key.as_deref().unwrap_or("(file)"), d.message)).collect();
        anyhow::anyhow!("the AppSpec file is invalid:\n  {}", lines.join("\n  "))
    })
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from).min_depth(1).sort_by_file_name() {
        let entry = entry?;
        let target = to.join(entry.path().strip_prefix(from)?);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A path on the "instance", inside the sandbox.
fn on_instance(sandbox: &Path, path: &str) -> PathBuf {
    sandbox.join(path.trim_start_matches('/'))
}

/// Deploys `revision` into `sandbox`.
pub fn deploy(
    sandbox: &Path,
    revision: &Path,
    deployment: &Deployment,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    fs::create_dir_all(sandbox)?;
    let sandbox = fs::canonicalize(sandbox)?;
    let state = state_dir(&sandbox, deployment);
    let work = state.join(&deployment.id);
    let root = unpack(revision, &work.join("archive"))?;
    let appspec = read_appspec(&root)?;
    let logs = work.join("logs");
    fs::create_dir_all(&logs)?;
    let last = state.join("last-successful");
    let previous = match appspec_file(&last) {
        Some(_) => Some((read_appspec(&last)?, last.clone())),
        None => None,
    };
    let scripts_runner = Scripts { sandbox: &sandbox, deployment, logs: &logs };

    let mut events = Vec::new();
    let mut failure = None;
    for (event, from_previous) in EVENTS {
        if failure.is_some() {
            events.push(EventReport { event, status: EventStatus::Skipped, count: 0 });
            continue;
        }
        let result = if *event == "Install" {
            install(&sandbox, &state, &root, &appspec, out).map_err(|e| Failure {
                event,
                script: None,
                code: 5,
                message: format!("{e:#}"),
                log_tail: Vec::new(),
            })
        } else {
            let (spec, base) = match (from_previous, &previous) {
                (true, Some((spec, base))) => (spec, base.as_path()),
                (true, None) => {
                    events.push(EventReport { event, status: EventStatus::Skipped, count: 0 });
                    continue;
                }
                (false, _) => (&appspec, root.as_path()),
            };
            let scripts = spec.hooks.iter().find(|(e, _)| e == event).map(|(_, s)| s.as_slice()).unwrap_or_default();
            scripts_runner.run_event(event, scripts, base, out)
        };
        match result {
            Ok(count) => events.push(EventReport { event, status: EventStatus::Succeeded, count }),
            Err(f) if *from_previous && deployment.ignore_application_stop_failures => {
                out(&format!("[agent] {event} failed, ignored (ignoreApplicationStopFailures): {}", f.message));
                events.push(EventReport { event, status: EventStatus::FailedIgnored, count: 0 });
            }
            Err(f) => {
                out(&format!("[agent] {event} FAILED: {}", f.message));
                events.push(EventReport { event, status: EventStatus::Failed, count: 0 });
                failure = Some(f);
            }
        }
    }
    if failure.is_none() {
        if last.exists() {
            fs::remove_dir_all(&last)?;
        }
        copy_dir_all(&root, &last)?;
    }
    Ok(Report { events, failure })
}

fn copy_dir_all(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    copy_dir(from, to)?;
    // Keep the scripts' modes: ApplicationStop runs them from here next time.
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry?;
        if entry.file_type().is_file() {
            let mode = entry.metadata()?.permissions().mode();
            fs::set_permissions(to.join(entry.path().strip_prefix(from)?), fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// Install: remove what the last successful deployment installed, copy `files`, apply
/// `permissions`; record what was installed. Returns the number of files installed.
fn install(
    sandbox: &Path,
    state: &Path,
    root: &Path,
    appspec: &AppSpec,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<usize> {
    let record = state.join("installed.txt");
    if let Ok(previous) = fs::read_to_string(&record) {
        for path in previous.lines().filter(|l| !l.is_empty()) {
            let _ = fs::remove_file(sandbox.join(path));
        }
    }
    let mut installed = Vec::new();
    for (source, destination) in &appspec.files {
        let from = root.join(source.trim_start_matches('/'));
        let to = on_instance(sandbox, destination);
        let pairs: Vec<(PathBuf, PathBuf)> = if from.is_dir() {
            walkdir::WalkDir::new(&from)
                .min_depth(1)
                .sort_by_file_name()
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| {
                    let relative = e.path().strip_prefix(&from).unwrap_or(e.path()).to_path_buf();
                    (e.into_path(), to.join(relative))
                })
                .collect()
        } else if from.is_file() {
            vec![(from.clone(), to.join(from.file_name().unwrap_or_default()))]
        } else {
            bail!("files: the source `{source}` is not in the revision");
        };
        for (file, target) in pairs {
            if target.exists() {
                match appspec.file_exists_behavior.as_str() {
                    "OVERWRITE" => {}
                    "RETAIN" => continue,
                    _ => bail!(
                        "The deployment failed because a specified file already exists at this location: {} (file_exists_behavior is DISALLOW)",
                        target.strip_prefix(sandbox).map(|p| format!("/{}", p.display())).unwrap_or_default()
                    ),
                }
            }
            fs::create_dir_all(target.parent().context("no parent")?)?;
            fs::copy(&file, &target).with_context(|| format!("cannot copy to {}", target.display()))?;
            installed.push(target.strip_prefix(sandbox)?.display().to_string());
        }
    }
    for permission in &appspec.permissions {
        apply_permission(sandbox, permission)?;
    }
    out(&format!("[agent] Install: {} file(s)", installed.len()));
    fs::write(&record, installed.join("\n"))?;
    Ok(installed.len())
}

fn apply_permission(sandbox: &Path, permission: &Permission) -> anyhow::Result<()> {
    let object = on_instance(sandbox, &permission.object);
    let pattern = globset::Glob::new(permission.pattern.as_deref().unwrap_or("**"))?.compile_matcher();
    let except: Vec<globset::GlobMatcher> = permission
        .except
        .iter()
        .map(|e| globset::Glob::new(e).map(|g| g.compile_matcher()))
        .collect::<Result<_, _>>()?;
    let kinds: Vec<&str> = if permission.kinds.is_empty() {
        vec!["file", "directory"]
    } else {
        permission.kinds.iter().map(String::as_str).collect()
    };
    let mut targets = Vec::new();
    if kinds.contains(&"file") {
        // Files directly inside the object.
        for entry in
            fs::read_dir(&object).with_context(|| format!("permissions: {} does not exist", permission.object))?
        {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                targets.push(entry.path());
            }
        }
    }
    if kinds.contains(&"directory") {
        // Every folder below the object, not the object itself.
        for entry in walkdir::WalkDir::new(&object).min_depth(1).into_iter().filter_map(Result::ok) {
            if entry.file_type().is_dir() {
                targets.push(entry.into_path());
            }
        }
    }
    for target in targets {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !pattern.is_match(&name) || except.iter().any(|e| e.is_match(&name)) {
            continue;
        }
        if let Some(mode) = &permission.mode {
            let mode =
                u32::from_str_radix(mode, 8).with_context(|| format!("permissions: mode `{mode}` is not octal"))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
        }
        if permission.owner.is_some() || permission.group.is_some() {
            if !is_root() {
                bail!("permissions: setting owner or group needs the agent to run as root");
            }
            let spec = format!(
                "{}:{}",
                permission.owner.clone().unwrap_or_default(),
                permission.group.clone().unwrap_or_default()
            );
            let status = Command::new("chown").arg(spec.trim_end_matches(':')).arg(&target).status()?;
            if !status.success() {
                bail!("permissions: chown {spec} {} failed", target.display());
            }
        }
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

struct Scripts<'a> {
    sandbox: &'a Path,
    deployment: &'a Deployment,
    logs: &'a Path,
}

impl Scripts<'_> {
    /// Runs an event's scripts in order; the first failure stops the event.
    fn run_event(
        &self,
        event: &'static str,
        scripts: &[Hook],
        base: &Path,
        out: &mut dyn FnMut(&str),
    ) -> Result<usize, Failure> {
        for (i, hook) in scripts.iter().enumerate() {
            out(&format!("[agent] {event}: running {}", hook.location));
            self.run_script(event, i, hook, base)?;
        }
        Ok(scripts.len())
    }

    fn run_script(&self, event: &'static str, index: usize, hook: &Hook, base: &Path) -> Result<(), Failure> {
        let failure = |code: u8, message: String, log_tail: Vec<String>| Failure {
            event,
            script: Some(hook.location.clone()),
            code,
            message,
            log_tail,
        };
        let script = base.join(hook.location.trim_start_matches('/'));
        if !script.is_file() {
            return Err(failure(
                1,
                format!("Script does not exist at specified location: {}", hook.location),
                Vec::new(),
            ));
        }
        let mode = fs::metadata(&script).map(|m| m.permissions().mode()).unwrap_or(0);
        if mode & 0o111 == 0 && fs::set_permissions(&script, fs::Permissions::from_mode(mode | 0o755)).is_err() {
            return Err(failure(
                2,
                format!("Script at specified location: {} is not executable", hook.location),
                Vec::new(),
            ));
        }
        let log_path = self.logs.join(format!("{event}-{index}.log"));
        let log =
            fs::File::create(&log_path).map_err(|e| failure(5, format!("cannot create its log: {e}"), Vec::new()))?;
        let log_err = log.try_clone().map_err(|e| failure(5, e.to_string(), Vec::new()))?;
        let mut command = match hook.runas.as_deref() {
            Some(user) if is_root() => {
                let mut c = Command::new("su");
                c.arg(user).arg("-s").arg("/bin/sh").arg("-c").arg(shell_quote(&script.display().to_string()));
                c
            }
            Some(user) if std::env::var("USER").ok().as_deref() != Some(user) => {
                return Err(failure(
                    5,
                    format!(
                        "Script at specified location: {} has runas {user}, which needs the agent to run as root",
                        hook.location
                    ),
                    Vec::new(),
                ));
            }
            _ => Command::new(&script),
        };
        command
            .current_dir(base)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .env("LIFECYCLE_EVENT", event)
            .env("DEPLOYMENT_ID", &self.deployment.id)
            .env("APPLICATION_NAME", &self.deployment.application)
            .env("DEPLOYMENT_GROUP_NAME", &self.deployment.group_name)
            .env("DEPLOYMENT_GROUP_ID", &self.deployment.group_id)
            .env("VENDING_SANDBOX", self.sandbox)
            .process_group(0);
        let mut child =
            command.spawn().map_err(|e| failure(5, format!("cannot start {}: {e}", hook.location), Vec::new()))?;
        let started = Instant::now();
        let timeout = Duration::from_secs(u64::from(hook.timeout.max(1)));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() >= timeout => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(failure(5, e.to_string(), Vec::new())),
            }
        };
        let tail = || log_tail(&log_path);
        match status {
            None => {
                kill_group(child.id(), libc::SIGTERM);
                std::thread::sleep(Duration::from_millis(200));
                kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                Err(failure(
                    3,
                    format!(
                        "Script at specified location: {} failed to complete in {} seconds",
                        hook.location, hook.timeout
                    ),
                    tail(),
                ))
            }
            Some(status) if !status.success() => {
                let user = hook.runas.as_deref().map(|u| format!(" run as user {u}")).unwrap_or_default();
                Err(failure(
                    4,
                    format!(
                        "Script at specified location: {}{user} failed with exit code {}",
                        hook.location,
                        status.code().unwrap_or(-1)
                    ),
                    tail(),
                ))
            }
            // What the script started in the background keeps running (an application server).
            Some(_) => Ok(()),
        }
    }
}

fn kill_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is involved.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn log_tail(path: &Path) -> Vec<String> {
    let mut text = String::new();
    let _ = fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(20)..].to_vec()
}
