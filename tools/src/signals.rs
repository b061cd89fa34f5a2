//! Ctrl-C and SIGTERM for both tools: the first signal only raises a flag, which every loop and
//! wait checks, so the run in progress ends within milliseconds and the guards clean up on the
//! normal path (children stopped, database dropped, MariaDB running); a second signal exits at
//! once (status 130), for a user who does not want to wait for the clean-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

/// Raised by SIGINT or SIGTERM. Shared with signal-hook, which wants an `Arc`.
static INTERRUPTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// Routes SIGINT and SIGTERM to [`interrupted`].
pub fn install() -> Result<(), String> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag before the second registration raises it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&INTERRUPTED))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&INTERRUPTED)))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(())
}

/// The flag itself, for loops that take an `&AtomicBool` (the bench's load generator).
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}

/// Whether the user asked the run to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Fails if the user asked the run to stop: called between steps.
pub fn check_interrupt() -> Result<(), String> {
    if interrupted() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}
