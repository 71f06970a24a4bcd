//! Following a CodeBuild build from scripted answers built with the SDK's types (the emulator
//! runs no build: it reports one `SUCCEEDED` at once, without logs): success, a failure in
//! `pre_build` with its log lines, the deadline, and Ctrl-C, each of the last two with exactly one
//! StopBuild.

use std::cell::Cell;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::OutputLogEvent;
use aws_sdk_codebuild::types::{Build, BuildPhase, BuildPhaseType, PhaseContext, StatusType};
use vending::codebuild::{explain, follow_build, BuildOutcome, BuildSnapshot, BuildSource};
use vending::release::{Clock, SourceError};
use vending_aws::codebuild::{log_lines, snapshot};

fn phase(kind: BuildPhaseType, status: Option<StatusType>, context: Option<&str>) -> BuildPhase {
    let mut phase = BuildPhase::builder().phase_type(kind);
    if let Some(status) = status {
        phase = phase.phase_status(status);
    }
    if let Some(message) = context {
        phase = phase.contexts(PhaseContext::builder().status_code("COMMAND_EXECUTION_ERROR").message(message).build());
    }
    phase.build()
}

fn build(status: StatusType, phases: Vec<BuildPhase>) -> Build {
    Build::builder().id("acme-prod:1").build_status(status).set_phases(Some(phases)).build()
}

fn events(lines: &[&str]) -> Vec<OutputLogEvent> {
    lines.iter().map(|l| OutputLogEvent::builder().message(format!("{l}\n")).build()).collect()
}

/// Each poll: the build as BatchGetBuilds answers it, and the log events GetLogEvents returns.
struct Script {
    polls: Vec<(Build, Vec<OutputLogEvent>)>,
    at: usize,
    /// After a stop: what the build reports.
    stopped: Option<Build>,
    stops: u32,
}

impl BuildSource for Script {
    fn snapshot(&mut self) -> Result<BuildSnapshot, SourceError> {
        assert!(self.at < 1000, "followed a build that never ends");
        if self.stops > 0 {
            if let Some(stopped) = &self.stopped {
                return Ok(snapshot(stopped));
            }
        }
        let index = self.at.min(self.polls.len() - 1);
        Ok(snapshot(&self.polls[index].0))
    }

    fn new_log_lines(&mut self) -> Result<Vec<String>, SourceError> {
        let lines = self.polls.get(self.at).map(|p| log_lines(&p.1)).unwrap_or_default();
        self.at += 1;
        Ok(lines)
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

fn follow(script: &mut Script, interrupt_at: Option<usize>) -> (BuildOutcome, Vec<String>) {
    let mut out = Vec::new();
    let polls = Cell::new(0);
    let interrupted = || {
        polls.set(polls.get() + 1);
        interrupt_at.is_some_and(|at| polls.get() >= at)
    };
    let outcome = follow_build(
        script,
        &mut FakeClock(Duration::ZERO),
        Duration::from_secs(60),
        Duration::from_secs(10),
        &interrupted,
        &mut |line| out.push(line.to_string()),
    )
    .unwrap();
    (outcome, out)
}

fn running(phases: Vec<BuildPhase>) -> Build {
    build(StatusType::InProgress, phases)
}

#[test]
fn a_build_that_succeeds_prints_its_phases_and_log() {
    use BuildPhaseType::*;
    let ok = Some(StatusType::Succeeded);
    let mut script = Script {
        polls: vec![
            (running(vec![phase(Submitted, ok.clone(), None), phase(Provisioning, None, None)]), vec![]),
            (
                running(vec![
                    phase(Submitted, ok.clone(), None),
                    phase(Provisioning, ok.clone(), None),
                    phase(Build, None, None),
                ]),
                events(&["Running command make", "built"]),
            ),
            (
                build(
                    StatusType::Succeeded,
                    vec![
                        phase(Submitted, ok.clone(), None),
                        phase(Provisioning, ok.clone(), None),
                        phase(Build, ok, None),
                    ],
                ),
                events(&["done"]),
            ),
        ],
        at: 0,
        stopped: None,
        stops: 0,
    };
    let (outcome, out) = follow(&mut script, None);
    assert_eq!(outcome, BuildOutcome::Succeeded);
    assert_eq!(
        out,
        [
            "phase SUBMITTED: started",
            "phase SUBMITTED: SUCCEEDED",
            "phase PROVISIONING: started",
            "Running command make",
            "built",
            "phase PROVISIONING: SUCCEEDED",
            "phase BUILD: started",
            "done",
            "phase BUILD: SUCCEEDED",
        ]
    );
    assert_eq!(script.stops, 0);
}

#[test]
fn a_failure_in_pre_build_names_the_phase_its_message_and_the_log_tail() {
    use BuildPhaseType::*;
    let ok = Some(StatusType::Succeeded);
    let message = "Error while executing command: python3 -m unittest. Reason: exit status 1";
    let phases = vec![
        phase(Install, ok.clone(), None),
        phase(PreBuild, Some(StatusType::Failed), Some(message)),
        phase(PostBuild, ok, None),
    ];
    let mut script = Script {
        polls: vec![
            (running(vec![phase(Install, None, None)]), events(&["installing"])),
            (build(StatusType::Failed, phases), events(&["FAIL: test_health", "Ran 3 tests", "FAILED (failures=1)"])),
        ],
        at: 0,
        stopped: None,
        stops: 0,
    };
    let (outcome, out) = follow(&mut script, None);
    let BuildOutcome::Failed { status, phase, tail } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(status, "FAILED");
    assert_eq!(phase.as_ref().map(|p| p.name.as_str()), Some("PRE_BUILD"));
    assert_eq!(tail, &["installing", "FAIL: test_health", "Ran 3 tests", "FAILED (failures=1)"]);
    assert!(out.contains(&format!("phase PRE_BUILD: FAILED: COMMAND_EXECUTION_ERROR: {message}")), "{out:#?}");
    let report = explain(&outcome);
    assert_eq!(report[0], "the build ended FAILED");
    assert_eq!(report[1], "phase PRE_BUILD FAILED");
    assert!(report.contains(&format!("  COMMAND_EXECUTION_ERROR: {message}")), "{report:#?}");
    assert_eq!(report.last().map(String::as_str), Some("  FAILED (failures=1)"));
    assert_eq!(script.stops, 0);
}

#[test]
fn a_build_past_its_deadline_is_stopped_once() {
    use BuildPhaseType::*;
    let stopped = build(StatusType::Stopped, vec![phase(Build, Some(StatusType::Stopped), None)]);
    let mut script = Script {
        polls: vec![(running(vec![phase(Build, None, None)]), events(&["still going"]))],
        at: 0,
        stopped: Some(stopped),
        stops: 0,
    };
    let (outcome, out) = follow(&mut script, None);
    assert_eq!(outcome, BuildOutcome::TimedOut { tail: vec!["still going".into()] });
    assert_eq!(script.stops, 1);
    assert!(out.iter().any(|l| l.contains("did not finish within 60 s: stopping it (StopBuild)")), "{out:#?}");
}

#[test]
fn ctrl_c_stops_the_build_once_and_follows_it_to_its_end() {
    use BuildPhaseType::*;
    let stopped = build(StatusType::Stopped, vec![phase(Build, Some(StatusType::Stopped), None)]);
    let mut script = Script {
        polls: vec![(running(vec![phase(Build, None, None)]), vec![])],
        at: 0,
        stopped: Some(stopped),
        stops: 0,
    };
    let (outcome, out) = follow(&mut script, Some(2));
    assert_eq!(outcome, BuildOutcome::Interrupted { tail: vec![] });
    assert_eq!(script.stops, 1, "one StopBuild however many polls follow");
    assert!(out.contains(&"interrupted: stopping the build (StopBuild)".to_string()), "{out:#?}");
    assert_eq!(out.last().map(String::as_str), Some("phase BUILD: STOPPED"));
}
