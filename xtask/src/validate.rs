//! `cargo xtask validate`: the pull-request check. Every customer, every environment, every
//! generated file, and `packer validate` on every template. It never runs a customer's commands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use vending::config::validate::{validate_fleet, FleetSources};
use vending::render::{self, GeneratedFile};
use vending::spec::{self, SpecKind};
use vending::{Diagnostic, Fleet, Severity, SourceFile};

use crate::generated::{self, Mode};
use crate::output::{self, Format, Summary};
use crate::packer;

/// Check customer config, generated files and Packer templates; or one buildspec/appspec file.
#[derive(Args)]
pub struct Validate {
    /// Only this customer.
    customer: Option<String>,
    /// Only this environment of the customer.
    env: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Fail (exit 2) when `packer` is not installed, instead of skipping `packer validate`.
    #[arg(long, conflicts_with = "no_packer")]
    require_packer: bool,
    /// Do not run `packer validate`.
    #[arg(long)]
    no_packer: bool,
    /// Check one buildspec or appspec file (yours or a generated one) instead of the fleet.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["customer", "env"])]
    spec: Option<PathBuf>,
    /// With --spec: the file's kind, when its content and name do not tell.
    #[arg(long, value_name = "buildspec|appspec", requires = "spec")]
    kind: Option<SpecKind>,
    /// Print elapsed time and peak memory on stderr as JSON (for `cargo xtask bench`).
    #[arg(long, hide = true)]
    report_resources: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub customer: Option<String>,
    pub env: Option<String>,
}

/// A fleet read, validated and rendered in memory.
pub struct LoadedFleet {
    pub sources: FleetSources,
    pub fleet: Option<Fleet>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<GeneratedFile>,
    selection: Selection,
}

impl LoadedFleet {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn summary(&self) -> Summary {
        let customers = self.sources.customers.len();
        let environments = self.sources.customers.iter().map(|c| self.env_count(c)).sum();
        Summary {
            errors: self.diagnostics.iter().filter(|d| d.is_error()).count(),
            warnings: self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
            customers,
            environments,
            files_checked: self.files.len(),
            file: None,
            notes: Vec::new(),
        }
    }

    /// How many shared load balancers the whole fleet needs, when the tool manages them.
    fn pool_note(&self) -> Option<String> {
        let fleet = self.fleet.as_ref().filter(|_| self.selection.customer.is_none())?;
        let alb = &fleet.platform.shared_alb;
        let vending::config::model::ListenerRef::Lookup { load_balancer, .. } = &alb.listener else { return None };
        let shared = vending::pool::shared_environments(fleet).len();
        let members = vending::pool::members_needed(shared, alb.rules_per_alb);
        let last = match members {
            1 => String::new(),
            n => format!(" to {}", vending::pool::member_name(load_balancer, n)),
        };
        Some(format!(
            "{shared} environment(s) on the shared listener need {members} shared load balancer(s) ({load_balancer}{last}) at {} rules each (shared_alb.rules_per_alb)",
            alb.rules_per_alb
        ))
    }

    fn env_count(&self, customer: &vending::config::validate::CustomerSources) -> usize {
        customer.environments.iter().filter(|(name, _)| self.selection.env.as_ref().is_none_or(|e| e == name)).count()
    }

    /// Generated files on disk that nothing produces any more, when the whole fleet was loaded.
    pub fn leftovers(&self, root: &Path) -> anyhow::Result<Option<Vec<PathBuf>>> {
        if self.selection.customer.is_some() || self.fleet.is_none() {
            return Ok(None);
        }
        let existing = vending::project::list_generated(root).context("cannot list generated files")?;
        // Files of customers that did not validate stay: they are judged once their config is fixed.
        let valid: BTreeSet<&str> = self.fleet.iter().flat_map(|f| &f.customers).map(|c| c.name.as_str()).collect();
        let keep: BTreeSet<PathBuf> = self
            .sources
            .customers
            .iter()
            .filter(|c| !valid.contains(c.name.as_str()))
            .flat_map(|c| c.environments.iter().map(move |(env, _)| (c.name.clone(), env.clone())))
            .flat_map(|(c, e)| {
                [render::packer_path(&c, &e), render::buildspec_path(&c, &e), render::appspec_path(&c, &e)]
            })
            .collect();
        Ok(Some(generated::leftovers(&existing, &self.files, &keep)))
    }
}

/// Reads customers/, validates, and renders every environment that validated.
pub fn load_fleet(root: &Path, selection: &Selection) -> anyhow::Result<LoadedFleet> {
    if !root.join(vending::project::CUSTOMERS_DIR).is_dir() {
        anyhow::bail!("no customers/ folder in {}: run the command in the project, or pass --root", root.display());
    }
    let sources = vending::project::read_fleet(root, selection.customer.as_deref())?;
    if let Some(customer) = &selection.customer {
        let Some(found) = sources.customers.iter().find(|c| &c.name == customer) else {
            let all = vending::project::read_fleet(root, None)?;
            let there: Vec<&str> = all.customers.iter().map(|c| c.name.as_str()).collect();
            return Err(output::unknown_name("customer", customer, "customers/", &there));
        };
        if let Some(env) = &selection.env {
            if !found.environments.iter().any(|(name, _)| name == env) {
                let there: Vec<&str> = found.environments.iter().map(|(name, _)| name.as_str()).collect();
                return Err(output::unknown_name("environment", env, &format!("customers/{customer}/"), &there));
            }
        }
    }
    let (fleet, diagnostics) = validate_fleet(&sources);
    let mut files = Vec::new();
    if let Some(fleet) = &fleet {
        let envs: Vec<_> = fleet
            .customers
            .iter()
            .flat_map(|customer| customer.environments.iter().map(move |env| (customer, env)))
            .filter(|(_, env)| selection.env.as_ref().is_none_or(|e| e == &env.name))
            .collect();
        files =
            crate::parallel::map(&envs, |(customer, env)| render::render_environment(&fleet.platform, customer, env))
                .into_iter()
                .flatten()
                .collect();
    }
    // The config files' JSON Schema: generated from the config types, for editors.
    if selection.customer.is_none() {
        let schemas = vending::config::schema::schema_files();
        files.extend(schemas.into_iter().map(|(path, contents)| GeneratedFile { path, contents }));
    }
    Ok(LoadedFleet { sources, fleet, diagnostics, files, selection: selection.clone() })
}

impl Validate {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        let code = match &self.spec {
            Some(path) => self.check_spec_file(root, path)?,
            None => self.check_fleet(root)?,
        };
        if self.report_resources {
            eprintln!(
                "{}",
                serde_json::json!({ "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0, "peak_rss_kib": peak_rss_kib() })
            );
        }
        Ok(code)
    }

    fn check_spec_file(&self, root: &Path, path: &Path) -> anyhow::Result<ExitCode> {
        let text = read_spec(path)?;
        let mut diagnostics = if self.kind.is_none() && is_packer_template(path, &text) {
            match self.check_packer_file(root, path)? {
                Ok(diagnostics) => diagnostics,
                Err(code) => return Ok(code),
            }
        } else {
            spec::check_spec(&SourceFile::new(path, text), self.kind)
        };
        vending::diag::sort(&mut diagnostics);
        let summary = Summary {
            errors: diagnostics.iter().filter(|d| d.is_error()).count(),
            warnings: diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
            files_checked: 1,
            file: Some(path.display().to_string()),
            ..Summary::default()
        };
        output::print(self.format, &diagnostics, &summary);
        Ok(exit(&summary))
    }

    /// A Packer template given to `--spec`: `packer validate` checks it. `Err`: it cannot be
    /// checked here, and the output said how to check it.
    fn check_packer_file(&self, root: &Path, path: &Path) -> anyhow::Result<Result<Vec<Diagnostic>, ExitCode>> {
        let binary = match packer::find(root) {
            Some(binary) if !self.no_packer => binary,
            found => {
                let why = if found.is_some() { "--no-packer was given" } else { packer::NOT_INSTALLED };
                eprintln!(
                    "error: {} is a Packer template, which `validate --spec` checks with `packer validate`, but {why}; run it without --no-packer with Packer installed, or run `packer validate {}` yourself",
                    path.display(),
                    path.display()
                );
                return Ok(Err(ExitCode::from(output::EXIT_CANNOT_RUN)));
            }
        };
        Ok(Ok(packer::validate_file(root, &binary, path)?.into_iter().collect()))
    }

    fn check_fleet(&self, root: &Path) -> anyhow::Result<ExitCode> {
        let selection = Selection { customer: self.customer.clone(), env: self.env.clone() };
        let mut loaded = load_fleet(root, &selection)?;
        let mut diagnostics = std::mem::take(&mut loaded.diagnostics);

        // Generated files: fresh on disk, and valid by the same validators users run on theirs.
        let prune = loaded.leftovers(root)?;
        let outcome = generated::sync(root, &loaded.files, prune.as_deref(), Mode::Check)?;
        // `generate` writes nothing while any config is invalid: that comes first.
        let config_errors = diagnostics.iter().any(Diagnostic::is_error);
        diagnostics.extend(outcome.problems.into_iter().map(|d| match config_errors {
            true => {
                let help = "fix the config errors above first (`cargo xtask generate` writes nothing while any config is invalid), then run `cargo xtask generate` and commit the result";
                d.with_help(help)
            }
            false => d,
        }));
        let specs: Vec<&GeneratedFile> = loaded
            .files
            .iter()
            .filter(|f| f.path.starts_with("buildspecs") || f.path.starts_with("appspecs"))
            .collect();
        let spec_problems = crate::parallel::map(&specs, |file| {
            spec::check_spec(&SourceFile::new(&file.path, file.contents.clone()), None)
        });
        diagnostics.extend(spec_problems.into_iter().flatten());

        let mut notes = Vec::new();
        if let Some(note) = loaded.pool_note().filter(|_| !config_errors) {
            notes.push(note);
        }
        if !self.no_packer {
            let templates: Vec<&GeneratedFile> = loaded.files.iter().filter(|f| f.path.starts_with("packer")).collect();
            match packer::find(root) {
                Some(binary) => {
                    let report = packer::validate_all(root, &binary, &templates)?;
                    notes.push(format!(
                        "packer validate: {} template(s) run, {} unchanged since their last validation",
                        report.ran, report.cached
                    ));
                    diagnostics.extend(report.problems);
                }
                None if self.require_packer => {
                    loaded.diagnostics = diagnostics;
                    output::print(self.format, &loaded.diagnostics, &loaded.summary());
                    eprintln!("error: {}", packer::NOT_INSTALLED);
                    return Ok(ExitCode::from(output::EXIT_CANNOT_RUN));
                }
                None => notes.push(format!("packer validate skipped: {}", packer::NOT_INSTALLED)),
            }
        }
        vending::diag::sort(&mut diagnostics);
        loaded.diagnostics = diagnostics;
        let mut summary = loaded.summary();
        summary.notes = notes;
        output::print(self.format, &loaded.diagnostics, &summary);
        Ok(exit(&summary))
    }
}

/// A Packer template by its name (`*.pkr.hcl`, `*.pkr.json`) or, for other names, by a
/// top-level block only Packer templates have.
fn is_packer_template(path: &Path, text: &str) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.ends_with(".pkr.hcl")
        || name.ends_with(".pkr.json")
        || text.lines().any(|line| line.starts_with("source \"") || line.starts_with("packer {"))
}

fn exit(summary: &Summary) -> ExitCode {
    ExitCode::from(if summary.errors > 0 { output::EXIT_PROBLEMS } else { output::EXIT_OK })
}

/// Peak resident memory of this process (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The largest spec file `validate --spec` reads: buildspecs and appspecs are a few KiB, and a
/// Packer template a few dozen; anything near this is not one.
const MAX_SPEC_BYTES: u64 = 4 * 1024 * 1024;

/// A spec file's text: a regular file (a FIFO or `/dev/zero` would hang or grow without end),
/// of bounded size, in UTF-8.
fn read_spec(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        metadata.is_file(),
        "{} is not a regular file: give the path of a buildspec, appspec or Packer template",
        path.display()
    );
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_SPEC_BYTES,
        "{} is larger than {} MiB: not a buildspec, appspec or Packer template",
        path.display(),
        MAX_SPEC_BYTES / 1024 / 1024
    );
    String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to()))
}
