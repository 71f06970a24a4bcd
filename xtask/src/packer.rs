//! The real `packer` binary: finding it and running `packer validate` on templates, in parallel,
//! skipping templates whose content already passed with the same Packer version (a cache under
//! `target/`), so a pull request pays for what it changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use sha2::{Digest, Sha256};
use vending::render::GeneratedFile;
use vending::{Diagnostic, Severity};
use xshell::{cmd, Shell};

pub const NOT_INSTALLED: &str =
    "`packer` is not installed or not on PATH; install it (Debian: `apt-get install packer`) to check the templates";

/// Where `packer validate` results are remembered, by content.
pub const CACHE_DIR: &str = "target/vending-cache/packer-validate";

/// Where `cargo xtask demo` unpacks Debian's `packer` package when the system has none.
pub const UNPACKED: &str = "target/packer/usr/bin/packer";

/// The system's `packer`, else the one the demo unpacked into the project's target/ (the
/// project at `root`: a copy of it elsewhere has none).
pub fn find(root: &Path) -> Option<PathBuf> {
    which::which("packer").ok().or_else(|| Some(root.join(UNPACKED)).filter(|p| p.is_file()))
}

pub struct Report {
    pub ran: usize,
    pub cached: usize,
    pub problems: Vec<Diagnostic>,
}

fn shell(root: &Path) -> anyhow::Result<Shell> {
    let sh = Shell::new().context("cannot start a shell for packer")?;
    sh.change_dir(root);
    // Packer otherwise asks checkpoint.hashicorp.com for news on every run.
    sh.set_var("CHECKPOINT_DISABLE", "1");
    Ok(sh)
}

pub fn version(root: &Path, binary: &Path) -> anyhow::Result<String> {
    let sh = shell(root)?;
    let out = cmd!(sh, "{binary} version").quiet().read().context("cannot run `packer version`")?;
    Ok(out.lines().next().unwrap_or_default().trim().to_string())
}

pub fn validate_all(root: &Path, binary: &Path, templates: &[&GeneratedFile]) -> anyhow::Result<Report> {
    let version = version(root, binary)?;
    let cache_dir = root.join(CACHE_DIR);
    fs::create_dir_all(&cache_dir).with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let key = |file: &GeneratedFile| {
        let mut hash = Sha256::new();
        hash.update(version.as_bytes());
        hash.update([0]);
        hash.update(file.contents.as_bytes());
        format!("{:x}", hash.finalize())
    };
    let (cached, todo): (Vec<_>, Vec<_>) =
        templates.iter().map(|f| (*f, key(f))).partition(|(_, key)| cache_dir.join(key).is_file());

    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(todo.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let sh = match shell(root) {
                    Ok(sh) => sh,
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                };
                while let Some((file, key)) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match validate_one(&sh, binary, file, &cache_dir.join(format!("{key}.work"))) {
                        Ok(None) => {
                            // A cache entry is an empty file named by the hash; losing one only costs a rerun.
                            let _ = fs::write(cache_dir.join(key), b"");
                        }
                        Ok(Some(problem)) => problems.lock().unwrap_or_else(|p| p.into_inner()).push(problem),
                        Err(e) => *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(Report {
        ran: todo.len(),
        cached: cached.len(),
        problems: problems.into_inner().unwrap_or_else(|p| p.into_inner()),
    })
}

/// Runs `packer validate` on the rendered template, written to a work folder (so the check holds
/// for what generation produces, whatever is on disk). `Ok(None)` means it passed.
fn validate_one(sh: &Shell, binary: &Path, file: &GeneratedFile, work: &Path) -> anyhow::Result<Option<Diagnostic>> {
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let file_name = file.path.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("template.pkr.hcl"));
    let work_file = work.join(&file_name);
    fs::write(&work_file, &file.contents).with_context(|| format!("cannot write {}", work_file.display()))?;
    let output = cmd!(sh, "{binary} validate {work_file}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run `packer validate` for {}", file.path.display()));
    let _ = fs::remove_dir_all(work);
    let output = output?;
    if output.status.success() {
        return Ok(None);
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        .replace(&work_file.display().to_string(), &file.path.display().to_string());
    let d = Diagnostic::file(Severity::Error, file.path.clone(), format!("packer validate failed:\n{}", text.trim()))
        .with_help(
            "the template is generated: fix the config it comes from (or report a bug), then `cargo xtask generate`",
        );
    Ok(Some(at_packer_line(d, &text, &file.contents)))
}

/// Points a diagnostic at the line Packer names ("on packer/x.pkr.hcl line 12:"), if it does.
fn at_packer_line(mut d: Diagnostic, packer_output: &str, contents: &str) -> Diagnostic {
    if let Some(line) = packer_output.lines().find_map(|l| {
        l.trim()
            .strip_prefix("on ")?
            .split(" line ")
            .nth(1)?
            .trim_end_matches(':')
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<usize>()
            .ok()
    }) {
        d.line = line;
        d.column = 1;
        d.source_line = contents.lines().nth(line.saturating_sub(1)).map(str::to_string);
    }
    d
}

/// `packer validate` on a template the user gave (`validate --spec`). A `*.pkr.hcl` or
/// `*.pkr.json` file is validated in its folder, as Packer's own docs do, so relative paths in it
/// resolve. Packer reads HCL only from files named `*.pkr.hcl` (anything else as JSON), so an HCL
/// template under another name is validated as a copy so named, in a work folder under `target/`,
/// where its relative paths may not resolve. `Ok(None)` means it passed.
pub fn validate_file(root: &Path, binary: &Path, path: &Path) -> anyhow::Result<Option<Diagnostic>> {
    let contents = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let absolute = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let name = absolute.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let named_for_packer = name.ends_with(".pkr.hcl") || name.ends_with(".pkr.json");
    let work = root.join(CACHE_DIR).join(format!("spec-{}", std::process::id()));
    let (folder, file) = if named_for_packer {
        (absolute.parent().unwrap_or(root).to_path_buf(), PathBuf::from(&name))
    } else {
        fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
        let copy = PathBuf::from(format!("{name}.pkr.hcl"));
        fs::write(work.join(&copy), &contents).with_context(|| format!("cannot write {}", work.display()))?;
        (work.clone(), copy)
    };
    let sh = shell(&folder)?;
    let output = cmd!(sh, "{binary} validate {file}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run `packer validate` for {}", path.display()));
    if !named_for_packer {
        let _ = fs::remove_dir_all(&work);
    }
    let output = output?;
    if output.status.success() {
        return Ok(None);
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        .replace(&file.display().to_string(), &path.display().to_string());
    let d = Diagnostic::file(Severity::Error, path, format!("packer validate failed:\n{}", text.trim()))
        .with_help("fix the template where Packer says; `packer init` installs plugins it names as missing");
    Ok(Some(at_packer_line(d, &text, &contents)))
}

/// `-var name=value` for each variable: each one argument, never parsed by a shell.
pub fn var_args(variables: &[(String, String)]) -> Vec<String> {
    variables.iter().flat_map(|(name, value)| ["-var".to_string(), format!("{name}={value}")]).collect()
}

/// `packer validate` of one template with a build's variables, in `dir`. Skipped when the same
/// Packer binary passed the same template bytes, build and settings before: the result is
/// recorded under `cache_dir` (an empty file named by their hash), as `validate_all` does.
/// `data` names the variables whose values are only data (commit text copied into the
/// description and tags, see `vending::ami::packer_variables`): they are validated with the
/// values of the run that misses the cache but left out of its key, because no value of theirs
/// changes whether the template is valid. Returns whether Packer ran.
pub fn validate_with(
    dir: &Path,
    cache_dir: &Path,
    binary: &Path,
    template: &Path,
    only: &str,
    variables: &[(String, String)],
    data: &[&str],
) -> anyhow::Result<bool> {
    let settings: Vec<_> = variables.iter().filter(|(name, _)| !data.contains(&name.as_str())).cloned().collect();
    let key = validation_key(binary, template, only, &settings)?;
    let entry = cache_dir.join(&key);
    if entry.is_file() {
        return Ok(false);
    }
    run_validate(dir, binary, template, only, variables)?;
    // Losing an entry only costs a rerun.
    let _ = fs::create_dir_all(cache_dir).and_then(|()| fs::write(&entry, b""));
    Ok(true)
}

/// What a validation result depends on: the binary (path, size, modification time: a Packer
/// upgrade changes them), the template's bytes, the build and the variables that configure it.
fn validation_key(
    binary: &Path,
    template: &Path,
    only: &str,
    variables: &[(String, String)],
) -> anyhow::Result<String> {
    let meta = fs::metadata(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    let bytes = fs::read(template).with_context(|| format!("cannot read {}", template.display()))?;
    let mut hash = Sha256::new();
    for part in [
        binary.as_os_str().as_encoded_bytes(),
        &meta.len().to_le_bytes(),
        &modified.as_nanos().to_le_bytes(),
        &bytes,
        only.as_bytes(),
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    for (name, value) in variables {
        for part in [name.as_bytes(), value.as_bytes()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    Ok(format!("build-{:x}", hash.finalize()))
}

fn run_validate(
    dir: &Path,
    binary: &Path,
    template: &Path,
    only: &str,
    variables: &[(String, String)],
) -> anyhow::Result<()> {
    let sh = shell(dir)?;
    let vars = var_args(variables);
    let only = format!("-only={only}");
    let output = cmd!(sh, "{binary} validate {only} {vars...} {template}")
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run `packer validate`")?;
    if !output.status.success() {
        anyhow::bail!(
            "packer validate failed for {}:\n{}{}",
            template.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

pub struct BuildOutcome {
    pub status: ExitStatus,
    pub interrupted: bool,
    /// The last lines Packer printed, for the error message.
    pub tail: Vec<String>,
}

const TAIL_LINES: usize = 25;

/// `packer build`, its output streamed line by line behind `prefix` (under a spinner with the
/// elapsed time on a terminal). Runs in `dir` (where the manifest is written), in its own
/// process group so that Ctrl-C reaches it once, through us.
#[cfg(feature = "aws")]
pub fn build(
    dir: &Path,
    binary: &Path,
    template: &Path,
    only: &str,
    variables: &[(String, String)],
    env: &[(&str, &str)],
    prefix: &str,
) -> anyhow::Result<BuildOutcome> {
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    crate::interrupt::install()?;
    let sh = shell(dir)?;
    for (name, value) in env {
        sh.set_var(name, value);
    }
    let vars = var_args(variables);
    let only = format!("-only={only}");
    let mut command = Command::from(cmd!(sh, "{binary} build -color=false {only} {vars...} {template}"));
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = command.spawn().context("cannot start `packer build`")?;
    crate::interrupt::set_child(child.id());
    let tail = std::sync::Mutex::new(VecDeque::with_capacity(TAIL_LINES));
    let progress = vending_release::progress::Progress::start(prefix, "packer build");
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|scope| {
        let pump = |stream: Box<dyn std::io::Read + Send>| {
            let (tail, progress) = (&tail, &progress);
            move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    progress.output(&line);
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        };
        if let Some(out) = stdout {
            scope.spawn(pump(Box::new(out)));
        }
        if let Some(err) = stderr {
            scope.spawn(pump(Box::new(err)));
        }
    });
    let status = child.wait().context("cannot wait for `packer build`")?;
    drop(progress);
    crate::interrupt::clear_child();
    let tail = tail.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().collect();
    Ok(BuildOutcome { status, interrupted: crate::interrupt::interrupted(), tail })
}
