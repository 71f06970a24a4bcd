//! The placements of environments on the pool of shared load balancers (`vending::pool`), kept in
//! the state bucket: read for a plan, written once (a conditional put) before an environment's
//! first rule is created.

use anyhow::{bail, Context};
use vending::config::model::{ListenerRef, Platform};
use vending::pool::{self, Placements, PLACEMENTS_KEY};

use super::Clients;
use crate::s3::{self, Condition};

/// Where an environment's rule goes on the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `customer/env`.
    pub who: String,
    pub member: u32,
    pub load_balancer: String,
    /// Not recorded yet: `apply` records it before it creates anything.
    pub new: bool,
    /// Kept on the first load balancer, where its rule was before the pool.
    adopted: bool,
    state_bucket: String,
    quota: u32,
}

/// The placements on record, with the ETag a write is conditional on (none: no record yet).
pub async fn read(clients: &Clients, state_bucket: &str) -> anyhow::Result<(Placements, Option<String>)> {
    let stored = s3::get_json_tagged(&clients.s3, state_bucket, PLACEMENTS_KEY)
        .await
        .context("cannot read the placements on the shared load balancers")?;
    Ok(match stored {
        Some((placements, etag)) => (placements, Some(etag)),
        None => (Placements::default(), None),
    })
}

/// Where `customer/env` is, or would go, when the tool manages the shared load balancers. An
/// environment whose rule is on the first load balancer from before the pool (no placement on
/// record) stays there, whatever the quota: nobody moves.
pub async fn placement(
    clients: &Clients,
    platform: &Platform,
    customer: &str,
    env: &str,
) -> anyhow::Result<Option<Placement>> {
    let ListenerRef::Lookup { load_balancer, .. } = &platform.shared_alb.listener else { return Ok(None) };
    let who = format!("{customer}/{env}");
    let quota = platform.shared_alb.rules_per_alb;
    let (placements, _) = read(clients, &platform.state_bucket).await?;
    let (mut member, new) = placements.place(&who, quota);
    let mut adopted = false;
    if new && member != 1 {
        let first = super::resolve::shared_listener(clients, platform, None).await?;
        if super::elb::owns_rule(clients, &first, customer, env).await? {
            (member, adopted) = (1, true);
        }
    }
    Ok(Some(Placement {
        who,
        member,
        load_balancer: pool::member_name(load_balancer, member),
        new,
        adopted,
        state_bucket: platform.state_bucket.clone(),
        quota,
    }))
}

/// Records a new placement. Another run may record one at the same time: the write is
/// conditional, and is tried again on the placements as they are then; if they send the
/// environment elsewhere than its plan said, the plan is stale and nothing is changed.
pub async fn record(clients: &Clients, placement: &Placement) -> anyhow::Result<()> {
    for _ in 0..10 {
        let (mut placements, etag) = read(clients, &placement.state_bucket).await?;
        let (member, new) = match placements.member_of(&placement.who) {
            Some(member) => (member, false),
            // Adopted where its rule already is (`placement`), or placed where there is room.
            None if placement.member == 1 && placement.adopted => (1, true),
            None => placements.place(&placement.who, placement.quota),
        };
        if member != placement.member {
            bail!(
                "{}: another deploy took the last place on {} meanwhile: nothing was changed; deploy again to place it anew",
                placement.who,
                placement.load_balancer
            );
        }
        if !new {
            return Ok(());
        }
        placements.environments.insert(placement.who.clone(), member);
        let condition = etag.map_or(Condition::Absent, Condition::Unchanged);
        if s3::put_json_if(&clients.s3, &placement.state_bucket, PLACEMENTS_KEY, &placements, &condition).await?.is_ok()
        {
            return Ok(());
        }
    }
    bail!(
        "{}: cannot record its place on the shared load balancers: too many writes at once; deploy again",
        placement.who
    )
}
