//! The placements of environments on the pool of shared load balancers (`vending::pool`), kept in
//! the state bucket: read for a plan, written once (a conditional put) before an environment's
//! first rule is created.

use anyhow::{bail, Context};
use vending::config::model::{ListenerRef, Platform};
use vending::pool::{self, Occupancy, Placements, PLACEMENTS_KEY};

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
    /// Kept where its rule was before the pool (not on record yet).
    pub adopted: bool,
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

/// Who is on each member of the pool: the placements on record, and the rules this tool made on
/// the members that exist (probed in order until one is missing).
pub async fn occupancy(clients: &Clients, platform: &Platform, placements: &Placements) -> anyhow::Result<Occupancy> {
    let mut occupancy = Occupancy::of(placements);
    let ListenerRef::Lookup { load_balancer, port } = &platform.shared_alb.listener else { return Ok(occupancy) };
    for member in 1.. {
        let name = pool::member_name(load_balancer, member);
        let Some(listener) = super::resolve::find_listener(clients, &name, *port).await? else { break };
        for who in super::elb::managed_rules(clients, &listener).await? {
            occupancy.add(member, &who);
        }
    }
    Ok(occupancy)
}

/// Where `customer/env` is, or would go, when the tool manages the shared load balancers: its
/// placement on record, else where its rule already is (from before the pool: it stays), else
/// the lowest member with room, counting the rules there that have no record.
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
    let (member, new, adopted) = match placements.member_of(&who) {
        Some(member) => (member, false, false),
        None => {
            let occupancy = occupancy(clients, platform, &placements).await?;
            let found = occupancy.member_of(&who);
            (occupancy.place(&who, quota), true, found.is_some())
        }
    };
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
/// conditional, and is tried again on the record as it is then; if the member filled up
/// meanwhile (or the environment was placed elsewhere), the plan is stale and nothing changes.
pub async fn record(clients: &Clients, placement: &Placement) -> anyhow::Result<()> {
    for _ in 0..10 {
        let (mut placements, etag) = read(clients, &placement.state_bucket).await?;
        match placements.member_of(&placement.who) {
            Some(member) if member == placement.member => return Ok(()),
            Some(_) => {
                bail!("{}: another deploy placed it meanwhile: nothing was changed; deploy again", placement.who)
            }
            None => {}
        }
        let on_it = placements.environments.values().filter(|m| **m == placement.member).count();
        if !placement.adopted && on_it >= placement.quota as usize {
            bail!(
                "{}: another deploy took the last place on {} meanwhile: nothing was changed; deploy again to place it anew",
                placement.who,
                placement.load_balancer
            );
        }
        placements.environments.insert(placement.who.clone(), placement.member);
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
