//! The pool of shared load balancers. An ALB holds a limited number of listener rules (100 by
//! default: `shared_alb.rules_per_alb`), one per environment behind it; past that the platform
//! gets another shared load balancer with the same listeners and certificate: `vend-shared`,
//! `vend-shared-2`, `vend-shared-3`, …
//!
//! Each environment is placed once, on the lowest-numbered member with room, and never moves: its
//! placement is recorded in the state bucket (`PLACEMENTS_KEY`, a conditional write), so it is the
//! same across runs and machines. `platform deploy` makes as many members as the fleet needs and
//! as the placements use.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Where the placements are kept, in the state bucket.
pub const PLACEMENTS_KEY: &str = "shared-alb/placements.json";

/// Listener rules per ALB unless AWS Support raised the quota (`shared_alb.rules_per_alb`).
pub const DEFAULT_RULES_PER_ALB: u32 = 100;

/// Which member of the pool serves each environment, by `customer/env`; members count from 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placements {
    pub environments: BTreeMap<String, u32>,
}

/// A member's load balancer: the first is the configured name, the next ones `<name>-<n>`.
pub fn member_name(first: &str, member: u32) -> String {
    if member <= 1 {
        first.to_string()
    } else {
        format!("{first}-{member}")
    }
}

/// How many members `environments` shared environments need at `quota` rules each (at least one:
/// the platform has its shared load balancer before any environment).
pub fn members_needed(environments: usize, quota: u32) -> u32 {
    let quota = usize::try_from(quota.max(1)).unwrap_or(usize::MAX);
    u32::try_from(environments.div_ceil(quota).max(1)).unwrap_or(u32::MAX)
}

/// The fleet's environments (`customer/env`) that have a rule on the shared listener.
pub fn shared_environments(fleet: &crate::Fleet) -> Vec<String> {
    fleet
        .customers
        .iter()
        .flat_map(|c| c.environments.iter().map(move |e| (c, e)))
        .filter(|(_, e)| e.routing == crate::config::model::Routing::SharedAlb)
        .map(|(c, e)| format!("{}/{}", c.name, e.name))
        .collect()
}

impl Placements {
    pub fn member_of(&self, who: &str) -> Option<u32> {
        self.environments.get(who).copied()
    }

    /// The highest member any environment is on (1 when none is placed).
    pub fn members(&self) -> u32 {
        self.environments.values().copied().max().unwrap_or(1)
    }

    /// The environments on each member, in member order.
    pub fn by_member(&self) -> BTreeMap<u32, Vec<&str>> {
        let mut out: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for (who, member) in &self.environments {
            out.entry(*member).or_default().push(who);
        }
        out
    }
}

/// Who is on each member: the placements on record and, for the members that exist, the rules
/// found there (rules from before the pool have no record, and count all the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub members: BTreeMap<u32, BTreeSet<String>>,
}

impl Occupancy {
    pub fn of(placements: &Placements) -> Occupancy {
        let mut occupancy = Occupancy::default();
        for (who, member) in &placements.environments {
            occupancy.add(*member, who);
        }
        occupancy
    }

    pub fn add(&mut self, member: u32, who: &str) {
        self.members.entry(member).or_default().insert(who.to_string());
    }

    /// The member `who` is on (the lowest, should a rule be on two).
    pub fn member_of(&self, who: &str) -> Option<u32> {
        self.members.iter().find(|(_, on)| on.contains(who)).map(|(member, _)| *member)
    }

    /// Where `who` is, or else the lowest member with fewer than `quota` environments.
    pub fn place(&self, who: &str, quota: u32) -> u32 {
        self.member_of(who).unwrap_or_else(|| {
            (1..).find(|m| self.members.get(m).map_or(0, BTreeSet::len) < quota.max(1) as usize).unwrap_or(1)
        })
    }

    /// How many members the environments need, each placed in turn where it is or would go
    /// (records of environments no longer configured still take their places).
    pub fn members_for<'a>(&self, environments: impl IntoIterator<Item = &'a str>, quota: u32) -> u32 {
        let mut occupancy = self.clone();
        let mut highest = 1;
        for who in environments {
            let member = occupancy.place(who, quota);
            occupancy.add(member, who);
            highest = highest.max(member);
        }
        highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_fill_the_lowest_member_with_room_and_never_move() {
        let mut occupancy = Occupancy::default();
        let mut place = |who: &str| {
            let member = occupancy.place(who, 2);
            occupancy.add(member, who);
            member
        };
        assert_eq!([place("a/dev"), place("b/dev"), place("c/dev"), place("a/dev")], [1, 1, 2, 1]);
        assert_eq!(member_name("vend-shared", 1), "vend-shared");
        assert_eq!(member_name("vend-shared", 3), "vend-shared-3");
        assert_eq!([members_needed(0, 100), members_needed(100, 100), members_needed(101, 100)], [1, 1, 2]);
    }

    #[test]
    fn rules_from_before_the_pool_and_stale_records_take_their_places() {
        // a/dev and b/dev have rules on the first load balancer and no record; old/dev was
        // removed from the config, its record stays.
        let mut record = Placements::default();
        record.environments.insert("old/dev".into(), 2);
        let mut occupancy = Occupancy::of(&record);
        occupancy.add(1, "a/dev");
        occupancy.add(1, "b/dev");
        assert_eq!(occupancy.place("a/dev", 2), 1, "found where its rule is");
        assert_eq!(occupancy.place("c/dev", 2), 2, "the first is full with rules it has no record of");
        // c/dev and d/dev: c fills the second (with old/dev), d needs a third.
        assert_eq!(occupancy.members_for(["a/dev", "b/dev", "c/dev"], 2), 2);
        assert_eq!(occupancy.members_for(["a/dev", "b/dev", "c/dev", "d/dev"], 2), 3);
    }
}
