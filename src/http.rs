//! HTTP: the server's lifecycle, routing, body limits, and the JSON answers.
//!
//! tiny_http accepts connections and parses requests on its own threads; a fixed pool of worker
//! threads takes requests from it and runs each handler to completion, blocking on WeChat and the
//! database. Every handler runs under `catch_unwind`, so a bug becomes a 500 for that request and
//! the worker lives on. Every answer carries an `X-Request-Id`, and every request leaves one access
//! log line; failures also leave a line with their cause under the same id.

use crate::access_token::AccessTokens;
use crate::avatar;
use crate::config::Config;
use crate::error::Error;
use crate::fields::BodyFields;
use crate::login::{LoginRequest, LoginService};
use crate::metrics::Metrics;
use crate::phone::PhoneService;
use crate::profile::{self, ProfileService};
use crate::store::{self, StoreError, StoreOptions, UserStore};
use crate::token::{TokenIssuer, UserClaims};
use crate::user::User;
use crate::wechat::WechatClient;
use serde_json::{json, Value};
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response};

/// Workers only hold a small stack: handlers parse small bodies and make blocking calls.
const WORKER_STACK_BYTES: usize = 256 * 1024;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Store(StoreError),
    Bind(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "cannot open the database (DATABASE_URL): {e}"),
            StartError::Bind(e) => write!(f, "cannot listen (WXLOGIN_BIND): {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Everything a handler needs, shared by all workers.
struct App {
    login: LoginService,
    phone: PhoneService,
    profiles: ProfileService,
    tokens: Arc<TokenIssuer>,
    store: Arc<dyn UserStore>,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    request_ids: RequestIds,
}

/// A running server. Dropping it shuts it down gracefully.
pub struct Server {
    addr: SocketAddr,
    http: Arc<tiny_http::Server>,
    /// Our handle on tiny_http's listening socket, to stop accepting at shutdown.
    listener: TcpListener,
    store: Arc<dyn UserStore>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    /// Workers still running, to wait for them with a deadline.
    running: Arc<(Mutex<usize>, Condvar)>,
    /// Set when tiny_http's accept loop died (it stops for good on any accept error, such as
    /// running out of file descriptors): the process can no longer serve and should exit.
    listener_failed: Arc<AtomicBool>,
    drain_timeout: Duration,
}

impl Server {
    /// Opens the store named by `DATABASE_URL`, binds, and starts serving in the background.
    pub fn start(config: Config) -> Result<Server, StartError> {
        let options = StoreOptions {
            max_connections: config.threads.min(StoreOptions::default().max_connections),
            ..StoreOptions::default()
        };
        let store = store::open(&config.database_url, options).map_err(StartError::Store)?;
        Server::start_with_store(config, Arc::from(store))
    }

    /// Starts serving with a store the caller opened (tests share one with the server).
    pub fn start_with_store(
        config: Config,
        store: Arc<dyn UserStore>,
    ) -> Result<Server, StartError> {
        let bind_error = |e: &dyn fmt::Display| StartError::Bind(format!("{}: {e}", config.bind));
        let listener = TcpListener::bind(config.bind).map_err(|e| bind_error(&e))?;
        // Accepted sockets inherit these on Linux: a client silent for this long, reading or
        // writing, is dropped (our tiny_http keeps accepting when accept() itself times out).
        let socket = socket2::SockRef::from(&listener);
        socket
            .set_read_timeout(Some(config.client_timeout))
            .and_then(|()| socket.set_write_timeout(Some(config.client_timeout)))
            .map_err(|e| bind_error(&e))?;
        let addr = listener.local_addr().map_err(|e| bind_error(&e))?;
        let our_handle = listener.try_clone().map_err(|e| bind_error(&e))?;
        let http = Arc::new(
            tiny_http::Server::from_listener_with_limits(listener, None, http_limits(&config))
                .map_err(|e| bind_error(&e))?,
        );
        let tokens = Arc::new(TokenIssuer::new(&config.jwt));
        let metrics = Arc::new(Metrics::new());
        let wechat = WechatClient::new(config.wechat.clone(), metrics.clone());
        // A request waiting on another's upstream call waits at most that call's own bound
        // (plus a database round trip's worth of margin).
        let wait_limit = config.wechat.timeout * 2 + StoreOptions::default().timeout;
        let access_tokens = Arc::new(AccessTokens::new(wechat.clone(), wait_limit));
        let app = Arc::new(App {
            login: LoginService::new(
                wechat.clone(),
                config.wechat.appid.clone(),
                tokens.clone(),
                store.clone(),
                config.code_replay_window,
                wait_limit,
            ),
            phone: PhoneService::new(wechat, access_tokens, store.clone()),
            profiles: ProfileService::new(
                store.clone(),
                config
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{addr}")),
            ),
            tokens,
            store: store.clone(),
            metrics,
            max_body_bytes: config.max_body_bytes,
            request_ids: RequestIds::new(),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let listener_failed = Arc::new(AtomicBool::new(false));
        let running = Arc::new((Mutex::new(config.threads), Condvar::new()));
        let mut workers = Vec::with_capacity(config.threads);
        for n in 0..config.threads {
            let (http, app, stopping) = (http.clone(), app.clone(), stopping.clone());
            let (running, listener_failed) = (running.clone(), listener_failed.clone());
            let worker = std::thread::Builder::new()
                .name(format!("wxlogin-worker-{n}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || {
                    work(&http, &app, &stopping, &listener_failed);
                    let (count, changed) = &*running;
                    *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
                    changed.notify_all();
                })
                .map_err(|e| StartError::Bind(format!("cannot start worker threads: {e}")))?;
            workers.push(worker);
        }
        Ok(Server {
            addr,
            http,
            listener: our_handle,
            store,
            workers,
            stopping,
            running,
            listener_failed,
            drain_timeout: config.drain_timeout,
        })
    }

    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store the server writes to.
    pub fn store(&self) -> Arc<dyn UserStore> {
        self.store.clone()
    }

    /// Whether the server stopped accepting connections on its own: tiny_http's accept loop
    /// ended (an accept error such as running out of file descriptors, or a panic). A panic on
    /// any other thread ends only that connection or request.
    pub fn listener_failed(&self) -> bool {
        self.listener_failed.load(Ordering::SeqCst)
    }

    /// Stops accepting connections, lets the workers finish every request already received
    /// for up to `WXLOGIN_DRAIN_TIMEOUT`, and returns whether they all finished in time.
    pub fn shutdown(mut self) -> bool {
        self.drain()
    }

    fn drain(&mut self) -> bool {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return true;
        }
        // Closing our handle on the listening socket makes tiny_http's accept() fail, so new
        // connections are refused at once instead of queued behind the drain.
        crate::logging::expect_closed_listener();
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        // Each worker leaves after an unblock; requests received before them are served first.
        for _ in 0..self.workers.len() {
            self.http.unblock();
        }
        let deadline = Instant::now() + self.drain_timeout;
        let (count, changed) = &*self.running;
        let mut running = count.lock().unwrap_or_else(|p| p.into_inner());
        while *running > 0 {
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "shutdown: {} request(s) still running after the {:?} drain; leaving them",
                    *running,
                    self.drain_timeout
                );
                return false;
            }
            running = changed
                .wait_timeout(running, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(running);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.drain();
    }
}

/// What tiny_http's connection threads enforce before a request reaches a worker: the
/// connection cap, the whole-request deadline, and each route's body limit, so a body is read in
/// full (or refused) before any worker sees it.
fn http_limits(config: &Config) -> tiny_http::Limits {
    let max_body_bytes = config.max_body_bytes;
    tiny_http::Limits {
        max_connections: config.max_connections,
        body_timeout: config.body_timeout,
        body_limit: Arc::new(move |_, url: &str| {
            if url.split('?').next() == Some("/api/me/avatar") {
                avatar::MAX_UPLOAD_BODY_BYTES
            } else {
                max_body_bytes
            }
        }),
        thread_stack_bytes: WORKER_STACK_BYTES,
    }
}

/// One worker: take a request, answer it, repeat until an unblock arrives after shutdown began.
/// Outside shutdown, an error from `recv` is tiny_http reporting that its accept loop died.
fn work(http: &tiny_http::Server, app: &App, stopping: &AtomicBool, listener_failed: &AtomicBool) {
    loop {
        match http.recv() {
            Ok(request) => serve(app, request),
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(e) => {
                log::error!("the listener failed and accepts no more connections: {e}");
                listener_failed.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// A handler's successful answer.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// Headers beyond the ones every answer gets.
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json; charset=utf-8",
            body: body.to_string().into_bytes(),
            headers: vec![("Cache-Control", "no-store".into())],
        }
    }

    fn ok(body: Value) -> Reply {
        Reply::json(200, &body)
    }

    fn error(error: &Error) -> Reply {
        let mut reply = Reply::json(error.status(), &error.body());
        reply.headers.extend(error.headers());
        reply
    }
}

/// Answers one request, whatever happens inside the handler.
fn serve(app: &App, mut request: Request) {
    let started = Instant::now();
    let id = app.request_ids.next(&request);
    let method = request.method().clone();
    let client = client_address(&request);
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let route = route_name(&path);

    let outcome = catch_unwind(AssertUnwindSafe(|| {
        route_request(app, &mut request, &path, &id)
    }));
    let reply = match outcome {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => {
            log_failure(&id, route, &error);
            if let Error::Store(e) = &error {
                app.metrics.count_db_error(e.kind());
            }
            Reply::error(&error)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let error = Error::Internal(format!("handler panicked: {what}"));
            log_failure(&id, route, &error);
            Reply::error(&error)
        }
    };

    let status = reply.status;
    let mut response = Response::from_data(reply.body)
        .with_status_code(status)
        .with_header(header("Content-Type", reply.content_type))
        .with_header(header("X-Request-Id", &id));
    for (name, value) in &reply.headers {
        response = response.with_header(header(name, value));
    }
    // Logged before the answer leaves: the connection's thread writes it to the client, so a
    // client that has its answer also finds its access log line and metric.
    let took = started.elapsed();
    app.metrics.observe_request(route, status, took);
    log::info!(
        target: "wxlogin::access",
        "{id} {method} {route} {status} {:.1}ms {client}",
        took.as_secs_f64() * 1000.0
    );
    if let Err(e) = request.respond(response) {
        log::debug!("{id} could not send the answer: {e}");
    }
}

/// The client's address for the log: the peer, or, when the peer is a proxy on this machine,
/// the address it passed in `X-Real-IP` (see deploy/nginx). Other peers cannot set it.
fn client_address(request: &Request) -> String {
    match request.remote_addr() {
        Some(peer) if peer.ip().is_loopback() => header_value(request, "X-Real-IP")
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| peer.to_string()),
        Some(peer) => peer.to_string(),
        None => "-".into(),
    }
}

/// A fixed label per route, so logs and metrics never carry arbitrary client paths.
fn route_name(path: &str) -> &'static str {
    match path {
        "/api/wxuser" => "/api/wxuser",
        "/api/me" => "/api/me",
        "/api/phone" => "/api/phone",
        "/api/me/avatar" => "/api/me/avatar",
        p if p.starts_with("/avatars/") => "/avatars/{file}",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "(unmatched)",
    }
}

fn route_request(app: &App, request: &mut Request, path: &str, id: &str) -> Result<Reply, Error> {
    let method = request.method();
    match (path, method) {
        ("/api/wxuser", Method::Post) => login(app, request, id),
        ("/api/wxuser", _) => Err(Error::MethodNotAllowed { allow: "POST" }),
        ("/api/me", Method::Get) => me(app, request),
        ("/api/me", Method::Put) => update_me(app, request),
        ("/api/me", _) => Err(Error::MethodNotAllowed { allow: "GET, PUT" }),
        ("/api/me/avatar", Method::Post) => upload_avatar(app, request),
        ("/api/me/avatar", _) => Err(Error::MethodNotAllowed { allow: "POST" }),
        (p, Method::Get | Method::Head) if p.starts_with("/avatars/") => {
            serve_avatar(app, request, &p["/avatars/".len()..])
        }
        (p, _) if p.starts_with("/avatars/") => Err(Error::MethodNotAllowed { allow: "GET, HEAD" }),
        ("/api/phone", Method::Post) => phone(app, request),
        ("/api/phone", _) => Err(Error::MethodNotAllowed { allow: "POST" }),
        ("/healthz", Method::Get | Method::Head) => {
            Ok(Reply::ok(json!({"status": 200, "message": "ok"})))
        }
        ("/readyz", Method::Get | Method::Head) => {
            app.store.ping()?;
            Ok(Reply::ok(json!({"status": 200, "message": "ready"})))
        }
        ("/metrics", Method::Get) => Ok(Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: app.metrics.render(app.store.pool_usage()).into_bytes(),
            headers: vec![("Cache-Control", "no-store".into())],
        }),
        ("/healthz" | "/readyz", _) => Err(Error::MethodNotAllowed { allow: "GET, HEAD" }),
        ("/metrics", _) => Err(Error::MethodNotAllowed { allow: "GET" }),
        _ => Err(Error::NotFound),
    }
}

/// `POST /api/wxuser`: a `wx.login()` code (and optional profile) in, a bearer token out.
fn login(app: &App, request: &mut Request, id: &str) -> Result<Reply, Error> {
    let login = LoginRequest::from_fields(read_fields(app, request)?)?;
    let outcome = app.login.login(&login)?;
    if let Some(why) = outcome.profile.rejection() {
        log::info!("{id} /api/wxuser profile rejected, stored profile kept: {why}");
    }
    Ok(Reply::ok(json!({
        "status": 200,
        "token": format!("Bearer {}", outcome.token),
        "messages": "login succeeded",
        "profile": match outcome.profile.rejection() {
            Some(reason) => json!({"status": outcome.profile.label(), "reason": reason}),
            None => json!({"status": outcome.profile.label()}),
        },
    })))
}

/// `POST /api/phone`: a `getPhoneNumber` button code in, the user's number stored and returned.
fn phone(app: &App, request: &mut Request) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    let code = PhoneService::code(&mut read_fields(app, request)?)?;
    let phone = app.phone.bind(&claims.openid, &code)?;
    Ok(Reply::ok(json!({ "status": 200, "phone": phone })))
}

/// The body's fields, read according to its `Content-Type`.
fn read_fields(app: &App, request: &mut Request) -> Result<BodyFields, Error> {
    let kind = body_kind(request)?;
    let body = read_body(request, app.max_body_bytes)?;
    match kind {
        BodyKind::Json => Ok(BodyFields::from_json(&body)?),
        BodyKind::Form => Ok(BodyFields::from_form(&body)),
        BodyKind::Unlabelled if body.is_empty() => Ok(BodyFields::default()),
        BodyKind::Unlabelled => Err(Error::UnsupportedMediaType),
    }
}

/// The user named by the request's bearer token.
fn authenticate(app: &App, request: &Request) -> Result<UserClaims, Error> {
    app.tokens
        .verify_header(header_value(request, "Authorization"))
        .map_err(|e| Error::Unauthorized(e.client_message()))
}

/// `GET /api/me`: the stored profile of the token's user.
fn me(app: &App, request: &Request) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    let user = app.profiles.user(&claims.openid)?;
    Ok(user_reply(&user))
}

/// `PUT /api/me`: the nickname (and gender) the user typed.
fn update_me(app: &App, request: &mut Request) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    if !matches!(body_kind(request)?, BodyKind::Json) {
        return Err(Error::UnsupportedMediaType);
    }
    let update = profile::parse_update(&read_body(request, app.max_body_bytes)?)?;
    let user = app.profiles.update(&claims.openid, &update)?;
    Ok(user_reply(&user))
}

/// `POST /api/me/avatar`: the image from `<button open-type="chooseAvatar">`, sent with
/// `wx.uploadFile`.
fn upload_avatar(app: &App, request: &mut Request) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    let content_type = header_value(request, "Content-Type")
        .unwrap_or("")
        .to_string();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(Error::UnsupportedMediaType);
    }
    let body = read_body(request, avatar::MAX_UPLOAD_BODY_BYTES)?;
    let image = avatar::from_multipart(&content_type, body)?;
    let user = app.profiles.set_avatar(&claims.openid, &image)?;
    Ok(user_reply(&user))
}

/// `GET /avatars/<sha256>.<ext>`: an uploaded image. Its name is its content, so it never
/// changes: cacheable forever, and its ETag is the hash. A matching `If-None-Match` is answered
/// 304 after a query for the content type only: the image is not read, yet a hash that was
/// never stored (or a wrong extension) is still a 404 rather than a 304 vouching for it.
/// The image is a user's upload shown on other origins: it may be embedded anywhere
/// (`Cross-Origin-Resource-Policy`), but never sniffed as another type or run as a document.
fn serve_avatar(app: &App, request: &Request, file_name: &str) -> Result<Reply, Error> {
    let (hash, image_type) = avatar::parse_file_name(file_name).ok_or(Error::NotFound)?;
    let content_type = image_type.content_type();
    let etag = format!("\"{hash}\"");
    let not_modified = header_value(request, "If-None-Match").is_some_and(|v| {
        v.split(',')
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
    });
    let (status, body) = if not_modified {
        match app.profiles.avatar_type(hash)? {
            Some(stored_type) if stored_type == content_type => (304, Vec::new()),
            _ => return Err(Error::NotFound),
        }
    } else {
        match app.profiles.avatar(hash)? {
            Some((stored_type, bytes)) if stored_type == content_type => (200, bytes),
            _ => return Err(Error::NotFound),
        }
    };
    Ok(Reply {
        status,
        content_type,
        body,
        headers: vec![
            (
                "Cache-Control",
                "public, max-age=31536000, immutable".into(),
            ),
            ("ETag", etag),
            ("X-Content-Type-Options", "nosniff".into()),
            (
                "Content-Security-Policy",
                "default-src 'none'; sandbox".into(),
            ),
            ("Cross-Origin-Resource-Policy", "cross-origin".into()),
        ],
    })
}

fn user_reply(user: &User) -> Reply {
    Reply::ok(json!({ "status": 200, "user": profile::user_json(user) }))
}

enum BodyKind {
    Form,
    Json,
    /// No `Content-Type` header at all.
    Unlabelled,
}

/// Decides from `Content-Type` how to read the body, before reading it.
fn body_kind(request: &Request) -> Result<BodyKind, Error> {
    let Some(value) = header_value(request, "Content-Type") else {
        return Ok(BodyKind::Unlabelled);
    };
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(BodyKind::Form)
    } else if media_type.eq_ignore_ascii_case("application/json") {
        Ok(BodyKind::Json)
    } else {
        Err(Error::UnsupportedMediaType)
    }
}

/// Reads at most `limit` bytes of body; a declared or actual length beyond it is a 413. The
/// body is already in memory (tiny_http's connection thread read it, up to the route's limit,
/// under `WXLOGIN_BODY_TIMEOUT`), so this never waits on the client; a body that did not arrive
/// in time reads as timed out (408). A connection whose body was left unread is closed.
fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, Error> {
    if request.body_length().is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut body = Vec::with_capacity(request.body_length().unwrap_or(0));
    request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::RequestTimeout,
            _ => Error::BadRequest("the request body could not be read".into()),
        })?;
    if body.len() > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    Ok(body)
}

fn header_value<'r>(request: &'r Request, name: &'static str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header names and values")
}

/// Logs why a request failed, at a level that matches whose fault it was.
fn log_failure(id: &str, route: &str, error: &Error) {
    let level = error.log_level();
    let outcome = if level <= log::Level::Warn {
        "failed"
    } else {
        "refused"
    };
    log::log!(level, "{id} {route} {outcome}: {error}");
}

/// Request ids: the proxy's `X-Request-Id` when it sent a sane one, else our own, unique per
/// process run (a random prefix and a counter).
struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        RequestIds {
            prefix: crate::secret::random_hex(4),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self, request: &Request) -> String {
        if let Some(given) = header_value(request, "X-Request-Id").filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        }) {
            return given.to_string();
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:06}", self.prefix)
    }
}
