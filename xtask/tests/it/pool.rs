//! The pool of shared load balancers on the emulator, with a quota of two rules per load
//! balancer: `validate` says how many the fleet needs, `platform deploy` makes them, the third
//! environment is placed on the second one, the placements are recorded, and deploying everyone
//! again moves nobody.

use vending_emulator::Moto;

use crate::{packer_available, repo_root, Project};

#[test]
fn a_quota_of_two_rules_places_the_third_environment_on_a_second_shared_load_balancer() {
    if !packer_available() {
        return;
    }
    let moto = Moto::start(&repo_root()).expect("start the local AWS emulator");
    let project = Project::copy().with_apps();
    crate::fleet::add_customer(&project, "initech", false);
    crate::fleet::add_customer(&project, "hooli", false);
    project.edit("customers/platform.toml", "name = \"vend-shared\"\n", "name = \"vend-shared\"\nrules_per_alb = 2\n");
    let run = project.run(&["generate"]);
    assert_eq!(run.code, 0, "{run:?}");
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];

    // acme/dev, globex/dev and /prod, hooli/dev and /prod, initech/dev and /prod share the listener.
    let run = project.run(&["validate", "--no-packer"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "7 environment(s) on the shared listener need 4 shared load balancer(s) (vend-shared to vend-shared-4) at 2 rules each"
        ),
        "{run:?}"
    );
    let run = project.run_with(&["platform", "deploy", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    for name in ["vend-shared", "vend-shared-2", "vend-shared-3", "vend-shared-4"] {
        assert!(run.stdout.contains(&format!("created load-balancer {name}\n")), "{name}: {run:?}");
    }
    let run = project.run_with(&["ami", "--all", "--envs", "dev", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");

    let deploy = |customer: &str| {
        let run = project.run_with(&["deploy", customer, "dev", "--local", "--infra-only"], &env);
        assert_eq!(run.code, 0, "{run:?}");
        run
    };
    for customer in ["acme", "globex"] {
        let run = deploy(customer);
        let placed = format!("{customer}/dev | {customer}-dev.apps.example.com served by shared load balancer vend-shared (a new placement)");
        assert!(run.stdout.contains(&placed), "{run:?}");
    }
    let run = deploy("initech");
    assert!(run.stdout.contains("+ listener-rule vend-shared-2:443/initech-dev: create"), "{run:?}");
    assert!(run.stdout.contains("served by shared load balancer vend-shared-2 (a new placement)"), "{run:?}");

    // The record, and the rules where it says.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = vending_aws::Target::Local { endpoint: endpoint.clone() };
    let config = runtime.block_on(vending_aws::sdk_config("eu-west-1", &target));
    let s3 = vending_aws::s3::client(&config, true);
    let placements: vending::pool::Placements = runtime
        .block_on(vending_aws::s3::get_json(&s3, "vend-platform-state", vending::pool::PLACEMENTS_KEY))
        .unwrap()
        .expect("the placements are recorded");
    let expected = [("acme/dev", 1), ("globex/dev", 1), ("initech/dev", 2)];
    assert_eq!(placements.environments, expected.map(|(w, m)| (w.to_string(), m)).into_iter().collect());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let rules_on = |name: &str| {
        runtime.block_on(async {
            let lb = elb.describe_load_balancers().names(name).send().await.unwrap();
            let arn = lb.load_balancers()[0].load_balancer_arn().unwrap().to_string();
            let listeners = elb.describe_listeners().load_balancer_arn(arn).send().await.unwrap();
            let https = listeners.listeners().iter().find(|l| l.port() == Some(443)).unwrap();
            let rules = elb.describe_rules().listener_arn(https.listener_arn().unwrap()).send().await.unwrap();
            rules.rules().iter().filter(|r| r.is_default() != Some(true)).count()
        })
    };
    assert_eq!([rules_on("vend-shared"), rules_on("vend-shared-2"), rules_on("vend-shared-3")], [2, 1, 0]);

    // Everyone again: nothing changes, nobody moves.
    for customer in ["acme", "globex", "initech"] {
        let run = deploy(customer);
        assert!(run.stdout.contains(&format!("{customer}/dev: no changes")), "{run:?}");
        assert!(run.stdout.contains("(placed there before)"), "{run:?}");
    }
    let run = project.run_with(&["status", "--local"], &env);
    assert!(
        run.stdout.contains("initech/dev | initech-dev.apps.example.com served by shared load balancer vend-shared-2"),
        "{run:?}"
    );
    let run = project.run_with(&["platform", "plan", "--local"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "platform | shared load balancer vend-shared: 2 of 2 environment(s) placed: acme/dev, globex/dev"
        ),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("platform | shared load balancer vend-shared-2: 1 of 2 environment(s) placed: initech/dev"),
        "{run:?}"
    );

    // A rule from before the pool (acme/dev's, with no placement on record) on a full first load
    // balancer: it stays where it is.
    let mut before = placements.clone();
    before.environments.remove("acme/dev");
    before.environments.insert("zeta/dev".into(), 1);
    runtime
        .block_on(vending_aws::s3::put_json(&s3, "vend-platform-state", vending::pool::PLACEMENTS_KEY, &before))
        .unwrap();
    let run = deploy("acme");
    assert!(run.stdout.contains("acme/dev: no changes"), "{run:?}");
    assert!(
        run.stdout.contains("served by shared load balancer vend-shared (its rule is there from before the pool)"),
        "{run:?}"
    );
    let placements: vending::pool::Placements = runtime
        .block_on(vending_aws::s3::get_json(&s3, "vend-platform-state", vending::pool::PLACEMENTS_KEY))
        .unwrap()
        .unwrap();
    assert_eq!(placements.member_of("acme/dev"), None, "a deploy with nothing to change writes nothing");

    // No record at all (a fleet from before the pool): the rules there count. The first load
    // balancer holds two, the second one: hooli/dev goes to the second.
    runtime
        .block_on(s3.delete_object().bucket("vend-platform-state").key(vending::pool::PLACEMENTS_KEY).send())
        .unwrap();
    let run = deploy("hooli");
    assert!(run.stdout.contains("+ listener-rule vend-shared-2:443/hooli-dev: create"), "{run:?}");
    assert_eq!([rules_on("vend-shared"), rules_on("vend-shared-2")], [2, 2]);
}
