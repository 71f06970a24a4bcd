//! Following a CodeDeploy deployment to its end, without IO: the status comes from a
//! `StatusSource` (CodeDeploy against AWS; scripted sequences in tests, because the emulator's
//! deployments never leave `Created`) and time from a `Clock`. The loop prints progress when it
//! changes, stops the deployment at the deadline, and ends with what happened and why.

use std::time::Duration;

/// CodeDeploy's status of a deployment, in its words (`InProgress`); a word this tool does not
/// know yet is kept as `Other`, and is not final.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeploymentStatus {
    #[default]
    Created,
    Queued,
    InProgress,
    Baking,
    Ready,
    Succeeded,
    Failed,
    Stopped,
    Other(String),
}

impl DeploymentStatus {
    /// Succeeded, Failed and Stopped: CodeDeploy does not change them again.
    pub fn is_final(&self) -> bool {
        matches!(self, DeploymentStatus::Succeeded | DeploymentStatus::Failed | DeploymentStatus::Stopped)
    }

    /// CodeDeploy's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            DeploymentStatus::Created => "Created",
            DeploymentStatus::Queued => "Queued",
            DeploymentStatus::InProgress => "InProgress",
            DeploymentStatus::Baking => "Baking",
            DeploymentStatus::Ready => "Ready",
            DeploymentStatus::Succeeded => "Succeeded",
            DeploymentStatus::Failed => "Failed",
            DeploymentStatus::Stopped => "Stopped",
            DeploymentStatus::Other(word) => word,
        }
    }
}

/// CodeDeploy's word (as the SDK's `as_str` gives it).
impl From<&str> for DeploymentStatus {
    fn from(word: &str) -> DeploymentStatus {
        match word {
            "Created" => DeploymentStatus::Created,
            "Queued" => DeploymentStatus::Queued,
            "InProgress" => DeploymentStatus::InProgress,
            "Baking" => DeploymentStatus::Baking,
            "Ready" => DeploymentStatus::Ready,
            "Succeeded" => DeploymentStatus::Succeeded,
            "Failed" => DeploymentStatus::Failed,
            "Stopped" => DeploymentStatus::Stopped,
            other => DeploymentStatus::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment's state as the loop needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub status: DeploymentStatus,
    pub instances_done: u32,
    pub instances_total: u32,
    /// The lifecycle event running now, on the instance being deployed.
    pub current_event: Option<String>,
    /// CodeDeploy's error for the deployment (code and message), when it failed or stopped.
    pub error: Option<String>,
    /// What failed on instances: instance, event, script message, and the log tail AWS kept.
    pub instance_failures: Vec<InstanceFailure>,
    /// The rollback deployment CodeDeploy started, and its status, when there is one.
    pub rollback: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFailure {
    pub instance: String,
    pub event: String,
    pub message: String,
    pub log_tail: String,
}

/// An error of a status source (the AWS layer's errors convert into it).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

pub trait StatusSource {
    fn snapshot(&mut self) -> Result<Snapshot, SourceError>;
    /// Asks CodeDeploy to stop the deployment (with rollback when the group has it).
    fn stop(&mut self) -> Result<(), SourceError>;
}

pub trait Clock {
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, duration: Duration);
}

/// How the deployment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(Snapshot),
    /// The deadline passed: the deployment was asked to stop.
    TimedOut(Snapshot),
    /// Stopped by someone else.
    Stopped(Snapshot),
    /// The user interrupted (Ctrl-C): the deployment was asked to stop.
    Interrupted(Snapshot),
}

/// Why `follow` asked the deployment to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Deadline,
    Interrupted,
}

impl StopReason {
    fn outcome(self, snapshot: Snapshot) -> Outcome {
        match self {
            StopReason::Deadline => Outcome::TimedOut(snapshot),
            StopReason::Interrupted => Outcome::Interrupted(snapshot),
        }
    }
}

/// One line of progress.
pub fn progress(s: &Snapshot) -> String {
    let event = s.current_event.as_deref().map(|e| format!(", {e}")).unwrap_or_default();
    format!("{}: {}/{} instances{event}", s.status, s.instances_done, s.instances_total)
}

/// Polls until the deployment ends. When `deadline` passes, or `interrupted` says the user asked
/// (Ctrl-C), the deployment is stopped (CodeDeploy then rolls back what it changed, when the group
/// says so) and followed, up to one more `deadline`, until it says so. Progress lines go to `out`
/// when they change.
pub fn follow(
    source: &mut dyn StatusSource,
    clock: &mut dyn Clock,
    deadline: Duration,
    interval: Duration,
    interrupted: &dyn Fn() -> bool,
    out: &mut dyn FnMut(&str),
) -> Result<Outcome, SourceError> {
    let mut last = String::new();
    let mut stop: Option<(Duration, StopReason)> = None;
    loop {
        let snapshot = source.snapshot()?;
        let line = progress(&snapshot);
        if line != last {
            out(&line);
            last = line;
        }
        if snapshot.status.is_final() {
            return Ok(match (&snapshot.status, stop) {
                (DeploymentStatus::Succeeded, _) => Outcome::Succeeded,
                (DeploymentStatus::Failed, _) => Outcome::Failed(snapshot),
                (_, Some((_, reason))) => reason.outcome(snapshot),
                (_, None) => Outcome::Stopped(snapshot),
            });
        }
        let now = clock.elapsed();
        match stop {
            None if interrupted() => {
                out("interrupted: stopping the deployment (Ctrl-C again leaves it to finish on its own)");
                source.stop()?;
                stop = Some((now, StopReason::Interrupted));
            }
            None if now >= deadline => {
                out(&format!("the deployment did not finish within {} s: stopping it", deadline.as_secs()));
                source.stop()?;
                stop = Some((now, StopReason::Deadline));
            }
            Some((asked, reason)) if now >= asked + deadline => return Ok(reason.outcome(snapshot)),
            _ => {}
        }
        clock.sleep(interval);
    }
}

/// What a failed deployment's report says: which instance, event and script failed, the log
/// tail, and the rollback.
pub fn explain(snapshot: &Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(error) = &snapshot.error {
        lines.push(format!("CodeDeploy: {error}"));
    }
    for failure in &snapshot.instance_failures {
        lines.push(format!("{}: {} failed: {}", failure.instance, failure.event, failure.message));
        for line in failure.log_tail.lines() {
            lines.push(format!("    {line}"));
        }
    }
    match &snapshot.rollback {
        Some((id, status)) => lines.push(format!("automatic rollback {id}: {status}")),
        None => lines.push("no automatic rollback was started".to_string()),
    }
    lines
}

/// Where a revision lives in the environment's bucket: named by its SHA-256, so the same bundle
/// is uploaded once and "already deployed" is a comparison of keys.
pub fn revision_key(sha256: &str) -> String {
    format!("revisions/{sha256}.zip")
}

/// The SHA-256 a revision key names (`revision_key`'s inverse); `None` for another key.
pub fn revision_sha(key: &str) -> Option<&str> {
    let sha = key.strip_prefix("revisions/")?.strip_suffix(".zip")?;
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// A successful deployment, as `rollback` weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub id: String,
    /// Creation time, seconds since the epoch (only compared).
    pub created: i64,
    /// The revision's key in the environment's bucket.
    pub key: String,
    /// A rollback (by `rollback`, or CodeDeploy's automatic one), not a release.
    pub rollback: bool,
}

/// The longest description CodeDeploy's CreateDeployment takes (`DescriptionTooLongException`
/// beyond it; CodeDeploy quotas, "deployment description").
pub const DESCRIPTION_LIMIT: usize = 256;

/// The description of a release: the commit and the revision, which are kept whole; the
/// repository and the ref, which have no bound of their own, are cut in the middle to fit
/// `DESCRIPTION_LIMIT`.
pub fn release_description(
    customer: &str,
    env: &str,
    commit: &str,
    repository: &str,
    git_ref: &str,
    sha256: &str,
) -> String {
    let text = |repository: &str, git_ref: &str| {
        format!("{customer}/{env}: commit {commit} of {repository} ({git_ref}), revision sha256 {sha256}")
    };
    let room = DESCRIPTION_LIMIT.saturating_sub(text("", "").chars().count());
    let (repo_len, ref_len) = (repository.chars().count(), git_ref.chars().count());
    let ref_room = ref_len.min(room / 2).max(room.saturating_sub(repo_len));
    let repo_room = room.saturating_sub(ref_room.min(ref_len));
    cut_to(&text(&middle_cut(repository, repo_room), &middle_cut(git_ref, ref_room)), DESCRIPTION_LIMIT)
}

/// The description of a deployment made by `rollback` (how it is told from a release later):
/// who asked (an ARN may be long) is cut first, so the revision stays whole.
pub fn rollback_description(who: &str, sha256: &str, deployed_before_by: &str) -> String {
    let text =
        |who: &str| format!("{who}: rollback to revision sha256 {sha256} (deployed before by {deployed_before_by})");
    let room = DESCRIPTION_LIMIT.saturating_sub(text("").chars().count());
    cut_to(&text(&middle_cut(who, room)), DESCRIPTION_LIMIT)
}

/// `text` in at most `max` characters, its middle replaced by `…` when it is longer.
fn middle_cut(text: &str, max: usize) -> String {
    let len = text.chars().count();
    if len <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let keep = max - 1;
    let (head, tail) = (keep - keep / 2, keep / 2);
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(len - tail).collect();
    format!("{start}…{end}")
}

/// The last resort, for fixed parts that are longer than expected: whole characters only.
fn cut_to(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Whether a deployment's description is one `rollback_description` wrote.
pub fn is_rollback_description(description: &str) -> bool {
    description.contains(": rollback to revision sha256 ")
}

/// What `rollback` deploys: the revision released before the latest release. Rollbacks are not
/// releases, so a second `rollback` finds the same target, already running: it changes nothing.
pub fn rollback_target(succeeded: &[Deployed]) -> Option<&Deployed> {
    let mut releases: Vec<&Deployed> = succeeded.iter().filter(|d| !d.rollback).collect();
    releases.sort_by_key(|d| std::cmp::Reverse(d.created));
    let latest = releases.first()?;
    releases.iter().find(|d| d.key != latest.key).copied()
}

/// The newest successful deployment of the revision whose SHA-256 starts with `prefix` (`rollback
/// --to`). An error names the candidates when the prefix matches none or several revisions.
pub fn deployed_revision<'a>(succeeded: &'a [Deployed], prefix: &str) -> Result<&'a Deployed, String> {
    let prefix = prefix.to_ascii_lowercase();
    let mut matching: Vec<&Deployed> =
        succeeded.iter().filter(|d| revision_sha(&d.key).is_some_and(|sha| sha.starts_with(&prefix))).collect();
    matching.sort_by_key(|d| std::cmp::Reverse(d.created));
    let shas: std::collections::BTreeSet<&str> = matching.iter().filter_map(|d| revision_sha(&d.key)).collect();
    match shas.len() {
        1 => Ok(matching[0]),
        0 => {
            let known: std::collections::BTreeSet<&str> =
                succeeded.iter().filter_map(|d| revision_sha(&d.key)).map(|sha| &sha[..12]).collect();
            Err(format!(
                "no successful deployment deployed a revision starting with `{prefix}` (deployed: {})",
                if known.is_empty() { "none".to_string() } else { known.into_iter().collect::<Vec<_>>().join(", ") }
            ))
        }
        _ => Err(format!(
            "`{prefix}` starts {} revisions ({}): give more characters",
            shas.len(),
            shas.iter().map(|sha| &sha[..12]).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Wall-clock time for `follow` outside tests.
pub struct SystemClock {
    start: std::time::Instant,
}

impl SystemClock {
    pub fn start() -> SystemClock {
        SystemClock { start: std::time::Instant::now() }
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// An Auto Scaling instance refresh, as the release reads it before it starts. While one runs,
/// instances are being replaced; CodeDeploy's launch hook gives each new one the last successful
/// revision, and a deployment started meanwhile would race the replacements (instances it counts
/// are terminated; new ones get the old revision and need a follow-on deployment). So a release
/// waits for the refresh to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRefresh {
    pub id: String,
    /// Auto Scaling's status: `Pending`, `InProgress`, `Successful`, `Failed`, `Cancelled`, …
    pub status: String,
    pub percent_complete: Option<i32>,
    pub status_reason: String,
}

impl InstanceRefresh {
    /// Whether instances may still be replaced (Auto Scaling's non-final statuses).
    pub fn running(&self) -> bool {
        matches!(self.status.as_str(), "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress" | "Baking")
    }

    /// One progress line: `instance refresh ir-1: InProgress, 40% done`.
    pub fn progress(&self) -> String {
        let done = self.percent_complete.map(|p| format!(", {p}% done")).unwrap_or_default();
        let reason = if self.status_reason.is_empty() { String::new() } else { format!(" ({})", self.status_reason) };
        format!("instance refresh {}: {}{done}{reason}", self.id, self.status)
    }
}

/// How the wait for an instance refresh ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshWait {
    /// No refresh was running: nothing was waited for.
    NoneRunning,
    /// A refresh ran and ended (its last state: `Successful`, `Failed`, `Cancelled`, …).
    Ended(InstanceRefresh),
    /// It still ran at the deadline.
    StillRunning(InstanceRefresh),
}

/// Waits while the group's newest instance refresh runs, reading it from `latest` every `every`,
/// one progress line when it changes; gives up at `deadline`. A release calls it before it
/// creates a deployment.
pub fn wait_for_refresh(
    latest: &mut dyn FnMut() -> Result<Option<InstanceRefresh>, SourceError>,
    clock: &mut dyn Clock,
    deadline: Duration,
    every: Duration,
    out: &mut dyn FnMut(&str),
) -> Result<RefreshWait, SourceError> {
    let mut last = String::new();
    loop {
        let Some(refresh) = latest()? else { return Ok(RefreshWait::NoneRunning) };
        if !refresh.running() {
            if last.is_empty() {
                return Ok(RefreshWait::NoneRunning);
            }
            out(&refresh.progress());
            return Ok(RefreshWait::Ended(refresh));
        }
        if last.is_empty() {
            out("an instance refresh is replacing the group's instances; the release waits for it to end (new instances get the last successful revision from CodeDeploy's launch hook, and a deployment now would race the replacements)");
        }
        let line = refresh.progress();
        if line != last {
            out(&line);
            last = line;
        }
        if clock.elapsed() >= deadline {
            return Ok(RefreshWait::StillRunning(refresh));
        }
        clock.sleep(every);
    }
}

/// An environment's last release or rollback, as `deploy` and `rollback` record it in the state
/// bucket (`LastRelease::key`) for `status`: who, when, which revision, how it ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastRelease {
    /// The caller's ARN.
    pub by: String,
    /// When it ended, RFC 3339 UTC.
    pub at: String,
    /// `release` or `rollback`.
    pub kind: String,
    pub revision_sha256: String,
    /// The commit it was built from (empty for a rollback).
    pub commit: String,
    pub deployment_id: String,
    /// `succeeded` or `failed` (failed, timed out or stopped).
    pub result: String,
}

impl LastRelease {
    pub fn key(customer: &str, env: &str) -> String {
        format!("releases/{customer}/{env}/last.json")
    }
}
