//! A record of the API calls a client makes (`Service.Operation`), attached as an SDK interceptor,
//! so a test or benchmark can prove that a deploy with nothing to do mutates nothing.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::ConfigBag;

#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>, Option<Arc<Mutex<std::fs::File>>>);

impl CallLog {
    /// The log `VENDING_CALL_LOG` names, if it does: every client a command makes appends to it.
    pub fn from_environment() -> anyhow::Result<Option<CallLog>> {
        use anyhow::Context;
        let Some(path) = std::env::var_os("VENDING_CALL_LOG") else { return Ok(None) };
        let path = std::path::Path::new(&path);
        CallLog::appending_to(path)
            .map(Some)
            .with_context(|| format!("cannot open VENDING_CALL_LOG {}", path.display()))
    }

    /// A log that also appends each call, as a line, to the file at `path` (the command line's
    /// `VENDING_CALL_LOG`, with which tests prove what a command did and did not call).
    pub fn appending_to(path: &std::path::Path) -> std::io::Result<CallLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(CallLog(Arc::default(), Some(Arc::new(Mutex::new(file)))))
    }

    pub fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The calls that change something: everything but Get, Head, List and Describe.
    pub fn mutating(&self) -> Vec<String> {
        self.calls().into_iter().filter(|c| !is_read(c)).collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

pub fn is_read(call: &str) -> bool {
    let operation = call.rsplit('.').next().unwrap_or(call);
    ["Get", "Head", "List", "Describe", "BatchGet"].iter().any(|prefix| operation.starts_with(prefix))
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    // The operation's metadata reaches the config bag only from the attempt on; a retried call
    // is recorded once per attempt, as AWS would see it.
    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            let call = format!("{}.{}", metadata.service(), metadata.name());
            if let Some(file) = &self.1 {
                use std::io::Write;
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                writeln!(file, "{call}")?;
            }
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        }
        Ok(())
    }
}
