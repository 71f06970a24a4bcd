//! The local front door: loopback ports that stand for the emulator's load balancers, routing as
//! the tool configured them. `local up` starts it beside the emulator (`local front-door` runs it
//! in the foreground); `local down` stops it.
//!
//! Every second it lists the emulator's load balancers and listeners and gives each listener a
//! loopback port (kept in `target/vending-local/front-door.json`, which the demo and tests read).
//! Each request is routed from what the emulator holds at that moment: the listener's rules by
//! host name, else its default action (`vending::front_door`); a forward goes to the target
//! group's registered instances in turn, each the app that the local agent started on its
//! sandbox's port. AWS's deregistration delay is a short drain here (`local_fleet`): a request
//! routed to an instance that has left its target group by the time it connects, and whose app
//! no longer answers, is routed again among the instances registered then, as the delay would
//! have let it finish on AWS.
//!
//! Where it is not an ALB: an HTTPS listener is served as plain HTTP on its loopback port (no
//! certificate is presented); there are no health checks (a registered instance whose app does
//! not answer gets the request, and the client a 502, as from an ALB whose targets all fail);
//! one request per connection; a listener whose load balancer was deleted answers 500 until the
//! front door restarts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use vending::front_door::{route, Answer};
use vending_aws::front_door::{self as read, Door};
use vending_aws::infra::Clients;

/// Where the running front door says which loopback port stands for which listener.
pub const STATE: &str = "target/vending-local/front-door.json";
/// Its output, when `local up` started it.
pub const LOG: &str = "target/vending-local/front-door.log";

/// How many one-second refreshes in a row may fail before the front door decides that its
/// emulator is gone and stops.
const GIVE_UP_AFTER: u32 = 10;
/// The largest request head it reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long a connection to an app may take (an ALB's is 10 s), and how long an app may stay
/// silent (an ALB's idle timeout, 60 s by default) before the client gets a 504.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub pid: u32,
    pub endpoint: String,
    pub doors: Vec<Bound>,
}

/// A listener and the loopback port that stands for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bound {
    pub load_balancer: String,
    /// The listener's port on AWS (80, 443).
    pub port: u16,
    pub protocol: String,
    /// The loopback port here.
    pub local_port: u16,
}

impl State {
    /// The running front door's state, when one runs.
    pub fn read(root: &Path) -> Option<State> {
        let state: State = serde_json::from_slice(&std::fs::read(root.join(STATE)).ok()?).ok()?;
        // The recorded pid is trusted while it is still a front door (pids are reused).
        let command = std::fs::read(format!("/proc/{}/cmdline", state.pid)).ok()?;
        let ours = command.split(|b| *b == 0).any(|arg| arg == b"front-door");
        ours.then_some(state)
    }

    pub fn port_of(&self, load_balancer: &str, port: u16) -> Option<u16> {
        self.doors.iter().find(|d| d.load_balancer == load_balancer && d.port == port).map(|d| d.local_port)
    }
}

struct Shared {
    runtime: tokio::runtime::Runtime,
    clients: Clients,
    /// The local fleet's sandboxes: `<customer>-<env>/<instance-id>/`.
    fleet: PathBuf,
    /// The next target of each target group, for turns.
    turns: Mutex<BTreeMap<String, Arc<AtomicUsize>>>,
}

/// Runs the front door until its emulator goes away.
pub fn serve(root: &Path, runtime: tokio::runtime::Runtime, clients: Clients, endpoint: &str) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        runtime,
        clients,
        fleet: root.join("target/vending-local/fleet"),
        turns: Mutex::new(BTreeMap::new()),
    });
    // Ports from an earlier front door are taken again where they are free, so curl lines stay true.
    let earlier: Vec<Bound> = std::fs::read(root.join(STATE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<State>(&bytes).ok())
        .map(|state| state.doors)
        .unwrap_or_default();
    let mut bound: Vec<Bound> = Vec::new();
    let mut failures = 0;
    loop {
        match shared.runtime.block_on(read::doors(&shared.clients)) {
            Ok(doors) => {
                failures = 0;
                let mut changed = false;
                for door in doors {
                    if bound.iter().any(|b| b.load_balancer == door.load_balancer && b.port == door.port) {
                        continue;
                    }
                    let again = earlier.iter().find(|b| b.load_balancer == door.load_balancer && b.port == door.port);
                    let listener = again
                        .and_then(|b| TcpListener::bind(("127.0.0.1", b.local_port)).ok())
                        .map_or_else(|| TcpListener::bind(("127.0.0.1", 0)), Ok)
                        .context("cannot listen on loopback")?;
                    let local_port = listener.local_addr()?.port();
                    println!(
                        "{}:{} ({}) on http://127.0.0.1:{local_port}",
                        door.load_balancer, door.port, door.protocol
                    );
                    bound.push(Bound {
                        load_balancer: door.load_balancer.clone(),
                        port: door.port,
                        protocol: door.protocol.clone(),
                        local_port,
                    });
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || accept(listener, door, shared));
                    changed = true;
                }
                if changed || !root.join(STATE).exists() {
                    let state = State { pid: std::process::id(), endpoint: endpoint.to_string(), doors: bound.clone() };
                    let path = root.join(STATE);
                    vending::project::write_atomic(&path, &serde_json::to_vec_pretty(&state)?)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= GIVE_UP_AFTER {
                    let _ = std::fs::remove_file(root.join(STATE));
                    anyhow::bail!("the emulator at {endpoint} stopped answering ({e:#}): the front door stops too");
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn accept(listener: TcpListener, door: Door, shared: Arc<Shared>) {
    let door = Arc::new(door);
    for stream in listener.incoming().flatten() {
        let (door, shared) = (Arc::clone(&door), Arc::clone(&shared));
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, &door, &shared) {
                eprintln!("{}:{}: {e:#}", door.load_balancer, door.port);
            }
        });
    }
}

fn handle(mut client: TcpStream, door: &Door, shared: &Shared) -> anyhow::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buffer = Vec::new();
    let head_length = loop {
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_HEAD {
            return respond(&mut client, 400, "text/plain", "request head too large", &[]);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(&buffer[..head_length]), Ok(httparse::Status::Complete(_))) {
        return respond(&mut client, 400, "text/plain", "bad request", &[]);
    }
    let Some(host) = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
    else {
        // As an ALB answers an HTTP/1.1 request without a Host header.
        return respond(&mut client, 400, "text/plain", "400 Bad Request: no Host header", &[]);
    };
    let head_only = request.method == Some("HEAD");
    let respond = |client: &mut TcpStream, status: u16, body: &str, extra: &[(&str, &str)]| {
        respond(client, status, "text/plain", if head_only { "" } else { body }, extra)
    };
    let path = request.path.unwrap_or("/").to_string();
    let listener = match shared.runtime.block_on(read::listener(&shared.clients, door)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{}:{}: {e:#}", door.load_balancer, door.port);
            let body = format!(
                "500 Internal Server Error: the local front door cannot read this listener from the emulator ({e:#})"
            );
            return respond(&mut client, 500, &body, &[]);
        }
    };
    let target_group = match route(&listener, &host, &path) {
        Answer::Fixed { status, content_type, body } => {
            let body = if head_only { "" } else { body.as_str() };
            return self::respond(&mut client, status, &content_type, body, &[]);
        }
        Answer::Redirect { status, location } => return respond(&mut client, status, "", &[("Location", &location)]),
        Answer::Forward(target_group) => target_group,
    };
    let read_targets = || shared.runtime.block_on(read::targets(&shared.clients, &target_group));
    let mut targets = match read_targets() {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("{}:{}: {e:#}", door.load_balancer, door.port);
            let body = format!("500 Internal Server Error: the local front door cannot read the target group ({e:#})");
            return respond(&mut client, 500, &body, &[]);
        }
    };
    let turn = {
        let mut turns = shared.turns.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(turns.entry(target_group.clone()).or_default())
    };
    // A request without a body can be sent again as it is.
    let bodyless = matches!(request.method, Some("GET" | "HEAD"))
        && buffer.len() == head_length
        && !request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length") || h.name.eq_ignore_ascii_case("transfer-encoding"));
    let head = forwarded_head(&request, door, &client);
    let mut rerouted = false;
    // Routed to an instance that has left its target group since: on AWS the deregistration
    // delay lets such a request finish, here the instance's app may already be stopping after the
    // local fleet's short drain. The request is routed again, once, among the instances
    // registered now (when it can be sent again).
    let mut reroute = |instance: &str, targets: &mut Vec<String>| {
        if rerouted {
            return false;
        }
        match read_targets() {
            Ok(now) if !now.iter().any(|i| i == instance) => {
                (*targets, rerouted) = (now, true);
                true
            }
            _ => false,
        }
    };
    loop {
        if targets.is_empty() {
            return respond(&mut client, 503, "503 Service Temporarily Unavailable: no registered targets", &[]);
        }
        let instance = targets[turn.fetch_add(1, Ordering::SeqCst) % targets.len()].clone();
        let Some(port) = instance_port(&shared.fleet, &instance) else {
            let body = format!("502 Bad Gateway: {instance} has no app deployed by the local agent");
            return respond(&mut client, 502, &body, &[]);
        };
        // As an ALB: a refused connection is a 502, one not made within 10 s a 504.
        let mut target = match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), CONNECT_TIMEOUT) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let body = format!("504 Gateway Timeout: {instance} did not accept a connection");
                return respond(&mut client, 504, &body, &[]);
            }
            Err(_) if reroute(&instance, &mut targets) => continue,
            Err(_) => return respond(&mut client, 502, &format!("502 Bad Gateway: {instance} does not answer"), &[]),
        };
        target.set_read_timeout(Some(IDLE_TIMEOUT))?;
        if target.write_all(&head).and_then(|()| target.write_all(&buffer[head_length..])).is_err() {
            if bodyless && reroute(&instance, &mut targets) {
                continue;
            }
            return respond(&mut client, 502, &format!("502 Bad Gateway: {instance} closed the connection"), &[]);
        }
        // The rest of the body, if any, goes on by itself; the answer ends when the app closes
        // (the request said `Connection: close`), or after the idle timeout.
        if !bodyless {
            let mut upload = (client.try_clone()?, target.try_clone()?);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut upload.0, &mut upload.1);
            });
        }
        let mut sent = 0usize;
        let mut chunk = [0u8; 16 * 1024];
        let answered = loop {
            match target.read(&mut chunk) {
                Ok(0) => break sent > 0,
                Ok(n) => {
                    if client.write_all(&chunk[..n]).is_err() {
                        break true;
                    }
                    sent += n;
                }
                Err(e)
                    if sent == 0
                        && matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    let body = format!("504 Gateway Timeout: {instance} did not answer in time");
                    let _ = respond(&mut client, 504, &body, &[]);
                    break true;
                }
                Err(_) => break sent > 0,
            }
        };
        let _ = target.shutdown(Shutdown::Both);
        if !answered {
            if bodyless && reroute(&instance, &mut targets) {
                continue;
            }
            // As an ALB whose target closes the connection without an answer.
            let body = format!("502 Bad Gateway: {instance} closed the connection without answering");
            let _ = respond(&mut client, 502, &body, &[]);
        }
        // Both ends closed: an upload thread's copy ends with them.
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
}

/// The request head as the load balancer sends it on: `Connection: close`, and the
/// `X-Forwarded-*` headers an ALB adds.
fn forwarded_head(request: &httparse::Request, door: &Door, client: &TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let method = request.method.unwrap_or("GET");
    let path = request.path.unwrap_or("/");
    head.extend_from_slice(format!("{method} {path} HTTP/1.1\r\n").as_bytes());
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "connection" | "keep-alive" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-port"
        ) {
            continue;
        }
        head.extend_from_slice(header.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(header.value);
        head.extend_from_slice(b"\r\n");
    }
    let peer = client.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    // An ALB appends the client's address to an X-Forwarded-For the request brings.
    let forwarded_for = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|h| format!("{}, {peer}", String::from_utf8_lossy(h.value)))
        .unwrap_or(peer);
    let proto = if door.protocol == "HTTPS" { "https" } else { "http" };
    head.extend_from_slice(
        format!("X-Forwarded-For: {forwarded_for}\r\nX-Forwarded-Proto: {proto}\r\nX-Forwarded-Port: {}\r\nConnection: close\r\n\r\n", door.port)
            .as_bytes(),
    );
    head
}

/// The loopback port of the instance's app: its sandbox's, in whichever environment it is.
fn instance_port(fleet: &Path, instance: &str) -> Option<u16> {
    std::fs::read_dir(fleet)
        .ok()?
        .flatten()
        .find_map(|environment| vending_runners::agent::local_port(&environment.path().join(instance)))
}

fn respond(
    client: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<()> {
    let reason = match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nServer: awselb/2.0 (vending local front door)\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    client.write_all(head.as_bytes())?;
    client.write_all(body.as_bytes())?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}
