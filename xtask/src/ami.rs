//! `cargo xtask ami <customer> <env>`: builds the environment's AMI with the real Packer from the
//! committed template, takes the AMI ids from Packer's manifest, and records them in the
//! platform's state bucket for deploys. `--show` prints the current record.

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use sha2::{Digest, Sha256};
use vending::ami::{self, AmiRecord};
use vending::config::model::{AmiRef, Platform};
use vending::render::{self, packer::manifest_file, packer::AWS_BUILD, packer::LOCAL_BUILD};
use vending_aws::Target;

use crate::output::{self, Format};
use crate::validate::{load_fleet, Selection};

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct Ami {
    /// The customer (a folder under customers/).
    customer: Option<String>,
    /// The environment (a file customers/CUSTOMER/ENV.toml).
    env: Option<String>,
    #[command(flatten)]
    fleet: crate::fleet::FleetFlags,
    /// Build even with uncommitted changes; the AMI is then tagged Dirty=true.
    #[arg(long)]
    allow_dirty: bool,
    /// Use the local AWS emulator (see `cargo xtask local up`).
    #[arg(long)]
    local: bool,
    /// Print the record as JSON (with --all: the summary).
    #[arg(long)]
    json: bool,
    /// Print the current record instead of building.
    #[arg(long)]
    show: bool,
    #[command(flatten)]
    wait_lock: crate::lock::WaitLock,
}

crate::infra::named_by_option!(Ami);

impl Ami {
    /// `--show`: the environment's AMI record.
    fn show_record(&self, platform: &Platform, target: &Target, record_key: &str) -> anyhow::Result<ExitCode> {
        let runtime = vending_aws::runtime()?;
        let config = runtime.block_on(vending_aws::sdk_config(&platform.region, target));
        let s3 = vending_aws::s3::client(&config, self.local);
        let record: Option<AmiRecord> =
            runtime.block_on(vending_aws::s3::get_json(&s3, &platform.state_bucket, record_key))?;
        let Some(record) = record else {
            bail!(
                "{}/{} has no AMI yet: build one with `cargo xtask ami {} {}{}`",
                self.customer(),
                self.env(),
                self.customer(),
                self.env(),
                crate::infra::local_flag(self.local)
            );
        };
        self.print(&record, &platform.state_bucket, record_key)?;
        Ok(ExitCode::SUCCESS)
    }

    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        if crate::fleet::one_or_fleet(&self.customer, &self.env, &self.fleet)?.is_none() {
            return self.run_fleet(root);
        }
        // git runs while the config loads: a build needs both before `packer validate` can start.
        let git = (!self.show).then(|| {
            let (a, b) = (root.to_path_buf(), root.to_path_buf());
            (
                std::thread::spawn(move || crate::git::head_commit(&a)),
                std::thread::spawn(move || crate::git::changes(&b)),
            )
        });
        let selection = Selection { customer: Some(self.customer().to_string()), env: Some(self.env().to_string()) };
        let loaded = load_fleet(root, &selection)?;
        if loaded.has_errors() {
            output::print(Format::Human, &loaded.diagnostics, &loaded.summary());
            eprintln!("error: the config of {}/{} has errors; fix them before building", self.customer(), self.env());
            return Ok(ExitCode::from(output::EXIT_PROBLEMS));
        }
        let fleet = loaded.fleet.as_ref().context("no platform")?;
        // The selection was validated, so the environment is in the fleet unless it had errors.
        fleet.environment(self.customer(), self.env()).context("the environment did not validate")?;
        let platform = &fleet.platform;
        let who = format!("{}/{}", self.customer(), self.env());

        let target = crate::local::target(root, self.local)?;
        let record_key = AmiRecord::current_key(self.customer(), self.env());

        if self.show {
            return self.show_record(platform, &target, &record_key);
        }

        // The committed template is what gets built; it must be what the config generates.
        let template_path = render::packer_path(self.customer(), self.env());
        let Some(rendered) = committed_template(root, &loaded.files, &template_path)? else {
            return Ok(ExitCode::from(output::EXIT_PROBLEMS));
        };

        let packer = crate::packer::find(root).context(crate::packer::NOT_INSTALLED)?;
        let (commit, dirty) = git.context("no git read")?;
        let (commit, changes) = (crate::parallel::join(commit)?, crate::parallel::join(dirty)?);
        let dirty = !changes.is_empty();
        if dirty && !self.allow_dirty {
            const SHOWN: usize = 10;
            let mut list: Vec<String> = changes.iter().take(SHOWN).map(|c| format!("\n  {c}")).collect();
            if changes.len() > SHOWN {
                list.push(format!("\n  … and {} more", changes.len() - SHOWN));
            }
            bail!(
                "the working tree has uncommitted changes: commit them first, or pass --allow-dirty (the AMI is then tagged Dirty=true):{}",
                list.concat()
            );
        }

        let mut variables = ami::packer_variables(&commit, dirty);
        let data: Vec<String> = variables.iter().map(|(name, _)| name.clone()).collect();
        let data: Vec<&str> = data.iter().map(String::as_str).collect();
        let (only, mut env_vars) = (if self.local { LOCAL_BUILD } else { AWS_BUILD }, Vec::new());
        if let Target::Local { endpoint } = &target {
            local_variables(platform, &target, endpoint, &mut variables, &mut env_vars)?;
            println!("{who} | local mode: building against the emulator at {endpoint} with communicator = \"none\"; provisioners are skipped");
        }

        let work = root.join("target/vending-ami").join(format!("{}-{}", self.customer(), self.env()));
        let run_dir = run_folder(&work)?;
        let manifest_path = run_dir.path().join(manifest_file(self.customer(), self.env()));
        let template = root.join(&template_path);
        println!(
            "{who} | building {} at commit {}{}",
            template_path.display(),
            &commit.id[..12.min(commit.id.len())],
            if dirty { " (dirty tree)" } else { "" }
        );
        // `packer validate` runs while the AWS checks wait on the network.
        // The SDK is set up only now, so that its setup is hidden behind `packer validate` too.
        let runtime = vending_aws::runtime()?;
        let validate = || {
            let started = Instant::now();
            let cache = root.join(crate::packer::CACHE_DIR);
            crate::packer::validate_with(&work, &cache, &packer, &template, only, &variables, &data)
                .map(|ran| ran.then(|| started.elapsed()))
        };
        let (s3, guard) = self.validate_and_lock(root, &runtime, platform, &target, &who, validate)?;
        let guard = match guard {
            Ok(guard) => guard,
            Err(code) => return Ok(code),
        };
        self.report_leftovers(&runtime, &s3, &target, platform, &who)?;
        let build_took = packer_build(run_dir.path(), &packer, &template, only, &variables, &env_vars, &who)?;
        println!("{who} | packer build: finished in {}", duration(build_took));
        let artifact = read_manifest(&manifest_path)?;
        // For a fleet run's summary: the AMI of the platform's region.
        if let Some(ami) = artifact.amis.get(&platform.region) {
            crate::report::note("ami", ami);
        }
        let record = AmiRecord {
            customer: self.customer().to_string(),
            environment: self.env().to_string(),
            amis: artifact.amis,
            commit,
            dirty,
            packer_run_uuid: artifact.packer_run_uuid,
            build: only.to_string(),
            built_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            template_sha256: format!("{:x}", Sha256::digest(rendered.contents.as_bytes())),
        };
        runtime.block_on(write_record(&s3, &guard, &platform.state_bucket, &record_key, &record))?;
        self.print(&record, &platform.state_bucket, &record_key)?;
        Ok(ExitCode::SUCCESS)
    }

    /// Runs `validate` (packer validate) while the AWS side is checked and the environment's lock
    /// taken; `Err(code)` in the second place: the lock is held elsewhere.
    fn validate_and_lock(
        &self,
        root: &Path,
        runtime: &tokio::runtime::Runtime,
        platform: &Platform,
        target: &Target,
        who: &str,
        validate: impl FnOnce() -> anyhow::Result<Option<std::time::Duration>> + Send,
    ) -> anyhow::Result<(vending_aws::s3::Client, Result<crate::lock::Guard, ExitCode>)> {
        std::thread::scope(|scope| {
            let validation = scope.spawn(validate);
            let config = runtime.block_on(vending_aws::sdk_config(&platform.region, target));
            let s3 = vending_aws::s3::client(&config, self.local);
            let ec2 = vending_aws::ec2::client(&config);
            runtime.block_on(prepare_aws(who, &s3, &ec2, platform, self.local))?;
            let clients = vending_aws::infra::Clients::new(&config, self.local, None);
            let locker = crate::lock::Locker { runtime, clients: &clients, bucket: &platform.state_bucket, root };
            let scope = vending::approval::Scope::environment(self.customer(), self.env());
            let guard =
                locker.acquire(&scope, &format!("ami {} {}", self.customer(), self.env()), self.wait_lock.wait_lock)?;
            match validation.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))? {
                Some(took) => println!("{who} | packer validate: passed in {}", duration(took)),
                None => println!("{who} | packer validate: passed before with this template, build and settings (cached; commit text does not change validity)"),
            }
            anyhow::Ok((s3, guard))
        })
    }

    /// `ami --all` (or a selection): every environment's build, as `fleet` runs them.
    fn run_fleet(&self, root: &Path) -> anyhow::Result<ExitCode> {
        if self.show {
            bail!("--show prints one environment's record: name it (`CUSTOMER ENV`)");
        }
        let mut args = Vec::new();
        if self.allow_dirty {
            args.push("--allow-dirty".to_string());
        }
        if let Some(wait) = self.wait_lock.wait_lock {
            args.extend(["--wait-lock".to_string(), humantime::format_duration(wait).to_string()]);
        }
        let verb = crate::fleet::Verb::Ami;
        crate::infra::run_fleet(root, verb, &self.fleet, self.local, args, self.json, false)
    }

    /// What a build of this environment that was killed (kill -9, a lost machine) left in AWS:
    /// Packer's builder instance, temporary key pairs and security groups, an AMI no record names.
    /// Reported with the commands that remove them; not removed here, since `packer_` key pairs
    /// and groups may belong to a build of another environment running now.
    fn report_leftovers(
        &self,
        runtime: &tokio::runtime::Runtime,
        s3: &vending_aws::s3::Client,
        target: &Target,
        platform: &Platform,
        who: &str,
    ) -> anyhow::Result<()> {
        let prefix = format!("amis/{}/{}/history/", self.customer(), self.env());
        let found = runtime.block_on(async {
            let keys = vending_aws::s3::list_keys(s3, &platform.state_bucket, &prefix).await?;
            // History keys end with the AMI id: `<time>-ami-0123.json`.
            let recorded: Vec<String> = keys
                .iter()
                .filter_map(|k| k.strip_suffix(".json")?.rsplit_once("-ami-").map(|(_, id)| format!("ami-{id}")))
                .collect();
            let config = vending_aws::sdk_config(&platform.region, target).await;
            let ec2 = vending_aws::ec2::client(&config);
            vending_aws::ec2::packer_leftovers(&ec2, self.customer(), self.env(), &recorded).await
        })?;
        if found.is_empty() {
            return Ok(());
        }
        let local = if self.local { " (add --endpoint-url for the emulator)" } else { "" };
        println!("{who} | warning: an earlier build that was killed before it ended left these{local}:");
        for id in &found.instances {
            println!("{who} |   builder instance {id}: aws ec2 terminate-instances --instance-ids {id}");
        }
        for id in &found.unrecorded_amis {
            println!("{who} |   AMI {id}, never recorded: aws ec2 deregister-image --image-id {id} (and its snapshot)");
        }
        for name in &found.key_pairs {
            println!("{who} |   Packer key pair {name} (any environment's): aws ec2 delete-key-pair --key-name {name}");
        }
        for id in &found.security_groups {
            println!("{who} |   Packer security group {id} (any environment's): aws ec2 delete-security-group --group-id {id}");
        }
        Ok(())
    }

    fn print(&self, record: &AmiRecord, bucket: &str, key: &str) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(record)?);
            return Ok(());
        }
        println!("AMI of {}/{} (s3://{bucket}/{key}):", record.customer, record.environment);
        for (region, ami) in &record.amis {
            println!("  {region}: {ami}");
        }
        println!(
            "  commit:  {} by {} at {}{}",
            record.commit.id,
            record.commit.author,
            record.commit.time,
            if record.dirty { " (dirty tree)" } else { "" }
        );
        println!("  message: {}", record.commit.subject());
        println!("  built:   {} by {} (packer run {})", record.built_at, record.build, record.packer_run_uuid);
        Ok(())
    }
}

/// Before a build: the state bucket exists (made as `platform deploy` would), and the base image
/// is there (an image named by id on AWS is left to Packer's own check).
async fn prepare_aws(
    who: &str,
    s3: &vending_aws::s3::Client,
    ec2: &vending_aws::ec2::Client,
    platform: &Platform,
    local: bool,
) -> anyhow::Result<()> {
    if vending_aws::s3::ensure_state_bucket(s3, platform).await? {
        println!("{who} | created the state bucket s3://{}", platform.state_bucket);
    }
    let (base_name, owners) = match (&platform.ami.base, local) {
        (_, true) => (platform.ami.local_base_name.clone(), Vec::new()),
        (AmiRef::Filter { name, owners }, false) => (name.clone(), owners.clone()),
        (AmiRef::Id(_), false) => return Ok(()),
    };
    if vending_aws::ec2::find_image(ec2, &base_name, &owners).await?.is_none() {
        let owners = if owners.is_empty() { String::new() } else { format!(" owned by {}", owners.join(", ")) };
        bail!(
            "base AMI `{base_name}`{owners} not found in {}: check {} in customers/platform.toml",
            platform.region,
            if local { "ami.local_base_name" } else { "ami.base" }
        );
    }
    Ok(())
}

/// The variables of a local build: the emulator's endpoint and its base image, named the way the
/// template names it (by a name filter, whose name the local build pins, or by an id, which the
/// emulator does not have, so the id of its image of that name); test credentials unless set.
fn local_variables(
    platform: &Platform,
    target: &Target,
    endpoint: &str,
    variables: &mut Vec<(String, String)>,
    env_vars: &mut Vec<(&'static str, &'static str)>,
) -> anyhow::Result<()> {
    variables.push(("ec2_endpoint".into(), endpoint.to_string()));
    let base = match &platform.ami.base {
        AmiRef::Filter { .. } => ("source_ami_name", platform.ami.local_base_name.clone()),
        AmiRef::Id(_) => {
            let runtime = vending_aws::runtime()?;
            let config = runtime.block_on(vending_aws::sdk_config(&platform.region, target));
            let ec2 = vending_aws::ec2::client(&config);
            let found = runtime.block_on(vending_aws::ec2::find_image(&ec2, &platform.ami.local_base_name, &[]))?;
            let (id, _) = found.with_context(|| {
                format!(
                    "the emulator has no image named `{}`: check ami.local_base_name in customers/platform.toml",
                    platform.ami.local_base_name
                )
            })?;
            ("source_ami", id)
        }
    };
    variables.push((base.0.into(), base.1));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        env_vars.push(("AWS_ACCESS_KEY_ID", "test"));
        env_vars.push(("AWS_SECRET_ACCESS_KEY", "test"));
    }
    Ok(())
}

/// Runs `packer build`; an interrupted or failed build is an error that says what was left.
fn packer_build(
    work: &Path,
    packer: &Path,
    template: &Path,
    only: &str,
    variables: &[(String, String)],
    env_vars: &[(&str, &str)],
    who: &str,
) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let outcome = crate::packer::build(work, packer, template, only, variables, env_vars, who)?;
    if outcome.interrupted {
        bail!("interrupted: packer was asked to stop and clean up its temporary key pair, security group and instance (it exited with {}); no AMI was recorded", outcome.status);
    }
    if !outcome.status.success() {
        bail!(
            "packer build failed ({}); its last lines:\n{}",
            outcome.status,
            outcome.tail.iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(started.elapsed())
}

/// The build's manifest, in the run's own folder (so it can only be this run's).
fn read_manifest(path: &Path) -> anyhow::Result<ami::BuildArtifact> {
    let manifest =
        fs::read_to_string(path).with_context(|| format!("packer wrote no manifest at {}", path.display()))?;
    ami::parse_manifest(&manifest).map_err(|e| anyhow::anyhow!("the manifest {} {e}", path.display()))
}

/// `254 ms` under ten seconds, `12.3 s` above, `4 min 05 s` above a minute (builds on AWS).
pub fn duration(d: std::time::Duration) -> String {
    match d.as_millis() {
        ms @ 0..10_000 => format!("{ms} ms"),
        ms @ 10_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", d.as_secs() / 60, d.as_secs() % 60),
    }
}

/// Records the AMI, only while this run still holds the environment's lock. Each write is a
/// single conditional put: the history entry never over another, the current record only over
/// the version read just before.
async fn write_record(
    s3: &vending_aws::s3::Client,
    guard: &crate::lock::Guard,
    bucket: &str,
    record_key: &str,
    record: &AmiRecord,
) -> anyhow::Result<()> {
    use vending_aws::s3::{get_json_tagged, put_json_if, Condition};
    vending_aws::lock::check_held(s3, &guard.held()).await?;
    if put_json_if(s3, bucket, &record.history_key(), record, &Condition::Absent).await?.is_err() {
        anyhow::bail!("s3://{bucket}/{} exists already with another record", record.history_key());
    }
    let current = get_json_tagged::<serde_json::Value>(s3, bucket, record_key).await?;
    let condition = current.map_or(Condition::Absent, |(_, etag)| Condition::Unchanged(etag));
    if put_json_if(s3, bucket, record_key, record, &condition).await?.is_err() {
        anyhow::bail!("s3://{bucket}/{record_key} was written by another run meanwhile; look with `ami --show`");
    }
    Ok(())
}

/// The committed template, when it is what the config generates (else the error is printed).
fn committed_template<'a>(
    root: &Path,
    files: &'a [render::GeneratedFile],
    template_path: &Path,
) -> anyhow::Result<Option<&'a render::GeneratedFile>> {
    let rendered = files.iter().find(|f| f.path == template_path).context("no template rendered")?;
    if fs::read_to_string(root.join(template_path)).ok().as_deref() != Some(rendered.contents.as_str()) {
        eprintln!("error: {} is stale or missing: run `cargo xtask generate` and commit it", template_path.display());
        return Ok(None);
    }
    Ok(Some(rendered))
}

/// A build folder of this run's own under `work`, so its manifest is its own: two runs of one
/// environment never read each other's AMI (the lock also keeps them apart).
fn run_folder(work: &Path) -> anyhow::Result<tempfile::TempDir> {
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(work)
        .with_context(|| format!("cannot create a build folder in {}", work.display()))
}
