//! Plan and deploy against the local emulator with the real SDK: from nothing to the sample
//! stacks, every resource checked through the SDK; idempotence counted with the call log;
//! priorities that never move; one setting changed; drift; interrupted deploys; refusals.
//!
//! Emulator gaps these tests work around (see ARCHITECTURE.md): no instance refresh (the deploy
//! says so, asserted below); CodeDeploy has no UpdateDeploymentGroup (not exercised by a change
//! here); the fixes in `crates/emulator/src/moto_fixes.py` (tested in `emulator.rs`).

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum;
use vending::ami::{AmiRecord, Commit};
use vending::config::model::Fleet;
use vending::config::validate::validate_fleet;
use vending::plan::{Action, Kind, Resource};
use vending_aws::calls::CallLog;
use vending_aws::infra::{self, ApplyOptions, Clients, Planned};
use vending_aws::Target;
use vending_emulator::Moto;

pub(crate) struct World {
    pub(crate) moto: Moto,
    pub(crate) clients: Clients,
    pub(crate) log: CallLog,
    pub(crate) fleet: Fleet,
}

pub(crate) fn sample_fleet() -> Fleet {
    let sources = vending::project::read_fleet(&crate::repo_root(), None).unwrap();
    let (fleet, diagnostics) = validate_fleet(&sources);
    assert!(diagnostics.iter().all(|d| d.severity != vending::Severity::Error), "{diagnostics:?}");
    fleet.unwrap()
}

/// A fresh emulator with the platform deployed and an AMI record for every sample environment.
pub(crate) fn world() -> World {
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let config = crate::block_on(vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: moto.endpoint() }));
    let log = CallLog::default();
    let clients = Clients::new(&config, true, Some(&log));
    let world = World { moto, clients, log, fleet: sample_fleet() };
    crate::block_on(world.prepare());
    world
}

fn options() -> ApplyOptions {
    ApplyOptions::default()
}

impl World {
    async fn prepare(&self) {
        let platform = &self.fleet.platform;
        let mut planned =
            infra::plan(&self.clients, infra::platform_stack(&self.clients, platform, &[], true).await.unwrap())
                .await
                .unwrap();
        infra::apply(&self.clients, &mut planned, &options()).await.unwrap();
        let image = self.image(&platform.ami.local_base_name).await;
        for customer in &self.fleet.customers {
            for env in &customer.environments {
                self.record_ami(&customer.name, &env.name, &image).await;
            }
        }
        self.log.clear();
    }

    async fn image(&self, name: &str) -> String {
        let found = vending_aws::ec2::find_image(&self.clients.ec2, name, &[]).await.unwrap();
        found.unwrap_or_else(|| panic!("the emulator has no AMI named {name}")).0
    }

    async fn record_ami(&self, customer: &str, env: &str, image: &str) {
        let record = AmiRecord {
            customer: customer.into(),
            environment: env.into(),
            amis: [("eu-west-1".to_string(), image.to_string())].into(),
            commit: Commit {
                id: "c0ffee".into(),
                time: "2026-11-29T18:00:00Z".into(),
                author: "A".into(),
                message: "m".into(),
            },
            dirty: false,
            packer_run_uuid: "run".into(),
            build: "amazon-ebs.local".into(),
            built_at: "2026-11-29T18:01:00Z".into(),
            template_sha256: "0".into(),
        };
        let key = AmiRecord::current_key(customer, env);
        vending_aws::s3::put_json(&self.clients.s3, &self.fleet.platform.state_bucket, &key, &record).await.unwrap();
    }

    async fn plan_with(&self, fleet: &Fleet, customer: &str, env: &str) -> anyhow::Result<Planned> {
        let (c, e) = fleet.environment(customer, env).unwrap();
        let stack = infra::environment_stack(&self.clients, &fleet.platform, c, e, true).await?;
        infra::plan(&self.clients, stack).await
    }

    async fn plan(&self, customer: &str, env: &str) -> Planned {
        self.plan_with(&self.fleet, customer, env).await.unwrap()
    }

    async fn deploy_with(&self, fleet: &Fleet, customer: &str, env: &str, options: &ApplyOptions) -> infra::Applied {
        let mut planned = self.plan_with(fleet, customer, env).await.unwrap();
        infra::apply(&self.clients, &mut planned, options).await.unwrap()
    }

    pub(crate) async fn deploy(&self, customer: &str, env: &str) -> infra::Applied {
        self.deploy_with(&self.fleet, customer, env, &options()).await
    }

    async fn listener(&self, load_balancer: &str, port: i32) -> aws_sdk_elasticloadbalancingv2::types::Listener {
        let elb = &self.clients.elb;
        let lb = elb.describe_load_balancers().names(load_balancer).send().await.unwrap();
        let arn = lb.load_balancers()[0].load_balancer_arn.clone().unwrap();
        let listeners = elb.describe_listeners().load_balancer_arn(arn).send().await.unwrap();
        listeners.listeners().iter().find(|l| l.port == Some(port)).cloned().expect("listener")
    }

    /// Host-header rules on a listener: hosts → priority.
    async fn rules(&self, listener_arn: &str) -> BTreeMap<String, String> {
        let rules = self.clients.elb.describe_rules().listener_arn(listener_arn).send().await.unwrap();
        rules
            .rules()
            .iter()
            .filter(|r| r.is_default != Some(true))
            .map(|r| {
                let hosts: Vec<String> = r
                    .conditions()
                    .iter()
                    .flat_map(|c| c.host_header_config.as_ref().map_or(c.values(), |h| h.values()).to_vec())
                    .collect();
                (hosts.join(","), r.priority.clone().unwrap())
            })
            .collect()
    }
}

fn changed(planned: &Planned) -> Vec<(Kind, String)> {
    planned.plan.changes.iter().filter(|c| c.action != Action::Unchanged).map(|c| (c.kind, c.name.clone())).collect()
}

#[test]
fn from_nothing_to_the_sample_stacks_then_nothing_to_do() {
    let w = world();
    crate::block_on(async {
        let acme = w.deploy("acme", "prod").await;
        // 14 resources and, production being gated, the approval topic.
        assert_eq!(acme.changed.len(), 15, "{:?}", acme.changed);
        let globex = w.deploy("globex", "dev").await;
        assert_eq!(globex.changed.len(), 8, "{:?}", globex.changed);

        let elb = &w.clients.elb;
        // Dedicated load balancer: 80 redirects permanently to 443.
        let http = w.listener("acme-prod-alb", 80).await;
        let redirect = http.default_actions()[0].redirect_config.clone().unwrap();
        assert_eq!(http.default_actions()[0].r#type, Some(ActionTypeEnum::Redirect));
        assert_eq!((redirect.protocol.as_deref(), redirect.port.as_deref()), (Some("HTTPS"), Some("443")));
        assert_eq!(redirect.status_code.unwrap().as_str(), "HTTP_301");
        // 443: the customer's certificate, 503 "host not found" as text/plain by default.
        let https = w.listener("acme-prod-alb", 443).await;
        let fixed = https.default_actions()[0].fixed_response_config.clone().unwrap();
        assert_eq!(fixed.status_code.as_deref(), Some("503"));
        assert_eq!(fixed.content_type.as_deref(), Some("text/plain"));
        assert_eq!(fixed.message_body.as_deref(), Some("host not found"));
        let certificate = https.certificates()[0].certificate_arn.clone().unwrap();
        let described = w.clients.acm.describe_certificate().certificate_arn(&certificate).send().await.unwrap();
        let described = described.certificate.unwrap();
        assert_eq!(described.domain_name.as_deref(), Some("*.acme.example.com"));
        assert_eq!(described.status.unwrap().as_str(), "ISSUED");
        // Host rule on the dedicated listener, forwarding to the customer's target group.
        let rules = w.rules(https.listener_arn().unwrap()).await;
        assert_eq!(
            rules,
            BTreeMap::from([("shop.acme.example.com,www.acme.example.com".to_string(), "1".to_string())])
        );
        // globex/dev: a rule on the shared listener.
        let shared = w.listener("vend-shared", 443).await;
        let shared_rules = w.rules(shared.listener_arn().unwrap()).await;
        assert_eq!(shared_rules, BTreeMap::from([("globex-dev.apps.example.com".to_string(), "1".to_string())]));

        // Target group health check from config (acme prod: interval 15).
        let tg = elb.describe_target_groups().names("acme-prod-tg").send().await.unwrap();
        let tg = &tg.target_groups()[0];
        assert_eq!(tg.health_check_path.as_deref(), Some("/health"));
        assert_eq!(tg.health_check_interval_seconds, Some(15));
        assert_eq!(tg.health_check_timeout_seconds, Some(5));
        assert_eq!(tg.healthy_threshold_count, Some(3));
        assert_eq!(tg.matcher.clone().unwrap().http_code.as_deref(), Some("200"));

        // Launch template: one version, the AMI of the record, t3.small.
        let image = w.image(&w.fleet.platform.ami.local_base_name).await;
        let versions =
            w.clients.ec2.describe_launch_template_versions().launch_template_name("acme-prod").send().await.unwrap();
        assert_eq!(versions.launch_template_versions().len(), 1);
        let data = versions.launch_template_versions()[0].launch_template_data.clone().unwrap();
        assert_eq!(data.image_id.as_deref(), Some(image.as_str()));
        assert_eq!(data.instance_type.unwrap().as_str(), "t3.small");
        assert_eq!(data.metadata_options.unwrap().http_tokens.unwrap().as_str(), "required");

        // Auto Scaling group on the launch template, in the target group, ELB health checks.
        let groups =
            w.clients.asg.describe_auto_scaling_groups().auto_scaling_group_names("acme-prod").send().await.unwrap();
        let group = &groups.auto_scaling_groups()[0];
        assert_eq!(group.launch_template.as_ref().unwrap().launch_template_name.as_deref(), Some("acme-prod"));
        assert!(group.launch_configuration_name.is_none());
        assert_eq!((group.min_size, group.max_size, group.desired_capacity), (Some(2), Some(6), Some(2)));
        assert_eq!(group.health_check_type.as_deref(), Some("ELB"));
        assert_eq!(group.health_check_grace_period, Some(300));
        assert_eq!(group.target_group_arns(), [tg.target_group_arn.clone().unwrap()]);
        let policies = w.clients.asg.describe_policies().auto_scaling_group_name("acme-prod").send().await.unwrap();
        let mut targets: Vec<(String, f64)> = policies
            .scaling_policies()
            .iter()
            .map(|p| {
                let t = p.target_tracking_configuration.clone().unwrap();
                (
                    t.predefined_metric_specification.unwrap().predefined_metric_type.unwrap().as_str().to_string(),
                    t.target_value.unwrap(),
                )
            })
            .collect();
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            targets,
            [("ALBRequestCountPerTarget".to_string(), 1000.0), ("ASGAverageCPUUtilization".to_string(), 55.0)]
        );

        // Database: Multi-AZ, managed secret, protected, encrypted, no password anywhere.
        let dbs = w.clients.rds.describe_db_instances().db_instance_identifier("acme-prod-db").send().await.unwrap();
        let db = &dbs.db_instances()[0];
        assert_eq!(db.multi_az, Some(true));
        assert!(db.master_user_secret.as_ref().and_then(|s| s.secret_arn.clone()).is_some());
        assert_eq!(db.deletion_protection, Some(true));
        assert_eq!(db.storage_encrypted, Some(true));
        assert_eq!(db.backup_retention_period, Some(14));
        assert_eq!(db.preferred_backup_window.as_deref(), Some("02:00-02:30"));

        // Deployment group: the ASG, the target group, one at a time, rollback on failure and stop.
        let group = w
            .clients
            .codedeploy
            .get_deployment_group()
            .application_name("acme")
            .deployment_group_name("acme-prod")
            .send()
            .await
            .unwrap()
            .deployment_group_info
            .unwrap();
        assert_eq!(group.deployment_config_name.as_deref(), Some("CodeDeployDefault.OneAtATime"));
        assert_eq!(group.auto_scaling_groups()[0].name.as_deref(), Some("acme-prod"));
        let style = group.deployment_style.unwrap();
        assert_eq!(style.deployment_option.unwrap().as_str(), "WITH_TRAFFIC_CONTROL");
        assert_eq!(style.deployment_type.unwrap().as_str(), "IN_PLACE");
        let rollback = group.auto_rollback_configuration.unwrap();
        assert!(rollback.enabled);
        let mut events: Vec<&str> = rollback.events().iter().map(|e| e.as_str()).collect();
        events.sort();
        assert_eq!(events, ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]);
        let lb_info = group.load_balancer_info.unwrap();
        assert_eq!(lb_info.target_group_info_list()[0].name.as_deref(), Some("acme-prod-tg"));

        // The customer bucket: versioned, encrypted, public access blocked, TLS only, tagged.
        let bucket = "vend-acme-prod";
        let versioning = w.clients.s3.get_bucket_versioning().bucket(bucket).send().await.unwrap();
        assert_eq!(versioning.status.unwrap().as_str(), "Enabled");
        let policy = w.clients.s3.get_bucket_policy().bucket(bucket).send().await.unwrap().policy.unwrap();
        assert!(policy.contains("aws:SecureTransport"), "{policy}");

        // Idempotence: a second deploy reads and changes nothing.
        w.log.clear();
        for (customer, env) in [("acme", "prod"), ("globex", "dev")] {
            let planned = w.plan(customer, env).await;
            assert_eq!(changed(&planned), [], "{}", planned.plan.render_human());
            let applied = w.deploy(customer, env).await;
            assert!(applied.changed.is_empty());
        }
        assert_eq!(w.log.mutating(), Vec::<String>::new(), "a deploy with nothing to do mutates nothing");
        assert!(w.log.calls().len() > 20, "the plan did read the live state: {:?}", w.log.calls());
        // Exactly one of each, whatever the emulator would have allowed.
        let lbs = elb.describe_load_balancers().send().await.unwrap();
        let mut names: Vec<_> = lbs.load_balancers().iter().filter_map(|l| l.load_balancer_name.clone()).collect();
        names.sort();
        assert_eq!(names, ["acme-prod-alb", "vend-shared"]);
    });
    drop(w.moto);
}

#[test]
fn rule_priorities_never_move_whatever_the_deploy_order() {
    let w = world();
    crate::block_on(async {
        for (customer, env) in [("globex", "prod"), ("acme", "dev"), ("globex", "dev")] {
            w.deploy(customer, env).await;
        }
        let shared = w.listener("vend-shared", 443).await;
        let arn = shared.listener_arn().unwrap();
        let first = w.rules(arn).await;
        assert_eq!(
            first,
            BTreeMap::from([
                ("globex.apps.example.com,www-globex.apps.example.com".to_string(), "1".to_string()),
                ("acme-dev.apps.example.com".to_string(), "2".to_string()),
                ("globex-dev.apps.example.com".to_string(), "3".to_string()),
            ])
        );
        // Deploying again in another order moves nobody.
        for (customer, env) in [("globex", "dev"), ("acme", "dev"), ("globex", "prod")] {
            let applied = w.deploy(customer, env).await;
            assert!(applied.changed.is_empty(), "{customer}/{env}: {:?}", applied.changed);
        }
        assert_eq!(w.rules(arn).await, first);
        // A freed priority goes to the next new rule; the others keep theirs.
        let rules = w.clients.elb.describe_rules().listener_arn(arn).send().await.unwrap();
        let acme_rule =
            rules.rules().iter().find(|r| r.priority.as_deref() == Some("2")).unwrap().rule_arn.clone().unwrap();
        w.clients.elb.delete_rule().rule_arn(acme_rule).send().await.unwrap();
        let planned = w.plan("acme", "dev").await;
        assert_eq!(changed(&planned), [(Kind::ListenerRule, "vend-shared:443/acme-dev".to_string())]);
        w.deploy("acme", "dev").await;
        assert_eq!(w.rules(arn).await, first);
    });
}

#[test]
fn one_changed_setting_changes_exactly_that() {
    let w = world();
    crate::block_on(async {
        w.deploy("globex", "dev").await;
        let mut fleet = w.fleet.clone();
        let env = fleet.customers.iter_mut().find(|c| c.name == "globex").unwrap();
        let env = env.environments.iter_mut().find(|e| e.name == "dev").unwrap();
        env.health_check.path = "/ready".into();
        env.instance_type = "t3.small".into();

        let planned = w.plan_with(&fleet, "globex", "dev").await.unwrap();
        let updates: Vec<_> = planned
            .plan
            .changes
            .iter()
            .filter_map(|c| match &c.action {
                Action::Update(fields) => {
                    Some((c.name.clone(), fields.iter().map(|f| f.field.clone()).collect::<Vec<_>>()))
                }
                Action::Unchanged => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            updates,
            [
                ("globex-dev-tg".to_string(), vec!["health_check.path".to_string()]),
                ("globex-dev".to_string(), vec!["instance_type".to_string()]),
            ]
        );
        w.log.clear();
        let applied = w.deploy_with(&fleet, "globex", "dev", &options()).await;
        assert_eq!(applied.changed, ["target-group globex-dev-tg", "launch-template globex-dev"]);
        assert_eq!(
            w.log.mutating(),
            [
                "Elastic Load Balancing v2.ModifyTargetGroup",
                "EC2.CreateLaunchTemplateVersion",
                "EC2.ModifyLaunchTemplate"
            ]
        );
        // The emulator has no instance refresh: the deploy says what AWS would do instead.
        assert!(applied.notes.iter().any(|n| n.contains("no instance refresh")), "{:?}", applied.notes);
        let tg = w.clients.elb.describe_target_groups().names("globex-dev-tg").send().await.unwrap();
        assert_eq!(tg.target_groups()[0].health_check_path.as_deref(), Some("/ready"));
        let versions = w
            .clients
            .ec2
            .describe_launch_template_versions()
            .launch_template_name("globex-dev")
            .versions("$Default")
            .send()
            .await
            .unwrap();
        let default = &versions.launch_template_versions()[0];
        assert_eq!(default.version_number, Some(2));
        let data = default.launch_template_data.clone().unwrap();
        assert_eq!(data.instance_type.unwrap().as_str(), "t3.small");
        assert!(data.image_id.is_some(), "the new version carries the whole data, not only the change");
        assert_eq!(changed(&w.plan_with(&fleet, "globex", "dev").await.unwrap()), []);

        // A new AMI in the record is a new launch template version too.
        let other = w.image("al2023-ami-2023.12.20260930.0-kernel-6.12-x86_64").await;
        w.record_ami("globex", "dev", &other).await;
        let planned = w.plan_with(&fleet, "globex", "dev").await.unwrap();
        assert_eq!(changed(&planned), [(Kind::LaunchTemplate, "globex-dev".to_string())]);
    });
}

/// A new deregistration delay is planned as exactly that field and set with the target group's
/// attributes; the next plan has nothing to do.
#[test]
fn a_changed_deregistration_delay_is_planned_and_applied() {
    let w = world();
    crate::block_on(async {
        w.deploy("globex", "dev").await;
        let mut fleet = w.fleet.clone();
        let globex = fleet.customers.iter_mut().find(|c| c.name == "globex").unwrap();
        let env = globex.environments.iter_mut().find(|e| e.name == "dev").unwrap();
        assert_eq!(env.deregistration_delay_seconds, 300, "AWS's default unless set");
        env.deregistration_delay_seconds = 30;
        let planned = w.plan_with(&fleet, "globex", "dev").await.unwrap();
        let updates: Vec<_> = planned
            .plan
            .changes
            .iter()
            .filter_map(|c| match &c.action {
                Action::Update(fields) => Some((c.name.clone(), fields.clone())),
                Action::Unchanged => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(updates.len(), 1, "{}", planned.plan.render_human());
        assert_eq!(updates[0].0, "globex-dev-tg");
        let field = &updates[0].1;
        assert_eq!(
            field.iter().map(|f| (f.field.as_str(), f.old.as_deref(), f.new.as_str())).collect::<Vec<_>>(),
            [("deregistration_delay", Some("300"), "30")]
        );
        w.log.clear();
        let applied = w.deploy_with(&fleet, "globex", "dev", &options()).await;
        assert_eq!(applied.changed, ["target-group globex-dev-tg"]);
        assert_eq!(w.log.mutating(), ["Elastic Load Balancing v2.ModifyTargetGroupAttributes"]);
        let tg = w.clients.elb.describe_target_groups().names("globex-dev-tg").send().await.unwrap();
        let arn = tg.target_groups()[0].target_group_arn.clone().unwrap();
        let attributes = w.clients.elb.describe_target_group_attributes().target_group_arn(arn).send().await.unwrap();
        let delay = attributes.attributes().iter().find(|a| a.key() == Some("deregistration_delay.timeout_seconds"));
        assert_eq!(delay.and_then(|a| a.value()), Some("30"));
        assert_eq!(changed(&w.plan_with(&fleet, "globex", "dev").await.unwrap()), []);
    });
}

/// A tag added and one removed in the config: every tagged resource gets the new one and loses
/// the old one (one call to set, one to remove, per service that tags by key), and the next plan
/// has nothing to do.
#[test]
fn changed_tags_are_set_and_stale_ones_removed() {
    let w = world();
    crate::block_on(async {
        w.deploy("globex", "dev").await;
        let mut fleet = w.fleet.clone();
        let globex = fleet.customers.iter_mut().find(|c| c.name == "globex").unwrap();
        let env = globex.environments.iter_mut().find(|e| e.name == "dev").unwrap();
        assert!(env.tags.remove("Owner").is_some());
        env.tags.insert("CostCenter".into(), "42".into());
        w.log.clear();
        let applied = w.deploy_with(&fleet, "globex", "dev", &options()).await;
        assert_eq!(
            w.log.mutating(),
            [
                "S3.PutBucketTagging",
                "Elastic Load Balancing v2.AddTags",
                "Elastic Load Balancing v2.RemoveTags",
                "EC2.CreateTags",
                "EC2.DeleteTags",
                "Auto Scaling.CreateOrUpdateTags",
                "Auto Scaling.DeleteTags"
            ]
        );
        assert_eq!(
            applied.changed,
            [
                "bucket vend-globex-dev",
                "target-group globex-dev-tg",
                "launch-template globex-dev",
                "auto-scaling-group globex-dev"
            ]
        );
        // moto 5.2.5 keeps a launch template's tags in its tag store (DescribeTags) but answers
        // DescribeLaunchTemplates with the tags it was created with, so only there the plan still
        // sees the old ones.
        let planned = w.plan_with(&fleet, "globex", "dev").await.unwrap();
        let mut rest = changed(&planned);
        rest.retain(|(kind, _)| *kind != Kind::LaunchTemplate);
        assert_eq!(rest, [], "{}", planned.plan.render_human());
        let lt = w.clients.ec2.describe_launch_templates().launch_template_names("globex-dev").send().await.unwrap();
        let id = lt.launch_templates()[0].launch_template_id.clone().unwrap();
        let filter = aws_sdk_ec2::types::Filter::builder().name("resource-id").values(id).build();
        let lt_tags = w.clients.ec2.describe_tags().filters(filter).send().await.unwrap();
        let keys: Vec<_> = lt_tags.tags().iter().filter_map(|t| t.key.clone()).collect();
        assert!(keys.contains(&"CostCenter".to_string()) && !keys.contains(&"Owner".to_string()), "{keys:?}");
        let tg = w.clients.elb.describe_target_groups().names("globex-dev-tg").send().await.unwrap();
        let arn = tg.target_groups()[0].target_group_arn.clone().unwrap();
        let tags = w.clients.elb.describe_tags().resource_arns(arn).send().await.unwrap();
        let keys: Vec<_> = tags.tag_descriptions()[0].tags().iter().filter_map(|t| t.key.clone()).collect();
        assert!(keys.contains(&"CostCenter".to_string()) && !keys.contains(&"Owner".to_string()), "{keys:?}");
    });
}

#[test]
fn changes_made_outside_the_tool_show_as_drift_and_are_put_back() {
    let w = world();
    crate::block_on(async {
        w.deploy("globex", "dev").await;
        let tg = w.clients.elb.describe_target_groups().names("globex-dev-tg").send().await.unwrap();
        let arn = tg.target_groups()[0].target_group_arn.clone().unwrap();
        w.clients.elb.modify_target_group().target_group_arn(&arn).health_check_path("/by-hand").send().await.unwrap();
        w.clients
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name("globex-dev")
            .max_size(5)
            .desired_capacity(2)
            .send()
            .await
            .unwrap();
        let planned = w.plan("globex", "dev").await;
        let text = planned.plan.render_human();
        assert!(text.contains("health_check.path: /by-hand → /health"), "{text}");
        assert!(text.contains("max: 5 → 2"), "{text}");
        assert!(!text.contains("desired:"), "the scaling policies own the desired capacity: {text}");
        w.deploy("globex", "dev").await;
        assert_eq!(changed(&w.plan("globex", "dev").await), []);
    });
}

#[test]
fn an_interrupted_deploy_converges_with_no_duplicates() {
    let w = world();
    crate::block_on(async {
        let total = w.plan("acme", "prod").await.plan.changes.len();
        for k in 0..total {
            // Each round starts from an emulator with only the platform and the AMI records.
            vending_emulator::reset(w.moto.port).unwrap();
            w.prepare().await;
            let stopped =
                w.deploy_with(&w.fleet, "acme", "prod", &ApplyOptions { stop_after: Some(k), ..options() }).await;
            assert_eq!(stopped.changed.len(), k);
            let rest = w.deploy("acme", "prod").await;
            assert_eq!(rest.changed.len(), total - k, "round {k}: {:?}", rest.changed);
            assert_eq!(changed(&w.plan("acme", "prod").await), [], "round {k}");
            let lbs = w.clients.elb.describe_load_balancers().names("acme-prod-alb").send().await.unwrap();
            assert_eq!(lbs.load_balancers().len(), 1, "round {k}");
            let https = w.listener("acme-prod-alb", 443).await;
            assert_eq!(w.rules(https.listener_arn().unwrap()).await.len(), 1, "round {k}");
            let listeners = w
                .clients
                .elb
                .describe_listeners()
                .load_balancer_arn(lbs.load_balancers()[0].load_balancer_arn.clone().unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(listeners.listeners().len(), 2, "round {k}");
            let groups = w.clients.asg.describe_auto_scaling_groups().send().await.unwrap();
            assert_eq!(groups.auto_scaling_groups().len(), 1, "round {k}");
            let versions = w
                .clients
                .ec2
                .describe_launch_template_versions()
                .launch_template_name("acme-prod")
                .send()
                .await
                .unwrap();
            assert_eq!(versions.launch_template_versions().len(), 1, "round {k}");
        }
    });
}

#[test]
fn destructive_changes_are_refused_unless_allowed_and_change_nothing() {
    let w = world();
    crate::block_on(async {
        w.deploy("acme", "prod").await;
        let mut fleet = w.fleet.clone();
        let acme = fleet.customers.iter_mut().find(|c| c.name == "acme").unwrap();
        let prod = acme.environments.iter_mut().find(|e| e.name == "prod").unwrap();
        prod.database.as_mut().unwrap().engine = "mysql".into();
        prod.instance_type = "t3.large".into();
        let mut planned = w.plan_with(&fleet, "acme", "prod").await.unwrap();
        assert!(planned.plan.render_human().contains("database acme-prod-db: replace  (DESTRUCTIVE"));
        w.log.clear();
        let refused = infra::apply(&w.clients, &mut planned, &options()).await.unwrap_err();
        let message = format!("{refused:#}");
        assert!(message.contains("acme/prod: the plan replaces database acme-prod-db"), "{message}");
        assert!(message.contains("--allow-destructive"), "{message}");
        assert_eq!(w.log.mutating(), Vec::<String>::new(), "nothing changed, not even the launch template");
        // Allowed, it still stops at deletion protection, which a person must lift.
        let error = infra::apply(&w.clients, &mut planned, &ApplyOptions { allow_destructive: true, ..options() })
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("deletion protection"), "{error:#}");
    });
}

#[test]
fn errors_name_the_environment_and_say_what_to_do() {
    let w = world();
    crate::block_on(async {
        // No AMI record.
        w.clients
            .s3
            .delete_object()
            .bucket(&w.fleet.platform.state_bucket)
            .key(AmiRecord::current_key("globex", "dev"))
            .send()
            .await
            .unwrap();
        let error = w.plan_with(&w.fleet, "globex", "dev").await.err().unwrap();
        assert_eq!(
            format!("{error:#}"),
            "globex/dev has no AMI yet (no s3://vend-platform-state/amis/globex/dev/current.json): build one with `cargo xtask ami globex dev --local`"
        );

        // A certificate that is not ISSUED is refused before any listener uses it (the
        // emulator would accept it).
        let pending = w
            .clients
            .acm
            .request_certificate()
            .domain_name("*.acme.example.com")
            .validation_method(aws_sdk_acm::types::ValidationMethod::Dns)
            .send()
            .await
            .unwrap()
            .certificate_arn
            .unwrap();
        let mut fleet = w.fleet.clone();
        let acme = fleet.customers.iter_mut().find(|c| c.name == "acme").unwrap();
        acme.certificate = Some(vending::config::model::CertificateRef::Arn(pending.clone()));
        let error = w.plan_with(&fleet, "acme", "prod").await.err().unwrap();
        let message = format!("{error:#}");
        assert!(message.starts_with("acme/prod: certificate "), "{message}");
        assert!(message.contains("PENDING_VALIDATION, not ISSUED"), "{message}");
    });
}

/// Whether the call about to be sent is an ELB CreateRule.
fn is_create_rule(cfg: &aws_smithy_types::config_bag::ConfigBag) -> bool {
    cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>().is_some_and(|m| m.name() == "CreateRule")
}

/// Holds the first CreateRule of each of two deploys until both have sent it: both have read the
/// listener's rules by then, so both ask for the same free priority, whatever the scheduling.
#[derive(Debug)]
struct MeetAtCreateRule {
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for MeetAtCreateRule {
    fn name(&self) -> &'static str {
        "MeetAtCreateRule"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let create_rule = is_create_rule(cfg);
        if create_rule && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            // Waits for the other deploy's CreateRule, but not for ever: if it never comes (its
            // deploy failed first), the assertions below fail instead of the test hanging.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while self.seen.load(std::sync::atomic::Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

#[test]
fn deploys_racing_for_a_priority_both_get_one() {
    let w = world();
    let endpoint = w.moto.endpoint();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Two deploys on two threads, as two operators' runs would be, each with its own clients.
    std::thread::scope(|scope| {
        for env in ["dev", "prod"] {
            let (w, endpoint, seen) = (&w, endpoint.clone(), seen.clone());
            scope.spawn(move || {
                crate::block_on(async {
                    let config = vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint }).await;
                    let mut clients = Clients::new(&config, true, Some(&w.log));
                    clients.elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
                        aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
                            .interceptor(w.log.clone())
                            .interceptor(MeetAtCreateRule { seen })
                            .build(),
                    );
                    let (c, e) = w.fleet.environment("globex", env).unwrap();
                    let stack = infra::environment_stack(&clients, &w.fleet.platform, c, e, true).await.unwrap();
                    let mut planned = infra::plan(&clients, stack).await.unwrap();
                    let applied = infra::apply(&clients, &mut planned, &options()).await.unwrap();
                    assert!(applied.changed.iter().any(|c| c.starts_with("listener-rule")), "{applied:?}");
                })
            });
        }
    });
    crate::block_on(async {
        // Both asked for priority 1; the loser met PriorityInUse and took the next free one.
        let attempts = w.log.calls().iter().filter(|c| c.ends_with(".CreateRule")).count();
        assert_eq!(attempts, 3, "both deploys asked for the same priority and one retried");
        let shared = w.listener("vend-shared", 443).await;
        let rules = w.rules(shared.listener_arn().unwrap()).await;
        let mut priorities: Vec<_> = rules.values().cloned().collect();
        priorities.sort();
        assert_eq!(priorities, ["1", "2"], "{rules:?}");
        assert_eq!(changed(&w.plan("globex", "dev").await), []);
        assert_eq!(changed(&w.plan("globex", "prod").await), []);
    });
}

/// Takes priority 1 on the shared listener just before the tool's first CreateRule is sent: the
/// deterministic form of another deploy winning the race.
#[derive(Debug)]
struct StealPriority {
    config: aws_config::SdkConfig,
    listener: String,
    done: std::sync::atomic::AtomicBool,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for StealPriority {
    fn name(&self) -> &'static str {
        "StealPriority"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let create_rule = is_create_rule(cfg);
        if create_rule && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let (config, listener) = (self.config.clone(), self.listener.clone());
            // Another client on another thread, as another deploy would be.
            std::thread::spawn(move || {
                crate::block_on(async {
                    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
                    let fixed = aws_sdk_elasticloadbalancingv2::types::FixedResponseActionConfig::builder()
                        .status_code("503")
                        .build();
                    elb.create_rule()
                        .listener_arn(listener)
                        .priority(1)
                        .conditions(
                            aws_sdk_elasticloadbalancingv2::types::RuleCondition::builder()
                                .field("host-header")
                                .values("other.example.com")
                                .build(),
                        )
                        .actions(
                            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                                .r#type(ActionTypeEnum::FixedResponse)
                                .fixed_response_config(fixed)
                                .build(),
                        )
                        .send()
                        .await
                        .unwrap();
                })
            })
            .join()
            .unwrap();
        }
        Ok(())
    }
}

#[test]
fn a_priority_taken_meanwhile_is_retried_with_the_next_free_one() {
    let mut w = world();
    crate::block_on(async {
        let listener = w.listener("vend-shared", 443).await.listener_arn.unwrap();
        let config = vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: w.moto.endpoint() }).await;
        let steal = StealPriority { config: config.clone(), listener: listener.clone(), done: Default::default() };
        w.clients.elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
                .interceptor(w.log.clone())
                .interceptor(steal)
                .build(),
        );
        w.log.clear();
        w.deploy("globex", "dev").await;
        let attempts = w.log.calls().iter().filter(|c| c.ends_with(".CreateRule")).count();
        assert_eq!(attempts, 2, "the first CreateRule met PriorityInUse and was retried");
        let rules = w.rules(&listener).await;
        assert_eq!(rules.get("globex-dev.apps.example.com").map(String::as_str), Some("2"), "{rules:?}");
        assert_eq!(rules.get("other.example.com").map(String::as_str), Some("1"), "{rules:?}");
    });
}

/// RDS holds some changes for the maintenance window and reports them as `PendingModifiedValues`
/// (the emulator applies every change at once): the plan sees them under `pending.`, built here
/// from the SDK's own types.
#[test]
fn changes_rds_holds_for_the_maintenance_window_are_read_as_pending() {
    use aws_sdk_rds::types::{DbInstance, PendingModifiedValues};
    let db = DbInstance::builder()
        .engine("postgres")
        .engine_version("16.6")
        .db_instance_class("db.t4g.medium")
        .allocated_storage(50)
        .preferred_maintenance_window("sun:03:00-sun:03:30")
        .auto_minor_version_upgrade(true)
        .pending_modified_values(
            PendingModifiedValues::builder().db_instance_class("db.r6g.large").allocated_storage(100).build(),
        )
        .build();
    let Resource::Database(found) = infra::database_found(&db).resource else { panic!("not a database") };
    assert_eq!(found.instance_class, "db.t4g.medium");
    assert_eq!(found.pending.instance_class.as_deref(), Some("db.r6g.large"));
    assert_eq!(found.pending.storage_gb, Some(100));
    assert_eq!(found.pending.engine_version, None);
    assert_eq!(found.maintenance_window.as_deref(), Some("sun:03:00-sun:03:30"));
    assert!(found.auto_minor_version_upgrade);
}

/// Records the `ApplyImmediately` parameter of every ModifyDBInstance sent (the emulator applies
/// every change at once whatever it says, so the request itself is what can be checked).
#[derive(Debug, Clone, Default)]
struct ApplyImmediatelySent(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for ApplyImmediatelySent {
    fn name(&self) -> &'static str {
        "ApplyImmediatelySent"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let modify = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .is_some_and(|m| m.name() == "ModifyDBInstance");
        let body = context.request().body().bytes().map(|b| String::from_utf8_lossy(b).into_owned());
        if let (true, Some(body)) = (modify, body) {
            let value = body.split('&').find_map(|p| p.strip_prefix("ApplyImmediately=")).unwrap_or("(absent)");
            self.0.lock().unwrap().push(value.to_string());
        }
        Ok(())
    }
}

#[test]
fn database_changes_wait_for_the_maintenance_window_unless_applied_immediately() {
    let mut w = world();
    let sent = ApplyImmediatelySent::default();
    let config = crate::block_on(vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: w.moto.endpoint() }));
    w.clients.rds = aws_sdk_rds::Client::from_conf(
        aws_sdk_rds::config::Builder::from(&config).interceptor(w.log.clone()).interceptor(sent.clone()).build(),
    );
    crate::block_on(async {
        w.deploy("acme", "prod").await;
        let mut fleet = w.fleet.clone();
        let set_class = |fleet: &mut Fleet, class: &str| {
            let acme = fleet.customers.iter_mut().find(|c| c.name == "acme").unwrap();
            let prod = acme.environments.iter_mut().find(|e| e.name == "prod").unwrap();
            prod.database.as_mut().unwrap().instance_class = class.into();
        };
        set_class(&mut fleet, "db.r6g.large");
        let applied = w.deploy_with(&fleet, "acme", "prod", &options()).await;
        assert_eq!(applied.changed, ["database acme-prod-db"]);
        assert_eq!(
            applied.notes,
            ["acme-prod-db: RDS applies instance_class in its maintenance window (sun:03:00-sun:03:30 UTC); `deploy --apply-immediately` applies it now"]
        );
        set_class(&mut fleet, "db.r6g.xlarge");
        let now = ApplyOptions { apply_immediately: true, ..options() };
        let applied = w.deploy_with(&fleet, "acme", "prod", &now).await;
        assert_eq!(applied.changed, ["database acme-prod-db"]);
        assert_eq!(applied.notes, Vec::<String>::new());
        let dbs = w.clients.rds.describe_db_instances().db_instance_identifier("acme-prod-db").send().await.unwrap();
        let db = &dbs.db_instances()[0];
        assert_eq!(db.db_instance_class.as_deref(), Some("db.r6g.xlarge"));
        assert_eq!(db.preferred_maintenance_window.as_deref(), Some("sun:03:00-sun:03:30"));
        assert_eq!(db.auto_minor_version_upgrade, Some(true));
        assert_eq!(*sent.0.lock().unwrap(), ["false", "true"], "ApplyImmediately as sent");
    });
}

/// `plan` reads and never writes, on every path: the platform's on an empty account (whose
/// shared listener needs a certificate that local mode makes) and every sample environment's
/// (acme's dedicated listener needs one too). Only `deploy` imports the certificate.
#[test]
fn a_plan_changes_nothing_on_any_path() {
    let moto = Moto::start(&crate::repo_root()).unwrap();
    let fleet = sample_fleet();
    crate::block_on(async {
        let config = vending_aws::sdk_config("eu-west-1", &Target::Local { endpoint: moto.endpoint() }).await;
        let log = CallLog::default();
        let clients = Clients::new(&config, true, Some(&log));
        let stack = infra::platform_stack(&clients, &fleet.platform, &[], true).await.unwrap();
        let planned = infra::plan(&clients, stack).await.unwrap();
        assert_eq!(log.mutating(), Vec::<String>::new());
        let https = planned.stack.desired.iter().find(|d| d.kind() == Kind::HttpsListener).unwrap();
        let Resource::HttpsListener(https) = &https.resource else { panic!("{https:?}") };
        assert_eq!(https.certificate.as_deref(), Some("(self-signed, imported by deploy) *.apps.example.com"));
    });
    let w = world();
    crate::block_on(async {
        for customer in &w.fleet.customers {
            for env in &customer.environments {
                w.plan(&customer.name, &env.name).await;
            }
        }
        assert_eq!(w.log.mutating(), Vec::<String>::new());
        w.deploy("acme", "prod").await;
        assert!(w.log.mutating().contains(&"ACM.ImportCertificate".to_string()), "{:?}", w.log.mutating());
        let planned = w.plan("acme", "prod").await;
        assert_eq!(changed(&planned), []);
    });
}

/// With CodeBuild's service role in the platform config, an environment gets a CodeBuild project
/// and a log group: created, then a changed compute type and retention are planned as exactly
/// those fields and applied (UpdateProject through the launcher's labelled fix), and a deploy
/// with nothing to change makes no mutating call. Secrets are variables that name a parameter or
/// secret; nothing reads them here.
#[test]
fn a_codebuild_project_and_its_log_group_are_reconciled() {
    let w = world();
    crate::block_on(async {
        let mut fleet = w.fleet.clone();
        let role = "arn:aws:iam::123456789012:role/vend-codebuild".to_string();
        fleet.platform.codebuild_service_role = Some(vending::config::model::RoleRef::Arn(role.clone()));
        let applied = w.deploy_with(&fleet, "acme", "prod", &options()).await;
        assert!(applied.changed.contains(&"log-group /aws/codebuild/acme-prod".to_string()), "{:?}", applied.changed);
        assert!(applied.changed.contains(&"code-build-project acme-prod".to_string()), "{:?}", applied.changed);
        let calls = w.log.calls();
        assert!(!calls.iter().any(|c| c.starts_with("SSM.") || c.starts_with("Secrets Manager.")), "{calls:?}");
        let projects = w.clients.codebuild.batch_get_projects().names("acme-prod").send().await.unwrap();
        let project = &projects.projects()[0];
        assert_eq!(project.service_role(), Some(role.as_str()));
        let variables = project.environment().unwrap().environment_variables();
        let dsn = variables.iter().find(|v| v.name() == "SENTRY_DSN").expect("the secret as a variable");
        assert_eq!(dsn.r#type().map(|t| t.as_str()), Some("PARAMETER_STORE"));
        assert_eq!(dsn.value(), "/acme/prod/sentry-dsn", "its name, which CodeBuild resolves");
        let committed =
            std::fs::read_to_string(crate::repo_root().join("buildspecs/acme/prod/buildspec.yaml")).unwrap();
        assert_eq!(project.source().and_then(|s| s.buildspec()), Some(committed.as_str()), "the generated buildspec");
        assert_eq!(project.timeout_in_minutes(), Some(60));
        assert_eq!(changed(&w.plan_with(&fleet, "acme", "prod").await.unwrap()), []);

        let acme = fleet.customers.iter_mut().find(|c| c.name == "acme").unwrap();
        let env = acme.environments.iter_mut().find(|e| e.name == "prod").unwrap();
        env.build.project.compute_type = vending::config::model::ComputeType::Medium;
        env.build.project.log_retention_days = 90;
        let planned = w.plan_with(&fleet, "acme", "prod").await.unwrap();
        let updates: Vec<(String, Vec<String>)> = planned
            .plan
            .changes
            .iter()
            .filter_map(|c| match &c.action {
                Action::Update(fields) => Some((c.name.clone(), fields.iter().map(|f| f.field.clone()).collect())),
                _ => None,
            })
            .collect();
        assert_eq!(
            updates,
            [
                ("/aws/codebuild/acme-prod".to_string(), vec!["retention_days".to_string()]),
                ("acme-prod".to_string(), vec!["compute_type".to_string()])
            ]
        );
        w.log.clear();
        w.deploy_with(&fleet, "acme", "prod", &options()).await;
        assert_eq!(w.log.mutating(), ["CloudWatch Logs.PutRetentionPolicy", "CodeBuild.UpdateProject"]);
        let projects = w.clients.codebuild.batch_get_projects().names("acme-prod").send().await.unwrap();
        let compute = projects.projects()[0].environment().unwrap().compute_type().as_str().to_string();
        assert_eq!(compute, "BUILD_GENERAL1_MEDIUM");
        w.log.clear();
        let again = w.deploy_with(&fleet, "acme", "prod", &options()).await;
        assert_eq!(again.changed, Vec::<String>::new());
        assert_eq!(w.log.mutating(), Vec::<String>::new());
    });
}
