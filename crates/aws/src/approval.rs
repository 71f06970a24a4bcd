//! Approval requests, the audit log and the record of the last apply, in the platform's state
//! bucket. Every write is one conditional put: a request is created only where none is
//! (`If-None-Match: *`) and rewritten only if it is still the version read (`If-Match` on its
//! ETag), so two approvers racing record one decision; an audit event is never overwritten.

use std::time::SystemTime;

use anyhow::bail;
use vending::approval::{AuditEvent, LastApplied, Request, Scope, State};

use crate::s3::{self, Condition, Conflict};

/// The state bucket, where requests and audit events live.
pub struct Store<'a> {
    pub s3: &'a aws_sdk_s3::Client,
    pub bucket: &'a str,
}

/// A stored request and the ETag it was read with.
#[derive(Debug, Clone)]
pub struct Stored {
    pub request: Request,
    pub etag: String,
}

/// A few bits of entropy for ids and audit keys: the standard library's per-process random hash
/// keys, mixed with the time.
pub fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

impl Store<'_> {
    /// Stores a new request (never over another one).
    pub async fn create(&self, request: &Request) -> anyhow::Result<Stored> {
        match s3::put_json_if(self.s3, self.bucket, &request.key(), request, &Condition::Absent).await? {
            Ok(etag) => Ok(Stored { request: request.clone(), etag }),
            Err(Conflict) => bail!("an approval request with id {} exists already", request.id),
        }
    }

    pub async fn read(&self, scope: &Scope, id: &str) -> anyhow::Result<Option<Stored>> {
        let key = format!("{}{id}.json", scope.approvals_prefix());
        Ok(s3::get_json_tagged(self.s3, self.bucket, &key).await?.map(|(request, etag)| Stored { request, etag }))
    }

    /// Rewrites a request read before; `Err(Conflict)` when it changed meanwhile.
    pub async fn update(&self, stored: &Stored, new: &Request) -> anyhow::Result<Result<Stored, Conflict>> {
        let condition = Condition::Unchanged(stored.etag.clone());
        Ok(s3::put_json_if(self.s3, self.bucket, &new.key(), new, &condition)
            .await?
            .map(|etag| Stored { request: new.clone(), etag }))
    }

    /// Every request under a prefix (`approvals/`, `approvals/acme/`, a scope's), oldest first.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Request>> {
        let mut requests = Vec::new();
        for key in s3::list_keys(self.s3, self.bucket, prefix).await? {
            if let Some((request, _)) = s3::get_json_tagged::<Request>(self.s3, self.bucket, &key).await? {
                requests.push(request);
            }
        }
        requests.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(requests)
    }

    /// The pending requests of a scope that have not expired, oldest first (one left past its
    /// expiry is expired, whether or not that was recorded yet).
    pub async fn pending(&self, scope: &Scope) -> anyhow::Result<Vec<Request>> {
        let all = self.list(&scope.approvals_prefix()).await?;
        let now = SystemTime::now();
        Ok(all.into_iter().filter(|r| r.state == State::Pending && !r.is_past_expiry(now)).collect())
    }

    /// Adds an event to the scope's audit log (a new object each time).
    pub async fn audit(&self, scope: &Scope, event: &AuditEvent) -> anyhow::Result<()> {
        for _ in 0..3 {
            let key = event.key(scope, entropy());
            if s3::put_json_if(self.s3, self.bucket, &key, event, &Condition::Absent).await?.is_ok() {
                return Ok(());
            }
        }
        bail!("cannot add to the audit log of {}: every key tried was taken", scope.label())
    }

    /// The scope's audit log, in time order.
    pub async fn history(&self, scope: &Scope) -> anyhow::Result<Vec<AuditEvent>> {
        let mut events = Vec::new();
        for key in s3::list_keys(self.s3, self.bucket, &scope.audit_prefix()).await? {
            if let Some((event, _)) = s3::get_json_tagged::<AuditEvent>(self.s3, self.bucket, &key).await? {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// What was last applied to the scope's stack, if on record.
    pub async fn last_applied(&self, scope: &Scope) -> anyhow::Result<Option<(LastApplied, String)>> {
        s3::get_json_tagged(self.s3, self.bucket, &LastApplied::key(scope)).await
    }

    /// Records what was applied, over the version read before it (or where none was).
    pub async fn record_applied(
        &self,
        scope: &Scope,
        applied: &LastApplied,
        read_etag: Option<&str>,
    ) -> anyhow::Result<()> {
        let condition = read_etag.map_or(Condition::Absent, |etag| Condition::Unchanged(etag.to_string()));
        match s3::put_json_if(self.s3, self.bucket, &LastApplied::key(scope), applied, &condition).await? {
            Ok(_) => Ok(()),
            Err(Conflict) => bail!(
                "{}: another deploy recorded what it applied meanwhile; run `plan` to see the stack as it is now",
                scope.label()
            ),
        }
    }
}
