//! Webhook delivery: one background thread per node POSTs the outbox's events to
//! `WXLOGIN_WEBHOOK_URL`, signed with `WXLOGIN_WEBHOOK_SECRET`.
//!
//! Events are written to `wx_outbox` in the transaction of the change they report (see
//! `store`), so a restart or a crash loses none: the worker of any node picks them up. It
//! claims due events with a lease (`locked_by` = this worker's random id, `locked_until` = now +
//! [`LEASE`]) so two nodes never deliver one event at the same time, and a node that dies holding
//! some loses them when the lease lapses. Only each user's oldest undelivered event is claimable,
//! so a user's events arrive in order: a later one waits while an earlier one is retried.
//!
//! Delivery is at least once: a receiver that took an event but whose answer was lost gets it
//! again, with the same `id`. A failed attempt is retried after [`backoff`] (2 s, doubling, at
//! most an hour per step); after [`MAX_ATTEMPTS`], whose retries span at least 24 hours, the event
//! is given up: it stays in the outbox with its `last_error`, an error is logged, the
//! `wxlogin_webhook_events{state="failed"}` gauge counts it, and the user's later events go on.
//!
//! The signature is Stripe's scheme, so existing verification code fits:
//! `X-Wxlogin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

use crate::clock;
use crate::config::WebhookConfig;
use crate::metrics::Metrics;
use crate::secret::{hex, random_hex, Secret};
use crate::store::{Claim, OutboxDelivery, Settle, StoreError, UserStore};
use crate::sweep::wait;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a claim holds its events: enough for a batch's POSTs, since the worker gives the
/// rest back rather than start a POST that could outlast the lease.
pub const LEASE: Duration = Duration::from_secs(30);
/// The bound on one POST, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Most events claimed at once.
pub const BATCH: usize = 20;
/// How often an idle worker looks for due events: the delay of a new event, at most.
const POLL: Duration = Duration::from_secs(1);
/// The pause after the first failed attempt, in seconds; each further failure doubles it…
pub const FIRST_RETRY_SECS: i64 = 2;
/// …up to this.
pub const MAX_RETRY_SECS: i64 = 3600;
/// Retries go on for at least this long before an event is given up.
pub const RETRY_FOR_SECS: i64 = 86_400;
/// The attempts after which an event is given up: the first attempt that comes
/// [`RETRY_FOR_SECS`] or more after the first (35: 11 doublings from 2 s, then hourly).
pub const MAX_ATTEMPTS: u32 = max_attempts();
/// Delivered events are kept this long (for the operator's questions), then purged.
pub const DELIVERED_KEPT_SECS: i64 = 7 * 86_400;
/// How often the worker purges delivered events and recounts the outbox when idle.
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// Delivered events removed per purge.
const PURGE_BATCH: usize = 500;
/// A receiver's answer is read (so the connection can be reused) up to this many bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// The pause after an event's `attempts`-th failed attempt, in seconds.
pub const fn backoff(attempts: u32) -> i64 {
    let doublings = if attempts > 12 {
        12
    } else {
        attempts.saturating_sub(1)
    };
    let pause = FIRST_RETRY_SECS << doublings;
    if pause > MAX_RETRY_SECS {
        MAX_RETRY_SECS
    } else {
        pause
    }
}

const fn max_attempts() -> u32 {
    let (mut attempts, mut spent) = (1, 0);
    while spent < RETRY_FOR_SECS {
        spent += backoff(attempts);
        attempts += 1;
    }
    attempts
}

/// The `X-Wxlogin-Signature` of `body` sent at `t`: `t=<t>,v1=<hex HMAC-SHA256>` of `"<t>.<body>"`
/// keyed with the secret's bytes.
pub fn signature(secret: &Secret, t: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// One node's delivery: the store, the receiver, and this worker's lease id.
pub struct Delivery {
    store: Arc<dyn UserStore>,
    agent: ureq::Agent,
    url: String,
    secret: Secret,
    metrics: Arc<Metrics>,
    /// `locked_by` of this worker's leases: random, so a restarted node is a stranger to the
    /// leases its previous run left.
    node: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Delivery {
    pub fn new(store: Arc<dyn UserStore>, config: &WebhookConfig, metrics: Arc<Metrics>) -> Self {
        Delivery {
            store,
            agent: crate::wechat::agent(TIMEOUT),
            url: config.url.clone(),
            secret: config.secret.clone(),
            metrics,
            node: format!("node-{}", random_hex(8)),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
        }
    }

    /// One claim at `now` (unix seconds) and its POSTs, in order; how many events it claimed.
    /// Events left when the worker is stopping or the lease is running out are given back.
    pub fn run_once(&self, now: i64) -> Result<usize, StoreError> {
        let leased_at = Instant::now();
        let claimed = self.store.claim_events(&Claim {
            node: &self.node,
            now,
            lease_until: now + secs(LEASE),
            max_attempts: MAX_ATTEMPTS,
            limit: BATCH,
        })?;
        for event in &claimed {
            // A POST may take TIMEOUT; one started later could still run when another node,
            // seeing the lease lapsed, sends the same event.
            let lease_left = LEASE.saturating_sub(leased_at.elapsed());
            let sent = if self.stopping() || lease_left < TIMEOUT + Duration::from_secs(2) {
                None
            } else {
                Some(self.post(event))
            };
            let settle = match &sent {
                None => Settle::Released,
                Some(Ok(())) => {
                    self.metrics.count_webhook_delivery("delivered");
                    Settle::Delivered { at: now }
                }
                Some(Err(error)) => {
                    self.metrics.count_webhook_delivery("failed");
                    failed(event, error, now)
                }
            };
            if !self.store.settle_event(event.seq, &self.node, settle)? {
                log::warn!(
                    "webhook event {} ({}): its lease lapsed before it was settled; another node may send it again",
                    event.event_id,
                    event.kind
                );
            }
        }
        Ok(claimed.len())
    }

    /// POSTs the event's stored body; a client-safe reason when the receiver did not take it
    /// (the URL may carry credentials, so transport errors are reduced to their kind).
    fn post(&self, event: &OutboxDelivery) -> Result<(), String> {
        let sent_at = clock::now();
        let answer = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(
                "X-Wxlogin-Signature",
                signature(&self.secret, sent_at, &event.body),
            )
            .header("X-Wxlogin-Event-Id", &event.event_id)
            .send(event.body.as_bytes());
        match answer {
            Ok(mut answer) => {
                let _ = answer
                    .body_mut()
                    .with_config()
                    .limit(MAX_ANSWER_BYTES)
                    .read_to_vec();
                let status = answer.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP status {}", status.as_u16()))
                }
            }
            Err(e) => Err(crate::wechat::classify_transport_error(e).to_string()),
        }
    }

    /// Removes delivered events past [`DELIVERED_KEPT_SECS`] and sets the outbox gauges.
    fn housekeeping(&self, now: i64) -> Result<(), StoreError> {
        let before = now - DELIVERED_KEPT_SECS;
        while self.store.purge_delivered(before, PURGE_BATCH)? == PURGE_BATCH {
            if self.stopping() {
                break;
            }
        }
        let counts = self.store.outbox_counts(MAX_ATTEMPTS)?;
        self.metrics
            .set_webhook_events(counts.pending, counts.failed);
        Ok(())
    }

    fn stopping(&self) -> bool {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How a failed attempt is settled: retried after [`backoff`], or given up (and said so) after
/// [`MAX_ATTEMPTS`].
fn failed<'a>(event: &OutboxDelivery, error: &'a str, now: i64) -> Settle<'a> {
    let attempts = event.attempts + 1;
    let pause = backoff(attempts);
    if attempts >= MAX_ATTEMPTS {
        log::error!(
            "webhook event {} ({}) given up after {attempts} attempts over at least {} h: {error}; it stays in wx_outbox (docs/webhooks.md says how to send it again)",
            event.event_id,
            event.kind,
            RETRY_FOR_SECS / 3600
        );
    } else {
        log::warn!(
            "webhook event {} ({}) attempt {attempts} failed: {error}; retried in {pause} s",
            event.event_id,
            event.kind
        );
    }
    Settle::Failed {
        next_attempt_at: now + pause,
        error,
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The running delivery thread; stopped (and joined) by [`WebhookWorker::stop`] or on drop.
pub struct WebhookWorker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookWorker {
    /// Starts the thread: it claims and delivers at once, again right after a pass that found
    /// events (so a user's next event follows the one just delivered), and every second
    /// otherwise.
    pub fn start(delivery: Delivery) -> std::io::Result<WebhookWorker> {
        let stop = delivery.stop.clone();
        let thread = std::thread::Builder::new()
            .name("wxlogin-webhooks".into())
            .spawn(move || {
                let mut housekept: Option<Instant> = None;
                loop {
                    // A failing or panicking store must not end delivery: the next pass retries.
                    let claimed =
                        match catch_unwind(AssertUnwindSafe(|| delivery.run_once(clock::now()))) {
                            Ok(Ok(claimed)) => claimed,
                            Ok(Err(e)) => {
                                log::warn!("webhook delivery failed, retried next pass: {e}");
                                0
                            }
                            Err(_) => {
                                log::error!("webhook delivery panicked, retried next pass");
                                0
                            }
                        };
                    if claimed > 0 || housekept.is_none_or(|at| at.elapsed() >= HOUSEKEEPING) {
                        if let Err(e) = delivery.housekeeping(clock::now()) {
                            log::warn!("webhook outbox housekeeping failed: {e}");
                        }
                        housekept = Some(Instant::now());
                    }
                    if delivery.stopping() || (claimed == 0 && wait(&delivery.stop, POLL)) {
                        return;
                    }
                }
            })?;
        Ok(WebhookWorker {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop after its current POST, without waiting: the server signals it
    /// first and joins it after draining requests, so the two waits overlap.
    pub fn signal(&self) {
        let (stopped, changed) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        changed.notify_all();
    }

    /// Stops the thread and waits for it; the events it had claimed and not sent are given back.
    pub fn stop(&mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WebhookWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_within_seconds_double_and_span_at_least_a_day() {
        let pauses: Vec<i64> = (1..=14).map(backoff).collect();
        assert_eq!(
            pauses,
            [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600, 3600]
        );
        assert_eq!(backoff(u32::MAX), MAX_RETRY_SECS);
        let spanned = |attempts: u32| (1..attempts).map(backoff).sum::<i64>();
        assert!(spanned(MAX_ATTEMPTS) >= RETRY_FOR_SECS);
        assert!(spanned(MAX_ATTEMPTS - 1) < RETRY_FOR_SECS);
        assert_eq!(MAX_ATTEMPTS, 35);
    }

    #[test]
    fn the_signature_is_stripes_scheme() {
        // printf '%s' '1700000000.{"id":"e1"}' | openssl dgst -sha256 -hmac whsec-test-key
        let secret = Secret::new("whsec-test-key");
        assert_eq!(
            signature(&secret, 1_700_000_000, r#"{"id":"e1"}"#),
            "t=1700000000,v1=1f70d24e79a35dff7573249142377e1bc57ff242c1275e9d6374a6c8a902f36a"
        );
    }
}
