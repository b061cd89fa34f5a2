//! One exchange per login code on this node, however many requests carry it at once.
//!
//! A `wx.login()` code works once at WeChat. A mini-program that double-taps sends the same code
//! twice at the same moment: such requests are coalesced here (the first runs, the others wait
//! for its outcome) before any of them reaches the database. Retries after an outcome, on this
//! node or another, are the replay window's job (`crate::replay`). Codes are held only while in
//! flight, never in logs.
//!
//! Generic over the outcome `T` and the error `E`: the two failures this module produces itself
//! (a waiter gave up, a leader panicked) are values the caller supplies, so it knows nothing of
//! the service's error type or of WeChat.
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Coalesces work keyed by a login code; `T` is the shared outcome, `E` its failure.
pub struct CodeFlights<T, E> {
    inflight: Mutex<HashMap<String, Arc<Flight<T, E>>>>,
    wait_limit: Duration,
    /// What a waiter gets when the leader has not finished within `wait_limit`.
    timed_out: E,
    /// What the waiters get when the leader panicked instead of producing an outcome.
    abandoned: E,
}

struct Flight<T, E> {
    outcome: Mutex<Option<Result<T, E>>>,
    done: Condvar,
}

impl<T: Clone, E: Clone> CodeFlights<T, E> {
    /// `wait_limit` bounds how long a duplicate waits for the leader before it gets `timed_out`;
    /// `abandoned` is shared with the waiters when the leader panics.
    pub fn new(wait_limit: Duration, timed_out: E, abandoned: E) -> Self {
        CodeFlights {
            inflight: Mutex::new(HashMap::new()),
            wait_limit,
            timed_out,
            abandoned,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Flight<T, E>>>> {
        // The map stays consistent at every unlock; a poisoned lock is still usable.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outcome of the request already running with `code`, or of running `work` (which then
    /// is shared with any request that arrives meanwhile).
    pub fn run(&self, code: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let (flight, leader) = {
            let mut inflight = self.lock();
            match inflight.get(code) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(Flight {
                        outcome: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    inflight.insert(code.to_string(), flight.clone());
                    (flight, true)
                }
            }
        };
        if leader {
            let mut guard = LeaderGuard {
                flights: self,
                code,
                flight: &flight,
                finished: false,
            };
            let outcome = work();
            guard.finish(outcome.clone());
            outcome
        } else {
            self.wait(&flight)
        }
    }

    /// Waits, bounded, for the leader's outcome.
    fn wait(&self, flight: &Flight<T, E>) -> Result<T, E> {
        let deadline = Instant::now() + self.wait_limit;
        let mut outcome = flight.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(result) = outcome.as_ref() {
                return result.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timed_out.clone());
            }
            outcome = flight
                .done
                .wait_timeout(outcome, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Publishes the leader's outcome, and if the leader panics, an internal error, so that waiters
/// are never stranded and the code is not left "in flight" forever.
struct LeaderGuard<'a, T: Clone, E: Clone> {
    flights: &'a CodeFlights<T, E>,
    code: &'a str,
    flight: &'a Flight<T, E>,
    finished: bool,
}

impl<T: Clone, E: Clone> LeaderGuard<'_, T, E> {
    fn finish(&mut self, outcome: Result<T, E>) {
        self.finished = true;
        self.flights.lock().remove(self.code);
        *self
            .flight
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.flight.done.notify_all();
    }
}

impl<T: Clone, E: Clone> Drop for LeaderGuard<'_, T, E> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Err(self.flights.abandoned.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    /// Flights of numbers whose failures are plain words.
    fn flights(wait_limit: Duration) -> CodeFlights<u32, &'static str> {
        CodeFlights::new(wait_limit, "timed out", "abandoned")
    }

    #[test]
    fn concurrent_requests_with_one_code_run_the_work_once() {
        let flights = flights(Duration::from_secs(10));
        let runs = AtomicUsize::new(0);
        let barrier = Barrier::new(20);
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        flights.run("code", || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            // Hold the flight open until every other thread has joined it
                            // (the map, this leader and 19 waiters hold the flight). Polled
                            // with a pause so the waiters are not starved of the lock.
                            while Arc::strong_count(&flights.lock()["code"]) < 21 {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            Ok(7)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(outcomes.iter().all(|o| matches!(o, Ok(7))), "{outcomes:?}");
    }

    #[test]
    fn nothing_is_remembered_once_the_flight_lands() {
        let flights = flights(Duration::from_secs(1));
        assert_eq!(flights.run("c", || Ok(1)).unwrap(), 1);
        assert_eq!(
            flights.run("c", || Ok(2)).unwrap(),
            2,
            "a later request runs again"
        );
        assert!(flights.run("bad", || Err("x")).is_err());
        assert_eq!(flights.run("bad", || Ok(3)).unwrap(), 3);
        assert!(flights.lock().is_empty(), "no flight left behind");
    }

    #[test]
    fn a_panicking_leader_releases_its_waiters_with_an_error() {
        let flights = flights(Duration::from_secs(10));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            flights.run("p", || panic!("boom"))
        }));
        assert!(result.is_err());
        assert!(flights.lock().is_empty(), "flight cleared");
        assert_eq!(flights.run("p", || Ok(5)).unwrap(), 5);
    }
}
