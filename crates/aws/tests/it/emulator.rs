//! The fixes the local emulator runs with (`crates/emulator/src/moto_fixes.py`): one test per fix,
//! each failing on stock moto 5.2.5. They make the emulator answer as AWS documents; none fakes
//! progress or success.

use aws_sdk_s3::primitives::ByteStream;
use vending_aws::infra::Clients;
use vending_aws::Target;
use vending_emulator::Moto;

fn clients(moto: &Moto) -> Clients {
    let config = crate::block_on(vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: moto.endpoint() }));
    Clients::new(&config, true, None)
}

async fn bucket(clients: &Clients, name: &str) {
    clients
        .s3
        .create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Fix 1: stock moto answers `<GetBucketVersioningResponse>`, which the Rust SDK cannot parse.
#[test]
fn bucket_versioning_reads_back() {
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let clients = clients(&moto);
    crate::block_on(async {
        bucket(&clients, "fix-versioning").await;
        let never = clients.s3.get_bucket_versioning().bucket("fix-versioning").send().await.unwrap();
        assert_eq!(never.status, None, "a bucket never versioned has no status");
        clients
            .s3
            .put_bucket_versioning()
            .bucket("fix-versioning")
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let enabled = clients.s3.get_bucket_versioning().bucket("fix-versioning").send().await.unwrap();
        assert_eq!(enabled.status, Some(aws_sdk_s3::types::BucketVersioningStatus::Enabled));
    });
}

/// Fix 2: stock moto echoes a deployment group's Auto Scaling groups as `[{}]`.
#[test]
fn deployment_group_names_its_auto_scaling_groups() {
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let clients = clients(&moto);
    crate::block_on(async {
        clients.codedeploy.create_application().application_name("fix-app").send().await.unwrap();
        clients
            .codedeploy
            .create_deployment_group()
            .application_name("fix-app")
            .deployment_group_name("fix-group")
            .service_role_arn("arn:aws:iam::123456789012:role/x")
            .auto_scaling_groups("group-a")
            .auto_scaling_groups("group-b")
            .send()
            .await
            .unwrap();
        let out = clients
            .codedeploy
            .get_deployment_group()
            .application_name("fix-app")
            .deployment_group_name("fix-group")
            .send()
            .await
            .unwrap();
        let names: Vec<_> =
            out.deployment_group_info.unwrap().auto_scaling_groups().iter().map(|g| g.name.clone()).collect();
        assert_eq!(names, [Some("group-a".to_string()), Some("group-b".to_string())]);
    });
}

/// Fix 3: stock moto denies every request under a policy that denies plain HTTP only. With the
/// fix the conditional statement does not apply to the emulator's requests, and a statement
/// without a condition still denies.
#[test]
fn conditional_deny_statements_apply_only_when_their_condition_holds() {
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let clients = clients(&moto);
    crate::block_on(async {
        bucket(&clients, "fix-policy").await;
        let put = |key: &'static str| {
            clients.s3.put_object().bucket("fix-policy").key(key).body(ByteStream::from_static(b"x")).send()
        };
        put("open/a").await.unwrap();
        put("closed/a").await.unwrap();
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Resource": "arn:aws:s3:::fix-policy/*",
                    "Condition": { "Bool": { "aws:SecureTransport": "false" } }
                },
                {
                    "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::fix-policy/closed/*"
                }
            ]
        });
        clients.s3.put_bucket_policy().bucket("fix-policy").policy(policy.to_string()).send().await.unwrap();
        clients.s3.get_object().bucket("fix-policy").key("open/a").send().await.expect("the conditional deny applies");
        let denied = clients.s3.get_object().bucket("fix-policy").key("closed/a").send().await.unwrap_err();
        assert_eq!(denied.raw_response().map(|r| r.status().as_u16()), Some(403), "an unconditional deny still denies");
    });
}

/// Fix 4: stock moto has no CodeBuild UpdateProject (HTTP 500); AWS replaces the settings given.
#[test]
fn codebuild_projects_can_be_updated() {
    use aws_sdk_codebuild::types::{
        ArtifactsType, ComputeType, EnvironmentType, ProjectArtifacts, ProjectEnvironment, ProjectSource, SourceType,
    };
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let clients = clients(&moto);
    let source = ProjectSource::builder().r#type(SourceType::S3).location("bucket/sources/").build().unwrap();
    let artifacts = ProjectArtifacts::builder().r#type(ArtifactsType::S3).location("bucket").build().unwrap();
    let environment = |compute: ComputeType| {
        ProjectEnvironment::builder()
            .r#type(EnvironmentType::LinuxContainer)
            .image("aws/codebuild/amazonlinux-x86_64-standard:5.0")
            .compute_type(compute)
            .build()
            .unwrap()
    };
    crate::block_on(async {
        let role = "arn:aws:iam::123456789012:role/build";
        clients
            .codebuild
            .create_project()
            .name("fix-update")
            .source(source.clone())
            .artifacts(artifacts.clone())
            .environment(environment(ComputeType::BuildGeneral1Small))
            .service_role(role)
            .timeout_in_minutes(30)
            .send()
            .await
            .unwrap();
        clients
            .codebuild
            .update_project()
            .name("fix-update")
            .environment(environment(ComputeType::BuildGeneral1Large))
            .timeout_in_minutes(45)
            .send()
            .await
            .unwrap();
        let projects = clients.codebuild.batch_get_projects().names("fix-update").send().await.unwrap();
        let project = &projects.projects()[0];
        assert_eq!(project.environment().unwrap().compute_type(), &ComputeType::BuildGeneral1Large);
        assert_eq!(project.timeout_in_minutes(), Some(45));
        assert_eq!(project.service_role(), Some(role), "what the update did not give is kept");
        let missing = clients.codebuild.update_project().name("no-such-project").send().await;
        assert!(missing.is_err());
    });
}
