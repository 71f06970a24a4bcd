//! Builds on CodeBuild, the default on AWS once the platform names a CodeBuild service role.
//!
//! `prepare` checks out the commit at the ref, zips it as CodeBuild gets it (`git archive`) and
//! works out the build's inputs (`vending::codebuild::BuildInputs`), changing nothing in AWS: an
//! approval binds those inputs. When they made a revision before (its record in the environment's
//! bucket, and the revision still there), that revision is the release and no build starts.
//! Otherwise `run`, after any approval and the infrastructure, uploads the source under its
//! SHA-256, starts the build with every input as an override of the project's settings, follows
//! it (phases, log lines, `StopBuild` on Ctrl-C or past the deadline) and makes the revision of
//! its artifact and the environment's appspec, the same reproducible bundle as a local build.
//!
//! Where it differs from a build on this machine: CodeBuild, not this machine, reads the Parameter
//! Store and Secrets Manager values; `CODEBUILD_RESOLVED_SOURCE_VERSION` is the S3 source's
//! version, not the commit; the artifact comes through this machine once (downloaded, bundled with
//! the appspec, uploaded as the revision), since S3 cannot add a file to a zip. The emulator runs
//! no build (StartBuild is `SUCCEEDED` at once, with no artifact): on it, the revision is made of
//! whatever artifact the bucket holds, and the lack of one is said as such.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sha2::Digest;
use vending::codebuild::{self as core, BuildInputs, BuildOutcome, BuiltRevision};
use vending_aws::codebuild::AwsBuild;
use vending_aws::release as aws_release;

use crate::build::{check_out, BuildRecord, Checkout, Site};
use crate::Release;

/// How often CodeBuild is asked for the build's state.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Past the build's own timeout, how long a build may queue and provision before it is stopped.
const QUEUE_ALLOWANCE: Duration = Duration::from_secs(15 * 60);

/// Where an environment's software is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// On this machine, with the runners (secrets read here).
    Local,
    /// On the environment's CodeBuild project.
    CodeBuild,
}

impl BuildMode {
    /// On CodeBuild on AWS when the platform names a CodeBuild service role; else here (the
    /// emulator runs no build).
    pub fn default_for(platform: &vending::config::model::Platform, target: &vending_aws::Target) -> BuildMode {
        let aws = matches!(target, vending_aws::Target::Aws);
        if aws && platform.codebuild_service_role.is_some() {
            BuildMode::CodeBuild
        } else {
            BuildMode::Local
        }
    }

    /// The mode asked for on the command line (else the default), refused where it cannot run.
    pub fn chosen(
        asked: Option<BuildMode>,
        platform: &vending::config::model::Platform,
        target: &vending_aws::Target,
    ) -> anyhow::Result<BuildMode> {
        match asked {
            None => Ok(BuildMode::default_for(platform, target)),
            Some(BuildMode::CodeBuild) if platform.codebuild_service_role.is_none() => anyhow::bail!(
                "--build codebuild needs a CodeBuild project, and the platform has none: set iam.codebuild_service_role in customers/platform.toml and deploy"
            ),
            Some(mode) => Ok(mode),
        }
    }
}

/// A build on CodeBuild, prepared: the source zip made, nothing sent yet.
pub struct PendingBuild {
    pub commit: String,
    pub inputs_sha256: String,
    inputs: BuildInputs,
    source: PathBuf,
    source_sha256: String,
}

/// What `prepare` found.
pub(crate) enum Remote {
    /// These inputs made this revision before.
    Built(BuildRecord),
    Pending(PendingBuild),
}

/// Checks out and zips the source, and looks for a revision these inputs made before.
pub(crate) fn prepare(release: &Release, site: &Site) -> anyhow::Result<Remote> {
    // `_held`: the work folder stays this run's until the source zip is written.
    let Checkout { who, buildspec, appspec, work, src, commit, _held, .. } = check_out(site)?;
    let names = &release.env.names;
    let inputs = BuildInputs::of(&commit, &buildspec, &appspec, release.env);
    let inputs_sha256 = inputs.sha256();
    let record: Option<BuiltRevision> = release.runtime.block_on(vending_aws::s3::get_json(
        &release.clients.s3,
        &names.bucket,
        &core::record_key(&inputs_sha256),
    ))?;
    // A record that does not name a revision is not one this tool wrote: built again.
    let record = record
        .filter(|r| vending::release::revision_sha(&vending::release::revision_key(&r.revision_sha256)).is_some());
    if let Some(record) = record {
        let key = vending::release::revision_key(&record.revision_sha256);
        let there = release.runtime.block_on(vending_aws::s3::exists(&release.clients.s3, &names.bucket, &key))?;
        if there && record.commit == commit {
            println!(
                "{who} | commit {} with this build's settings made revision {} before (CodeBuild build {}): no new build",
                &commit[..12.min(commit.len())],
                &record.revision_sha256[..16],
                record.build_id
            );
            let revision = work.join(format!("revision-{}.zip", &record.revision_sha256[..16]));
            // The local fleet deploys from a file; on AWS the revision is in the bucket already.
            if release.local && !revision.exists() {
                release.runtime.block_on(aws_release::download(
                    release.clients,
                    &names.bucket,
                    &key,
                    &record.revision_sha256,
                    &revision,
                ))?;
            }
            let software = &release.customer.software;
            return Ok(Remote::Built(BuildRecord {
                customer: release.customer.name.clone(),
                environment: release.env.name.clone(),
                repository: vending::secrets::redact_url_password(&software.repository),
                git_ref: software.git_ref.clone(),
                commit,
                revision,
                sha256: record.revision_sha256,
                files: record.files,
            }));
        }
    }
    let sh = xshell::Shell::new()?;
    sh.change_dir(&src);
    let zipped = xshell::cmd!(sh, "git archive --format=zip {commit}").quiet().output()?;
    let source_sha256 = format!("{:x}", sha2::Sha256::digest(&zipped.stdout));
    // Named by its content: another build of the environment meanwhile writes another file.
    let source = work.join(format!("source-{}.zip", &source_sha256[..16]));
    vending::project::write_atomic(&source, &zipped.stdout)
        .with_context(|| format!("cannot write {}", source.display()))?;
    println!(
        "{who} | {} at {} ({}) is built on CodeBuild when the release starts (inputs {})",
        vending::secrets::redact_url_password(&release.customer.software.repository),
        release.customer.software.git_ref,
        &commit[..12.min(commit.len())],
        &inputs_sha256[..16]
    );
    Ok(Remote::Pending(PendingBuild { commit, inputs_sha256, inputs, source, source_sha256 }))
}

/// Runs a prepared build on CodeBuild and makes its revision: `None` when the build failed (the
/// output said why).
pub(crate) fn run(release: &Release, site: &Site, pending: &PendingBuild) -> anyhow::Result<Option<BuildRecord>> {
    let who = release.who();
    let names = &release.env.names;
    let (runtime, clients, bucket) = (release.runtime, release.clients, &names.bucket);
    let source_key = core::source_key(&pending.source_sha256);
    // What is uploaded is what was approved: the zip is checked against its SHA-256 first.
    let bytes = std::fs::read(&pending.source).with_context(|| format!("cannot read {}", pending.source.display()))?;
    anyhow::ensure!(
        format!("{:x}", sha2::Sha256::digest(&bytes)) == pending.source_sha256,
        "{who}: {} is not the source zip that was prepared (changed since): deploy again",
        pending.source.display()
    );
    let metadata = [("sha256", pending.source_sha256.as_str()), ("commit", pending.commit.as_str())];
    let (_, uploaded) =
        runtime.block_on(aws_release::upload(clients, bucket, &source_key, &pending.source, &metadata))?;
    let verb = if uploaded { "uploaded to" } else { "already in" };
    println!(
        "{who} | source of commit {} {verb} s3://{bucket}/{source_key}",
        &pending.commit[..12.min(pending.commit.len())]
    );
    let artifact_path = core::artifact_path(&pending.inputs_sha256);
    let id = runtime.block_on(vending_aws::codebuild::start(
        clients,
        &names.codebuild_project,
        bucket,
        &source_key,
        &artifact_path,
        core::ARTIFACT_NAME,
        &pending.inputs,
    ))?;
    let region = &release.platform.region;
    let console = format!(
        "https://{region}.console.aws.amazon.com/codesuite/codebuild/projects/{}/build/{}?region={region}",
        names.codebuild_project,
        id.replace(':', "%3A")
    );
    println!("{who} | CodeBuild build {id} started");
    if release.local {
        println!(
            "{who} | the emulator runs no build: it reports one SUCCEEDED at once, and the bucket's artifact is used"
        );
    } else {
        println!("{who} | {console}");
    }
    release.interrupts.arm(None, format!("{who}: left CodeBuild build {id} running: {console}"))?;
    let deadline = Duration::from_secs(u64::from(pending.inputs.timeout_minutes) * 60) + QUEUE_ALLOWANCE;
    let mut source = AwsBuild::new(runtime, clients, id.clone());
    let interrupted = || release.interrupts.interrupted();
    let progress = crate::progress::Progress::start(&who, &format!("CodeBuild build {id}"));
    let followed =
        core::follow_build(&mut source, &mut release.clock(), deadline, POLL_INTERVAL, &interrupted, &mut |line| {
            progress.line(line)
        });
    drop(progress);
    let outcome = match followed {
        Ok(outcome) => outcome,
        Err(e) => {
            // Not followed any more: not left running either.
            let stopped = match vending::codebuild::BuildSource::stop(&mut source) {
                Ok(()) => "it was stopped".to_string(),
                Err(stop) => format!("stopping it failed too ({stop}): stop it in the console: {console}"),
            };
            anyhow::bail!("{who}: following CodeBuild build {id}: {e}; {stopped}");
        }
    };
    if outcome != BuildOutcome::Succeeded {
        eprintln!("error: {who}: CodeBuild build {id}: no revision was made");
        for line in core::explain(&outcome) {
            eprintln!("  {line}");
        }
        return Ok(None);
    }
    let artifact_key = format!("{artifact_path}/{}", core::ARTIFACT_NAME);
    let Some(zip) = runtime.block_on(vending_aws::s3::get_bytes(&clients.s3, bucket, &artifact_key))? else {
        let why = if release.local {
            " (the emulator runs no build: put the artifact there to stand in for one)"
        } else {
            ""
        };
        anyhow::bail!(
            "{who}: CodeBuild build {id} SUCCEEDED but left no artifact at s3://{bucket}/{artifact_key}{why}"
        );
    };
    let work = site.root.join("target/vending-runners").join(format!("{}-{}", release.customer.name, release.env.name));
    let _held = crate::build::hold_work_folder(&work, &who)?;
    let artifacts = vending_runners::artifacts::unpack(&zip, &work.join("codebuild-artifact"))
        .with_context(|| format!("{who}: the artifact of CodeBuild build {id}"))?;
    let appspec = &pending.inputs.appspec;
    let record = crate::build::record(site, &work, pending.commit.clone(), appspec, &artifacts)?;
    let built = BuiltRevision {
        inputs_sha256: pending.inputs_sha256.clone(),
        commit: pending.commit.clone(),
        build_id: id,
        revision_sha256: record.sha256.clone(),
        files: record.files,
    };
    // The revision first, the record after: a record always names a revision that is there.
    let revision_key = vending::release::revision_key(&record.sha256);
    let metadata = [("sha256", record.sha256.as_str()), ("commit", pending.commit.as_str())];
    runtime.block_on(aws_release::upload(clients, bucket, &revision_key, &record.revision, &metadata))?;
    let record_key = core::record_key(&pending.inputs_sha256);
    runtime.block_on(vending_aws::s3::put_json(&clients.s3, bucket, &record_key, &built))?;
    println!(
        "{who} | revision {} made of the build's {} file(s) and the appspec",
        &record.sha256[..16],
        artifacts.len()
    );
    Ok(Some(record))
}
