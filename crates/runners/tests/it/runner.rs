//! CodeBuild's semantics, one table per rule: each case is a buildspec and what must happen,
//! recorded by the commands themselves in a trace file (and in the runner's report).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vending_runners::runner::{run, Report, RunOptions, Status, DEFAULT_TIMEOUT};

struct Outcome {
    report: Report,
    /// Lines the commands appended to `$TRACE`.
    trace: Vec<String>,
    output: Vec<String>,
}

fn run_yaml(yaml: &str, secrets: &[(&str, &str)]) -> Outcome {
    run_with_timeout(yaml, secrets, DEFAULT_TIMEOUT)
}

fn run_with_timeout(yaml: &str, secrets: &[(&str, &str)], timeout: Duration) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let trace = dir.path().join("trace");
    let yaml = yaml.replace("$TRACE", &trace.display().to_string());
    let build = crate::buildspec(&yaml);
    let options = RunOptions {
        src,
        secrets: secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        source_version: "c0ffee".into(),
        build_id: "local:test".into(),
        timeout,
    };
    let mut output = Vec::new();
    let report = run(&build, &options, &mut |line: &str| output.push(line.to_string())).unwrap();
    let trace = std::fs::read_to_string(&trace).unwrap_or_default().lines().map(str::to_string).collect();
    Outcome { report, trace, output }
}

fn statuses(report: &Report) -> Vec<(&'static str, Status)> {
    report.phases.iter().map(|p| (p.name, p.status)).collect()
}

/// The build's own output, without the runner's lines.
fn build_output(outcome: &Outcome) -> Vec<&str> {
    outcome.output.iter().map(String::as_str).filter(|l| !l.starts_with("[runner]")).collect()
}

use Status::{Failed, Skipped, Succeeded, TimedOut};

/// What is tested, the input that varies, the phase statuses, the trace.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, Status)], &'a [&'a str]);

#[test]
fn phases_run_in_order_and_fail_as_codebuild_does() {
    // (what fails, the phase statuses, the trace)
    let cases: &[Case] = &[
        (
            "nothing",
            "",
            &[("install", Succeeded), ("pre_build", Succeeded), ("build", Succeeded), ("post_build", Succeeded)],
            &["install", "pre_build", "build", "post_build 1"],
        ),
        (
            "install fails: straight to the end",
            "install",
            &[("install", Failed), ("pre_build", Skipped), ("build", Skipped), ("post_build", Skipped)],
            &["install"],
        ),
        (
            "pre_build fails: straight to the end",
            "pre_build",
            &[("install", Succeeded), ("pre_build", Failed), ("build", Skipped), ("post_build", Skipped)],
            &["install", "pre_build"],
        ),
        (
            "build fails: post_build still runs, told the build is failing",
            "build",
            &[("install", Succeeded), ("pre_build", Succeeded), ("build", Failed), ("post_build", Succeeded)],
            &["install", "pre_build", "build", "post_build 0"],
        ),
        (
            "post_build fails",
            "post_build",
            &[("install", Succeeded), ("pre_build", Succeeded), ("build", Succeeded), ("post_build", Failed)],
            &["install", "pre_build", "build", "post_build 1"],
        ),
    ];
    for (what, failing, expected, trace) in cases {
        let fail = |phase: &str| if *failing == phase { "false" } else { "true" };
        let yaml = format!(
            r#"version: 0.2
phases:
  install:
    commands:
      - echo install >> $TRACE
      - {}
  pre_build:
    commands:
      - echo pre_build >> $TRACE
      - {}
  build:
    commands:
      - echo build >> $TRACE
      - {}
  post_build:
    commands:
      - echo "post_build $CODEBUILD_BUILD_SUCCEEDING" >> $TRACE
      - {}
"#,
            fail("install"),
            fail("pre_build"),
            fail("build"),
            fail("post_build")
        );
        let outcome = run_yaml(&yaml, &[]);
        assert_eq!(statuses(&outcome.report), *expected, "{what}");
        assert_eq!(outcome.trace, *trace, "{what}");
        assert_eq!(outcome.report.succeeded(), failing.is_empty(), "{what}");
    }
}

#[test]
fn a_failing_command_skips_the_rest_of_its_phase_and_finally_still_runs() {
    let cases: &[(&str, &str, &[&str], Status)] = &[
        ("all succeed: finally runs too", "true", &["a", "b", "finally-1", "finally-2"], Succeeded),
        ("a command fails: the rest is skipped, finally runs", "false", &["a", "finally-1", "finally-2"], Failed),
    ];
    for (what, middle, trace, status) in cases {
        let yaml = format!(
            r#"version: 0.2
phases:
  build:
    commands:
      - echo a >> $TRACE
      - {middle}
      - echo b >> $TRACE
    finally:
      - echo finally-1 >> $TRACE
      - echo finally-2 >> $TRACE
"#
        );
        let outcome = run_yaml(&yaml, &[]);
        assert_eq!(outcome.trace, *trace, "{what}");
        assert_eq!(outcome.report.phases[0].status, *status, "{what}");
    }
    // A failing `finally` fails the phase too.
    let outcome =
        run_yaml("version: 0.2\nphases:\n  build:\n    commands: [\"true\"]\n    finally: [\"false\"]\n", &[]);
    assert_eq!(outcome.report.phases[0].status, Failed);
    assert_eq!(outcome.report.phases[0].failed, Some(("false".to_string(), 1)));
}

#[test]
fn on_failure_abort_continue_and_retry() {
    let cases: &[Case] = &[
        ("ABORT in build: post_build does not run", "ABORT", &[("build", Failed), ("post_build", Skipped)], &["build"]),
        (
            "CONTINUE in build: post_build runs",
            "CONTINUE",
            &[("build", Failed), ("post_build", Succeeded)],
            &["build", "post_build 0"],
        ),
        (
            "RETRY-2 in build: three attempts, then the end",
            "RETRY-2",
            &[("build", Failed), ("post_build", Skipped)],
            &["build", "build", "build"],
        ),
    ];
    for (what, rule, expected, trace) in cases {
        let yaml = format!(
            r#"version: 0.2
phases:
  build:
    on-failure: {rule}
    commands:
      - echo build >> $TRACE
      - exit_code=3; (exit $exit_code)
  post_build:
    commands:
      - echo "post_build $CODEBUILD_BUILD_SUCCEEDING" >> $TRACE
"#
        );
        let outcome = run_yaml(&yaml, &[]);
        assert_eq!(statuses(&outcome.report), *expected, "{what}");
        assert_eq!(outcome.trace, *trace, "{what}");
        assert_eq!(outcome.report.phases[0].failed.as_ref().map(|f| f.1), Some(3), "{what}: the exit status");
    }
    // CONTINUE in install reaches pre_build.
    let outcome = run_yaml(
        "version: 0.2\nphases:\n  install:\n    on-failure: CONTINUE\n    commands: [\"false\"]\n  pre_build:\n    commands: [\"echo pre >> $TRACE\"]\n",
        &[],
    );
    assert_eq!(outcome.trace, ["pre"]);
    assert!(!outcome.report.succeeded());
    // A retry that succeeds the second time: the phase succeeds.
    let outcome = run_yaml(
        "version: 0.2\nphases:\n  build:\n    on-failure: RETRY\n    commands:\n      - echo try >> $TRACE\n      - test $(wc -l < $TRACE) -ge 2\n",
        &[],
    );
    assert_eq!(outcome.trace, ["try", "try"]);
    assert_eq!(outcome.report.phases[0].status, Succeeded);
    assert_eq!(outcome.report.phases[0].attempts, 2);
}

#[test]
fn one_shell_session_carries_directory_and_variables_across_phases() {
    let outcome = run_yaml(
        r#"version: 0.2
phases:
  pre_build:
    commands:
      - mkdir -p sub && cd sub
      - export STAMP=from-pre-build
      - LOCAL_ONLY=set-without-export
  build:
    commands:
      - echo "$(basename $(pwd)) $STAMP $LOCAL_ONLY" >> $TRACE
  post_build:
    commands:
      - echo "post $STAMP" >> $TRACE
"#,
        &[],
    );
    assert_eq!(outcome.trace, ["sub from-pre-build set-without-export", "post from-pre-build"]);
}

#[test]
fn variables_are_literal_and_codebuild_variables_are_set() {
    let outcome = run_yaml(
        r#"version: 0.2
env:
  variables:
    LITERAL: "$PATH:/x"
    QUOTED: "it's \"quoted\""
phases:
  build:
    commands:
      - printf '%s\n' "$LITERAL" "$QUOTED" >> $TRACE
      - echo "$CODEBUILD_SRC_DIR" | grep -q '/src$' && echo src-ok >> $TRACE
      - echo "$(pwd)" | grep -q '/src$' && echo cwd-ok >> $TRACE
      - echo "$CODEBUILD_RESOLVED_SOURCE_VERSION $CODEBUILD_BUILD_ID" >> $TRACE
"#,
        &[],
    );
    assert_eq!(outcome.trace, ["$PATH:/x", "it's \"quoted\"", "src-ok", "cwd-ok", "c0ffee local:test"]);
}

#[test]
fn secrets_are_set_and_masked_in_the_output() {
    let outcome = run_yaml(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"dsn is $SENTRY_DSN\"\n      - test \"$SENTRY_DSN\" = 'https://k3y@sentry.example/1' && echo set >> $TRACE\n",
        &[("SENTRY_DSN", "https://k3y@sentry.example/1")],
    );
    assert_eq!(outcome.trace, ["set"]);
    assert!(outcome.output.iter().any(|l| l == "dsn is ***"), "{:?}", outcome.output);
    assert!(!outcome.output.iter().any(|l| l.contains("k3y")), "{:?}", outcome.output);
}

#[test]
fn multi_line_and_overlapping_secrets_are_masked_entirely() {
    // A PEM key and a JSON secret span lines, and output is masked line by line. The last two
    // pairs share text: masked one after the other (in key order), a piece of the second stays.
    let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nk3yL1ne2xyz\n-----END PRIVATE KEY-----";
    let json = "{\n  \"user\": \"admin\",\n  \"password\": \"hunter2-json\"\n}";
    let secrets = [
        ("TLS_KEY", pem),
        ("DB_SECRET", json),
        ("A_TOKEN", "abc123"),
        ("B_TOKEN", "abc123def456"),
        ("C_PART", "s3cr3t-alpha"),
        ("D_PART", "alpha-omega-77"),
    ];
    let outcome = run_yaml(
        r#"version: 0.2
phases:
  build:
    commands:
      - printf '%s\n' "$TLS_KEY"
      - echo "$DB_SECRET"
      - echo "id=$B_TOKEN"
      - echo "both=s3cr3t-alpha-omega-77"
"#,
        &secrets,
    );
    assert_eq!(
        build_output(&outcome),
        ["***", "***", "***", "***", "{", "  ***", "  ***", "}", "id=***", "both=***"],
        "{:?}",
        outcome.output
    );
    for fragment in ["MIIEvQ", "k3yL1ne", "hunter2", "admin", "def456", "omega", "alpha"] {
        assert!(!outcome.output.iter().any(|l| l.contains(fragment)), "{fragment} leaked: {:?}", outcome.output);
    }
}

#[test]
fn commands_cannot_swallow_the_build_and_output_keeps_its_order() {
    let outcome = run_yaml(
        r#"version: 0.2
phases:
  build:
    commands:
      - cat
      - echo "unclosed
      - printf 'no newline'
      - echo to-stderr >&2
      - echo after >> $TRACE
"#,
        &[],
    );
    // `cat` reads nothing (stdin is /dev/null); the syntax error fails that command only.
    assert_eq!(outcome.report.phases[0].status, Failed);
    assert_eq!(outcome.report.phases[0].failed.as_ref().map(|f| f.0.as_str()), Some("echo \"unclosed"));
    let outcome = run_yaml(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - cat\n      - printf 'no newline'\n      - echo to-stderr >&2\n      - echo after >> $TRACE\n",
        &[],
    );
    assert_eq!(outcome.trace, ["after"]);
    let output: Vec<&str> = outcome.output.iter().map(String::as_str).filter(|l| !l.starts_with("[runner]")).collect();
    assert_eq!(output, ["no newline", "to-stderr"]);
}

#[test]
fn a_command_that_exits_the_shell_ends_the_build() {
    // The runner keeps one shell session for the build: `exit` ends it, whatever its status,
    // and nothing runs afterwards (no later command, no `finally`, no later phase, no retry).
    let cases: &[(&str, &str, i32)] = &[
        ("exit with a failure", "exit 4", 4),
        ("exit with success", "exit 0", 0),
        ("exit inside a condition", "if true; then exit 3; fi", 3),
    ];
    for (what, command, status) in cases {
        let yaml = format!(
            r#"version: 0.2
phases:
  pre_build:
    commands:
      - echo pre_build >> $TRACE
  build:
    on-failure: RETRY
    commands:
      - echo build >> $TRACE
      - "{command}"
      - echo after >> $TRACE
    finally:
      - echo finally >> $TRACE
  post_build:
    commands:
      - echo post_build >> $TRACE
"#
        );
        let outcome = run_yaml(&yaml, &[]);
        assert_eq!(outcome.trace, ["pre_build", "build"], "{what}");
        assert_eq!(
            statuses(&outcome.report),
            [("pre_build", Succeeded), ("build", Failed), ("post_build", Skipped)],
            "{what}"
        );
        assert_eq!(outcome.report.phases[1].failed, Some((command.to_string(), *status)), "{what}");
        assert_eq!(outcome.report.phases[1].attempts, 1, "{what}: not retried");
        let message = outcome.output.iter().find(|l| l.contains("ended the build's shell")).unwrap_or_else(|| {
            panic!("{what}: no message says why: {:?}", outcome.output);
        });
        assert!(message.contains("this runner keeps one shell for the whole build"), "{message}");
        assert!(message.contains("Use a condition (`if …; then …; fi`) instead of `exit`"), "{message}");
        assert!(!outcome.output.iter().any(|l| l.contains("new shell")), "{what}: {:?}", outcome.output);
    }
}

#[test]
fn a_build_past_its_timeout_is_stopped_with_everything_it_started() {
    let started = Instant::now();
    let outcome = run_with_timeout(
        r#"version: 0.2
phases:
  build:
    commands:
      - echo build >> $TRACE
      - sleep 60 & echo $! >> $TRACE; wait
      - echo after >> $TRACE
  post_build:
    commands:
      - echo post_build >> $TRACE
"#,
        &[],
        // 5 s leaves a loaded machine time to start the shell and its background child.
        Duration::from_secs(5),
    );
    assert!(started.elapsed() < Duration::from_secs(40), "the build was not stopped: {:?}", started.elapsed());
    assert_eq!(statuses(&outcome.report), [("build", TimedOut), ("post_build", Skipped)]);
    assert!(!outcome.report.succeeded());
    assert_eq!(outcome.trace.first().map(String::as_str), Some("build"));
    assert_eq!(outcome.trace.len(), 2, "{:?}", outcome.trace);
    assert!(
        outcome.output.iter().any(|l| l.contains("the build timed out after 5 seconds (build.timeout_minutes)")),
        "{:?}",
        outcome.output
    );
    // The background `sleep` went with the build: gone, or a zombie waiting for init to reap it.
    let pid = &outcome.trace[1];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
        if state.is_none_or(|s| s == "Z" || s == "X") {
            break;
        }
        assert!(Instant::now() < deadline, "process {pid} still runs after the timeout: {stat}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_command_that_sends_the_shell_s_output_away_fails_at_once_instead_of_hanging() {
    let outcome = run_with_timeout(
        r#"version: 0.2
phases:
  build:
    commands:
      - echo build >> $TRACE
      - exec >/dev/null 2>&1
      - echo after >> $TRACE
"#,
        &[],
        Duration::from_secs(30),
    );
    // Waiting for a status that can no longer be read would end only at the build's timeout.
    assert_eq!(statuses(&outcome.report), [("build", Failed)], "{:?}", outcome.output);
    assert_eq!(outcome.trace, ["build"]);
    assert!(outcome.output.iter().any(|l| l.contains("sent the build's own output elsewhere")), "{:?}", outcome.output);
}
