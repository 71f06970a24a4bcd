//! The call log every idempotence test relies on: it sees each operation by name and tells
//! mutating calls from reads.

use vending_aws::calls::CallLog;
use vending_aws::{s3, Target};
use vending_emulator::Moto;

#[test]
fn the_call_log_names_every_call_and_tells_writes_from_reads() {
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let mut platform = crate::infra::sample_fleet().platform;
    platform.state_bucket = "vend-calls".into();
    crate::block_on(async {
        let config = vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: moto.endpoint() }).await;
        let log = CallLog::default();
        let client = s3::logged_client(&config, true, Some(&log));
        assert!(s3::ensure_state_bucket(&client, &platform).await.unwrap(), "created");
        s3::put_json(&client, "vend-calls", "a.json", &serde_json::json!({"a": 1})).await.unwrap();
        let read: Option<serde_json::Value> = s3::get_json(&client, "vend-calls", "a.json").await.unwrap();
        assert_eq!(read, Some(serde_json::json!({"a": 1})));
        let writes = [
            "S3.CreateBucket",
            "S3.PutBucketVersioning",
            "S3.PutBucketEncryption",
            "S3.PutPublicAccessBlock",
            "S3.PutBucketPolicy",
            "S3.PutBucketTagging",
        ];
        let calls: Vec<&str> =
            ["S3.HeadBucket"].into_iter().chain(writes).chain(["S3.PutObject", "S3.GetObject"]).collect();
        assert_eq!(log.calls(), calls);
        assert_eq!(log.mutating(), writes.into_iter().chain(["S3.PutObject"]).collect::<Vec<_>>());
        // A second run of the same check finds the bucket: reads only.
        log.clear();
        assert!(!s3::ensure_state_bucket(&client, &platform).await.unwrap());
        assert_eq!(log.mutating(), Vec::<String>::new());
        assert_eq!(log.calls(), ["S3.HeadBucket"]);

        // The bucket is what `platform deploy` makes: its plan leaves it unchanged.
        let clients = vending_aws::infra::Clients::new(&config, true, None);
        let planned = vending_aws::infra::plan(
            &clients,
            vending_aws::infra::platform_stack(&clients, &platform, &[], true).await.unwrap(),
        )
        .await
        .unwrap();
        let bucket = planned.plan.changes.iter().find(|c| c.name == "vend-calls").expect("the bucket is planned");
        assert_eq!(bucket.action, vending::plan::Action::Unchanged, "{bucket:?}");
    });
}
