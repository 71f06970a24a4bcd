//! The lock of a customer environment (or of the platform), without IO: one JSON object per
//! scope in the state bucket, `locks/<customer>/<env>.json`, that says who holds it (STS
//! identity, host, process), for which command and commit, since and until when. The AWS layer
//! takes it with a conditional put (`If-None-Match: *`, or `If-Match` on the ETag of a released,
//! expired or stale one) and renews and releases it with `If-Match`; here is only what a lock says
//! and whether it may be taken.
//!
//! A holder renews its lock while it works (three times per `TTL`). A lock past its
//! expiry belongs to a run that crashed or lost its network: it may be taken over. A lock whose
//! holder ran on this host and whose process is gone is stale at once. A released lock is free.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::approval::{timestamp, Scope};

/// How long a lock stands without renewal: long enough for a slow network to renew in time,
/// short enough that a crashed run blocks others for minutes, not hours.
pub const TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The holder's ARN (STS `GetCallerIdentity`).
    pub holder: String,
    pub host: String,
    /// Which running system and pid namespace the pid belongs to (boot id and namespace): a
    /// container that shares the host's name does not see the host's processes, so the host
    /// name alone cannot tell whether the holder's process is gone.
    #[serde(default)]
    pub machine: String,
    pub pid: u32,
    /// The holder process's start time (clock ticks since boot), so that a reused pid is not
    /// taken for the holder.
    #[serde(default)]
    pub pid_started: u64,
    /// A random id of the holding run, so that it knows its own lock.
    pub run: String,
    /// `deploy acme prod`, `ami globex dev`, `platform deploy`.
    pub command: String,
    pub commit: String,
    pub started_at: String,
    pub expires_at: String,
    /// Released by its holder (or by `lock release --force`): free to take.
    #[serde(default)]
    pub released: bool,
}

/// The process that takes a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub host: String,
    pub machine: String,
    pub pid: u32,
    pub started: u64,
}

/// What a lock found in the bucket means for someone who wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Released: take it.
    Free,
    /// Past its expiry: the holder crashed or lost its network; take it over (logged).
    Expired,
    /// Its holder ran on this host and its process is gone: take it over (logged).
    Stale,
    /// Someone holds it.
    Held,
}

impl Lock {
    /// `locks/acme/prod.json`, `locks/_platform.json`.
    pub fn key(scope: &Scope) -> String {
        format!("locks/{}.json", scope.folder())
    }

    /// A lock taken at `now` for `ttl` (`TTL`, unless the operator set another).
    pub fn new(
        holder: &str,
        process: &Process,
        run: &str,
        command: &str,
        commit: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Lock {
        Lock {
            holder: holder.to_string(),
            host: process.host.clone(),
            machine: process.machine.clone(),
            pid: process.pid,
            pid_started: process.started,
            run: run.to_string(),
            command: command.to_string(),
            commit: commit.to_string(),
            started_at: timestamp(now),
            expires_at: timestamp(now + ttl),
            released: false,
        }
    }

    /// The same lock, renewed at `now`.
    pub fn renewed(&self, now: SystemTime, ttl: Duration) -> Lock {
        Lock { expires_at: timestamp(now + ttl), ..self.clone() }
    }

    pub fn released(&self) -> Lock {
        Lock { released: true, ..self.clone() }
    }

    /// Whether it may be taken by a run on `machine`; `alive(pid, started)` tells whether that
    /// process of this machine still runs (and is this tool). A lock from another machine, or one
    /// that does not say which, is waited for until it expires.
    pub fn standing(&self, now: SystemTime, machine: &str, alive: impl Fn(u32, u64) -> bool) -> Standing {
        if self.released {
            return Standing::Free;
        }
        let expired = humantime::parse_rfc3339(&self.expires_at).is_ok_and(|expires| now >= expires);
        if expired {
            Standing::Expired
        } else if !self.machine.is_empty() && self.machine == machine && !alive(self.pid, self.pid_started) {
            Standing::Stale
        } else {
            Standing::Held
        }
    }

    /// "alice (arn) on host h, pid 42: `deploy acme prod` at commit c0ffee since T (until E)".
    pub fn describe(&self) -> String {
        let commit = if self.commit.is_empty() {
            String::new()
        } else {
            format!(" at commit {}", &self.commit[..12.min(self.commit.len())])
        };
        format!(
            "{} on host {} (pid {}): `{}`{commit} since {} (until {} unless renewed)",
            self.holder, self.host, self.pid, self.command, self.started_at, self.expires_at
        )
    }
}
