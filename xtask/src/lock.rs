//! The lock a command holds while it changes a customer environment (`ami`, `deploy`,
//! `rollback`) or the platform (`platform deploy`), and `cargo xtask lock status|release`.
//!
//! A `Guard` holds the lock: a thread renews it three times per `TTL` and releases it
//! when the guard is dropped. A second operator is refused with the holder's name, command and
//! start (exit 6), or waits with `--wait-lock DURATION`. A lock left by a run that crashed is taken
//! over (logged in the audit log, and the new holder is told what that run was doing): at once when
//! that run was on this host and its process is gone, else when the lock expires.

use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use clap::{Args, Subcommand};
use vending::approval::{AuditEvent, Scope};
use vending::lock::{Lock, Standing, TTL};
use vending_aws::approval::{entropy, Store};
use vending_aws::lock::Taken;

/// Another run holds the lock (README.md, "Exit codes").
pub const EXIT_LOCKED: u8 = 6;

/// How long a lock stands without renewal: `vending::lock::TTL`, or `VENDING_LOCK_TTL_SECONDS`
/// (at least 3) for an operator whose network needs longer, and for the test that proves renewal
/// in seconds. It is renewed three times within it.
fn ttl() -> Duration {
    std::env::var("VENDING_LOCK_TTL_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(TTL, |seconds| Duration::from_secs(seconds.max(3)))
}

/// How often a run waiting for a lock looks again.
const POLL: Duration = Duration::from_secs(2);

/// The lock, held until dropped.
pub struct Guard {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    held: vending_aws::lock::Held,
}

impl Guard {
    /// What `infra::apply` checks before each change (and a command before each step).
    pub fn held(&self) -> vending_aws::lock::Held {
        self.held.clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing the channel tells the renewing thread to release the lock and end.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether a process of this machine still runs, started when the lock says, and is this tool
/// (a reused pid is not).
pub fn alive(pid: u32, started: u64) -> bool {
    let Ok(pid_t) = i32::try_from(pid) else { return false };
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    let exists =
        unsafe { libc::kill(pid_t, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists
        && (started == 0 || start_time(pid) == Some(started))
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_or(true, |cmdline| String::from_utf8_lossy(&cmdline).contains("xtask"))
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This process, as a lock records it: host name, the running system and pid namespace (boot id
/// and namespace inode), pid and start time.
pub fn this_process() -> vending::lock::Process {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    let machine = if boot.trim().is_empty() { String::new() } else { format!("{}/{namespace}", boot.trim()) };
    let pid = std::process::id();
    vending::lock::Process { host: host(), machine, pid, started: start_time(pid).unwrap_or(0) }
}

/// This machine's name.
pub fn host() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `len` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    if ok {
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    } else {
        "unknown-host".into()
    }
}

/// What a command needs to take a lock.
pub struct Locker<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub clients: &'a vending_aws::infra::Clients,
    pub bucket: &'a str,
    pub root: &'a Path,
}

impl Locker<'_> {
    /// The run that holds the scope's lock now, if another does (a read only). A run with nothing
    /// to do takes no lock, but it does not report "no changes" past a run that may be changing
    /// things.
    pub fn holder(&self, scope: &Scope) -> anyhow::Result<Option<Lock>> {
        let found = self.runtime.block_on(vending_aws::lock::read(&self.clients.s3, self.bucket, scope))?;
        Ok(found.map(|(lock, _)| lock).filter(|lock| {
            !lock.released && lock.standing(SystemTime::now(), &this_process().machine, alive) == Standing::Held
        }))
    }

    /// Waits, up to `wait`, until no other run holds the scope's lock, without taking it;
    /// `Some(code)` when it is still held (exit 6, said as `acquire` says it).
    pub fn wait_free(&self, scope: &Scope, wait: Option<Duration>) -> anyhow::Result<Option<ExitCode>> {
        let label = scope.label();
        let started = Instant::now();
        let mut progress: Option<vending_release::progress::Progress> = None;
        loop {
            let Some(holder) = self.holder(scope)? else { return Ok(None) };
            if crate::interrupt::interrupted() {
                drop(progress);
                eprintln!("{label}: interrupted while waiting for the lock: nothing was changed");
                return Ok(Some(ExitCode::from(130)));
            }
            match wait {
                Some(limit) if started.elapsed() < limit => {
                    if progress.is_none() {
                        let waiting =
                            progress.insert(vending_release::progress::Progress::start(&label, "waiting for the lock"));
                        waiting.line(&format!(
                            "nothing to change here, but another run holds the lock: waiting for the lock, held by {}, then reading again",
                            holder.describe()
                        ));
                    }
                    std::thread::sleep(POLL);
                }
                _ => {
                    drop(progress);
                    let waited = if wait.is_some() { " (waited as long as --wait-lock allows)" } else { "" };
                    eprintln!(
                        "error: {label} is locked{waited} by {}: it may be changing what this run read, so nothing is reported or changed. Wait for it with --wait-lock 15m, or see `cargo xtask lock status {}`",
                        holder.describe(),
                        scope.arguments()
                    );
                    return Ok(Some(ExitCode::from(EXIT_LOCKED)));
                }
            }
        }
    }

    /// Takes the scope's lock for `command`, waiting up to `wait` for a holder to finish;
    /// `Err(code)` when it is held (exit 6).
    pub fn acquire(
        &self,
        scope: &Scope,
        command: &str,
        wait: Option<Duration>,
    ) -> anyhow::Result<Result<Guard, ExitCode>> {
        let label = scope.label();
        let me = self.runtime.block_on(vending_aws::identity::caller(&self.clients.sts))?.arn;
        let commit = crate::git::head_commit(self.root).map(|c| c.id).unwrap_or_default();
        let run = format!("{:016x}", entropy());
        let (started, mut said) = (Instant::now(), None::<Instant>);
        let mut progress: Option<vending_release::progress::Progress> = None;
        loop {
            let lock = Lock::new(&me, &this_process(), &run, command, &commit, SystemTime::now(), ttl());
            let taken = self.runtime.block_on(vending_aws::lock::take(
                &self.clients.s3,
                self.bucket,
                scope,
                &lock,
                SystemTime::now(),
                alive,
            ))?;
            match taken {
                Taken::Taken { etag, replaced } => {
                    drop(progress.take());
                    if let Some((old, standing)) = replaced {
                        self.took_over(scope, &me, &old, &standing)?;
                    }
                    return Ok(Ok(self.hold(scope.clone(), lock, etag)));
                }
                Taken::Busy(holder) => {
                    // Ctrl-C while waiting (after an approval, Ctrl-C is handled): stop here.
                    if crate::interrupt::interrupted() {
                        drop(progress.take());
                        eprintln!("{label}: interrupted while waiting for the lock: nothing was changed");
                        return Ok(Err(ExitCode::from(130)));
                    }
                    let waited = started.elapsed();
                    match wait {
                        Some(limit) if waited < limit => {
                            if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                                let waiting = progress.get_or_insert_with(|| {
                                    vending_release::progress::Progress::start(&label, "waiting for the lock")
                                });
                                waiting.line(&format!("waiting for the lock, held by {}", holder.describe()));
                                said = Some(Instant::now());
                            }
                            std::thread::sleep(POLL);
                        }
                        _ => {
                            drop(progress.take());
                            let waited = if wait.is_some() { " (waited as long as --wait-lock allows)" } else { "" };
                            eprintln!(
                                "error: {label} is locked{waited} by {}: nothing was changed. Wait for it with --wait-lock 15m, or see `cargo xtask lock status {}`",
                                holder.describe(),
                                scope.arguments()
                            );
                            return Ok(Err(ExitCode::from(EXIT_LOCKED)));
                        }
                    }
                }
            }
        }
    }

    fn took_over(&self, scope: &Scope, me: &str, old: &Lock, standing: &Standing) -> anyhow::Result<()> {
        let why = match standing {
            Standing::Stale => "its process is gone from this host",
            _ => "it expired: the run that held it crashed or lost its network",
        };
        println!(
            "{} | took over the lock of {} ({why}); that run may have stopped half-way: this run repairs what it left",
            scope.label(),
            old.describe()
        );
        let detail = format!("{why}; it was held by {}", old.describe());
        let event = AuditEvent::new("lock-taken-over", me, None, detail, SystemTime::now());
        let store = Store { s3: &self.clients.s3, bucket: self.bucket };
        self.runtime.block_on(store.audit(scope, &event))
    }

    /// Holds the lock: a thread renews it and releases it when the guard goes. The thread calls
    /// AWS through the command's runtime (its worker keeps the clients' connections served while
    /// the command's thread is busy); a lock lost meanwhile is found by the checks before each
    /// change (`vending_aws::lock::check_held`).
    fn hold(&self, scope: Scope, lock: Lock, etag: String) -> Guard {
        let (stop, stopped) = mpsc::channel::<()>();
        let (s3, bucket) = (self.clients.s3.clone(), self.bucket.to_string());
        let held = vending_aws::lock::Held { bucket: bucket.clone(), scope: scope.clone(), run: lock.run.clone() };
        let handle = self.runtime.handle().clone();
        let thread = std::thread::spawn(move || {
            let mut etag = etag;
            loop {
                let done = !matches!(stopped.recv_timeout(ttl() / 3), Err(mpsc::RecvTimeoutError::Timeout));
                let next = if done { lock.released() } else { lock.renewed(SystemTime::now(), ttl()) };
                match handle.block_on(vending_aws::lock::rewrite(&s3, &bucket, &scope, &next, &etag)) {
                    Ok(Ok(new)) => etag = new,
                    Ok(Err(_)) => {
                        eprintln!(
                            "warning: {}: the lock was taken by someone else meanwhile (see `cargo xtask lock status {}`); this run stops before its next change",
                            scope.label(),
                            scope.arguments()
                        );
                        return;
                    }
                    Err(e) => eprintln!("warning: {}: cannot renew or release the lock: {e:#}", scope.label()),
                }
                if done {
                    return;
                }
            }
        });
        Guard { stop: Some(stop), thread: Some(thread), held }
    }
}

/// `--wait-lock DURATION` of the commands that take a lock.
#[derive(Args, Clone, Default)]
pub struct WaitLock {
    /// When another run holds the lock, wait for it up to this long (`90s`, `15m`) instead of
    /// exiting 6.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait_lock: Option<Duration>,
}

// Its help line is the command's in lib.rs (one for both builds).
#[derive(Args)]
pub struct LockCommand {
    #[command(subcommand)]
    action: LockAction,
}

#[derive(Subcommand)]
enum LockAction {
    /// Who holds the lock of an environment (or the platform's), for what, since when.
    Status {
        #[command(flatten)]
        target: crate::approval::Target,
        /// Print it as JSON: `{"scope", "locked", "standing", "lock"}`.
        #[arg(long)]
        json: bool,
    },
    /// Release it: your own abandoned one, or with --force anyone's (written to the audit log).
    Release {
        #[command(flatten)]
        target: crate::approval::Target,
        /// Release a lock whose run may still be working (be sure).
        #[arg(long)]
        force: bool,
    },
}

impl LockCommand {
    pub fn run(self, root: &Path) -> anyhow::Result<ExitCode> {
        let (target, release, force, json) = match self.action {
            LockAction::Status { target, json } => (target, false, false, json),
            LockAction::Release { target, force } => (target, true, force, false),
        };
        let fleet = match crate::infra::fleet(root, None, None)? {
            Ok(fleet) => fleet,
            Err(code) => return Ok(code),
        };
        let (scope, _) = target.scope(&fleet, false)?;
        let (runtime, clients) = crate::infra::connect(root, &fleet, target.local)?;
        let bucket = &fleet.platform.state_bucket;
        let label = scope.label();
        let found = runtime.block_on(vending_aws::lock::read(&clients.s3, bucket, &scope))?;
        let found = found.filter(|(lock, _)| !lock.released);
        if json {
            let standing = found.as_ref().map(|(lock, _)| {
                match lock.standing(SystemTime::now(), &this_process().machine, alive) {
                    Standing::Expired => "expired",
                    Standing::Stale => "stale",
                    _ => "held",
                }
            });
            let value = serde_json::json!({
                "scope": label,
                "locked": found.is_some(),
                "standing": standing,
                "lock": found.as_ref().map(|(lock, _)| lock),
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(ExitCode::SUCCESS);
        }
        let Some((lock, etag)) = found else {
            println!("{label}: not locked");
            return Ok(ExitCode::SUCCESS);
        };
        let standing = lock.standing(SystemTime::now(), &this_process().machine, alive);
        let state = match standing {
            Standing::Expired => " (expired: its run crashed; the next command takes it over)",
            Standing::Stale => " (stale: its process is gone from this host; the next command takes it over)",
            _ => "",
        };
        if !release {
            println!("{label}: locked by {}{state}", lock.describe());
            return Ok(ExitCode::SUCCESS);
        }
        let me = runtime.block_on(vending_aws::identity::caller(&clients.sts))?.arn;
        // Yours to release without --force: a lock of yours whose run is gone (crashed here, or
        // expired). One whose run still works is released only on purpose.
        let mine = vending::approval::same_person(&me, &lock.holder) && standing != Standing::Held;
        if !mine && !force {
            eprintln!(
                "error: {label} is locked by a run that may still be working: {}{state}. Release it with --force only if you are sure (it is written to the audit log)",
                lock.describe()
            );
            return Ok(ExitCode::from(EXIT_LOCKED));
        }
        if runtime.block_on(vending_aws::lock::rewrite(&clients.s3, bucket, &scope, &lock.released(), &etag))?.is_err()
        {
            bail!("{label}: the lock changed while it was being released; look again with `lock status`");
        }
        if !mine {
            let detail = format!("it was held by {}", lock.describe());
            let event = AuditEvent::new("lock-released-by-force", &me, None, detail, SystemTime::now());
            runtime.block_on(Store { s3: &clients.s3, bucket }.audit(&scope, &event))?;
        }
        println!("{label}: released the lock of {}", lock.describe());
        Ok(ExitCode::SUCCESS)
    }
}
