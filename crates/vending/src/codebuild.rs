//! Following a CodeBuild build to its end, without IO: the build's state and its new log lines
//! come from a `BuildSource` (CodeBuild and CloudWatch Logs on AWS; scripted sequences in tests,
//! since the emulator runs no build and reports one `SUCCEEDED` at once) and time from a
//! `release::Clock`. The loop prints each phase as it starts and ends, streams the log lines, stops
//! the build on Ctrl-C or at the deadline, and ends with what happened: for a failure the failing
//! phase, CodeBuild's context message and the last lines of the log.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::release::{Clock, SourceError};

/// What a build on CodeBuild is made from: the commit and every setting that shapes its output.
/// The same inputs make the same software, so inputs that already made a revision start no new
/// build (`record_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildInputs {
    pub commit: String,
    /// The committed buildspec, as the build runs it.
    pub buildspec: String,
    /// The appspec bundled with the artifacts.
    pub appspec: String,
    pub image: String,
    pub compute_type: String,
    pub timeout_minutes: u32,
    /// `(name, type, value)`: secrets by their Parameter Store or Secrets Manager name.
    pub variables: Vec<(String, String, String)>,
}

impl BuildInputs {
    /// The inputs of a build of `commit` for `env`, with its committed buildspec and appspec.
    pub fn of(commit: &str, buildspec: &str, appspec: &str, env: &crate::config::model::Environment) -> BuildInputs {
        let build = &env.build;
        BuildInputs {
            commit: commit.to_string(),
            buildspec: buildspec.to_string(),
            appspec: appspec.to_string(),
            image: build.project.image.clone(),
            compute_type: build.project.compute_type.as_str().to_string(),
            timeout_minutes: build.timeout_minutes,
            variables: crate::plan::build_variables(build).into_iter().map(|v| (v.name, v.kind, v.value)).collect(),
        }
    }

    /// The SHA-256 of the inputs (hex): the name of their build's artifact and record.
    pub fn sha256(&self) -> String {
        let json = serde_json::to_vec(self).expect("plain data serializes");
        format!("{:x}", Sha256::digest(json))
    }
}

/// The bucket key of a source zip, by the SHA-256 of its bytes.
pub fn source_key(sha256: &str) -> String {
    format!("sources/{sha256}.zip")
}

/// The folder (under the bucket) a build of these inputs writes its artifact to.
pub fn artifact_path(inputs_sha256: &str) -> String {
    format!("builds/{inputs_sha256}")
}

/// The artifact's name in that folder.
pub const ARTIFACT_NAME: &str = "artifact.zip";

/// The bucket key of the record of what a build of these inputs made.
pub fn record_key(inputs_sha256: &str) -> String {
    format!("builds/{inputs_sha256}.json")
}

/// What a build on CodeBuild made, kept in the environment's bucket under `record_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltRevision {
    pub inputs_sha256: String,
    pub commit: String,
    /// CodeBuild's build id.
    pub build_id: String,
    /// The revision made of its artifact and the appspec.
    pub revision_sha256: String,
    /// How many files the revision holds.
    #[serde(default)]
    pub files: usize,
}

/// How many of the last log lines a failure shows.
pub const TAIL_LINES: usize = 20;

/// A build's state as the loop needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSnapshot {
    /// CodeBuild's `buildStatus`: `IN_PROGRESS`, `SUCCEEDED`, `FAILED`, `FAULT`, `TIMED_OUT`,
    /// `STOPPED`.
    pub status: String,
    /// The phases so far, in order.
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phase {
    /// CodeBuild's `phaseType`: `SUBMITTED`, `PROVISIONING`, `DOWNLOAD_SOURCE`, `INSTALL`, …
    pub name: String,
    /// `SUCCEEDED`, `FAILED`, …; none while it runs.
    pub status: Option<String>,
    /// CodeBuild's messages about it (why it failed).
    pub context: Vec<String>,
}

impl BuildSnapshot {
    /// CodeBuild does not change these again.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "SUCCEEDED" | "FAILED" | "FAULT" | "TIMED_OUT" | "STOPPED")
    }

    /// The first phase that ended other than `SUCCEEDED`.
    pub fn failed_phase(&self) -> Option<&Phase> {
        self.phases.iter().find(|p| p.status.as_deref().is_some_and(|s| s != "SUCCEEDED"))
    }
}

pub trait BuildSource {
    fn snapshot(&mut self) -> Result<BuildSnapshot, SourceError>;
    /// The log lines written since the last call.
    fn new_log_lines(&mut self) -> Result<Vec<String>, SourceError>;
    /// Asks CodeBuild to stop the build.
    fn stop(&mut self) -> Result<(), SourceError>;
}

/// How the build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutcome {
    Succeeded,
    /// It failed (`FAILED`, `FAULT`, `TIMED_OUT` by CodeBuild's own timeout, or stopped by someone
    /// else): the failing phase and its messages, and the log's last lines.
    Failed {
        status: String,
        phase: Option<Phase>,
        tail: Vec<String>,
    },
    /// The deadline passed: the build was asked to stop.
    TimedOut {
        tail: Vec<String>,
    },
    /// Ctrl-C: the build was asked to stop.
    Interrupted {
        tail: Vec<String>,
    },
}

/// The outcome of a build this loop stopped, given its log tail.
type StopOutcome = fn(Vec<String>) -> BuildOutcome;

/// Polls until the build ends, printing phase changes and log lines to `out`. At `deadline` or
/// on `interrupted` it asks CodeBuild to stop the build once and follows it to its end, for at
/// most one more `deadline`. The log lines CloudWatch Logs takes in after the end are read too.
pub fn follow_build(
    source: &mut dyn BuildSource,
    clock: &mut dyn Clock,
    deadline: Duration,
    interval: Duration,
    interrupted: &dyn Fn() -> bool,
    out: &mut dyn FnMut(&str),
) -> Result<BuildOutcome, SourceError> {
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut shown: Vec<Phase> = Vec::new();
    // When the stop was asked, and the outcome it makes of the log tail.
    let mut stopped: Option<(Duration, StopOutcome)> = None;
    let mut print_lines = |lines: Vec<String>, tail: &mut VecDeque<String>| {
        for line in lines {
            out(&line);
            tail.push_back(line);
            if tail.len() > TAIL_LINES {
                tail.pop_front();
            }
        }
    };
    loop {
        let snapshot = source.snapshot()?;
        let lines = source.new_log_lines()?;
        print_lines(lines, &mut tail);
        for (index, phase) in snapshot.phases.iter().enumerate() {
            let before = shown.get(index);
            if before.is_none() {
                print_lines(vec![format!("phase {}: started", phase.name)], &mut VecDeque::new());
            }
            if phase.status.is_some() && before.is_none_or(|b| b.status.is_none()) {
                let status = phase.status.as_deref().unwrap_or_default();
                let context = phase.context.first().map(|c| format!(": {c}")).unwrap_or_default();
                print_lines(vec![format!("phase {}: {status}{context}", phase.name)], &mut VecDeque::new());
            }
        }
        shown = snapshot.phases.clone();
        let now = clock.elapsed();
        // Ended, or asked to stop a deadline ago and still not stopped: what there is, is the end.
        let gave_up = stopped.is_some_and(|(asked, _)| now >= asked + deadline);
        if snapshot.is_final() || gave_up {
            // The lines CloudWatch Logs took in after the last poll (a few pages at most).
            for _ in 0..10 {
                let lines = source.new_log_lines()?;
                if lines.is_empty() {
                    break;
                }
                print_lines(lines, &mut tail);
            }
            let tail: Vec<String> = tail.into_iter().collect();
            return Ok(match (snapshot.status.as_str(), stopped) {
                ("SUCCEEDED", _) => BuildOutcome::Succeeded,
                (_, Some((_, outcome))) if snapshot.status == "STOPPED" || gave_up => outcome(tail),
                (status, _) => {
                    BuildOutcome::Failed { status: status.to_string(), phase: snapshot.failed_phase().cloned(), tail }
                }
            });
        }
        if stopped.is_none() {
            if interrupted() {
                print_lines(vec!["interrupted: stopping the build (StopBuild)".into()], &mut VecDeque::new());
                source.stop()?;
                stopped = Some((now, |tail| BuildOutcome::Interrupted { tail }));
            } else if now >= deadline {
                let line = format!("the build did not finish within {} s: stopping it (StopBuild)", deadline.as_secs());
                print_lines(vec![line], &mut VecDeque::new());
                source.stop()?;
                stopped = Some((now, |tail| BuildOutcome::TimedOut { tail }));
            }
        }
        clock.sleep(interval);
    }
}

/// What a failed build's report says: the status, the failing phase and CodeBuild's message, and
/// the last lines of its log.
pub fn explain(outcome: &BuildOutcome) -> Vec<String> {
    let (head, phase, tail) = match outcome {
        BuildOutcome::Succeeded => return Vec::new(),
        BuildOutcome::Failed { status, phase, tail } => (format!("the build ended {status}"), phase.as_ref(), tail),
        BuildOutcome::TimedOut { tail } => ("the build ran past its deadline and was stopped".to_string(), None, tail),
        BuildOutcome::Interrupted { tail } => ("the build was stopped on Ctrl-C".to_string(), None, tail),
    };
    let mut lines = vec![head];
    if let Some(phase) = phase {
        let status = phase.status.as_deref().unwrap_or("unfinished");
        lines.push(format!("phase {} {status}", phase.name));
        lines.extend(phase.context.iter().map(|c| format!("  {c}")));
    }
    if !tail.is_empty() {
        lines.push(format!("the last {} line(s) of its log:", tail.len()));
        lines.extend(tail.iter().map(|l| format!("  {l}")));
    }
    lines
}
