//! The rules for lifecycle-event hooks, written once for both the appspec validator and the
//! config's `[deploy.hooks]`, each with one severity: the one the CodeDeploy agent's own
//! behaviour gives it.
//!
//! - Errors: what the agent refuses when it reads the AppSpec (a script without a `location`, a
//!   `timeout` that is not a positive whole number of seconds) and what can never work (an event
//!   that is not a lifecycle event, or one the agent performs itself, never runs a script; a
//!   `location` that climbs out of the revision is "Script does not exist"; a `runas` that is not
//!   a user name).
//! - Warnings: what the agent accepts and what may still fail when the scripts run: timeouts that
//!   add up past the 3600 s CodeDeploy gives one lifecycle event (a timeout is a limit, not a
//!   duration), and `runas` on Windows, which the agent ignores.

use crate::diag::Severity;

/// Lifecycle events that run scripts, in the order the agent runs them.
pub const HOOK_EVENTS: &[&str] = &[
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

/// Events the agent performs itself; scripts cannot be attached to them.
pub const RESERVED_EVENTS: &[&str] = &["BlockTraffic", "DownloadBundle", "Install", "AllowTraffic", "Start", "End"];

/// What CodeDeploy allows one lifecycle event, and a script's timeout when it gives none.
pub const EVENT_SECONDS: u32 = 3600;

/// What a rule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
}

fn error(message: String, help: Option<String>) -> Finding {
    Finding { severity: Severity::Error, message, help }
}

fn warning(message: String, help: Option<String>) -> Finding {
    Finding { severity: Severity::Warning, message, help }
}

/// An event name under `hooks`: one of `HOOK_EVENTS`.
pub fn event(event: &str) -> Option<Finding> {
    let events = || format!("use one of {}", HOOK_EVENTS.join(", "));
    if RESERVED_EVENTS.contains(&event) {
        return Some(error(
            format!("`{event}` is reserved for the CodeDeploy agent; it cannot run scripts"),
            Some(events()),
        ));
    }
    if HOOK_EVENTS.contains(&event) {
        return None;
    }
    let near =
        HOOK_EVENTS.iter().copied().map(|e| (strsim::jaro_winkler(event, e), e)).max_by(|a, b| a.0.total_cmp(&b.0));
    let help = match near {
        Some((score, e)) if score > 0.8 => format!("did you mean `{e}`?"),
        _ => events(),
    };
    Some(error(format!("unknown lifecycle event `{event}`"), Some(help)))
}

/// A script's `location` (`None` when absent), at `script` (e.g. `hooks.ApplicationStart[0]`).
pub fn location(script: &str, location: Option<&str>) -> Option<Finding> {
    match location {
        None | Some("") => Some(error(format!("`{script}` has no `location`"), None)),
        Some(location) if leaves_revision(location) => Some(error(
            format!("script location `{location}` leaves the revision: the agent looks for it inside the revision and fails with \"Script does not exist\""),
            Some("give the script's path from the revision root, e.g. scripts/start.sh".into()),
        )),
        Some(_) => None,
    }
}

/// A script's `timeout` in seconds, `None` when it is not a whole number.
pub fn timeout(seconds: Option<i64>) -> Result<u32, Finding> {
    match seconds.filter(|s| *s > 0) {
        // The agent takes any positive number; past u32 it is beyond any event's limit anyway.
        Some(seconds) => Ok(u32::try_from(seconds).unwrap_or(u32::MAX)),
        None => Err(error("`timeout` must be a positive whole number of seconds".into(), None)),
    }
}

/// The timeouts of one event's scripts, as written in the AppSpec file.
pub fn event_total(event: &str, timeouts: impl IntoIterator<Item = u32>) -> Option<Finding> {
    let total: u64 = timeouts.into_iter().map(u64::from).sum();
    (total > u64::from(EVENT_SECONDS)).then(|| {
        warning(
            format!("the timeouts written for `{event}` add up to {total} s; CodeDeploy fails an instance whose lifecycle event runs past {EVENT_SECONDS} s"),
            Some("lower their `timeout` values".into()),
        )
    })
}

/// A script's `runas` (`None` when it is not a string).
pub fn runas(user: Option<&str>, windows: bool) -> Option<Finding> {
    if windows {
        return Some(warning(
            "`runas` is ignored on Windows: the agent never reads it there, and the script runs as the agent's own account".into(),
            None,
        ));
    }
    user.is_none_or(|u| crate::names::unix_user(u).is_err())
        .then(|| error("`runas` must be a Linux user name".into(), None))
}

/// Whether a path relative to the revision root (a hook `location`, a `files` source) climbs out
/// of the revision with `..`. The agent joins it onto the revision folder, so a leading `/` stays
/// inside.
pub fn leaves_revision(path: &str) -> bool {
    let mut depth = 0usize;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    false
}
