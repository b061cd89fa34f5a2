//! The HTTP endpoints of mock-wechat and the state they share: routing, the jscode2session
//! rules (which error for which input), the used-code memory, and writing answers.

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tiny_http::{Method, Request, StatusCode};

use crate::code::{self, Code};
use crate::config::MockConfig;
use crate::identity::{self, Nonces};

/// How many used codes are remembered. When the memory is full it is cleared whole rather
/// than oldest-first: that needs no second structure, and after a million logins letting
/// each earlier code work one more time is harmless for a mock. 1,000,000 codes of ~20
/// characters take about 100 MB at worst.
const USED_CODES_LIMIT: usize = 1_000_000;

/// Everything the workers share.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    nonces: Nonces,
    used: Mutex<HashSet<String>>,
    calls: AtomicU64,
    pub(crate) shutdown: Shutdown,
}

impl State {
    pub(crate) fn new(config: MockConfig, nonces: Nonces) -> State {
        State {
            config,
            nonces,
            used: Mutex::new(HashSet::new()),
            calls: AtomicU64::new(0),
            shutdown: Shutdown::default(),
        }
    }

    /// A fresh code for `user`, or `None` when no code can be minted for that name.
    pub(crate) fn mint_code(&self, user: &str) -> Option<String> {
        code::is_usable_user(user).then(|| format!("{user}.{}", self.nonces.code_nonce()))
    }

    /// Same as the mock's nonce source; used for codes that must be rejected.
    pub(crate) fn code_nonce(&self) -> String {
        self.nonces.code_nonce()
    }

    pub(crate) fn openid_for(&self, user: &str) -> String {
        identity::openid(&self.config.appid, user)
    }

    pub(crate) fn jscode2session_calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Marks `code` used; false when it already was.
    fn claim(&self, code: &str) -> bool {
        let mut used = lock(&self.used);
        if used.contains(code) {
            return false;
        }
        if used.len() >= USED_CODES_LIMIT {
            log::warn!("forgetting {} used codes (limit reached)", used.len());
            used.clear();
        }
        used.insert(code.to_owned())
    }
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
    fn sleep(&self, duration: Duration) -> bool {
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

/// Locks a mutex even if a thread panicked while holding it: the data (a set of codes, a
/// flag) stays usable, and the mock must keep answering.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer, before it is written.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: body.into(),
        }
    }

    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    /// A jscode2session answer: WeChat sends JSON as `text/plain`, and clients must cope.
    fn wechat(body: &Value) -> Reply {
        Reply::text(200, body.to_string())
    }

    /// A WeChat error, always with HTTP 200 as WeChat does.
    fn wechat_error(errcode: i64) -> Reply {
        Reply::wechat(&json!({ "errcode": errcode, "errmsg": errmsg(errcode) }))
    }

    fn mock_error(status: u16, errmsg: &str) -> Reply {
        Reply::json(status, &json!({ "errcode": -1, "errmsg": errmsg }))
    }
}

/// WeChat's message for an errcode, or `mock error` for those the mock does not know.
fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "invalid code, this is a high risk user",
        41008 => "missing code",
        45011 => "api minute-quota reach limit mustslower retry next minute",
        _ => "mock error",
    }
}

/// Answers one request. Never panics, whatever the request holds.
pub(crate) fn handle(state: &State, request: Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let is_get = *request.method() == Method::Get;
    let reply = match path {
        "/sns/jscode2session" => {
            let reply = if is_get {
                jscode2session(state, query)
            } else {
                method_not_allowed()
            };
            // Counted before the answer leaves, so that a client holding the answer always
            // sees its call counted.
            state.calls.fetch_add(1, Ordering::SeqCst);
            reply
        }
        "/mock/code" | "/mock/stats" | "/healthz" if !is_get => method_not_allowed(),
        "/mock/code" => mock_code(state, query),
        "/mock/stats" => Reply::json(
            200,
            &json!({ "jscode2session": state.jscode2session_calls() }),
        ),
        "/healthz" => Reply::text(200, "ok"),
        _ => Reply::mock_error(404, "mock-wechat: no such endpoint"),
    };
    send(request, &reply);
}

fn method_not_allowed() -> Reply {
    Reply::mock_error(405, "mock-wechat: method not allowed, use GET")
}

/// The first value of a query parameter, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn jscode2session(state: &State, query: &str) -> Reply {
    if !state.shutdown.sleep(state.config.latency) {
        return shutting_down();
    }
    let config = &state.config;
    if param(query, "appid").as_deref() != Some(config.appid.as_str()) {
        log::info!("jscode2session: wrong appid -> 40013");
        return Reply::wechat_error(40013);
    }
    // Never log the secret, even a wrong one: it may be a real one sent here by mistake.
    if param(query, "secret").as_deref() != Some(config.secret.as_str()) {
        log::info!("jscode2session: wrong secret -> 40125");
        return Reply::wechat_error(40125);
    }
    if param(query, "grant_type").as_deref() != Some("authorization_code") {
        log::info!("jscode2session: wrong grant_type -> 40002");
        return Reply::wechat_error(40002);
    }
    let js_code = match param(query, "js_code") {
        Some(js_code) if !js_code.is_empty() => js_code,
        _ => {
            log::info!("jscode2session: no js_code -> 41008");
            return Reply::wechat_error(41008);
        }
    };
    match code::parse(&js_code) {
        Code::Login(user) => {
            if state.claim(&js_code) {
                login(state, user)
            } else {
                log::info!("jscode2session: {js_code:?} already used -> 40163");
                Reply::wechat_error(40163)
            }
        }
        Code::Fail(errcode) => {
            log::info!("jscode2session: {js_code:?} -> errcode {errcode}");
            Reply::wechat_error(errcode)
        }
        Code::Http(status) => {
            log::info!("jscode2session: {js_code:?} -> HTTP {status}");
            Reply {
                status,
                content_type: "text/html",
                body: format!("<html>{status}</html>"),
            }
        }
        Code::Garbage => {
            log::info!("jscode2session: {js_code:?} -> a body that is not JSON");
            Reply::text(200, "this is not json")
        }
        Code::Slow(wait) => {
            if !state.shutdown.sleep(wait) {
                return shutting_down();
            }
            login(state, "slow")
        }
        Code::Invalid => {
            log::info!("jscode2session: {js_code:?} is not a valid code -> 40029");
            Reply::wechat_error(40029)
        }
    }
}

/// A successful login. The session key is never logged.
fn login(state: &State, user: &str) -> Reply {
    let openid = state.openid_for(user);
    log::info!("jscode2session: {user} logged in as {openid}");
    let mut body = Map::new();
    body.insert("openid".to_owned(), Value::String(openid));
    body.insert(
        "session_key".to_owned(),
        Value::String(state.nonces.session_key()),
    );
    if state.config.unionid {
        body.insert("unionid".to_owned(), Value::String(identity::unionid(user)));
    }
    Reply::wechat(&Value::Object(body))
}

fn shutting_down() -> Reply {
    Reply::mock_error(503, "mock-wechat: shutting down")
}

/// `/mock/code?user=NAME`: what a simulated `wx.login()` calls to get a code.
fn mock_code(state: &State, query: &str) -> Reply {
    let user = param(query, "user").unwrap_or_default();
    match state.mint_code(&user) {
        Some(code) => Reply::text(200, code),
        None => Reply::text(
            400,
            "mock-wechat: user must be 1 to 32 characters of A-Z a-z 0-9 _ \
             and not fail, http, garbage or slow",
        ),
    }
}

/// Writes the answer with `Connection: close`.
///
/// tiny_http cannot close an idle keep-alive connection, and after `stop` nobody answers on
/// one: a client reusing it would wait for its own timeout instead of being refused. So
/// every answer asks the client to close, and the answer is written by hand because
/// tiny_http drops a `Connection` header set on a `Response`.
fn send(request: Request, reply: &Reply) {
    let head_only = *request.method() == Method::Head;
    let reason = StatusCode(reply.status).default_reason_phrase();
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    if reply.status == 405 {
        head.push_str("Allow: GET\r\n");
    }
    head.push_str("\r\n");
    let mut writer = request.into_writer();
    let mut written = writer.write_all(head.as_bytes());
    if !head_only {
        written = written.and_then(|()| writer.write_all(reply.body.as_bytes()));
    }
    if let Err(err) = written.and_then(|()| writer.flush()) {
        log::debug!("could not write an answer: {err}");
    }
}
