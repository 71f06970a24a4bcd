//! Production approval: the gate that `deploy`, `rollback` and `platform deploy` pass between
//! their plan and their first change, and the commands of the people who decide
//! (`approve`, `reject`) or look (`approvals`, `history`).
//!
//! The gate asks only when the scope requires approval (production, `approval = true`, a platform
//! with approvers) and the run would change something. It stores a request bound to the exact
//! proposal (its SHA-256), e-mails the approvers through the scope's SNS topic, and waits: a line
//! at most every minute, Ctrl-C leaves the request pending. On approval it plans again and goes on
//! only when the new proposal has the approved hash; otherwise the approval is void and it asks
//! anew. Every step is in the audit log. The rules themselves are `vending::approval`'s.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use vending::approval::{new_id, same_person, AuditEvent, Proposal, Refused, Request, Scope, State};
use vending::config::model::{Approval, Fleet};
use vending_aws::approval::{entropy, Store, Stored};
use vending_aws::infra::Clients;

use crate::output::EXIT_PROBLEMS;

/// `deploy`/`rollback`/`platform deploy`: a request waits for its decision (`--no-wait`, Ctrl-C).
pub const EXIT_PENDING: u8 = 3;
/// The request was rejected.
pub const EXIT_REJECTED: u8 = 4;
/// The request expired before anyone decided.
pub const EXIT_EXPIRED: u8 = 5;

/// How often a waiting command reads its request.
const POLL: Duration = Duration::from_secs(2);
/// How often a waiting command says it still waits.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// The gate of one command on one scope.
pub struct Gate<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub clients: &'a Clients,
    pub root: &'a Path,
    pub bucket: &'a str,
    pub region: &'a str,
    pub scope: Scope,
    pub approval: Approval,
    /// The scope's approval topic (SNS).
    pub topic: &'a str,
    /// `cargo xtask deploy acme prod --local`: how to run the command again.
    pub command_line: String,
    /// Record the request and exit (EXIT_PENDING) instead of waiting.
    pub no_wait: bool,
    /// Go on with this request instead of asking anew.
    pub resume: Option<String>,
    /// ` --local`, or nothing: on the commands printed and e-mailed.
    pub flags: &'a str,
}

/// What the gate decided.
pub enum Pass {
    /// Not gated, or nothing to change: nobody is asked.
    Open,
    /// Approved for exactly this proposal; the request is now `used`.
    Approved(Box<Stored>),
    /// Stop here with this exit code (pending, rejected, expired).
    Stop(ExitCode),
}

enum Waited {
    Approved(Box<Stored>),
    Stop(ExitCode),
}

impl Gate<'_> {
    fn store(&self) -> Store<'_> {
        Store { s3: &self.clients.s3, bucket: self.bucket }
    }

    fn label(&self) -> String {
        self.scope.label()
    }

    fn block_on<T>(&self, future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        self.runtime.block_on(future)
    }

    fn audit(&self, event: &str, who: &str, request: Option<&Request>, detail: String) -> anyhow::Result<()> {
        let event = AuditEvent::new(event, who, request, detail, SystemTime::now());
        self.block_on(self.store().audit(&self.scope, &event))
    }

    /// Passes the gate with `proposal`, or says why not. Once approved, `lock` takes the
    /// scope's lock (`Some(code)`: it is held, stop) before `replan` makes the proposal again from
    /// what AWS reports now, so that nothing changes between that check and the apply.
    pub fn pass(
        &self,
        proposal: Proposal,
        lock: &mut dyn FnMut() -> anyhow::Result<Option<ExitCode>>,
        replan: &mut dyn FnMut() -> anyhow::Result<Proposal>,
    ) -> anyhow::Result<Pass> {
        if !self.approval.required || proposal.is_empty() {
            if let Some(id) = &self.resume {
                println!("{} | nothing needs approval: request {id} is not used", self.label());
            }
            return Ok(Pass::Open);
        }
        let me = self.block_on(vending_aws::identity::caller(&self.clients.sts))?.arn;
        let mut stored = match &self.resume {
            Some(id) => {
                let stored = self
                    .block_on(self.store().read(&self.scope, id))?
                    .with_context(|| format!("{}: there is no approval request {id}", self.label()))?;
                if stored.request.state == State::Pending && stored.request.plan_sha256 != proposal.sha256() {
                    self.make_void(&stored, &me, &proposal, "before a decision")?;
                    self.request(&me, proposal)?
                } else {
                    stored
                }
            }
            None => match self.waiting_request(&me, &proposal)? {
                Some(stored) => stored,
                None => self.request(&me, proposal)?,
            },
        };
        loop {
            let approved = match self.wait(&stored)? {
                Waited::Stop(code) => return Ok(Pass::Stop(code)),
                Waited::Approved(approved) => approved,
            };
            let request = &approved.request;
            // The stored request is checked, not trusted: intact, approved by another person,
            // not expired.
            if let Some(problem) = request.approval_problem(&request.plan_sha256, SystemTime::now()) {
                if request.is_intact() && request.is_past_expiry(SystemTime::now()) {
                    let expired =
                        request.close(State::Expired, SystemTime::now(), "approved but not used before it expired");
                    if self.block_on(self.store().update(&approved, &expired))?.is_ok() {
                        self.audit("expired", &me, Some(&expired), String::new())?;
                    }
                    eprintln!(
                        "error: {}: request {}: {problem}; run the command again to ask anew",
                        self.label(),
                        request.id
                    );
                    return Ok(Pass::Stop(ExitCode::from(EXIT_EXPIRED)));
                }
                bail!("{}: request {} cannot be used: {problem}", self.label(), request.id);
            }
            if let Some(code) = lock()? {
                println!(
                    "{} | request {} stays approved: resume with `{} --approval {}`",
                    self.label(),
                    request.id,
                    self.command_line,
                    request.id
                );
                return Ok(Pass::Stop(code));
            }
            let now = replan()?;
            if now.sha256() == request.plan_sha256 {
                let by = request.decision.as_ref().map(|d| d.by.clone()).unwrap_or_default();
                let used = request.close(State::Used, SystemTime::now(), &format!("applied by {me}"));
                let Ok(used) = self.block_on(self.store().update(&approved, &used))? else {
                    bail!("{}: request {} was used by another run meanwhile", self.label(), request.id);
                };
                self.audit("apply-started", &me, Some(&used.request), String::new())?;
                println!("{} | request {} approved by {by}: applying", self.label(), used.request.id);
                return Ok(Pass::Approved(Box::new(used)));
            }
            self.make_void(&approved, &me, &now, "after it was approved")?;
            if now.is_empty() {
                println!("{} | nothing to change any more: nobody is asked", self.label());
                return Ok(Pass::Open);
            }
            stored = self.request(&me, now)?;
        }
    }

    /// A request this person made for this same plan that still waits (left by Ctrl-C or
    /// `--no-wait`): waited for again rather than asked twice.
    fn waiting_request(&self, me: &str, proposal: &Proposal) -> anyhow::Result<Option<Stored>> {
        let hash = proposal.sha256();
        let pending = self.block_on(self.store().pending(&self.scope))?;
        let Some(mine) =
            pending.iter().rev().find(|r| r.plan_sha256 == hash && r.is_intact() && same_person(&r.requester, me))
        else {
            return Ok(None);
        };
        println!(
            "{} | request {} for this same plan waits for a decision already: waiting for it",
            self.label(),
            mine.id
        );
        self.block_on(self.store().read(&self.scope, &mine.id))
    }

    /// Records that the plan changed under a request: it cannot be used.
    fn make_void(&self, stored: &Stored, me: &str, now: &Proposal, when: &str) -> anyhow::Result<()> {
        let id = &stored.request.id;
        let note = format!(
            "the plan changed {when} (approved {}, now {}): another deploy ran, AWS changed or the config was edited",
            &stored.request.plan_sha256[..12],
            &now.sha256()[..12]
        );
        let void = stored.request.close(State::Void, SystemTime::now(), &note);
        if self.block_on(self.store().update(stored, &void))?.is_err() {
            bail!("{}: request {id} changed while it was being made void; run the command again", self.label());
        }
        self.audit("void", me, Some(&void), note.clone())?;
        println!("{} | request {id} is void: {note}; asking for a new approval", self.label());
        Ok(())
    }

    /// Stores a new request and notifies the approvers.
    fn request(&self, me: &str, proposal: Proposal) -> anyhow::Result<Stored> {
        let label = self.label();
        let commit =
            crate::git::head_commit(self.root).map(|c| c.id).unwrap_or_else(|_| "(not a git repository)".into());
        let topic = self.block_on(vending_aws::infra::read_approval_topic(self.clients, self.region, self.topic))?;
        let (arn, confirmed) = match &topic {
            Some((arn, topic)) => {
                let confirmed: Vec<String> =
                    topic.subscribers.iter().filter(|s| !topic.pending.contains(s)).cloned().collect();
                (Some(arn.clone()), confirmed)
            }
            None => (None, Vec::new()),
        };
        let now = SystemTime::now();
        let id = new_id(now, entropy());
        let request =
            Request::new(id, self.scope.clone(), me, now, self.approval.timeout_minutes, &commit, proposal, confirmed);
        let stored = self.block_on(self.store().create(&request))?;
        self.audit("requested", me, Some(&request), format!("{} change(s)", request.proposal.changes.len()))?;
        let (subject, body) = request.notification(self.flags);
        match &arn {
            Some(arn) => {
                self.block_on(vending_aws::infra::publish(self.clients, arn, &subject, &body))?;
            }
            None => println!("{label} | warning: no approval topic {}: nobody was e-mailed", self.topic),
        }
        if request.notified.is_empty() {
            println!(
                "{label} | warning: no approver has confirmed the subscription to {} yet: nobody gets this e-mail; pass the approve command below on yourself",
                self.topic
            );
        }
        println!(
            "{label} | approval needed: request {} ({} change(s)), notified {}; it stands until {}",
            request.id,
            request.proposal.changes.len(),
            if request.notified.is_empty() { "nobody".to_string() } else { request.notified.join(", ") },
            request.expires_at
        );
        for line in request.proposal.summary() {
            println!("{label} |   {line}");
        }
        println!(
            "{label} | another person approves with: cargo xtask approve {} {}{}",
            self.scope.arguments(),
            request.id,
            self.flags
        );
        Ok(stored)
    }

    /// Waits for the request's decision (or, with `--no-wait`, looks once).
    fn wait(&self, stored: &Stored) -> anyhow::Result<Waited> {
        let label = self.label();
        let id = stored.request.id.clone();
        let resume = format!("{} --approval {id}", self.command_line);
        crate::interrupt::install()?;
        let presses = crate::interrupt::presses();
        crate::interrupt::set_notes(None, format!("{label}: request {id} stays pending; resume with `{resume}`"));
        let mut said = Instant::now();
        let mut first = true;
        let mut progress: Option<vending_release::progress::Progress> = None;
        loop {
            let current = self
                .block_on(self.store().read(&self.scope, &id))?
                .with_context(|| format!("{label}: approval request {id} is gone from the state bucket"))?;
            let request = &current.request;
            if request.state != State::Pending {
                // Decided: the spinner goes before what is said about it.
                progress = None;
            }
            match request.state {
                State::Approved => return Ok(Waited::Approved(Box::new(current))),
                State::Rejected => {
                    let decision = request.decision.as_ref();
                    eprintln!(
                        "error: {label}: request {id} was rejected by {}: {} (nothing was changed)",
                        decision.map_or("someone", |d| d.by.as_str()),
                        decision.and_then(|d| d.reason.as_deref()).unwrap_or("no reason given")
                    );
                    return Ok(Waited::Stop(ExitCode::from(EXIT_REJECTED)));
                }
                State::Expired => {
                    eprintln!("error: {label}: request {id} expired at {} without a decision (nothing was changed); run the command again to ask anew", request.expires_at);
                    return Ok(Waited::Stop(ExitCode::from(EXIT_EXPIRED)));
                }
                State::Void | State::Used => bail!(
                    "{label}: request {id} is {}: it cannot be used again; run `{}` without --approval to ask anew",
                    request.state.word(),
                    self.command_line
                ),
                State::Pending => {}
            }
            let now = SystemTime::now();
            if request.is_past_expiry(now) {
                let expired = request.close(State::Expired, now, "expired while waiting for a decision");
                if self.block_on(self.store().update(&current, &expired))?.is_ok() {
                    self.audit("expired", &request.requester, Some(&expired), String::new())?;
                }
                continue;
            }
            if self.no_wait {
                println!("{label} | request {id} waits for a decision; nothing was changed. Resume with: {resume}");
                crate::report::note("approval", &id);
                return Ok(Waited::Stop(ExitCode::from(EXIT_PENDING)));
            }
            if crate::interrupt::presses() > presses {
                drop(progress.take());
                eprintln!(
                    "{label}: interrupted: request {id} stays pending and nothing was changed; resume with `{resume}`"
                );
                return Ok(Waited::Stop(ExitCode::from(EXIT_PENDING)));
            }
            if first {
                let waiting = progress.insert(vending_release::progress::Progress::start(
                    &label,
                    &format!("waiting for a decision on request {id}"),
                ));
                waiting.line(&format!(
                    "waiting for a decision on request {id} until {} (Ctrl-C leaves it pending)",
                    request.expires_at
                ));
                first = false;
            } else if let Some(waiting) = progress.as_ref().filter(|_| said.elapsed() >= PROGRESS_EVERY) {
                waiting.line(&format!("still waiting for a decision on request {id} (until {})", request.expires_at));
                said = Instant::now();
            }
            let end = Instant::now() + POLL;
            while Instant::now() < end && crate::interrupt::presses() == presses {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Records how the approved apply ended; a failure to record it is a warning, never the
    /// command's result.
    pub fn finish(&self, used: &Stored, outcome: &anyhow::Result<ExitCode>) {
        if let Err(e) = self.record_outcome(used, outcome) {
            eprintln!("warning: {}: the outcome is not in the audit log: {e:#}", self.label());
        }
    }

    fn record_outcome(&self, used: &Stored, outcome: &anyhow::Result<ExitCode>) -> anyhow::Result<()> {
        let me = self.block_on(vending_aws::identity::caller(&self.clients.sts))?.arn;
        let (event, detail) = match outcome {
            Ok(code) if *code == ExitCode::SUCCESS => ("applied", String::new()),
            Ok(code) => ("apply-failed", format!("exit {code:?}")),
            Err(e) => ("apply-failed", format!("{e:#}")),
        };
        self.audit(event, &me, Some(&used.request), detail)
    }
}

/// Which environment (or the platform) a command is about, on AWS or the emulator.
#[derive(Args)]
pub struct Target {
    /// CUSTOMER ENV, or nothing with --platform; `approve` and `reject` take a request ID after
    /// them (by default the only pending request).
    #[arg(value_name = "ARGS", num_args = 0..=3)]
    pub args: Vec<String>,
    /// The platform (what `platform deploy` changes).
    #[arg(long)]
    pub platform: bool,
    /// Use the local AWS emulator (see `cargo xtask local up`).
    #[arg(long)]
    pub local: bool,
}

impl Target {
    /// The scope, and the argument after it (a request id) if `extra` allows one.
    pub fn scope(&self, fleet: &Fleet, extra: bool) -> anyhow::Result<(Scope, Option<String>)> {
        let (scope, rest) = match (self.platform, self.args.as_slice()) {
            (true, rest) => (Scope::Platform, rest),
            (false, [customer, env, rest @ ..]) => {
                crate::output::environment(fleet, customer, env)?;
                (Scope::environment(customer, env), rest)
            }
            (false, _) => bail!("name a customer and an environment (`acme prod`), or --platform"),
        };
        match rest {
            [] => Ok((scope, None)),
            [id] if extra => Ok((scope, Some(id.clone()))),
            more => bail!("unexpected argument(s): {}", more.join(" ")),
        }
    }
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct ApproveCommand {
    #[command(flatten)]
    target: Target,
    /// Do not ask on the terminal (scripts).
    #[arg(long)]
    yes: bool,
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct RejectCommand {
    #[command(flatten)]
    target: Target,
    /// Why: the requester reads it.
    #[arg(long, required = true)]
    reason: String,
}

impl ApproveCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        decide(root, &self.target, Some(self.yes), None)
    }
}

impl RejectCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        decide(root, &self.target, None, Some(&self.reason))
    }
}

/// Approves (`yes` is Some) or rejects (`reason` is Some) a request.
fn decide(root: &Path, target: &Target, yes: Option<bool>, reason: Option<&str>) -> anyhow::Result<ExitCode> {
    let fleet = match crate::infra::fleet(root, None, None)? {
        Ok(fleet) => fleet,
        Err(code) => return Ok(code),
    };
    let (scope, id) = target.scope(&fleet, true)?;
    let (runtime, clients) = crate::infra::connect(root, &fleet, target.local)?;
    let store = Store { s3: &clients.s3, bucket: &fleet.platform.state_bucket };
    let label = scope.label();
    let stored = match id {
        Some(id) => runtime
            .block_on(store.read(&scope, &id))?
            .with_context(|| format!("{label}: there is no approval request {id}"))?,
        None => {
            let pending = runtime.block_on(store.pending(&scope))?;
            match pending.as_slice() {
                [] => bail!("{label}: no approval request is pending"),
                [only] => runtime.block_on(store.read(&scope, &only.id))?.context("the request vanished")?,
                several => {
                    eprintln!("{label}: {} requests are pending; name one:", several.len());
                    for r in several {
                        eprintln!("  {}  by {}  until {}", r.id, r.requester, r.expires_at);
                    }
                    return Ok(ExitCode::from(crate::output::EXIT_CANNOT_RUN));
                }
            }
        }
    };
    print_request(&stored.request);
    let me = runtime.block_on(vending_aws::identity::caller(&clients.sts))?.arn;
    let approve = yes.is_some();
    let now = SystemTime::now();
    let decided = match stored.request.decide(&me, now, approve, reason) {
        Ok(decided) => decided,
        Err(refused) => {
            if let Refused::Expired(expired) = &refused {
                if runtime.block_on(store.update(&stored, expired))?.is_ok() {
                    record(&runtime, &store, &scope, "expired", &me, expired, String::new())?;
                }
            }
            eprintln!("error: {label}: request {}: {refused} (nothing was recorded)", stored.request.id);
            return Ok(ExitCode::from(EXIT_PROBLEMS));
        }
    };
    let decided = if yes == Some(false) {
        if !confirm(&label, &stored.request.id)? {
            println!("not approved: nothing was recorded");
            return Ok(ExitCode::from(EXIT_PROBLEMS));
        }
        // The answer may come late: decided again at the time it came.
        match stored.request.decide(&me, SystemTime::now(), approve, reason) {
            Ok(decided) => decided,
            Err(refused) => {
                eprintln!("error: {label}: request {}: {refused} (nothing was recorded)", stored.request.id);
                return Ok(ExitCode::from(EXIT_PROBLEMS));
            }
        }
    } else {
        decided
    };
    match runtime.block_on(store.update(&stored, &decided))? {
        Ok(_) => {}
        Err(_) => {
            let now = runtime.block_on(store.read(&scope, &stored.request.id))?;
            let by = now
                .as_ref()
                .and_then(|s| s.request.decision.clone())
                .map(|d| format!(" by {}", d.by))
                .unwrap_or_default();
            let state = now.map_or("gone", |s| s.request.state.word());
            eprintln!(
                "error: {label}: request {} was decided meanwhile ({state}{by}); yours was not recorded",
                stored.request.id
            );
            return Ok(ExitCode::from(EXIT_PROBLEMS));
        }
    }
    let event = if approve { "approved" } else { "rejected" };
    record(&runtime, &store, &scope, event, &me, &decided, reason.unwrap_or_default().to_string())?;
    println!("{label} | request {} {event} by {me}", decided.id);
    Ok(ExitCode::SUCCESS)
}

fn record(
    runtime: &tokio::runtime::Runtime,
    store: &Store<'_>,
    scope: &Scope,
    event: &str,
    who: &str,
    request: &Request,
    detail: String,
) -> anyhow::Result<()> {
    let event = AuditEvent::new(event, who, Some(request), detail, SystemTime::now());
    runtime.block_on(store.audit(scope, &event))
}

/// Asks on the terminal; refuses to guess without one.
fn confirm(label: &str, id: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask on: read the plan above, then approve with --yes");
    }
    print!("approve request {id} for {label}? type `yes`: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// What an approver reads: the request and every change it allows.
fn print_request(request: &Request) {
    println!("request {} for {} ({})", request.id, request.scope.label(), request.state.word());
    println!("  command:   {}", request.proposal.command);
    println!("  requester: {}", request.requester);
    println!("  created:   {}   expires: {}", request.created_at, request.expires_at);
    println!("  commit:    {}", request.commit);
    println!("  plan:      sha256 {}", request.plan_sha256);
    for change in &request.proposal.changes {
        let mark = if change.destructive { "  (DESTRUCTIVE)" } else { "" };
        println!("  {} {} {}{mark}", change.action, change.kind.word(), change.name);
        for f in &change.fields {
            let origin = match f.origin {
                vending::approval::Origin::Config => "",
                vending::approval::Origin::Drift => "  [undoes drift]",
                vending::approval::Origin::Unknown => "",
            };
            println!("      {}: {} → {}{origin}", f.field, f.old.as_deref().unwrap_or("(none)"), f.new);
        }
    }
    if let Some(release) = &request.proposal.release {
        let what = match &release.build_inputs {
            Some(inputs) => format!("the revision CodeBuild builds from inputs sha256 {inputs}"),
            None => format!("revision sha256 {}", release.revision_sha256),
        };
        println!(
            "  {} of {what}{}",
            release.kind,
            release.ami.as_deref().map(|a| format!(" on {a}")).unwrap_or_default()
        );
    }
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct ApprovalsCommand {
    /// [CUSTOMER [ENV]]: the pending requests of the whole fleet, a customer or an environment.
    #[arg(value_name = "ARGS", num_args = 0..=2)]
    args: Vec<String>,
    /// The platform's requests only.
    #[arg(long)]
    platform: bool,
    #[arg(long)]
    local: bool,
    #[arg(long)]
    json: bool,
}

impl ApprovalsCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match crate::infra::fleet(root, None, None)? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let prefix = match (self.platform, self.args.as_slice()) {
            (true, []) => Scope::Platform.approvals_prefix(),
            (true, _) => bail!("--platform takes no customer or environment"),
            (false, []) => "approvals/".to_string(),
            (false, [customer]) => format!("approvals/{customer}/"),
            (false, [customer, env]) => Scope::environment(customer, env).approvals_prefix(),
            (false, _) => bail!("at most a customer and an environment"),
        };
        let (runtime, clients) = crate::infra::connect(root, &fleet, self.local)?;
        let store = Store { s3: &clients.s3, bucket: &fleet.platform.state_bucket };
        let now = SystemTime::now();
        let pending: Vec<Request> = runtime
            .block_on(store.list(&prefix))?
            .into_iter()
            .filter(|r| r.state == State::Pending && !r.is_past_expiry(now))
            .collect();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&pending)?);
            return Ok(ExitCode::SUCCESS);
        }
        if pending.is_empty() {
            println!("no approval request is pending");
        }
        for r in &pending {
            println!(
                "{}  {}  {}  by {}  until {}  ({} change(s))",
                r.id,
                r.scope.label(),
                r.proposal.command,
                r.requester,
                r.expires_at,
                r.proposal.changes.len()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct HistoryCommand {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    json: bool,
}

impl HistoryCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match crate::infra::fleet(root, None, None)? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (scope, _) = self.target.scope(&fleet, false)?;
        let (runtime, clients) = crate::infra::connect(root, &fleet, self.target.local)?;
        let store = Store { s3: &clients.s3, bucket: &fleet.platform.state_bucket };
        let events = runtime.block_on(store.history(&scope))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&events)?);
            return Ok(ExitCode::SUCCESS);
        }
        if events.is_empty() {
            println!("{}: nothing on record", scope.label());
        }
        for e in &events {
            let plan =
                e.plan_sha256.as_deref().map(|p| format!("  plan {}", &p[..12.min(p.len())])).unwrap_or_default();
            let request = e.request.as_deref().map(|r| format!("  request {r}")).unwrap_or_default();
            let detail = if e.detail.is_empty() { String::new() } else { format!("  ({})", e.detail) };
            println!("{}  {:<13}  {}{request}{plan}{detail}", e.at, e.event, e.who);
        }
        Ok(ExitCode::SUCCESS)
    }
}
