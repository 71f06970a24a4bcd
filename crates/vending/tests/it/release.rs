//! Following a deployment with scripted status sequences (the emulator's deployments never leave
//! `Created`, so these stand for what CodeDeploy reports over time) and a fake clock.

use std::time::Duration;

use vending::release::{
    deployed_revision, explain, follow, revision_key, revision_sha, rollback_target, Clock, Deployed, DeploymentStatus,
    InstanceFailure, Outcome, Snapshot, SourceError, StatusSource,
};

struct Script {
    steps: Vec<Snapshot>,
    at: usize,
    /// After a stop, the status the deployment reports.
    stopped: Option<Snapshot>,
    stops: u32,
}

impl StatusSource for Script {
    fn snapshot(&mut self) -> Result<Snapshot, SourceError> {
        if let (Some(stopped), true) = (&self.stopped, self.stops > 0) {
            return Ok(stopped.clone());
        }
        let step = self.steps[self.at.min(self.steps.len() - 1)].clone();
        self.at += 1;
        Ok(step)
    }

    fn stop(&mut self) -> Result<(), SourceError> {
        self.stops += 1;
        Ok(())
    }
}

struct FakeClock(Duration);

impl Clock for FakeClock {
    fn elapsed(&self) -> Duration {
        self.0
    }
    fn sleep(&mut self, duration: Duration) {
        self.0 += duration;
    }
}

fn at(status: &str, done: u32, event: Option<&str>) -> Snapshot {
    Snapshot {
        status: status.into(),
        instances_done: done,
        instances_total: 2,
        current_event: event.map(str::to_string),
        ..Snapshot::default()
    }
}

fn run(steps: Vec<Snapshot>, stopped: Option<Snapshot>) -> (Outcome, Vec<String>, u32) {
    run_interrupted_at(steps, stopped, None)
}

/// `interrupt_at`: the poll (counted from 1) at which the user presses Ctrl-C.
fn run_interrupted_at(
    steps: Vec<Snapshot>,
    stopped: Option<Snapshot>,
    interrupt_at: Option<u32>,
) -> (Outcome, Vec<String>, u32) {
    let mut source = Script { steps, at: 0, stopped, stops: 0 };
    let mut clock = FakeClock(Duration::ZERO);
    let mut lines = Vec::new();
    let polls = std::cell::Cell::new(0);
    let interrupted = || {
        polls.set(polls.get() + 1);
        interrupt_at.is_some_and(|at| polls.get() >= at)
    };
    let outcome =
        follow(&mut source, &mut clock, Duration::from_secs(60), Duration::from_secs(5), &interrupted, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
    (outcome, lines, source.stops)
}

#[test]
fn created_in_progress_succeeded() {
    let (outcome, lines, stops) = run(
        vec![
            at("Created", 0, None),
            at("InProgress", 0, Some("BeforeInstall")),
            at("InProgress", 0, Some("BeforeInstall")),
            at("InProgress", 1, Some("ApplicationStart")),
            at("Succeeded", 2, None),
        ],
        None,
    );
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        lines,
        [
            "Created: 0/2 instances",
            "InProgress: 0/2 instances, BeforeInstall",
            "InProgress: 1/2 instances, ApplicationStart",
            "Succeeded: 2/2 instances"
        ],
        "a line when something changes, not on every poll"
    );
    assert_eq!(stops, 0);
}

#[test]
fn a_failure_names_instance_event_script_log_and_rollback() {
    let mut failed = at("Failed", 1, None);
    failed.error =
        Some("HEALTH_CONSTRAINTS: The overall deployment failed because too many individual instances failed".into());
    failed.instance_failures = vec![InstanceFailure {
        instance: "i-0abc".into(),
        event: "ValidateService".into(),
        message: "Script at specified location: scripts/validate.sh run as user root failed with exit code 1".into(),
        log_tail: "[stderr]acme-shop did not answer /health within 60 s".into(),
    }];
    failed.rollback = Some(("d-ROLLBACK1".into(), "Succeeded".into()));
    let (outcome, _, _) = run(vec![at("InProgress", 1, Some("ValidateService")), failed.clone()], None);
    assert_eq!(outcome, Outcome::Failed(failed.clone()));
    assert_eq!(
        explain(&failed),
        [
            "CodeDeploy: HEALTH_CONSTRAINTS: The overall deployment failed because too many individual instances failed",
            "i-0abc: ValidateService failed: Script at specified location: scripts/validate.sh run as user root failed with exit code 1",
            "    [stderr]acme-shop did not answer /health within 60 s",
            "automatic rollback d-ROLLBACK1: Succeeded",
        ]
    );
}

#[test]
fn the_deadline_stops_the_deployment() {
    let stopped = Snapshot {
        status: "Stopped".into(),
        rollback: Some(("d-RB".into(), "InProgress".into())),
        ..at("Stopped", 1, None)
    };
    let (outcome, lines, stops) = run(vec![at("InProgress", 1, Some("AfterInstall"))], Some(stopped.clone()));
    assert_eq!(stops, 1, "stopped once");
    assert_eq!(outcome, Outcome::TimedOut(stopped));
    assert!(lines.contains(&"the deployment did not finish within 60 s: stopping it".to_string()), "{lines:?}");
}

#[test]
fn a_deployment_that_will_not_stop_is_left_after_a_second_deadline() {
    let (outcome, _, stops) = run(vec![at("InProgress", 1, Some("AfterInstall"))], None);
    assert_eq!(stops, 1);
    assert!(matches!(outcome, Outcome::TimedOut(s) if s.status == DeploymentStatus::InProgress));
}

#[test]
fn a_deployment_stopped_by_someone_else() {
    let (outcome, _, stops) = run(vec![at("InProgress", 0, None), at("Stopped", 0, None)], None);
    assert_eq!(stops, 0);
    assert!(matches!(outcome, Outcome::Stopped(_)));
}

#[test]
fn ctrl_c_stops_the_deployment_and_follows_the_stop() {
    let stopped = Snapshot { rollback: Some(("d-RB".into(), "InProgress".into())), ..at("Stopped", 1, None) };
    let (outcome, lines, stops) = run_interrupted_at(
        vec![at("InProgress", 0, Some("BeforeInstall")), at("InProgress", 1, Some("AfterInstall"))],
        Some(stopped.clone()),
        Some(2),
    );
    assert_eq!(stops, 1, "stopped once");
    assert_eq!(outcome, Outcome::Interrupted(stopped));
    assert_eq!(
        lines,
        [
            "InProgress: 0/2 instances, BeforeInstall",
            "InProgress: 1/2 instances, AfterInstall",
            "interrupted: stopping the deployment (Ctrl-C again leaves it to finish on its own)",
            "Stopped: 1/2 instances",
        ]
    );
}

#[test]
fn a_deployment_that_ends_before_the_stop_keeps_its_own_outcome() {
    // Ctrl-C came, but CodeDeploy finished the deployment before it took the stop.
    let (outcome, _, stops) =
        run_interrupted_at(vec![at("InProgress", 1, Some("ValidateService")), at("Succeeded", 2, None)], None, Some(1));
    assert_eq!(stops, 1);
    assert_eq!(outcome, Outcome::Succeeded);
}

#[test]
fn an_interrupted_deployment_that_will_not_stop_is_left_after_a_deadline() {
    let (outcome, _, stops) = run_interrupted_at(vec![at("InProgress", 1, Some("AfterInstall"))], None, Some(1));
    assert_eq!(stops, 1, "asked once, however long it takes");
    assert!(matches!(outcome, Outcome::Interrupted(s) if s.status == DeploymentStatus::InProgress));
}

#[test]
fn rollback_goes_to_the_revision_released_before_the_latest_release() {
    let key = |c: char| revision_key(&c.to_string().repeat(64));
    let deployed =
        |id: &str, created: i64, c: char, rollback: bool| Deployed { id: id.into(), created, key: key(c), rollback };
    let history = vec![
        deployed("d-1", 100, 'a', false),
        deployed("d-2", 200, 'b', false),
        deployed("d-3", 300, 'c', false),
        deployed("d-4", 400, 'c', false), // a redeploy of the latest release
    ];
    // Listed in any order: the release before the latest wins.
    let mut shuffled = history.clone();
    shuffled.reverse();
    shuffled.swap(0, 2);
    assert_eq!(rollback_target(&shuffled).map(|d| d.id.as_str()), Some("d-2"));
    // After the rollback to b (d-5), the target is the same: b, which already runs.
    let mut after = history.clone();
    after.push(deployed("d-5", 500, 'b', true));
    assert_eq!(rollback_target(&after).map(|d| d.id.as_str()), Some("d-2"));
    // A new release (d) moves it: the release before d is c.
    after.push(deployed("d-6", 600, 'd', false));
    assert_eq!(rollback_target(&after).map(|d| d.id.as_str()), Some("d-4"));
    // Only one revision ever released: nothing to roll back to.
    assert_eq!(rollback_target(&history[2..]), None);
    assert_eq!(rollback_target(&[]), None);

    // --to: by SHA-256 prefix, the newest deployment of that revision.
    assert_eq!(deployed_revision(&after, "bbbb").map(|d| d.id.as_str()), Ok("d-5"));
    assert_eq!(deployed_revision(&after, "CCC").map(|d| d.id.as_str()), Ok("d-4"));
    let none = deployed_revision(&after, "ef").unwrap_err();
    assert!(none.contains("no successful deployment deployed a revision starting with `ef`"), "{none}");
    assert!(none.contains("aaaaaaaaaaaa, bbbbbbbbbbbb, cccccccccccc, dddddddddddd"), "{none}");
    let mut ambiguous = after.clone();
    ambiguous.push(Deployed { key: revision_key(&format!("b{}", "0".repeat(63))), ..deployed("d-7", 700, 'x', false) });
    let two = deployed_revision(&ambiguous, "b").unwrap_err();
    assert!(two.contains("`b` starts 2 revisions"), "{two}");

    assert_eq!(revision_sha(&key('a')), Some("a".repeat(64).as_str()));
    assert_eq!(revision_sha("revisions/short.zip"), None);
    assert_eq!(revision_sha("other/aaaa.zip"), None);
}

#[test]
fn deployment_descriptions_fit_codedeploy_and_keep_commit_and_revision() {
    use vending::release::{is_rollback_description, release_description, rollback_description, DESCRIPTION_LIMIT};
    let (commit, sha) = ("c0ffee".repeat(6) + "abcd", "ab".repeat(32));
    let short = release_description("acme", "prod", &commit, "https://git.example.com/shop.git", "main", &sha);
    assert_eq!(
        short,
        format!("acme/prod: commit {commit} of https://git.example.com/shop.git (main), revision sha256 {sha}")
    );
    let long_repo = format!("https://git.example.com/{}.git", "ü".repeat(300));
    for (repository, git_ref) in
        [(long_repo.as_str(), "main"), ("r", &*"x".repeat(400)), (&*long_repo, &*"y".repeat(300))]
    {
        let text = release_description("acme", "prod", &commit, repository, git_ref, &sha);
        assert_eq!(text.chars().count(), DESCRIPTION_LIMIT, "{text}");
        assert!(text.contains(&format!("commit {commit} of ")) && text.ends_with(&format!("revision sha256 {sha}")));
        assert!(text.contains('…'), "{text}");
    }
    let who = format!("arn:aws:sts::123456789012:assumed-role/{}/session", "r".repeat(300));
    let text = rollback_description(&who, &sha, "d-ABCDEFGHI");
    assert!(text.chars().count() <= DESCRIPTION_LIMIT, "{text}");
    assert!(is_rollback_description(&text) && text.contains(&sha), "{text}");
}

fn refresh(status: &str, percent: Option<i32>) -> vending::release::InstanceRefresh {
    vending::release::InstanceRefresh {
        id: "ir-1".into(),
        status: status.into(),
        percent_complete: percent,
        status_reason: String::new(),
    }
}

/// The refreshes a release reads, one per poll, and what it printed.
fn wait(
    script: Vec<Option<vending::release::InstanceRefresh>>,
    deadline: u64,
) -> (vending::release::RefreshWait, Vec<String>, usize) {
    let mut script = script.into_iter();
    let mut polls = 0;
    let mut latest = || {
        polls += 1;
        Ok(script.next().expect("polled past the script"))
    };
    let mut lines = Vec::new();
    let waited = vending::release::wait_for_refresh(
        &mut latest,
        &mut FakeClock(Duration::ZERO),
        Duration::from_secs(deadline),
        Duration::from_secs(10),
        &mut |l| lines.push(l.to_string()),
    )
    .unwrap();
    (waited, lines, polls)
}

#[test]
fn a_release_waits_for_an_instance_refresh_to_end() {
    use vending::release::RefreshWait;
    // Nothing running (none ever, or an old one that ended): no wait, nothing printed.
    assert_eq!(wait(vec![None], 60), (RefreshWait::NoneRunning, vec![], 1));
    assert_eq!(wait(vec![Some(refresh("Successful", Some(100)))], 60), (RefreshWait::NoneRunning, vec![], 1));
    // Running: progress lines when they change, until it ends.
    let (waited, lines, polls) = wait(
        vec![
            Some(refresh("Pending", None)),
            Some(refresh("InProgress", Some(50))),
            Some(refresh("InProgress", Some(50))),
            Some(refresh("Successful", Some(100))),
        ],
        600,
    );
    assert_eq!(waited, RefreshWait::Ended(refresh("Successful", Some(100))));
    assert_eq!(polls, 4);
    assert!(lines[0].starts_with("an instance refresh is replacing the group's instances; the release waits"));
    assert_eq!(
        lines[1..],
        [
            "instance refresh ir-1: Pending",
            "instance refresh ir-1: InProgress, 50% done",
            "instance refresh ir-1: Successful, 100% done"
        ]
    );
    // Still running at the deadline: the caller starts no deployment.
    let (waited, _, polls) =
        wait(vec![Some(refresh("InProgress", Some(10))), Some(refresh("InProgress", Some(20)))], 10);
    assert_eq!(waited, RefreshWait::StillRunning(refresh("InProgress", Some(20))));
    assert_eq!(polls, 2);
}
