//! Runs a buildspec's phases with CodeBuild's semantics (version 0.2):
//!
//! - one shell session for the whole build: a `cd` or an `export` carries over from command to
//!   command and phase to phase;
//! - phases in order `install`, `pre_build`, `build`, `post_build`; in a phase the commands run
//!   until the first failure, then `finally` runs;
//! - without `on-failure`, a failed `install` or `pre_build` ends the build, a failed `build`
//!   still runs `post_build` (with `CODEBUILD_BUILD_SUCCEEDING=0`), a failed `post_build` ends it;
//! - `on-failure: ABORT` ends the build, `CONTINUE` goes on to the next phase, `RETRY[-N]` runs
//!   the phase again up to N times (3 by default);
//! - `env.variables` as literal values; `CODEBUILD_*` variables set; secret values (from
//!   Parameter Store or Secrets Manager, fetched by the caller) masked in the output.
//!
//! Each command is handed to the shell's `eval` as one quoted word, with its stdin from
//! /dev/null, so a command can neither read the rest of the build nor, with a syntax error,
//! swallow the commands after it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};

use anyhow::{bail, Context};
use vending::config::model::{Build, Phase};

/// What the runner is told besides the buildspec.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The source folder: `CODEBUILD_SRC_DIR` and the working directory.
    pub src: PathBuf,
    /// Values of `parameter-store` and `secrets-manager` variables: set, and masked in the output.
    pub secrets: BTreeMap<String, String>,
    /// `CODEBUILD_RESOLVED_SOURCE_VERSION`: the commit being built.
    pub source_version: String,
    /// `CODEBUILD_BUILD_ID`.
    pub build_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    /// Not run: an earlier phase ended the build.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseReport {
    pub name: &'static str,
    pub status: Status,
    /// The first failing command and its exit status.
    pub failed: Option<(String, i32)>,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub phases: Vec<PhaseReport>,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.phases.iter().all(|p| p.status != Status::Failed)
    }
}

/// How a phase's failure moves the build on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    Default,
    Abort,
    Continue,
    Retry(u32),
}

fn on_failure(phase: &Phase) -> anyhow::Result<OnFailure> {
    Ok(match phase.on_failure.as_deref() {
        None => OnFailure::Default,
        Some("ABORT") => OnFailure::Abort,
        Some("CONTINUE") => OnFailure::Continue,
        Some("RETRY") => OnFailure::Retry(3),
        Some(other) => match other.strip_prefix("RETRY-").map(|n| n.parse::<u32>()) {
            Some(Ok(n)) => OnFailure::Retry(n),
            _ => bail!(
                "phase {}: `on-failure: {other}` (retry while the output matches a pattern) is not supported by the local runner; use RETRY or RETRY-<count>",
                phase.name
            ),
        },
    })
}

/// The shell the build runs in, kept for the whole build.
struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    marker: String,
}

impl Session {
    fn start(shell: &str, build: &Build, options: &RunOptions, out: &mut dyn FnMut(&str)) -> anyhow::Result<Session> {
        let program = match shell {
            "bash" => "bash",
            "sh" | "/bin/sh" => "sh",
            other => bail!("shell `{other}` is not available to the local runner: use bash or /bin/sh"),
        };
        let mut command = Command::new(program);
        command
            .current_dir(&options.src)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .envs(&build.variables)
            .envs(&options.secrets)
            .env("CODEBUILD_SRC_DIR", &options.src)
            .env("CODEBUILD_BUILD_ID", &options.build_id)
            .env("CODEBUILD_RESOLVED_SOURCE_VERSION", &options.source_version)
            .env("CODEBUILD_SOURCE_VERSION", &options.source_version)
            .env("CODEBUILD_INITIATOR", "vending-local")
            .env("CODEBUILD_BUILD_SUCCEEDING", "1");
        // The build runs in its own process group, so that whatever it starts goes with it.
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        let mut child = command.spawn().with_context(|| format!("cannot start {program}"))?;
        let stdin = child.stdin.take().context("no stdin")?;
        // One stream (the shell sends its stderr to stdout), so output and status stay in order.
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().context("no stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                if sender.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                    break;
                }
            }
        });
        let marker = format!("__vending_status_{}_{}", std::process::id(), options.build_id.len() + 7919);
        let mut session = Session { child, stdin, lines, marker };
        session.stdin.write_all(b"exec 2>&1\n").context("the shell does not take commands")?;
        // Nothing to run yet; this checks that the shell answers.
        if session.run("true", out)? != Some(0) {
            bail!("{program} does not run commands");
        }
        Ok(session)
    }

    /// Runs one command in the session and returns its exit status (`None`: the shell ended,
    /// e.g. the command ran `exit`).
    fn run(&mut self, command: &str, out: &mut dyn FnMut(&str)) -> anyhow::Result<Option<i32>> {
        let quoted = format!("'{}'", command.replace('\'', r"'\''"));
        // The status follows the output; a last line without a newline ends with the marker.
        let script = format!("eval {quoted} </dev/null\nprintf '%s %d\\n' '{}' \"$?\"\n", self.marker);
        if self.stdin.write_all(script.as_bytes()).and_then(|_| self.stdin.flush()).is_err() {
            return Ok(None);
        }
        loop {
            let Ok(line) = self.lines.recv() else { return Ok(None) };
            if let Some(at) = line.find(&self.marker) {
                let before = &line[..at];
                if !before.is_empty() {
                    out(before);
                }
                let status = line[at + self.marker.len()..].trim().parse().unwrap_or(1);
                return Ok(Some(status));
            }
            out(&line);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Ends the shell and anything the build left running in its process group.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Masks every secret value in a line of output.
fn mask(line: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut line = line.to_string();
    for value in secrets.values().filter(|v| !v.is_empty()) {
        line = line.replace(value.as_str(), "***");
    }
    line
}

/// Runs the build. `out` receives every line of output (secrets masked) and the runner's own
/// lines, which start with `[runner]`.
pub fn run(build: &Build, options: &RunOptions, out: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    if !options.src.is_dir() {
        bail!("the source folder {} does not exist", options.src.display());
    }
    let rules: Vec<OnFailure> = build.phases.iter().map(on_failure).collect::<anyhow::Result<_>>()?;
    let secrets = options.secrets.clone();
    let mut emit = |line: &str| out(&mask(line, &secrets));
    let shell = build.shell.as_deref().unwrap_or("bash");
    let mut session = Session::start(shell, build, options, &mut emit)?;
    let mut phases = Vec::new();
    let mut succeeding = true;
    let mut ended = false;
    for (phase, rule) in build.phases.iter().zip(rules) {
        if ended {
            phases.push(PhaseReport { name: phase.name, status: Status::Skipped, failed: None, attempts: 0 });
            continue;
        }
        if phase.run_as.is_some() {
            emit(&format!("[runner] phase {}: run-as is not applied locally; commands run as this user", phase.name));
        }
        let attempts_allowed = match rule {
            OnFailure::Retry(n) => n + 1,
            _ => 1,
        };
        let mut report = PhaseReport { name: phase.name, status: Status::Succeeded, failed: None, attempts: 0 };
        while report.attempts < attempts_allowed {
            report.attempts += 1;
            session.run(&format!("export CODEBUILD_BUILD_SUCCEEDING={}", u8::from(succeeding)), &mut |_| {})?;
            emit(&format!("[runner] Entering phase {}", phase.name.to_uppercase()));
            report.failed = run_phase(&mut session, build, options, phase, &mut emit)?;
            if report.failed.is_none() {
                break;
            }
        }
        if let Some((command, status)) = &report.failed {
            report.status = Status::Failed;
            succeeding = false;
            emit(&format!(
                "[runner] Phase {} FAILED: COMMAND_EXECUTION_ERROR: Error while executing command: {command}. Reason: exit status {status}",
                phase.name.to_uppercase()
            ));
            ended = match rule {
                OnFailure::Continue => false,
                OnFailure::Abort | OnFailure::Retry(_) => true,
                OnFailure::Default => phase.name != "build",
            };
        } else {
            emit(&format!("[runner] Phase {} SUCCEEDED", phase.name.to_uppercase()));
        }
        phases.push(report);
    }
    Ok(Report { phases })
}

/// The phase's commands until the first failure, then its `finally` commands; the first failure.
fn run_phase(
    session: &mut Session,
    build: &Build,
    options: &RunOptions,
    phase: &Phase,
    emit: &mut dyn FnMut(&str),
) -> anyhow::Result<Option<(String, i32)>> {
    let mut failed = None;
    for list in [&phase.commands, &phase.finally] {
        for command in list {
            emit(&format!("[runner] Running command {command}"));
            let status = match session.run(command, emit)? {
                Some(status) => status,
                None => {
                    // The command ended the shell: the build goes on in a new one, without the
                    // state of the old (what CodeBuild does is fail; this keeps `finally` running).
                    let status = session.child.wait().ok().and_then(|s| s.code()).unwrap_or(1);
                    emit("[runner] the shell exited; later commands run in a new shell");
                    *session = Session::start(build.shell.as_deref().unwrap_or("bash"), build, options, emit)?;
                    if status == 0 {
                        1
                    } else {
                        status
                    }
                }
            };
            if status != 0 {
                failed.get_or_insert((command.clone(), status));
                break;
            }
        }
    }
    Ok(failed)
}
