//! Bounded waiting: every wait polls with a deadline, and gives up early when the user presses
//! Ctrl-C ([`crate::signals`]), so that the clean-up (MariaDB restarted, database dropped) runs.

use std::time::{Duration, Instant};

use crate::signals::check_interrupt;

/// How often conditions are polled.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

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
