//! What the workers coordinate through: a lock that survives a panicked worker, and the
//! shutdown signal that cuts their sleeps short. Kept apart from the state so that the state
//! and the token store can both use it without depending on each other.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Locks a mutex even if a thread panicked while holding it: the data (a set of codes, a
/// flag) stays usable, and the mock must keep answering.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Lets `stop` wake the workers that are sleeping (latency, `slow.<ms>`) instead of waiting
/// up to a minute for them.
#[derive(Default)]
pub(crate) struct Shutdown {
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Shutdown {
    pub(crate) fn begin(&self) {
        *lock(&self.stopping) = true;
        self.wake.notify_all();
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *lock(&self.stopping)
    }

    /// Sleeps for `duration`; false when cut short because the mock is stopping.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return true;
        }
        let stopping = lock(&self.stopping);
        let (stopping, _) = self
            .wake
            .wait_timeout_while(stopping, duration, |stopping| !*stopping)
            .unwrap_or_else(PoisonError::into_inner);
        !*stopping
    }
}
