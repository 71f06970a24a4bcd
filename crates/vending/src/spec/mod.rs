//! Validators for buildspec and appspec files, generated or hand-written.

pub mod appspec;
pub mod buildspec;
pub mod hooks;
pub mod yaml;

use crate::diag::{Diagnostic, Severity};
use crate::source::SourceFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    Buildspec,
    Appspec,
}

impl std::str::FromStr for SpecKind {
    type Err = String;
    fn from_str(s: &str) -> Result<SpecKind, String> {
        match s {
            "buildspec" => Ok(SpecKind::Buildspec),
            "appspec" => Ok(SpecKind::Appspec),
            other => Err(format!("unknown spec kind `{other}`: use buildspec or appspec")),
        }
    }
}

/// Checks one spec file; the kind is detected from its content (then its name) unless given.
pub fn check_spec(source: &SourceFile, kind: Option<SpecKind>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            out.push(Diagnostic::file(Severity::Error, source.path.clone(), "the file is empty"));
            return out;
        }
        Err(d) => {
            out.push(*d);
            return out;
        }
    };
    let kind = kind.or_else(|| detect(source, &root));
    match kind {
        Some(SpecKind::Buildspec) => buildspec::validate(source, &root, &mut out),
        Some(SpecKind::Appspec) => appspec::validate(source, &root, &mut out),
        None => out.push(
            Diagnostic::file(
                Severity::Error,
                source.path.clone(),
                "cannot tell whether this is a buildspec or an appspec",
            )
            .with_help("pass --kind buildspec or --kind appspec"),
        ),
    }
    out
}

/// A spec file parsed after it validated as `kind`: readers (`buildspec::read`, `appspec::read`)
/// start from here, so nothing invalid is ever run.
pub fn parse_valid<'a>(source: &'a SourceFile, kind: SpecKind) -> Result<yaml::Node<'a>, Vec<Diagnostic>> {
    let diagnostics = check_spec(source, Some(kind));
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(diagnostics);
    }
    match yaml::parse(source) {
        Ok(Some(root)) => Ok(root),
        Ok(None) => Err(vec![Diagnostic::file(Severity::Error, source.path.clone(), "the file is empty")]),
        Err(d) => Err(vec![*d]),
    }
}

fn detect(source: &SourceFile, root: &yaml::Node<'_>) -> Option<SpecKind> {
    let keys: Vec<String> =
        yaml::entries(root).unwrap_or_default().into_iter().map(|(k, _, _)| k.into_owned()).collect();
    let has = |k: &str| keys.iter().any(|key| key == k);
    if has("phases") || has("batch") {
        return Some(SpecKind::Buildspec);
    }
    if has("os") || has("hooks") || has("files") || has("Resources") {
        return Some(SpecKind::Appspec);
    }
    let name = source.path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.starts_with("buildspec") {
        Some(SpecKind::Buildspec)
    } else if name.starts_with("appspec") {
        Some(SpecKind::Appspec)
    } else {
        None
    }
}
