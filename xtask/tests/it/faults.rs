//! Faults, against the emulator: transient ones (dropped connections, 503, throttling, delays)
//! injected by a proxy between the tool and the emulator are retried and the deploy completes; a
//! permanent one (403) stops the deploy cleanly and the run after it converges; a deploy killed
//! (SIGKILL) at random points, in a seeded loop, converges when run again to exactly what a clean
//! deploy makes, and a later plan is empty.

use std::time::{Duration, Instant};

use vending_emulator::faults::{FaultProxy, Faults};
use vending_emulator::Moto;

use crate::{packer_available, repo_root, Project, Run};

fn env_for(endpoint: &str) -> [(&'static str, String); 1] {
    [("AWS_ENDPOINT_URL", endpoint.to_string())]
}

fn run(project: &Project, args: &[&str], endpoint: &str) -> Run {
    let env = env_for(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    project.run_with(args, &env)
}

/// What the emulator holds for an environment, resource by resource, as names and counts: a
/// converged deploy has each exactly once.
fn inventory(moto: &Moto, customer: &str, env: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let target = vending_aws::Target::Local { endpoint: moto.endpoint() };
        let config = vending_aws::sdk_config("eu-west-1", &target).await;
        let stem = format!("{customer}-{env}");
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let mut out = Vec::new();
        let groups = elb.describe_target_groups().send().await.unwrap();
        let tgs: Vec<_> = groups
            .target_groups()
            .iter()
            .filter(|t| t.target_group_name().unwrap_or_default().starts_with(&stem))
            .collect();
        out.push(format!("target groups: {}", tgs.len()));
        let templates = ec2.describe_launch_templates().send().await.unwrap();
        let named =
            templates.launch_templates().iter().filter(|t| t.launch_template_name() == Some(stem.as_str())).count();
        out.push(format!("launch templates: {named}"));
        let balancers = elb.describe_load_balancers().send().await.unwrap();
        let shared = balancers.load_balancers().iter().find(|b| b.load_balancer_name() == Some("vend-shared")).unwrap();
        let listeners =
            elb.describe_listeners().load_balancer_arn(shared.load_balancer_arn().unwrap()).send().await.unwrap();
        let https = listeners.listeners().iter().find(|l| l.port() == Some(443)).unwrap();
        let rules = elb.describe_rules().listener_arn(https.listener_arn().unwrap()).send().await.unwrap();
        let arns: Vec<String> = rules
            .rules()
            .iter()
            .filter(|r| !r.is_default().unwrap_or(false))
            .filter_map(|r| r.rule_arn().map(str::to_string))
            .collect();
        let mut ours = 0;
        if !arns.is_empty() {
            let tags = elb.describe_tags().set_resource_arns(Some(arns)).send().await.unwrap();
            for description in tags.tag_descriptions() {
                let has =
                    |k: &str, v: &str| description.tags().iter().any(|t| t.key() == Some(k) && t.value() == Some(v));
                if has("Customer", customer) && has("Environment", env) {
                    ours += 1;
                }
            }
        }
        out.push(format!("listener rules: {ours}"));
        out
    })
}

#[test]
fn transient_faults_are_retried_and_a_permanent_one_stops_cleanly() {
    if !packer_available() {
        return;
    }
    let moto = Moto::start(&repo_root()).unwrap();
    let project = Project::copy();
    project.git_init("Initial");
    let direct = moto.endpoint();
    for args in [
        &["platform", "deploy", "--local"][..],
        &["ami", "globex", "dev", "--local"],
        &["ami", "acme", "dev", "--local"],
    ] {
        let run = run(&project, args, &direct);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    let faults = Faults {
        drop: 0.04,
        unavailable: 0.04,
        throttle: 0.06,
        delay: 0.05,
        delay_for: Duration::from_millis(300),
        deny: None,
    };
    let proxy = FaultProxy::start(moto.port, faults, 7).unwrap();
    let run_faulty = run(&project, &["deploy", "globex", "dev", "--local", "--infra-only"], &proxy.endpoint());
    assert_eq!(run_faulty.code, 0, "{run_faulty:?}\n{:?}", proxy.counts.snapshot());
    assert!(proxy.counts.failures() >= 5, "faults were injected: {:?}", proxy.counts.snapshot());
    let plan = run(&project, &["plan", "globex", "dev", "--local"], &direct);
    assert_eq!(plan.code, 0, "converged: {plan:?}");
    assert_eq!(inventory(&moto, "globex", "dev"), ["target groups: 1", "launch templates: 1", "listener rules: 1"]);

    // A permanent error: not retried, a clear message, and the next run converges.
    proxy.set(Faults { deny: Some("CreateAutoScalingGroup".into()), ..Faults::default() });
    let denied = run(&project, &["deploy", "acme", "dev", "--local", "--infra-only"], &proxy.endpoint());
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(denied.stderr.contains("cannot create auto-scaling-group acme-dev"), "{denied:?}");
    assert!(denied.stderr.contains("not authorized"), "AWS's message: {denied:?}");
    assert_eq!(proxy.counts.snapshot()[6].1, 1, "a 403 is not retried");
    proxy.set(Faults::default());
    let again = run(&project, &["deploy", "acme", "dev", "--local", "--infra-only"], &proxy.endpoint());
    assert_eq!(again.code, 0, "{again:?}");
    let plan = run(&project, &["plan", "acme", "dev", "--local"], &direct);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(inventory(&moto, "acme", "dev"), ["target groups: 1", "launch templates: 1", "listener rules: 1"]);
}

/// A small deterministic generator for kill times.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn a_deploy_killed_at_random_points_converges_when_run_again() {
    if !packer_available() {
        return;
    }
    let seed: u64 = std::env::var("VENDING_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261202);
    println!("kill loop seed: {seed} (VENDING_KILL_SEED={seed} repeats it)");
    let mut random = XorShift(seed);
    let project = Project::copy();
    project.git_init("Initial");
    // The emulator answers in milliseconds: a proxy that holds each request a little spreads a
    // deploy over about two seconds, so that kill times land between and during its calls.
    // What a clean deploy makes, to compare every round with.
    let clean = {
        let moto = Moto::start(&repo_root()).unwrap();
        let direct = moto.endpoint();
        for args in [
            &["platform", "deploy", "--local"][..],
            &["ami", "globex", "dev", "--local"],
            &["deploy", "globex", "dev", "--local", "--infra-only"],
        ] {
            assert_eq!(run(&project, args, &direct).code, 0, "{args:?}");
        }
        let plan = run(&project, &["plan", "globex", "dev", "--local", "--json"], &direct);
        assert_eq!(plan.code, 0, "{plan:?}");
        (described(&plan), inventory(&moto, "globex", "dev"))
    };
    let mut killed_running = 0;
    for round in 0..20 {
        let moto = Moto::start(&repo_root()).unwrap();
        let direct = moto.endpoint();
        for args in [&["platform", "deploy", "--local"][..], &["ami", "globex", "dev", "--local"]] {
            let run = run(&project, args, &direct);
            assert_eq!(run.code, 0, "round {round}: {args:?}: {run:?}");
        }
        let proxy = FaultProxy::start(
            moto.port,
            Faults { delay: 1.0, delay_for: Duration::from_millis(20), ..Faults::default() },
            seed + round,
        )
        .unwrap();
        let env = env_for(&proxy.endpoint());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let after = Duration::from_millis(random.below(2500));
        let mut child = project
            .command(&["deploy", "globex", "dev", "--local", "--infra-only"], &env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < after && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // The next run takes over the dead run's lock (same machine, process gone) and finishes.
        let again = run(&project, &["deploy", "globex", "dev", "--local", "--infra-only"], &direct);
        assert_eq!(again.code, 0, "round {round}, killed after {after:?}: {again:?}");
        let plan = run(&project, &["plan", "globex", "dev", "--local", "--json"], &direct);
        assert_eq!(plan.code, 0, "round {round}: a later plan is empty: {plan:?}");
        assert_eq!(inventory(&moto, "globex", "dev"), clean.1, "round {round}: nothing duplicated");
        assert_eq!(described(&plan), clean.0, "round {round}: the same resources as a clean deploy, all unchanged");
    }
    println!("kill loop: 20 rounds, {killed_running} killed while the deploy ran, all converged");
    assert!(killed_running >= 10, "most kills must land while the deploy runs ({killed_running} of 20)");
}

/// Each resource of a plan with its action: after a converged deploy, all `unchanged`.
fn described(plan: &Run) -> Vec<String> {
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    plan["changes"].as_array().unwrap().iter().map(|c| format!("{} {} {}", c["kind"], c["name"], c["action"])).collect()
}

/// The emulator dies in the middle of a deploy: a clear network error that names the endpoint,
/// not a hang or a stack trace; after a restart (an emulator starts empty) the same commands
/// converge.
#[test]
fn the_emulator_killed_mid_deploy_is_a_clear_network_error() {
    if !packer_available() {
        return;
    }
    let project = Project::copy();
    project.git_init("Initial");
    let moto = Moto::start(&repo_root()).unwrap();
    for args in [&["platform", "deploy", "--local"][..], &["ami", "globex", "dev", "--local"]] {
        assert_eq!(run(&project, args, &moto.endpoint()).code, 0, "{args:?}");
    }
    let proxy = FaultProxy::start(
        moto.port,
        Faults { delay: 1.0, delay_for: Duration::from_millis(30), ..Faults::default() },
        1,
    )
    .unwrap();
    let env = env_for(&proxy.endpoint());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let child = project
        .command(&["deploy", "globex", "dev", "--local", "--infra-only"], &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    drop(moto);
    let died = Run::from(child.wait_with_output().unwrap());
    assert_eq!(died.code, 1, "{died:?}");
    assert!(died.stderr.contains(&format!("cannot reach {}", proxy.endpoint())), "{died:?}");
    assert!(!died.stderr.contains("panicked"), "{died:?}");

    let moto = Moto::start(&repo_root()).unwrap();
    for args in [
        &["platform", "deploy", "--local"][..],
        &["ami", "globex", "dev", "--local"],
        &["deploy", "globex", "dev", "--local", "--infra-only"],
    ] {
        let again = run(&project, args, &moto.endpoint());
        assert_eq!(again.code, 0, "{args:?}: {again:?}");
    }
    assert_eq!(run(&project, &["plan", "globex", "dev", "--local"], &moto.endpoint()).code, 0);
}
