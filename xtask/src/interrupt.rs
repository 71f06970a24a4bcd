//! Ctrl-C while Packer runs: Packer gets one SIGINT, cleans up what it created (key pair,
//! security group, instance), and the command then exits non-zero. Packer runs in its own
//! process group, so the terminal's Ctrl-C reaches only us and Packer is told exactly once.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static CHILD: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

pub fn install() -> anyhow::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("waiting for packer to clean up; it stops by itself");
                return;
            }
            let pid = CHILD.load(Ordering::SeqCst);
            if pid > 0 {
                eprintln!("interrupted: asking packer to stop and clean up");
                // SAFETY: kill(2) with a pid we spawned and a valid signal has no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGINT);
                }
            }
        });
    });
    result.map_err(|e| anyhow::anyhow!("cannot handle Ctrl-C: {e}"))
}

pub fn set_child(pid: u32) {
    CHILD.store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);
}

pub fn clear_child() {
    CHILD.store(0, Ordering::SeqCst);
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
