//! The client for WeChat's server API (or `mock-wechat`, which speaks the same protocol).
//!
//! WeChat answers HTTP 200 with an `{"errcode":…,"errmsg":…}` body when it refuses, so the status
//! line alone says little: every answer is parsed with all fields optional and then classified.
//! The query string carries the AppSecret, so nothing here ever formats a URL or a transport
//! error into a message: causes are reduced to their kind before they leave this module.

use crate::config::WechatConfig;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::user::PhoneNumber;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pause before the one retry: at least this long…
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(50);
/// …plus up to this many random milliseconds, so retries from many requests spread out.
const RETRY_PAUSE_JITTER_MS: u64 = 100;
/// A retry needs at least this much of the budget left to be worth making.
const RETRY_MIN_BUDGET: Duration = Duration::from_millis(200);

/// The longest access_token lifetime believed (a day; WeChat's is two hours).
const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// Upstream answers are a few hundred bytes; anything near this is not WeChat.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// What jscode2session proves: who the user is, and the key for their encrypted data.
#[derive(Debug, Clone)]
pub struct Session {
    pub openid: String,
    pub unionid: Option<String>,
    /// Never leaves the server: not in a token, a response, or a log line.
    pub session_key: Secret,
}

/// Why a call to WeChat did not produce a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WechatError {
    /// WeChat answered with a non-zero `errcode`.
    Rejected { errcode: i64, errmsg: String },
    /// WeChat (or a proxy in front of it) answered with a non-2xx HTTP status.
    Status(u16),
    /// The answer was not the JSON we expect (not JSON, or no openid/session_key).
    BadAnswer(String),
    /// The request never left: connection refused, DNS failure, TLS handshake failure.
    Unreachable(String),
    /// The connection failed after the request may have been sent (reset, closed early), so
    /// WeChat may have acted on it: a single-use code may be spent.
    Interrupted(String),
    /// No answer within `WECHAT_TIMEOUT`.
    Timeout,
}

impl fmt::Display for WechatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WechatError::Rejected { errcode, errmsg } => {
                write!(f, "errcode {errcode} ({errmsg})")
            }
            WechatError::Status(s) => write!(f, "HTTP status {s}"),
            WechatError::BadAnswer(why) => write!(f, "unusable answer: {why}"),
            WechatError::Unreachable(why) => write!(f, "unreachable: {why}"),
            WechatError::Interrupted(why) => write!(f, "interrupted after sending: {why}"),
            WechatError::Timeout => f.write_str("timed out"),
        }
    }
}

/// jscode2session's answer, every field optional because a success may omit fields we need and
/// a missing one must be a 502, not a parse panic.
#[derive(Deserialize)]
struct Code2SessionAnswer {
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

/// Whether a call may be repeated when its first attempt may have reached WeChat.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Asking twice does no harm (`stable_token` hands out the same token).
    Safe,
    /// The request spends a single-use code (login, phone number).
    SingleUse,
}

/// A shared, pooled, time-bounded client. Cheap to clone.
#[derive(Clone)]
pub struct WechatClient {
    agent: ureq::Agent,
    config: WechatConfig,
    metrics: Arc<Metrics>,
}

impl WechatClient {
    pub fn new(config: WechatConfig, metrics: Arc<Metrics>) -> WechatClient {
        let agent = agent(config.timeout);
        WechatClient {
            agent,
            config,
            metrics,
        }
    }

    /// Exchanges a `wx.login()` code for the user's openid and session_key.
    pub fn code2session(&self, code: &str) -> Result<Session, WechatError> {
        let url = format!("{}/sns/jscode2session", self.config.api_base);
        let answer: Code2SessionAnswer =
            self.with_retry("jscode2session", Repeat::SingleUse, |budget| {
                read_answer(
                    self.agent
                        .get(&url)
                        .query("appid", &self.config.appid)
                        .query("secret", self.config.secret.expose())
                        .query("js_code", code)
                        .query("grant_type", "authorization_code")
                        .config()
                        .timeout_global(Some(budget))
                        .build()
                        .call(),
                )
            })?;
        match (answer.openid, answer.session_key) {
            (Some(openid), Some(session_key)) if !openid.is_empty() && !session_key.is_empty() => {
                Ok(Session {
                    openid,
                    unionid: answer.unionid.filter(|u| !u.is_empty()),
                    session_key: Secret::new(session_key),
                })
            }
            _ => Err(WechatError::BadAnswer(
                "no errcode but no openid/session_key either".into(),
            )),
        }
    }

    /// Runs `call` with the time left of the `WECHAT_TIMEOUT` budget, and once more after a short
    /// jittered pause when WeChat said "busy" (-1) or the request certainly never left (connect
    /// refused, DNS, TLS handshake), provided the budget still leaves room. A connection that
    /// failed after sending is retried only for `Repeat::Safe` calls: WeChat may have spent a
    /// single-use code, and a second try would turn a lost answer into "code been used".
    /// Everything else is final at once.
    /// POSTs `body` as JSON to one of the APIs that take the access_token in the query, under
    /// the retry rules of `repeat`.
    fn post_with_token<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        repeat: Repeat,
        url: &str,
        access_token: &Secret,
        body: &serde_json::Value,
    ) -> Result<T, WechatError> {
        self.with_retry(endpoint, repeat, |budget| {
            read_answer(
                self.agent
                    .post(url)
                    .query("access_token", access_token.expose())
                    .config()
                    .timeout_global(Some(budget))
                    .build()
                    .send_json(body),
            )
        })
    }

    fn with_retry<T>(
        &self,
        endpoint: &str,
        repeat: Repeat,
        call: impl Fn(Duration) -> Result<T, WechatError>,
    ) -> Result<T, WechatError> {
        let deadline = Instant::now() + self.config.timeout;
        let call = |budget| {
            let started = Instant::now();
            let result = call(budget);
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                // Known errcodes by number; any other is one label, so the series stay bounded.
                Err(WechatError::Rejected { errcode, .. }) => match errcode {
                    -1 | 40001 | 40013 | 40029 | 40125 | 40163 | 40226 | 42001 | 45011 => {
                        format!("errcode_{errcode}")
                    }
                    _ => "errcode_other".into(),
                },
                Err(WechatError::Status(_)) => "http_status".into(),
                Err(WechatError::BadAnswer(_)) => "bad_answer".into(),
                Err(WechatError::Unreachable(_)) => "unreachable".into(),
                Err(WechatError::Interrupted(_)) => "interrupted".into(),
                Err(WechatError::Timeout) => "timeout".into(),
            };
            self.metrics
                .observe_upstream(endpoint, &outcome, started.elapsed());
            result
        };
        let first = call(self.config.timeout);
        let retryable = match &first {
            Err(WechatError::Rejected { errcode: -1, .. }) | Err(WechatError::Unreachable(_)) => {
                true
            }
            Err(WechatError::Interrupted(_)) => repeat == Repeat::Safe,
            _ => false,
        };
        if !retryable {
            return first;
        }
        let pause = RETRY_PAUSE_MIN
            + Duration::from_millis(getrandom::u64().unwrap_or(0) % RETRY_PAUSE_JITTER_MS);
        let left = deadline.saturating_duration_since(Instant::now());
        if left < pause + RETRY_MIN_BUDGET {
            return first;
        }
        log::debug!(
            "WeChat call failed ({}); retrying once",
            first
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        std::thread::sleep(pause);
        call(deadline.saturating_duration_since(Instant::now()))
    }

    /// Fetches an access_token from `/cgi-bin/stable_token` in normal mode, which hands every
    /// caller the same valid token instead of invalidating the previous one (as `/cgi-bin/token`
    /// does), so several wxlogin processes can each fetch it.
    pub fn stable_token(&self) -> Result<AccessToken, WechatError> {
        let url = format!("{}/cgi-bin/stable_token", self.config.api_base);
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": self.config.appid,
            "secret": self.config.secret.expose(),
            "force_refresh": false,
        });
        let answer: StableTokenAnswer =
            self.with_retry("stable_token", Repeat::Safe, |budget| {
                read_answer(
                    self.agent
                        .post(&url)
                        .config()
                        .timeout_global(Some(budget))
                        .build()
                        .send_json(&body),
                )
            })?;
        match (answer.access_token, answer.expires_in) {
            (Some(token), Some(expires_in)) if !token.is_empty() && expires_in > 0 => {
                Ok(AccessToken {
                    value: Secret::new(token),
                    // WeChat says 7200; a wild value must not overflow an Instant.
                    expires_in: Duration::from_secs(expires_in.min(MAX_TOKEN_LIFETIME_SECS)),
                })
            }
            _ => Err(WechatError::BadAnswer(
                "no errcode but no access_token/expires_in either".into(),
            )),
        }
    }

    /// Exchanges a `getPhoneNumber` button code for the user's phone number.
    pub fn phone_number(
        &self,
        access_token: &Secret,
        code: &str,
        openid: &str,
    ) -> Result<PhoneNumber, WechatError> {
        let url = format!("{}/wxa/business/getuserphonenumber", self.config.api_base);
        let body = serde_json::json!({ "code": code, "openid": openid });
        let answer: PhoneAnswer = self.post_with_token(
            "getuserphonenumber",
            Repeat::SingleUse,
            &url,
            access_token,
            &body,
        )?;
        answer
            .phone_info
            .filter(|p| !p.phone_number.is_empty())
            .ok_or_else(|| WechatError::BadAnswer("no errcode but no phone_info either".into()))
    }

    /// Asks `/wxa/msg_sec_check` (version 2) whether `content`, typed by `openid`, may be
    /// published. Asking twice does no harm, so a lost answer is retried like stable_token.
    pub fn msg_sec_check(
        &self,
        access_token: &Secret,
        openid: &str,
        content: &str,
    ) -> Result<TextVerdict, WechatError> {
        let url = format!("{}/wxa/msg_sec_check", self.config.api_base);
        let body = serde_json::json!({
            "version": 2, "scene": 1, "openid": openid, "content": content,
        });
        let answer: SecCheckAnswer =
            self.post_with_token("msg_sec_check", Repeat::Safe, &url, access_token, &body)?;
        let result = answer
            .result
            .ok_or_else(|| WechatError::BadAnswer("no errcode but no result either".into()))?;
        let suggest = Suggest::parse(&result.suggest)
            .ok_or_else(|| WechatError::BadAnswer("an unknown suggest".into()))?;
        Ok(TextVerdict {
            suggest,
            label: result.label.unwrap_or_default(),
        })
    }

    /// Submits an image at `media_url` to `/wxa/media_check_async` (version 2) for `openid`;
    /// the `trace_id` its verdict will be pushed with. A duplicate submission only costs a
    /// second check, whose verdict arrives for a trace_id we no longer wait for.
    pub fn media_check_async(
        &self,
        access_token: &Secret,
        openid: &str,
        media_url: &str,
    ) -> Result<String, WechatError> {
        let url = format!("{}/wxa/media_check_async", self.config.api_base);
        let body = serde_json::json!({
            "media_url": media_url, "media_type": 2, "version": 2, "scene": 1, "openid": openid,
        });
        let answer: MediaCheckAnswer =
            self.post_with_token("media_check_async", Repeat::Safe, &url, access_token, &body)?;
        answer
            .trace_id
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WechatError::BadAnswer("no errcode but no trace_id either".into()))
    }
}

/// WeChat's `suggest`: what to do with checked content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suggest {
    Pass,
    Risky,
    /// A person should look at it; `WXLOGIN_MODERATION_ON_REVIEW` decides.
    Review,
}

impl Suggest {
    pub fn parse(text: &str) -> Option<Suggest> {
        match text {
            "pass" => Some(Suggest::Pass),
            "risky" => Some(Suggest::Risky),
            "review" => Some(Suggest::Review),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Suggest::Pass => "pass",
            Suggest::Risky => "risky",
            Suggest::Review => "review",
        }
    }
}

/// msg_sec_check's verdict: the suggestion and WeChat's label (100 normal, 20001 politics, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextVerdict {
    pub suggest: Suggest,
    pub label: i64,
}

#[derive(Deserialize)]
struct SecCheckAnswer {
    result: Option<SecCheckResult>,
}

#[derive(Deserialize)]
struct SecCheckResult {
    suggest: String,
    label: Option<i64>,
}

#[derive(Deserialize)]
struct MediaCheckAnswer {
    trace_id: Option<String>,
}

/// The shared agent's settings. No proxy is taken from the environment (`HTTPS_PROXY`,
/// `http_proxy`, …): the AppSecret and session keys must not be routed through whatever a
/// process environment happens to name. No redirect is followed: WeChat never redirects, and
/// following one would send the query, AppSecret included, to wherever the `Location` points;
/// a 3xx is returned as is and becomes [`WechatError::Status`].
/// An agent bounded by `timeout` per call that ignores proxy variables, follows no redirects
/// and resolves names with [`Resolver`]: WeChat's, and the webhook worker's (`crate::webhooks`).
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::with_parts(
        agent_config(timeout),
        ureq::unversioned::transport::DefaultConnector::default(),
        Resolver,
    )
}

/// Each upstream connection's input buffer (see [`agent_config`]): an answer's head must fit.
const UPSTREAM_INPUT_BYTES: usize = 8 * 1024;
/// Each upstream connection's output buffer: a request's head must fit (the body streams).
const UPSTREAM_OUTPUT_BYTES: usize = 4 * 1024;

fn agent_config(timeout: Duration) -> ureq::config::Config {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_idle_connections(512)
        .max_idle_connections_per_host(512)
        // ureq's defaults are 128 KiB each way per connection, written in full when first
        // used: with a login in flight on every one of 1,024 connections that was most of the
        // resident memory. WeChat's answers are a few hundred bytes of JSON under a short
        // head, bodies stream through the buffers, and only a head larger than the input
        // buffer would fail a call (WeChat's are well under 1 KiB; 8 KiB is also nginx's
        // default for a request's large headers).
        .input_buffer_size(UPSTREAM_INPUT_BYTES)
        .output_buffer_size(UPSTREAM_OUTPUT_BYTES)
        .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Finds WeChat's addresses for the shared agent. ureq's own resolver starts a thread for every
/// lookup once a timeout is set, even for an IP address, and panics when no thread can be
/// started (a `TasksMax` limit), which made every login a 500 at the limit. Here an IP address
/// needs no lookup at all, and a host name is looked up on a thread started with a fallible
/// spawn, so that running out of threads is an upstream failure like any other.
#[derive(Debug)]
struct Resolver;

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
        use std::sync::mpsc::{self, RecvTimeoutError};
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let port = authority
            .port_u16()
            .or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })
            .ok_or(ureq::Error::HostNotFound)?;
        let host = authority.host();
        let mut found = self.empty();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            found.push(SocketAddr::new(ip, port));
            return Ok(found);
        }
        let name = format!("{host}:{port}");
        let (sender, answer) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("wxlogin-dns".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = sender.send(name.to_socket_addrs());
            })
            .map_err(ureq::Error::Io)?;
        let addresses = match answer.recv_timeout(*timeout.after) {
            Ok(lookup) => lookup.map_err(ureq::Error::Io)?,
            Err(RecvTimeoutError::Timeout) => return Err(ureq::Error::Timeout(timeout.reason)),
            Err(RecvTimeoutError::Disconnected) => return Err(ureq::Error::HostNotFound),
        };
        for address in addresses.take(16) {
            found.push(address);
        }
        if found.is_empty() {
            Err(ureq::Error::HostNotFound)
        } else {
            Ok(found)
        }
    }
}

/// An access_token and how long WeChat says it lives.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub value: Secret,
    pub expires_in: Duration,
}

#[derive(Deserialize)]
struct StableTokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct PhoneAnswer {
    phone_info: Option<PhoneNumber>,
}

/// Reads a WeChat answer: transport and status checked, body parsed as JSON, a non-zero
/// `errcode` turned into [`WechatError::Rejected`], and only then the fields of `T`.
fn read_answer<T: DeserializeOwned>(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<T, WechatError> {
    let mut response = response.map_err(classify_transport_error)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(WechatError::Status(status));
    }
    let body: Value = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_json()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => WechatError::Timeout,
            ureq::Error::Json(_) => WechatError::BadAnswer("not JSON".into()),
            ureq::Error::BodyExceedsLimit(_) => {
                WechatError::BadAnswer(format!("over {MAX_ANSWER_BYTES} bytes"))
            }
            other => classify_transport_error(other),
        })?;
    if let Some(errcode) = body
        .get("errcode")
        .and_then(Value::as_i64)
        .filter(|&c| c != 0)
    {
        return Err(WechatError::Rejected {
            errcode,
            errmsg: body
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    serde_json::from_value(body).map_err(|_| WechatError::BadAnswer("unexpected fields".into()))
}

/// Reduces a ureq error to its kind. ureq's own messages may quote the request URL, and ours
/// carries the AppSecret, so they are never passed on. Only failures that happen before a byte
/// of the request is written count as [`WechatError::Unreachable`]; any other I/O failure may
/// have come after WeChat read the request and is [`WechatError::Interrupted`].
pub(crate) fn classify_transport_error(e: ureq::Error) -> WechatError {
    match e {
        ureq::Error::Timeout(_) => WechatError::Timeout,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => WechatError::Timeout,
            kind @ (ErrorKind::ConnectionRefused
            | ErrorKind::NetworkUnreachable
            | ErrorKind::HostUnreachable
            | ErrorKind::AddrNotAvailable) => {
                WechatError::Unreachable(format!("I/O error: {kind}"))
            }
            kind => WechatError::Interrupted(format!("I/O error: {kind}")),
        },
        ureq::Error::HostNotFound => WechatError::Unreachable("host not found".into()),
        ureq::Error::ConnectionFailed => WechatError::Unreachable("connection failed".into()),
        ureq::Error::Tls(_) => WechatError::Unreachable("TLS failure".into()),
        ureq::Error::Protocol(_) => WechatError::BadAnswer("malformed HTTP".into()),
        ureq::Error::LargeResponseHeader(_, _) => {
            WechatError::BadAnswer("response headers too large".into())
        }
        _ => WechatError::Interrupted("transport error".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set only in the child process that `agent_ignores_proxy_variables_in_the_environment`
    /// starts, so the probe asserts nothing when run any other way.
    const PROBE_MARKER: &str = "WXLOGIN_PROXY_PROBE";

    #[test]
    fn the_resolver_takes_ip_addresses_as_they_are_and_looks_up_names() {
        use ureq::unversioned::resolver::Resolver as _;
        let config = agent_config(Duration::from_secs(5));
        let timeout = ureq::unversioned::transport::NextTimeout {
            after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(5)),
            reason: ureq::Timeout::Global,
            per_read: None,
            per_write: None,
        };
        let cases = [
            ("http://127.0.0.1:9/x", "127.0.0.1:9"),
            ("https://[::1]/x", "[::1]:443"),
            ("http://10.1.2.3/x", "10.1.2.3:80"),
            ("http://localhost:7/x", "127.0.0.1:7"),
        ];
        for (uri, expected) in cases {
            let found = Resolver
                .resolve(&uri.parse().unwrap(), &config, timeout)
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            let found: Vec<String> = found.iter().map(|a| a.to_string()).collect();
            assert!(found.iter().any(|a| a == expected), "{uri}: {found:?}");
        }
    }

    #[test]
    fn agent_follows_no_redirect_and_names_no_proxy() {
        let config = agent_config(Duration::from_secs(5));
        assert!(config.proxy().is_none(), "the agent must not use a proxy");
        assert_eq!(
            config.max_redirects(),
            0,
            "the agent must not follow redirects"
        );
        assert!(
            !config.http_status_as_error(),
            "error bodies must stay readable"
        );
    }

    #[test]
    #[ignore = "run in a child process by agent_ignores_proxy_variables_in_the_environment"]
    fn proxy_environment_probe() {
        if std::env::var_os(PROBE_MARKER).is_none() {
            return;
        }
        assert!(
            ureq::Proxy::try_from_env().is_some(),
            "the probe's environment should name a proxy, or it proves nothing"
        );
        assert!(
            agent_config(Duration::from_secs(5)).proxy().is_none(),
            "the agent took a proxy from the environment"
        );
    }

    /// Proxy variables are set in a child process only: setting them in this process would
    /// race every other test that builds an agent.
    #[test]
    fn agent_ignores_proxy_variables_in_the_environment() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "wechat::tests::proxy_environment_probe"])
            .args(["--ignored", "--test-threads=1"])
            .env(PROBE_MARKER, "1")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("http_proxy", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .expect("run the probe");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the probe failed or did not run:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn only_failures_before_sending_count_as_unreachable() {
        let io = |kind| ureq::Error::Io(std::io::Error::from(kind));
        let cases = [
            (io(ErrorKind::ConnectionRefused), "unreachable"),
            (ureq::Error::HostNotFound, "unreachable"),
            (ureq::Error::ConnectionFailed, "unreachable"),
            (io(ErrorKind::ConnectionReset), "interrupted"),
            (io(ErrorKind::BrokenPipe), "interrupted"),
            (io(ErrorKind::UnexpectedEof), "interrupted"),
            (io(ErrorKind::TimedOut), "timeout"),
        ];
        for (error, expected) in cases {
            let shown = format!("{error:?}");
            let kind = match classify_transport_error(error) {
                WechatError::Unreachable(_) => "unreachable",
                WechatError::Interrupted(_) => "interrupted",
                WechatError::Timeout => "timeout",
                other => panic!("{shown}: unexpected {other:?}"),
            };
            assert_eq!(kind, expected, "{shown}");
        }
    }
}
