//! The pool of shared load balancers. An ALB holds a limited number of listener rules (100 by
//! default: `shared_alb.rules_per_alb`), one per environment behind it; past that the platform
//! gets another shared load balancer with the same listeners and certificate: `vend-shared`,
//! `vend-shared-2`, `vend-shared-3`, …
//!
//! Each environment is placed once, on the lowest-numbered member with room, and never moves: its
//! placement is recorded in the state bucket (`PLACEMENTS_KEY`, a conditional write), so it is the
//! same across runs and machines. `platform deploy` makes as many members as the fleet needs and
//! as the placements use.

use std::collections::BTreeMap;

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

/// How many of the fleet's environments have a rule on the shared listener.
pub fn shared_environments(fleet: &crate::Fleet) -> usize {
    fleet
        .customers
        .iter()
        .flat_map(|c| &c.environments)
        .filter(|e| e.routing == crate::config::model::Routing::SharedAlb)
        .count()
}

impl Placements {
    pub fn member_of(&self, who: &str) -> Option<u32> {
        self.environments.get(who).copied()
    }

    /// The member an environment is on, or the one it goes to: the lowest with fewer than `quota`
    /// environments. The second value says whether the placement is new.
    pub fn place(&self, who: &str, quota: u32) -> (u32, bool) {
        if let Some(member) = self.member_of(who) {
            return (member, false);
        }
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        for member in self.environments.values() {
            *counts.entry(*member).or_default() += 1;
        }
        let member = (1..).find(|m| counts.get(m).copied().unwrap_or(0) < quota.max(1)).unwrap_or(1);
        (member, true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_fill_the_lowest_member_with_room_and_never_move() {
        let mut placements = Placements::default();
        let mut place = |who: &str| {
            let (member, new) = placements.place(who, 2);
            if new {
                placements.environments.insert(who.to_string(), member);
            }
            member
        };
        assert_eq!([place("a/dev"), place("b/dev"), place("c/dev"), place("a/dev")], [1, 1, 2, 1]);
        // A member with room again (an environment left the config, its rule removed by hand)
        // takes the next one; nobody placed moves.
        placements.environments.remove("b/dev");
        assert_eq!(placements.place("d/dev", 2), (1, true));
        assert_eq!(placements.place("c/dev", 2), (2, false));
        assert_eq!(placements.members(), 2);
        assert_eq!(member_name("vend-shared", 1), "vend-shared");
        assert_eq!(member_name("vend-shared", 3), "vend-shared-3");
        assert_eq!([members_needed(0, 100), members_needed(100, 100), members_needed(101, 100)], [1, 1, 2]);
    }
}
