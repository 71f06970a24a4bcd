//! Locks from the command line, against the emulator: a second operator is refused with the
//! holder's name (exit 6) or waits with `--wait-lock`; two real deploys started together run one
//! at a time; a lock left by a crashed run is taken over (at once when its process is gone from
//! this host, else when it expires), logged, and the new holder is told; someone else's lock is
//! released only with `--force`, in the audit log.

use std::time::{Duration, Instant, SystemTime};

use crate::approval::World;
use crate::{packer_available, Project, Run, Started};

const STATE: &str = "vend-platform-state";
const KEY: &str = "locks/globex/dev.json";

impl World {
    /// Writes the lock object as another run would have.
    fn put_lock(&self, host: &str, pid: u32, expires: SystemTime, released: bool) {
        // This machine's identity, as the tool records it, for a lock "from this host".
        let machine = if host == hostname() {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
            let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap().display().to_string();
            format!("{}/{namespace}", boot.trim())
        } else {
            "0b0b0b0b-other-machine/pid:[1]".to_string()
        };
        let lock = serde_json::json!({
            "holder": "arn:aws:iam::123456789012:user/carol",
            "host": host,
            "machine": machine,
            "pid": pid,
            "run": "0123456789abcdef",
            "command": "deploy globex dev",
            "commit": "c0ffeec0ffeec0ffee",
            "started_at": humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(120)).to_string(),
            "expires_at": humantime::format_rfc3339_seconds(expires).to_string(),
            "released": released,
        });
        let s3 = vending_aws::s3::client(&self.config, true);
        self.runtime.block_on(async {
            let body = serde_json::to_vec(&lock).unwrap();
            s3.put_object().bucket(STATE).key(KEY).body(body.into()).send().await.unwrap();
        });
    }

    /// The lock object as stored, if any.
    fn lock(&self) -> Option<serde_json::Value> {
        let s3 = vending_aws::s3::client(&self.config, true);
        self.runtime.block_on(async {
            let out = s3.get_object().bucket(STATE).key(KEY).send().await.ok()?;
            let bytes = out.body.collect().await.unwrap().into_bytes();
            Some(serde_json::from_slice(&bytes).unwrap())
        })
    }

    fn locked(&self) -> bool {
        self.lock().is_some_and(|lock| lock["released"] == false)
    }
}

fn hostname() -> String {
    std::process::Command::new("uname")
        .arg("-n")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap()
}

#[test]
fn a_second_operator_is_refused_or_waits_and_crashed_runs_are_taken_over() {
    if !packer_available() {
        return;
    }
    let w = World::with(Project::copy().with_apps());
    let (alice, bob) = (&w.alice, &w.bob);
    assert_eq!(w.run(alice, &["platform", "deploy", "--local"]).code, 0);
    let run = w.run(alice, &["ami", "globex", "dev", "--local"]);
    assert_eq!(run.code, 0, "{run:?}");
    let infra = ["deploy", "globex", "dev", "--local", "--infra-only"];
    let in_ten_minutes = SystemTime::now() + Duration::from_secs(600);

    // Held by carol on another machine: refused, naming her, the command and since when.
    w.put_lock("build-server-7", 4242, in_ten_minutes, false);
    let run = w.run(alice, &infra);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("locked by arn:aws:iam::123456789012:user/carol on host build-server-7"), "{run:?}");
    assert!(run.stderr.contains("`deploy globex dev`") && run.stderr.contains(" since "), "{run:?}");
    assert!(w.target_groups().is_empty(), "nothing was changed");
    let run = w.run(alice, &["lock", "status", "globex", "dev", "--local"]);
    assert!(run.stdout.contains("locked by arn:aws:iam::123456789012:user/carol"), "{run:?}");
    // Not hers to release without --force.
    let run = w.run(alice, &["lock", "release", "globex", "dev", "--local"]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(w.locked());

    // --wait-lock: waits, says so, and runs once carol's run releases it.
    let env = w.env(alice);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let waiting = Started::spawn(w.project.command(&[&infra[..], &["--wait-lock", "2m"]].concat(), &env));
    waiting.wait_for_line("waiting for the lock");
    w.put_lock("build-server-7", 4242, in_ten_minutes, true);
    let run = waiting.finish();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("waiting for the lock, held by arn:aws:iam::123456789012:user/carol"), "{run:?}");
    // Not on a terminal: plain lines, each with the time and how long the wait has lasted.
    let waiting = run.stdout.lines().find(|l| l.contains("waiting for the lock")).unwrap();
    assert!(waiting.starts_with("globex/dev | ") && waiting.contains(" UTC, 0 s]"), "{waiting}");
    assert!(run.stdout.contains("globex/dev: 8 resource(s) changed"), "{run:?}");
    assert!(!w.locked(), "released at the end");

    // Nothing to change and nobody holds the lock: no lock is taken, nothing is written.
    let (run, calls) = w.run_logged(alice, &infra);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("globex/dev: no changes"), "{run:?}");
    assert!(calls.iter().all(|c| c != "S3.PutObject"), "and not written: {calls:?}");
    // Nothing to change, but carol's run holds the lock (it may be changing what this run read):
    // refused as any run is, not reported as "no changes".
    w.put_lock("build-server-7", 4242, in_ten_minutes, false);
    let run = w.run(alice, &infra);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("it may be changing what this run read"), "{run:?}");
    assert!(w.locked(), "carol's lock is still there");
    let run = w.run(alice, &["lock", "status", "globex", "dev", "--local", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    assert_eq!((status["locked"].as_bool(), status["standing"].as_str()), (Some(true), Some("held")), "{status}");
    assert_eq!(status["lock"]["holder"], "arn:aws:iam::123456789012:user/carol", "{status}");
    // With --wait-lock it waits for carol's run to end, then reads everything again.
    let waiting = Started::spawn(w.project.command(&[&infra[..], &["--wait-lock", "2m"]].concat(), &env));
    waiting.wait_for_line("waiting for the lock");
    w.put_lock("build-server-7", 4242, in_ten_minutes, true);
    let run = waiting.finish();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("another run holds the lock: waiting for the lock, held by arn:aws:iam::123456789012:user/carol"),
        "{run:?}"
    );
    assert!(run.stdout.contains("then reading again"), "{run:?}");
    assert_eq!(run.stdout.matches("plan for globex/dev:").count(), 2, "planned again after the wait: {run:?}");

    // Crashed on this machine (its process is gone): taken over at once, and said. (A run takes
    // the lock only when it has something to change.)
    w.project.edit("customers/globex/dev.toml", "\"development\" }", "\"development\" }\n\n[capacity]\nmax = 3");
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    w.put_lock(&hostname(), pid, in_ten_minutes, false);
    let run = w.run(alice, &infra);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("took over the lock of arn:aws:iam::123456789012:user/carol"), "{run:?}");
    assert!(run.stdout.contains("its process is gone from this host"), "{run:?}");
    // Crashed elsewhere: taken over once it expires.
    w.project.edit("customers/globex/dev.toml", "max = 3", "max = 4");
    w.put_lock("build-server-7", 4242, SystemTime::now() - Duration::from_secs(1), false);
    let run = w.run(alice, &infra);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("it expired"), "{run:?}");
    assert!(run.stdout.contains("`deploy globex dev` at commit c0ffeec0ffee"), "what that run was doing: {run:?}");

    // --force releases someone else's, in the audit log.
    w.put_lock("build-server-7", 4242, in_ten_minutes, false);
    let run = w.run(bob, &["lock", "release", "globex", "dev", "--local", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!w.locked());
    let run = w.run(bob, &["history", "globex", "dev", "--local"]);
    let events: Vec<&str> = run.stdout.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(events, ["lock-taken-over", "lock-taken-over", "lock-released-by-force"], "{run:?}");

    // Two real deploys started together: exactly one runs, the other names it. The one that runs
    // holds its ValidateService until the other has ended, so that the two overlap however
    // slowly either starts.
    let other_ended = w.project.path("target/other-ended");
    let hold = format!("    while [ ! -f '{}' ]; do sleep 0.1; done\n    url=", other_ended.display());
    w.project.edit("apps/globex-site/scripts/validate.sh", "    url=", &hold);
    w.project.git(&["commit", "-qam", "ValidateService waits for a marker"]);
    let mut both: Vec<_> =
        (0..2).map(|_| Started::spawn(w.project.command(&["deploy", "globex", "dev", "--local"], &env))).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !both.iter_mut().any(Started::ended) {
        assert!(Instant::now() < deadline, "neither deploy ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(&other_ended, "").unwrap();
    let runs: Vec<Run> = both.into_iter().map(Started::finish).collect();
    let mut codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    codes.sort();
    assert_eq!(codes, [0, 6], "{runs:?}");
    let loser = runs.iter().find(|r| r.code == 6).unwrap();
    assert!(loser.stderr.contains("locked by arn:aws:iam::123456789012:user/alice"), "{loser:?}");
    assert!(loser.stderr.contains("`deploy globex dev`"), "{loser:?}");

    // And with --wait-lock, the second runs after the first. A new revision: the second run sees
    // it not yet deployed, waits for the lock, and finds it deployed by then (checked again under
    // the lock): nothing is deployed twice. The first run's ValidateService waits until the
    // second says it waits.
    let marker = w.project.path("target/second-waits");
    w.project.edit("apps/globex-site/site/index.html", "<title>", "<title>New: ");
    let hold = format!("    while [ ! -f '{}' ]; do sleep 0.1; done\n    url=", marker.display());
    w.project.edit("apps/globex-site/scripts/validate.sh", "    url=", &hold);
    w.project.git(&["commit", "-qam", "A new title"]);
    let first = w.project.command(&["deploy", "globex", "dev", "--local"], &env).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.locked() {
        assert!(Instant::now() < deadline, "the first deploy never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut second = w
        .project
        .command(&["deploy", "globex", "dev", "--local", "--wait-lock", "5m"], &env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = second.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line =
            seen.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the second run never waited");
        if line.contains("waiting for the lock") {
            break;
        }
    }
    std::fs::write(&marker, "").unwrap();
    assert!(first.wait_with_output().unwrap().status.success());
    let status = second.wait().unwrap();
    let second = reader.join().unwrap();
    assert!(status.success(), "{second}");
    assert!(second.contains("deployed last: nothing to release"), "found deployed under the lock: {second}");
    assert!(!second.contains("local agent on"), "deployed once only: {second}");
}

/// Eight customers deploy at once onto the shared load balancer: each rule exactly once, no two
/// with one priority, and a second round changes nothing (no priority moves).
#[test]
fn eight_customers_deploying_at_once_share_the_load_balancer_cleanly() {
    if !packer_available() {
        return;
    }
    let project = Project::copy();
    let names: Vec<String> = (1..=8).map(|n| format!("tenant{n}")).collect();
    for name in &names {
        let customer = project.read("customers/globex/customer.toml").replace("Globex Corporation", name);
        project.write(&format!("customers/{name}/customer.toml"), &customer);
        project.write(
            &format!("customers/{name}/dev.toml"),
            &format!("production = false\nhosts = [\"{name}.apps.example.com\"]\n\n[build]\nvariables = {{ SITE_ENV = \"development\" }}\n"),
        );
    }
    assert_eq!(project.run(&["generate"]).code, 0);
    let w = World::with(project);
    let alice = &w.alice;
    assert_eq!(w.run(alice, &["platform", "deploy", "--local"]).code, 0);
    for name in &names {
        let run = w.run(alice, &["ami", name, "dev", "--local"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let env = w.env(alice);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let round = || -> Vec<Run> {
        let children: Vec<_> = names
            .iter()
            .map(|name| {
                w.project
                    .command(&["deploy", name, "dev", "--local", "--infra-only"], &env)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children.into_iter().map(|c| Run::from(c.wait_with_output().unwrap())).collect()
    };
    let first = round();
    for run in &first {
        assert_eq!(run.code, 0, "{run:?}");
    }
    let rules = shared_rules(&w);
    let hosts: Vec<&String> = rules.iter().map(|(host, _)| host).collect();
    let expected: Vec<String> = names.iter().map(|n| format!("{n}.apps.example.com")).collect();
    let mut sorted_hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    sorted_hosts.sort();
    assert_eq!(sorted_hosts, expected, "every rule once: {rules:?}");
    let mut priorities: Vec<u32> = rules.iter().map(|(_, p)| *p).collect();
    priorities.sort();
    priorities.dedup();
    assert_eq!(priorities.len(), 8, "no two rules share a priority: {rules:?}");
    // A second round: nothing to change, and nobody's priority moves.
    let second = round();
    for run in &second {
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("no changes"), "{run:?}");
    }
    assert_eq!(shared_rules(&w), rules);
}

/// The shared listener's rules: (host, priority), sorted by host.
fn shared_rules(w: &World) -> Vec<(String, u32)> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.config);
    w.runtime.block_on(async {
        let balancers = elb.describe_load_balancers().names("vend-shared").send().await.unwrap();
        let arn = balancers.load_balancers()[0].load_balancer_arn().unwrap().to_string();
        let listeners = elb.describe_listeners().load_balancer_arn(arn).send().await.unwrap();
        let https = listeners.listeners().iter().find(|l| l.port() == Some(443)).unwrap();
        let rules = elb.describe_rules().listener_arn(https.listener_arn().unwrap()).send().await.unwrap();
        let mut out: Vec<(String, u32)> = rules
            .rules()
            .iter()
            .filter(|r| !r.is_default().unwrap_or(false))
            .map(|r| {
                let host = r
                    .conditions()
                    .iter()
                    .flat_map(|c| c.host_header_config.as_ref().map_or(c.values(), |h| h.values()).to_vec())
                    .collect::<Vec<_>>()
                    .join(",");
                (host, r.priority().unwrap().parse().unwrap())
            })
            .collect();
        out.sort();
        out
    })
}

/// A run that takes longer than the lock's time to live renews it: another run is still refused
/// after the first expiry would have passed (with a 4 s TTL; `VENDING_LOCK_TTL_SECONDS`).
#[test]
fn a_long_run_keeps_its_lock_by_renewing_it() {
    if !packer_available() {
        return;
    }
    let w = World::start();
    let alice = &w.alice;
    assert_eq!(w.run(alice, &["platform", "deploy", "--local"]).code, 0);
    assert_eq!(w.run(alice, &["ami", "globex", "dev", "--local"]).code, 0);
    let slow =
        vending_emulator::faults::Faults { delay: 1.0, delay_for: Duration::from_millis(400), ..Default::default() };
    let proxy = vending_emulator::faults::FaultProxy::start(w.moto.port, slow, 3).unwrap();
    let mut env = w.env(alice);
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), proxy.endpoint()));
    env.push(("VENDING_LOCK_TTL_SECONDS".into(), "4".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut first = Started::spawn(w.project.command(&["deploy", "globex", "dev", "--local", "--infra-only"], &env));
    let deadline = Instant::now() + Duration::from_secs(60);
    let taken = loop {
        match w.lock() {
            Some(lock) if lock["released"] == false => break lock,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the deploy never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    };
    let expiry = |lock: &serde_json::Value| humantime::parse_rfc3339(lock["expires_at"].as_str().unwrap()).unwrap();
    // Past the expiry it was taken with, by a second: the same run holds it, renewed.
    while SystemTime::now() < expiry(&taken) + Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!first.ended(), "the first run ended before its lock's first expiry");
    let now = w.lock().unwrap();
    assert_eq!((&now["run"], &now["released"]), (&taken["run"], &serde_json::Value::Bool(false)), "{now}");
    assert!(expiry(&now) > expiry(&taken), "renewed: {now}");
    let second = w.run(alice, &["deploy", "globex", "dev", "--local", "--infra-only"]);
    let first = first.finish();
    assert_eq!(second.code, 6, "the first run's lock was renewed, not expired: {second:?}\n{first:?}");
    assert_eq!(first.code, 0, "{first:?}");
}
