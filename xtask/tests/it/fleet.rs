//! The fleet in one command (`ami|plan|deploy --all`, `--customers`, `--envs`) against the
//! emulator, over the sample fleet plus two customers made from globex: `able`, whose build fails
//! (it is first in the order), and `initech`. Parallel runs, the stop after a failure,
//! `--keep-going`, `--canary`, the summary (table and JSON), exit codes, and a production
//! environment whose approval is asked for first and which goes on once another person approves
//! it, while the rest of the fleet does not wait for it.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use crate::approval::{finish, World};
use crate::{packer_available, Project, Run};

/// A customer made from globex with its own hosts; `broken`: its build fails (no such app).
pub fn add_customer(project: &Project, name: &str, broken: bool) {
    for file in ["customer.toml", "dev.toml", "prod.toml"] {
        let text = project.read(&format!("customers/globex/{file}"));
        let mut text = text
            .replace("globex-dev.apps", &format!("{name}-dev.apps"))
            .replace("www-globex.apps", &format!("www-{name}.apps"))
            .replace("globex.apps", &format!("{name}.apps"))
            .replace("webmaster@globex", &format!("webmaster@{name}"));
        if broken {
            text = text.replace("cd apps/globex-site", "cd apps/no-such-site");
        }
        project.write(&format!("customers/{name}/{file}"), &text);
    }
}

/// The summary row of `environment`, split into its words.
fn row<'a>(run: &'a Run, environment: &str) -> Vec<&'a str> {
    let line = run
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with(&format!("{environment} ")) && !l.contains(" | "))
        .unwrap_or_else(|| panic!("no summary row for {environment}: {run:?}"));
    line.split_whitespace().collect()
}

#[test]
fn the_fleet_in_one_command() {
    if !packer_available() {
        return;
    }
    let project = Project::copy().with_apps();
    add_customer(&project, "able", true);
    add_customer(&project, "initech", false);
    let generated = project.run(&["generate"]);
    assert_eq!(generated.code, 0, "{generated:?}");
    let w = World::with(project);
    let run = w.run(&w.alice, &["platform", "deploy", "--local"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Every environment's AMI, two at a time; every line names its environment.
    let run = w.run(&w.alice, &["ami", "--all", "--local", "--parallel", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    for env in ["able/dev", "acme/dev", "globex/dev", "initech/dev", "acme/prod", "globex/prod", "initech/prod"] {
        let row = row(&run, env);
        assert_eq!(row[1], "succeeded", "{run:?}");
        assert!(row[2].starts_with("ami-"), "{run:?}");
    }
    let envs = ["able/", "acme/", "globex/", "initech/"];
    let mut body = run.stdout.lines().take_while(|l| !l.is_empty());
    assert!(body.all(|l| envs.iter().any(|e| l.starts_with(e))), "a line without its environment: {run:?}");
    assert!(run.stdout.contains("8 of 8 environment(s) succeeded"), "{run:?}");

    // Nothing deployed yet: every plan has changes (exit 2), each plan in the JSON summary.
    let run = w.run(&w.alice, &["plan", "--all", "--local", "--json", "--parallel", "8"]);
    assert_eq!(run.code, 2, "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    let environments = summary["environments"].as_array().unwrap();
    assert_eq!(environments.len(), 8);
    assert!(environments.iter().all(|e| e["result"] == "changes" && e["plan"]["has_changes"] == true), "{summary}");
    // Non-production first.
    assert_eq!(environments[0]["environment"], "able/dev");
    assert_eq!(environments[7]["environment"], "initech/prod");

    // One at a time: able/dev fails first, and nothing else starts.
    let run = w.run(&w.alice, &["deploy", "--envs", "dev", "--local", "--parallel", "1"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(row(&run, "able/dev")[1], "failed");
    assert!(run.stdout.contains("able/dev | ") && run.stdout.contains("no-such-site"), "{run:?}");
    assert!(row(&run, "able/dev").join(" ").contains("error: the build of able/dev failed"), "the detail: {run:?}");
    for env in ["acme/dev", "globex/dev", "initech/dev"] {
        assert_eq!(row(&run, env)[1..3], ["not", "started"], "{run:?}");
        assert!(!run.stdout.contains(&format!("{env} | ")), "{env} started: {run:?}");
    }
    assert!(run.stderr.contains("able/dev failed: no new environment starts"), "{run:?}");

    // --keep-going: the others run (two at a time) and succeed; the run still fails.
    let run = w.run(&w.alice, &["deploy", "--envs", "dev", "--local", "--parallel", "2", "--keep-going"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(row(&run, "able/dev")[1], "failed");
    for env in ["acme/dev", "globex/dev", "initech/dev"] {
        let row = row(&run, env);
        assert_eq!(row[1], "succeeded", "{run:?}");
        assert!(row[2].starts_with("ami-") && row[3].len() == 16, "the AMI and the revision: {run:?}");
    }

    // A canary that fails keeps the rest from starting, even with --keep-going.
    let run = w.run(&w.alice, &["deploy", "--envs", "dev", "--local", "--canary", "1", "--keep-going"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("a canary did not succeed: the other 3 environment(s) do not start"), "{run:?}");
    assert_eq!(row(&run, "initech/dev")[1..3], ["not", "started"], "{run:?}");
    // One that succeeds lets them run: all deployed already, so nothing changes and all succeed.
    let selection = ["--customers", "acme,globex,initech", "--envs", "dev"];
    let run = w.run(&w.alice, &[&["deploy", "--local", "--canary", "1"][..], &selection].concat());
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(row(&run, "initech/dev")[3], "unchanged", "{run:?}");
    let run = w.run(&w.alice, &[&["plan", "--local"][..], &selection].concat());
    assert_eq!(run.code, 0, "no changes left: {run:?}");
    assert!(run.stdout.contains("3 of 3 environment(s) planned"), "{run:?}");

    // Bad selections are errors that name what there is.
    let run = w.run(&w.alice, &["deploy", "--customers", "nobody", "--local"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stderr.contains("no customer `nobody` in customers/ (there are: able, acme, globex, initech)"),
        "{run:?}"
    );
    let run = w.run(&w.alice, &["deploy", "globex", "--all", "--local"]);
    assert!(run.stderr.contains("not both"), "{run:?}");

    // globex: its production environment asks for its approval first and waits for it without
    // holding the only slot: globex/dev is deployed meanwhile.
    let env = w.env(&w.alice);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = w
        .project
        .command(&["deploy", "--customers", "globex", "--local", "--parallel", "1", "--infra-only"], &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut seen, mut id, mut dev_done) = (Vec::new(), None, false);
    while id.is_none() || !dev_done {
        assert!(Instant::now() < deadline, "{seen:#?}");
        let line = lines.next().unwrap_or_else(|| panic!("ended early: {seen:#?}")).unwrap();
        if let Some(rest) = line.strip_prefix("globex/prod | request ") {
            if rest.contains("waits for a decision") {
                id = rest.split_whitespace().next().map(str::to_string);
            }
        }
        dev_done |= line.starts_with("globex/dev: no changes");
        seen.push(line);
    }
    let id = id.unwrap();
    // Only the approval topic (how approvers hear of it) is made before the approval.
    let made: Vec<_> = seen.iter().filter(|l| l.starts_with("globex/prod | created")).collect();
    assert_eq!(made, ["globex/prod | created topic vend-globex-approvals"], "{seen:#?}");
    let approved = w.run(&w.bob, &["approve", "globex", "prod", &id, "--local", "--yes"]);
    assert_eq!(approved.code, 0, "{approved:?}");
    let rest = std::thread::spawn(move || {
        seen.extend(lines.map_while(Result::ok));
        seen.join("\n")
    });
    let run = finish((child, rest));
    assert_eq!(run.code, 0, "{run:?}");
    let prod = row(&run, "globex/prod");
    assert_eq!(prod[1], "succeeded", "{run:?}");
    assert!(run.stdout.contains("globex/prod | created auto-scaling-group globex-prod"), "{run:?}");
}
