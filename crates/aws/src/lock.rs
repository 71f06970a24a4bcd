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
    alive: impl Fn(u32) -> bool,
) -> anyhow::Result<Taken> {
    let key = Lock::key(scope);
    // Each round reads the lock and writes over exactly what it read; losing a race reads again.
    for _ in 0..5 {
        let (condition, replaced) = match read(client, bucket, scope).await? {
            None => (Condition::Absent, None),
            Some((existing, etag)) => match existing.standing(now, &lock.host, &alive) {
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
