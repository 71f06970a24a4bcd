//! `deploy --local`: the local CodeDeploy agent as the fleet. The emulator keeps the deployment's
//! record (it never runs it: its deployments stay `Created`), so each instance of the Auto Scaling
//! group gets a sandbox folder, `target/vending-local/fleet/<customer>-<env>/<instance-id>/`, and
//! the agent deploys the revision into them one instance at a time. At the first failure it
//! stops and, when the group rolls back, redeploys the last good revision (downloaded from the
//! bucket, and checked against its SHA-256) to the instances it touched, as a CodeDeploy
//! rollback does: under a deployment of its own. Around each instance's hooks it plays
//! CodeDeploy's BlockTraffic and AllowTraffic in the emulator (the instance leaves the target
//! group and comes back), which the local front door follows.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use vending::release::{self, Deployed, DeploymentStatus, InstanceFailure, Snapshot};
use vending_aws::release as aws_release;
use vending_runners::agent::{self, Deployment};

use crate::ship::{Release, Revision};

pub struct LocalFleet<'a> {
    pub release: &'a Release<'a>,
    /// The deployment group's id in the emulator (the agent keeps its state under it).
    pub group_id: &'a str,
}

/// How long an instance drains after BlockTraffic before its app is stopped.
const LOCAL_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How many successful deployments the local fleet remembers.
const HISTORY_LIMIT: usize = 20;

/// A successful deployment of the local fleet (the last one is what CodeDeploy's deployment group
/// records as `lastSuccessfulDeployment`, which the emulator never sets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct LastGood {
    deployment_id: String,
    sha256: String,
    key: String,
    instances: Vec<String>,
    /// Deployed by `rollback`: not a release.
    #[serde(default)]
    rollback: bool,
}

/// How one pass of the agent over the instances ended.
enum Pass {
    Succeeded,
    /// The index of the instance that failed, and what the agent said.
    Failed(usize, agent::Failure),
    /// Ctrl-C was pressed: the pass stopped before the instance at this index.
    Interrupted(usize),
}

impl LocalFleet<'_> {
    fn dir(&self) -> PathBuf {
        let r = self.release;
        r.root.join("target/vending-local/fleet").join(format!("{}-{}", r.customer.name, r.env.name))
    }

    fn history_path(&self) -> PathBuf {
        self.dir().join("successful.json")
    }

    /// The successful deployments, oldest first (at most `HISTORY_LIMIT`).
    fn successful(&self) -> Vec<LastGood> {
        let Ok(text) = fs::read_to_string(self.history_path()) else { return Vec::new() };
        serde_json::from_str(&text).unwrap_or_default()
    }

    fn last_good(&self) -> Option<LastGood> {
        self.successful().pop()
    }

    fn record_success(&self, record: LastGood) -> anyhow::Result<()> {
        let mut all = self.successful();
        all.push(record);
        let drop = all.len().saturating_sub(HISTORY_LIMIT);
        all.drain(..drop);
        let path = self.history_path();
        vending::project::write_atomic(&path, &serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The running revision's key and the successful deployments (what CodeDeploy keeps as the
    /// group's history), for `rollback`.
    pub fn history(&self) -> (Option<String>, Vec<Deployed>) {
        let all = self.successful();
        let current = all.last().map(|last| last.key.clone());
        let deployed = all
            .into_iter()
            .enumerate()
            .map(|(at, d)| Deployed {
                id: d.deployment_id,
                created: i64::try_from(at).unwrap_or(i64::MAX),
                key: d.key,
                rollback: d.rollback,
            })
            .collect();
        (current, deployed)
    }

    /// The instances of the group, in the emulator.
    pub fn instances(&self) -> anyhow::Result<Vec<String>> {
        let instances = self
            .release
            .runtime
            .block_on(aws_release::group_instances(self.release.clients, &self.release.env.names.auto_scaling_group))?;
        if instances.is_empty() {
            anyhow::bail!(
                "{}: Auto Scaling group {} has no instances to deploy to (capacity.min and desired are 0?)",
                self.release.who(),
                &self.release.env.names.auto_scaling_group
            );
        }
        Ok(instances)
    }

    /// The deployment that put this revision on exactly these instances, when the last one did.
    pub fn deployed(&self, sha256: &str, instances: &[String]) -> Option<String> {
        let last = self.last_good()?;
        let all_there = instances.iter().all(|i| self.dir().join(i).is_dir());
        (last.sha256 == sha256 && last.instances == instances && all_there).then_some(last.deployment_id)
    }

    fn agent_pass(
        &self,
        deployment_id: &str,
        revision: &Path,
        instances: &[String],
        label: &str,
        stoppable: bool,
    ) -> anyhow::Result<Pass> {
        let deployment = Deployment {
            id: deployment_id.to_string(),
            application: self.release.env.names.codedeploy_application.clone(),
            group_name: self.release.env.names.deployment_group.clone(),
            group_id: self.group_id.to_string(),
            ignore_application_stop_failures: self.release.ignore_application_stop_failures,
        };
        let total = u32::try_from(instances.len()).unwrap_or(u32::MAX);
        for (index, instance) in instances.iter().enumerate() {
            if stoppable && self.release.interrupts.interrupted() {
                return Ok(Pass::Interrupted(index));
            }
            let done = u32::try_from(index).unwrap_or(u32::MAX);
            let progress = Snapshot {
                status: DeploymentStatus::InProgress,
                instances_done: done,
                instances_total: total,
                current_event: Some(format!("local agent on {instance}")),
                ..Snapshot::default()
            };
            println!("{} | {label}{}", self.release.who(), release::progress(&progress));
            let sandbox = self.dir().join(instance);
            let who = self.release.who();
            let target_group = &self.release.env.names.target_group;
            // CodeDeploy's part of a deployment with traffic control: the instance leaves its
            // target group before its app stops and comes back once it is validated, so the
            // load balancer (and the local front door) sends requests to the others meanwhile.
            let mut traffic = |step: agent::Traffic| {
                let serve = step == agent::Traffic::Allow;
                let call = aws_release::set_traffic(self.release.clients, target_group, instance, serve);
                self.release.runtime.block_on(call)?;
                let done = if serve { "AllowTraffic: registered in" } else { "BlockTraffic: deregistered from" };
                println!("{who} | {instance} | [codedeploy] {done} {target_group}");
                if !serve {
                    // Requests already on their way to it finish before its app stops: on AWS
                    // the target group's deregistration delay, here a short drain.
                    std::thread::sleep(LOCAL_DRAIN);
                }
                Ok(())
            };
            let report = agent::deploy_with_traffic(
                &sandbox,
                revision,
                &deployment,
                &mut |line| println!("{who} | {instance} | {line}"),
                &mut traffic,
            )
            .with_context(|| format!("{who}: the local agent on {instance}"))?;
            if let Some(failure) = report.failure {
                return Ok(Pass::Failed(index, failure));
            }
        }
        // Ctrl-C during the last instance's hooks: said to stop (and roll back), so it does, as
        // CodeDeploy does with a deployment stopped before it ended.
        if stoppable && self.release.interrupts.interrupted() {
            return Ok(Pass::Interrupted(instances.len()));
        }
        Ok(Pass::Succeeded)
    }

    /// Deploys the revision to every instance, one at a time. `Ok(false)`: it failed, and the
    /// error output said where and how the rollback went.
    pub fn deploy(
        &self,
        deployment_id: &str,
        revision: &Revision,
        key: &str,
        instances: &[String],
    ) -> anyhow::Result<bool> {
        let who = &self.release.who();
        println!(
            "{who} | local fleet: the local CodeDeploy agent runs the hooks in {} (one sandbox per instance, one \
             instance at a time); the emulator's deployment record stays Created",
            self.dir().display()
        );
        let total = u32::try_from(instances.len()).unwrap_or(u32::MAX);
        let pass = self.agent_pass(deployment_id, revision.path, instances, "", true)?;
        // Hook scripts run in process groups of their own: Ctrl-C reaches only this command,
        // and the hook at work finishes, as the first press says.
        let interrupted = self.release.interrupts.interrupted();
        let (touched, failure) = match pass {
            Pass::Succeeded => {
                let record = LastGood {
                    deployment_id: deployment_id.to_string(),
                    sha256: revision.sha256.to_string(),
                    key: key.to_string(),
                    instances: instances.to_vec(),
                    rollback: revision.rollback,
                };
                self.record_success(record)?;
                let done = Snapshot {
                    status: DeploymentStatus::Succeeded,
                    instances_done: total,
                    instances_total: total,
                    ..Snapshot::default()
                };
                println!("{who} | {}", release::progress(&done));
                println!("{who} | deployment {deployment_id} succeeded on the local fleet");
                return Ok(true);
            }
            Pass::Failed(index, failure) => (index + 1, Some((&instances[index], failure))),
            Pass::Interrupted(index) => (index, None),
        };
        let error = match &failure {
            Some((instance, failure)) => format!(
                "HEALTH_CONSTRAINTS: the deployment stopped at {instance}: {} failed (the local agent's script error code {})",
                failure.event, failure.code
            ),
            None => format!("stopped on Ctrl-C after {touched} of {total} instance(s)"),
        };
        let mut snapshot = Snapshot {
            status: if interrupted { DeploymentStatus::Stopped } else { DeploymentStatus::Failed },
            instances_done: u32::try_from(touched).unwrap_or(u32::MAX),
            instances_total: total,
            current_event: None,
            error: Some(error),
            instance_failures: failure
                .map(|(instance, failure)| InstanceFailure {
                    instance: instance.clone(),
                    event: failure.event.to_string(),
                    message: failure.message.clone(),
                    log_tail: failure.log_tail.join("\n"),
                })
                .into_iter()
                .collect(),
            rollback: None,
        };
        println!("{who} | {}", release::progress(&snapshot));
        if self.release.env.deployment.auto_rollback && touched > 0 {
            snapshot.rollback = self.roll_back(deployment_id, &instances[..touched])?;
        }
        let what = if interrupted { "was stopped on Ctrl-C" } else { "failed" };
        crate::ship::report_failure(who, deployment_id, what, &snapshot);
        if snapshot.rollback.is_none() {
            let why = if self.release.env.deployment.auto_rollback {
                "there is no earlier successful revision to roll back to"
            } else {
                "deployment.auto_rollback is off"
            };
            eprintln!("  ({why})");
        }
        Ok(false)
    }

    /// Redeploys the last good revision to the instances the failed deployment touched, under a
    /// rollback deployment of its own. `None` when there is nothing to roll back to.
    fn roll_back(&self, failed_id: &str, touched: &[String]) -> anyhow::Result<Option<(String, String)>> {
        let Some(last) = self.last_good() else { return Ok(None) };
        let who = &self.release.who();
        let path = self.dir().join(format!("rollback-{}.zip", &last.sha256[..16]));
        let bucket = &self.release.env.names.bucket;
        self.release
            .runtime
            .block_on(aws_release::download(self.release.clients, bucket, &last.key, &last.sha256, &path))
            .with_context(|| {
                format!("{who}: cannot roll back {failed_id} (deploy a good revision again to replace it)")
            })?;
        let revision =
            aws_release::Revision { bucket: self.release.env.names.bucket.clone(), key: last.key.clone(), e_tag: None };
        let description = format!("{who}: automatic rollback of {failed_id} to revision sha256 {}", last.sha256);
        let id = self.release.runtime.block_on(aws_release::create_deployment(
            self.release.clients,
            &self.release.env.names.codedeploy_application,
            &self.release.env.names.deployment_group,
            &revision,
            &description,
            self.release.ignore_application_stop_failures,
        ))?;
        println!(
            "{who} | automatic rollback {id}: revision {} (from {}) to {} instance(s)",
            &last.sha256[..16],
            last.deployment_id,
            touched.len()
        );
        let status = match self.agent_pass(&id, &path, touched, "rollback ", false)? {
            Pass::Succeeded => "Succeeded".to_string(),
            Pass::Failed(index, failure) => {
                format!("Failed on {}: {}: {}", touched[index], failure.event, failure.message)
            }
            Pass::Interrupted(index) => format!("Stopped after {index} instance(s)"),
        };
        println!("{who} | rollback {id}: {status}");
        Ok(Some((id, status)))
    }
}

/// What the local fleet of one environment (`fleet/<customer>-<env>/`) runs: per instance of its
/// last successful deployment, the revision's SHA-256 and the loopback port of its app.
pub fn running(dir: &Path) -> Vec<(String, String, u16)> {
    let Ok(text) = fs::read_to_string(dir.join("successful.json")) else { return Vec::new() };
    let Some(last) = serde_json::from_str::<Vec<LastGood>>(&text).ok().and_then(|mut all| all.pop()) else {
        return Vec::new();
    };
    last.instances
        .iter()
        .filter_map(|instance| {
            let port = agent::local_port(&dir.join(instance))?;
            Some((instance.clone(), last.sha256.clone(), port))
        })
        .collect()
}
