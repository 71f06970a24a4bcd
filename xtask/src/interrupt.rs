//! Ctrl-C, for the commands that must not simply die on it.
//!
//! - While Packer runs: Packer gets one SIGINT, cleans up what it created (key pair, security
//!   group, instance), and the command then exits non-zero. Packer runs in its own process group,
//!   so the terminal's Ctrl-C reaches only us and Packer is told exactly once, through its whole
//!   group: Packer 1.6.6 is a wrapper process and a child, and the wrapper alone swallows a SIGINT
//!   (the build then finishes, leaving an AMI nobody records).
//! - SIGTERM and SIGHUP (a CI runner cancelling the job, a closed terminal) count as Ctrl-C.
//! - While a deployment is followed: the first Ctrl-C is seen by the command (`presses`), which
//!   asks for the deployment to stop and follows the stop; a second one leaves at once (exit 130).
//!   What each press prints is set with `set_notes`.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Mutex, Once};

static PRESSES: AtomicU32 = AtomicU32::new(0);
static CHILD: AtomicI32 = AtomicI32::new(0);
/// What the first and the second press print (no child running).
static NOTES: Mutex<(Option<String>, Option<String>)> = Mutex::new((None, None));
static INSTALL: Once = Once::new();
/// Process groups that get each press instead of this process acting on it: the environments of
/// a fleet run, each its own group, so that each sees exactly the presses the user made.
static FORWARD: Mutex<Vec<i32>> = Mutex::new(Vec::new());

pub fn install() -> anyhow::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = ctrlc::set_handler(|| {
            let presses = PRESSES.fetch_add(1, Ordering::SeqCst) + 1;
            let pid = CHILD.load(Ordering::SeqCst);
            if pid > 0 {
                if presses > 1 {
                    eprintln!("waiting for packer to clean up; it stops by itself");
                    return;
                }
                eprintln!("interrupted: asking packer to stop and clean up");
                signal_group(u32::try_from(pid).unwrap_or(0));
            } else if let Some(groups) = forwarding() {
                let notes = NOTES.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(note) = if presses == 1 { &notes.0 } else { &notes.1 } {
                    eprintln!("{note}");
                }
                for group in groups {
                    signal_group(u32::try_from(group).unwrap_or(0));
                }
                // This run never leaves before its environments: each acts on the presses as it
                // would alone (a deploy leaves on the second, Packer cleans up whatever comes),
                // and leaving would close the pipes they print to.
            } else {
                let notes = NOTES.lock().unwrap_or_else(|p| p.into_inner());
                let note = if presses == 1 { &notes.0 } else { &notes.1 };
                if let Some(note) = note {
                    eprintln!("{note}");
                }
                if presses > 1 {
                    std::process::exit(130);
                }
            }
        });
    });
    result.map_err(|e| anyhow::anyhow!("cannot handle Ctrl-C: {e}"))
}

/// The process groups to forward presses to, when there are any.
fn forwarding() -> Option<Vec<i32>> {
    let groups = FORWARD.lock().unwrap_or_else(|p| p.into_inner());
    (!groups.is_empty()).then(|| groups.clone())
}

/// One press (SIGINT) to the process group `pid` leads.
pub fn signal_group(pid: u32) {
    let Ok(group) = i32::try_from(pid) else { return };
    if group > 0 {
        // SAFETY: kill(2) on the process group of a child we spawned as its leader.
        unsafe {
            libc::kill(-group, libc::SIGINT);
        }
    }
}

/// From now on each press goes to the process group `pid` leads (a fleet run's environment).
pub fn forward_to(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        FORWARD.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
    }
}

/// The process group `pid` led has ended.
pub fn stop_forwarding(pid: u32) {
    let mut groups = FORWARD.lock().unwrap_or_else(|p| p.into_inner());
    groups.retain(|&g| i64::from(g) != i64::from(pid));
}

pub fn set_child(pid: u32) {
    CHILD.store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);
}

pub fn clear_child() {
    CHILD.store(0, Ordering::SeqCst);
}

/// What the first Ctrl-C prints (when the command does not say it itself), and what the second
/// prints before the command leaves.
pub fn set_notes(first: Option<String>, leave: String) {
    *NOTES.lock().unwrap_or_else(|p| p.into_inner()) = (first, Some(leave));
}

/// How many times Ctrl-C was pressed since `install`.
pub fn presses() -> u32 {
    PRESSES.load(Ordering::SeqCst)
}

pub fn interrupted() -> bool {
    presses() > 0
}

/// This process's Ctrl-C, handed to the release.
#[cfg(feature = "aws")]
pub struct CtrlC;

#[cfg(feature = "aws")]
impl vending_release::Interrupts for CtrlC {
    fn presses(&self) -> u32 {
        presses()
    }

    fn arm(&self, first: Option<String>, leave: String) -> anyhow::Result<()> {
        install()?;
        set_notes(first, leave);
        Ok(())
    }
}
