//! The keys each table of the config files allows, for "unknown key" errors that say what would
//! have been accepted. They are read from the raw serde structs themselves, so there is no list
//! to keep by hand: a derived `Deserialize` hands its field names (as written in the file, after
//! `rename`) to the deserializer's `deserialize_struct`, and `Tracer` is a deserializer that
//! records them, descending into every field, list element and map value.
//!
//! Values that serde reads through `deserialize_any` (the untagged enums: an id or a lookup
//! table) cannot be traced; they are leaves here, and their lookup tables refuse unknown keys
//! themselves (`deny_unknown_fields`).

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::de::value::{Error, StrDeserializer};
use serde::de::{DeserializeOwned, Error as _};
use serde::de::{DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use crate::config::raw::{RawCustomer, RawEnv, RawPlatform};

/// Which file a key path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Platform,
    Customer,
    Environment,
}

/// The shape of a raw struct as serde reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Shape {
    /// A table of fixed keys, in declaration order.
    Struct(Vec<(&'static str, Shape)>),
    /// A table of any keys, all with values of one shape.
    Map(Box<Shape>),
    /// A list.
    Seq(Box<Shape>),
    Bool,
    Integer,
    Number,
    Text,
    /// A value serde reads without saying its shape (an untagged enum: an id or a lookup table).
    #[default]
    Leaf,
}

impl Shape {
    /// The shape at a key path (`deploy.hooks.ApplicationStop[]`: array elements written `[]`).
    pub fn at(&self, path: &str) -> Option<&Shape> {
        let mut shape = self;
        for segment in path.split('.').filter(|s| !s.is_empty()) {
            let (key, lists) = segment.split_once('[').map_or((segment, ""), |(k, rest)| (k, rest));
            shape = match shape {
                Shape::Struct(fields) => fields.iter().find(|(name, _)| *name == key).map(|(_, s)| s)?,
                Shape::Map(values) => values,
                _ => return None,
            };
            for _ in lists.matches(']') {
                shape = match shape {
                    Shape::Seq(items) => items,
                    _ => return None,
                };
            }
        }
        Some(shape)
    }

    /// The keys of a table of fixed keys; empty for anything else.
    pub fn keys(&self) -> Vec<&'static str> {
        match self {
            Shape::Struct(fields) => fields.iter().map(|(name, _)| *name).collect(),
            _ => Vec::new(),
        }
    }
}

/// The shape of a raw struct.
pub fn shape_of<T: DeserializeOwned>() -> Shape {
    // A value that can only be read through `deserialize_any` fails the whole trace; its path is
    // remembered and the next attempt leaves that key out (every raw field is optional).
    let opaque = RefCell::new(BTreeSet::new());
    loop {
        let mut shape = Shape::Leaf;
        let known = opaque.borrow().len();
        let traced = T::deserialize(Tracer { out: &mut shape, path: String::new(), opaque: &opaque });
        if traced.is_ok() || opaque.borrow().len() == known {
            return shape;
        }
    }
}

/// The shape of a file of the given kind.
pub fn file_shape(kind: FileKind) -> Shape {
    match kind {
        FileKind::Platform => shape_of::<RawPlatform>(),
        FileKind::Customer => shape_of::<RawCustomer>(),
        FileKind::Environment => shape_of::<RawEnv>(),
    }
}

/// A JSON Schema (draft 07) of a file of the given kind, for editors with TOML support (taplo,
/// Even Better TOML): every table's keys, no others, and each value's type where serde says it.
/// Values read as an id or a lookup table are left open: `validate` checks them.
pub fn json_schema(kind: FileKind) -> serde_json::Value {
    let (title, file) = match kind {
        FileKind::Platform => ("platform.toml", "customers/platform.toml"),
        FileKind::Customer => ("customer.toml", "customers/<customer>/customer.toml"),
        FileKind::Environment => ("environment file", "customers/<customer>/<env>.toml"),
    };
    let mut schema = to_json_schema(&file_shape(kind));
    if let serde_json::Value::Object(object) = &mut schema {
        object.insert("$schema".into(), "http://json-schema.org/draft-07/schema#".into());
        object.insert("title".into(), format!("vending {title}").into());
        object.insert(
            "description".into(),
            format!(
                "{file}; generated from the config types by `cargo xtask generate`: README.md, \"Config reference\""
            )
            .into(),
        );
    }
    schema
}

fn to_json_schema(shape: &Shape) -> serde_json::Value {
    use serde_json::json;
    match shape {
        Shape::Struct(fields) => {
            let properties: serde_json::Map<String, serde_json::Value> =
                fields.iter().map(|(name, field)| (name.to_string(), to_json_schema(field))).collect();
            json!({ "type": "object", "properties": properties, "additionalProperties": false })
        }
        Shape::Map(values) => json!({ "type": "object", "additionalProperties": to_json_schema(values) }),
        Shape::Seq(item) => json!({ "type": "array", "items": to_json_schema(item) }),
        Shape::Bool => json!({ "type": "boolean" }),
        Shape::Integer => json!({ "type": "integer" }),
        Shape::Number => json!({ "type": "number" }),
        Shape::Text => json!({ "type": "string" }),
        Shape::Leaf => json!({}),
    }
}

/// The JSON Schema files `generate` writes and `validate` checks, by path.
pub fn schema_files() -> Vec<(std::path::PathBuf, String)> {
    [
        (FileKind::Platform, "schema/platform.schema.json"),
        (FileKind::Customer, "schema/customer.schema.json"),
        (FileKind::Environment, "schema/environment.schema.json"),
    ]
    .into_iter()
    .map(|(kind, path)| {
        let text = serde_json::to_string_pretty(&json_schema(kind)).expect("plain data serializes") + "\n";
        (std::path::PathBuf::from(path), text)
    })
    .collect()
}

/// Allowed keys under `path` (array indices written `[]`), or empty when the path is not a table
/// of fixed keys.
pub fn allowed_keys(kind: FileKind, path: &str) -> Vec<&'static str> {
    file_shape(kind).at(path).map(Shape::keys).unwrap_or_default()
}

/// A deserializer that answers every request with a made-up value of the requested kind and
/// writes down the shape it was asked for.
struct Tracer<'t> {
    out: &'t mut Shape,
    path: String,
    opaque: &'t RefCell<BTreeSet<String>>,
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        self.opaque.borrow_mut().insert(self.path);
        Err(Error::custom("untraceable"))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Bool;
        visitor.visit_bool(false)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Integer;
        visitor.visit_i64(0)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Integer;
        visitor.visit_u64(0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Number;
        visitor.visit_f64(0.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Text;
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Text;
        visitor.visit_str("")
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut item = Shape::Leaf;
        let value =
            visitor.visit_seq(One { out: Some(&mut item), path: format!("{}[]", self.path), opaque: self.opaque });
        *self.out = Shape::Seq(Box::new(item));
        value
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut item = Shape::Leaf;
        let value =
            visitor.visit_map(One { out: Some(&mut item), path: format!("{}.*", self.path), opaque: self.opaque });
        *self.out = Shape::Map(Box::new(item));
        value
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let path =
            |field: &str| if self.path.is_empty() { field.to_string() } else { format!("{}.{field}", self.path) };
        let skip: Vec<bool> = fields.iter().map(|f| self.opaque.borrow().contains(&path(f))).collect();
        let paths: Vec<String> = fields.iter().map(|f| path(f)).collect();
        let mut entries: Vec<(&'static str, Shape)> = fields.iter().map(|f| (*f, Shape::Leaf)).collect();
        let pending =
            entries.iter_mut().zip(paths).zip(skip).filter(|(_, skip)| !skip).map(|(entry, _)| entry).collect();
        let value = visitor.visit_map(Fields { pending, current: None, opaque: self.opaque });
        *self.out = Shape::Struct(entries);
        value
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Integer;
        visitor.visit_i32(0)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Integer;
        visitor.visit_u32(0)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Integer;
        visitor.visit_u16(0)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Shape::Number;
        visitor.visit_f32(0.0)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i128 u8 u128 char bytes byte_buf unit unit_struct tuple tuple_struct enum
        identifier ignored_any
    }
}

/// A list of one element, or a map of one entry (key `""`), whose shape is traced.
struct One<'t> {
    out: Option<&'t mut Shape>,
    path: String,
    opaque: &'t RefCell<BTreeSet<String>>,
}

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let Some(out) = self.out.take() else { return Ok(None) };
        seed.deserialize(Tracer { out, path: self.path.clone(), opaque: self.opaque }).map(Some)
    }
}

impl<'de> MapAccess<'de> for One<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.out.is_none() {
            return Ok(None);
        }
        let key: StrDeserializer<'_, Error> = "".into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let out = self.out.take().ok_or_else(|| Error::custom("no value"))?;
        seed.deserialize(Tracer { out, path: self.path.clone(), opaque: self.opaque })
    }
}

/// A struct's fields, each given once with a traced value.
struct Fields<'t> {
    pending: std::collections::VecDeque<(&'t mut (&'static str, Shape), String)>,
    current: Option<(&'t mut Shape, String)>,
    opaque: &'t RefCell<BTreeSet<String>>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((entry, path)) = self.pending.pop_front() else { return Ok(None) };
        let key: StrDeserializer<'_, Error> = entry.0.into_deserializer();
        self.current = Some((&mut entry.1, path));
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (out, path) = self.current.take().ok_or_else(|| Error::custom("no key"))?;
        seed.deserialize(Tracer { out, path, opaque: self.opaque })
    }
}
