//! Locks in the state bucket (the rules are `vending::lock`'s): taken with a conditional put
//! (`If-None-Match: *` where there is none, `If-Match` over a released, expired or stale one),
//! renewed and released with `If-Match` on the ETag the holder last wrote. Two runs racing for a
//! lock: one put wins, the other reads the winner.

use std::time::SystemTime;

use anyhow::bail;
use vending::approval::Scope;
use vending::lock::{Lock, Standing};

use crate::s3::{self, Condition, Conflict};

/// What taking a lock gave.
#[derive(Debug)]
pub enum Taken {
    /// Ours, written with this ETag; `replaced` is the lock it took over (expired or stale).
    Taken { etag: String, replaced: Option<(Lock, Standing)> },
    /// Someone else holds it.
    Busy(Lock),
}

pub async fn read(client: &aws_sdk_s3::Client, bucket: &str, scope: &Scope) -> anyhow::Result<Option<(Lock, String)>> {
    s3::get_json_tagged(client, bucket, &Lock::key(scope)).await
}

pub async fn take(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    scope: &Scope,
    lock: &Lock,
    now: SystemTime,
    alive: impl Fn(u32, u64) -> bool,
) -> anyhow::Result<Taken> {
    let key = Lock::key(scope);
    // Each round reads the lock and writes over exactly what it read; losing a race reads again.
    for _ in 0..5 {
        let (condition, replaced) = match read(client, bucket, scope).await? {
            None => (Condition::Absent, None),
            Some((existing, etag)) => match existing.standing(now, &lock.machine, &alive) {
                Standing::Held => return Ok(Taken::Busy(existing)),
                Standing::Free => (Condition::Unchanged(etag), None),
                standing => (Condition::Unchanged(etag), Some((existing, standing))),
            },
        };
        match s3::put_json_if(client, bucket, &key, lock, &condition).await? {
            Ok(etag) => return Ok(Taken::Taken { etag, replaced }),
            Err(Conflict) => continue,
        }
    }
    bail!("the lock s3://{bucket}/{key} changed five times while it was being taken; try again")
}

/// Writes the lock again over the version this holder wrote (`Err(Conflict)`: someone took it).
pub async fn rewrite(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    scope: &Scope,
    lock: &Lock,
    etag: &str,
) -> anyhow::Result<Result<String, Conflict>> {
    s3::put_json_if(client, bucket, &Lock::key(scope), lock, &Condition::Unchanged(etag.to_string())).await
}

/// The lock a run holds, to check that it still does before each change.
#[derive(Debug, Clone)]
pub struct Held {
    pub bucket: String,
    pub scope: Scope,
    /// The holding run's id.
    pub run: String,
}

/// Fails when the lock is no longer this run's (released by force, or taken over after it
/// expired while this run could not renew it): the run must stop before it changes more.
pub async fn check_held(client: &aws_sdk_s3::Client, held: &Held) -> anyhow::Result<()> {
    match read(client, &held.bucket, &held.scope).await? {
        Some((lock, _)) if lock.run == held.run && !lock.released => Ok(()),
        Some((lock, _)) if !lock.released => bail!(
            "{}: the lock was taken over by {} while this run worked; it stopped before changing more (see `cargo xtask lock status {}`)",
            held.scope.label(),
            lock.describe(),
            held.scope.arguments()
        ),
        _ => bail!(
            "{}: the lock was released (by force) while this run worked; it stopped before changing more",
            held.scope.label()
        ),
    }
}
