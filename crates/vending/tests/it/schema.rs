//! The allowed keys (`config::schema`, which "unknown key" errors quote) come from the raw
//! structs that really read the files: each table path maps to the struct that reads it, every
//! key of the sample configs is accepted, and an unknown key still gets its suggestion.

use serde::de::DeserializeOwned;
use vending::config::raw::*;
use vending::config::schema::{allowed_keys, file_shape, shape_of, FileKind, Shape};

fn check<T: DeserializeOwned>(kind: FileKind, path: &str) {
    let fields = shape_of::<T>().keys();
    assert!(!fields.is_empty(), "{} is not a struct with named fields", std::any::type_name::<T>());
    assert_eq!(allowed_keys(kind, path), fields, "{kind:?} `{path}`: {}", std::any::type_name::<T>());
}

#[test]
fn allowed_keys_are_the_raw_structs_fields() {
    use FileKind::*;
    check::<RawPlatform>(Platform, "");
    check::<RawNaming>(Platform, "naming");
    check::<RawAws>(Platform, "aws");
    check::<RawNetwork>(Platform, "network");
    check::<RawSharedAlb>(Platform, "shared_alb");
    check::<RawState>(Platform, "state");
    check::<RawPlatformAmi>(Platform, "ami");
    check::<RawIam>(Platform, "iam");
    check::<RawCustomer>(Customer, "");
    check::<RawSoftware>(Customer, "software");
    check::<RawBuild>(Customer, "build");
    check::<RawPhases>(Customer, "build.phases");
    check::<RawPhase>(Customer, "build.phases.install");
    check::<RawArtifacts>(Customer, "build.artifacts");
    check::<RawDeploy>(Customer, "deploy");
    check::<RawPermission>(Customer, "deploy.permissions[]");
    check::<RawHook>(Customer, "deploy.hooks.ApplicationStart[]");
    check::<RawCustomerAmi>(Customer, "ami");
    check::<RawEnv>(Environment, "");
    check::<RawDatabase>(Environment, "database");
    check::<RawEnvBuild>(Environment, "build");
    for kind in [Platform, Customer] {
        check::<RawLayer>(kind, "defaults");
        check::<RawCapacity>(kind, "defaults.capacity");
        check::<RawScaling>(kind, "defaults.scaling");
        check::<RawHealthCheck>(kind, "defaults.health_check");
        check::<RawDeployment>(kind, "defaults.deployment");
    }
    check::<RawCapacity>(Environment, "capacity");
    check::<RawScaling>(Environment, "scaling");
    check::<RawHealthCheck>(Environment, "health_check");
    check::<RawDeployment>(Environment, "deployment");
    // `rename`d fields are known by the name in the file.
    assert!(allowed_keys(Customer, "software").contains(&"ref"));
    assert!(allowed_keys(Customer, "deploy.permissions[]").contains(&"type"));
    // Maps and values have no fixed keys.
    assert_eq!(allowed_keys(Platform, "tags"), Vec::<&str>::new());
    assert_eq!(allowed_keys(Environment, "hosts"), Vec::<&str>::new());
}

/// Every key of a table read as a struct is one of its keys; returns how many were checked.
fn accepted(shape: &Shape, value: &toml::Value, path: &str) -> usize {
    match (shape, value) {
        (Shape::Struct(fields), toml::Value::Table(table)) => table
            .iter()
            .map(|(key, value)| {
                let field = fields.iter().find(|(name, _)| name == key);
                let (_, field) = field.unwrap_or_else(|| panic!("`{key}` under `{path}` is not accepted"));
                1 + accepted(field, value, &format!("{path}.{key}"))
            })
            .sum(),
        (Shape::Map(values), toml::Value::Table(table)) => {
            table.iter().map(|(key, value)| accepted(values, value, &format!("{path}.{key}"))).sum()
        }
        (Shape::Seq(item), toml::Value::Array(items)) => {
            items.iter().map(|v| accepted(item, v, &format!("{path}[]"))).sum()
        }
        _ => 0,
    }
}

#[test]
fn every_key_of_the_sample_configs_is_accepted() {
    let mut checked = 0;
    for (path, bytes) in crate::sample_tree() {
        let name = path.to_string_lossy();
        let kind = match () {
            _ if name.ends_with("platform.toml") => FileKind::Platform,
            _ if name.ends_with("customer.toml") => FileKind::Customer,
            _ if name.ends_with(".toml") => FileKind::Environment,
            _ => continue,
        };
        let table: toml::Value = toml::from_str(std::str::from_utf8(&bytes).unwrap()).unwrap();
        checked += accepted(&file_shape(kind), &table, &name);
    }
    assert!(checked > 100, "only {checked} keys checked");
}

#[test]
fn an_unknown_key_gets_its_suggestion() {
    let source = vending::SourceFile::new("dev.toml", "production = false\n[health_check]\nintervall = 30\n");
    let mut diagnostics = Vec::new();
    let known = |path: &str| allowed_keys(FileKind::Environment, path);
    vending::config::load::load_toml::<RawEnv>(&source, &known, &mut diagnostics);
    let text = crate::diagnostics_text(&diagnostics);
    assert_eq!(
        text,
        "dev.toml:3:1: error: unknown key `intervall` [health_check.intervall]\n    help: did you mean `interval`?\n"
    );
}
