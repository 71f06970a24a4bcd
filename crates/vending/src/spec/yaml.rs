//! YAML with positions, for the buildspec and appspec validators. Scalars are kept as written
//! (text and quoting style), so the validators can see what YAML 1.1 parsers (AWS's) would make of
//! them, not only what YAML 1.2 says.

use std::borrow::Cow;

use saphyr::{MarkedYaml, Scalar, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::{Event, Parser};

use crate::diag::{Diagnostic, Severity};
use crate::source::SourceFile;

pub type Node<'a> = MarkedYaml<'a>;

/// Parses one YAML document, or returns the scanner's error as a diagnostic (boxed: it is large,
/// and the parse succeeds far more often than not).
pub fn parse<'a>(source: &'a SourceFile) -> Result<Option<Node<'a>>, Box<Diagnostic>> {
    let mut loader: YamlLoader<'a, Node<'a>> = YamlLoader::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(&source.text);
    let result = parser.load(&mut loader, true);
    let error = result.err().or_else(|| loader.error().cloned());
    if let Some(error) = error {
        let marker = error.marker();
        let mut info = error.info().to_string();
        if source.line_text(marker.line()).contains('\t') && (info.contains("token") || info.contains("tab")) {
            info.push_str(" (a tab: YAML indents with spaces only)");
        }
        // A key without its `:` is noticed only at the next line that has one.
        if info.contains("expect ':'") || info.contains("mapping values are not allowed") {
            if let Some((line, col)) = key_without_colon(source, marker.line()) {
                let key = source.line_text(line).trim();
                return Err(Box::new(
                    at_marker(
                        Severity::Error,
                        source,
                        line,
                        col,
                        format!(
                            "YAML: `{key}` has no `:` after its key (the parser noticed at line {}: {info})",
                            marker.line()
                        ),
                    )
                    .with_help("write `key: value`, or `key:` with the value indented on the lines below"),
                ));
            }
        }
        return Err(Box::new(at_marker(Severity::Error, source, marker.line(), marker.col(), format!("YAML: {info}"))));
    }
    let mut docs = loader.into_documents();
    if docs.len() > 1 {
        return Err(Box::new(at_marker(
            Severity::Error,
            source,
            docs[1].span.start.line(),
            docs[1].span.start.col(),
            "the file holds more than one YAML document",
        )));
    }
    Ok(docs.pop())
}

/// Where a key without `:` starts (1-based line, 0-based column) when the parser reports it at
/// a later line: the earliest of the content lines without `:` just before `line`. None when the
/// line before has a `:` (then the parser's own position is the right one).
fn key_without_colon(source: &SourceFile, line: usize) -> Option<(usize, usize)> {
    let lines: Vec<&str> = source.text.lines().collect();
    let mut found = None;
    for index in (0..line.saturating_sub(1).min(lines.len())).rev() {
        let text = lines[index].trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if text.contains(':') || text.starts_with(['-', '[', '{', '|', '>', '"', '\'', '&', '*', '%']) {
            break;
        }
        let indent = lines[index].len() - lines[index].trim_start().len();
        found = Some((index + 1, indent));
    }
    found
}

pub fn at_marker(
    severity: Severity,
    source: &SourceFile,
    line: usize,
    col0: usize,
    message: impl Into<String>,
) -> Diagnostic {
    let mut d = Diagnostic::file(severity, source.path.clone(), message);
    d.line = line;
    d.column = col0 + 1;
    d.source_line = Some(crate::diag::redact_source_line(source.line_text(line)));
    d
}

pub fn node_diag(
    severity: Severity,
    source: &SourceFile,
    node: &Node<'_>,
    key: &str,
    message: impl Into<String>,
) -> Diagnostic {
    let d = at_marker(severity, source, node.span.start.line(), node.span.start.col(), message);
    if key.is_empty() {
        d
    } else {
        d.with_key(key)
    }
}

/// A scalar as written: its text and whether it was quoted.
pub fn raw_scalar<'n>(node: &'n Node<'_>) -> Option<(&'n str, ScalarStyle)> {
    match &node.data {
        YamlData::Representation(text, style, _) => Some((text.as_ref(), *style)),
        YamlData::Value(Scalar::String(text)) => Some((text.as_ref(), ScalarStyle::DoubleQuoted)),
        _ => None,
    }
}

/// The YAML 1.2 core-schema value of a scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
}

pub fn value<'n>(node: &'n Node<'_>) -> Option<Value<'n>> {
    match &node.data {
        YamlData::Representation(text, style, tag) => {
            let scalar = Scalar::parse_from_cow_and_metadata(
                Cow::Borrowed(text.as_ref()),
                *style,
                tag.as_ref().map(|t| Cow::Borrowed(t.as_ref())).as_ref(),
            )?;
            Some(match scalar {
                Scalar::Null => Value::Null,
                Scalar::Boolean(b) => Value::Bool(b),
                Scalar::Integer(i) => Value::Int(i),
                Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
                Scalar::String(s) => Value::Str(s),
            })
        }
        YamlData::Value(scalar) => Some(match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Int(*i),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(s) => Value::Str(Cow::Borrowed(s.as_ref())),
        }),
        YamlData::Tagged(_, inner) => value(inner),
        _ => None,
    }
}

/// A string scalar's text. Plain scalars that YAML reads as numbers or booleans are not strings.
pub fn as_str<'n>(node: &'n Node<'_>) -> Option<Cow<'n, str>> {
    match value(node)? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// A scalar's text whatever its type (`yes`, `12`, `abc`), for fields AWS reads as text.
pub fn scalar_text<'n>(node: &'n Node<'_>) -> Option<Cow<'n, str>> {
    match value(node)? {
        Value::Null => None,
        Value::Str(s) => Some(s),
        _ => raw_scalar(node).map(|(t, _)| Cow::Borrowed(t)),
    }
}

pub fn is_null(node: &Node<'_>) -> bool {
    matches!(value(node), Some(Value::Null))
}

/// Mapping entries with their keys as text, in file order.
pub fn entries<'n, 'a>(node: &'n Node<'a>) -> Option<Vec<(Cow<'n, str>, &'n Node<'a>, &'n Node<'a>)>> {
    match &node.data {
        YamlData::Mapping(map) => Some(map.iter().filter_map(|(k, v)| Some((scalar_text(k)?, k, v))).collect()),
        _ => None,
    }
}

/// A mapping's value for `key`.
pub fn child<'a>(node: &Node<'a>, key: &str) -> Option<Node<'a>> {
    entries(node).unwrap_or_default().into_iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n.clone())
}

pub fn sequence<'n, 'a>(node: &'n Node<'a>) -> Option<&'n [Node<'a>]> {
    match &node.data {
        YamlData::Sequence(items) => Some(items),
        _ => None,
    }
}

/// YAML 1.1 (the YAML of AWS's parsers) reads these plain scalars as booleans.
pub fn yaml11_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// Where the file uses YAML aliases (`*name`, also how a merge key `<<: *name` takes its
/// values), as 1-based line and 0-based column. The tree cannot show them: the loader replaces
/// each alias with a copy of its anchor's node.
pub fn aliases(source: &SourceFile) -> Vec<(usize, usize)> {
    Parser::new_from_str(&source.text)
        .map_while(Result::ok)
        .filter(|(event, _)| matches!(event, Event::Alias(_)))
        .map(|(_, span)| (span.start.line(), span.start.col()))
        .collect()
}

/// Checks a mapping's keys against the allowed ones; reports unknown keys with a suggestion.
pub fn check_keys(source: &SourceFile, node: &Node<'_>, path: &str, allowed: &[&str], out: &mut Vec<Diagnostic>) {
    unknown_keys(source, node, path, allowed, None, out);
}

/// `check_keys` for keys that the file's reader ignores: a warning that says why, with
/// `otherwise` as the help when no allowed key is close to the one written.
pub fn ignored_keys(
    source: &SourceFile,
    node: &Node<'_>,
    path: &str,
    allowed: &[&str],
    why: &str,
    otherwise: &str,
    out: &mut Vec<Diagnostic>,
) {
    unknown_keys(source, node, path, allowed, Some((why, otherwise)), out);
}

/// Unknown keys as errors, or as warnings saying why they are ignored (`ignored`: why, and the
/// help when no allowed key is close).
fn unknown_keys(
    source: &SourceFile,
    node: &Node<'_>,
    path: &str,
    allowed: &[&str],
    ignored: Option<(&str, &str)>,
    out: &mut Vec<Diagnostic>,
) {
    let Some(entries) = entries(node) else { return };
    for (key, key_node, _) in entries {
        // `<<` is YAML 1.1's merge key, which AWS's parsers honour; what it merges is not seen here.
        if allowed.contains(&key.as_ref()) || key == "<<" {
            continue;
        }
        let near =
            allowed.iter().copied().map(|a| (strsim::jaro_winkler(&key, a), a)).max_by(|a, b| a.0.total_cmp(&b.0));
        let help = match (near, ignored) {
            (Some((score, a)), _) if score > 0.8 => format!("did you mean `{a}`?"),
            (_, Some((_, otherwise))) => otherwise.to_string(),
            _ => format!("allowed here: {}", allowed.join(", ")),
        };
        let full = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
        let diagnostic = match ignored {
            None => node_diag(Severity::Error, source, key_node, &full, format!("unknown key `{key}`")),
            Some((why, _)) => {
                node_diag(Severity::Warning, source, key_node, &full, format!("`{key}` is ignored: {why}"))
            }
        };
        out.push(diagnostic.with_help(help));
    }
}

/// What the buildspec and appspec validators share: the file and the diagnostics found so far.
/// Each validator adds its own methods in its module.
pub(crate) struct Checker<'s, 'o> {
    pub source: &'s SourceFile,
    pub out: &'o mut Vec<Diagnostic>,
}

impl Checker<'_, '_> {
    pub fn error(&mut self, node: &Node<'_>, key: &str, message: impl Into<String>) {
        self.out.push(node_diag(Severity::Error, self.source, node, key, message));
    }

    pub fn warning(&mut self, node: &Node<'_>, key: &str, message: impl Into<String>) {
        self.out.push(node_diag(Severity::Warning, self.source, node, key, message));
    }

    pub fn note(&mut self, node: &Node<'_>, key: &str, message: impl Into<String>) {
        self.out.push(node_diag(Severity::Note, self.source, node, key, message));
    }

    pub fn list<'n, 'a>(&mut self, node: &'n Node<'a>, key: &str) -> &'n [Node<'a>] {
        match sequence(node) {
            Some(items) => items,
            None => {
                if !is_null(node) {
                    self.error(node, key, format!("`{key}` must be a list"));
                }
                &[]
            }
        }
    }
}
