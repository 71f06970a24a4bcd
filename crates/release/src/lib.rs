//! The release of one environment's software, as a library: what `deploy`, `rollback` and
//! `build` run. `build` clones the customer's repository and makes the revision with the
//! runners; `ship::Release` prepares it (nothing changed in AWS: what an approval covers),
//! uploads it under its content-addressed key, creates the CodeDeploy deployment and follows it,
//! or, on the emulator (which records deployments but never runs them), has the local agent
//! deploy it to one sandbox per instance (`local_fleet`). The command line owns Ctrl-C and hands
//! it in as `Interrupts`.

pub mod build;
pub mod codebuild;
pub mod local_fleet;
pub mod progress;
pub mod ship;

pub use codebuild::BuildMode;
pub use ship::{PlannedRevision, Prepared, Release, Shipped};

/// Ctrl-C, as the command line owns it.
pub trait Interrupts {
    /// How many times Ctrl-C was pressed so far.
    fn presses(&self) -> u32;

    /// Whether Ctrl-C was pressed.
    fn interrupted(&self) -> bool {
        self.presses() > 0
    }

    /// From now on the first press is the release's to act on (it stops the deployment), and
    /// `first` and `leave` are what the first and the second press print.
    fn arm(&self, first: Option<String>, leave: String) -> anyhow::Result<()>;
}
