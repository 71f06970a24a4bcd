//! The `Checker` every section reports through, and `File`, a loaded config file with the
//! positions of its keys.

use crate::config::load::{load_toml, Loaded};
use crate::config::schema::{allowed_keys, FileKind};
use crate::diag::{Diagnostic, Severity};
use crate::source::{Locator, SourceFile};

/// A loaded file and where its keys are.
pub(super) struct File<'a> {
    pub(super) source: &'a SourceFile,
    pub(super) locator: Locator,
}

/// Collects diagnostics; `error` and friends point at a key of a file.
pub(super) struct Checker {
    pub(super) diagnostics: Vec<Diagnostic>,
    errors_at_start: usize,
}

impl Checker {
    pub(super) fn new() -> Checker {
        Checker { diagnostics: Vec::new(), errors_at_start: 0 }
    }

    fn report(&mut self, severity: Severity, file: &File<'_>, path: &str, message: String, help: Option<String>) {
        let span = if file.locator.contains(path) { file.locator.value(path) } else { file.locator.key(path) };
        let mut d = Diagnostic::at(severity, file.source, span, message);
        if !path.is_empty() {
            d = d.with_key(path);
        }
        if let Some(help) = help {
            d = d.with_help(help);
        }
        self.diagnostics.push(d);
    }

    pub(super) fn error(&mut self, file: &File<'_>, path: &str, message: impl Into<String>) {
        self.report(Severity::Error, file, path, message.into(), None);
    }

    pub(super) fn error_help(
        &mut self,
        file: &File<'_>,
        path: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.report(Severity::Error, file, path, message.into(), Some(help.into()));
    }

    pub(super) fn warning(&mut self, file: &File<'_>, path: &str, message: impl Into<String>, help: impl Into<String>) {
        self.report(Severity::Warning, file, path, message.into(), Some(help.into()));
    }

    /// Reports what a shared rule found (`spec::hooks`), with the rule's own severity.
    pub(super) fn finding(&mut self, file: &File<'_>, path: &str, finding: crate::spec::hooks::Finding) {
        self.report(finding.severity, file, path, finding.message, finding.help);
    }

    pub(super) fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Marks the start of a unit (a customer) whose errors decide whether it enters the model.
    pub(super) fn begin(&mut self) {
        self.errors_at_start = self.errors();
    }

    pub(super) fn clean_since_begin(&self) -> bool {
        self.errors() == self.errors_at_start
    }

    pub(super) fn required<T>(&mut self, file: &File<'_>, path: &str, value: Option<T>, help: &str) -> Option<T> {
        if value.is_none() {
            self.error_help(file, path, format!("missing `{path}`"), help);
        }
        value
    }

    /// Applies a naming or format rule; the rule's sentence is completed with the value.
    pub(super) fn rule(
        &mut self,
        file: &File<'_>,
        path: &str,
        what: &str,
        value: &str,
        rule: impl Fn(&str) -> Result<(), String>,
    ) -> bool {
        match rule(value) {
            Ok(()) => true,
            Err(why) => {
                self.error(file, path, format!("{what} `{value}` {why}"));
                false
            }
        }
    }

    pub(super) fn range(
        &mut self,
        file: &File<'_>,
        path: &str,
        value: i64,
        range: std::ops::RangeInclusive<i64>,
        unit: &str,
    ) -> Option<u32> {
        if range.contains(&value) {
            u32::try_from(value).ok()
        } else {
            self.error(
                file,
                path,
                format!("`{path}` is {value}{unit}; allowed is {} to {}{unit}", range.start(), range.end()),
            );
            None
        }
    }
}

pub(super) fn load<'a, T: serde::de::DeserializeOwned>(
    source: &'a SourceFile,
    kind: FileKind,
    checker: &mut Checker,
) -> (Option<T>, File<'a>) {
    let known = move |path: &str| allowed_keys(kind, path);
    let Loaded { raw, locator } = load_toml::<T>(source, &known, &mut checker.diagnostics);
    (raw, File { source, locator })
}
