//! The one place that decides between writing generated files and checking them. In check mode a
//! stale, missing or left-over file is a diagnostic that names the command to run.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use vending::render::GeneratedFile;
use vending::{Diagnostic, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    Check,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub written: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    pub unchanged: usize,
    pub problems: Vec<Diagnostic>,
}

/// Brings the files on disk in line with `files` (or reports how they differ).
/// `prune` lists the files on disk that no generation produces any more; `None` skips that part
/// (when only some customers were rendered, the others' files are not ours to judge).
pub fn sync(root: &Path, files: &[GeneratedFile], prune: Option<&[PathBuf]>, mode: Mode) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    // Reading and comparing thousands of files is spread over the cores; writing stays in order.
    let current = crate::parallel::map(files, |file| match fs::read_to_string(root.join(&file.path)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.path.display())),
    });
    for (file, current) in files.iter().zip(current) {
        let current = current?;
        if current.as_deref() == Some(file.contents.as_str()) {
            outcome.unchanged += 1;
            continue;
        }
        match mode {
            Mode::Write => {
                let full = root.join(&file.path);
                vending::project::write_atomic(&full, file.contents.as_bytes())
                    .with_context(|| format!("cannot write {}", file.path.display()))?;
                outcome.written.push(file.path.clone());
            }
            Mode::Check => outcome.problems.push(stale(file, current.as_deref())),
        }
    }
    for path in prune.unwrap_or_default() {
        match mode {
            Mode::Write => {
                fs::remove_file(root.join(path)).with_context(|| format!("cannot remove {}", path.display()))?;
                outcome.removed.push(path.clone());
            }
            Mode::Check => outcome.problems.push(
                Diagnostic::file(Severity::Error, path.clone(), "no customer generates this file any more")
                    .with_help("run `cargo xtask generate`, which removes it"),
            ),
        }
    }
    Ok(outcome)
}

/// Files on disk under the generated folders that `files` does not produce, leaving alone the
/// paths in `keep` (those of customers that failed validation: they are not judged).
pub fn leftovers(existing: &[PathBuf], files: &[GeneratedFile], keep: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let produced: BTreeSet<&PathBuf> = files.iter().map(|f| &f.path).collect();
    existing.iter().filter(|p| !produced.contains(p) && !keep.contains(*p)).cloned().collect()
}

fn stale(file: &GeneratedFile, current: Option<&str>) -> Diagnostic {
    let command = "run `cargo xtask generate` and commit the result";
    let Some(current) = current else {
        return Diagnostic::file(Severity::Error, file.path.clone(), "generated file is missing").with_help(command);
    };
    let line = current
        .lines()
        .zip(file.contents.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| current.lines().count().min(file.contents.lines().count()))
        + 1;
    let mut d = Diagnostic::file(
        Severity::Error,
        file.path.clone(),
        format!("generated file is stale (differs from its config from line {line})"),
    )
    .with_help(command);
    d.line = line;
    d.column = 1;
    d.source_line = current.lines().nth(line - 1).map(str::to_string);
    d
}
