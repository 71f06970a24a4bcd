//! Production approval, without IO: what a request binds (the plan as JSON, its SHA-256, the
//! revision and AMI), the states a request goes through, who may decide it (four eyes), the
//! notification's text, the audit events, and where each lives in the state bucket. The AWS
//! layer stores and reads these objects with conditional writes; the command line waits on them.
//!
//! A request moves `pending → approved → used`, or ends `rejected`, `expired` or `void` (the plan
//! changed after it was approved). Only a pending request can be decided, only by someone other
//! than its requester, and only before it expires.
//!
//! **Identities.** Requester and approver are the ARNs STS `GetCallerIdentity` returns. They are
//! compared as principals (`principal`): an IAM user by account and user name (IAM names are
//! unique regardless of case, so compared without it); an assumed role by account, role name and
//! session name, since two people who share a role (IAM Identity Center's permission sets, a
//! break-glass role) are told apart only by their session names; a federated user by account and
//! name; the root user by account. So a person who assumes one role under two session names counts
//! as two people: a team that grants approval through a shared role should require session names
//! that identify the person (Identity Center sets the user name itself; elsewhere an
//! `sts:RoleSessionName` condition of `${aws:username}` or `sts:SourceIdentity` does).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::{Action, Change, Desired, FieldChange, Kind, Plan};

/// How long a request stands when the config does not say (`approval.timeout_minutes`).
pub const DEFAULT_TIMEOUT_MINUTES: u32 = 60;

/// What a request is for: one customer environment, or the platform's shared resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    Environment { customer: String, env: String },
    Platform,
}

impl Scope {
    pub fn environment(customer: &str, env: &str) -> Scope {
        Scope::Environment { customer: customer.to_string(), env: env.to_string() }
    }

    /// `acme/prod`, or `platform`.
    pub fn label(&self) -> String {
        match self {
            Scope::Environment { customer, env } => format!("{customer}/{env}"),
            Scope::Platform => "platform".into(),
        }
    }

    /// The folder of this scope's requests: `approvals/acme/prod/`. The platform's is
    /// `approvals/_platform/`, a name no customer can have.
    pub fn approvals_prefix(&self) -> String {
        format!("approvals/{}/", self.folder())
    }

    /// The folder of this scope's audit events: `audit/acme/prod/`.
    pub fn audit_prefix(&self) -> String {
        format!("audit/{}/", self.folder())
    }

    /// `acme/prod`, or `_platform` (a name no customer can have): where its state objects go.
    pub fn folder(&self) -> String {
        match self {
            Scope::Environment { customer, env } => format!("{customer}/{env}"),
            Scope::Platform => "_platform".into(),
        }
    }

    /// How commands name it: `acme prod`, or `--platform`.
    pub fn arguments(&self) -> String {
        match self {
            Scope::Environment { customer, env } => format!("{customer} {env}"),
            Scope::Platform => "--platform".into(),
        }
    }
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Rejected,
    Expired,
    /// Approved, but the plan changed before it was applied: a new request is needed.
    Void,
    /// Approved and applied (or being applied): it cannot be used twice.
    Used,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Void => "void",
            State::Used => "used",
        }
    }
}

/// The software part of what is approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseBinding {
    /// The SHA-256 of the revision zip that will be deployed (empty when CodeBuild makes it after
    /// the approval: then `build_inputs` is what is approved).
    pub revision_sha256: String,
    /// A revision CodeBuild builds after the approval: the SHA-256 of what it is built from (the
    /// commit, the buildspec and appspec, the build's image, size, timeout and variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_inputs: Option<String>,
    /// The AMI the environment's instances run (from its AMI record).
    pub ami: Option<String>,
    /// `release` or `rollback`.
    pub kind: String,
    /// Deployed with CodeDeploy's `ignoreApplicationStopFailures`: part of what is approved.
    #[serde(default)]
    pub ignore_application_stop_failures: bool,
}

/// Exactly what an approval allows: the infrastructure changes (every changed field, and every
/// field of a resource to create, with live values where there are some) and the release. Its
/// SHA-256 is what a later run must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// `deploy`, `rollback` or `platform deploy`.
    pub command: String,
    pub changes: Vec<ProposedChange>,
    pub release: Option<ReleaseBinding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposedChange {
    pub kind: Kind,
    pub name: String,
    /// `create`, `update` or `replace`.
    pub action: String,
    pub destructive: bool,
    pub fields: Vec<ProposedField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedField {
    pub field: String,
    pub old: Option<String>,
    pub new: String,
    /// Where the change comes from, when the last apply is on record.
    pub origin: Origin,
}

/// Why a field changes: the config (or a new AMI, a new commit) asks for something new, or the
/// live value moved away from what was last applied and the change puts it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Config,
    Drift,
    /// No record of the last apply to tell.
    Unknown,
}

/// What was last applied to a stack: every resource's desired settings, by `kind name`. Kept in
/// the state bucket after each apply, so that a later plan can tell config changes from drift.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApplied {
    pub resources: BTreeMap<String, BTreeMap<String, String>>,
}

impl LastApplied {
    pub fn of(desired: &[Desired]) -> LastApplied {
        let resources = desired
            .iter()
            .map(|d| {
                let fields = d.resource.fields().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                (resource_key(d.kind(), &d.name), fields)
            })
            .collect();
        LastApplied { resources }
    }

    /// Where the state bucket keeps it: `applied/acme/prod.json`, `applied/_platform.json`.
    pub fn key(scope: &Scope) -> String {
        format!("applied/{}.json", scope.folder())
    }
}

fn resource_key(kind: Kind, name: &str) -> String {
    format!("{} {name}", kind.word())
}

impl Proposal {
    /// The proposal of a plan: only what changes. `desired` gives the settings of resources to
    /// create; `last` tells config changes from drift.
    pub fn new(
        command: &str,
        desired: &[Desired],
        plan: &Plan,
        release: Option<ReleaseBinding>,
        last: Option<&LastApplied>,
    ) -> Proposal {
        let changes = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::Unchanged)
            .map(|change| proposed(change, desired, last))
            .collect();
        Proposal { command: command.to_string(), changes, release }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.release.is_none()
    }

    /// The SHA-256 of the proposal's JSON (struct fields in declaration order, maps sorted): the
    /// same plan gives the same hash on any machine.
    pub fn sha256(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(bytes))
    }

    /// One line per change, destructive ones first, then the release: the notification's and the
    /// approver's summary.
    pub fn summary(&self) -> Vec<String> {
        let mut changes: Vec<&ProposedChange> = self.changes.iter().collect();
        changes.sort_by_key(|c| !c.destructive);
        let mut lines: Vec<String> = changes
            .iter()
            .map(|c| {
                let mark = if c.destructive { "DESTRUCTIVE " } else { "" };
                let drift = c.fields.iter().filter(|f| f.origin == Origin::Drift).count();
                let fields: Vec<&str> = c.fields.iter().map(|f| f.field.as_str()).collect();
                let what = if c.action == "create" { String::new() } else { format!(" ({})", fields.join(", ")) };
                let why = match drift {
                    0 if c.fields.iter().all(|f| f.origin == Origin::Unknown) => "",
                    0 => " [from config]",
                    n if n == c.fields.len() => " [undoes drift: live differs from what was last applied]",
                    _ => " [from config, and undoes drift]",
                };
                format!("{mark}{} {} {}{what}{why}", c.action, c.kind.word(), c.name)
            })
            .collect();
        if let Some(release) = &self.release {
            let ami = release.ami.as_deref().map(|a| format!(" on {a}")).unwrap_or_default();
            let what = match &release.build_inputs {
                Some(inputs) => {
                    format!("the revision CodeBuild builds from inputs {}", &inputs[..16.min(inputs.len())])
                }
                None => format!("revision {}", &release.revision_sha256[..16.min(release.revision_sha256.len())]),
            };
            lines.push(format!("{} of {what}{ami}", release.kind));
        }
        lines
    }
}

fn proposed(change: &Change, desired: &[Desired], last: Option<&LastApplied>) -> ProposedChange {
    let desired_fields = desired
        .iter()
        .find(|d| d.kind() == change.kind && d.name == change.name)
        .map(|d| d.resource.fields())
        .unwrap_or_default();
    let last_fields = last.map(|l| l.resources.get(&resource_key(change.kind, &change.name)));
    let (action, fields): (&str, Vec<FieldChange>) = match &change.action {
        Action::Create => (
            "create",
            desired_fields
                .iter()
                .map(|(k, v)| FieldChange { field: k.to_string(), old: None, new: v.clone() })
                .collect(),
        ),
        Action::Update(fields) => ("update", fields.clone()),
        Action::Replace(fields) => ("replace", fields.clone()),
        Action::Unchanged => ("unchanged", Vec::new()),
    };
    let fields = fields
        .into_iter()
        .map(|f| {
            let origin = match last_fields {
                None => Origin::Unknown,
                // The resource was applied before and is gone (or must be made again), or the
                // field's value is what was applied last: live moved, config did not.
                Some(Some(applied)) if applied.get(&f.field) == Some(&f.new) => Origin::Drift,
                Some(_) => Origin::Config,
            };
            ProposedField { origin, field: f.field, old: f.old, new: f.new }
        })
        .collect();
    ProposedChange {
        kind: change.kind,
        name: change.name.clone(),
        action: action.into(),
        destructive: change.destructive,
        fields,
    }
}

/// One approval request, as stored in `approvals/<customer>/<env>/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    #[serde(flatten)]
    pub scope: Scope,
    pub state: State,
    /// The requester's ARN (STS `GetCallerIdentity`).
    pub requester: String,
    pub created_at: String,
    pub expires_at: String,
    /// The commit of the project (config and tool) the plan was made from.
    pub commit: String,
    pub plan_sha256: String,
    pub proposal: Proposal,
    /// Who was notified (the topic's subscribers when the request was made).
    pub notified: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why it ended as it did, after the decision: void, used, expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: String,
    pub at: String,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    pub at: String,
    pub note: String,
}

/// A request's id: its creation time (UTC, to the millisecond) and six hex digits of entropy, so
/// ids sort by time and two requests in one millisecond still differ:
/// `20261202T021530123Z-3fa2c1`.
pub fn new_id(now: SystemTime, entropy: u64) -> String {
    let stamp = humantime::format_rfc3339_millis(now).to_string();
    let compact: String = stamp.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:06x}", entropy & 0xff_ffff)
}

/// A time as requests store it.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A time as audit events store it: to the millisecond, since their keys sort by it.
pub fn precise_timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

impl Request {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        scope: Scope,
        requester: &str,
        now: SystemTime,
        timeout_minutes: u32,
        commit: &str,
        proposal: Proposal,
        notified: Vec<String>,
    ) -> Request {
        let expires = now + Duration::from_secs(u64::from(timeout_minutes) * 60);
        Request {
            id,
            scope,
            state: State::Pending,
            requester: requester.to_string(),
            created_at: timestamp(now),
            expires_at: timestamp(expires),
            commit: commit.to_string(),
            plan_sha256: proposal.sha256(),
            proposal,
            notified,
            decision: None,
            closed: None,
        }
    }

    /// `approvals/acme/prod/<id>.json`.
    pub fn key(&self) -> String {
        format!("{}{}.json", self.scope.approvals_prefix(), self.id)
    }

    pub fn is_past_expiry(&self, now: SystemTime) -> bool {
        parse_time(&self.expires_at).is_none_or(|expires| now >= expires)
    }

    /// Whether the stored proposal is the one its hash names: what an approver reads must be what
    /// a later run compares with (a request edited in the bucket is not).
    pub fn is_intact(&self) -> bool {
        self.proposal.sha256() == self.plan_sha256
    }

    /// Why this request does not allow applying `plan_sha256` at `now`, if it does not: it must be
    /// intact, approved (with a decision that says so) by someone other than its requester, for
    /// this hash, and not past its expiry (an approval is used before the request expires).
    pub fn approval_problem(&self, plan_sha256: &str, now: SystemTime) -> Option<String> {
        let decision = self.decision.as_ref().filter(|d| d.approved);
        if !self.is_intact() {
            Some("its stored plan does not match its hash: it was changed in the state bucket".into())
        } else if self.state != State::Approved || decision.is_none() {
            Some(format!("it is {}, not approved", self.state.word()))
        } else if decision.is_some_and(|d| same_person(&d.by, &self.requester)) {
            Some("its approver is its requester".into())
        } else if self.plan_sha256 != plan_sha256 {
            Some("it approves another plan".into())
        } else if self.is_past_expiry(now) {
            Some(format!("it expired at {} before it was used", self.expires_at))
        } else {
            None
        }
    }

    /// Approves or rejects it, or says why that cannot be done. A pending request past its expiry
    /// comes back expired (to be recorded as such) with the refusal.
    pub fn decide(&self, by: &str, now: SystemTime, approve: bool, reason: Option<&str>) -> Result<Request, Refused> {
        if !self.is_intact() {
            return Err(Refused::Tampered);
        }
        if self.state != State::Pending {
            let by = self.decision.as_ref().map(|d| format!(" by {} at {}", d.by, d.at)).unwrap_or_default();
            return Err(Refused::NotPending { state: self.state, detail: by });
        }
        if self.is_past_expiry(now) {
            return Err(Refused::Expired(Box::new(self.close(State::Expired, now, "expired before a decision"))));
        }
        if approve && same_person(by, &self.requester) {
            return Err(Refused::OwnRequest { requester: self.requester.clone() });
        }
        let mut decided = self.clone();
        decided.state = if approve { State::Approved } else { State::Rejected };
        decided.decision = Some(Decision {
            by: by.to_string(),
            at: timestamp(now),
            approved: approve,
            reason: reason.map(str::to_string),
        });
        Ok(decided)
    }

    /// The request in a final state, with why.
    pub fn close(&self, state: State, now: SystemTime, note: &str) -> Request {
        let mut closed = self.clone();
        closed.state = state;
        closed.closed = Some(Closing { at: timestamp(now), note: note.to_string() });
        closed
    }

    /// The e-mail: subject and body. `flags` go on the commands it gives (`--local`).
    pub fn notification(&self, flags: &str) -> (String, String) {
        let label = self.scope.label();
        let changes = self.proposal.changes.len();
        let destructive = self.proposal.changes.iter().filter(|c| c.destructive).count();
        let mut what = format!("{} change(s)", changes);
        if destructive > 0 {
            what.push_str(&format!(", {destructive} DESTRUCTIVE"));
        }
        if self.proposal.release.is_some() {
            what.push_str(", a release");
        }
        let subject = subject(&format!("Approval needed: {label} {} ({what})", self.proposal.command));
        let args = self.scope.arguments();
        let mut body = String::new();
        body.push_str(&format!("{} asks to run `{}` on {label}.\n\n", self.requester, self.proposal.command));
        body.push_str(&format!(
            "Request: {}\nCommit: {}\nExpires: {}\nPlan SHA-256: {}\n\n",
            self.id, self.commit, self.expires_at, self.plan_sha256
        ));
        body.push_str("What changes (destructive first):\n");
        for line in self.proposal.summary() {
            body.push_str(&format!("  - {line}\n"));
        }
        if self.proposal.changes.iter().flat_map(|c| &c.fields).all(|f| f.origin == Origin::Unknown)
            && !self.proposal.changes.is_empty()
        {
            body.push_str("  (no record of the last apply: config changes and drift cannot be told apart)\n");
        }
        body.push_str(&format!(
            "\nTo see the whole plan and approve it (another person than the requester):\n  cargo xtask approve {args} {}{flags}\nTo reject it:\n  cargo xtask reject {args} {}{flags} --reason \"...\"\n",
            self.id, self.id
        ));
        (subject, body)
    }
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// The stored plan is not the one its hash names (edited in the bucket).
    Tampered,
    NotPending {
        state: State,
        detail: String,
    },
    Expired(Box<Request>),
    OwnRequest {
        requester: String,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Tampered => f.write_str(
                "its stored plan does not match its plan hash: the request was changed in the state bucket; ask for a new one",
            ),
            Refused::NotPending { state, detail } => {
                write!(f, "the request is {}{detail}: it cannot be decided again", state.word())
            }
            Refused::Expired(request) => {
                write!(f, "the request expired at {}: ask for a new one by deploying again", request.expires_at)
            }
            Refused::OwnRequest { requester } => {
                write!(f, "you ({requester}) made this request: a second person must approve it (four eyes)")
            }
        }
    }
}

/// An SNS subject: printable ASCII on one line, under 100 characters.
pub fn subject(text: &str) -> String {
    let ascii: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    if ascii.len() <= 99 {
        return ascii;
    }
    format!("{}...", &ascii[..96])
}

/// A principal, as four-eyes compares them (see the module's doc).
pub fn principal(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let (account, resource) = match parts.as_slice() {
        ["arn", _partition, _service, _region, account, resource] => (*account, *resource),
        _ => return arn.to_string(),
    };
    let segments: Vec<&str> = resource.split('/').collect();
    match segments.as_slice() {
        ["root"] => format!("{account}:root"),
        ["user", .., name] => format!("{account}:user:{}", name.to_lowercase()),
        ["assumed-role", role, session] => format!("{account}:role:{}:{session}", role.to_lowercase()),
        ["federated-user", name] => format!("{account}:federated:{name}"),
        _ => arn.to_string(),
    }
}

pub fn same_person(a: &str, b: &str) -> bool {
    principal(a) == principal(b)
}

/// One line of the audit log, stored once under `audit/<customer>/<env>/` and never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: String,
    /// `requested`, `approved`, `rejected`, `expired`, `void`, `apply-started`, `applied`,
    /// `apply-failed`.
    pub event: String,
    pub who: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl AuditEvent {
    /// An event at `now`, about `request` when there is one (its id and plan hash go with it).
    pub fn new(event: &str, who: &str, request: Option<&Request>, detail: String, now: SystemTime) -> AuditEvent {
        AuditEvent {
            at: precise_timestamp(now),
            event: event.to_string(),
            who: who.to_string(),
            request: request.map(|r| r.id.clone()),
            plan_sha256: request.map(|r| r.plan_sha256.clone()),
            detail,
        }
    }

    /// Its key: the time first (so a listing is in time order), then the event and entropy.
    pub fn key(&self, scope: &Scope, entropy: u64) -> String {
        let at: String = self.at.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        format!("{}{at}-{:06x}-{}.json", scope.audit_prefix(), entropy & 0xff_ffff, self.event)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
