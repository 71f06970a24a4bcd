//! `cargo xtask demo` end to end, as a new user runs it: its own emulator and front door, the
//! platform, the AMIs, acme prod approved by a second person, globex dev, and a summary whose
//! curl lines answer. A second run changes nothing and says so; `--clean` stops and removes it.

use crate::front_door::get;
use crate::{packer_available, Project};

/// `demo --clean` when the test ends, however it ends: no emulator or front door left running.
struct Cleanup<'a>(&'a Project);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["demo", "--clean"]);
    }
}

/// The `curl -H 'Host: HOST' http://127.0.0.1:PORT/` lines of the summary.
fn curl_lines(stdout: &str) -> Vec<(String, u16)> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.split_once("curl -H 'Host: ")?.1;
            let (host, rest) = rest.split_once("' http://127.0.0.1:")?;
            let port = rest.split_once('/')?.0.parse().ok()?;
            Some((host.to_string(), port))
        })
        .collect()
}

#[test]
fn the_demo_deploys_two_customers_that_answer_and_a_second_run_changes_nothing() {
    if !packer_available() {
        return;
    }
    let project = Project::copy().with_apps();
    project.git_init("Initial");
    let _cleanup = Cleanup(&project);

    let run = project.run(&["demo"]);
    assert_eq!(run.code, 0, "{run:?}");
    for step in 1..=7 {
        assert!(run.stdout.contains(&format!("demo | [{step}/7]")), "step {step}: {run:?}");
    }
    assert!(run.stdout.contains("$ cargo xtask ami acme prod --local"), "{run:?}");
    assert!(run.stdout.contains("demo-requester asked (request "), "{run:?}");
    assert!(run.stdout.contains("approved by another person"), "{run:?}");
    assert!(run.stdout.contains("approved by arn:aws:iam::123456789012:user/demo-approver"), "{run:?}");
    assert!(
        run.stdout
            .contains("demo |   hosts shop.acme.example.com, www.acme.example.com on load balancer acme-prod-alb"),
        "{run:?}"
    );
    assert!(run.stdout.contains("demo |   hosts globex-dev.apps.example.com on load balancer vend-shared"), "{run:?}");
    let instances = run.stdout.lines().filter(|l| l.starts_with("demo |   i-") && l.contains(": revision ")).count();
    assert_eq!(instances, 3, "two acme prod instances, one globex dev: {run:?}");
    assert!(run.stdout.contains("AMI(s) built"), "{run:?}");

    // The summary's curl lines reach each customer's app through the front door.
    let curls = curl_lines(&run.stdout);
    assert_eq!(curls.len(), 2, "{run:?}");
    let (status, _, body) = get(curls[0].1, &curls[0].0, "/");
    assert_eq!((curls[0].0.as_str(), status), ("shop.acme.example.com", 200), "{body}");
    assert!(body.contains("ACME shop (production)"), "{body}");
    let (status, _, body) = get(curls[1].1, &curls[1].0, "/");
    assert_eq!((curls[1].0.as_str(), status), ("globex-dev.apps.example.com", 200), "{body}");
    assert!(body.to_lowercase().contains("globex"), "{body}");

    // `local status --json` lists the same doors.
    let status = project.run(&["local", "status", "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let doors = status["front_door"]["doors"].as_array().unwrap();
    let acme = doors.iter().find(|d| d["load_balancer"] == "acme-prod-alb" && d["port"] == 443).unwrap();
    assert_eq!(acme["local_port"].as_u64(), Some(u64::from(curls[0].1)), "{status}");
    assert!(status["emulator"]["endpoint"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{status}");

    let again = project.run(&["demo"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing changed: "), "{again:?}");
    assert!(again.stdout.contains("all of them reads; no AMI built, nothing deployed"), "{again:?}");
    assert!(again.stdout.contains("acme/prod: AMI ami-"), "{again:?}");
    assert!(again.stdout.contains("nothing to change in acme/prod: nobody was asked"), "{again:?}");
    assert_eq!(curl_lines(&again.stdout), curls, "the same ports");

    // --json: the summary alone on stdout, everything else on stderr.
    let json = project.run(&["demo", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let summary: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    assert!(json.stderr.contains("demo | [7/7]"), "{json:?}");
    assert_eq!(summary["changed"], false, "{summary}");
    let acme = &summary["environments"][0];
    assert_eq!(acme["environment"], "acme/prod", "{summary}");
    assert_eq!(acme["status"], 200, "{summary}");
    assert_eq!(acme["url"], format!("http://127.0.0.1:{}/", curls[0].1), "{summary}");
    assert_eq!(acme["instances"].as_array().unwrap().len(), 2, "{summary}");
    assert!(acme["ami"].as_str().unwrap().starts_with("ami-"), "{summary}");
    assert_eq!(summary["environments"][1]["load_balancer"], "vend-shared", "{summary}");

    let clean = project.run(&["demo", "--clean"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    assert!(clean.stdout.contains("local AWS emulator stopped"), "{clean:?}");
    assert!(!project.path("target/vending-local").exists());
    assert_eq!(project.run(&["local", "status"]).code, 1, "nothing runs");
    assert!(std::net::TcpStream::connect(("127.0.0.1", curls[0].1)).is_err(), "the front door is gone");
}
