//! Production approval without AWS: what a request binds (a changed setting of a resource to
//! create changes the hash), who may decide it, expiry, config changes told from drift, and the
//! notification's subject and body.

use std::time::{Duration, SystemTime};

use vending::approval::{new_id, same_person, subject, LastApplied, Origin, Proposal, Refused, Request, Scope, State};
use vending::plan::{diff, Kind, Resource};

use crate::plan::{live_of, stack};

const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const BOB: &str = "arn:aws:sts::123456789012:assumed-role/Deployers/bob@example.com";

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + seconds)
}

/// A request for the whole acme/prod stack (everything to create), made by alice at `at(0)`.
fn request() -> Request {
    let desired = stack("acme", "prod");
    let plan = diff(&desired, &Default::default());
    let proposal = Proposal::new("deploy", &desired, &plan, None, None);
    Request::new(new_id(at(0), 7), Scope::environment("acme", "prod"), ALICE, at(0), 60, "c0ffee", proposal, vec![])
}

#[test]
fn a_create_binds_every_setting_so_a_changed_one_changes_the_hash() {
    let desired = stack("acme", "prod");
    let plan = diff(&desired, &Default::default());
    let before = Proposal::new("deploy", &desired, &plan, None, None);
    let mut changed = desired.clone();
    for d in &mut changed {
        if let Resource::AutoScalingGroup(group) = &mut d.resource {
            group.max += 1;
        }
    }
    let after = Proposal::new("deploy", &changed, &diff(&changed, &Default::default()), None, None);
    assert_ne!(before.sha256(), after.sha256());
    assert_eq!(before.sha256(), Proposal::new("deploy", &desired, &plan, None, None).sha256(), "deterministic");
    // Nothing to change: an empty proposal (nobody is asked).
    let live = live_of(&desired);
    assert!(Proposal::new("deploy", &desired, &diff(&desired, &live), None, None).is_empty());
}

#[test]
fn four_eyes_expiry_and_one_decision() {
    let request = request();
    assert_eq!(request.state, State::Pending);
    assert!(matches!(request.decide(ALICE, at(10), true, None), Err(Refused::OwnRequest { .. })));
    // The same user through another path of the same account is the same person.
    assert!(matches!(
        request.decide("arn:aws:iam::123456789012:user/ops/Alice", at(10), true, None),
        Err(Refused::OwnRequest { .. })
    ));
    let approved = request.decide(BOB, at(10), true, None).unwrap();
    assert_eq!(approved.state, State::Approved);
    assert_eq!(approved.decision.as_ref().unwrap().by, BOB);
    assert!(matches!(
        approved.decide(BOB, at(11), false, Some("no")),
        Err(Refused::NotPending { state: State::Approved, .. })
    ));
    // Expired: refused, and handed back as expired to be recorded.
    match request.decide(BOB, at(3600), true, None) {
        Err(Refused::Expired(expired)) => assert_eq!(expired.state, State::Expired),
        other => panic!("{other:?}"),
    }
    // The requester may withdraw (reject) their own request.
    assert_eq!(request.decide(ALICE, at(10), false, Some("wrong branch")).unwrap().state, State::Rejected);
}

#[test]
fn principals_compare_as_people() {
    let check = |a: &str, b: &str, same: bool| assert_eq!(same_person(a, b), same, "{a} vs {b}");
    check("arn:aws:iam::1:user/Alice", "arn:aws:iam::1:user/ops/alice", true);
    check("arn:aws:iam::1:user/alice", "arn:aws:iam::2:user/alice", false);
    check("arn:aws:sts::1:assumed-role/Admin/alice@x.com", "arn:aws:sts::1:assumed-role/admin/alice@x.com", true);
    check("arn:aws:sts::1:assumed-role/Admin/alice@x.com", "arn:aws:sts::1:assumed-role/Admin/bob@x.com", false);
    check("arn:aws:sts::1:assumed-role/Admin/alice", "arn:aws:iam::1:user/alice", false);
    check("arn:aws:iam::1:root", "arn:aws:iam::1:root", true);
}

#[test]
fn ids_sort_by_time() {
    let (a, b) = (new_id(at(0), 0xffffff), new_id(at(1), 0));
    assert!(a < b, "{a} < {b}");
    assert!(a.starts_with("2026"), "{a}");
}

#[test]
fn config_changes_are_told_from_drift() {
    let desired = stack("globex", "prod");
    let mut live = live_of(&desired);
    let last = LastApplied::of(&desired);
    // Someone raised the group's max by hand; config did not change: the plan undoes drift.
    let group = desired.iter().find(|d| d.kind() == Kind::AutoScalingGroup).unwrap();
    if let Some(Resource::AutoScalingGroup(g)) = live.get_mut(&(Kind::AutoScalingGroup, group.name.clone())) {
        g.max = 9;
    }
    // And the config asks for a new minimum.
    let mut changed = desired.clone();
    for d in &mut changed {
        if let Resource::AutoScalingGroup(g) = &mut d.resource {
            g.min = 3;
        }
    }
    let proposal = Proposal::new("deploy", &changed, &diff(&changed, &live), None, Some(&last));
    let fields = &proposal.changes[0].fields;
    let origin = |name: &str| fields.iter().find(|f| f.field == name).map(|f| f.origin);
    assert_eq!(origin("max"), Some(Origin::Drift), "{fields:?}");
    assert_eq!(origin("min"), Some(Origin::Config), "{fields:?}");
    assert!(proposal.summary()[0].contains("from config, and undoes drift"), "{:?}", proposal.summary());
    // No record: unknown.
    let unknown = Proposal::new("deploy", &changed, &diff(&changed, &live), None, None);
    assert!(unknown.changes[0].fields.iter().all(|f| f.origin == Origin::Unknown));
}

#[test]
fn the_notification() {
    let request = request();
    let (subject, body) = request.notification("");
    assert!(subject.starts_with("Approval needed: acme/prod deploy ("), "{subject}");
    assert!(subject.len() < 100 && subject.is_ascii() && !subject.contains('\n'), "{subject}");
    assert!(body.contains(&format!("cargo xtask approve acme prod {}", request.id)), "{body}");
    assert!(body.contains(&format!("cargo xtask reject acme prod {} --reason", request.id)), "{body}");
    assert!(body.contains(ALICE) && body.contains(&request.expires_at) && body.contains(&request.plan_sha256));
    // Destructive changes come first in the summary.
    let mut proposal = request.proposal.clone();
    proposal.changes[3].destructive = true;
    assert!(proposal.summary()[0].starts_with("DESTRUCTIVE"), "{:?}", proposal.summary());
    let long = subject_of("é\nx".repeat(80));
    assert!(long.len() < 100 && long.is_ascii() && !long.contains('\n'), "{long}");
}

fn subject_of(text: String) -> String {
    subject(&text)
}

#[test]
fn a_pending_subscription_no_longer_wanted_is_not_a_difference() {
    use vending::plan::Topic;
    let topic = |subscribers: &[&str], pending: &[&str]| Topic {
        subscribers: subscribers.iter().map(|s| s.to_string()).collect(),
        pending: pending.iter().map(|s| s.to_string()).collect(),
        tags: Default::default(),
    };
    let desired = topic(&["a@x.com"], &[]);
    let compare = |live: &Topic| {
        diff(
            &[vending::plan::Desired { name: "t".into(), resource: Resource::Topic(desired.clone()) }],
            &[((Kind::Topic, "t".to_string()), Resource::Topic(live.clone()))].into(),
        )
    };
    // b has not confirmed: AWS cannot remove it, so the plan does not ask to.
    assert!(!compare(&topic(&["a@x.com", "b@x.com"], &["b@x.com"])).has_changes());
    // b has confirmed: it is removed.
    assert!(compare(&topic(&["a@x.com", "b@x.com"], &[])).has_changes());
    // a is pending: it is there, nothing to add.
    assert!(!compare(&topic(&["a@x.com"], &["a@x.com"])).has_changes());
    assert!(compare(&topic(&[], &[])).has_changes());
}
