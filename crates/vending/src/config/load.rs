//! TOML file → raw struct, with every unknown key and the first type error reported by position,
//! and a `Locator` so later checks can point at the key they complain about.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diag::{Diagnostic, Severity};
use crate::source::{join_index, join_key, Locator, SourceFile};

/// A parsed file: the raw struct (absent when the file could not be read as that struct), where
/// its keys are, and the problems found.
pub struct Loaded<T> {
    pub raw: Option<T>,
    pub locator: Locator,
}

/// For a "duplicate key" error: the key and the line that set it first (the nearest earlier
/// `key =` or `[key]` of the same table, looking back to the table's header).
fn duplicate_of(source: &SourceFile, message: &str, span: Option<Range<usize>>) -> Option<(String, usize)> {
    if !message.starts_with("duplicate key") {
        return None;
    }
    let span = span?;
    let key = source.text.get(span.clone())?.trim().trim_matches('"').to_string();
    let (line, _) = source.line_col(span.start);
    let header = source.line_text(line).trim_start().starts_with('[');
    (1..line)
        .rev()
        .map(|n| (n, source.line_text(n).trim()))
        .find_map(|(n, text)| {
            let table = text.trim_start_matches('[').trim_end_matches(']').trim();
            if header {
                return (text.starts_with('[') && table == key).then_some(n);
            }
            if text.starts_with('[') {
                return Some(0);
            }
            let name = text.split('=').next()?.trim().trim_matches('"');
            (text.contains('=') && name == key).then_some(n)
        })
        .filter(|n| *n > 0)
        .map(|n| (key, n))
}

pub fn load_toml<T: DeserializeOwned>(
    source: &SourceFile,
    known_keys: &dyn Fn(&str) -> Vec<&'static str>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Loaded<T> {
    let mut locator = Locator::default();
    if let Some(offset) = source.invalid_utf8 {
        diagnostics.push(
            Diagnostic::at(
                Severity::Error,
                source,
                Some(offset..offset + 1),
                "the file is not UTF-8 text from here on",
            )
            .with_help(
                "TOML files are UTF-8: save it as UTF-8 (the rest of the file is checked as if the bad bytes were `�`)",
            ),
        );
    }
    let (table, errors) = DeTable::parse_recoverable(&source.text);
    if !errors.is_empty() {
        for error in errors {
            let message = first_line(error.message());
            let d = match duplicate_of(source, message, error.span()) {
                Some((key, line)) => {
                    Diagnostic::at(Severity::Error, source, error.span(), format!("duplicate key `{key}`"))
                        .with_help(format!("it is first set on line {line}; keep one of the two"))
                }
                None => Diagnostic::at(Severity::Error, source, error.span(), format!("TOML syntax: {message}"))
                    .with_help("fix the TOML syntax; see https://toml.io/en/v1.0.0"),
            };
            diagnostics.push(d);
        }
        return Loaded { raw: None, locator };
    }
    index_table(&mut locator, "", table.get_ref());

    let mut unknown = Vec::new();
    let deserializer = toml::de::Deserializer::from(table);
    let result: Result<T, _> = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(ignored_path(&path));
    });
    for path in unknown {
        let (parent, key) = match path.rfind('.') {
            Some(cut) => (&path[..cut], &path[cut + 1..]),
            None => ("", path.as_str()),
        };
        let allowed = known_keys(strip_indices(parent).as_str());
        let mut d = Diagnostic::at(Severity::Error, source, locator.key(&path), format!("unknown key `{key}`"))
            .with_key(path.clone());
        let suggestion = crate::diag::did_you_mean(key, allowed.iter().map(|a| &**a));
        d = match (suggestion, allowed.is_empty()) {
            (Some(candidate), _) => d.with_help(format!("did you mean `{candidate}`?")),
            (None, false) => d.with_help(format!("allowed here: {}", allowed.join(", "))),
            (None, true) => d.with_help("remove it"),
        };
        diagnostics.push(d);
    }
    match result {
        Ok(raw) => Loaded { raw: Some(raw), locator },
        Err(error) => {
            let message = plain_serde_message(first_line(error.message()));
            let mut d = Diagnostic::at(Severity::Error, source, error.span(), message);
            if let Some(path) = error.span().and_then(|span| locator.path_at(span.start)) {
                d = d.with_key(path);
            }
            diagnostics.push(d);
            Loaded { raw: None, locator }
        }
    }
}

/// serde speaks Rust (`i64`, `a sequence`); users wrote TOML.
fn plain_serde_message(message: &str) -> String {
    message
        .replace("expected i64", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a table")
        .replace("invalid type: ", "wrong type: ")
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

/// serde_ignored prints array elements as `?.key` with a numeric segment; we spell them `[i]`.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join_index(&ignored_path(parent), *index),
        Path::Map { parent, key } => join_key(&ignored_path(parent), key),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// `deploy.hooks.ApplicationStop[0]` → `deploy.hooks.*[]`: the shape used to look up allowed keys.
fn strip_indices(path: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

fn index_table(locator: &mut Locator, parent: &str, table: &DeTable<'_>) {
    for (key, value) in table.iter() {
        let path = join_key(parent, key.get_ref());
        index_value(locator, &path, Some(key.span()), value);
    }
}

fn index_value(locator: &mut Locator, path: &str, key: Option<Range<usize>>, value: &Spanned<DeValue<'_>>) {
    locator.insert(path.to_string(), key, value.span());
    match value.get_ref() {
        DeValue::Table(table) => index_table(locator, path, table),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                index_value(locator, &join_index(path, i), None, item);
            }
        }
        _ => {}
    }
}

/// Finds a key in a TOML file by parsing it again; for the rare fleet-wide error that needs a
/// position after the per-file pass is over.
pub fn locate(source: &SourceFile, path: &str) -> Option<Range<usize>> {
    let table = DeTable::parse(&source.text).ok()?;
    let mut locator = Locator::default();
    index_table(&mut locator, "", table.get_ref());
    locator.value(path)
}
