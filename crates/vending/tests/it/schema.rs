//! The table of allowed keys (`config::schema`, which "unknown key" errors quote) against the raw
//! structs that really read the files: the field names serde asks for, key for key.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use vending::config::raw::*;
use vending::config::schema::{allowed_keys, FileKind};

/// The error that carries a struct's field names out of `Probe`.
#[derive(Debug)]
struct Fields(Vec<&'static str>);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl serde::de::Error for Fields {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fields(Vec::new())
    }
}

/// A deserializer that answers nothing: a derived `Deserialize` of a struct asks it for the
/// struct with the list of its fields (as named in the file, after `rename`), which it returns.
struct Probe;

impl<'de> serde::Deserializer<'de> for Probe {
    type Error = Fields;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(Vec::new()))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields.to_vec()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<T: DeserializeOwned>() -> BTreeSet<&'static str> {
    let Err(Fields(fields)) = T::deserialize(Probe) else { panic!("the probe answers nothing") };
    assert!(!fields.is_empty(), "{} is not a struct with named fields", std::any::type_name::<T>());
    fields.into_iter().collect()
}

fn check<T: DeserializeOwned>(kind: FileKind, path: &str) {
    let table: BTreeSet<&str> = allowed_keys(kind, path).into_iter().collect();
    assert_eq!(table, fields_of::<T>(), "{kind:?} `{path}`: config::schema and {}", std::any::type_name::<T>());
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
}
