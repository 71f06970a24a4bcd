//! The approval store's conditional writes against the emulator: a request is created once, two
//! decisions made on the same version record one (the other is told it lost), and audit events
//! never overwrite each other. Also the approval topic: created with its e-mail subscribers,
//! reconciled, and unchanged by a second apply.

use std::time::SystemTime;

use vending::approval::{new_id, AuditEvent, Proposal, Request, Scope, State};
use vending_aws::approval::{Store, Stored};
use vending_aws::{s3, Target};
use vending_emulator::Moto;

const ALICE: &str = "arn:aws:iam::123456789012:user/alice";

#[test]
fn two_decisions_on_one_version_record_one() {
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let mut platform = crate::infra::sample_fleet().platform;
    platform.state_bucket = "vend-approvals".into();
    crate::block_on(async {
        let config = vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: moto.endpoint() }).await;
        let client = s3::client(&config, true);
        s3::ensure_state_bucket(&client, &platform).await.unwrap();
        let store = Store { s3: &client, bucket: "vend-approvals" };
        let scope = Scope::environment("acme", "prod");
        let proposal = Proposal { command: "deploy".into(), changes: vec![], release: None };
        let now = SystemTime::now();
        let request = Request::new(new_id(now, 1), scope.clone(), ALICE, now, 60, "c0ffee", proposal, vec![]);
        let stored = store.create(&request).await.unwrap();
        let mut other = request.clone();
        other.commit = "another".into();
        assert!(store.create(&other).await.is_err(), "never over an existing request");
        // The same request again (a retried write whose answer was lost) is not a conflict.
        assert!(store.create(&request).await.is_ok());

        // Bob and carol both read the pending request, then both decide.
        let (bob, carol): (Stored, Stored) = (
            store.read(&scope, &request.id).await.unwrap().unwrap(),
            store.read(&scope, &request.id).await.unwrap().unwrap(),
        );
        assert_eq!(bob.etag, stored.etag);
        let approved = bob.request.decide("arn:aws:iam::123456789012:user/bob", now, true, None).unwrap();
        let rejected = carol.request.decide("arn:aws:iam::123456789012:user/carol", now, false, Some("no")).unwrap();
        assert!(store.update(&bob, &approved).await.unwrap().is_ok());
        assert!(store.update(&carol, &rejected).await.unwrap().is_err(), "the second decision loses");
        let now_stored = store.read(&scope, &request.id).await.unwrap().unwrap();
        assert_eq!(now_stored.request.state, State::Approved);

        // Audit events: one object each, in time order.
        for event in ["requested", "approved"] {
            let event = AuditEvent {
                at: vending::approval::precise_timestamp(SystemTime::now()),
                event: event.into(),
                who: ALICE.into(),
                request: Some(request.id.clone()),
                plan_sha256: None,
                detail: String::new(),
            };
            store.audit(&scope, &event).await.unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let history = store.history(&scope).await.unwrap();
        assert_eq!(history.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["requested", "approved"]);
    });
}

#[test]
fn the_approval_topic_is_reconciled_like_any_resource() {
    use vending::plan::{Action, Desired, Resource, Topic};
    use vending_aws::infra::{self, ApplyOptions, Clients, Stack};
    let moto = Moto::start(&crate::repo_root()).unwrap();
    crate::block_on(async {
        let config = vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: moto.endpoint() }).await;
        let clients = Clients::new(&config, true, None);
        let stack = |subscribers: &[&str]| Stack {
            label: "acme/prod".into(),
            region: "eu-west-1".into(),
            local: true,
            resolved: Default::default(),
            shared_listener_arn: None,
            placement: None,
            desired: vec![Desired {
                name: "vend-acme-approvals".into(),
                resource: Resource::Topic(Topic {
                    subscribers: subscribers.iter().map(|s| s.to_string()).collect(),
                    pending: vec![],
                    tags: [("Customer".to_string(), "acme".to_string())].into(),
                }),
            }],
            certificate_tags: Default::default(),
        };
        let mut planned = infra::plan(&clients, stack(&["a@example.com", "b@example.com"])).await.unwrap();
        assert_eq!(planned.plan.changes[0].action, Action::Create);
        infra::apply(&clients, &mut planned, &ApplyOptions::default()).await.unwrap();
        let planned = infra::plan(&clients, stack(&["a@example.com", "b@example.com"])).await.unwrap();
        assert!(!planned.plan.has_changes(), "{:?}", planned.plan);

        // b is no longer an approver: unsubscribed (the emulator confirms at once, so b can go).
        let mut planned = infra::plan(&clients, stack(&["a@example.com"])).await.unwrap();
        assert!(matches!(&planned.plan.changes[0].action, Action::Update(f) if f[0].field == "subscribers"));
        infra::apply(&clients, &mut planned, &ApplyOptions::default()).await.unwrap();
        let (_, live) =
            infra::read_approval_topic(&clients, "eu-west-1", "vend-acme-approvals").await.unwrap().unwrap();
        assert_eq!(live.subscribers, ["a@example.com"]);
        assert!(!infra::plan(&clients, stack(&["a@example.com"])).await.unwrap().plan.has_changes());
    });
}

#[test]
fn locks_and_conditional_writes() {
    use vending::lock::{Lock, Process};
    use vending_aws::lock::{check_held, take, Held, Taken};
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let mut platform = crate::infra::sample_fleet().platform;
    platform.state_bucket = "vend-locks".into();
    crate::block_on(async {
        let config = vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: moto.endpoint() }).await;
        let client = s3::client(&config, true);
        s3::ensure_state_bucket(&client, &platform).await.unwrap();

        // A write whose answer was lost and which the SDK retried finds itself: not a lost race.
        let value = serde_json::json!({"id": 1});
        let absent = s3::Condition::Absent;
        assert!(s3::put_json_if(&client, "vend-locks", "k.json", &value, &absent).await.unwrap().is_ok());
        assert!(s3::put_json_if(&client, "vend-locks", "k.json", &value, &absent).await.unwrap().is_ok());
        let other = serde_json::json!({"id": 2});
        assert!(s3::put_json_if(&client, "vend-locks", "k.json", &other, &absent).await.unwrap().is_err());

        let scope = Scope::environment("acme", "prod");
        let process = |host: &str, pid| Process { host: host.into(), machine: format!("{host}-boot"), pid, started: 0 };
        let now = SystemTime::now();
        let ttl = vending::lock::TTL;
        let ours = Lock::new(ALICE, &process("a", 1), "run-a", "deploy acme prod", "c0ffee", now, ttl);
        let Taken::Taken { etag, replaced: None } =
            take(&client, "vend-locks", &scope, &ours, now, |_, _| true).await.unwrap()
        else {
            panic!("the first run takes it")
        };
        let held = Held { bucket: "vend-locks".into(), scope: scope.clone(), run: "run-a".into() };
        check_held(&client, &held).await.unwrap();
        // Another run on another machine is refused while it is held...
        let theirs = Lock::new(
            "arn:aws:iam::123456789012:user/bob",
            &process("b", 2),
            "run-b",
            "deploy acme prod",
            "",
            now,
            ttl,
        );
        assert!(matches!(
            take(&client, "vend-locks", &scope, &theirs, now, |_, _| true).await.unwrap(),
            Taken::Busy(_)
        ));
        // ...and takes it over once it expired; the first run then finds it lost.
        let later = now + vending::lock::TTL + std::time::Duration::from_secs(1);
        match take(&client, "vend-locks", &scope, &theirs, later, |_, _| true).await.unwrap() {
            Taken::Taken { replaced: Some((old, _)), .. } => assert_eq!(old.run, "run-a"),
            other => panic!("{other:?}"),
        }
        let lost = check_held(&client, &held).await.unwrap_err().to_string();
        assert!(lost.contains("taken over by arn:aws:iam::123456789012:user/bob"), "{lost}");
        // The first run's renewal now fails: its ETag is stale.
        assert!(vending_aws::lock::rewrite(&client, "vend-locks", &scope, &ours.renewed(now, ttl), &etag)
            .await
            .unwrap()
            .is_err());
    });
}
