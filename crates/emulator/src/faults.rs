//! A fault-injecting loopback proxy in front of the emulator, for what the emulator never does by
//! itself: be slow, drop connections, throttle, fail. Tests and `cargo xtask bench reliability`
//! put it between the tool and moto (`AWS_ENDPOINT_URL` names the proxy) and check that the
//! SDK's retries carry a deploy through transient faults, and that a permanent one stops it
//! cleanly.
//!
//! Each connection carries one request (moto answers `Connection: close`, and the proxy asks for
//! it). The proxy reads the request's head, picks a fault with a seeded generator, and then either
//! forwards the request or answers in the service's own protocol: an S3 `SlowDown` (503), a JSON
//! protocol `ThrottlingException` (400, `X-Amz-Target` requests), a query protocol `Throttling`
//! (400, form-encoded requests; EC2's `RequestLimitExceeded` in its own format), a bare 503, a
//! connection closed without an answer, or a delay before forwarding. A rule can also answer
//! 403 `AccessDenied` to one operation, the permanent error that must not be retried.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each fault happens, per request (0.0 to 1.0; they add up to at most 1).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close the connection without an answer.
    pub drop: f64,
    /// Answer 503 with an empty body.
    pub unavailable: f64,
    /// Answer the service's throttling error (S3: 503 SlowDown).
    pub throttle: f64,
    /// Hold the request this long before forwarding it.
    pub delay: f64,
    pub delay_for: Duration,
    /// Answer 403 AccessDenied to requests whose operation (the `Action=` of a query request,
    /// the `X-Amz-Target` of a JSON one) is this one.
    pub deny: Option<String>,
}

/// What the proxy did, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub unavailable: AtomicU64,
    pub throttled: AtomicU64,
    pub delayed: AtomicU64,
    pub denied: AtomicU64,
}

impl Counts {
    pub fn snapshot(&self) -> [(&'static str, u64); 7] {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        [
            ("requests", get(&self.requests)),
            ("forwarded", get(&self.forwarded)),
            ("dropped", get(&self.dropped)),
            ("503", get(&self.unavailable)),
            ("throttled", get(&self.throttled)),
            ("delayed", get(&self.delayed)),
            ("denied (403)", get(&self.denied)),
        ]
    }

    /// Faults injected (delays aside, which are not failures).
    pub fn failures(&self) -> u64 {
        [&self.dropped, &self.unavailable, &self.throttled, &self.denied].iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }
}

/// A running proxy; it stops with the process.
pub struct FaultProxy {
    pub port: u16,
    pub counts: Arc<Counts>,
    faults: Arc<Mutex<Faults>>,
}

impl FaultProxy {
    /// Starts a proxy to the emulator at `upstream`, with faults chosen by a generator seeded
    /// with `seed` (the same seed and the same requests give the same faults).
    pub fn start(upstream: u16, faults: Faults, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let faults = Arc::new(Mutex::new(faults));
        let random = Arc::new(Mutex::new(XorShift(seed.max(1))));
        let (c, f) = (counts.clone(), faults.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (counts, faults, random) = (c.clone(), f.clone(), random.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, upstream, &counts, &faults, &random);
                });
            }
        });
        Ok(FaultProxy { port, counts, faults })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the faults from now on (`Faults::default()`: none).
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }
}

/// A small deterministic generator (xorshift64*), enough to spread faults over requests.
struct XorShift(u64);

impl XorShift {
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The head of a request: its lines up to the blank one, as read.
struct Head {
    raw: Vec<u8>,
    target: Option<String>,
    /// The signing service of `Authorization` (`ec2`, `s3`, `elasticloadbalancing`, ...).
    service: String,
    content_length: usize,
}

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Head> {
    let mut raw = Vec::new();
    let (mut target, mut service, mut content_length) = (None, String::new(), 0);
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&line).to_string();
        let lower = text.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("x-amz-target:") {
            target = Some(text[text.len() - value.len()..].trim().to_string());
        } else if let Some(value) = lower.strip_prefix("authorization:") {
            // `Credential=KEY/DATE/REGION/SERVICE/aws4_request`
            let scope = value.split("credential=").nth(1).unwrap_or_default();
            service = scope.split('/').nth(3).unwrap_or_default().to_string();
        } else if let Some(value) = lower.strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        // moto closes after each answer anyway; ask for it so one connection is one request.
        if lower.starts_with("connection:") {
            continue;
        }
        if text == "\r\n" || text == "\n" {
            raw.extend_from_slice(b"Connection: close\r\n\r\n");
            return Ok(Head { raw, target, service, content_length });
        }
        raw.extend_from_slice(&line);
    }
}

fn serve(
    client: TcpStream,
    upstream: u16,
    counts: &Counts,
    faults: &Mutex<Faults>,
    random: &Mutex<XorShift>,
) -> std::io::Result<()> {
    counts.requests.fetch_add(1, Ordering::SeqCst);
    let faults = faults.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let roll = random.lock().unwrap_or_else(|p| p.into_inner()).next_f64();
    if roll < faults.drop {
        counts.dropped.fetch_add(1, Ordering::SeqCst);
        return client.shutdown(Shutdown::Both);
    }
    let mut reader = BufReader::new(client.try_clone()?);
    let head = read_head(&mut reader)?;
    let mut body = vec![0u8; head.content_length];
    reader.read_exact(&mut body)?;
    let operation = match &head.target {
        Some(target) => target.rsplit('.').next().unwrap_or_default().to_string(),
        None => form_action(&body),
    };
    let mut client = client;
    if faults.deny.as_deref().is_some_and(|deny| deny == operation) {
        counts.denied.fetch_add(1, Ordering::SeqCst);
        let code = match (head.service.as_str(), head.target.is_some()) {
            ("ec2", _) => "UnauthorizedOperation",
            (_, true) => "AccessDeniedException",
            _ => "AccessDenied",
        };
        return answer(&mut client, &head, 403, code, "injected: not authorized to perform this operation");
    }
    let mut at = faults.drop;
    for (chance, kind) in [(faults.unavailable, 0), (faults.throttle, 1), (faults.delay, 2)] {
        if roll >= at && roll < at + chance {
            match kind {
                0 => {
                    counts.unavailable.fetch_add(1, Ordering::SeqCst);
                    let response =
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    return client.write_all(response);
                }
                1 => {
                    counts.throttled.fetch_add(1, Ordering::SeqCst);
                    return throttle(&mut client, &head, &operation);
                }
                _ => {
                    counts.delayed.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(faults.delay_for);
                }
            }
            break;
        }
        at += chance;
    }
    counts.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.write_all(&head.raw)?;
    server.write_all(&body)?;
    // Anything the client still sends (a body without Content-Length) goes on, then the answer back.
    let mut rest = reader;
    let mut to_server = server.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut rest, &mut to_server);
    });
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(Shutdown::Both)
}

/// `Action=` of a form-encoded (query protocol) request.
fn form_action(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split('&').find_map(|pair| pair.strip_prefix("Action=")).unwrap_or_default().to_string()
}

/// The throttling error of the request's service, as it sends it.
fn throttle(client: &mut TcpStream, head: &Head, _operation: &str) -> std::io::Result<()> {
    match (head.service.as_str(), head.target.is_some()) {
        ("s3", _) => answer(client, head, 503, "SlowDown", "injected: Please reduce your request rate."),
        ("ec2", _) => answer(client, head, 503, "RequestLimitExceeded", "injected: Request limit exceeded."),
        (_, true) => answer(client, head, 400, "ThrottlingException", "injected: Rate exceeded"),
        _ => answer(client, head, 400, "Throttling", "injected: Rate exceeded"),
    }
}

fn answer(client: &mut TcpStream, head: &Head, status: u16, code: &str, message: &str) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        _ => "Service Unavailable",
    };
    let (content_type, body) = match (head.service.as_str(), head.target.is_some()) {
        ("s3", _) => ("application/xml", format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>")),
        ("ec2", _) => (
            "text/xml",
            format!("<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>injected</RequestID></Response>"),
        ),
        (_, true) => ("application/x-amz-json-1.1", format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}")),
        _ => (
            "text/xml",
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes())?;
    client.shutdown(Shutdown::Both)
}
