//! How diagnostics reach the user: human text with the source line, GitHub annotations or JSON.
//! Exit codes are part of the interface (README.md, "Exit codes").

use clap::ValueEnum;
use serde::Serialize;
use vending::Diagnostic;

/// Everything checked and nothing is wrong (warnings allowed).
pub const EXIT_OK: u8 = 0;
/// The check ran and found errors.
pub const EXIT_PROBLEMS: u8 = 1;
/// The check could not run: unreadable files, bad arguments, a required tool missing.
pub const EXIT_CANNOT_RUN: u8 = 2;
/// A customer or environment named on the command line does not exist (every command).
pub const EXIT_UNKNOWN_NAME: u8 = 7;

/// A customer or environment that is not in customers/: what was asked, what is close, what there is.
#[derive(Debug)]
pub struct UnknownName(String);

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnknownName {}

/// The customer and environment of a validated fleet, or the unknown-name error for what is not
/// there.
pub fn environment<'f>(
    fleet: &'f vending::Fleet,
    customer: &str,
    env: &str,
) -> anyhow::Result<(&'f vending::config::model::Customer, &'f vending::config::model::Environment)> {
    let Some(found) = fleet.customers.iter().find(|c| c.name == customer) else {
        let there: Vec<&str> = fleet.customers.iter().map(|c| c.name.as_str()).collect();
        return Err(unknown_name("customer", customer, "customers/", &there));
    };
    let Some(environment) = found.environments.iter().find(|e| e.name == env) else {
        let there: Vec<&str> = found.environments.iter().map(|e| e.name.as_str()).collect();
        return Err(unknown_name("environment", env, &format!("customers/{customer}/"), &there));
    };
    Ok((found, environment))
}

/// `no customer `acm` in customers/: did you mean `acme`? (there are: acme, globex)`.
pub fn unknown_name(what: &str, name: &str, place: &str, there: &[&str]) -> anyhow::Error {
    let guess = vending::diag::did_you_mean(name, there.iter().copied())
        .map(|g| format!(": did you mean `{g}`?"))
        .unwrap_or_default();
    let list = if there.is_empty() { "none".to_string() } else { there.join(", ") };
    anyhow::Error::new(UnknownName(format!("no {what} `{name}` in {place}{guess} (there are: {list})")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Github,
    Json,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub customers: usize,
    pub environments: usize,
    pub files_checked: usize,
    /// The one file checked (`validate --spec`), instead of customers and generated files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub fn print(format: Format, diagnostics: &[Diagnostic], summary: &Summary) {
    match format {
        Format::Human => {
            for d in diagnostics {
                println!("{}", d.render_human());
            }
            for note in &summary.notes {
                println!("note: {note}");
            }
            match &summary.file {
                Some(file) => println!("{} error(s), {} warning(s) in {file}", summary.errors, summary.warnings),
                None => println!(
                    "{} error(s), {} warning(s) in {} customer(s), {} environment(s), {} generated file(s)",
                    summary.errors, summary.warnings, summary.customers, summary.environments, summary.files_checked
                ),
            }
        }
        Format::Github => {
            for d in diagnostics {
                println!("{}", d.render_github());
            }
            for note in &summary.notes {
                println!("::notice::{note}");
            }
            println!("{} error(s), {} warning(s)", summary.errors, summary.warnings);
        }
        Format::Json => {
            #[derive(Serialize)]
            struct Report<'a> {
                diagnostics: &'a [Diagnostic],
                summary: &'a Summary,
            }
            let report = Report { diagnostics, summary };
            // Serializing plain data to a String cannot fail.
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
        }
    }
}
