//! `cargo xtask bench`: rerunnable benchmarks. `bench validate` writes a synthetic fleet
//! (N customers × M environments), generates its files, then times `validate` on it in fresh
//! processes and reads their peak memory.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Benchmarks whose figures go into BENCHMARKS.md.
#[derive(Args)]
pub struct Bench {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// Time `validate` on a synthetic fleet.
    Validate(BenchValidate),
}

#[derive(Args)]
struct BenchValidate {
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    #[arg(long, default_value_t = 2)]
    envs: usize,
    /// How many timed runs.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl Bench {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        match self.which {
            Which::Validate(b) => b.run(root),
        }
    }
}

impl BenchValidate {
    fn run(self, _root: &Path) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet")
    }
}
