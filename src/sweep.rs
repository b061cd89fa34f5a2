//! The periodic sweep: one background thread per node that erases due deletions and removes
//! what is kept only for a while.
//!
//! Every node runs it (every `WXLOGIN_SWEEP_INTERVAL`, give or take a fifth so that nodes
//! started together spread out), so a deletion whose erasure a crash interrupted is finished by
//! whichever node comes first; the erasure is idempotent and writes its event once. Each pass
//! is bounded (`BATCH` rows per kind, `MAX_BATCHES` batches) so no transaction runs long; what
//! is left waits for the next pass.

use crate::clock;
use crate::store::{Purge, Purged, StoreError, UserStore};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Rows of one kind removed per batch.
pub const BATCH: usize = 500;
/// Batches per pass: a large backlog is worked off over several passes.
const MAX_BATCHES: usize = 20;

/// What the sweep keeps and for how long.
#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    pub interval: Duration,
    /// `WXLOGIN_LOGIN_HISTORY`.
    pub login_history: Duration,
    /// An expired session is kept this much longer, so an access token it issued (which lives
    /// at most `JWT_TTL`) is refused as ended, not as unknown.
    pub session_tail: Duration,
    /// `WXLOGIN_REFRESH_REUSE_GRACE`: a rotated refresh token's access token is needed this
    /// long, then scrubbed.
    pub reuse_grace: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Accounts this node erased (another node may have erased others).
    pub erased: usize,
    pub purged: Purged,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// One pass at `now`: due erasures, then the purges.
pub fn run_once(
    store: &dyn UserStore,
    config: &SweepConfig,
    now: i64,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    for _ in 0..MAX_BATCHES {
        let due = store.due_erasures(now, BATCH)?;
        for uid in &due {
            if store.erase_user(uid, now)? {
                report.erased += 1;
            }
        }
        if due.len() < BATCH {
            break;
        }
    }
    let purge = Purge {
        history_before: now.saturating_sub(secs(config.login_history)),
        sessions_before: now.saturating_sub(secs(config.session_tail)),
        successors_before: now.saturating_sub(secs(config.reuse_grace)),
        limit: BATCH,
    };
    for _ in 0..MAX_BATCHES {
        let purged = store.purge(&purge)?;
        report.purged.history += purged.history;
        report.purged.sessions += purged.sessions;
        report.purged.successors += purged.successors;
        if purged.history < BATCH && purged.sessions < BATCH && purged.successors < BATCH {
            break;
        }
    }
    Ok(report)
}

/// The running sweep thread; stopped (and joined) by [`Sweeper::stop`] or on drop.
pub struct Sweeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts the thread: the first pass after one (jittered) interval, then one per interval.
    pub fn start(store: Arc<dyn UserStore>, config: SweepConfig) -> std::io::Result<Sweeper> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wxlogin-sweep".into())
            .spawn(move || loop {
                if wait(&signal, jittered(config.interval)) {
                    return;
                }
                // A failing or panicking store must not end the sweep: the next pass retries.
                match catch_unwind(AssertUnwindSafe(|| {
                    run_once(&*store, &config, clock::now())
                })) {
                    Ok(Ok(report)) if report != Report::default() => {
                        log::info!("sweep: {report:?}")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => log::warn!("sweep failed, retried next pass: {e}"),
                    Err(_) => log::error!("sweep panicked, retried next pass"),
                }
            })?;
        Ok(Sweeper {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after its current pass.
    pub fn stop(&mut self) {
        let (stopped, changed) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits `period` or until stopped; whether stopped.
pub(crate) fn wait(stop: &(Mutex<bool>, Condvar), period: Duration) -> bool {
    let (stopped, changed) = stop;
    let deadline = Instant::now() + period;
    let mut guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
    while !*guard {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        guard = changed
            .wait_timeout(guard, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    true
}

/// `interval` times a random factor in [0.8, 1.2).
fn jittered(interval: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let fraction = f64::from(u16::from_le_bytes(bytes)) / 65_536.0;
    interval.mul_f64(0.8 + 0.4 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth_of_the_interval() {
        let interval = Duration::from_secs(30);
        for _ in 0..1000 {
            let d = jittered(interval);
            assert!(
                d >= Duration::from_secs(24) && d < Duration::from_secs(36),
                "{d:?}"
            );
        }
    }
}
