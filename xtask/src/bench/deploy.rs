//! `cargo xtask bench deploy`: a deploy of `acme prod` with nothing to do, against the local
//! emulator: its API calls (reads and mutating, counted by the SDK call log) and its wall time
//! as a process, side by side with the same reads made by the AWS CLI one process per call, as a
//! shell-script pipeline would.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args;
use vending::plan::{Kind, Resource};
use vending_aws::calls::CallLog;
use vending_aws::infra::{self, ApplyOptions, Clients, Planned};

use crate::validate::{load_fleet, Selection};

/// The AWS CLI the baseline runs (the Python package `awscli`), pinned.
const AWSCLI_VERSION: &str = "1.46.3";

#[derive(Args)]
pub struct BenchDeploy {
    /// Timed runs of each kind.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Installs the pinned AWS CLI into `target/awscli-venv` unless it is there; returns `aws`.
fn ensure_awscli(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join("target/awscli-venv");
    let aws = venv.join("bin/aws");
    let marker = venv.join(format!(".installed-awscli-{AWSCLI_VERSION}"));
    if marker.is_file() && aws.is_file() {
        return Ok(aws);
    }
    let sh = xshell::Shell::new()?;
    eprintln!("installing awscli=={AWSCLI_VERSION} into {} (first use only)", venv.display());
    xshell::cmd!(sh, "python3 -m venv {venv}").quiet().run().context("cannot create a Python virtual environment")?;
    let pip = venv.join("bin/pip");
    let requirement = format!("awscli=={AWSCLI_VERSION}");
    xshell::cmd!(sh, "{pip} install --quiet --disable-pip-version-check {requirement}").quiet().run()?;
    std::fs::write(&marker, b"")?;
    Ok(aws)
}

impl BenchDeploy {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        ensure!(self.runs > 0, "--runs must be at least 1");
        let aws = ensure_awscli(&crate::project_root())?;
        let moto = vending_emulator::Moto::start(&crate::project_root())?;
        let endpoint = moto.endpoint();
        let project = crate::bench::git_copy(root, "target/bench-deploy")?;
        let exe = std::env::current_exe()?;
        // Production waits for a second person: two people in the emulator.
        let requester = vending_emulator::create_identity(&crate::project_root(), &endpoint, "requester")?;
        let approver = vending_emulator::create_identity(&crate::project_root(), &endpoint, "approver")?;
        let as_who = |who: &vending_emulator::Identity, args: &[&str]| -> anyhow::Result<(f64, std::process::Output)> {
            let started = Instant::now();
            let out = Command::new(&exe)
                .arg("--root")
                .arg(&project)
                .args(args)
                .env("AWS_ENDPOINT_URL", &endpoint)
                .env("AWS_ACCESS_KEY_ID", &who.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &who.secret_access_key)
                .output()?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            Ok((ms, out))
        };
        let xtask = |args: &[&str]| -> anyhow::Result<(f64, std::process::Output)> {
            let (ms, out) = as_who(&requester, args)?;
            ensure!(out.status.success(), "xtask {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            Ok((ms, out))
        };
        xtask(&["platform", "deploy", "--local"])?;
        xtask(&["ami", "acme", "prod", "--local"])?;
        let (_, asked) = as_who(&requester, &["deploy", "acme", "prod", "--local", "--infra-only", "--no-wait"])?;
        ensure!(
            asked.status.code() == Some(3),
            "the first deploy should wait for approval: {}",
            String::from_utf8_lossy(&asked.stderr)
        );
        let (_, approved) = as_who(&approver, &["approve", "acme", "prod", "--local", "--yes"])?;
        ensure!(approved.status.success(), "approve failed: {}", String::from_utf8_lossy(&approved.stderr));
        let id = String::from_utf8_lossy(&asked.stdout)
            .lines()
            .find_map(|l| {
                l.split("request ")
                    .nth(1)
                    .filter(|_| l.contains("waits for a decision"))
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string)
            })
            .context("no request id in the output")?;
        xtask(&["deploy", "acme", "prod", "--local", "--infra-only", "--approval", &id])?;

        // The calls a deploy with nothing to do makes, counted in process on the same code path.
        let loaded = load_fleet(&project, &Selection { customer: Some("acme".into()), env: Some("prod".into()) })?;
        let fleet = loaded.fleet.context("the sample fleet does not validate")?;
        let (customer, env) = fleet.environment("acme", "prod").context("no acme/prod")?;
        let runtime = vending_aws::runtime()?;
        let target = vending_aws::Target::Local { endpoint: endpoint.clone() };
        let config = runtime.block_on(vending_aws::sdk_config(&fleet.platform.region, &target));
        let log = CallLog::default();
        let clients = Clients::new(&config, true, Some(&log));
        let mut planned = runtime.block_on(async {
            let stack = infra::environment_stack(&clients, &fleet.platform, customer, env, true).await?;
            infra::plan(&clients, stack).await
        })?;
        let applied = runtime.block_on(infra::apply(&clients, &mut planned, &ApplyOptions::default()))?;
        ensure!(applied.changed.is_empty(), "the deploy was not a no-op: {:?}", applied.changed);
        let calls = log.calls();
        let mutating = log.mutating();

        // The same reads with the AWS CLI, one process per call.
        let commands = cli_reads(&planned, &fleet.platform.state_bucket)?;
        let mut expected: Vec<String> = calls.iter().map(|c| operation(c)).collect();
        let mut scripted: Vec<String> = commands.iter().map(|c| c[1].replace('-', "").to_lowercase()).collect();
        expected.sort();
        scripted.sort();
        ensure!(
            expected == scripted,
            "the CLI baseline does not make the same reads:\n tool {expected:?}\n cli  {scripted:?}"
        );

        let (mut tool, mut cli) = (Vec::new(), Vec::new());
        for i in 0..=self.runs {
            let (ms, out) = xtask(&["deploy", "acme", "prod", "--local", "--infra-only"])?;
            ensure!(String::from_utf8_lossy(&out.stdout).contains("acme/prod: no changes"), "not a no-op");
            let started = Instant::now();
            for command in &commands {
                let out = Command::new(&aws)
                    .args(command)
                    .env("AWS_ENDPOINT_URL", &endpoint)
                    .env("AWS_DEFAULT_REGION", &fleet.platform.region)
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .output()?;
                ensure!(out.status.success(), "aws {command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let cli_ms = started.elapsed().as_secs_f64() * 1000.0;
            // The first round warms caches and is not counted.
            if i > 0 {
                tool.push(ms);
                cli.push(cli_ms);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (tool_median, cli_median) = (median(&mut tool), median(&mut cli));
        println!(
            "no-op `xtask deploy acme prod --local --infra-only`: {} API calls ({} reads, {} mutating)",
            calls.len(),
            calls.len() - mutating.len(),
            mutating.len()
        );
        println!("  as a process: median {tool_median:.0} ms over {} runs", tool.len());
        println!(
            "the same {} reads with the AWS CLI {AWSCLI_VERSION}, one process each: median {cli_median:.0} ms over {} runs",
            commands.len(),
            cli.len()
        );
        println!("speed-up: {:.1}× (target: at least 20×, zero mutating calls)", cli_median / tool_median);
        drop(moto);
        Ok(ExitCode::SUCCESS)
    }
}

/// `S3.HeadBucket` → `headbucket`, to compare with the CLI's `head-bucket`.
fn operation(call: &str) -> String {
    call.rsplit('.').next().unwrap_or(call).to_lowercase()
}

/// The AWS CLI commands that read what a plan of this stack reads, in its order.
fn cli_reads(planned: &Planned, state_bucket: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let stack = &planned.stack;
    let (label, resolved) = (&stack.label, &stack.resolved);
    let (customer, env) = label.split_once('/').context("an environment stack")?;
    let id = |kind: Kind, name: &str| -> anyhow::Result<String> {
        planned
            .live
            .found
            .get(&(kind, name.to_string()))
            .map(|f| f.id.clone())
            .with_context(|| format!("{name} was not found"))
    };
    let mut out: Vec<Vec<&str>> = Vec::new();
    let record = format!("amis/{customer}/{env}/current.json");
    let vpc_filter = format!("Name=vpc-id,Values={}", resolved.vpc_id);
    out.push(vec!["s3api", "get-object", "--bucket", state_bucket, "--key", &record, "/dev/null"]);
    out.push(vec!["ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true"]);
    out.push(vec!["ec2", "describe-subnets", "--filters", &vpc_filter, "Name=default-for-az,Values=true"]);
    for _ in 0..2 {
        out.push(vec!["ec2", "describe-security-groups", "--filters", &vpc_filter, "Name=group-name,Values=default"]);
    }
    out.push(vec!["sts", "get-caller-identity"]);
    out.push(vec!["acm", "list-certificates", "--certificate-statuses", "ISSUED"]);
    let certificate = resolved.certificate_arn.clone().unwrap_or_default();
    out.push(vec!["acm", "describe-certificate", "--certificate-arn", &certificate]);
    let mut owned: Vec<Vec<String>> = Vec::new();
    for d in &stack.desired {
        let name = d.name.as_str();
        let own = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match &d.resource {
            Resource::Topic(_) => {
                let arn = id(d.kind(), name)?;
                owned.push(own(&["sts", "get-caller-identity"]));
                owned.push(own(&["sns", "get-topic-attributes", "--topic-arn", &arn]));
                owned.push(own(&["sns", "list-subscriptions-by-topic", "--topic-arn", &arn]));
                owned.push(own(&["sns", "list-tags-for-resource", "--resource-arn", &arn]));
            }
            Resource::Bucket(_) => {
                for op in [
                    "head-bucket",
                    "get-bucket-location",
                    "get-bucket-versioning",
                    "get-bucket-encryption",
                    "get-public-access-block",
                    "get-bucket-policy",
                    "get-bucket-tagging",
                ] {
                    owned.push(own(&["s3api", op, "--bucket", name]));
                }
            }
            Resource::TargetGroup(_) => {
                owned.push(own(&["elbv2", "describe-target-groups", "--names", name]));
                owned.push(own(&["elbv2", "describe-tags", "--resource-arns", &id(d.kind(), name)?]));
                owned.push(own(&[
                    "elbv2",
                    "describe-target-group-attributes",
                    "--target-group-arn",
                    &id(d.kind(), name)?,
                ]));
            }
            Resource::LoadBalancer(_) => {
                owned.push(own(&["elbv2", "describe-load-balancers", "--names", name]));
                owned.push(own(&["elbv2", "describe-tags", "--resource-arns", &id(d.kind(), name)?]));
            }
            Resource::HttpListener(_) => {
                let lb = name.rsplit_once(':').map(|(lb, _)| lb).unwrap_or_default();
                owned.push(own(&["elbv2", "describe-listeners", "--load-balancer-arn", &id(Kind::LoadBalancer, lb)?]));
            }
            Resource::HttpsListener(_) => {
                let lb = name.rsplit_once(':').map(|(lb, _)| lb).unwrap_or_default();
                owned.push(own(&["elbv2", "describe-listeners", "--load-balancer-arn", &id(Kind::LoadBalancer, lb)?]));
            }
            Resource::ListenerRule(rule) => {
                let listener_arn = id(Kind::HttpsListener, &rule.listener)?;
                owned.push(own(&["elbv2", "describe-rules", "--listener-arn", &listener_arn]));
                owned.push(own(&["elbv2", "describe-tags", "--resource-arns", &id(d.kind(), name)?]));
            }
            Resource::LaunchTemplate(_) => {
                owned.push(own(&["ec2", "describe-launch-templates", "--launch-template-names", name]));
                owned.push(own(&[
                    "ec2",
                    "describe-launch-template-versions",
                    "--launch-template-id",
                    &id(d.kind(), name)?,
                    "--versions",
                    "$Default",
                ]));
            }
            Resource::AutoScalingGroup(_) => {
                owned.push(own(&["autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", name]));
            }
            Resource::ScalingPolicy(policy) => {
                let group = policy.auto_scaling_group.clone();
                owned.push(own(&[
                    "autoscaling",
                    "describe-policies",
                    "--auto-scaling-group-name",
                    &group,
                    "--policy-names",
                    name,
                ]));
            }
            Resource::DbSubnetGroup(_) => {
                owned.push(own(&["rds", "describe-db-subnet-groups", "--db-subnet-group-name", name]));
                owned.push(own(&["rds", "list-tags-for-resource", "--resource-name", &id(d.kind(), name)?]));
            }
            Resource::Database(_) => {
                owned.push(own(&["rds", "describe-db-instances", "--db-instance-identifier", name]));
            }
            Resource::CodeDeployApplication(_) => {
                owned.push(own(&["deploy", "get-application", "--application-name", name]));
            }
            Resource::DeploymentGroup(_) => {
                let (app, group) = name.split_once('/').context("APP/GROUP")?;
                owned.push(own(&[
                    "deploy",
                    "get-deployment-group",
                    "--application-name",
                    app,
                    "--deployment-group-name",
                    group,
                ]));
            }
            Resource::LogGroup(_) => {
                owned.push(own(&["logs", "describe-log-groups", "--log-group-name-prefix", name]));
                owned.push(own(&["logs", "list-tags-for-resource", "--resource-arn", &id(d.kind(), name)?]));
            }
            Resource::CodeBuildProject(_) => {
                owned.push(own(&["codebuild", "batch-get-projects", "--names", name]));
            }
        }
    }
    let mut commands: Vec<Vec<String>> = out.into_iter().map(|c| c.into_iter().map(str::to_string).collect()).collect();
    commands.extend(owned);
    Ok(commands)
}
