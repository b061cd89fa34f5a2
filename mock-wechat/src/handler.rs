//! The HTTP endpoints of mock-wechat and the state they share: routing, the rules of each
//! WeChat API (which error for which input), the memories of used codes, session keys and
//! access tokens, and writing answers.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tiny_http::{Method, Request, StatusCode};

use crate::code::{self, Code};
use crate::config::MockConfig;
use crate::identity::{self, Nonces};
use crate::opendata::{self, MockProfile, OpenData, Watermark};
use crate::phone::{self, Phone};
use crate::token::{Check, Tokens};

/// How many used codes are remembered, of each kind (login codes, phone codes). When the
/// memory is full it is cleared whole rather than oldest-first: that needs no second
/// structure, and after a million logins letting each earlier code work one more time is
/// harmless for a mock. 1,000,000 codes of ~20 characters take about 100 MB at worst.
const USED_CODES_LIMIT: usize = 1_000_000;

/// How many users' session keys are remembered; cleared whole when full, like used codes
/// (those users then have no open data until they log in again). ~100 bytes a user.
const SESSIONS_LIMIT: usize = 100_000;

/// Longest request body read (stable_token, getuserphonenumber); longer ones are 47001.
const BODY_LIMIT: usize = 64 * 1024;

/// The number a `slow.<ms>` code gets from getuserphonenumber.
const SLOW_PHONE: Phone<'static> = Phone {
    user: "slow",
    number: "13800138000",
    country: phone::CHINA,
};

/// Everything the workers share.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    nonces: Nonces,
    login_codes: UsedCodes,
    phone_codes: UsedCodes,
    sessions: Mutex<HashMap<String, SessionKeys>>,
    tokens: Tokens,
    jscode2session_calls: AtomicU64,
    stable_token_calls: AtomicU64,
    phone_calls: AtomicU64,
    pub(crate) shutdown: Shutdown,
}

/// A user's session keys: the one from the latest login and the one before it.
#[derive(Clone, Copy)]
struct SessionKeys {
    latest: [u8; 16],
    previous: Option<[u8; 16]>,
}

/// Codes that worked once and must not work again.
struct UsedCodes {
    kind: &'static str,
    used: Mutex<HashSet<String>>,
}

impl UsedCodes {
    fn new(kind: &'static str) -> UsedCodes {
        UsedCodes {
            kind,
            used: Mutex::new(HashSet::new()),
        }
    }

    /// Marks `code` used; false when it already was.
    fn claim(&self, code: &str) -> bool {
        let mut used = lock(&self.used);
        if used.contains(code) {
            return false;
        }
        if used.len() >= USED_CODES_LIMIT {
            log::warn!(
                "forgetting {} used {} codes (limit reached)",
                used.len(),
                self.kind
            );
            used.clear();
        }
        used.insert(code.to_owned())
    }
}

impl State {
    pub(crate) fn new(config: MockConfig, nonces: Nonces) -> State {
        State {
            tokens: Tokens::new(config.token_ttl),
            config,
            nonces,
            login_codes: UsedCodes::new("login"),
            phone_codes: UsedCodes::new("phone"),
            sessions: Mutex::new(HashMap::new()),
            jscode2session_calls: AtomicU64::new(0),
            stable_token_calls: AtomicU64::new(0),
            phone_calls: AtomicU64::new(0),
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
        self.jscode2session_calls.load(Ordering::SeqCst)
    }

    pub(crate) fn stable_token_calls(&self) -> u64 {
        self.stable_token_calls.load(Ordering::SeqCst)
    }

    pub(crate) fn tokens_minted(&self) -> u64 {
        self.tokens.minted()
    }

    pub(crate) fn phone_calls(&self) -> u64 {
        self.phone_calls.load(Ordering::SeqCst)
    }

    /// A fresh phone code, or `None` when a part is not valid.
    pub(crate) fn mint_phone_code(
        &self,
        user: &str,
        number: &str,
        country: &str,
    ) -> Option<String> {
        let phone = Phone {
            user,
            number,
            country,
        };
        phone::format(&phone, &self.nonces.code_nonce())
    }

    /// Makes every access token issued so far expired; returns how many were still valid.
    pub(crate) fn expire_access_tokens(&self) -> usize {
        let expired = self.tokens.expire_all();
        log::info!("expired every access token ({expired} were still valid)");
        expired
    }

    /// The open data the WeChat client would hand the mini-program of `user`, made with the
    /// latest session key (or, when `stale`, the one before it); `None` without that key.
    pub(crate) fn open_data(
        &self,
        user: &str,
        profile: &MockProfile,
        stale: bool,
    ) -> Option<OpenData> {
        let keys = lock(&self.sessions).get(user).copied()?;
        let key = if stale { keys.previous? } else { keys.latest };
        let openid = self.openid_for(user);
        let unionid = self.config.unionid.then(|| identity::unionid(user));
        let watermark = Watermark {
            openid: &openid,
            unionid: unionid.as_deref(),
            appid: &self.config.appid,
            timestamp: unix_now(),
        };
        Some(opendata::seal(
            profile,
            &key,
            &self.nonces.block(),
            &watermark,
        ))
    }

    /// Remembers the session key of `user`'s latest login, and the one before it.
    fn remember_session(&self, user: &str, key: [u8; 16]) {
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= SESSIONS_LIMIT && !sessions.contains_key(user) {
            log::warn!(
                "forgetting the session keys of {} users (limit reached)",
                sessions.len()
            );
            sessions.clear();
        }
        let previous = sessions.get(user).map(|keys| keys.latest);
        sessions.insert(
            user.to_owned(),
            SessionKeys {
                latest: key,
                previous,
            },
        );
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
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
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer, before it is written.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: body.into(),
            allow: None,
        }
    }

    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            allow: None,
        }
    }

    /// An answer of WeChat's API: WeChat sends JSON as `text/plain` (jscode2session does),
    /// and clients must cope, so the mock does it on every WeChat endpoint.
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
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "invalid code, this is a high risk user",
        41001 => "access_token missing",
        41008 => "missing code",
        42001 => "access_token expired",
        47001 => "data format error",
        45011 => "api minute-quota reach limit mustslower retry next minute",
        _ => "mock error",
    }
}

/// Answers one request. Never panics, whatever the request holds.
///
/// Calls to WeChat's API are counted before the answer leaves, so that a client holding
/// the answer always sees its call counted.
pub(crate) fn handle(state: &State, mut request: Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let is_get = *request.method() == Method::Get;
    let is_post = *request.method() == Method::Post;
    let reply = match path {
        "/sns/jscode2session" => {
            let reply = if is_get {
                jscode2session(state, query)
            } else {
                method_not_allowed("GET")
            };
            state.jscode2session_calls.fetch_add(1, Ordering::SeqCst);
            reply
        }
        "/cgi-bin/stable_token" => {
            let reply = if is_post {
                let body = read_body(&mut request);
                stable_token(state, body.as_deref())
            } else {
                method_not_allowed("POST")
            };
            state.stable_token_calls.fetch_add(1, Ordering::SeqCst);
            reply
        }
        "/wxa/business/getuserphonenumber" => {
            let reply = if is_post {
                let body = read_body(&mut request);
                get_user_phone_number(state, query, body.as_deref())
            } else {
                method_not_allowed("POST")
            };
            state.phone_calls.fetch_add(1, Ordering::SeqCst);
            reply
        }
        "/mock/expire_tokens" if !is_post => method_not_allowed("POST"),
        "/mock/expire_tokens" => {
            let expired = state.expire_access_tokens();
            Reply::json(200, &json!({ "expired": expired }))
        }
        "/mock/code" | "/mock/phone_code" | "/mock/userinfo" | "/mock/stats" | "/healthz"
            if !is_get =>
        {
            method_not_allowed("GET")
        }
        "/mock/code" => mock_code(state, query),
        "/mock/phone_code" => mock_phone_code(state, query),
        "/mock/userinfo" => mock_userinfo(state, query),
        "/mock/stats" => stats(state),
        "/healthz" => Reply::text(200, "ok"),
        _ => Reply::mock_error(404, "mock-wechat: no such endpoint"),
    };
    if state.config.keep_alive {
        send_keep_alive(request, &reply);
    } else {
        send(request, &reply);
    }
}

/// Answers through tiny_http, which keeps the connection open for the next request.
fn send_keep_alive(request: Request, reply: &Reply) {
    let mut response = tiny_http::Response::from_string(reply.body.clone())
        .with_status_code(reply.status)
        .with_header(
            tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes())
                .expect("static content types are valid header values"),
        );
    if let Some(allow) = reply.allow {
        response = response.with_header(
            tiny_http::Header::from_bytes(&b"Allow"[..], allow.as_bytes())
                .expect("static method lists are valid header values"),
        );
    }
    if let Err(err) = request.respond(response) {
        log::debug!("could not write an answer: {err}");
    }
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut reply = Reply::mock_error(
        405,
        &format!("mock-wechat: method not allowed, use {allow}"),
    );
    reply.allow = Some(allow);
    reply
}

/// The request body, at most [`BODY_LIMIT`] bytes; `None` when longer or unreadable.
fn read_body(request: &mut Request) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let limit = BODY_LIMIT as u64 + 1;
    match request.as_reader().take(limit).read_to_end(&mut body) {
        Ok(_) if body.len() <= BODY_LIMIT => Some(body),
        Ok(_) => {
            log::info!("a request body longer than {BODY_LIMIT} bytes");
            None
        }
        Err(err) => {
            log::info!("could not read a request body: {err}");
            None
        }
    }
}

/// The body as a JSON object; `None` for anything else (WeChat's 47001).
fn json_object(body: Option<&[u8]>) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body?) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
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
            if state.login_codes.claim(&js_code) {
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
            http_status(status)
        }
        Code::Garbage => {
            log::info!("jscode2session: {js_code:?} -> a body that is not JSON");
            garbage()
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

/// The answer of an `http.<status>` code.
fn http_status(status: u16) -> Reply {
    Reply {
        status,
        content_type: "text/html",
        body: format!("<html>{status}</html>"),
        allow: None,
    }
}

/// The answer of a `garbage.<x>` code.
fn garbage() -> Reply {
    Reply::text(200, "this is not json")
}

/// A successful login, with a fresh session key that becomes the user's latest. The
/// session key is never logged.
fn login(state: &State, user: &str) -> Reply {
    let openid = state.openid_for(user);
    log::info!("jscode2session: {user} logged in as {openid}");
    let key = state.nonces.block();
    state.remember_session(user, key);
    let mut body = Map::new();
    body.insert("openid".to_owned(), Value::String(openid));
    body.insert(
        "session_key".to_owned(),
        Value::String(identity::session_key_text(&key)),
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

/// `POST /cgi-bin/stable_token` in WeChat's normal mode: the current access token while it
/// is valid, else a new one; `force_refresh: true` always mints one. Tokens are never logged.
fn stable_token(state: &State, body: Option<&[u8]>) -> Reply {
    if !state.shutdown.sleep(state.config.latency) {
        return shutting_down();
    }
    let Some(body) = json_object(body) else {
        log::info!("stable_token: the body is not a JSON object -> 47001");
        return Reply::wechat_error(47001);
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    let config = &state.config;
    if field("appid") != Some(config.appid.as_str()) {
        log::info!("stable_token: wrong appid -> 40013");
        return Reply::wechat_error(40013);
    }
    if field("secret") != Some(config.secret.as_str()) {
        log::info!("stable_token: wrong secret -> 40125");
        return Reply::wechat_error(40125);
    }
    if field("grant_type") != Some("client_credential") {
        log::info!("stable_token: wrong grant_type -> 40002");
        return Reply::wechat_error(40002);
    }
    let force_refresh = match body.get("force_refresh") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => {
            log::info!("stable_token: force_refresh is not a boolean -> 47001");
            return Reply::wechat_error(47001);
        }
    };
    let (token, expires_in) = state
        .tokens
        .stable(force_refresh, || state.nonces.access_token());
    Reply::wechat(&json!({ "access_token": token, "expires_in": expires_in }))
}

/// `POST /wxa/business/getuserphonenumber?access_token=…` with `{"code":…}`.
fn get_user_phone_number(state: &State, query: &str, body: Option<&[u8]>) -> Reply {
    const API: &str = "getuserphonenumber";
    if !state.shutdown.sleep(state.config.latency) {
        return shutting_down();
    }
    let token = match param(query, "access_token") {
        Some(token) if !token.is_empty() => token,
        _ => {
            log::info!("{API}: no access_token -> 41001");
            return Reply::wechat_error(41001);
        }
    };
    match state.tokens.check(&token) {
        Check::Valid => {}
        Check::Unknown => {
            log::info!("{API}: an unknown access_token -> 40001");
            return Reply::wechat_error(40001);
        }
        Check::Expired => {
            log::info!("{API}: an expired access_token -> 42001");
            return Reply::wechat_error(42001);
        }
    }
    let code = match json_object(body).as_ref().and_then(|body| body.get("code")) {
        Some(Value::String(code)) if !code.is_empty() => code.clone(),
        _ => {
            log::info!("{API}: the body is not JSON with a code -> 47001");
            return Reply::wechat_error(47001);
        }
    };
    if let Some(phone) = phone::parse(&code) {
        if state.phone_codes.claim(&code) {
            return phone_number(state, &phone);
        }
        log::info!(
            "{API}: a phone code of {} already used -> 40163",
            phone.user
        );
        return Reply::wechat_error(40163);
    }
    match code::parse(&code) {
        Code::Fail(errcode) => {
            log::info!("{API}: {code:?} -> errcode {errcode}");
            Reply::wechat_error(errcode)
        }
        Code::Http(status) => {
            log::info!("{API}: {code:?} -> HTTP {status}");
            http_status(status)
        }
        Code::Garbage => {
            log::info!("{API}: {code:?} -> a body that is not JSON");
            garbage()
        }
        Code::Slow(wait) => {
            if !state.shutdown.sleep(wait) {
                return shutting_down();
            }
            phone_number(state, &SLOW_PHONE)
        }
        Code::Login(user) => {
            log::info!("{API}: a wx.login code of {user}, not a phone code -> 40029");
            Reply::wechat_error(40029)
        }
        Code::Invalid => {
            // Not echoed: it could be anything a client put in the wrong field.
            log::info!(
                "{API}: a code that is not a phone code ({} bytes) -> 40029",
                code.len()
            );
            Reply::wechat_error(40029)
        }
    }
}

/// A successful getuserphonenumber, in WeChat's shape.
fn phone_number(state: &State, phone: &Phone<'_>) -> Reply {
    log::info!("getuserphonenumber: the phone number of {}", phone.user);
    Reply::wechat(&json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone.display(),
            "purePhoneNumber": phone.number,
            "countryCode": phone.country,
            "watermark": { "timestamp": unix_now(), "appid": state.config.appid },
        },
    }))
}

/// `/mock/phone_code?user=NAME&phone=DIGITS[&country=DIGITS]`: what a simulated
/// `getPhoneNumber` button hands the mini-program.
fn mock_phone_code(state: &State, query: &str) -> Reply {
    let user = param(query, "user").unwrap_or_default();
    let number = param(query, "phone").unwrap_or_default();
    let country = param(query, "country").unwrap_or_else(|| phone::CHINA.to_owned());
    match state.mint_phone_code(&user, &number, &country) {
        Some(code) => Reply::text(200, code),
        None => Reply::text(
            400,
            "mock-wechat: user must be 1 to 32 characters of A-Z a-z 0-9 _, \
             phone 1 to 20 digits, country (default 86) 1 to 3 digits not starting with 0",
        ),
    }
}

/// `/mock/userinfo?user=NAME&nickName=…&avatarUrl=…&gender=N[&stale=1][&format=form]`: the
/// open data the WeChat client would hand the mini-program of that user, as JSON or (with
/// `format=form`) as the form fields the mini-program posts, ready for `curl -d @-`.
fn mock_userinfo(state: &State, query: &str) -> Reply {
    let bad = |what: &str| Reply::mock_error(400, &format!("mock-wechat: {what}"));
    let user = param(query, "user").unwrap_or_default();
    if !code::is_valid_user(&user) {
        return bad("user must be 1 to 32 characters of A-Z a-z 0-9 _");
    }
    let gender = match param(query, "gender") {
        None => 0,
        Some(gender) => match gender.parse::<i64>() {
            Ok(gender) => gender,
            Err(_) => return bad("gender must be a whole number (0 unknown, 1 male, 2 female)"),
        },
    };
    let stale = match param(query, "stale").as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => return bad("stale must be 1 or 0"),
    };
    let as_form = match param(query, "format").as_deref() {
        None | Some("json") => false,
        Some("form") => true,
        Some(_) => return bad("format must be json or form"),
    };
    let profile = MockProfile {
        nick_name: param(query, "nickName").unwrap_or_default(),
        avatar_url: param(query, "avatarUrl").unwrap_or_default(),
        gender,
    };
    let Some(data) = state.open_data(&user, &profile, stale) else {
        let why = if stale {
            "has no session key before the latest: log in twice"
        } else {
            "has no session key: log in first"
        };
        return Reply::mock_error(404, &format!("mock-wechat: {user} {why}"));
    };
    let which = if stale { "the previous" } else { "the latest" };
    log::info!("userinfo: open data of {user} with {which} session key");
    if as_form {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("userInfo", &data.raw_data)
            .append_pair("signature", &data.signature)
            .append_pair("encryptedData", &data.encrypted_data)
            .append_pair("iv", &data.iv)
            .finish();
        return Reply::text(200, body);
    }
    Reply::json(
        200,
        &json!({
            "rawData": data.raw_data,
            "signature": data.signature,
            "encryptedData": data.encrypted_data,
            "iv": data.iv,
        }),
    )
}

/// `/mock/stats`, built by hand so that the keys keep this order.
fn stats(state: &State) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json",
        body: format!(
            "{{\"jscode2session\":{},\"stable_token\":{},\"tokens_minted\":{},\"getuserphonenumber\":{}}}",
            state.jscode2session_calls(),
            state.stable_token_calls(),
            state.tokens_minted(),
            state.phone_calls()
        ),
        allow: None,
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
    if let Some(allow) = reply.allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
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
