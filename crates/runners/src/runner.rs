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
//!   Parameter Store or Secrets Manager, fetched by the caller) masked in the output, every line
//!   of a multi-line value too;
//! - an `exit` in a command ends the session, so it fails the phase and ends the build, with a
//!   message that says why (no command runs in a new shell, which would lose the session's state).
//!   CodeBuild does not document `exit`; users report that `exit 0` goes on with the next command
//!   and `exit N` fails the command, so this is where the runner is stricter than AWS;
//! - a build that runs past its timeout is stopped with everything it started.
//!
//! Each command is handed to the shell's `eval` as one quoted word, with its stdin from
//! /dev/null, so a command can neither read the rest of the build nor, with a syntax error,
//! swallow the commands after it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vending::config::model::{Build, Phase};

/// CodeBuild's default build timeout (a project setting, not a buildspec key).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// What the runner is told besides the buildspec.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The source folder: `CODEBUILD_SRC_DIR` and the working directory.
    pub src: PathBuf,
    /// Values of `parameter-store` and `secrets-manager` variables: set, and masked in the output.
    pub secrets: BTreeMap<String, String>,
    /// `CODEBUILD_RESOLVED_SOURCE_VERSION`: the commit being built.
    pub source_version: String,
    /// `CODEBUILD_BUILD_ID`.
    pub build_id: String,
    /// How long the whole build may run (`build.timeout_minutes`); then it is stopped.
    pub timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            src: PathBuf::new(),
            secrets: BTreeMap::new(),
            source_version: String::new(),
            build_id: String::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    /// The build ran past its timeout during this phase and was stopped.
    TimedOut,
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
        self.phases.iter().all(|p| matches!(p.status, Status::Succeeded | Status::Skipped))
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
    use vending::config::model::OnFailure as Rule;
    Ok(match &phase.on_failure {
        None => OnFailure::Default,
        Some(Rule::Abort) => OnFailure::Abort,
        Some(Rule::Continue) => OnFailure::Continue,
        Some(Rule::Retry { count, pattern: None }) => OnFailure::Retry(count.unwrap_or(3)),
        Some(other) => bail!(
            "phase {}: `on-failure: {other}` (retry while the output matches a pattern) is not supported by the local runner; use RETRY or RETRY-<count>",
            phase.name
        ),
    })
}

/// What became of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// It ran to its end with this exit status.
    Status(i32),
    /// It ended the shell (`exit`, `exec`, a failure under `set -e`), with the shell's status.
    ShellEnded(i32),
    /// The build ran out of time while it ran; everything the build started was stopped.
    TimedOut,
    /// It redirected the shell's own output away (`exec >/dev/null`): the runner can no longer
    /// read what happens, so the shell was stopped.
    OutputClosed,
}

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PhaseEnd {
    Succeeded,
    /// The first failing command and its exit status.
    Failed(String, i32),
    /// This command ended the build's shell session.
    ShellEnded(String, i32),
    /// The build ran out of time, during this command when there was one.
    TimedOut(Option<String>),
    /// This command closed the shell's output.
    OutputClosed(String),
}

/// The shell the build runs in, kept for the whole build.
struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    marker: String,
    /// When the build's time is up.
    deadline: Instant,
    /// Kills the build's process group if this process dies first.
    watchdog: Child,
}

/// How often a command waiting for output checks whether the shell is still there (a process it
/// left in the background may hold the output open after the shell itself ended).
const POLL: Duration = Duration::from_millis(200);

impl Session {
    fn start(
        shell: &str,
        build: &Build,
        options: &RunOptions,
        deadline: Instant,
        out: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Session> {
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
        let watchdog = watchdog(child.id()).context("cannot start the build's watchdog")?;
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
        let mut session = Session { child, stdin, lines, marker, deadline, watchdog };
        session.stdin.write_all(b"exec 2>&1\n").context("the shell does not take commands")?;
        // Nothing to run yet; this checks that the shell answers.
        match session.run("true", out)? {
            Ran::Status(0) => Ok(session),
            Ran::TimedOut => bail!("the build timed out before its first command"),
            _ => bail!("{program} does not run commands"),
        }
    }

    /// Runs one command in the session and tells what became of it.
    fn run(&mut self, command: &str, out: &mut dyn FnMut(&str)) -> anyhow::Result<Ran> {
        let quoted = format!("'{}'", command.replace('\'', r"'\''"));
        // The status follows the output; a last line without a newline ends with the marker.
        let script = format!("eval {quoted} </dev/null\nprintf '%s %d\\n' '{}' \"$?\"\n", self.marker);
        if self.stdin.write_all(script.as_bytes()).and_then(|_| self.stdin.flush()).is_err() {
            return Ok(Ran::ShellEnded(self.shell_status()));
        }
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                self.kill();
                return Ok(Ran::TimedOut);
            }
            let line = match self.lines.recv_timeout(POLL.min(self.deadline - now)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Disconnected) => return Ok(self.after_output_closed()),
                Err(RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Ok(Ran::ShellEnded(status.code().unwrap_or(1)));
                    }
                    continue;
                }
            };
            if let Some(at) = line.find(&self.marker) {
                let before = &line[..at];
                if !before.is_empty() {
                    out(before);
                }
                let status = line[at + self.marker.len()..].trim().parse().unwrap_or(1);
                return Ok(Ran::Status(status));
            }
            out(&line);
        }
    }

    /// The exit status of a shell that ended (1 when it was killed by a signal).
    fn shell_status(&mut self) -> i32 {
        self.child.wait().ok().and_then(|s| s.code()).unwrap_or(1)
    }

    /// The shell's output closed: it ended (an `exit` closes it as the shell exits), or a
    /// command sent it elsewhere (`exec >/dev/null`), after which no status can be read: the
    /// shell is stopped rather than waited for until the build's timeout.
    fn after_output_closed(&mut self) -> Ran {
        let grace = Instant::now() + Duration::from_secs(2);
        while Instant::now() < grace.min(self.deadline) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ran::ShellEnded(status.code().unwrap_or(1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        let _ = self.child.wait();
        Ran::OutputClosed
    }

    /// Stops the shell and anything the build left running in its process group.
    fn kill(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.wait();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// What stops the build when this process dies without running `Drop` (Ctrl-C, SIGTERM,
/// kill -9): the build's shell is in a process group of its own, which the terminal's Ctrl-C does
/// not reach, and a parent-death signal would reach only the shell, not what it started. So a
/// small watchdog, outside that group, checks every second that this process lives, and when it is
/// gone kills the build's whole group. (The script is fixed; the pids are its arguments.)
fn watchdog(build_group: u32) -> std::io::Result<std::process::Child> {
    // dash's `kill` takes a process group only as `-- -PGID` unquoted; both are numbers we pass.
    const SCRIPT: &str = r#"while kill -0 $1 2>/dev/null; do sleep 1; done; kill -s KILL -- -$2 2>/dev/null"#;
    use std::os::unix::process::CommandExt;
    Command::new("/bin/sh")
        .args(["-c", SCRIPT, "vending-build-watchdog", &std::process::id().to_string(), &build_group.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// The texts to hide from the output, longest first. Output is masked line by line, so a
/// multi-line value (a PEM key, a JSON document) never appears whole in one line: each of its
/// lines is masked on its own. A line of such a value without a letter or digit (`{`, `-----`)
/// reveals nothing, and masking it would garble every line of the log that has one.
fn masks(secrets: &BTreeMap<String, String>) -> Vec<String> {
    let mut masks = std::collections::BTreeSet::new();
    for value in secrets.values() {
        if value.contains('\n') {
            for line in value.lines().map(str::trim) {
                if line.chars().any(char::is_alphanumeric) {
                    masks.insert(line.to_string());
                }
            }
        } else if !value.is_empty() {
            masks.insert(value.clone());
        }
    }
    let mut masks: Vec<String> = masks.into_iter().collect();
    masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
    masks
}

/// Replaces every occurrence of every mask in a line with `***`. What is hidden is the union of
/// all occurrences, overlapping ones included, so two values that share a part cannot leave a
/// piece of either visible (masking one value after the other would: the second no longer
/// matches once the first replaced part of it).
fn mask(line: &str, masks: &[String]) -> String {
    let mut hidden = vec![false; line.len()];
    for needle in masks.iter().filter(|m| !m.is_empty()) {
        let mut from = 0;
        while let Some(at) = line[from..].find(needle.as_str()) {
            let start = from + at;
            hidden[start..start + needle.len()].fill(true);
            from = start + line[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    let mut masked = String::with_capacity(line.len());
    let mut in_mask = false;
    for (at, c) in line.char_indices() {
        if hidden[at] {
            if !in_mask {
                masked.push_str("***");
            }
            in_mask = true;
        } else {
            in_mask = false;
            masked.push(c);
        }
    }
    masked
}

/// `60 minutes`, or seconds for a timeout that is not whole minutes (tests use short ones).
fn duration_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds % 60, seconds / 60) {
        (0, 1) => "1 minute".to_string(),
        (0, minutes) if minutes > 0 => format!("{minutes} minutes"),
        _ if seconds == 1 => "1 second".to_string(),
        _ => format!("{} seconds", duration.as_secs_f64()),
    }
}

/// Runs the build. `out` receives every line of output (secrets masked) and the runner's own
/// lines, which start with `[runner]`.
pub fn run(build: &Build, options: &RunOptions, out: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    if !options.src.is_dir() {
        bail!("the source folder {} does not exist", options.src.display());
    }
    let rules: Vec<OnFailure> = build.phases.iter().map(on_failure).collect::<anyhow::Result<_>>()?;
    let deadline = Instant::now() + options.timeout;
    let masks = masks(&options.secrets);
    let mut emit = |line: &str| out(&mask(line, &masks));
    let shell = build.shell.as_deref().unwrap_or("bash");
    let mut session = Session::start(shell, build, options, deadline, &mut emit)?;
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
        let mut end = PhaseEnd::Succeeded;
        while report.attempts < attempts_allowed {
            report.attempts += 1;
            let export = format!("export CODEBUILD_BUILD_SUCCEEDING={}", u8::from(succeeding));
            end = match session.run(&export, &mut |_| {})? {
                Ran::Status(_) => {
                    emit(&format!("[runner] Entering phase {}", phase.name.to_uppercase()));
                    run_phase(&mut session, phase, &mut emit)?
                }
                Ran::ShellEnded(status) => PhaseEnd::ShellEnded(export, status),
                Ran::OutputClosed => PhaseEnd::OutputClosed(export),
                Ran::TimedOut => PhaseEnd::TimedOut(None),
            };
            // Only a failed command is retried: an ended shell or a timeout ends the build.
            if !matches!(end, PhaseEnd::Failed(..)) {
                break;
            }
        }
        let upper = phase.name.to_uppercase();
        match end {
            PhaseEnd::Succeeded => emit(&format!("[runner] Phase {upper} SUCCEEDED")),
            PhaseEnd::Failed(command, status) => {
                report.status = Status::Failed;
                succeeding = false;
                emit(&format!(
                    "[runner] Phase {upper} FAILED: COMMAND_EXECUTION_ERROR: Error while executing command: {command}. Reason: exit status {status}"
                ));
                report.failed = Some((command, status));
                ended = match rule {
                    OnFailure::Continue => false,
                    OnFailure::Abort | OnFailure::Retry(_) => true,
                    OnFailure::Default => phase.name != "build",
                };
            }
            PhaseEnd::ShellEnded(command, status) => {
                report.status = Status::Failed;
                emit(&format!(
                    "[runner] Phase {upper} FAILED: command `{command}` ended the build's shell (exit status {status}): this runner keeps one shell for the whole build, so after `exit` (or `exec`, or a failure under `set -e`) it cannot go on as CodeBuild would (there `exit 0` is reported to go on with the next command, and `exit N` fails that command); no later command ran. Use a condition (`if …; then …; fi`) instead of `exit`"
                ));
                report.failed = Some((command, status));
                ended = true;
            }
            PhaseEnd::OutputClosed(command) => {
                report.status = Status::Failed;
                emit(&format!(
                    "[runner] Phase {upper} FAILED: command `{command}` sent the build's own output elsewhere (as `exec >/dev/null` does), so the runner can no longer read the build; it was stopped. Redirect the output of single commands instead (`cmd >/dev/null`)"
                ));
                report.failed = Some((command, 1));
                ended = true;
            }
            PhaseEnd::TimedOut(command) => {
                report.status = Status::TimedOut;
                let during = command.map(|c| format!(" during command `{c}`")).unwrap_or_default();
                emit(&format!(
                    "[runner] Phase {upper} TIMED_OUT: the build timed out after {} (build.timeout_minutes){during}; it was stopped with every process it started",
                    duration_text(options.timeout)
                ));
                ended = true;
            }
        }
        phases.push(report);
    }
    Ok(Report { phases })
}

/// The phase's commands until the first failure, then its `finally` commands; how it ended.
/// A command that ends the shell or runs out of time ends the phase at once: there is no shell
/// left for `finally`.
fn run_phase(session: &mut Session, phase: &Phase, emit: &mut dyn FnMut(&str)) -> anyhow::Result<PhaseEnd> {
    let mut end = PhaseEnd::Succeeded;
    for list in [&phase.commands, &phase.finally] {
        for command in list {
            emit(&format!("[runner] Running command {command}"));
            match session.run(command, emit)? {
                Ran::Status(0) => {}
                Ran::Status(status) => {
                    if end == PhaseEnd::Succeeded {
                        end = PhaseEnd::Failed(command.clone(), status);
                    }
                    break;
                }
                Ran::ShellEnded(status) => return Ok(PhaseEnd::ShellEnded(command.clone(), status)),
                Ran::OutputClosed => return Ok(PhaseEnd::OutputClosed(command.clone())),
                Ran::TimedOut => return Ok(PhaseEnd::TimedOut(Some(command.clone()))),
            }
        }
    }
    Ok(end)
}
