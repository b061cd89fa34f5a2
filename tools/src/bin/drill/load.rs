//! The logins the drill drives: a fixed set of threads, each with its own keep-alive client,
//! paced, sending one-time mock codes straight to wxlogin or through nginx over HTTPS, and
//! recording every answer under the phase that was running when it was sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

use wxlogin_tools::bounded;

use crate::phase::Phase;

/// Threads logging in straight to wxlogin, and the pause between two of their logins: 14 × 25
/// logins/s at most, a steady load that leaves the two cores to the servers.
const DIRECT_THREADS: usize = 14;
const DIRECT_PERIOD: Duration = Duration::from_millis(40);
/// Threads logging in through nginx (the "honest clients" of the attack phase). Together they
/// stay under the shipped `limit_req` rate (20 r/s per address; every client here is 127.0.0.1).
const NGINX_THREADS: usize = 2;
const NGINX_PERIOD: Duration = Duration::from_millis(125);
/// A request with no answer within this is recorded as a timeout: a hang, not a slow answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer body read.
const BODY_LIMIT: u64 = 64 * 1024;

/// The load's shape, for the summary.
pub fn describe() -> String {
    let per_second = |period: Duration| 1000 / period.as_millis();
    format!(
        "{DIRECT_THREADS} clients straight to wxlogin (≤ {} logins/s each) and {NGINX_THREADS} \
         through nginx over HTTPS (≤ {}/s each), keep-alive, each login a new user and a \
         one-time code, client timeout {} s",
        per_second(DIRECT_PERIOD),
        per_second(NGINX_PERIOD),
        CLIENT_TIMEOUT.as_secs()
    )
}

/// Values of the control word besides a phase index.
const PAUSED: usize = usize::MAX - 1;
const STOPPED: usize = usize::MAX;

/// Which way a login went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    Direct,
    Nginx,
}

/// What a login got back.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Answer {
    Status(u16),
    /// No answer within [`CLIENT_TIMEOUT`].
    Timeout,
    /// The connection failed (refused, reset, TLS).
    Failed,
}

/// One login.
#[derive(Clone, Copy)]
pub struct Outcome {
    pub phase: Phase,
    pub via: Via,
    pub answer: Answer,
    pub latency: Duration,
    pub sent_at: Instant,
}

/// Everything the threads saw.
#[derive(Default)]
pub struct Record {
    pub outcomes: Vec<Outcome>,
    /// The `openid` of each 200's token; `None` when the 200 carried no readable token.
    pub openids: Vec<Option<String>>,
}

/// A keep-alive HTTP client with every wait bounded that reads error answers as answers, and
/// trusts `cert` (the drill's self-signed certificate) for HTTPS.
pub fn agent(cert: &Certificate<'static>, timeout: Duration) -> Agent {
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(std::slice::from_ref(cert)))
        .build();
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(Duration::from_secs(2)))
        .max_redirects(0)
        .tls_config(tls)
        .build()
        .into()
}

/// `GET url`'s status, `None` without an answer.
pub fn status(agent: &Agent, url: &str) -> Option<u16> {
    let mut response = agent.get(url).call().ok()?;
    let _ = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec();
    Some(response.status().as_u16())
}

/// One login with `code`; for a 200, also the token's `openid` (`None` if unreadable).
fn login(agent: &Agent, url: &str, code: &str) -> (Answer, Option<Option<String>>) {
    match agent.post(url).send_form([("code", code)]) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            // Read every body, so that the connection is reused.
            let body = response
                .body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_string()
                .unwrap_or_default();
            let openid = (status == 200).then(|| openid_of(&body));
            (Answer::Status(status), openid)
        }
        Err(ureq::Error::Timeout(_)) => (Answer::Timeout, None),
        Err(_) => (Answer::Failed, None),
    }
}

/// The `openid` claim of the token in a login answer, read without verifying the signature:
/// the drill only needs to know which row the token promises.
pub fn openid_of(body: &str) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    let jwt = answer.get("token")?.as_str()?.strip_prefix("Bearer ")?;
    let payload = jwt.split('.').nth(1)?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    Some(claims.get("openid")?.as_str()?.to_owned())
}

/// State shared with the threads.
struct Shared {
    /// The running phase's index, [`PAUSED`] or [`STOPPED`].
    control: AtomicUsize,
    /// Logins sent and not yet answered.
    in_flight: AtomicUsize,
    record: Mutex<Record>,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        // A thread that panicked while holding it left whole entries: keep going.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running load. Starts paused; dropping it stops and joins the threads.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The phase running and since when.
    current: Option<(Phase, Instant)>,
    /// Each phase that ran: when it started, how long it ran.
    spans: Vec<(Phase, Instant, Duration)>,
}

impl Load {
    /// Starts the threads, paused. `run_id` makes the codes unique to this run.
    pub fn start(
        direct_url: &str,
        nginx_url: &str,
        cert: &Certificate<'static>,
        run_id: &str,
    ) -> Load {
        let shared = Arc::new(Shared {
            control: AtomicUsize::new(PAUSED),
            in_flight: AtomicUsize::new(0),
            record: Mutex::new(Record::default()),
        });
        let lanes = (0..DIRECT_THREADS)
            .map(|i| (Via::Direct, format!("d{i}"), direct_url, DIRECT_PERIOD))
            .chain(
                (0..NGINX_THREADS).map(|i| (Via::Nginx, format!("n{i}"), nginx_url, NGINX_PERIOD)),
            );
        let threads = lanes
            .map(|(via, user, url, period)| {
                let shared = Arc::clone(&shared);
                let agent = agent(cert, CLIENT_TIMEOUT);
                let url = url.to_owned();
                let run_id = run_id.to_owned();
                std::thread::spawn(move || {
                    drive(&shared, &agent, via, &url, period, |n| {
                        format!("{user}_{n}.{run_id}")
                    })
                })
            })
            .collect();
        Load {
            shared,
            threads,
            current: None,
            spans: Vec::new(),
        }
    }

    /// Starts `phase`: logins sent from now on are recorded under it.
    pub fn run(&mut self, phase: Phase) {
        self.end_phase();
        self.current = Some((phase, Instant::now()));
        self.shared.control.store(phase as usize, Ordering::SeqCst);
    }

    /// Stops sending and waits (bounded) until every login sent has its answer, so that the
    /// next fault does not hit logins of the phase before.
    pub fn pause(&mut self) -> Result<(), String> {
        self.shared.control.store(PAUSED, Ordering::SeqCst);
        self.end_phase();
        bounded::wait_until(
            "logins in flight answered",
            CLIENT_TIMEOUT + Duration::from_secs(2),
            || Ok(self.shared.in_flight.load(Ordering::SeqCst) == 0),
        )
        .map(|_| ())
    }

    fn end_phase(&mut self) {
        if let Some((phase, since)) = self.current.take() {
            self.spans.push((phase, since, since.elapsed()));
        }
    }

    /// When `phase` (last) started.
    pub fn started(&self, phase: Phase) -> Option<Instant> {
        let running = self.current.filter(|(p, _)| *p == phase).map(|(_, t)| t);
        running.or_else(|| {
            self.spans
                .iter()
                .rev()
                .find(|(p, _, _)| *p == phase)
                .map(|(_, t, _)| *t)
        })
    }

    /// The logins sent in `phase` so far.
    pub fn outcomes_of(&self, phase: Phase) -> Vec<Outcome> {
        let record = self.shared.record();
        record
            .outcomes
            .iter()
            .filter(|o| o.phase == phase)
            .copied()
            .collect()
    }

    /// Stops the threads and returns what they saw, with how long each phase ran.
    pub fn finish(mut self) -> Result<(Record, Vec<(Phase, Duration)>), String> {
        self.stop()?;
        let record = std::mem::take(&mut *self.shared.record());
        let spans = self.spans.iter().map(|(p, _, d)| (*p, *d)).collect();
        Ok((record, spans))
    }

    fn stop(&mut self) -> Result<(), String> {
        self.shared.control.store(STOPPED, Ordering::SeqCst);
        self.end_phase();
        let mut panicked = 0;
        for thread in self.threads.drain(..) {
            // Each returns within CLIENT_TIMEOUT: its request in flight is bounded.
            if thread.join().is_err() {
                panicked += 1;
            }
        }
        if panicked > 0 {
            return Err(format!("{panicked} load threads panicked"));
        }
        Ok(())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// One thread's loop: while a phase runs, a login every `period` (never faster, no catching
/// up after a slow answer), recorded under the phase it was sent in.
fn drive(
    shared: &Shared,
    agent: &Agent,
    via: Via,
    url: &str,
    period: Duration,
    code: impl Fn(u64) -> String,
) {
    let mut next = Instant::now();
    let mut n = 0;
    loop {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(5)));
            continue;
        }
        // Counted before the control word is read, so that `pause` cannot miss a login that
        // is about to be sent in the phase it just ended.
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let control = shared.control.load(Ordering::SeqCst);
        if control == STOPPED || control == PAUSED {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            if control == STOPPED {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let phase = Phase::ALL[control];
        next = (next + period).max(now);
        n += 1;
        let sent_at = Instant::now();
        let (answer, openid) = login(agent, url, &code(n));
        let latency = sent_at.elapsed();
        {
            let mut record = shared.record();
            record.outcomes.push(Outcome {
                phase,
                via,
                answer,
                latency,
                sent_at,
            });
            if let Some(openid) = openid {
                record.openids.push(openid);
            }
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openid_is_read_from_the_tokens_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"openid":"oAbC-_9","iat":1,"exp":2}"#);
        let body =
            format!(r#"{{"status":200,"token":"Bearer eyJhbGciOiJIUzI1NiJ9.{payload}.sig"}}"#);
        assert_eq!(openid_of(&body).as_deref(), Some("oAbC-_9"));
    }

    #[test]
    fn an_answer_without_a_readable_token_has_no_openid() {
        for body in [
            "",
            "not json",
            r#"{"status":200}"#,
            r#"{"token":"eyJ.e30.sig"}"#,
            r#"{"token":"Bearer onlyonepart"}"#,
            r#"{"token":"Bearer a.!!!.c"}"#,
            r#"{"token":"Bearer a.e30.c"}"#,
        ] {
            assert_eq!(openid_of(body), None, "{body}");
        }
    }
}
