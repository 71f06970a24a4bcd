//! Everything that talks to AWS, through the official Rust SDK: one `SdkConfig` for every client,
//! one module per service. The endpoint comes from the standard AWS configuration
//! (`AWS_ENDPOINT_URL`, profiles), or from the local emulator in local mode.

pub mod approval;
pub mod calls;
pub mod codebuild;
pub mod ec2;
pub mod front_door;
pub mod identity;
pub mod infra;
pub mod lock;
pub mod release;
pub mod s3;
pub mod secrets;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Where the SDK sends requests.
#[derive(Debug, Clone)]
pub enum Target {
    /// AWS itself, with the standard credential chain (environment, profile, SSO, role).
    Aws,
    /// The local emulator at this loopback endpoint. Any credentials work there; test ones are
    /// used unless the environment has some.
    Local { endpoint: String },
}

/// How long a call may take. Every AWS API the tool calls answers in well under a second; a
/// first byte that takes 30 s means a network or endpoint that has stopped answering (an emulator
/// stopped with SIGSTOP hung a deploy forever before these), so the attempt is abandoned and
/// retried, and after 3 minutes of that the command stops with the endpoint's name. A revision
/// upload gets `UPLOAD` instead: its first answer comes only after the whole body is sent.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Opening a connection (DNS and TCP/TLS): 5 s.
    pub connect: Duration,
    /// From sending a request to the first byte of its answer: 30 s.
    pub read: Duration,
    /// One attempt, answer included: 60 s.
    pub attempt: Duration,
    /// A call with all its retries: 3 min.
    pub operation: Duration,
}

pub const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    read: Duration::from_secs(30),
    attempt: Duration::from_secs(60),
    operation: Duration::from_secs(180),
};

/// For a revision upload (up to a few hundred MB on a slow link).
pub const UPLOAD: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    read: Duration::from_secs(900),
    attempt: Duration::from_secs(900),
    operation: Duration::from_secs(1800),
};

impl Timeouts {
    pub fn config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.read)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// How many attempts a call gets when `AWS_MAX_ATTEMPTS` does not say: 5 (the SDK's own default
/// is 3). A deploy makes a few hundred calls; under throttling, or a network that drops one
/// connection in twenty, three attempts leave a deploy a fair chance of failing on one unlucky call,
/// five make it negligible, and the standard mode's capped exponential backoff with jitter (at
/// most 20 s between attempts) keeps the wait bounded.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The retry configuration: standard mode with `DEFAULT_MAX_ATTEMPTS`, unless the standard
/// variables say otherwise (`AWS_RETRY_MODE=standard|adaptive`, `AWS_MAX_ATTEMPTS=N`). A profile's
/// `retry_mode` and `max_attempts` are not read: the variables are the way to change it.
fn retry_config() -> RetryConfig {
    let attempts =
        std::env::var("AWS_MAX_ATTEMPTS").ok().and_then(|v| v.trim().parse::<u32>().ok()).filter(|n| *n >= 1);
    let adaptive = std::env::var("AWS_RETRY_MODE").is_ok_and(|m| m.trim().eq_ignore_ascii_case("adaptive"));
    let config = if adaptive { RetryConfig::adaptive() } else { RetryConfig::standard() };
    config.with_max_attempts(attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS))
}

thread_local! {
    /// Where this thread's calls go, for messages: set by `sdk_config` (a command makes its calls
    /// on one thread, on a current-thread runtime).
    static ENDPOINT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn endpoint_name() -> String {
    ENDPOINT.with(|e| e.borrow().clone()).unwrap_or_else(|| "the AWS endpoint".into())
}

/// The one SDK configuration every client of a command is built from.
pub async fn sdk_config(region: &str, target: &Target) -> SdkConfig {
    sdk_config_with(region, target, &TIMEOUTS).await
}

/// `sdk_config` with other timeouts (tests of the timeouts themselves).
pub async fn sdk_config_with(region: &str, target: &Target, timeouts: &Timeouts) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .timeout_config(timeouts.config())
        .retry_config(retry_config());
    let endpoint = match target {
        Target::Local { endpoint } => endpoint.clone(),
        Target::Aws => std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| format!("AWS in {region}")),
    };
    ENDPOINT.with(|e| *e.borrow_mut() = Some(endpoint));
    match target {
        Target::Aws => loader.load().await,
        Target::Local { endpoint } => {
            let loader = loader.endpoint_url(endpoint);
            let has_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
            let loader = if has_keys {
                loader
            } else {
                loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "vending-local",
                ))
            };
            loader.load().await
        }
    }
}

/// The runtime of a command's AWS calls: the commands are sequential and wait on the network, so
/// one worker thread. A worker (rather than a current-thread runtime) keeps the HTTP client's
/// connections served while the command's own thread is busy elsewhere (Packer, a build, a
/// sleep), so that the lock's renewal thread can call AWS through the same clients at any time
/// (`Handle::block_on`).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?)
}

/// One line for an SDK error of any service (they share the smithy error types): the service's
/// code and message, without the debug noise.
pub fn describe_error<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    // Without credentials the SDK fails before sending, with a long account of every provider it
    // tried (IMDS among them): one line says it, the account stays for `VENDING_VERBOSE=1`.
    if !matches!(error, SdkError::ServiceError(_)) {
        let text = format!("{}", aws_sdk_s3::error::DisplayErrorContext(error));
        // Only "none anywhere in the chain": an expired session or a refused role is said as is.
        if text.contains("no credentials found") {
            let details =
                if std::env::var_os("VENDING_VERBOSE").is_some() { format!(" ({text})") } else { String::new() };
            return format!(
                "no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or run `aws sso login`; for the local emulator add --local{details}"
            );
        }
    }
    match error {
        SdkError::ServiceError(e) => {
            let e = e.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{}", aws_sdk_s3::error::DisplayErrorContext(error)),
            }
        }
        SdkError::DispatchFailure(e) if e.is_timeout() => {
            format!("{} did not answer in time (network, or an endpoint that stopped answering)", endpoint_name())
        }
        SdkError::DispatchFailure(e) if e.is_io() => {
            format!("cannot reach {} (network, or the local emulator is not running)", endpoint_name())
        }
        // A connection closed before the answer, and the other failures to send: retried by the
        // SDK already; what is left to say is where it failed.
        SdkError::DispatchFailure(_) => format!(
            "cannot reach {}: the connection failed before an answer came, after retries (network, or the endpoint stopped)",
            endpoint_name()
        ),
        SdkError::TimeoutError(_) => format!(
            "{} did not answer in time, retries included (network, or an endpoint that stopped answering)",
            endpoint_name()
        ),
        other => format!("{}", aws_sdk_s3::error::DisplayErrorContext(other)),
    }
}
