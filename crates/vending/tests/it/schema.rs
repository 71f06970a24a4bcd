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

/// The sample config files: name, kind and parsed value.
fn sample_configs() -> Vec<(String, FileKind, toml::Value)> {
    let mut out = Vec::new();
    for (path, bytes) in crate::sample_tree() {
        let name = path.to_string_lossy().into_owned();
        let kind = match () {
            _ if name.ends_with("platform.toml") => FileKind::Platform,
            _ if name.ends_with("customer.toml") => FileKind::Customer,
            _ if name.ends_with(".toml") => FileKind::Environment,
            _ => continue,
        };
        out.push((name, kind, toml::from_str(std::str::from_utf8(&bytes).unwrap()).unwrap()));
    }
    out
}

#[test]
fn every_key_of_the_sample_configs_is_accepted() {
    let mut checked = 0;
    for (name, kind, table) in sample_configs() {
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

/// Whether `value` fits `schema`, in the subset of JSON Schema that `json_schema` writes: the
/// path of the first place it does not.
fn fits(schema: &serde_json::Value, value: &toml::Value, path: &str) -> Result<(), String> {
    let shown = match value {
        toml::Value::String(text) => format!("{text:?}"),
        other => format!("{other:?}"),
    };
    let wrong = || Err(format!("{path}: {shown} is not {}", schema["type"]));
    match (schema["type"].as_str(), value) {
        (None, _) => Ok(()),
        (Some("object"), toml::Value::Table(table)) => table.iter().try_for_each(|(key, value)| {
            let path = format!("{path}.{key}");
            match (schema["properties"].get(key), &schema["additionalProperties"]) {
                (Some(property), _) => fits(property, value, &path),
                (None, serde_json::Value::Bool(false)) => Err(format!("{path}: not allowed")),
                (None, additional) => fits(additional, value, &path),
            }
        }),
        (Some("array"), toml::Value::Array(items)) => {
            items.iter().enumerate().try_for_each(|(i, v)| fits(&schema["items"], v, &format!("{path}[{i}]")))
        }
        (Some("boolean"), toml::Value::Boolean(_))
        | (Some("integer"), toml::Value::Integer(_))
        | (Some("number"), toml::Value::Integer(_) | toml::Value::Float(_))
        | (Some("string"), toml::Value::String(_)) => Ok(()),
        _ => wrong(),
    }
}

/// The JSON Schema and `validate` agree: the samples fit it, and what `validate` refuses as an
/// unknown key or a wrong type the schema refuses too.
#[test]
fn the_json_schema_agrees_with_validate() {
    use vending::config::schema::json_schema;
    let samples = sample_configs();
    assert!(samples.len() >= 7, "{} sample files", samples.len());
    for (name, kind, value) in samples {
        fits(&json_schema(kind), &value, &name).unwrap_or_else(|e| panic!("a sample does not fit its schema: {e}"));
    }
    let schema = json_schema(FileKind::Environment);
    for (text, refused) in [
        ("production = false\n[health_check]\nintervall = 30\n", ".health_check.intervall: not allowed"),
        ("production = \"no\"\n", ".production: \"no\" is not \"boolean\""),
        ("production = false\n[capacity]\nmin = \"one\"\n", ".capacity.min: \"one\" is not \"integer\""),
    ] {
        let value: toml::Value = toml::from_str(text).unwrap();
        assert_eq!(fits(&schema, &value, ""), Err(refused.to_string()), "{text}");
        let source = vending::SourceFile::new("dev.toml", text);
        let mut diagnostics = Vec::new();
        let known = |path: &str| allowed_keys(FileKind::Environment, path);
        vending::config::load::load_toml::<RawEnv>(&source, &known, &mut diagnostics);
        assert!(diagnostics.iter().any(|d| d.is_error()), "validate refuses it too: {text}");
    }
}
