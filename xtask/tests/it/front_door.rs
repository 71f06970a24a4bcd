//! The local fleet really serves: after `deploy --local` each instance's app listens on its
//! loopback port, and the local front door routes like the load balancers the tool configured
//! (host rules, the 503 default, the port-80 redirect). During a one-at-a-time release each
//! instance leaves its target group while its app restarts, so every request still gets an
//! answer from the other one. An instance that closes without answering is a 502, unless it left
//! its group while the request was on its way (then the request is routed again).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use vending_emulator::Moto;

use crate::{packer_available, repo_root, Project};

/// Stops the front door when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Status line, headers and body of `GET path` with this Host header.
/// A GET through the front door: status (0 when no answer came, the error as its body), head
/// and body.
pub fn get(port: u16, host: &str, path: &str) -> (u16, String, String) {
    let mut answer = String::new();
    let asked = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
        stream.read_to_string(&mut answer)
    });
    if let Err(e) = asked {
        return (0, String::new(), format!("no answer: {e}"));
    }
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn door_port(project: &Project, load_balancer: &str, port: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(project.path("target/vending-local/front-door.json")) {
            let state: serde_json::Value = serde_json::from_str(&text).unwrap();
            let found = state["doors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["load_balancer"] == load_balancer && d["port"] == port);
            if let Some(door) = found {
                return door["local_port"].as_u64().unwrap() as u16;
            }
        }
        assert!(Instant::now() < deadline, "the front door never listed {load_balancer}:{port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `acme dev` with two instances deployed on a fresh emulator, and a front door for it.
fn deployed_acme_dev() -> (Moto, Project, Running) {
    let moto = Moto::start(&repo_root()).expect("start the local AWS emulator");
    let project = Project::copy().with_apps();
    project.edit("customers/acme/dev.toml", "[capacity]\nmin = 1\nmax = 2", "[capacity]\nmin = 2\nmax = 2");
    project.git_init("Initial");
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];
    for args in [
        &["platform", "deploy", "--local"][..],
        &["ami", "acme", "dev", "--local"],
        &["deploy", "acme", "dev", "--local"],
    ] {
        let run = project.run_with(args, &env);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    let door = Running(project.command(&["local", "front-door"], &env).spawn().unwrap());
    (moto, project, door)
}

#[test]
fn the_front_door_routes_to_apps_that_really_serve_and_a_release_keeps_them_reachable() {
    if !packer_available() {
        return;
    }
    let (moto, project, _door) = deployed_acme_dev();
    let endpoint = moto.endpoint();
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];
    let https = door_port(&project, "vend-shared", 443);
    let http = door_port(&project, "vend-shared", 80);

    // The host rule reaches the app, which answers as the environment's build configured it.
    let (status, head, body) = get(https, "acme-dev.apps.example.com", "/");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(body.contains("ACME shop (development)"), "{body}");
    assert_eq!(get(https, "ACME-DEV.apps.example.com:443", "/health").2, "ok");
    // Anything else: the listener's default answer.
    let (status, _, body) = get(https, "unknown.example.com", "/");
    assert_eq!((status, body.as_str()), (503, "host not found"));
    // No Host header: refused, as an ALB refuses it.
    let mut stream = TcpStream::connect(("127.0.0.1", https)).unwrap();
    write!(stream, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    // Port 80 sends everyone to HTTPS, keeping host, path and query.
    let (status, head, _) = get(http, "acme-dev.apps.example.com", "/cart?item=anvil");
    assert_eq!(status, 301, "{head}");
    assert!(head.contains("Location: https://acme-dev.apps.example.com:443/cart?item=anvil"), "{head}");

    // A new release, one instance at a time, while requests keep coming.
    project.edit("apps/acme-shop/app.py", "\"Anvil\"", "\"Anvil XL\"");
    project.git(&["commit", "-qam", "A bigger anvil"]);
    let mut deploy = project
        .command(&["deploy", "acme", "dev", "--local", "--software-only"], &env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = deploy.stdout.take().unwrap();
    let output = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let mut answers = Vec::new();
    while deploy.try_wait().unwrap().is_none() {
        answers.push(get(https, "acme-dev.apps.example.com", "/"));
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = output.join().unwrap();
    assert!(deploy.wait().unwrap().success(), "{out}");
    assert_eq!(out.matches("[codedeploy] BlockTraffic: deregistered from acme-dev-tg").count(), 2, "{out}");
    assert_eq!(out.matches("[codedeploy] AllowTraffic: registered in acme-dev-tg").count(), 2, "{out}");
    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status != 200)
        .map(|(status, _, body)| format!("{status} {}", body.lines().next().unwrap_or_default()))
        .collect();
    assert!(failed.is_empty(), "{} of {} requests failed during the release: {failed:?}", failed.len(), answers.len());
    let old = answers.iter().filter(|(_, _, body)| body.contains("Anvil:")).count();
    let new = answers.iter().filter(|(_, _, body)| body.contains("Anvil XL")).count();
    assert!(old > 0 && new > 0, "the requests spanned the release: {old} old, {new} new of {}", answers.len());
    // Afterwards every instance serves the new release.
    for _ in 0..4 {
        assert!(get(https, "acme-dev.apps.example.com", "/").2.contains("Anvil XL"));
    }
}

/// A registered instance whose app takes the request and closes without an answer: a 502, as
/// from an ALB. One that has left its target group by then (the request was routed before it
/// left: on AWS the deregistration delay lets such a request finish): the request is routed again
/// to an instance registered now, and answered. The "app" is the test's own listener on the
/// instance's port, so the order of events is the test's.
#[test]
fn a_request_whose_instance_closes_is_a_502_unless_the_instance_left_its_group_meanwhile() {
    if !packer_available() {
        return;
    }
    let (moto, project, _door) = deployed_acme_dev();
    let endpoint = moto.endpoint();
    let https = door_port(&project, "vend-shared", 443);

    // One instance's app stopped, the test listening on its port instead.
    let fleet = project.path("target/vending-local/fleet/acme-dev");
    let mut instances: Vec<_> = std::fs::read_dir(&fleet)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("i-"))
        .collect();
    instances.sort();
    let sandbox = &instances[0];
    let instance = sandbox.file_name().unwrap().to_string_lossy().into_owned();
    let stop = std::process::Command::new("bash")
        .arg("opt/acme-shop/scripts/stop.sh")
        .current_dir(sandbox)
        .env("VENDING_SANDBOX", sandbox)
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    let port: u16 =
        std::fs::read_to_string(sandbox.join(".codedeploy-agent/local-port")).unwrap().trim().parse().unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();

    // Still registered: of two requests in a row (one to each instance, in turn), the one that
    // reaches it gets a 502, the other the app.
    let closer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head);
        drop(stream);
        listener
    });
    let answers: Vec<_> = (0..2).map(|_| get(https, "acme-dev.apps.example.com", "/")).collect();
    let listener = closer.join().unwrap();
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 502], "{answers:?}");
    let bad = answers.iter().find(|a| a.0 == 502).unwrap();
    assert!(bad.2.contains(&format!("{instance} closed the connection without answering")), "{bad:?}");

    // Taken out of its target group while the request is on its way (the listener deregisters it
    // before it closes): routed again, answered by the other instance.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = vending_aws::Target::Local { endpoint: endpoint.clone() };
    let config = runtime.block_on(vending_aws::sdk_config("eu-west-1", &target));
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let group = runtime.block_on(elb.describe_target_groups().names("acme-dev-tg").send()).unwrap().target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    let leaver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head);
        let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder().id(&instance).build();
        runtime.block_on(elb.deregister_targets().target_group_arn(&group).targets(target).send()).unwrap();
        drop(stream);
    });
    let answers: Vec<_> = (0..4).map(|_| get(https, "acme-dev.apps.example.com", "/")).collect();
    leaver.join().unwrap();
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
}
