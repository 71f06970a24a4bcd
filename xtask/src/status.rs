//! `cargo xtask status [customer [env]]`: the fleet at a glance, read from the state bucket (and,
//! with `--drift`, from AWS): per environment its AMI (id, age, commit), its last release or
//! rollback (who, when, revision, result, as `deploy` and `rollback` record it), its pending
//! approval requests and the holder of its lock; `--drift` plans it and says whether anything
//! would change. Reads only.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use serde::Serialize;
use vending::ami::AmiRecord;
use vending::approval::Scope;
use vending::release::LastRelease;
use vending_aws::approval::Store;

use crate::infra::{connect, fleet, plan_environment};
use crate::output;

// Its help line, exit codes and example are the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct StatusCommand {
    /// Only this customer (a folder under customers/).
    customer: Option<String>,
    /// Only this environment of the customer.
    env: Option<String>,
    /// Plan each environment too (reads AWS): does anything differ from the config?
    #[arg(long)]
    drift: bool,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// Use the local AWS emulator (see `cargo xtask local up`).
    #[arg(long)]
    local: bool,
}

#[derive(Serialize)]
struct Row {
    environment: String,
    ami: Option<Ami>,
    /// The shared load balancer that serves its hosts, once placed (`vending::pool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_load_balancer: Option<String>,
    hosts: Vec<String>,
    last_release: Option<LastRelease>,
    pending_approvals: Vec<String>,
    lock: Option<String>,
    /// With --drift: whether a plan has changes (`None`: not asked, or it could not plan).
    drift: Option<bool>,
    /// Why something could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

#[derive(Serialize)]
struct Ami {
    id: String,
    built_at: String,
    commit: String,
}

impl StatusCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let fleet = match fleet(root, self.customer.as_deref(), self.env.as_deref())? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (runtime, clients) = connect(root, &fleet, self.local)?;
        let bucket = &fleet.platform.state_bucket;
        let store = Store { s3: &clients.s3, bucket };
        let placements = match &fleet.platform.shared_alb.listener {
            vending::config::model::ListenerRef::Lookup { load_balancer, .. } => {
                let (placements, _) = runtime.block_on(vending_aws::infra::pool::read(&clients, bucket))?;
                Some((placements, load_balancer.clone()))
            }
            vending::config::model::ListenerRef::Arn(_) => None,
        };
        let mut rows = Vec::new();
        for customer in fleet.customers.iter().filter(|c| self.customer.as_ref().is_none_or(|n| *n == c.name)) {
            for env in customer.environments.iter().filter(|e| self.env.as_ref().is_none_or(|n| *n == e.name)) {
                let (c, e) = (customer.name.as_str(), env.name.as_str());
                let scope = Scope::environment(c, e);
                let mut problems = Vec::new();
                let mut note = |what: &str, error: anyhow::Error| problems.push(format!("{what}: {error:#}"));
                let record = runtime.block_on(vending_aws::s3::get_json::<AmiRecord>(
                    &clients.s3,
                    bucket,
                    &AmiRecord::current_key(c, e),
                ));
                let ami = match record {
                    Ok(record) => record.map(|r| Ami {
                        id: r.amis.get(&fleet.platform.region).cloned().unwrap_or_default(),
                        built_at: r.built_at.clone(),
                        commit: r.commit.id.chars().take(12).collect(),
                    }),
                    Err(error) => {
                        note("AMI record", error);
                        None
                    }
                };
                let last_release = runtime
                    .block_on(vending_aws::s3::get_json::<LastRelease>(&clients.s3, bucket, &LastRelease::key(c, e)))
                    .unwrap_or_else(|error| {
                        note("last release", error);
                        None
                    });
                let pending_approvals = match runtime.block_on(store.pending(&scope)) {
                    Ok(pending) => pending.into_iter().map(|r| r.id).collect(),
                    Err(error) => {
                        note("approvals", error);
                        Vec::new()
                    }
                };
                let lock = match runtime.block_on(vending_aws::lock::read(&clients.s3, bucket, &scope)) {
                    // A released or expired lock is held by nobody.
                    Ok(found) => found
                        .map(|(l, _)| l)
                        .filter(|l| !l.released && !expired(&l.expires_at))
                        .map(|l| format!("{} ({}, until {})", l.holder, l.command, l.expires_at)),
                    Err(error) => {
                        note("lock", error);
                        None
                    }
                };
                // Drift is a question for what is deployed: without an AMI nothing is yet.
                let drift = match self.drift && ami.is_some() {
                    false => None,
                    true => match plan_environment(&runtime, &clients, &fleet, c, e, self.local) {
                        Ok(planned) => Some(planned.plan.has_changes()),
                        Err(error) => {
                            note("drift", error);
                            None
                        }
                    },
                };
                let shared_load_balancer = placements.as_ref().and_then(|(placements, first)| {
                    let member = placements.member_of(&format!("{c}/{e}"))?;
                    Some(vending::pool::member_name(first, member))
                });
                rows.push(Row {
                    environment: format!("{c}/{e}"),
                    ami,
                    shared_load_balancer,
                    hosts: env.hosts.clone(),
                    last_release,
                    pending_approvals,
                    lock,
                    drift,
                    problems,
                });
            }
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print_rows(&rows);
        }
        let problems = rows.iter().any(|r| !r.problems.is_empty());
        let drifted = rows.iter().any(|r| r.drift == Some(true));
        Ok(ExitCode::from(match (problems, drifted) {
            (true, _) => output::EXIT_PROBLEMS,
            (false, true) => 2,
            (false, false) => output::EXIT_OK,
        }))
    }
}

fn print_rows(rows: &[Row]) {
    for row in rows {
        let who = &row.environment;
        match &row.ami {
            Some(ami) => {
                println!("{who} | AMI {} built {} ago from commit {}", ami.id, age(&ami.built_at), ami.commit)
            }
            None => println!("{who} | AMI: none yet"),
        }
        if let Some(load_balancer) = &row.shared_load_balancer {
            println!("{who} | {} served by shared load balancer {load_balancer}", row.hosts.join(", "));
        }
        match &row.last_release {
            Some(last) => println!(
                "{who} | last {}: revision {} {} {} ago by {} ({})",
                last.kind,
                last.revision_sha256.chars().take(16).collect::<String>(),
                last.result,
                age(&last.at),
                last.by,
                last.deployment_id
            ),
            None => println!("{who} | last release: none recorded"),
        }
        if !row.pending_approvals.is_empty() {
            println!("{who} | pending approval: {}", row.pending_approvals.join(", "));
        }
        if let Some(lock) = &row.lock {
            println!("{who} | locked by {lock}");
        }
        match row.drift {
            Some(true) => println!("{who} | drift: a plan has changes (see `cargo xtask plan`)"),
            Some(false) => println!("{who} | drift: none, AWS is as configured"),
            None => {}
        }
        for problem in &row.problems {
            println!("{who} | error: {problem}");
        }
    }
}

/// Whether an RFC 3339 time is past.
fn expired(at: &str) -> bool {
    humantime::parse_rfc3339_weak(at).is_ok_and(|then| then < SystemTime::now())
}

/// How long ago an RFC 3339 time was, to the minute: `3d 4h`, `12m`.
fn age(at: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(at) else { return format!("? (at {at})") };
    let minutes = SystemTime::now().duration_since(then).map(|d| d.as_secs() / 60).unwrap_or(0);
    match (minutes / (24 * 60), (minutes / 60) % 24, minutes % 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
