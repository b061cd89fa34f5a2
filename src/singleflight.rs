//! One upstream exchange per login code, however many requests carry it.
//!
//! A `wx.login()` code works once at WeChat. A mini-program that double-taps, or retries after a
//! dropped response, sends the same code again and would get 40163 "code been used". So requests
//! with one code are coalesced (the first runs, the others wait for its outcome), and a success
//! is remembered for a short replay window so that a retry gets the same outcome instead of an
//! error. The memory is bounded in time and size, and holds codes only in memory, never in logs.
//!
//! Generic over the outcome `T` and the error `E`: the two failures this module produces itself
//! (a waiter gave up, a leader panicked) are values the caller supplies, so it knows nothing of
//! the service's error type or of WeChat.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most remembered outcomes; beyond it the oldest are forgotten first.
pub const MAX_REMEMBERED: usize = 100_000;

/// Coalesces work keyed by a login code; `T` is the shared outcome, `E` its failure.
pub struct CodeFlights<T, E> {
    state: Mutex<State<T, E>>,
    window: Duration,
    wait_limit: Duration,
    /// What a waiter gets when the leader has not finished within `wait_limit`.
    timed_out: E,
    /// What the waiters get when the leader panicked instead of producing an outcome.
    abandoned: E,
}

struct State<T, E> {
    inflight: HashMap<String, Arc<Flight<T, E>>>,
    remembered: HashMap<String, (Instant, T)>,
    /// Remembered codes in insertion order, for expiry and the size cap.
    order: VecDeque<(Instant, String)>,
}

struct Flight<T, E> {
    outcome: Mutex<Option<Result<T, E>>>,
    done: Condvar,
}

impl<T: Clone, E: Clone> CodeFlights<T, E> {
    /// `window` is how long a success is remembered (zero: not at all); `wait_limit` bounds how
    /// long a duplicate waits for the leader before it gets `timed_out`; `abandoned` is shared
    /// with the waiters when the leader panics.
    pub fn new(window: Duration, wait_limit: Duration, timed_out: E, abandoned: E) -> Self {
        CodeFlights {
            state: Mutex::new(State {
                inflight: HashMap::new(),
                remembered: HashMap::new(),
                order: VecDeque::new(),
            }),
            window,
            wait_limit,
            timed_out,
            abandoned,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T, E>> {
        // Maps stay consistent at every unlock; a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered outcome for `code`, or the outcome of the request already running with it,
    /// or the outcome of running `work` (which then is shared with any request that arrives
    /// meanwhile). Failures are shared with concurrent waiters but never remembered.
    pub fn run(&self, code: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let (flight, leader) = {
            let mut state = self.lock();
            let now = Instant::now();
            state.forget_expired(now);
            if let Some((expires, outcome)) = state.remembered.get(code) {
                if now < *expires {
                    return Ok(outcome.clone());
                }
            }
            match state.inflight.get(code) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(Flight {
                        outcome: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    state.inflight.insert(code.to_string(), flight.clone());
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

    /// How many outcomes are remembered now.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.lock().remembered.len()
    }
}

impl<T, E> State<T, E> {
    fn forget_expired(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            let (_, code) = self.order.pop_front().expect("front exists");
            if self.remembered.get(&code).is_some_and(|(e, _)| *e <= now) {
                self.remembered.remove(&code);
            }
        }
    }

    fn remember(&mut self, code: &str, expires: Instant, outcome: T) {
        while self.remembered.len() >= MAX_REMEMBERED {
            match self.order.pop_front() {
                Some((_, oldest)) => {
                    self.remembered.remove(&oldest);
                }
                None => break,
            }
        }
        self.remembered.insert(code.to_string(), (expires, outcome));
        self.order.push_back((expires, code.to_string()));
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
        {
            let mut state = self.flights.lock();
            state.inflight.remove(self.code);
            if let Ok(value) = &outcome {
                if !self.flights.window.is_zero() {
                    let expires = Instant::now() + self.flights.window;
                    state.remember(self.code, expires, value.clone());
                }
            }
        }
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
    fn flights(window: Duration, wait_limit: Duration) -> CodeFlights<u32, &'static str> {
        CodeFlights::new(window, wait_limit, "timed out", "abandoned")
    }

    #[test]
    fn concurrent_requests_with_one_code_run_the_work_once() {
        let flights = flights(Duration::ZERO, Duration::from_secs(10));
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
                            while Arc::strong_count(&flights.lock().inflight["code"]) < 21 {
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
    fn success_is_remembered_within_the_window_and_failure_is_not() {
        let flights = flights(Duration::from_secs(60), Duration::from_secs(1));
        assert!(flights.run("ok", || Ok(1)).is_ok());
        assert_eq!(flights.run("ok", || Ok(2)).unwrap(), 1, "remembered");
        assert!(flights.run("bad", || Err("x")).is_err());
        assert_eq!(
            flights.run("bad", || Ok(3)).unwrap(),
            3,
            "failure not remembered"
        );
    }

    #[test]
    fn memory_is_capped_by_forgetting_the_oldest() {
        let flights = flights(Duration::from_secs(60), Duration::from_secs(1));
        for n in 0..=MAX_REMEMBERED {
            flights.run(&n.to_string(), || Ok(1)).unwrap();
        }
        assert_eq!(flights.remembered(), MAX_REMEMBERED);
        assert_eq!(
            flights.run("0", || Ok(2)).unwrap(),
            2,
            "the oldest was forgotten"
        );
        let newest = MAX_REMEMBERED.to_string();
        assert_eq!(
            flights.run(&newest, || Ok(3)).unwrap(),
            1,
            "the newest is kept"
        );
    }

    #[test]
    fn zero_window_remembers_nothing() {
        let flights = flights(Duration::ZERO, Duration::from_secs(1));
        flights.run("c", || Ok(1)).unwrap();
        assert_eq!(flights.run("c", || Ok(2)).unwrap(), 2);
        assert_eq!(flights.remembered(), 0);
    }

    #[test]
    fn a_panicking_leader_releases_its_waiters_with_an_error() {
        let flights = flights(Duration::ZERO, Duration::from_secs(10));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            flights.run("p", || panic!("boom"))
        }));
        assert!(result.is_err());
        assert!(flights.lock().inflight.is_empty(), "flight cleared");
        assert_eq!(flights.run("p", || Ok(5)).unwrap(), 5);
    }
}
