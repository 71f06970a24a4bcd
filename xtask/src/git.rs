//! The commit an AMI is built from, read with git.

use std::path::Path;

use anyhow::Context;
use vending::ami::Commit;
use xshell::{cmd, Shell};

/// The `HEAD` commit of the repository at `root`.
pub fn head_commit(root: &Path) -> anyhow::Result<Commit> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    // NUL-separated fields, so no character of an author name or message can split them wrongly.
    let out = cmd!(sh, "git log -1 --format=%H%x00%cI%x00%an%x00%B")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("cannot read the HEAD commit of {}: the AMI records the commit it is built from, so the project must be a git repository with a commit", root.display()))?;
    let mut fields = out.splitn(4, '\0');
    let mut next = || fields.next().unwrap_or_default().to_string();
    let commit = Commit { id: next(), time: next(), author: next(), message: next().trim_end().to_string() };
    anyhow::ensure!(commit.id.len() >= 40, "git printed no commit id for HEAD");
    Ok(commit)
}

/// The working tree's changes (tracked or untracked, ignored files aside), as `git status
/// --porcelain` lines (`XY path`); empty when clean.
pub fn changes(root: &Path) -> anyhow::Result<Vec<String>> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let out = cmd!(sh, "git status --porcelain").quiet().read().context("cannot run `git status`")?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
}
