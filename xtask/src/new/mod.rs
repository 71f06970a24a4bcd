//! `cargo xtask new <customer>`: a customer folder to start from, `customer.toml`, `dev.toml` and
//! `prod.toml`, commented. The files are the scaffold in this folder, read as TOML documents
//! (`toml_edit` keeps their comments), with the customer's name set as values: its hosts,
//! destination, repository and display name. Written whole into place or not at all, and checked
//! by the same validation as `validate` before they stay.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use toml_edit::{value, Array, DocumentMut};

use crate::validate::{load_fleet, Selection};

const CUSTOMER: &str = include_str!("customer.toml");
const DEV: &str = include_str!("dev.toml");
const PROD: &str = include_str!("prod.toml");

/// Make a customer folder (customer.toml, dev.toml, prod.toml) that validates as it is.
#[derive(Args)]
#[command(after_help = "Example:\n  cargo xtask new initech && cargo xtask generate initech && cargo xtask validate")]
pub struct NewCommand {
    /// The customer's name, and its folder customers/<CUSTOMER>/ (lowercase letters, digits, `-`).
    customer: String,
}

impl NewCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let name = &self.customer;
        if let Err(why) = vending::names::customer_or_env_name(name) {
            bail!("customer name `{name}` {why}: it goes into every AWS resource name");
        }
        let customers = root.join(vending::project::CUSTOMERS_DIR);
        let folder = customers.join(name);
        if folder.exists() {
            bail!("{} exists already: nothing was written", folder.display());
        }
        // Made under target/, then renamed into place: the folder appears whole or not at all.
        let work = root.join("target");
        std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!("new-{name}-"))
            .tempdir_in(&work)
            .with_context(|| format!("cannot write in {}", work.display()))?;
        for (file, text) in scaffold(name)? {
            std::fs::write(staging.path().join(file), text).with_context(|| format!("cannot write {file}"))?;
        }
        // The whole fleet is validated before and after: what the new customer brings (a host
        // another customer has, say) is refused; errors there were before are not its own.
        let errors_of = |loaded: anyhow::Result<crate::validate::LoadedFleet>| -> Vec<String> {
            match loaded {
                Ok(loaded) => loaded.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.render_human()).collect(),
                Err(e) => vec![format!("{e:#}")],
            }
        };
        let before = errors_of(load_fleet(root, &Selection::default()));
        std::fs::rename(staging.path(), &folder).with_context(|| format!("cannot create {}", folder.display()))?;
        let errors: Vec<String> =
            errors_of(load_fleet(root, &Selection::default())).into_iter().filter(|e| !before.contains(e)).collect();
        if !errors.is_empty() {
            std::fs::remove_dir_all(&folder).with_context(|| format!("cannot remove {}", folder.display()))?;
            for error in &errors {
                eprintln!("{error}");
            }
            bail!("the new customer does not validate with this project's platform.toml: nothing was kept");
        }
        println!("created customers/{name}/: customer.toml, dev.toml, prod.toml (edit them: the comments say what each part is)");
        println!(
            "next: set software.repository in customers/{name}/customer.toml to the application's repository, then"
        );
        println!("  cargo xtask generate {name}     # its Packer template, buildspecs and appspecs");
        println!("  cargo xtask validate");
        println!("  git add -A && git commit -m \"Add {name}\"");
        println!("  cargo xtask ami {name} dev --local && cargo xtask deploy {name} dev --local");
        Ok(ExitCode::SUCCESS)
    }
}

/// The three files for `name`: the scaffold with the name set where it belongs.
fn scaffold(name: &str) -> anyhow::Result<[(&'static str, String); 3]> {
    let parse = |text: &str| text.parse::<DocumentMut>().context("the scaffold is TOML");
    let mut customer = parse(CUSTOMER)?;
    customer["display_name"] = value(display_name(name));
    customer["approval_emails"] = value(Array::from_iter([format!("ops@{name}.example.com")]));
    customer["software"]["repository"] = value(format!("https://git.example.com/{name}/app.git"));
    customer["deploy"]["destination"] = value(format!("/opt/{name}"));
    let permissions = customer["deploy"]["permissions"]
        .as_array_of_tables_mut()
        .and_then(|tables| tables.get_mut(0))
        .context("the scaffold has [[deploy.permissions]]")?;
    permissions["object"] = value(format!("/opt/{name}/scripts"));
    let hosts = |host: String| value(Array::from_iter([host]));
    let mut dev = parse(DEV)?;
    dev["hosts"] = hosts(format!("{name}-dev.apps.example.com"));
    let mut prod = parse(PROD)?;
    prod["hosts"] = hosts(format!("{name}.apps.example.com"));
    Ok([("customer.toml", customer.to_string()), ("dev.toml", dev.to_string()), ("prod.toml", prod.to_string())])
}

/// `acme-shop` → `Acme Shop`.
fn display_name(name: &str) -> String {
    name.split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
