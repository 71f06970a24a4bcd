//! `plan|deploy|ami --all` (or a selection: `--customers a,b`, `--envs prod`): many environments
//! in one command. Each environment runs as its own process of this program, the same command
//! for one environment, at most `--parallel` at a time; every line it prints is prefixed by its
//! environment. Production and other gated environments ask for their approvals first, all at
//! once (`deploy --no-wait`), and each goes on when its own request is decided, without holding
//! a slot while it waits. `--canary N` runs the first N environments (non-production first) and
//! the rest only when they all succeed; after a failure no new environment starts unless
//! `--keep-going`, and the running ones finish. A summary table (or `--json`) ends the run.
//!
//! Ctrl-C: each environment's process runs in its own process group and gets exactly the presses
//! this command gets (forwarded), so it stops as it would alone; no new environment starts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use vending::approval::{Scope, State};
use vending::config::model::Fleet;

use crate::approval::{EXIT_EXPIRED, EXIT_PENDING, EXIT_REJECTED};

/// How the fleet is selected and run.
#[derive(Args, Clone, Debug, Default)]
pub struct FleetFlags {
    /// Every environment of every customer.
    #[arg(long)]
    pub all: bool,
    /// Only these customers (comma-separated); implies the fleet form.
    #[arg(long, value_delimiter = ',', value_name = "CUSTOMER,…")]
    pub customers: Vec<String>,
    /// Only environments with these names (comma-separated, e.g. `prod`); implies the fleet form.
    #[arg(long, value_delimiter = ',', value_name = "ENV,…")]
    pub envs: Vec<String>,
    /// How many environments run at once (fleet form).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Run N environments first (non-production first) and the rest only if they all succeed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub canary: Option<u16>,
    /// Go on starting environments after one failed (by default none starts after a failure;
    /// running ones finish either way).
    #[arg(long)]
    pub keep_going: bool,
}

impl FleetFlags {
    /// Whether the command runs on a selection of the fleet rather than one environment.
    pub fn selected(&self) -> bool {
        self.all || !self.customers.is_empty() || !self.envs.is_empty()
    }
}

/// One customer environment's command, named by `customer env` in its arguments, or the fleet
/// form; a clear error for anything in between.
pub fn one_or_fleet<'a>(
    customer: &'a Option<String>,
    env: &'a Option<String>,
    flags: &FleetFlags,
) -> anyhow::Result<Option<(&'a str, &'a str)>> {
    match (customer, env, flags.selected()) {
        (Some(c), Some(e), false) => Ok(Some((c, e))),
        (None, None, true) => Ok(None),
        (Some(_), _, true) => {
            bail!("name one environment (`CUSTOMER ENV`) or select many (--all, --customers, --envs), not both")
        }
        (Some(_), None, false) => bail!("name the environment too: `CUSTOMER ENV` (or select many with --all)"),
        _ => bail!("name an environment (`CUSTOMER ENV`) or select many: --all, --customers a,b, --envs prod"),
    }
}

/// The fleet command being run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Plan,
    Deploy,
    Ami,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Plan => "plan",
            Verb::Deploy => "deploy",
            Verb::Ami => "ami",
        }
    }

    /// Whether an environment's exit code is a success (a plan with changes is one).
    fn succeeded(self, code: i32) -> bool {
        code == 0 || (self == Verb::Plan && code == 2)
    }

    fn result(self, code: i32) -> &'static str {
        match (self, code) {
            (Verb::Plan, 0) => "no changes",
            (Verb::Plan, 2) => "changes",
            (_, 0) => "succeeded",
            (Verb::Deploy, c) if c == i32::from(EXIT_PENDING) => "pending approval",
            (Verb::Deploy, c) if c == i32::from(EXIT_REJECTED) => "rejected",
            (Verb::Deploy, c) if c == i32::from(EXIT_EXPIRED) => "expired",
            (_, c) if c == i32::from(crate::lock::EXIT_LOCKED) => "locked",
            (_, 130) => "interrupted",
            _ => "failed",
        }
    }
}

/// One selected environment.
#[derive(Clone, Debug)]
pub struct Job {
    pub customer: String,
    pub env: String,
    pub production: bool,
    /// Its changes need an approval (production, `approval = true`).
    pub gated: bool,
}

impl Job {
    pub fn who(&self) -> String {
        format!("{}/{}", self.customer, self.env)
    }
}

/// The environments the flags select, non-production first, then by customer and name. Names
/// that match nothing are errors (with the names there are).
pub fn select(fleet: &Fleet, flags: &FleetFlags) -> anyhow::Result<Vec<Job>> {
    let customers: Vec<&str> = fleet.customers.iter().map(|c| c.name.as_str()).collect();
    for name in &flags.customers {
        if !customers.contains(&name.as_str()) {
            return Err(crate::output::unknown_name("customer", name, "customers/", &customers));
        }
    }
    let mut env_names: Vec<&str> =
        fleet.customers.iter().flat_map(|c| c.environments.iter().map(|e| e.name.as_str())).collect();
    env_names.sort_unstable();
    env_names.dedup();
    for name in &flags.envs {
        if !env_names.contains(&name.as_str()) {
            return Err(crate::output::unknown_name("environment", name, "any customer", &env_names));
        }
    }
    let mut jobs: Vec<Job> = fleet
        .customers
        .iter()
        .filter(|c| flags.customers.is_empty() || flags.customers.contains(&c.name))
        .flat_map(|c| c.environments.iter().map(move |e| (c, e)))
        .filter(|(_, e)| flags.envs.is_empty() || flags.envs.contains(&e.name))
        .map(|(c, e)| Job {
            customer: c.name.clone(),
            env: e.name.clone(),
            production: e.production,
            gated: e.approval.required,
        })
        .collect();
    if jobs.is_empty() {
        bail!("the selection has no environment");
    }
    jobs.sort_by(|a, b| (a.production, &a.customer, &a.env).cmp(&(b.production, &b.customer, &b.env)));
    Ok(jobs)
}

/// Reads the state of a job's approval request `id` (none: not found) and whether it is past
/// its expiry.
pub type ReadApproval<'a> = dyn Fn(&Job, &str) -> anyhow::Result<Option<(State, bool)>> + 'a;

/// A fleet run: which command, over which environments, how.
pub struct Run<'a> {
    pub root: &'a Path,
    pub verb: Verb,
    pub flags: &'a FleetFlags,
    pub jobs: Vec<Job>,
    /// The arguments after `CUSTOMER ENV` that each environment's command gets (`--local`, …).
    pub args: Vec<String>,
    /// The summary as JSON (and, for `plan`, each environment's plan as JSON in it).
    pub json: bool,
    /// `deploy --no-wait`: ask for the approvals and leave them pending.
    pub no_wait: bool,
    /// Reads an approval request's state (for the environments waiting on one).
    pub approvals: Option<&'a ReadApproval<'a>>,
    /// Set by a failure (without `--keep-going`) or Ctrl-C: no new environment starts.
    pub stopping: std::cell::Cell<bool>,
}

/// How one environment ended.
#[derive(Debug, Clone, Serialize)]
pub struct Ended {
    pub environment: String,
    pub result: String,
    /// The command's exit code (none when it did not run).
    pub exit_code: Option<i32>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// What to look at when it failed: its last error line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// `plan --json`: the environment's plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
}

/// Where a job is.
enum Step {
    Queued,
    /// Its approval request `id` was pending: it starts (with `--approval ID`) once decided.
    Held {
        id: String,
        decided: bool,
    },
    Running,
    Done(Box<Ended>),
}

/// A finished process, from its thread.
struct Finished {
    index: usize,
    code: i32,
    seconds: f64,
    facts: BTreeMap<String, String>,
    last_error: Option<String>,
    stdout: String,
}

/// How often the requests of held environments are read.
const APPROVAL_POLL: Duration = Duration::from_secs(5);
/// How often a run that only waits for decisions says so.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

impl Run<'_> {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let total = self.jobs.len();
        let gated = self.jobs.iter().filter(|j| j.gated).count();
        eprintln!(
            "{} of {total} environment(s), {} at a time{}{}",
            self.verb.word(),
            self.flags.parallel,
            self.flags.canary.map(|n| format!(", the first {n} as canaries")).unwrap_or_default(),
            if self.verb == Verb::Deploy && gated > 0 {
                format!("; {gated} need an approval: asking for them first")
            } else {
                String::new()
            }
        );
        crate::interrupt::install()?;
        crate::interrupt::set_notes(
            Some("interrupted: no new environment starts; the running ones stop as they do on Ctrl-C".into()),
            "interrupted again: passed on to the running environments (a deploy leaves its deployment to finish; Packer still cleans up); this run ends when they have".into(),
        );
        let started = Instant::now();
        let mut steps: Vec<Step> = self.jobs.iter().map(|_| Step::Queued).collect();
        if self.verb == Verb::Deploy && gated > 0 {
            let asking: Vec<usize> = (0..total).filter(|&i| self.jobs[i].gated).collect();
            self.schedule(&mut steps, &asking, true)?;
        }
        let order: Vec<usize> = (0..total).collect();
        let canaries = self.flags.canary.map_or(0, usize::from).min(total);
        if canaries > 0 && canaries < total {
            self.schedule(&mut steps, &order[..canaries], false)?;
            let failed = order[..canaries].iter().any(|&i| !self.step_succeeded(&steps[i]));
            if failed {
                eprintln!("a canary did not succeed: the other {} environment(s) do not start", total - canaries);
            } else {
                self.schedule(&mut steps, &order[canaries..], false)?;
            }
        } else {
            self.schedule(&mut steps, &order, false)?;
        }
        let ended: Vec<Ended> = steps
            .into_iter()
            .zip(&self.jobs)
            .map(|(step, job)| match step {
                Step::Done(ended) => *ended,
                Step::Held { id, .. } => Ended {
                    result: "pending approval".into(),
                    exit_code: Some(i32::from(EXIT_PENDING)),
                    approval: Some(id),
                    ..not_run(job, "")
                },
                Step::Queued | Step::Running => not_run(job, "not started"),
            })
            .collect();
        self.summary(&ended, started.elapsed())?;
        Ok(self.exit_code(&ended))
    }

    fn step_succeeded(&self, step: &Step) -> bool {
        matches!(step, Step::Done(e) if e.exit_code.is_some_and(|c| self.verb.succeeded(c)))
    }

    /// Runs the jobs `which` (in order, `parallel` at a time) until each is done, held for its
    /// approval (left held with `--no-wait`), or not started after a failure or Ctrl-C. `asking`:
    /// the approval round (`--no-wait`: exit 3 and a request id hold the job).
    fn schedule(&self, steps: &mut [Step], which: &[usize], asking: bool) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel::<Finished>();
        let mut running = 0usize;
        let mut last_poll: Option<Instant> = None;
        let mut said_waiting = Instant::now();
        // Nothing here returns early while environments run: an error ends one job, not the run.
        loop {
            if crate::interrupt::interrupted() {
                self.stopping.set(true);
            }
            if !self.stopping.get() {
                // Held jobs whose request was decided (or expired) go back to the queue.
                if !asking && last_poll.is_none_or(|t| t.elapsed() >= APPROVAL_POLL) {
                    last_poll = Some(Instant::now());
                    if let Err(e) = self.release_decided(steps, which) {
                        eprintln!("warning: cannot read the approval requests now ({e:#}); trying again");
                    }
                }
                while running < usize::from(self.flags.parallel) && !crate::interrupt::interrupted() {
                    let queued = which.iter().find(|&&i| matches!(steps[i], Step::Queued));
                    let held = || which.iter().find(|&&i| matches!(&steps[i], Step::Held { decided: true, .. }));
                    // A held job resumes with its request once it is decided.
                    let Some(&next) = queued.or_else(held) else { break };
                    let resume = match std::mem::replace(&mut steps[next], Step::Running) {
                        Step::Held { id, .. } => Some(id),
                        _ => None,
                    };
                    match self.start(next, asking && resume.is_none(), resume, &tx) {
                        Ok(()) => running += 1,
                        Err(e) => {
                            let job = &self.jobs[next];
                            eprintln!("error: {}: {e:#}", job.who());
                            let ended =
                                Ended { result: "failed".into(), details: Some(format!("{e:#}")), ..not_run(job, "") };
                            steps[next] = Step::Done(Box::new(ended));
                            self.failed(job);
                        }
                    }
                }
            }
            let held: Vec<&str> = which
                .iter()
                .filter_map(|&i| match &steps[i] {
                    Step::Held { id, .. } => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            if running == 0 && (self.stopping.get() || held.is_empty() || asking || self.no_wait) {
                return Ok(());
            }
            if running == 0 && said_waiting.elapsed() >= PROGRESS_EVERY {
                eprintln!("waiting for a decision on {} approval request(s): {}", held.len(), held.join(", "));
                said_waiting = Instant::now();
            }
            let Ok(finished) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
            running -= 1;
            let job = &self.jobs[finished.index];
            let approval = finished.facts.get("approval").cloned();
            if asking && finished.code == i32::from(EXIT_PENDING) {
                if let Some(id) = approval {
                    steps[finished.index] = Step::Held { id, decided: false };
                    continue;
                }
            }
            let ended = self.ended(job, &finished, approval);
            if !self.verb.succeeded(finished.code) {
                self.failed(job);
            }
            steps[finished.index] = Step::Done(Box::new(ended));
        }
    }

    /// After a failure, unless `--keep-going`, no new environment starts (in any later round).
    fn failed(&self, job: &Job) {
        if !self.flags.keep_going && !self.stopping.get() {
            self.stopping.set(true);
            eprintln!("{} failed: no new environment starts (--keep-going to go on)", job.who());
        }
    }

    /// Marks held jobs whose request is no longer pending (or is past its expiry) as ready to
    /// resume.
    fn release_decided(&self, steps: &mut [Step], which: &[usize]) -> anyhow::Result<()> {
        let Some(read) = self.approvals else { return Ok(()) };
        for &i in which {
            let Step::Held { id, decided } = &mut steps[i] else { continue };
            if *decided {
                continue;
            }
            *decided = match read(&self.jobs[i], id)? {
                Some((State::Pending, expired)) => expired,
                _ => true,
            };
            if *decided {
                eprintln!("{} | request {id} was decided: going on", self.jobs[i].who());
            }
        }
        Ok(())
    }

    fn ended(&self, job: &Job, finished: &Finished, approval: Option<String>) -> Ended {
        let plan = (self.json && self.verb == Verb::Plan && self.verb.succeeded(finished.code))
            .then(|| serde_json::from_str(&finished.stdout).ok())
            .flatten();
        let failed = !self.verb.succeeded(finished.code);
        Ended {
            environment: job.who(),
            result: self.verb.result(finished.code).into(),
            exit_code: Some(finished.code),
            seconds: (finished.seconds * 10.0).round() / 10.0,
            ami: finished.facts.get("ami").cloned(),
            revision: finished.facts.get("revision").cloned(),
            approval,
            details: failed.then(|| finished.last_error.clone()).flatten(),
            plan,
        }
    }

    /// Starts one environment's process and a thread that streams its lines and reports its end.
    fn start(
        &self,
        index: usize,
        asking: bool,
        resume: Option<String>,
        tx: &mpsc::Sender<Finished>,
    ) -> anyhow::Result<()> {
        let job = &self.jobs[index];
        let who = job.who();
        let report = tempfile::NamedTempFile::new().context("cannot make a report file")?;
        let exe = std::env::current_exe().context("cannot find this program")?;
        let mut command = Command::new(exe);
        command.arg("--root").arg(self.root).arg(self.verb.word()).arg(&job.customer).arg(&job.env);
        command.args(&self.args);
        if asking {
            command.arg("--no-wait");
        }
        if let Some(id) = &resume {
            command.args(["--approval", id]);
        }
        if self.json && self.verb == Verb::Plan {
            command.arg("--json");
        }
        command.env(crate::report::VARIABLE, report.path());
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own process group: Ctrl-C reaches it once, forwarded by this command.
        command.process_group(0);
        let presses = crate::interrupt::presses();
        let mut child = command.spawn().with_context(|| format!("{who}: cannot start its command"))?;
        let pid = child.id();
        crate::interrupt::forward_to(pid);
        // A press between the check before starting and now: this one gets it too.
        for _ in presses..crate::interrupt::presses() {
            crate::interrupt::signal_group(pid);
        }
        // With --json, stdout is the summary: a plan's JSON is kept for it, other lines go to stderr.
        let capture = self.json && self.verb == Verb::Plan;
        let stdout_to_stderr = self.json && !capture;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let tx = tx.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            let out_who = who.clone();
            let out = std::thread::spawn(move || stream(stdout, &out_who, !capture, stdout_to_stderr));
            let (_, last_error) = stream(stderr, &who, true, true);
            let (stdout, _) = out.join().unwrap_or_default();
            let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
            crate::interrupt::stop_forwarding(pid);
            let facts = crate::report::read(report.path());
            let seconds = started.elapsed().as_secs_f64();
            let _ = tx.send(Finished { index, code, seconds, facts, last_error, stdout });
        });
        Ok(())
    }

    fn summary(&self, ended: &[Ended], took: Duration) -> anyhow::Result<()> {
        let ok = ended.iter().filter(|e| e.exit_code.is_some_and(|c| self.verb.succeeded(c))).count();
        if self.json {
            #[derive(Serialize)]
            struct Summary<'a> {
                command: &'a str,
                environments: &'a [Ended],
                succeeded: usize,
                total: usize,
                seconds: f64,
            }
            let summary = Summary {
                command: self.verb.word(),
                environments: ended,
                succeeded: ok,
                total: ended.len(),
                seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
            };
            println!("{}", serde_json::to_string_pretty(&summary)?);
            return Ok(());
        }
        println!();
        println!("{}", table(ended));
        let what = if self.verb == Verb::Plan { "planned" } else { "succeeded" };
        println!("{ok} of {} environment(s) {what} in {:.1} s", ended.len(), took.as_secs_f64());
        Ok(())
    }

    /// 0 when every environment succeeded; `plan`: 2 when one has changes; `deploy --no-wait`:
    /// 3 when approvals are pending; 130 after Ctrl-C; otherwise 1.
    fn exit_code(&self, ended: &[Ended]) -> ExitCode {
        let failed = ended.iter().any(|e| !e.exit_code.is_some_and(|c| self.verb.succeeded(c)));
        let pending = ended.iter().all(|e| {
            e.exit_code.is_some_and(|c| self.verb.succeeded(c) || (self.no_wait && c == i32::from(EXIT_PENDING)))
        });
        if crate::interrupt::interrupted() {
            ExitCode::from(130)
        } else if !failed {
            let changes = self.verb == Verb::Plan && ended.iter().any(|e| e.exit_code == Some(2));
            ExitCode::from(if changes { 2 } else { 0 })
        } else if pending {
            ExitCode::from(EXIT_PENDING)
        } else {
            ExitCode::from(1)
        }
    }
}

fn not_run(job: &Job, result: &str) -> Ended {
    Ended {
        environment: job.who(),
        result: result.into(),
        exit_code: None,
        seconds: 0.0,
        ami: None,
        revision: None,
        approval: None,
        details: None,
        plan: None,
    }
}

/// Streams a child's lines, prefixed by its environment (unless they already are), to this
/// process's stdout or stderr; returns what it kept: everything (`keep_all`, for JSON) or the
/// last error line.
fn stream(from: impl Read, who: &str, print: bool, to_stderr: bool) -> (String, Option<String>) {
    let mut kept = String::new();
    let mut last_error = None;
    let prefix = format!("{who} |");
    for line in BufReader::new(from).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if line.starts_with("error") || line.contains("| error") {
            last_error = Some(line.trim_start_matches(&prefix).trim().to_string());
        }
        if !print {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        // Its own lines name it already (`acme/prod | …`, `acme/prod: 3 resource(s) changed`).
        let named = line.strip_prefix(who).is_some_and(|rest| rest.starts_with([' ', ':']));
        let shown = if named { line.to_string() } else { format!("{prefix} {line}") };
        // A closed stdout or stderr (`| head`) loses lines, never the run: keep draining.
        let _ = if to_stderr {
            writeln!(std::io::stderr().lock(), "{shown}")
        } else {
            writeln!(std::io::stdout().lock(), "{shown}")
        };
    }
    (kept, last_error)
}

/// The summary table: environment, result, AMI, revision, duration, what to look at.
pub fn table(ended: &[Ended]) -> String {
    let rows: Vec<[String; 6]> = ended
        .iter()
        .map(|e| {
            [
                e.environment.clone(),
                e.result.clone(),
                e.ami.clone().unwrap_or_else(|| "-".into()),
                e.revision.clone().unwrap_or_else(|| "-".into()),
                if e.exit_code.is_some() { format!("{:.1} s", e.seconds) } else { "-".into() },
                match (&e.details, &e.approval) {
                    (Some(details), _) => details.clone(),
                    (None, Some(id)) if e.result == "pending approval" => format!("approve: request {id}"),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    let header = ["ENVIRONMENT", "RESULT", "AMI", "REVISION", "TIME", "DETAILS"].map(str::to_string);
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The approval reader of a fleet run: the request's state and whether it is past its expiry.
pub fn approval_reader<'a>(
    runtime: &'a tokio::runtime::Runtime,
    store: vending_aws::approval::Store<'a>,
) -> impl Fn(&Job, &str) -> anyhow::Result<Option<(State, bool)>> + 'a {
    move |job: &Job, id: &str| {
        let scope = Scope::environment(&job.customer, &job.env);
        let stored = runtime.block_on(store.read(&scope, id))?;
        Ok(stored.map(|s| (s.request.state, s.request.is_past_expiry(SystemTime::now()))))
    }
}
