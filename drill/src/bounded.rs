//! Bounded waiting: every wait of the drill polls with a deadline, and gives up early when the
//! user presses Ctrl-C, so that the clean-up (MariaDB restarted, database dropped) always runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// Raised by SIGINT or SIGTERM. Shared with signal-hook, which wants an `Arc`.
static INTERRUPTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// How often conditions are polled.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Routes SIGINT and SIGTERM to [`interrupted`]. A second signal exits at once (status 130),
/// for a user who does not want to wait for the clean-up.
pub fn install_signal_flag() -> Result<(), String> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag before the second registration raises it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&INTERRUPTED))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&INTERRUPTED)))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(())
}

/// Whether the user asked the drill to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Fails if the user asked the drill to stop: called between steps.
pub fn check_interrupt() -> Result<(), String> {
    if interrupted() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleeps `duration` in short slices, so that Ctrl-C is seen within [`POLL_EVERY`].
pub fn sleep(duration: Duration) -> Result<(), String> {
    let deadline = Instant::now() + duration;
    loop {
        check_interrupt()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(POLL_EVERY));
    }
}

/// Polls `ready` until it says yes, and returns how long that took. Fails when it errs, after
/// `limit`, or on Ctrl-C; the message names `what`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    ready: impl FnMut() -> Result<bool, String>,
) -> Result<Duration, String> {
    poll(what, limit, true, ready)
}

/// [`wait_until`], but not cut short by Ctrl-C: for the clean-up itself (MariaDB coming back),
/// which must finish even when the user asked to stop. Still bounded by `limit`.
pub fn wait_through_interrupt(
    what: &str,
    limit: Duration,
    ready: impl FnMut() -> Result<bool, String>,
) -> Result<Duration, String> {
    poll(what, limit, false, ready)
}

fn poll(
    what: &str,
    limit: Duration,
    interruptible: bool,
    mut ready: impl FnMut() -> Result<bool, String>,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if ready()? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        if interruptible {
            check_interrupt()?;
        }
        std::thread::sleep(POLL_EVERY);
    }
}
