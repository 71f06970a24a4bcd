//! Raw structs → validated model. Every problem in every file is collected in one pass; a
//! customer with errors is left out of the returned fleet, so generation never sees bad input.
//!
//! One file per section of the config: `platform`, `customer`, `environment` (with the layered
//! settings in `layered`), `build`, `deploy`, `database`, and `fleet` for the checks across
//! customers; `refs` holds the settings that name AWS resources and tags, `checker` the
//! diagnostics collector they all report through.

mod build;
mod checker;
mod customer;
mod database;
mod deploy;
mod environment;
mod fleet;
mod layered;
mod platform;
mod refs;

use crate::config::model::{Customer, Fleet, Platform};
use crate::config::raw::{RawLayer, RawPlatform};
use crate::config::schema::FileKind;
use crate::diag::{Diagnostic, Severity};
use crate::source::SourceFile;
use checker::{load, Checker, File};

/// The config files of a fleet, read from disk by the caller.
#[derive(Debug, Clone, Default)]
pub struct FleetSources {
    pub platform: Option<SourceFile>,
    pub customers: Vec<CustomerSources>,
}

#[derive(Debug, Clone)]
pub struct CustomerSources {
    pub name: String,
    pub customer: Option<SourceFile>,
    /// `(env name, file)`, sorted by name.
    pub environments: Vec<(String, SourceFile)>,
}

/// Validates the whole fleet. The returned fleet holds the platform and every customer that
/// validated without error; it is `None` when the platform file itself is unusable.
pub fn validate_fleet(sources: &FleetSources) -> (Option<Fleet>, Vec<Diagnostic>) {
    let mut checker = Checker::new();
    let Some(platform_source) = &sources.platform else {
        checker.diagnostics.push(
            Diagnostic::file(Severity::Error, "customers/platform.toml", "missing `customers/platform.toml`")
                .with_help("create it; README.md lists its keys"),
        );
        return (None, checker.diagnostics);
    };
    let (raw_platform, platform_file) = load::<RawPlatform>(platform_source, FileKind::Platform, &mut checker);
    let platform = raw_platform.and_then(|raw| {
        checker.begin();
        let platform = platform::validate_platform(&raw, &platform_file, &mut checker);
        platform.filter(|_| checker.clean_since_begin()).map(|p| (p, raw.defaults.unwrap_or_default()))
    });

    // Fleet-wide checks see every environment that validated on its own, so a conflict is found
    // even while another file of the same customer has errors; generation gets clean customers only.
    let mut checked = Vec::new();
    let mut clean = Vec::new();
    for (validated, diagnostics) in validate_customers(sources, platform.as_ref(), &platform_file) {
        checker.diagnostics.extend(diagnostics);
        for (customer, is_clean) in validated {
            checked.push(customer);
            clean.push(is_clean);
        }
    }
    let fleet = platform.map(|(platform, _)| Fleet { platform, customers: checked });
    let fleet = fleet.map(|mut fleet| {
        fleet::check_fleet(&fleet, sources, &mut checker.diagnostics);
        let mut clean = clean.into_iter();
        fleet.customers.retain(|_| clean.next().unwrap_or(false));
        fleet
    });
    crate::diag::sort(&mut checker.diagnostics);
    // A layered value from customer.toml or platform.toml is judged once per environment.
    checker.diagnostics.dedup();
    (fleet, checker.diagnostics)
}

/// Each customer as validated (and whether it had no error), with the diagnostics, per chunk.
type CustomerResults = Vec<(Vec<(Customer, bool)>, Vec<Diagnostic>)>;

/// Customers are independent until the fleet-wide checks, so they validate in parallel; the
/// results come back in folder order, so the output does not depend on the thread count.
fn validate_customers(
    sources: &FleetSources,
    platform: Option<&(Platform, RawLayer)>,
    platform_file: &File<'_>,
) -> CustomerResults {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(sources.customers.len()).max(1);
    let chunk = sources.customers.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .customers
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut checker = Checker::new();
                    let mut validated = Vec::new();
                    for customer in part {
                        checker.begin();
                        if let Some(customer) =
                            customer::validate_customer(customer, platform, platform_file, &mut checker)
                        {
                            validated.push((customer, checker.clean_since_begin()));
                        }
                    }
                    (validated, checker.diagnostics)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}
