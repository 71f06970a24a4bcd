//! Diagnostics: what is wrong, where (file, line, column, key) and what to do; and how they print.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;

use serde::Serialize;

use crate::source::SourceFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Worth knowing, harmless: counted neither as an error nor as a warning.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Path relative to the project root.
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: usize,
    pub column: usize,
    /// The offending key as a dotted path, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic about a whole file, or a file that does not exist.
    pub fn file(severity: Severity, file: impl Into<PathBuf>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity,
            file: file.into(),
            line: 0,
            column: 0,
            key: None,
            message: message.into(),
            help: None,
            source_line: None,
        }
    }

    pub fn at(
        severity: Severity,
        source: &SourceFile,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut d = Diagnostic::file(severity, source.path.clone(), message);
        if let Some(span) = span {
            let (line, column) = source.line_col(span.start);
            d.line = line;
            d.column = column;
            d.source_line = Some(redact_source_line(source.line_text(line)));
        }
        d
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Diagnostic {
        self.key = Some(key.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn location(&self) -> String {
        if self.line == 0 {
            self.file.display().to_string()
        } else {
            format!("{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }

    /// `error: msg` / `  --> file:line:col` / the source line with a caret / `  = help: ...`.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(out, "{label}: {}", self.message);
        let _ = writeln!(out, "  --> {}", self.location());
        if let Some(line) = &self.source_line {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            let caret_pad: String =
                line.chars().take(self.column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{number} | {line}");
            let _ = writeln!(out, "{pad} | {caret_pad}^");
        }
        if let Some(key) = &self.key {
            let _ = writeln!(out, "  = key: {key}");
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }

    /// A GitHub Actions workflow command, which GitHub shows as an annotation on the pull request.
    pub fn render_github(&self) -> String {
        let command = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        let mut props = format!("file={}", escape_property(&self.file.display().to_string()));
        if self.line > 0 {
            let _ = write!(props, ",line={},col={}", self.line, self.column);
        }
        if let Some(key) = &self.key {
            let _ = write!(props, ",title={}", escape_property(key));
        }
        let mut message = self.message.clone();
        if let Some(help) = &self.help {
            let _ = write!(message, "\nhelp: {help}");
        }
        format!("::{command} {props}::{}", escape_data(&message))
    }
}

/// Masks the password of any `scheme://user:password@host` in a quoted source line, so an error
/// about a URL with credentials does not print them again.
pub fn redact_source_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        match url.split_once('@').filter(|(userinfo, _)| !userinfo.contains('/')) {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                out.push_str(&format!("{user}:***@{host}"));
            }
            _ => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Sorts diagnostics by file, then position, so output is stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message)));
}

// Escaping as GitHub's toolkit does it (`@actions/core` command.ts).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The candidate closest to a word that was not found, when one is close enough to be what was
/// meant (Jaro-Winkler above 0.8).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}
