//! `cargo xtask generate [customer [env]]`: writes the generated files, or changes nothing when
//! any config is invalid.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::generated::{self, Mode};
use crate::output::{self, Format};
use crate::validate::{load_fleet, Selection};

/// Write Packer templates, buildspecs and appspecs from customers/.
#[derive(Args)]
pub struct Generate {
    /// Only this customer.
    customer: Option<String>,
    /// Only this environment of the customer.
    env: Option<String>,
}

impl Generate {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let selection = Selection { customer: self.customer, env: self.env };
        let loaded = load_fleet(root, &selection)?;
        if loaded.has_errors() {
            let summary = loaded.summary();
            output::print(Format::Human, &loaded.diagnostics, &summary);
            eprintln!("nothing was written: fix the errors above first");
            return Ok(ExitCode::from(output::EXIT_PROBLEMS));
        }
        for d in &loaded.diagnostics {
            println!("{}", d.render_human());
        }
        let prune = loaded.leftovers(root)?;
        let outcome = generated::sync(root, &loaded.files, prune.as_deref(), Mode::Write)?;
        for path in &outcome.written {
            println!("wrote {}", path.display());
        }
        for path in &outcome.removed {
            println!("removed {}", path.display());
        }
        println!(
            "{} written, {} removed, {} unchanged",
            outcome.written.len(),
            outcome.removed.len(),
            outcome.unchanged
        );
        Ok(ExitCode::from(output::EXIT_OK))
    }
}
