//! The software half of `deploy`: build the revision, upload it under its content-addressed key,
//! skip it when the group's last successful deployment has the same key, create a CodeDeploy
//! deployment and follow it to its end (Ctrl-C stops it). `rollback` releases the revision before
//! the running one through the same path. With `--local`, the emulator's CodeDeploy records the
//! deployment but never runs it, so the local agent is the fleet (`local_fleet`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use vending::config::model::{Customer, Environment, Fleet, Platform};
use vending::release::{self, Outcome, Snapshot, SystemClock};
use vending_aws::infra::Clients;
use vending_aws::release::{self as aws_release, AwsStatus};

use crate::build::{BuildRecord, Site};
use crate::codebuild::{BuildMode, PendingBuild, Remote};
use crate::local_fleet::LocalFleet;
use crate::Interrupts;

/// How often CodeDeploy is asked for the deployment's status.
const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The release of one environment's software.
pub struct Release<'a> {
    pub root: &'a Path,
    pub runtime: &'a tokio::runtime::Runtime,
    pub clients: &'a Clients,
    pub platform: &'a Platform,
    pub customer: &'a Customer,
    pub env: &'a Environment,
    /// Where AWS is: the emulator (the local fleet deploys) or AWS.
    pub target: &'a vending_aws::Target,
    /// Ctrl-C, as the command line owns it.
    pub interrupts: &'a dyn Interrupts,
    pub local: bool,
    /// Deploy even when the revision is the one deployed last.
    pub redeploy: bool,
    /// CodeDeploy's `ignoreApplicationStopFailures`.
    pub ignore_application_stop_failures: bool,
    /// Where the software is built.
    pub build_mode: BuildMode,
}

impl<'a> Release<'a> {
    /// The release of one environment of a validated fleet (neither `redeploy` nor ignoring
    /// ApplicationStop failures).
    #[allow(clippy::too_many_arguments)]
    pub fn of(
        root: &'a Path,
        runtime: &'a tokio::runtime::Runtime,
        clients: &'a Clients,
        fleet: &'a Fleet,
        customer: &str,
        env: &str,
        target: &'a vending_aws::Target,
        interrupts: &'a dyn Interrupts,
    ) -> anyhow::Result<Release<'a>> {
        let (customer, env) = fleet.environment(customer, env).context("not in the fleet")?;
        Ok(Release {
            root,
            runtime,
            clients,
            platform: &fleet.platform,
            customer,
            env,
            target,
            interrupts,
            local: matches!(target, vending_aws::Target::Local { .. }),
            redeploy: false,
            ignore_application_stop_failures: false,
            build_mode: BuildMode::default_for(&fleet.platform, target),
        })
    }

    pub fn who(&self) -> String {
        format!("{}/{}", self.customer.name, self.env.name)
    }

    /// The environment's deployment group, or an error that says to deploy the infrastructure.
    fn deployment_group(&self) -> anyhow::Result<aws_release::Group> {
        let names = &self.env.names;
        let (application, group) = (&names.codedeploy_application, &names.deployment_group);
        match self.runtime.block_on(aws_release::find_deployment_group(self.clients, application, group))? {
            Some(group) => Ok(group),
            None => anyhow::bail!(
                "deployment group {application}/{group} does not exist: deploy the infrastructure first with `cargo xtask deploy {} {}{}`",
                self.customer.name,
                self.env.name,
                self.clients.flag()
            ),
        }
    }

    /// Builds the revision and tells whether it must be released, changing nothing in AWS: what
    /// an approval is asked for. Without `infra_follows`, the deployment group must exist already
    /// (checked before building: without the infrastructure there is nothing to deploy to).
    pub fn prepare(&self, infra_follows: bool) -> anyhow::Result<Prepared> {
        let names = &self.env.names;
        let group = self.runtime.block_on(aws_release::find_deployment_group(
            self.clients,
            &names.codedeploy_application,
            &names.deployment_group,
        ))?;
        if group.is_none() && !infra_follows {
            self.deployment_group()?;
        }
        let site = self.site();
        let (record, pending) = match self.build_mode {
            BuildMode::Local => match crate::build::build(&site)? {
                Some(record) => (Some(record), None),
                None => return Ok(Prepared::BuildFailed),
            },
            BuildMode::CodeBuild => match crate::codebuild::prepare(self, &site)? {
                Remote::Built(record) => (Some(record), None),
                Remote::Pending(pending) => (None, Some(pending)),
            },
        };
        let Some(record) = record else {
            let pending = pending.context("a build")?;
            return Ok(Prepared::Ship(PlannedRevision {
                path: Default::default(),
                sha256: String::new(),
                commit: pending.commit.clone(),
                description: String::new(),
                rollback: false,
                pending: Some(Box::new(pending)),
            }));
        };
        if let Some(why) = self.already_deployed(group.as_ref(), &record.sha256)? {
            return Ok(Prepared::Nothing(why));
        }
        Ok(Prepared::Ship(PlannedRevision {
            description: description(&record),
            path: record.revision,
            sha256: record.sha256,
            commit: record.commit,
            rollback: false,
            pending: None,
        }))
    }

    /// Why a revision is not released, when the group's last successful deployment deployed it
    /// (unless `redeploy`): nothing is deployed twice.
    fn already_deployed(&self, group: Option<&aws_release::Group>, sha256: &str) -> anyhow::Result<Option<String>> {
        let Some(group) = group.filter(|_| !self.redeploy) else { return Ok(None) };
        let key = release::revision_key(sha256);
        let deployed = if self.local {
            let fleet = LocalFleet { release: self, group_id: &group.id };
            let instances = fleet.instances()?;
            fleet.deployed(sha256, &instances)
        } else {
            match &group.last_successful_deployment {
                Some(id) => self
                    .runtime
                    .block_on(aws_release::revision_key_of(self.clients, id))?
                    .filter(|last| *last == key)
                    .map(|_| id.clone()),
                None => None,
            }
        };
        Ok(deployed.map(|id| {
            format!(
                "{} | revision {} is what {id} deployed last: nothing to release (--redeploy to deploy it again)",
                self.who(),
                &sha256[..16]
            )
        }))
    }

    /// Builds the revision without deploying it (`cargo xtask build`): on CodeBuild, a revision
    /// made of the same inputs before is fetched instead. `None`: the build failed (the output
    /// said why).
    pub fn build_only(&self) -> anyhow::Result<Option<BuildRecord>> {
        let site = self.site();
        if self.build_mode == BuildMode::Local {
            return crate::build::build(&site);
        }
        match crate::codebuild::prepare(self, &site)? {
            Remote::Built(record) => {
                if !record.revision.exists() {
                    let key = release::revision_key(&record.sha256);
                    let bucket = &self.env.names.bucket;
                    self.runtime.block_on(aws_release::download(
                        self.clients,
                        bucket,
                        &key,
                        &record.sha256,
                        &record.revision,
                    ))?;
                }
                Ok(Some(record))
            }
            Remote::Pending(pending) => crate::codebuild::run(self, &site, &pending),
        }
    }

    fn site(&self) -> Site<'_> {
        Site { root: self.root, platform: self.platform, customer: self.customer, env: self.env, target: self.target }
    }

    /// Deploys a prepared revision, building it on CodeBuild first when it is still to be built.
    /// `succeeded` is false when the build or the deployment failed, timed out or was stopped (the
    /// output said why).
    pub fn ship(&self, revision: &PlannedRevision) -> anyhow::Result<Shipped> {
        let Some(pending) = &revision.pending else {
            // Checked again now that the lock is held: another run may have deployed it since
            // `prepare` looked.
            if !revision.rollback {
                let group = self.deployment_group()?;
                if let Some(why) = self.already_deployed(Some(&group), &revision.sha256)? {
                    println!("{why}");
                    return Ok(Shipped { succeeded: true, built: None });
                }
            }
            return Ok(Shipped { succeeded: self.ship_built(revision)?, built: None });
        };
        let Some(record) = crate::codebuild::run(self, &self.site(), pending)? else {
            return Ok(Shipped { succeeded: false, built: None });
        };
        // New inputs can make the same bytes (a new image or timeout): not deployed twice.
        let group = self.deployment_group()?;
        if let Some(why) = self.already_deployed(Some(&group), &record.sha256)? {
            println!("{why}");
            return Ok(Shipped { succeeded: true, built: Some(record.sha256) });
        }
        let built = PlannedRevision {
            description: description(&record),
            path: record.revision,
            sha256: record.sha256.clone(),
            commit: record.commit,
            rollback: false,
            pending: None,
        };
        Ok(Shipped { succeeded: self.ship_built(&built)?, built: Some(record.sha256) })
    }

    /// Deploys a built revision: `false` when the deployment failed, timed out or was stopped
    /// (the output said why).
    fn ship_built(&self, revision: &PlannedRevision) -> anyhow::Result<bool> {
        let deployment_group = self.deployment_group()?;
        let local_fleet = self.local.then(|| LocalFleet { release: self, group_id: &deployment_group.id });
        let instances = match &local_fleet {
            Some(fleet) => fleet.instances()?,
            None => Vec::new(),
        };
        let revision = Revision {
            path: &revision.path,
            sha256: &revision.sha256,
            commit: &revision.commit,
            description: revision.description.clone(),
            rollback: revision.rollback,
        };
        let (succeeded, deployment_id) = self.deploy_revision(local_fleet.as_ref(), &instances, &revision)?;
        self.record_release(&revision, &deployment_id, succeeded);
        Ok(succeeded)
    }

    /// What `status` shows of the last release: recorded in the state bucket, whatever its end.
    /// A record that cannot be written is a warning: the release itself is done.
    fn record_release(&self, revision: &Revision, deployment_id: &str, succeeded: bool) {
        let names = (&self.customer.name, &self.env.name);
        let recorded = self.runtime.block_on(async {
            let by = vending_aws::identity::caller(&self.clients.sts).await?.arn;
            let record = release::LastRelease {
                by,
                at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                kind: if revision.rollback { "rollback" } else { "release" }.into(),
                revision_sha256: revision.sha256.to_string(),
                commit: revision.commit.to_string(),
                deployment_id: deployment_id.to_string(),
                result: if succeeded { "succeeded" } else { "failed" }.into(),
            };
            let key = release::LastRelease::key(names.0, names.1);
            vending_aws::s3::put_json(&self.clients.s3, &self.platform.state_bucket, &key, &record).await
        });
        if let Err(e) = recorded {
            println!("{} | warning: the release is not recorded for `status`: {e:#}", self.who());
        }
    }

    /// Finds the revision to roll back to (the one released before the latest release, or with
    /// `to` the one whose SHA-256 starts with it) and fetches it, changing nothing in AWS. A
    /// rollback is not a release, so running it again finds its revision running and changes
    /// nothing; `deploy` goes forward again. The revision comes from the bucket, checked against
    /// the SHA-256 its key names.
    pub fn prepare_rollback(&self, to: Option<&str>) -> anyhow::Result<Prepared> {
        let who = self.who();
        let names = &self.env.names;
        let (application, group) = (&names.codedeploy_application, &names.deployment_group);
        let deployment_group = self.deployment_group()?;
        let local_fleet = self.local.then(|| LocalFleet { release: self, group_id: &deployment_group.id });
        let (current, succeeded) = match &local_fleet {
            Some(fleet) => fleet.history(),
            None => {
                let succeeded =
                    self.runtime.block_on(aws_release::succeeded_deployments(self.clients, application, group))?;
                // The last successful deployment is among them: its revision is the one running.
                let last = deployment_group.last_successful_deployment.as_deref();
                let current = succeeded.iter().find(|d| Some(d.id.as_str()) == last).map(|d| d.key.clone());
                (current, succeeded)
            }
        };
        let Some(current) = current else {
            anyhow::bail!("{who} has no successful deployment yet: nothing to roll back from");
        };
        let target = match to {
            Some(prefix) => {
                release::deployed_revision(&succeeded, prefix).map_err(|e| anyhow::anyhow!("{who}: {e}"))?
            }
            None => release::rollback_target(&succeeded)
                .with_context(|| format!("{who} has released one revision only: nothing to roll back to"))?,
        };
        let sha256 = release::revision_sha(&target.key).with_context(|| {
            format!("{who}: deployment {} deployed {}, not a revision of this tool", target.id, target.key)
        })?;
        if target.key == current {
            return Ok(Prepared::Nothing(format!(
                "{who} | revision {} (deployed by {}) is the one running: nothing to roll back (`deploy` goes forward again)",
                &sha256[..16],
                target.id
            )));
        }
        let dir = self.root.join("target/vending-rollback");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{sha256}.zip"));
        self.runtime.block_on(aws_release::download(self.clients, &names.bucket, &target.key, sha256, &path))?;
        let from = release::revision_sha(&current).map_or(current.as_str(), |sha| &sha[..16]);
        println!(
            "{who} | rolling back from revision {from} to revision {} (deployed before by {})",
            &sha256[..16],
            target.id
        );
        Ok(Prepared::Ship(PlannedRevision {
            path,
            sha256: sha256.to_string(),
            commit: String::new(),
            description: release::rollback_description(&who, sha256, &target.id),
            rollback: true,
            pending: None,
        }))
    }

    /// Uploads a revision (unless its key is there), registers it, creates the deployment and
    /// follows it (or has the local fleet deploy it).
    fn deploy_revision(
        &self,
        local_fleet: Option<&LocalFleet>,
        instances: &[String],
        revision: &Revision,
    ) -> anyhow::Result<(bool, String)> {
        let who = self.who();
        let names = &self.env.names;
        let (application, group) = (&names.codedeploy_application, &names.deployment_group);
        let key = release::revision_key(revision.sha256);
        let short = &revision.sha256[..16];
        let mut metadata = vec![("sha256", revision.sha256)];
        if !revision.commit.is_empty() {
            metadata.push(("commit", revision.commit));
        }
        let (location, uploaded) =
            self.runtime.block_on(aws_release::upload(self.clients, &names.bucket, &key, revision.path, &metadata))?;
        let verb = if uploaded { "uploaded to" } else { "already in" };
        println!("{who} | revision {short} {verb} s3://{}/{key}", names.bucket);
        let description = &revision.description;
        if self.local {
            println!(
                "{who} | the emulator has no RegisterApplicationRevision: the deployment names the revision alone"
            );
        } else {
            self.runtime.block_on(aws_release::register(self.clients, application, &location, description))?;
            self.wait_for_instance_refresh()?;
        }
        let id = self.runtime.block_on(aws_release::create_deployment(
            self.clients,
            application,
            group,
            &location,
            description,
            self.ignore_application_stop_failures,
        ))?;
        println!("{who} | deployment {id}: revision {short} to {application}/{group} ({})", self.env.deployment.config);
        let region = &self.platform.region;
        let console =
            format!("https://{region}.console.aws.amazon.com/codesuite/codedeploy/deployments/{id}?region={region}");
        if !self.local {
            println!("{who} | {console}");
        }
        // From here Ctrl-C stops the deployment (and a second one leaves it running).
        if self.local {
            let then = if self.env.deployment.auto_rollback { "stops and rolls back" } else { "stops" };
            self.interrupts.arm(
                Some(format!(
                    "{who}: interrupted: the instance at work finishes its hook, then the deployment {then} (Ctrl-C \
                     again leaves at once)"
                )),
                format!("{who}: left the local fleet in the middle of deployment {id}; deploy again to repair it"),
            )?;
        } else {
            // `follow` says what the first press does.
            self.interrupts.arm(None, format!("{who}: left deployment {id} to finish on its own: {console}"))?;
        }

        let succeeded = match local_fleet {
            Some(fleet) => fleet.deploy(&id, revision, &key, instances),
            None => self.follow(&id),
        }?;
        Ok((succeeded, id))
    }

    /// Waits, with progress, while an instance refresh replaces the group's instances (a deploy
    /// that changed the launch template started it): see `release::wait_for_refresh`.
    fn wait_for_instance_refresh(&self) -> anyhow::Result<()> {
        let who = self.who();
        let group = &self.env.names.auto_scaling_group;
        let deadline = Duration::from_secs(u64::from(self.env.deployment.timeout_minutes) * 60);
        let mut latest = || {
            self.runtime
                .block_on(aws_release::latest_instance_refresh(self.clients, group))
                .map_err(|e| release::SourceError::from(format!("{e:#}")))
        };
        let progress = crate::progress::Progress::start(&who, &format!("waiting for the instance refresh of {group}"));
        let waited = release::wait_for_refresh(&mut latest, &mut self.clock(), deadline, POLL_INTERVAL, &mut |line| {
            progress.line(line)
        })
        .map_err(|e| anyhow::anyhow!("{who}: {e}"))?;
        drop(progress);
        match waited {
            release::RefreshWait::NoneRunning => Ok(()),
            release::RefreshWait::Ended(refresh) => {
                if refresh.status != "Successful" {
                    println!("{who} | warning: the instance refresh did not succeed; the release goes to the instances {group} has now");
                }
                Ok(())
            }
            release::RefreshWait::StillRunning(refresh) => anyhow::bail!(
                "{who}: {} still runs after {} minute(s) (deployment.timeout_minutes); no deployment was started: release with `cargo xtask deploy {} {} --software-only` when it ends",
                refresh.id,
                self.env.deployment.timeout_minutes,
                self.customer.name,
                self.env.name
            ),
        }
    }

    /// Follows the deployment (and the rollback CodeDeploy starts after a failure) to its end.
    fn follow(&self, id: &str) -> anyhow::Result<bool> {
        let who = self.who();
        let deadline = Duration::from_secs(u64::from(self.env.deployment.timeout_minutes) * 60);
        let mut source = AwsStatus {
            runtime: self.runtime,
            clients: self.clients,
            deployment_id: id.to_string(),
            roll_back_on_stop: self.env.deployment.auto_rollback,
        };
        let interrupted = || self.interrupts.interrupted();
        let progress = crate::progress::Progress::start(&who, &format!("deployment {id}"));
        let outcome =
            release::follow(&mut source, &mut self.clock(), deadline, POLL_INTERVAL, &interrupted, &mut |line| {
                progress.line(line)
            })
            .map_err(|e| anyhow::anyhow!("{who}: following deployment {id}: {e}"))?;
        drop(progress);
        let (mut snapshot, what) = match outcome {
            Outcome::Succeeded => {
                println!("{who} | deployment {id} succeeded");
                return Ok(true);
            }
            Outcome::Failed(s) => (s, "failed"),
            Outcome::TimedOut(s) => (s, "did not finish in time and was stopped"),
            Outcome::Stopped(s) => (s, "was stopped"),
            Outcome::Interrupted(s) => (s, "was stopped on Ctrl-C"),
        };
        if let Some((rollback_id, status)) = snapshot.rollback.clone() {
            if !release::DeploymentStatus::from(status.as_str()).is_final() {
                println!("{who} | following the automatic rollback {rollback_id}");
                let mut source = AwsStatus {
                    runtime: self.runtime,
                    clients: self.clients,
                    deployment_id: rollback_id.clone(),
                    roll_back_on_stop: false,
                };
                // A rollback is not stopped on Ctrl-C: a second one leaves it to finish.
                let progress = crate::progress::Progress::start(&who, &format!("rollback {rollback_id}"));
                let ended =
                    release::follow(&mut source, &mut self.clock(), deadline, POLL_INTERVAL, &|| false, &mut |line| {
                        progress.line(&format!("rollback {line}"))
                    })
                    .map_err(|e| anyhow::anyhow!("{who}: following rollback {rollback_id}: {e}"))?;
                drop(progress);
                snapshot.rollback = Some((rollback_id, outcome_status(&ended)));
            }
        }
        report_failure(&who, id, what, &snapshot);
        Ok(false)
    }

    pub(crate) fn clock(&self) -> Clock<'_> {
        Clock { time: SystemClock::start(), interrupts: self.interrupts }
    }
}

/// What `prepare` found: a revision to deploy, nothing to do (and why), or a build that failed
/// (the output said why).
pub enum Prepared {
    Ship(PlannedRevision),
    Nothing(String),
    BuildFailed,
}

/// A revision on disk, ready to be deployed, and what its deployment says; or one CodeBuild
/// builds when it is shipped (`pending`; its `sha256` and `path` are empty until then).
pub struct PlannedRevision {
    pub path: std::path::PathBuf,
    pub sha256: String,
    pub commit: String,
    description: String,
    /// Deployed by `rollback`: not a release.
    pub rollback: bool,
    pending: Option<Box<PendingBuild>>,
}

impl PlannedRevision {
    /// The SHA-256 of the inputs of the build that makes it, when CodeBuild makes it at `ship`.
    pub fn build_inputs(&self) -> Option<&str> {
        self.pending.as_ref().map(|p| p.inputs_sha256.as_str())
    }
}

/// How a `ship` ended.
pub struct Shipped {
    /// Built (when it was to be), deployed and followed to success.
    pub succeeded: bool,
    /// The SHA-256 of the revision CodeBuild built for it.
    pub built: Option<String>,
}

/// A revision on disk, ready to be released.
pub struct Revision<'a> {
    pub path: &'a Path,
    pub sha256: &'a str,
    /// The commit it was built from (empty when not known here: a rollback).
    commit: &'a str,
    description: String,
    /// Deployed by `rollback`: not a release.
    pub rollback: bool,
}

/// What a deployment's description says: the commit and the revision.
fn description(record: &BuildRecord) -> String {
    release::release_description(
        &record.customer,
        &record.environment,
        &record.commit,
        &record.repository,
        &record.git_ref,
        &record.sha256,
    )
}

fn outcome_status(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Succeeded => "Succeeded".into(),
        Outcome::Failed(s) | Outcome::Stopped(s) => s.status.to_string(),
        Outcome::TimedOut(s) => format!("{} (did not finish in time)", s.status),
        Outcome::Interrupted(s) => format!("{} (stopped on Ctrl-C)", s.status),
    }
}

/// Wall-clock time whose sleeps end early when Ctrl-C is pressed, so that the stop is asked at
/// once rather than at the next poll.
pub(crate) struct Clock<'a> {
    time: SystemClock,
    interrupts: &'a dyn Interrupts,
}

impl release::Clock for Clock<'_> {
    fn elapsed(&self) -> Duration {
        self.time.elapsed()
    }

    fn sleep(&mut self, duration: Duration) {
        let presses = self.interrupts.presses();
        let end = std::time::Instant::now() + duration;
        while self.interrupts.presses() == presses {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// The failure on stderr: what failed where, the log tail, and the rollback.
pub fn report_failure(who: &str, id: &str, what: &str, snapshot: &Snapshot) {
    eprintln!("error: {who}: deployment {id} {what}");
    for line in release::explain(snapshot) {
        eprintln!("  {line}");
    }
}
