//! Production approval from the command line, against the emulator with two people in it (IAM
//! users alice and bob, whose keys the emulator's STS tells apart): the request stored and
//! e-mailed (read through an SQS queue subscribed to the topic), nothing else changed before the
//! decision (the call log), four eyes, `--no-wait` then `--approval ID`, a plan that changed after
//! the approval (void, asked anew), rejection, expiry, waiting and Ctrl-C, the audit log, and
//! what is not gated.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use vending_emulator::{create_identity, Identity, Moto};

use crate::{packer_available, repo_root, Project, Run};

pub struct World {
    pub moto: Moto,
    pub project: Project,
    pub alice: Identity,
    pub bob: Identity,
    pub runtime: tokio::runtime::Runtime,
    pub config: aws_config::SdkConfig,
}

impl World {
    pub fn start() -> World {
        World::with(Project::copy())
    }

    pub fn with(project: Project) -> World {
        let moto = Moto::start(&repo_root()).expect("start the local AWS emulator");
        project.git_init("Initial");
        let alice = create_identity(&repo_root(), &moto.endpoint(), "alice").unwrap();
        let bob = create_identity(&repo_root(), &moto.endpoint(), "bob").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let target = vending_aws::Target::Local { endpoint: moto.endpoint() };
        let config = runtime.block_on(vending_aws::sdk_config("eu-west-1", &target));
        World { moto, project, alice, bob, runtime, config }
    }

    pub fn env(&self, who: &Identity) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.moto.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), who.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), who.secret_access_key.clone()),
        ]
    }

    pub fn run(&self, who: &Identity, args: &[&str]) -> Run {
        let env = self.env(who);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.project.run_with(args, &env)
    }

    /// Runs as `who` with every AWS call appended to a fresh log; returns the run and the calls.
    pub fn run_logged(&self, who: &Identity, args: &[&str]) -> (Run, Vec<String>) {
        let log = self.project.path("target/calls.log");
        let _ = std::fs::remove_file(&log);
        let mut env = self.env(who);
        env.push(("VENDING_CALL_LOG".into(), log.display().to_string()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let run = self.project.run_with(args, &env);
        let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        (run, calls)
    }

    /// A queue subscribed to the topic, as a stand-in inbox (the emulator sends no e-mail).
    pub fn inbox(&self, topic: &str) -> String {
        let sns = aws_sdk_sns::Client::new(&self.config);
        let sqs = aws_sdk_sqs::Client::new(&self.config);
        self.runtime.block_on(async {
            let topic_arn = sns.create_topic().name(topic).send().await.unwrap().topic_arn.unwrap();
            let queue_url =
                sqs.create_queue().queue_name(format!("{topic}-inbox")).send().await.unwrap().queue_url.unwrap();
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap();
            let queue_arn = attributes.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
            sns.subscribe().topic_arn(topic_arn).protocol("sqs").endpoint(queue_arn).send().await.unwrap();
            queue_url
        })
    }

    /// The (subject, message) pairs the queue received.
    pub fn messages(&self, queue_url: &str) -> Vec<(String, String)> {
        let sqs = aws_sdk_sqs::Client::new(&self.config);
        self.runtime.block_on(async {
            let out = sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).send().await.unwrap();
            let mut messages = Vec::new();
            for m in out.messages() {
                let envelope: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
                let text = |k: &str| envelope[k].as_str().unwrap_or_default().to_string();
                messages.push((text("Subject"), text("Message")));
                let receipt = m.receipt_handle().unwrap();
                sqs.delete_message().queue_url(queue_url).receipt_handle(receipt).send().await.unwrap();
            }
            messages
        })
    }

    /// Rewrites a stored JSON object, as someone with write access to the bucket could.
    pub fn rewrite(&self, key: &str, change: impl FnOnce(&mut serde_json::Value)) {
        let s3 = vending_aws::s3::client(&self.config, true);
        self.runtime.block_on(async {
            let body = s3.get_object().bucket("vend-platform-state").key(key).send().await.unwrap().body;
            let bytes = body.collect().await.unwrap().into_bytes();
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            change(&mut value);
            let body = serde_json::to_vec(&value).unwrap();
            s3.put_object().bucket("vend-platform-state").key(key).body(body.into()).send().await.unwrap();
        });
    }

    /// Moves a request's expiry into the past, as if its time had run out.
    pub fn expire(&self, key: &str) {
        let s3 = vending_aws::s3::client(&self.config, true);
        self.runtime.block_on(async {
            let body = s3.get_object().bucket("vend-platform-state").key(key).send().await.unwrap().body;
            let bytes = body.collect().await.unwrap().into_bytes();
            let mut request: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            request["expires_at"] = "2020-01-01T00:00:00Z".into();
            let body = serde_json::to_vec(&request).unwrap();
            s3.put_object().bucket("vend-platform-state").key(key).body(body.into()).send().await.unwrap();
        });
    }

    pub fn target_groups(&self) -> Vec<String> {
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&self.config);
        self.runtime.block_on(async {
            let out = elb.describe_target_groups().send().await.unwrap();
            out.target_groups().iter().filter_map(|t| t.target_group_name.clone()).collect()
        })
    }
}

/// The id in "request ID waits for a decision".
pub fn request_id(run: &Run) -> String {
    let line = run.stdout.lines().find(|l| l.contains("waits for a decision")).unwrap_or_else(|| panic!("{run:?}"));
    let after = line.split("request ").nth(1).unwrap();
    after.split_whitespace().next().unwrap().to_string()
}

const NO_WAIT: [&str; 6] = ["deploy", "globex", "prod", "--local", "--infra-only", "--no-wait"];

#[test]
fn production_waits_for_a_second_person_bound_to_the_plan() {
    if !packer_available() {
        return;
    }
    let w = World::start();
    let (alice, bob) = (&w.alice, &w.bob);
    assert_eq!(w.run(alice, &["platform", "deploy", "--local"]).code, 0);
    let run = w.run(alice, &["ami", "globex", "prod", "--local"]);
    assert_eq!(run.code, 0, "{run:?}");
    let inbox = w.inbox("vend-globex-approvals");

    // The request: stored, e-mailed once, and nothing but the approval topic changed before it.
    let (run, calls) = w.run_logged(alice, &NO_WAIT);
    assert_eq!(run.code, 3, "pending: {run:?}");
    let id = request_id(&run);
    let mutating: Vec<&String> = calls
        .iter()
        .filter(|c| !["Get", "Head", "List", "Describe"].iter().any(|p| c.split('.').nth(1).unwrap().starts_with(p)))
        .collect();
    let allowed = ["SNS.Subscribe", "SNS.TagResource", "S3.PutObject", "SNS.Publish"];
    assert!(
        mutating.iter().all(|c| allowed.contains(&c.as_str())),
        "only the topic, the request, the audit and the message: {mutating:?}"
    );
    assert_eq!(mutating.iter().filter(|c| c.as_str() == "SNS.Publish").count(), 1, "{mutating:?}");
    assert!(w.target_groups().is_empty(), "nothing deployed before the approval");
    let messages = w.messages(&inbox);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (subject, body) = &messages[0];
    assert!(subject.starts_with("Approval needed: globex/prod deploy ("), "{subject}");
    assert!(subject.len() < 100 && subject.is_ascii(), "{subject}");
    assert!(body.contains(&w.alice.arn), "the requester: {body}");
    assert!(body.contains(&format!("cargo xtask approve globex prod {id} --local")), "{body}");
    assert!(body.contains("create target-group globex-prod-tg"), "{body}");
    assert!(body.contains("Expires: "), "{body}");
    // Asked again (after --no-wait or Ctrl-C): the request that waits is reused, not doubled.
    let run = w.run(alice, &NO_WAIT);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(request_id(&run), id, "{run:?}");
    assert!(run.stdout.contains("waits for a decision already"), "{run:?}");
    assert!(w.messages(&inbox).is_empty(), "no second message");

    // Four eyes: alice cannot approve her own request, and nothing is recorded.
    let run = w.run(alice, &["approve", "globex", "prod", "--local", "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("a second person must approve it"), "{run:?}");
    let run = w.run(bob, &["approvals", "--local", "--json"]);
    let pending: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(pending.as_array().unwrap().len(), 1, "{run:?}");
    assert_eq!(pending[0]["id"], id.as_str());
    // No terminal and no --yes: refused rather than guessed.
    let run = w.run(bob, &["approve", "globex", "prod", "--local"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("approve with --yes"), "{run:?}");

    let run = w.run(bob, &["approve", "globex", "prod", &id, "--local", "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("create target-group globex-prod-tg"), "the approver reads the plan: {run:?}");
    let run = w.run(alice, &["deploy", "globex", "prod", "--local", "--infra-only", "--approval", &id]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("request {id} approved by {}", w.bob.arn)), "{run:?}");
    assert_eq!(w.target_groups(), vec!["globex-prod-tg".to_string()]);
    // Used once only.
    let run = w.run(alice, &["deploy", "globex", "prod", "--local", "--infra-only", "--approval", &id]);
    assert_eq!(run.code, 0, "nothing to change, nobody asked: {run:?}");
    assert!(run.stdout.contains("nothing needs approval"), "{run:?}");

    // Nothing to change: nobody is asked, nothing is written.
    let (run, calls) = w.run_logged(alice, &NO_WAIT);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("approval needed"), "{run:?}");
    assert!(calls.iter().all(|c| !c.contains("Put") && !c.contains("Publish")), "{calls:?}");

    // The plan changes after the approval (the config is edited): void, and asked anew.
    w.project.edit("customers/globex/prod.toml", "max = 4", "max = 5");
    let run = w.run(alice, &NO_WAIT);
    assert_eq!(run.code, 3, "{run:?}");
    let second = request_id(&run);
    w.project.edit("customers/globex/prod.toml", "max = 5", "max = 6");
    assert_eq!(w.run(bob, &["approve", "globex", "prod", &second, "--local", "--yes"]).code, 0);
    let run =
        w.run(alice, &["deploy", "globex", "prod", "--local", "--infra-only", "--no-wait", "--approval", &second]);
    assert_eq!(run.code, 3, "a new request: {run:?}");
    assert!(
        run.stdout.contains(&format!("request {second} is void: the plan changed after it was approved")),
        "{run:?}"
    );
    let third = request_id(&run);
    assert_ne!(third, second);

    // Rejected: the deploy stops with its code, and changes nothing.
    let run = w.run(bob, &["reject", "globex", "prod", "--local", "--reason", "not during the sale"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = w.run(alice, &["deploy", "globex", "prod", "--local", "--infra-only", "--approval", &third]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("not during the sale"), "{run:?}");

    // Expired: the time runs out before anyone decides.
    let run = w.run(alice, &NO_WAIT);
    let fourth = request_id(&run);
    w.expire(&format!("approvals/globex/prod/{fourth}.json"));
    let run = w.run(alice, &["deploy", "globex", "prod", "--local", "--infra-only", "--approval", &fourth]);
    assert_eq!(run.code, 5, "{run:?}");
    let run = w.run(bob, &["approve", "globex", "prod", &fourth, "--local", "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is expired"), "{run:?}");

    // The audit log, in time order.
    let run = w.run(bob, &["history", "globex", "prod", "--local", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let events: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap().to_string(), e["request"].as_str().unwrap_or_default().to_string()))
        .collect();
    let none = String::new();
    let expected: Vec<(String, String)> = [
        ("approvers-changed", &none),
        ("requested", &id),
        ("approved", &id),
        ("apply-started", &id),
        ("applied", &id),
        ("requested", &second),
        ("approved", &second),
        ("void", &second),
        ("requested", &third),
        ("rejected", &third),
        ("requested", &fourth),
        ("expired", &fourth),
    ]
    .iter()
    .map(|(e, r)| (e.to_string(), r.to_string()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(events[2]["who"], w.bob.arn.as_str());

    // The bucket is checked, not trusted: a request whose stored plan was edited is refused, and
    // so is one marked approved by its own requester.
    let run = w.run(alice, &NO_WAIT);
    let fifth = request_id(&run);
    let key = format!("approvals/globex/prod/{fifth}.json");
    w.rewrite(&key, |r| r["proposal"]["changes"] = serde_json::json!([]));
    let run = w.run(bob, &["approve", "globex", "prod", &fifth, "--local", "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("changed in the state bucket"), "{run:?}");
    let run = w.run(alice, &NO_WAIT);
    let sixth = request_id(&run);
    assert_ne!(sixth, fifth);
    let alice_arn = w.alice.arn.clone();
    w.rewrite(&format!("approvals/globex/prod/{sixth}.json"), |r| {
        r["state"] = "approved".into();
        r["decision"] = serde_json::json!({"by": alice_arn, "at": "2026-12-02T00:00:00Z", "approved": true});
    });
    let run = w.run(alice, &["deploy", "globex", "prod", "--local", "--infra-only", "--approval", &sixth]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("its approver is its requester"), "{run:?}");
    assert_eq!(w.target_groups(), vec!["globex-prod-tg".to_string()], "nothing more was changed");
}

#[test]
fn waiting_ctrl_c_dev_and_approval_true() {
    if !packer_available() {
        return;
    }
    let w = World::start();
    let (alice, bob) = (&w.alice, &w.bob);
    assert_eq!(w.run(alice, &["platform", "deploy", "--local"]).code, 0);
    assert_eq!(w.run(alice, &["ami", "globex", "dev", "--local"]).code, 0);

    // Development is not gated.
    let run = w.run(alice, &["deploy", "globex", "dev", "--local", "--infra-only"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("approval"), "{run:?}");

    // `approval = true` gates it: the command waits, a line says so, Ctrl-C leaves it pending.
    w.project.edit("customers/globex/dev.toml", "production = false", "production = false\napproval = true");
    w.project.edit("customers/globex/dev.toml", "[build]", "[capacity]\nmax = 3\n\n[build]");
    let args = ["deploy", "globex", "dev", "--local", "--infra-only"];
    let (child, id) = start_waiting(&w, alice, &args);
    // SAFETY: kill(2) with the pid of a child we spawned.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let run = finish(child);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("resume with `cargo xtask deploy globex dev --local --infra-only --approval {id}`")),
        "{run:?}"
    );

    // Waiting, then approved by bob meanwhile: it goes on by itself.
    let (child, _) = start_waiting(&w, alice, &[&args[..], &["--approval", &id]].concat());
    assert_eq!(w.run(bob, &["approve", "globex", "dev", "--local", "--yes"]).code, 0);
    let run = finish(child);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("globex/dev | updated auto-scaling-group globex-dev"), "{run:?}");
}

#[test]
fn releases_rollbacks_and_the_platform_are_gated_too() {
    if !packer_available() {
        return;
    }
    let w = World::with(Project::copy().with_apps());
    let (alice, bob) = (&w.alice, &w.bob);
    assert_eq!(w.run(alice, &["platform", "deploy", "--local"]).code, 0);
    assert_eq!(w.run(alice, &["ami", "globex", "prod", "--local"]).code, 0);

    // One request covers the infrastructure and the release (its revision and AMI).
    let release = |w: &World| {
        let run = w.run(alice, &["deploy", "globex", "prod", "--local", "--no-wait"]);
        assert_eq!(run.code, 3, "{run:?}");
        assert!(run.stdout.contains("release of revision "), "{run:?}");
        let id = request_id(&run);
        let run = w.run(bob, &["approve", "globex", "prod", &id, "--local", "--yes"]);
        assert!(run.stdout.contains("release of revision sha256 ") && run.stdout.contains(" on ami-"), "{run:?}");
        let run = w.run(alice, &["deploy", "globex", "prod", "--local", "--approval", &id]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("succeeded on the local fleet"), "{run:?}");
    };
    release(&w);
    w.project.edit("apps/globex-site/site/index.html", "<", "<!-- second -->\n<");
    w.project.git(&["commit", "-qam", "Second"]);
    release(&w);

    // A rollback is a production change too.
    let run = w.run(alice, &["rollback", "globex", "prod", "--local", "--no-wait"]);
    assert_eq!(run.code, 3, "{run:?}");
    let id = request_id(&run);
    assert!(run.stdout.contains("rollback of revision "), "{run:?}");
    assert_eq!(w.run(bob, &["approve", "globex", "prod", "--local", "--yes"]).code, 0);
    let run = w.run(alice, &["rollback", "globex", "prod", "--local", "--approval", &id]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("succeeded on the local fleet"), "{run:?}");
    let run = w.run(bob, &["history", "globex", "prod", "--local", "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(events.iter().filter(|e| e["event"] == "applied").count(), 3, "{events:?}");

    // The platform, once it names approvers.
    w.project.edit("customers/platform.toml", "[naming]", "approval_emails = [\"platform@example.com\"]\n\n[naming]");
    w.project.edit("customers/platform.toml", "Owner = \"platform-team\"", "Owner = \"platform-ops\"");
    let run = w.run(alice, &["platform", "deploy", "--local", "--no-wait"]);
    assert_eq!(run.code, 3, "{run:?}");
    let id = request_id(&run);
    assert!(run.stdout.contains("cargo xtask approve --platform "), "{run:?}");
    let run = w.run(alice, &["approve", "--platform", "--local", "--yes"]);
    assert_eq!(run.code, 1, "four eyes on the platform too: {run:?}");
    assert_eq!(w.run(bob, &["approve", "--platform", &id, "--local", "--yes"]).code, 0);
    let run = w.run(alice, &["platform", "deploy", "--local", "--approval", &id]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("platform | updated bucket vend-platform-state"), "{run:?}");
    let run = w.run(bob, &["history", "--platform", "--local"]);
    assert!(run.stdout.contains("applied"), "{run:?}");
}

/// A running command and the thread that collects the rest of its output.
pub type Waiting = (std::process::Child, std::thread::JoinHandle<String>);

pub fn finish((child, stdout): Waiting) -> Run {
    let output = child.wait_with_output().unwrap();
    let mut run = Run::from(output);
    run.stdout = stdout.join().unwrap();
    run
}

/// Starts `args` as `who` and reads its output until it waits for a decision.
fn start_waiting(w: &World, who: &Identity, args: &[&str]) -> (Waiting, String) {
    let env = w.env(who);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = w
        .project
        .command(args, &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let id = loop {
        assert!(Instant::now() < deadline, "never waited: {seen:?}");
        let Some(Ok(line)) = lines.next() else { panic!("ended before waiting: {seen:?}") };
        if let Some(rest) = line.split("waiting for a decision on request ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        seen.push(line);
    };
    // Keep draining stdout, so the child never blocks on a full pipe.
    let rest = std::thread::spawn(move || {
        seen.extend(lines.map_while(Result::ok));
        seen.join("\n")
    });
    ((child, rest), id)
}
