//! Plans without AWS: the desired stack of the samples (snapshots in tests/plans/), and the diff
//! engine's verdicts on live state.

use std::collections::BTreeMap;
use std::path::Path;

use vending::ami::{AmiRecord, Commit};
use vending::config::validate::validate_fleet;
use vending::plan::{allocate_priority, desired, diff, taken, Action, Kind, Resolved, Resource};

pub fn ami() -> AmiRecord {
    AmiRecord {
        customer: "acme".into(),
        environment: "prod".into(),
        amis: [("eu-west-1".to_string(), "ami-0123456789abcdef0".to_string())].into(),
        commit: Commit {
            id: "c0ffee".into(),
            time: "2026-11-29T18:00:00Z".into(),
            author: "A".into(),
            message: "m".into(),
        },
        dirty: false,
        packer_run_uuid: "run".into(),
        build: "amazon-ebs.aws".into(),
        built_at: "2026-11-29T18:01:00Z".into(),
        template_sha256: "0".into(),
    }
}

pub fn ids() -> Resolved {
    Resolved {
        vpc_id: "vpc-0a".into(),
        subnet_ids: vec!["subnet-0b".into(), "subnet-0a".into()],
        instance_security_groups: vec!["sg-01".into()],
        alb_security_groups: vec!["sg-02".into()],
        database_security_groups: vec!["sg-03".into()],
        certificate_arn: Some("arn:aws:acm:eu-west-1:123456789012:certificate/acme".into()),
        codedeploy_role_arn: "arn:aws:iam::123456789012:role/vend-codedeploy".into(),
        codebuild_role_arn: None,
        shared_load_balancer: None,
        shared_members: 1,
    }
}

pub fn stack(customer: &str, env: &str) -> Vec<vending::plan::Desired> {
    let (fleet, diagnostics) = validate_fleet(&vending::project::fleet_sources(&crate::sample_tree()));
    assert!(diagnostics.is_empty());
    let fleet = fleet.unwrap();
    let (c, e) = fleet.environment(customer, env).unwrap();
    desired(&fleet.platform, c, e, &ami(), &ids())
}

pub fn live_of(stack: &[vending::plan::Desired]) -> BTreeMap<(Kind, String), Resource> {
    stack.iter().map(|d| ((d.kind(), d.name.clone()), d.resource.clone())).collect()
}

/// The resource of that kind and name, as its struct: `live!(live, TargetGroup, "globex-dev-tg")`.
macro_rules! live {
    ($live:expr, $kind:ident, $name:expr) => {
        match $live.get_mut(&(Kind::$kind, $name.to_string())) {
            Some(Resource::$kind(r)) => r,
            other => panic!("no {} {}: {other:?}", stringify!($kind), $name),
        }
    };
}

/// The database of a desired stack.
fn database(stack: &mut [vending::plan::Desired]) -> &mut vending::plan::Database {
    stack
        .iter_mut()
        .find_map(|d| match &mut d.resource {
            Resource::Database(db) => Some(db),
            _ => None,
        })
        .unwrap()
}

#[test]
fn desired_stacks_of_the_samples() {
    for (customer, env) in [("acme", "prod"), ("globex", "dev")] {
        let plan = diff(&stack(customer, env), &BTreeMap::new());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/plans/{customer}-{env}.txt"));
        let mut text = plan.render_human();
        for change in &plan.changes {
            let d =
                stack(customer, env).into_iter().find(|d| d.kind() == change.kind && d.name == change.name).unwrap();
            for (k, v) in d.resource.fields() {
                text.push_str(&format!(
                    "{}/{} {k} = {v}\n",
                    serde_json::to_value(change.kind).unwrap().as_str().unwrap(),
                    change.name
                ));
            }
        }
        expect_test::expect_file![path].assert_eq(&text);
    }
}

#[test]
fn production_with_a_domain_gets_its_own_load_balancer() {
    let kinds: Vec<Kind> = stack("acme", "prod").iter().map(|d| d.kind()).collect();
    assert!(
        kinds.contains(&Kind::LoadBalancer)
            && kinds.contains(&Kind::HttpListener)
            && kinds.contains(&Kind::HttpsListener)
    );
    let kinds: Vec<Kind> = stack("globex", "prod").iter().map(|d| d.kind()).collect();
    assert!(!kinds.contains(&Kind::LoadBalancer) && !kinds.contains(&Kind::Database));
}

#[test]
fn nothing_changed_means_an_empty_plan() {
    let desired = stack("acme", "prod");
    let plan = diff(&desired, &live_of(&desired));
    assert!(!plan.has_changes());
    assert!(plan.changes.iter().all(|c| c.action == Action::Unchanged));
}

#[test]
fn one_changed_setting_updates_exactly_that() {
    let desired = stack("globex", "dev");
    let mut live = live_of(&desired);
    live!(live, TargetGroup, "globex-dev-tg").health_check.path = "/old".into();
    let plan = diff(&desired, &live);
    let changed: Vec<_> = plan.changes.iter().filter(|c| c.action != Action::Unchanged).collect();
    assert_eq!(changed.len(), 1);
    let Action::Update(fields) = &changed[0].action else { panic!("{:?}", changed[0]) };
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (fields[0].field.as_str(), fields[0].old.as_deref(), fields[0].new.as_str()),
        ("health_check.path", Some("/old"), "/health")
    );
    assert!(!changed[0].destructive);
    assert!(plan
        .render_human()
        .contains("~ target-group globex-dev-tg: update\n    health_check.path: /old → /health\n"));
}

#[test]
fn replacing_a_database_is_destructive() {
    let desired = stack("acme", "prod");
    let mut live = live_of(&desired);
    live!(live, Database, "acme-prod-db").engine = "mysql".into();
    let plan = diff(&desired, &live);
    let destructive: Vec<_> = plan.destructive().collect();
    assert_eq!(destructive.len(), 1);
    assert!(matches!(destructive[0].action, Action::Replace(_)));
    assert!(plan
        .render_human()
        .contains("-/+ database acme-prod-db: replace  (DESTRUCTIVE: needs --allow-destructive)"));
}

#[test]
fn priorities_fill_the_lowest_gap() {
    assert_eq!(allocate_priority(&taken([])), Some(1));
    assert_eq!(allocate_priority(&taken([1, 2, 4])), Some(3));
    assert_eq!(allocate_priority(&taken(1..=50_000)), None);
}

#[test]
fn plan_json_is_stable() {
    let desired = stack("globex", "dev");
    let mut live = live_of(&desired);
    live.remove(&(Kind::Bucket, "vend-globex-dev".into()));
    live!(live, AutoScalingGroup, "globex-dev").max = 9;
    let json = serde_json::to_value(diff(&desired, &live)).unwrap();
    assert_eq!(
        json["changes"][0],
        serde_json::json!({"kind": "bucket", "name": "vend-globex-dev", "action": "create", "fields": [], "destructive": false})
    );
    let asg = json["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "auto-scaling-group").unwrap();
    assert_eq!(asg["action"], "update");
    assert_eq!(asg["fields"], serde_json::json!([{"field": "max", "old": "9", "new": "2"}]));
}

#[test]
fn the_platform_manages_the_shared_load_balancer_unless_it_names_an_existing_listener() {
    let (fleet, _) = validate_fleet(&vending::project::fleet_sources(&crate::sample_tree()));
    let mut platform = fleet.unwrap().platform;
    let kinds = |p: &vending::config::model::Platform| -> Vec<(Kind, String)> {
        vending::plan::platform_desired(p, &ids()).into_iter().map(|d| (d.kind(), d.name)).collect()
    };
    assert_eq!(
        kinds(&platform),
        [
            (Kind::Bucket, "vend-platform-state".to_string()),
            (Kind::LoadBalancer, "vend-shared".to_string()),
            (Kind::HttpListener, "vend-shared:80".to_string()),
            (Kind::HttpsListener, "vend-shared:443".to_string()),
        ]
    );
    platform.shared_alb.listener = vending::config::model::ListenerRef::Arn(
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/theirs/1/2".into(),
    );
    assert_eq!(kinds(&platform), [(Kind::Bucket, "vend-platform-state".to_string())]);
}

/// The database of `acme prod` (configured `16.4`) against a live one running `running`, with
/// `allow_major_version_upgrade` as given: what the plan does with `engine_version`.
fn check_engine_version(running: &str, configured: &str, allow_major: bool, expected: &str) {
    let mut desired = stack("acme", "prod");
    let db = database(&mut desired);
    db.engine_version = configured.into();
    db.allow_major_version_upgrade = allow_major;
    let mut live = live_of(&desired);
    live!(live, Database, "acme-prod-db").engine_version = running.into();
    let plan = diff(&desired, &live);
    let change = plan.changes.iter().find(|c| c.kind == Kind::Database).unwrap();
    let verdict = match (&change.action, &change.refused) {
        (_, Some(why)) if why.contains("cannot downgrade") => "refused: downgrade".to_string(),
        (_, Some(why)) if why.contains("allow_major_version_upgrade = true") => "refused: major".to_string(),
        (Action::Unchanged, None) => "unchanged".to_string(),
        (Action::Update(fields), None) => {
            fields.iter().map(|f| format!("{} {} → {}", f.field, f.old.as_deref().unwrap(), f.new)).collect()
        }
        other => format!("{other:?}"),
    };
    assert_eq!(verdict, expected, "running {running}, configured {configured}");
}

#[test]
fn a_later_minor_version_satisfies_the_configured_one() {
    check_engine_version("16.6", "16.4", false, "unchanged");
    check_engine_version("16.6", "16", false, "unchanged");
    check_engine_version("16.4", "16.4", false, "unchanged");
}

#[test]
fn an_older_minor_version_is_upgraded() {
    check_engine_version("16.2", "16.4", false, "engine_version 16.2 → 16.4");
}

#[test]
fn a_downgrade_is_never_planned() {
    check_engine_version("16.6", "15.8", false, "refused: downgrade");
    check_engine_version("16.6", "15", true, "refused: downgrade");
}

#[test]
fn a_major_upgrade_needs_to_be_allowed() {
    check_engine_version("16.6", "17.2", false, "refused: major");
    check_engine_version("16.6", "17", true, "engine_version 16.6 → 17");
}

#[test]
fn mysql_and_mariadb_major_versions_have_two_numbers() {
    use vending::plan::{engine_version_verdict as verdict, VersionVerdict::*};
    assert_eq!(verdict("mysql", "8.0", "8.0.39"), Satisfied);
    assert_eq!(verdict("mysql", "8.0.40", "8.0.39"), MinorUpgrade);
    assert_eq!(verdict("mysql", "8.4", "8.0.39"), MajorUpgrade);
    assert_eq!(verdict("mariadb", "10.6", "10.11.9"), Downgrade);
    assert_eq!(verdict("postgres", "9.6", "9.5.25"), MajorUpgrade);
    // A version that names less than a major version names only that much.
    assert_eq!(verdict("mysql", "8", "8.4.3"), Satisfied);
    assert_eq!(verdict("mysql", "8", "5.7.44"), MajorUpgrade);
}

#[test]
fn a_refused_plan_says_why() {
    let desired = stack("acme", "prod");
    let mut live = live_of(&desired);
    live!(live, Database, "acme-prod-db").engine_version = "17.1".into();
    let plan = diff(&desired, &live);
    assert_eq!(plan.refused().count(), 1);
    let text = plan.render_human();
    assert!(text.contains(
        "    REFUSED: database.version 16.4 is older than the running 17.1, and RDS cannot downgrade an engine"
    ));
    assert!(!text.contains("maintenance window"), "a refused change is not held for the window: {text}");
}

#[test]
fn changes_waiting_for_the_maintenance_window_are_shown_and_not_asked_again() {
    let mut desired = stack("acme", "prod");
    database(&mut desired).instance_class = "db.r6g.large".into();
    let mut live = live_of(&desired);
    let live_db = live!(live, Database, "acme-prod-db");
    live_db.instance_class = "db.t4g.medium".into();
    live_db.pending.instance_class = Some("db.r6g.large".into());
    let plan = diff(&desired, &live);
    let change = plan.changes.iter().find(|c| c.kind == Kind::Database).unwrap();
    assert_eq!(change.action, Action::Unchanged);
    assert!(!plan.has_changes());
    assert!(plan.render_human().contains(
        "= database acme-prod-db: unchanged\n    pending in the maintenance window: instance_class: db.t4g.medium → db.r6g.large\n"
    ));
    // `deploy --apply-immediately` sends the waiting change again, to apply it now.
    let now = plan.with_pending_applied_now();
    let change = now.changes.iter().find(|c| c.kind == Kind::Database).unwrap();
    let Action::Update(fields) = &change.action else { panic!("{change:?}") };
    assert_eq!(fields.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["instance_class"]);
}

#[test]
fn a_database_update_says_when_rds_applies_it() {
    let desired = stack("acme", "prod");
    let mut live = live_of(&desired);
    live!(live, Database, "acme-prod-db").storage_gb = 20;
    assert!(diff(&desired, &live).render_human().contains(
        "    storage_gb: 20 → 50\n    (RDS applies instance class, storage, Multi-AZ and engine version changes in the maintenance window; deploy --apply-immediately applies them now)\n"
    ));
    // What RDS applies at once gets no such note.
    let mut live = live_of(&desired);
    live!(live, Database, "acme-prod-db").deletion_protection = false;
    let text = diff(&desired, &live).render_human();
    assert!(text.contains("    deletion_protection: false → true\n") && !text.contains("maintenance window"), "{text}");
}

#[test]
fn an_engine_change_is_a_replacement_not_a_version_refusal() {
    let desired = stack("acme", "prod");
    let mut live = live_of(&desired);
    let db = live!(live, Database, "acme-prod-db");
    db.engine = "mysql".into();
    db.engine_version = "8.0.39".into();
    let plan = diff(&desired, &live);
    assert_eq!(plan.refused().count(), 0, "{}", plan.render_human());
    assert_eq!(plan.destructive().count(), 1);
}

/// AWS's words parse to the core's vocabularies; an unknown word is kept, printed as AWS wrote
/// it, and differs from every known one, so a live value the tool does not know shows as a change.
#[test]
fn closed_vocabularies_read_aws_words() {
    use vending::plan::{AutoRollback, DeploymentType, ListenerAction, RollbackEvent, Text, Word};
    assert_eq!(Word::<DeploymentType>::parse("BLUE_GREEN"), Word::Known(DeploymentType::BlueGreen));
    let unknown = Word::<DeploymentType>::parse("SIDEWAYS");
    assert_eq!(unknown, Word::Other("SIDEWAYS".into()));
    assert_eq!(unknown.text(), "SIDEWAYS");
    assert_ne!(unknown, Word::Known(DeploymentType::InPlace));
    // Events print sorted, whatever order AWS lists them in.
    let events = ["DEPLOYMENT_STOP_ON_REQUEST", "DEPLOYMENT_FAILURE"].map(Word::<RollbackEvent>::parse);
    assert_eq!(AutoRollback::On(events.into_iter().collect()).text(), "DEPLOYMENT_FAILURE,DEPLOYMENT_STOP_ON_REQUEST");
    assert_eq!(AutoRollback::Off.text(), "off");
    assert_eq!(ListenerAction::host_not_found().text(), "fixed-response 503 text/plain \"host not found\"");
    let redirect = ListenerAction::Redirect { protocol: "HTTPS".into(), port: "443".into(), permanent: true };
    assert_eq!(vec![redirect].text(), "redirect HTTPS:443 HTTP_301");
}
