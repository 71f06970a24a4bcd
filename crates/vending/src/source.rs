//! Source files as read from disk, and the map from a key path to its place in the file.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One file's text, kept so that diagnostics can quote the offending line.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the project root, as shown to users.
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
    /// Where the first byte that is not UTF-8 was (in `text`, which has U+FFFD there).
    pub invalid_utf8: Option<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        SourceFile { path: path.into(), text, line_starts, invalid_utf8: None }
    }

    /// A file as read from disk: bytes that are not UTF-8 become U+FFFD, and the first one's
    /// place is kept so that the loader reports it with its line and column.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: &[u8]) -> SourceFile {
        match std::str::from_utf8(bytes) {
            Ok(text) => SourceFile::new(path, text),
            Err(error) => {
                let valid = error.valid_up_to();
                let mut file = SourceFile::new(path, String::from_utf8_lossy(bytes).into_owned());
                // The lossy text equals the bytes up to the first invalid one.
                file.invalid_utf8 = Some(valid);
                file
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else { return "" };
        let end = self.line_starts.get(line).map_or(self.text.len(), |&next| next);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }
}

/// Where each key of a structured file (TOML or YAML) sits, by dotted path:
/// `health_check.interval`, `deploy.hooks.ApplicationStop[0].timeout`.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    keys: HashMap<String, Range<usize>>,
    values: HashMap<String, Range<usize>>,
}

impl Locator {
    pub fn insert(&mut self, path: String, key: Option<Range<usize>>, value: Range<usize>) {
        if let Some(key) = key {
            self.keys.insert(path.clone(), key);
        }
        self.values.insert(path, value);
    }

    /// The span of a key's value, or of the nearest enclosing table that exists in the file.
    pub fn value(&self, path: &str) -> Option<Range<usize>> {
        self.nearest(path, &self.values)
    }

    /// The span of the key itself (for "unknown key" and "missing key" errors).
    pub fn key(&self, path: &str) -> Option<Range<usize>> {
        self.keys.get(path).cloned().or_else(|| self.value(path))
    }

    /// The most specific key whose value contains a byte offset.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        self.values
            .iter()
            .filter(|(_, span)| span.start <= offset && offset < span.end.max(span.start + 1))
            .min_by_key(|(path, span)| (span.end - span.start, std::cmp::Reverse(path.len())))
            .map(|(path, _)| path.clone())
    }

    pub fn contains(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }

    fn nearest(&self, path: &str, map: &HashMap<String, Range<usize>>) -> Option<Range<usize>> {
        let mut path = path;
        loop {
            if let Some(span) = map.get(path) {
                return Some(span.clone());
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// Joins a parent path and a key the way `Locator` spells paths.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}
