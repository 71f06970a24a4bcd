//! Releasing through S3 and CodeDeploy: the snapshot `follow` reads from CodeDeploy's answers
//! (built with the SDK's own types, because the emulator's deployments never leave `Created`),
//! and what the emulator can answer: the content-addressed upload, the group's instances, a
//! deployment recorded and read back, and the download the local rollback uses.

use aws_sdk_codedeploy::types::{
    DeploymentInfo, DeploymentOverview, DeploymentStatus, DeploymentTarget, Diagnostics, ErrorCode, ErrorInformation,
    InstanceTarget, LifecycleErrorCode, LifecycleEvent, LifecycleEventStatus, RollbackInfo,
};
use vending::release::{InstanceFailure, StatusSource};
use vending_aws::release::{self, AwsStatus};

fn event(name: &str, status: LifecycleEventStatus) -> LifecycleEvent {
    LifecycleEvent::builder().lifecycle_event_name(name).status(status).build()
}

fn target(id: &str, events: Vec<LifecycleEvent>) -> DeploymentTarget {
    DeploymentTarget::builder()
        .instance_target(InstanceTarget::builder().target_id(id).set_lifecycle_events(Some(events)).build())
        .build()
}

#[test]
fn a_running_deployment_shows_counts_and_the_event_running() {
    let info = DeploymentInfo::builder()
        .status(DeploymentStatus::InProgress)
        .deployment_overview(DeploymentOverview::builder().succeeded(1).in_progress(1).pending(1).build())
        .build();
    let targets = [
        target("i-1", vec![event("ValidateService", LifecycleEventStatus::Succeeded)]),
        target(
            "i-2",
            vec![
                event("BeforeInstall", LifecycleEventStatus::Succeeded),
                event("AfterInstall", LifecycleEventStatus::InProgress),
                event("ApplicationStart", LifecycleEventStatus::Pending),
            ],
        ),
    ];
    let snapshot = release::snapshot(&info, &targets, None);
    assert_eq!(snapshot.status.as_str(), "InProgress");
    assert_eq!((snapshot.instances_done, snapshot.instances_total), (1, 3));
    assert_eq!(snapshot.current_event.as_deref(), Some("AfterInstall on i-2"));
    assert!(snapshot.instance_failures.is_empty());
    assert_eq!(snapshot.rollback, None);
    assert_eq!(vending::release::progress(&snapshot), "InProgress: 1/3 instances, AfterInstall on i-2");
}

#[test]
fn a_failed_deployment_says_where_why_and_how_the_rollback_went() {
    let info = DeploymentInfo::builder()
        .status(DeploymentStatus::Failed)
        .deployment_overview(DeploymentOverview::builder().succeeded(1).failed(1).skipped(1).build())
        .error_information(
            ErrorInformation::builder()
                .code(ErrorCode::HealthConstraints)
                .message("The overall deployment failed because too many individual instances failed deployment")
                .build(),
        )
        .rollback_info(RollbackInfo::builder().rollback_deployment_id("d-ROLLBACK1").build())
        .build();
    let diagnostics = Diagnostics::builder()
        .error_code(LifecycleErrorCode::ScriptFailed)
        .script_name("scripts/validate.sh")
        .message("Script at specified location: scripts/validate.sh run as user root failed with exit code 1")
        .log_tail("[stderr]acme-shop did not answer /health within 60 s")
        .build();
    let failed = LifecycleEvent::builder()
        .lifecycle_event_name("ValidateService")
        .status(LifecycleEventStatus::Failed)
        .diagnostics(diagnostics)
        .build();
    let targets = [target("i-2", vec![event("AfterInstall", LifecycleEventStatus::Succeeded), failed])];
    let snapshot = release::snapshot(&info, &targets, Some("Succeeded"));
    assert_eq!(snapshot.status.as_str(), "Failed");
    assert_eq!((snapshot.instances_done, snapshot.instances_total), (3, 3));
    assert_eq!(
        snapshot.error.as_deref(),
        Some(
            "HEALTH_CONSTRAINTS: The overall deployment failed because too many individual instances failed deployment"
        )
    );
    assert_eq!(
        snapshot.instance_failures,
        vec![InstanceFailure {
            instance: "i-2".into(),
            event: "ValidateService".into(),
            message: "Script at specified location: scripts/validate.sh run as user root failed with exit code 1 \
                      (scripts/validate.sh)"
                .into(),
            log_tail: "[stderr]acme-shop did not answer /health within 60 s".into(),
        }]
    );
    assert_eq!(snapshot.rollback, Some(("d-ROLLBACK1".to_string(), "Succeeded".to_string())));
    let explained = vending::release::explain(&snapshot);
    assert!(explained.contains(&"automatic rollback d-ROLLBACK1: Succeeded".to_string()), "{explained:?}");
    assert!(
        explained.contains(&"    [stderr]acme-shop did not answer /health within 60 s".to_string()),
        "{explained:?}"
    );
}

#[test]
fn a_revision_is_uploaded_once_recorded_as_a_deployment_and_read_back() {
    let world = crate::infra::world();
    crate::block_on(world.deploy("globex", "dev"));
    let clients = &world.clients;
    let runtime = vending_aws::runtime().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("revision.zip");
    std::fs::write(&zip, b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").unwrap();
    let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&zip).unwrap()));
    let key = vending::release::revision_key(&sha);
    assert_eq!(key, format!("revisions/{sha}.zip"));

    let (bucket, app, group) = ("vend-globex-dev", "globex", "globex-dev");
    let (revision, uploaded) =
        runtime.block_on(release::upload(clients, bucket, &key, &zip, &[("commit", "c0ffee")])).unwrap();
    assert!(uploaded);
    assert_eq!(revision.key, key);
    world.log.clear();
    let (again, uploaded) = runtime.block_on(release::upload(clients, bucket, &key, &zip, &[])).unwrap();
    assert!(!uploaded, "the key names the content: not uploaded twice");
    assert_eq!(again.e_tag, revision.e_tag);
    assert_eq!(world.log.mutating(), Vec::<String>::new(), "{:?}", world.log.calls());

    let back = dir.path().join("back.zip");
    runtime.block_on(release::download(clients, bucket, &key, &sha, &back)).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&zip).unwrap());
    // A file whose content is not what its key says is refused, and nothing is written.
    let tampered = dir.path().join("tampered.zip");
    let error = runtime.block_on(release::download(clients, bucket, &key, &"ab".repeat(32), &tampered)).unwrap_err();
    assert!(format!("{error:#}").contains("it was changed after the upload"), "{error:#}");
    assert!(!tampered.exists());

    let found = runtime.block_on(release::deployment_group(clients, app, group)).unwrap();
    assert!(!found.id.is_empty());
    assert_eq!(found.last_successful_deployment, None);
    let missing = runtime.block_on(release::deployment_group(clients, app, "globex-nope")).unwrap_err();
    assert!(format!("{missing:#}").contains("deploy the infrastructure first"), "{missing:#}");
    let instances = runtime.block_on(release::group_instances(clients, "globex-dev")).unwrap();
    assert!(!instances.is_empty() && instances.iter().all(|i| i.starts_with("i-")), "{instances:?}");

    let id = runtime
        .block_on(release::create_deployment(clients, app, group, &revision, "globex/dev: test", false))
        .unwrap();
    let mut status = AwsStatus { runtime: &runtime, clients, deployment_id: id.clone(), roll_back_on_stop: true };
    let snapshot = status.snapshot().unwrap();
    // The emulator records the deployment and never runs it.
    assert_eq!(snapshot.status.as_str(), "Created");
    assert_eq!(runtime.block_on(release::revision_key_of(clients, &id)).unwrap(), Some(key.clone()));
    let listed = runtime
        .block_on(clients.codedeploy.list_deployments().application_name(app).deployment_group_name(group).send())
        .unwrap();
    assert!(listed.deployments().contains(&id));
    // What `rollback` chooses from: the successful deployments, which the emulator never has.
    let succeeded = runtime.block_on(release::succeeded_deployments(clients, app, group)).unwrap();
    assert_eq!(succeeded, Vec::new(), "a Created deployment is no rollback target");

    let mut unknown =
        AwsStatus { runtime: &runtime, clients, deployment_id: "d-NOTTHERE".into(), roll_back_on_stop: true };
    let error = unknown.snapshot().unwrap_err().to_string();
    assert!(error.contains("d-NOTTHERE"), "{error}");
}

/// The emulator has no instance refresh: the mapping a release waits on, from SDK-built values.
#[test]
fn an_instance_refresh_is_read_and_waited_for_while_it_runs() {
    use aws_sdk_autoscaling::types::{InstanceRefresh, InstanceRefreshStatus};
    let refresh = |status: InstanceRefreshStatus, percent: Option<i32>, reason: Option<&str>| {
        vending_aws::release::refresh_of(
            &InstanceRefresh::builder()
                .instance_refresh_id("ir-0a1")
                .status(status)
                .set_percentage_complete(percent)
                .set_status_reason(reason.map(str::to_string))
                .build(),
        )
    };
    let running = refresh(InstanceRefreshStatus::InProgress, Some(40), None);
    assert!(running.running());
    assert_eq!(running.progress(), "instance refresh ir-0a1: InProgress, 40% done");
    for status in [
        InstanceRefreshStatus::Pending,
        InstanceRefreshStatus::Cancelling,
        InstanceRefreshStatus::RollbackInProgress,
        InstanceRefreshStatus::Baking,
    ] {
        assert!(refresh(status.clone(), None, None).running(), "{status:?}");
    }
    for status in [
        InstanceRefreshStatus::Successful,
        InstanceRefreshStatus::Failed,
        InstanceRefreshStatus::Cancelled,
        InstanceRefreshStatus::RollbackSuccessful,
    ] {
        assert!(!refresh(status.clone(), None, None).running(), "{status:?}");
    }
    let failed = refresh(InstanceRefreshStatus::Failed, Some(50), Some("health checks failed"));
    assert_eq!(failed.progress(), "instance refresh ir-0a1: Failed, 50% done (health checks failed)");
}
