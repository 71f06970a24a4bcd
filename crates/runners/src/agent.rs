//! A local CodeDeploy agent: runs a revision's AppSpec the way the agent on an instance does,
//! without AWS, inside a sandbox folder that stands for the instance's file system (`/opt/app`
//! is `<sandbox>/opt/app`).
//!
//! - The AppSpec is validated first (the same validator as `validate --spec`); an invalid one
//!   leaves the sandbox as it was.
//! - Events in the agent's order: BeforeBlockTraffic, AfterBlockTraffic and ApplicationStop run
//!   the scripts of the **last successful** revision (none on a first deployment); then
//!   BeforeInstall, Install (the `files` copy), AfterInstall, ApplicationStart, ValidateService,
//!   BeforeAllowTraffic, AfterAllowTraffic from the new one. As the agent does, a revision
//!   becomes the last successful one as soon as its Install succeeds, so one that failed a later
//!   event still runs its ApplicationStop next time (a broken stop script then blocks even the
//!   rollback, until `ignore_application_stop_failures`).
//! - Install works as the agent's installer: it removes what the last Install copied or created,
//!   plans every copy and every `permissions` entry first (a DISALLOW conflict or a bad entry
//!   fails before anything is copied), copies (symbolic links stay links), then applies
//!   `permissions` to what it copied or created only.
//! - The sandbox is the root directory: paths on the instance are expanded as the agent does
//!   (`..` never climbs above `/`), and a path that still leads out of the sandbox through a
//!   symbolic link is refused. A hook `location` or `files` source that leaves the revision by
//!   `..` is not found, as on an instance; a hook `location` that leaves it through a symbolic
//!   link (one a script made) is not found either, where the agent would follow the link. A
//!   folder revision's symbolic link that leads out of the folder is refused (a zip's is never
//!   extracted).
//! - Each script runs directly (it needs a shebang; made executable if it is not), with the
//!   agent's variables, its `timeout` enforced by killing its process group, and its output in
//!   a log of its own. Like the agent, it waits until the script's output is closed: a
//!   background process that keeps it open fails the script (code 6) at the timeout. The first
//!   failing script stops its event; later events are skipped.
//! - `runas` is `su USER -c SCRIPT`, with the user's own login shell, as the agent does: a user
//!   whose shell is `nologin` cannot run hooks, here as on an instance. Switching user needs
//!   root, so that failure shows (and is tested) only when the local agent runs as root; not
//!   running as root, a script with `runas` other than the current user fails with a clear error
//!   (code 5) instead, and nothing runs as someone else.
//! - Scripts also get `VENDING_SANDBOX`, the sandbox folder (not an AWS variable), so a script
//!   can run both on an instance and locally, and `VENDING_LOCAL_PORT`, the loopback port this
//!   sandbox's app listens on instead of the instance's port (chosen free at the sandbox's first
//!   deployment, kept in `.codedeploy-agent/local-port`, read by the local front door).
//! - BlockTraffic (after BeforeBlockTraffic) and AllowTraffic (after BeforeAllowTraffic) are
//!   CodeDeploy's, not the agent's: `deploy_with_traffic` hands them to the caller, which takes
//!   the instance out of its target groups and puts it back, as CodeDeploy does for a deployment
//!   group with traffic control.
//!
//! Where it cannot be the agent: the scripts run on this machine, with its users and outside any
//! sandbox (they are trusted code, as on an instance); `acls` and `context` are not applied; the
//! installed links and modes are this machine's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::Digest;
use vending::config::model::{Hook, Permission, PermissionKind};
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
    /// The agent's script error code: 1 missing, 2 not executable, 3 timed out, 4 failed,
    /// 5 unknown, 6 output left open.
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

const AGENT_DIR: &str = ".codedeploy-agent";

fn state_dir(sandbox: &Path, deployment: &Deployment) -> PathBuf {
    sandbox.join(AGENT_DIR).join(&deployment.group_id)
}

/// Unpacks a revision (zip or folder) into `dest` and returns the revision root (an archive with
/// one top-level folder holding the appspec is entered, as the agent does).
fn unpack(revision: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("cannot remove {}", dest.display()))?;
    }
    fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    if revision.is_dir() {
        copy_revision_folder(revision, dest)?;
    } else {
        let file = fs::File::open(revision).with_context(|| format!("cannot open {}", revision.display()))?;
        let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip", revision.display()))?;
        // The zip crate extracts a symbolic link only when it stays inside `dest`.
        zip.extract(dest).with_context(|| format!("cannot unpack {}", revision.display()))?;
    }
    if appspec_file(dest).is_none() {
        let entries: Vec<_> = fs::read_dir(dest)
            .with_context(|| format!("cannot read {}", dest.display()))?
            .filter_map(Result::ok)
            .collect();
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
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let source = SourceFile::new(PathBuf::from(path.file_name().unwrap_or_default()), text);
    vending::spec::appspec::read(&source).map_err(|diagnostics| {
        let lines: Vec<String> =
            diagnostics.iter().map(|d| format!("{}: {}", d.key.as_deref().unwrap_or("(file)"), d.message)).collect();
        anyhow::anyhow!("the AppSpec file is invalid:\n  {}", lines.join("\n  "))
    })
}

/// Copies a folder revision. A symbolic link is copied as a link, and refused when it leads out
/// of the folder: a revision carries its own files, not this machine's (`/etc/passwd`).
fn copy_revision_folder(from: &Path, to: &Path) -> anyhow::Result<()> {
    let real_from = fs::canonicalize(from).with_context(|| format!("cannot read {}", from.display()))?;
    for entry in walkdir::WalkDir::new(from).min_depth(1).sort_by_file_name() {
        let entry = entry?;
        let relative = entry.path().strip_prefix(from)?;
        let target = to.join(relative);
        if entry.path_is_symlink() && !fs::canonicalize(entry.path()).is_ok_and(|real| real.starts_with(&real_from)) {
            let link = fs::read_link(entry.path()).unwrap_or_default();
            bail!(
                "the revision folder {} holds {}, a symbolic link to {}, outside the folder: a revision carries only \
                 its own files; copy the file into the folder or remove the link",
                from.display(),
                relative.display(),
                link.display()
            );
        }
        copy_entry(&entry, &target)?;
    }
    Ok(())
}

/// Copies an unpacked revision (its links as links, its modes kept: ApplicationStop runs its
/// scripts from the copy next time).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in walkdir::WalkDir::new(from).min_depth(1).sort_by_file_name() {
        let entry = entry?;
        copy_entry(&entry, &to.join(entry.path().strip_prefix(from)?))?;
    }
    Ok(())
}

/// Copies one file, folder (without its content) or symbolic link (as a link) to `target`.
fn copy_entry(entry: &walkdir::DirEntry, target: &Path) -> anyhow::Result<()> {
    let source = entry.path();
    let copied = if entry.path_is_symlink() {
        fs::read_link(source).and_then(|link| std::os::unix::fs::symlink(link, target))
    } else if entry.file_type().is_dir() {
        fs::create_dir_all(target)
    } else {
        fs::copy(source, target).map(drop)
    };
    copied.with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))
}

/// Makes the revision at `root` the last successful one, kept at `last`: copied beside it first
/// and then swapped in, so a copy that fails keeps the record of the one before.
fn record_last_successful(root: &Path, last: &Path) -> anyhow::Result<()> {
    let next = last.with_extension("new");
    let old = last.with_extension("old");
    for leftover in [&next, &old] {
        if leftover.exists() {
            fs::remove_dir_all(leftover).with_context(|| format!("cannot remove {}", leftover.display()))?;
        }
    }
    copy_tree(root, &next).with_context(|| {
        format!("cannot record the last successful revision: cannot copy {} to {}", root.display(), next.display())
    })?;
    if last.exists() {
        fs::rename(last, &old).with_context(|| format!("cannot move {} to {}", last.display(), old.display()))?;
    }
    if let Err(error) = fs::rename(&next, last) {
        let _ = fs::rename(&old, last);
        return Err(error).with_context(|| format!("cannot move {} to {}", next.display(), last.display()));
    }
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

/// A path relative to `base` as the agent joins it (a leading `/` stays inside), `None` when its
/// `..` climb out of `base`.
fn in_revision(base: &Path, path: &str) -> Option<PathBuf> {
    if vending::spec::appspec::leaves_revision(path) {
        return None;
    }
    Some(base.join(lexical(Path::new(path))))
}

/// The path's parts with `.` and `..` resolved, never above its start: how the agent's
/// `File.expand_path` treats a path under `/`.
fn lexical(path: &Path) -> PathBuf {
    let mut parts = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
}

/// A path on the "instance", inside the sandbox, which is its root directory: `..` never climbs
/// above it. Refused when it leads out of the sandbox through a symbolic link.
fn on_instance(sandbox: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let full = sandbox.join(lexical(Path::new(path)));
    ensure_inside(sandbox, &full, path)?;
    Ok(full)
}

/// Refuses `path` (shown to the user as `shown`) when what exists of it resolves outside `root`
/// (canonical), that is through a symbolic link; a link that leads nowhere is refused too, since
/// writing through it would create its target wherever that is.
fn ensure_inside(root: &Path, path: &Path, shown: &str) -> anyhow::Result<()> {
    for existing in path.ancestors() {
        match fs::canonicalize(existing) {
            Ok(real) if real.starts_with(root) => return Ok(()),
            Ok(real) => bail!(
                "`{shown}` leads to {}, outside the sandbox {} (through a symbolic link): the local agent writes only \
                 inside the sandbox",
                real.display(),
                root.display()
            ),
            Err(_) if existing.symlink_metadata().is_ok() => bail!(
                "`{shown}` goes through {}, a symbolic link that leads nowhere: the local agent does not write through it",
                existing.display()
            ),
            Err(_) => {}
        }
    }
    Ok(())
}

/// CodeDeploy's own steps around the agent's events, for a deployment group with traffic control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Take the instance out of its target groups (before AfterBlockTraffic).
    Block,
    /// Put it back (before AfterAllowTraffic).
    Allow,
}

/// Where a sandbox's app listens: the loopback port the agent gave it, once it has one.
pub fn local_port(sandbox: &Path) -> Option<u16> {
    fs::read_to_string(sandbox.join(AGENT_DIR).join(PORT_FILE)).ok()?.trim().parse().ok()
}

const PORT_FILE: &str = "local-port";

/// Where sandboxes' ports come from: below Linux's ephemeral range (32768 and up by default),
/// which outgoing connections and port-0 listeners (the front door's) draw from, so that the
/// port stays free while the app restarts.
const PORTS: std::ops::Range<u16> = 20000..30000;

/// The sandbox's port, chosen free on loopback the first time (starting from a place its path
/// decides, so sandboxes spread out) and then kept.
fn assign_port(sandbox: &Path) -> anyhow::Result<u16> {
    if let Some(port) = local_port(sandbox) {
        return Ok(port);
    }
    // The ports other sandboxes of the same fleet keep (their apps may be stopped just now).
    let fleet = sandbox.parent().and_then(Path::parent);
    let kept: BTreeSet<u16> = fleet
        .and_then(|fleet| fs::read_dir(fleet).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|environment| fs::read_dir(environment.path()).ok())
        .flatten()
        .flatten()
        .take(10_000)
        .filter_map(|other| local_port(&other.path()))
        .collect();
    let digest = sha2::Sha256::digest(sandbox.as_os_str().as_encoded_bytes());
    let span = PORTS.end - PORTS.start;
    let start = u16::from_be_bytes([digest[0], digest[1]]) % span;
    let port = (0..span)
        .map(|i| PORTS.start + (start + i) % span)
        .find(|port| !kept.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .with_context(|| format!("no free loopback port in {}..{} for the sandbox's app", PORTS.start, PORTS.end))?;
    let path = sandbox.join(AGENT_DIR).join(PORT_FILE);
    vending::project::write_atomic(&path, format!("{port}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(port)
}

/// Deploys `revision` into `sandbox`, with no traffic control.
pub fn deploy(
    sandbox: &Path,
    revision: &Path,
    deployment: &Deployment,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    deploy_with_traffic(sandbox, revision, deployment, out, &mut |_| Ok(()))
}

/// Deploys `revision` into `sandbox`; `traffic` does CodeDeploy's BlockTraffic and AllowTraffic.
pub fn deploy_with_traffic(
    sandbox: &Path,
    revision: &Path,
    deployment: &Deployment,
    out: &mut dyn FnMut(&str),
    traffic: &mut dyn FnMut(Traffic) -> anyhow::Result<()>,
) -> anyhow::Result<Report> {
    // Bad input changes nothing: the folders made to read the revision go again if it is refused.
    let made: Vec<PathBuf> = [sandbox.to_path_buf(), sandbox.join(AGENT_DIR), state_dir(sandbox, deployment)]
        .into_iter()
        .filter(|dir| !dir.exists())
        .collect();
    fs::create_dir_all(state_dir(sandbox, deployment))
        .with_context(|| format!("cannot create the sandbox {}", sandbox.display()))?;
    let sandbox =
        fs::canonicalize(sandbox).with_context(|| format!("cannot read the sandbox {}", sandbox.display()))?;
    let state = state_dir(&sandbox, deployment);
    let work = state.join(&deployment.id);
    let last = state.join("last-successful");
    let read = || -> anyhow::Result<_> {
        let root = unpack(revision, &work.join("archive"))?;
        let appspec = read_appspec(&root)?;
        let previous = match appspec_file(&last) {
            Some(_) => Some(read_appspec(&last).context("the last successful revision's AppSpec")?),
            None => None,
        };
        Ok((root, appspec, previous))
    };
    let (root, appspec, previous) = match read() {
        Ok(read) => read,
        Err(error) => {
            let _ = fs::remove_dir_all(&work);
            for dir in made.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            return Err(error);
        }
    };
    let logs = work.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let port = assign_port(&sandbox)?;
    let scripts_runner = Scripts { sandbox: &sandbox, deployment, logs: &logs, port };

    let mut events = Vec::new();
    let mut failure = None;
    for (event, from_previous) in EVENTS {
        let step = match *event {
            "AfterBlockTraffic" => Some(("BlockTraffic", Traffic::Block)),
            "AfterAllowTraffic" => Some(("AllowTraffic", Traffic::Allow)),
            _ => None,
        };
        if let (Some((name, step)), None) = (step, &failure) {
            if let Err(e) = traffic(step) {
                out(&format!("[agent] {name} FAILED: {e:#}"));
                failure = Some(Failure {
                    event: name,
                    script: None,
                    code: 5,
                    message: format!("{e:#}"),
                    log_tail: Vec::new(),
                });
            }
        }
        if failure.is_some() {
            events.push(EventReport { event, status: EventStatus::Skipped, count: 0 });
            continue;
        }
        let result = if *event == "Install" {
            // The agent records the last successful revision as soon as Install succeeds: its
            // ApplicationStop is the one that runs next, even if a later event fails.
            install(&sandbox, &state, &root, &appspec, out)
                .and_then(|count| record_last_successful(&root, &last).map(|()| count))
                .map_err(|e| Failure { event, script: None, code: 5, message: format!("{e:#}"), log_tail: Vec::new() })
        } else {
            let (spec, base) = match (from_previous, &previous) {
                (true, Some(spec)) => (spec, last.as_path()),
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
    Ok(Report { events, failure })
}

/// What an Install does, planned before anything changes (as the agent's installer generates
/// its instructions first): folders to create and files to copy, in order.
#[derive(Default)]
struct InstallPlan {
    mkdirs: BTreeSet<PathBuf>,
    /// Target → source.
    copies: BTreeMap<PathBuf, PathBuf>,
    order: Vec<PathBuf>,
}

impl InstallPlan {
    fn mkdir(&mut self, dir: &Path) -> anyhow::Result<()> {
        if self.copies.contains_key(dir) {
            bail!("files: {} is both a file and a folder to create", dir.display());
        }
        if self.mkdirs.insert(dir.to_path_buf()) {
            self.order.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// The folders above `target` that do not exist yet, top first.
    fn ancestors(&mut self, sandbox: &Path, target: &Path) -> anyhow::Result<()> {
        let missing: Vec<PathBuf> = target
            .ancestors()
            .skip(1)
            .take_while(|dir| *dir != sandbox && !dir.exists())
            .map(Path::to_path_buf)
            .collect();
        for dir in missing.iter().rev() {
            self.mkdir(dir)?;
        }
        Ok(())
    }

    fn copy(&mut self, sandbox: &Path, behavior: &str, source: &Path, target: PathBuf) -> anyhow::Result<()> {
        ensure_inside(sandbox, &target, &shown(sandbox, &target))?;
        if let Some(other) = self.copies.get(&target) {
            bail!(
                "files: two sources, {} and {}, for the same destination {}",
                other.display(),
                source.display(),
                shown(sandbox, &target)
            );
        }
        if self.mkdirs.contains(&target) {
            bail!("files: {} is both a file and a folder to create", shown(sandbox, &target));
        }
        if target.symlink_metadata().is_ok() {
            match behavior {
                "OVERWRITE" => {}
                "RETAIN" => return Ok(()),
                _ => bail!(
                    "The deployment failed because a specified file already exists at this location: {} \
                     (file_exists_behavior is DISALLOW; nothing was copied)",
                    shown(sandbox, &target)
                ),
            }
        }
        self.copies.insert(target.clone(), source.to_path_buf());
        self.order.push(target);
        Ok(())
    }

    fn folder(&mut self, sandbox: &Path, behavior: &str, source: &Path, target: &Path) -> anyhow::Result<()> {
        ensure_inside(sandbox, target, &shown(sandbox, target))?;
        if !target.is_dir() {
            self.mkdir(target)?;
        }
        let cannot_read = || format!("cannot read {}", source.display());
        let mut entries: Vec<_> =
            fs::read_dir(source).with_context(cannot_read)?.collect::<Result<_, _>>().with_context(cannot_read)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let to = target.join(entry.file_name());
            if entry.file_type().with_context(|| format!("cannot read {}", entry.path().display()))?.is_dir() {
                self.folder(sandbox, behavior, &entry.path(), &to)?;
            } else {
                self.copy(sandbox, behavior, &entry.path(), to)?;
            }
        }
        Ok(())
    }
}

/// How the sandbox path reads on the instance.
fn shown(sandbox: &Path, path: &Path) -> String {
    path.strip_prefix(sandbox).map(|p| format!("/{}", p.display())).unwrap_or_else(|_| path.display().to_string())
}

/// Install: remove what the last Install copied or created, plan the `files` copy, copy, apply
/// `permissions` to what was copied or created. Returns the number of files installed.
fn install(
    sandbox: &Path,
    state: &Path,
    root: &Path,
    appspec: &AppSpec,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<usize> {
    // The record of what an Install copied or created, in order (the agent's cleanup file).
    let record = state.join("installed.txt");
    if let Ok(previous) = fs::read_to_string(&record) {
        for path in previous.lines().rev().filter(|l| !l.is_empty()) {
            remove_installed(sandbox, path);
        }
        fs::remove_file(&record).with_context(|| format!("cannot remove {}", record.display()))?;
    }

    let behavior = appspec.file_exists_behavior.as_str();
    let mut plan = InstallPlan::default();
    for (source, destination) in &appspec.files {
        let from = in_revision(root, source)
            .filter(|from| from.symlink_metadata().is_ok())
            .with_context(|| format!("files: the source `{source}` is not in the revision"))?;
        let to = on_instance(sandbox, destination)?;
        if from.is_dir() && !from.is_symlink() {
            plan.ancestors(sandbox, &to)?;
            plan.folder(sandbox, behavior, &from, &to)?;
        } else {
            let target = to.join(from.file_name().unwrap_or_default());
            plan.ancestors(sandbox, &target)?;
            plan.copy(sandbox, behavior, &from, target)?;
        }
    }

    let permissions = plan_permissions(sandbox, &plan, &appspec.permissions, out)?;

    let cannot_record = || format!("cannot write {}", record.display());
    let mut written = fs::File::create(&record).with_context(cannot_record)?;
    for path in &plan.order {
        // Recorded before it is made, as the agent does: a half-done Install is cleaned up next time.
        writeln!(written, "{}", shown(sandbox, path)).with_context(cannot_record)?;
        match plan.copies.get(path) {
            Some(source) if source.is_symlink() => {
                if path.symlink_metadata().is_ok() {
                    fs::remove_file(path).with_context(|| format!("cannot replace {}", shown(sandbox, path)))?;
                }
                fs::read_link(source).and_then(|link| std::os::unix::fs::symlink(link, path)).with_context(|| {
                    format!("cannot copy the link {} to {}", source.display(), shown(sandbox, path))
                })?;
            }
            Some(source) => {
                fs::copy(source, path)
                    .with_context(|| format!("cannot copy {} to {}", source.display(), shown(sandbox, path)))?;
            }
            None => fs::create_dir(path).with_context(|| format!("cannot create {}", shown(sandbox, path)))?,
        }
    }
    for change in &permissions {
        apply_permission(sandbox, change)?;
    }
    out(&format!("[agent] Install: {} file(s)", plan.copies.len()));
    Ok(plan.copies.len())
}

/// Removes what the last Install copied or created at `path`, if it is still there; skipped
/// when its folder leads out of the sandbox. The path itself is never followed: a link goes as a
/// link, even when what it pointed at was removed first.
fn remove_installed(sandbox: &Path, path: &str) {
    let full = sandbox.join(lexical(Path::new(path)));
    let Some(parent) = full.parent().filter(|_| full != sandbox) else { return };
    if ensure_inside(sandbox, parent, path).is_err() {
        return;
    }
    // A folder goes only when empty: what else is in it is not the deployment's.
    let _ = match full.symlink_metadata() {
        Ok(meta) if meta.is_dir() => fs::remove_dir(&full),
        Ok(_) => fs::remove_file(&full),
        Err(_) => Ok(()),
    };
}

/// A change of permissions the Install makes, planned with the copy.
struct PermissionChange {
    target: PathBuf,
    mode: Option<u32>,
    /// `owner:group`, `owner` or `:group` for chown.
    owner: Option<String>,
}

/// `permissions` as the agent plans them, before anything is copied (a bad entry fails the
/// Install with nothing changed): they apply to what this Install copies or creates only. An
/// object that is a copied file gets them itself; under an object that is a folder, the copied
/// files (type `file`) and created folders (type `directory`) below it, whose name matches
/// `pattern` and not `except` (any depth for the default `**`, else directly inside). Links keep
/// their own permissions: changing them would change what they point at.
fn plan_permissions(
    sandbox: &Path,
    plan: &InstallPlan,
    permissions: &[Permission],
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<PermissionChange>> {
    let mut changes = Vec::new();
    let mut seen = BTreeSet::new();
    for permission in permissions {
        for target in permission_targets(sandbox, plan, permission, out)? {
            if !seen.insert(target.clone()) {
                bail!(
                    "permissions: {} gets permissions from more than one entry (the agent refuses that)",
                    shown(sandbox, &target)
                );
            }
            if plan.copies.get(&target).is_some_and(|source| source.is_symlink()) {
                continue;
            }
            let mode = match &permission.mode {
                Some(mode) => Some(
                    u32::from_str_radix(mode, 8).with_context(|| format!("permissions: mode `{mode}` is not octal"))?,
                ),
                None => None,
            };
            let owner = match (&permission.owner, &permission.group) {
                (None, None) => None,
                _ if !is_root() => bail!("permissions: setting owner or group needs the agent to run as root"),
                (owner, group) => {
                    let spec =
                        format!("{}:{}", owner.as_deref().unwrap_or_default(), group.as_deref().unwrap_or_default());
                    Some(spec.trim_end_matches(':').to_string())
                }
            };
            changes.push(PermissionChange { target, mode, owner });
        }
    }
    Ok(changes)
}

/// What one `permissions` entry applies to, from the plan (see `plan_permissions`).
fn permission_targets(
    sandbox: &Path,
    plan: &InstallPlan,
    permission: &Permission,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<PathBuf>> {
    let object = on_instance(sandbox, &permission.object)?;
    let kinds: Vec<&str> = if permission.kinds.is_empty() {
        PermissionKind::ALL.iter().map(|k| k.as_str()).collect()
    } else {
        permission.kinds.iter().map(|k| k.as_str()).collect()
    };
    let pattern = permission.pattern.as_deref().unwrap_or("**");
    let mut targets = Vec::new();
    if plan.copies.contains_key(&object) {
        if !kinds.contains(&"file") {
            return Ok(targets);
        }
        if pattern != "**" || !permission.except.is_empty() {
            bail!(
                "permissions: {} is a file, so `pattern` and `except` cannot apply (the agent refuses them)",
                permission.object
            );
        }
        targets.push(object);
    } else if plan.mkdirs.contains(&object) || object.is_dir() {
        let glob =
            |text: &str| globset::GlobBuilder::new(text).literal_separator(true).build().map(|g| g.compile_matcher());
        let in_entry = || format!("permissions: {}", permission.object);
        let matcher = glob(pattern).with_context(in_entry)?;
        let except: Vec<globset::GlobMatcher> =
            permission.except.iter().map(|e| glob(e)).collect::<Result<_, _>>().with_context(in_entry)?;
        let matches = |path: &Path| {
            let Ok(relative) = path.strip_prefix(&object) else { return false };
            let name = relative.to_string_lossy();
            let single = relative.components().count() == 1;
            !name.is_empty()
                && (pattern == "**" || (single && matcher.is_match(&*name)))
                && !(single && except.iter().any(|e| e.is_match(&*name)))
        };
        if kinds.contains(&"file") {
            targets.extend(plan.copies.keys().filter(|p| matches(p)).cloned());
        }
        if kinds.contains(&"directory") {
            targets.extend(plan.mkdirs.iter().filter(|p| matches(p)).cloned());
        }
    } else {
        out(&format!(
            "[agent] permissions: {} is neither a file nor a folder of this deployment: nothing to change",
            permission.object
        ));
    }
    Ok(targets)
}

fn apply_permission(sandbox: &Path, change: &PermissionChange) -> anyhow::Result<()> {
    let target = &change.target;
    if let Some(mode) = change.mode {
        fs::set_permissions(target, fs::Permissions::from_mode(mode))
            .with_context(|| format!("permissions: cannot set the mode of {}", shown(sandbox, target)))?;
    }
    if let Some(owner) = &change.owner {
        let status = Command::new("chown")
            .arg(owner)
            .arg(target)
            .status()
            .with_context(|| format!("permissions: cannot run chown for {}", shown(sandbox, target)))?;
        if !status.success() {
            bail!("permissions: chown {owner} {} failed", shown(sandbox, target));
        }
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The name of the user this process runs as.
fn current_user() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: an all-zero passwd is valid (null pointers and zero ids); getpwuid_r fills it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwuid_r is the reentrant form: it writes only into `entry`, into `buffer`
        // up to the length given, and into `found` (null, or a pointer to `entry`); the strings
        // in `entry` point into `buffer`, which outlives their use below.
        let code = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
        match code {
            0 if found.is_null() || entry.pw_name.is_null() => return None,
            // SAFETY: a non-null pw_name is a NUL-terminated string inside `buffer`.
            0 => return Some(unsafe { std::ffi::CStr::from_ptr(entry.pw_name) }.to_string_lossy().into_owned()),
            // The entry does not fit: try again with more room, within reason.
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 2, 0),
            _ => return None,
        }
    }
}

struct Scripts<'a> {
    sandbox: &'a Path,
    deployment: &'a Deployment,
    logs: &'a Path,
    port: u16,
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
        let script = executable_script(base, hook).map_err(|(code, message)| failure(code, message, Vec::new()))?;
        let log_path = self.logs.join(format!("{event}-{index}.log"));
        let mut command =
            script_command(&script, hook).map_err(|(code, message)| failure(code, message, Vec::new()))?;
        // One pipe for stdout and stderr keeps the log in the order the script wrote it; the
        // agent reads until the script's output is closed, not only until it exits.
        let (reader, writer) =
            std::io::pipe().map_err(|e| failure(5, format!("cannot make a pipe: {e}"), Vec::new()))?;
        let writer_err = writer.try_clone().map_err(|e| failure(5, format!("cannot make a pipe: {e}"), Vec::new()))?;
        command
            .current_dir(base)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_err)
            .env("LIFECYCLE_EVENT", event)
            .env("DEPLOYMENT_ID", &self.deployment.id)
            .env("APPLICATION_NAME", &self.deployment.application)
            .env("DEPLOYMENT_GROUP_NAME", &self.deployment.group_name)
            .env("DEPLOYMENT_GROUP_ID", &self.deployment.group_id)
            .env("VENDING_SANDBOX", self.sandbox)
            .env("VENDING_LOCAL_PORT", self.port.to_string())
            .process_group(0);
        let log = fs::File::create(&log_path)
            .map_err(|e| failure(5, format!("cannot create its log {}: {e}", log_path.display()), Vec::new()))?;
        let mut child =
            command.spawn().map_err(|e| failure(5, format!("cannot start {}: {e}", hook.location), Vec::new()))?;
        // The command holds the pipe's writing ends until it is dropped: drop it, or the output
        // would never close.
        drop(command);
        let closed = copy_output(reader, log);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(u64::from(hook.timeout.max(1)));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(failure(5, e.to_string(), Vec::new())),
            }
        };
        let Some(status) = status else {
            kill_group(child.id(), libc::SIGTERM);
            std::thread::sleep(Duration::from_millis(200));
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            let _ = closed.recv_timeout(Duration::from_secs(1));
            return Err(failure(
                3,
                format!(
                    "Script at specified location: {} failed to complete in {} seconds",
                    hook.location, hook.timeout
                ),
                log_tail(&log_path),
            ));
        };
        // Within the same timeout, as the agent's ThreadJoiner; what holds the output keeps running.
        if closed.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            return Err(failure(
                6,
                format!(
                    "Script at specified location: {} failed to close STDOUT (a process it started in the background \
                     still holds its output; redirect that process's output, e.g. `>/dev/null 2>&1 &`)",
                    hook.location
                ),
                log_tail(&log_path),
            ));
        }
        if !status.success() {
            let user = hook.runas.as_deref().map(|u| format!(" run as user {u}")).unwrap_or_default();
            return Err(failure(
                4,
                format!(
                    "Script at specified location: {}{user} failed with exit code {}",
                    hook.location,
                    status.code().unwrap_or(-1)
                ),
                log_tail(&log_path),
            ));
        }
        Ok(())
    }
}

/// The hook's script in the revision, made executable as the agent does; else the agent's error
/// code and message (1: not there, which a location that leaves the revision by `..` or a link
/// is not; 2: not executable).
fn executable_script(base: &Path, hook: &Hook) -> Result<PathBuf, (u8, String)> {
    // A location that leaves the revision (by `..` or a link) is not there for the agent.
    let real_base = fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let script = in_revision(base, &hook.location)
        .filter(|s| s.is_file() && fs::canonicalize(s).is_ok_and(|real| real.starts_with(&real_base)));
    let Some(script) = script else {
        return Err((1, format!("Script does not exist at specified location: {}", hook.location)));
    };
    let mode = fs::metadata(&script).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o111 == 0 && fs::set_permissions(&script, fs::Permissions::from_mode(mode | 0o755)).is_err() {
        return Err((2, format!("Script at specified location: {} is not executable", hook.location)));
    }
    Ok(script)
}

/// How the agent starts a script: directly, or with `runas` through `su USER -c SCRIPT` (the
/// user's login shell, so a `nologin` user fails here as on an instance), which needs root.
fn script_command(script: &Path, hook: &Hook) -> Result<Command, (u8, String)> {
    let command = match hook.runas.as_deref() {
        None => Command::new(script),
        // The agent's own command: su runs the script with the user's login shell, so a
        // `nologin` user fails here as on an instance.
        Some(user) if is_root() => {
            let mut c = Command::new("su");
            c.arg(user).arg("-c").arg(shell_quote(&script.display().to_string()));
            c
        }
        Some(user) if current_user().as_deref() == Some(user) => Command::new(script),
        Some(user) => {
            return Err((
                5,
                format!(
                    "Script at specified location: {} has runas {user}, which needs the agent to run as root \
                     (as it does on an instance): run the local agent as root, or remove `runas: {user}` if the \
                     script need not switch user",
                    hook.location
                ),
            ));
        }
    };
    Ok(command)
}

/// Copies a script's output into its log on a thread of its own; the receiver hears when the
/// output is closed (by everything that held it).
fn copy_output(reader: std::io::PipeReader, mut log: fs::File) -> mpsc::Receiver<()> {
    let (closed, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let _ = log.write_all(&line);
            line.clear();
        }
        let _ = closed.send(());
    });
    receiver
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

/// The end of a script's log: its last 20 lines, read from at most the last 64 KiB, each cut to
/// 500 characters, bytes that are not UTF-8 replaced: a script that prints a 50 MB line or binary
/// output still gets a readable tail, and the report stays small.
fn log_tail(path: &Path) -> Vec<String> {
    const WINDOW: u64 = 64 * 1024;
    const LINES: usize = 20;
    const LINE_CHARS: usize = 500;
    let mut bytes = Vec::new();
    let _ = fs::File::open(path).and_then(|mut f| {
        use std::io::Seek;
        let length = f.metadata()?.len();
        f.seek(std::io::SeekFrom::Start(length.saturating_sub(WINDOW)))?;
        f.take(WINDOW).read_to_end(&mut bytes)
    });
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..]
        .iter()
        .map(|line| {
            let count = line.chars().count();
            if count <= LINE_CHARS {
                line.to_string()
            } else {
                let kept: String = line.chars().take(LINE_CHARS).collect();
                format!("{kept}… ({} more characters)", count - LINE_CHARS)
            }
        })
        .collect()
}
