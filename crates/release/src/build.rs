//! One environment's software built on this machine: clone the customer's repository at its
//! ref, run the environment's committed buildspec with CodeBuild's semantics (the runner), and
//! bundle the artifacts with the environment's appspec into a reproducible revision zip.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;
use vending::config::model::{Build, Customer, Environment, Platform};
use vending::SourceFile;
use vending_runners::runner::{self, Report, RunOptions, Status};

/// What a build leaves for a deploy, next to the revision.
#[derive(Debug, Serialize)]
pub struct BuildRecord {
    pub customer: String,
    pub environment: String,
    /// The repository as configured (any password in a URL masked).
    pub repository: String,
    pub git_ref: String,
    /// The commit that was built.
    pub commit: String,
    pub revision: PathBuf,
    pub sha256: String,
    pub files: usize,
}

/// Each phase's outcome, one line each, behind `prefix` (`customer/env | `, or nothing).
pub fn print_report(report: &Report, prefix: &str) {
    for phase in &report.phases {
        let status = match phase.status {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Skipped => "not run",
        };
        let retries = if phase.attempts > 1 { format!(" after {} attempts", phase.attempts) } else { String::new() };
        println!("{prefix}  {:<10} {status}{retries}", phase.name);
    }
}

/// Parameter Store and Secrets Manager values, when the buildspec has any, read from `target`.
pub fn secrets(
    build: &Build,
    region: &str,
    target: &vending_aws::Target,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    if build.parameter_store.is_empty() && build.secrets_manager.is_empty() {
        return Ok(Default::default());
    }
    let runtime = vending_aws::runtime()?;
    runtime.block_on(async {
        let config = vending_aws::sdk_config(region, target).await;
        vending_aws::secrets::fetch(&config, &build.parameter_store, &build.secrets_manager).await
    })
}

/// The committed generated file, refused when it is not what the config generates.
fn committed(root: &Path, rendered: &vending::render::GeneratedFile) -> anyhow::Result<String> {
    let path = &rendered.path;
    let text = fs::read_to_string(root.join(path)).ok();
    if text.as_deref() != Some(rendered.contents.as_str()) {
        bail!("{} is stale or missing: run `cargo xtask generate` and commit the result", path.display());
    }
    Ok(rendered.contents.clone())
}

/// Clones `repository` at `git_ref` into `dest` (replaced) and returns the commit. git's own
/// credential helpers and the environment supply credentials; nothing is printed or stored.
fn checkout(root: &Path, repository: &str, git_ref: &str, dest: &Path) -> anyhow::Result<String> {
    let shown = vending::secrets::redact_url_password(repository);
    let remote = if repository.contains("://") || repository.contains('@') {
        repository.to_string()
    } else {
        root.join(repository).display().to_string()
    };
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("cannot clear {}", dest.display()))?;
    }
    let sh = xshell::Shell::new()?;
    fn quiet(cmd: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
        cmd.quiet().env("GIT_TERMINAL_PROMPT", "0").ignore_stdout().ignore_status()
    }
    // `--`: a repository that starts with `-` is a repository, never an option of git's.
    let cloned = quiet(xshell::cmd!(sh, "git clone --quiet --no-checkout -- {remote} {dest}")).output()?;
    if !cloned.status.success() {
        bail!(
            "cannot clone {shown}: {} (check the address and that git's credential helper or SSH agent has access)",
            vending::secrets::redact_url_password(String::from_utf8_lossy(&cloned.stderr).trim())
        );
    }
    sh.change_dir(dest);
    let checked = quiet(xshell::cmd!(sh, "git checkout --quiet --detach {git_ref}")).output()?;
    if !checked.status.success() {
        let remote_ref = format!("origin/{git_ref}");
        let again = quiet(xshell::cmd!(sh, "git checkout --quiet --detach {remote_ref}")).output()?;
        if !again.status.success() {
            bail!("{shown} has no ref `{git_ref}`: check software.ref");
        }
    }
    Ok(xshell::cmd!(sh, "git rev-parse HEAD").quiet().read()?)
}

/// A repository on this machine with uncommitted changes is built at its committed ref: says so,
/// so that an edit not committed is not taken for one that was released.
fn warn_uncommitted(root: &Path, repository: &str, git_ref: &str, commit: &str, who: &str) {
    if repository.contains("://") || repository.contains('@') {
        return;
    }
    let Ok(sh) = xshell::Shell::new() else { return };
    sh.change_dir(root.join(repository));
    let Ok(status) = xshell::cmd!(sh, "git status --porcelain -- .").quiet().ignore_stderr().read() else { return };
    let changed = status.lines().filter(|l| !l.trim().is_empty()).count();
    if changed > 0 {
        println!(
            "{who} | warning: {repository} has {changed} uncommitted change(s); the build uses the committed {git_ref} ({}): commit them to release them",
            &commit[..12.min(commit.len())]
        );
    }
}

/// An exclusive `flock(2)` on the work folder's lock file, waited for (with a line) when another
/// build of the environment holds it; the kernel releases it when the process ends, however.
pub(crate) fn hold_work_folder(work: &Path, who: &str) -> anyhow::Result<fs::File> {
    use std::os::fd::AsRawFd;
    let path = work.with_extension("lock");
    let file = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        println!("{who} | another build of {who} runs on this machine: waiting for it to end");
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(file)
}

/// Where an environment builds: its project, validated config, and where secrets come from.
pub struct Site<'a> {
    /// The project root (relative repositories and `target/` are under it).
    pub root: &'a Path,
    pub platform: &'a Platform,
    pub customer: &'a Customer,
    pub env: &'a Environment,
    /// Where Parameter Store and Secrets Manager values are read.
    pub target: &'a vending_aws::Target,
}

/// What both builds start from: the committed buildspec and appspec (refused when stale), and
/// the repository checked out at the ref in the environment's work folder, held for this build.
pub(crate) struct Checkout {
    pub who: String,
    pub buildspec: String,
    pub appspec: String,
    /// The buildspec read back.
    pub build: vending::config::model::Build,
    /// The environment's work folder (`target/vending-runners/<customer>-<env>`).
    pub work: PathBuf,
    /// The checkout, in `work`.
    pub src: PathBuf,
    pub commit: String,
    /// The work folder's lock, released when dropped.
    pub(crate) _held: fs::File,
}

pub(crate) fn check_out(site: &Site) -> anyhow::Result<Checkout> {
    let Site { root, platform, customer, env, .. } = *site;
    let (customer_name, env_name) = (customer.name.as_str(), env.name.as_str());
    let who = format!("{customer_name}/{env_name}");
    let files = vending::render::render_environment(platform, customer, env);
    let rendered = |path: PathBuf| {
        files.iter().find(|f| f.path == path).with_context(|| format!("{} is not generated", path.display()))
    };
    let buildspec_path = vending::render::buildspec_path(customer_name, env_name);
    let buildspec = committed(root, rendered(buildspec_path.clone())?)?;
    let appspec = committed(root, rendered(vending::render::appspec_path(customer_name, env_name))?)?;
    let build = vending::spec::buildspec::read(&SourceFile::new(buildspec_path.clone(), buildspec.clone()))
        .map_err(|d| anyhow::anyhow!("{} does not read back: {:?}", buildspec_path.display(), d.first()))?;

    let work = root.join("target/vending-runners").join(format!("{customer_name}-{env_name}"));
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    // One build of an environment at a time on this machine: they share the work folder.
    let held = hold_work_folder(&work, &who)?;
    let src = work.join("src");
    let software = &customer.software;
    let commit = checkout(root, &software.repository, &software.git_ref, &src)?;
    warn_uncommitted(root, &software.repository, &software.git_ref, &commit, &who);
    Ok(Checkout { who, buildspec, appspec, build, work, src, commit, _held: held })
}

/// Clones, builds and bundles one environment's software (what `build` and `deploy` share).
/// `None`: the build failed, and the output said why.
pub fn build(site: &Site) -> anyhow::Result<Option<BuildRecord>> {
    let Site { platform, customer, env, target, .. } = *site;
    let Checkout { who, appspec, build, work, src, commit, _held, .. } = check_out(site)?;
    let software = &customer.software;
    println!(
        "{who} | building {} at {} ({})",
        vending::secrets::redact_url_password(&software.repository),
        software.git_ref,
        &commit[..12.min(commit.len())]
    );
    let options = RunOptions {
        src: src.clone(),
        secrets: secrets(&build, &platform.region, target)?,
        source_version: commit.clone(),
        build_id: format!("{}-{}:local-{}", customer.name, env.name, std::process::id()),
        timeout: std::time::Duration::from_secs(u64::from(env.build.timeout_minutes) * 60),
    };
    let report = runner::run(&build, &options, &mut |line| println!("{who} | {line}"))?;
    println!("{who} | build:");
    print_report(&report, &format!("{who} | "));
    if !report.succeeded() {
        eprintln!("error: the build of {who} failed; no revision was made");
        return Ok(None);
    }
    let artifacts = vending_runners::artifacts::collect(&src, &build.artifacts).context(who.clone())?;
    record(site, &work, commit, &appspec, &artifacts).map(Some)
}

/// Bundles the artifacts with the appspec into the revision zip, written in the work folder
/// with its record (`build.json`).
pub(crate) fn record(
    site: &Site,
    work: &Path,
    commit: String,
    appspec: &str,
    artifacts: &[vending_runners::artifacts::Artifact],
) -> anyhow::Result<BuildRecord> {
    let software = &site.customer.software;
    let bundle = vending_runners::bundle::bundle(appspec, artifacts)?;
    let revision = work.join(format!("revision-{}.zip", &bundle.sha256[..16]));
    vending_runners::bundle::write(&bundle, &revision)?;
    let record = BuildRecord {
        customer: site.customer.name.clone(),
        environment: site.env.name.clone(),
        repository: vending::secrets::redact_url_password(&software.repository),
        git_ref: software.git_ref.clone(),
        commit,
        revision: revision.clone(),
        sha256: bundle.sha256.clone(),
        files: artifacts.len() + 1,
    };
    let record_path = work.join("build.json");
    vending::project::write_atomic(&record_path, &serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("cannot write {}", record_path.display()))?;
    Ok(record)
}
