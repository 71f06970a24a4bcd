//! Everything that talks to AWS, through the official Rust SDK: one `SdkConfig` for every client,
//! one module per service. The endpoint comes from the standard AWS configuration
//! (`AWS_ENDPOINT_URL`, profiles), or from the local emulator in local mode.

pub mod approval;
pub mod calls;
pub mod ec2;
pub mod identity;
pub mod infra;
pub mod lock;
pub mod release;
pub mod s3;
pub mod secrets;

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

/// The one SDK configuration every client of a command is built from.
pub async fn sdk_config(region: &str, target: &Target) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string()));
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

/// A single-threaded runtime for a command's AWS calls: the commands are sequential and the
/// work is waiting on the network.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// One line for an SDK error of any service (they share the smithy error types): the service's
/// code and message, without the debug noise.
pub fn describe_error<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match error {
        SdkError::ServiceError(e) => {
            let e = e.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{}", aws_sdk_s3::error::DisplayErrorContext(error)),
            }
        }
        SdkError::DispatchFailure(e) if e.is_io() || e.is_timeout() => {
            "cannot reach the AWS endpoint (network, or the local emulator is not running)".into()
        }
        other => {
            let text = format!("{}", aws_sdk_s3::error::DisplayErrorContext(other));
            if text.contains("no credentials") || text.contains("credentials") && text.contains("provider") {
                "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), run `aws sso login`, or use --local".into()
            } else {
                text
            }
        }
    }
}
