//! The server's lifecycle: bind, per-request panic isolation and logging, and a graceful drain
//! at shutdown.
//!
//! tiny_http gives each connection a thread of its own, which reads a request whole (a slow
//! client only ever holds its own thread) and then runs the handler right there, blocking on
//! WeChat and the database, and writes its answer. There is no hand-off to a worker pool: a
//! login costs no thread switch beyond its own blocking calls, and as many logins wait on WeChat
//! at once as there are connections (`WXLOGIN_MAX_CONNECTIONS`). Every handler runs under
//! `catch_unwind`, so a bug becomes a 500 for that request and the connection lives on. Every
//! answer carries an `X-Request-Id`, and every request leaves one access log line; failures also
//! leave a line with their cause under the same id.

use super::request::{self, RequestIds};
use super::routes::{Reply, Route, UNMATCHED};
use crate::app::{App, StartError};
use crate::config::Config;
use crate::error::Error;
use crate::store::UserStore;
use crate::sweep::{SweepConfig, Sweeper};
use crate::webhooks::{Delivery, WebhookWorker};
use std::any::Any;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response};

/// Connection threads only hold a small stack: handlers parse small bodies, decode bounded
/// images and make blocking calls.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// How often the drain looks whether the requests in flight have finished.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// What every connection's handler shares: the services, the source of request ids, and the
/// shutdown gate.
struct Shared {
    app: App,
    request_ids: RequestIds,
    /// Set when shutdown begins: requests read from then on are answered 503.
    stopping: AtomicBool,
    /// Requests admitted and not yet written back, for the drain to wait on.
    in_flight: AtomicUsize,
}

impl Shared {
    /// Admits a request unless shutdown has begun; the guard counts it in flight until its
    /// answer is written. Counting before looking at `stopping` means the drain, which sets
    /// `stopping` before it counts, waits for every request admitted.
    fn admit(self: &Arc<Shared>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.clone());
        (!self.stopping.load(Ordering::SeqCst)).then_some(guard)
    }
}

/// One request in flight; dropped once its answer is written (see [`tiny_http::Handler`]).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running server. Dropping it shuts it down gracefully.
pub struct Server {
    addr: SocketAddr,
    http: Arc<tiny_http::Server>,
    /// Our handle on tiny_http's listening socket, to stop accepting at shutdown.
    listener: TcpListener,
    shared: Arc<Shared>,
    /// The thread that hears from tiny_http when its accept loop ends.
    watcher: Option<JoinHandle<()>>,
    /// Set when tiny_http's accept loop died (it stops for good on any accept error, such as
    /// running out of file descriptors): the process can no longer serve and should exit.
    listener_failed: Arc<AtomicBool>,
    drain_timeout: Duration,
    /// This node's periodic sweep, stopped at shutdown.
    sweeper: Sweeper,
    /// This node's webhook delivery, when a webhook is configured; stopped at shutdown.
    webhooks: Option<WebhookWorker>,
    /// The thread resubmitting unanswered image checks, and the channel that stops it (a
    /// `src/sweep.rs` job may take this over).
    resubmitter: Option<(JoinHandle<()>, mpsc::Sender<()>)>,
}

impl Server {
    /// Opens the store named by `DATABASE_URL`, binds, and starts serving in the background.
    pub fn start(config: Config) -> Result<Server, StartError> {
        let app = App::build(&config)?;
        Server::serve(&config, app)
    }

    /// Starts serving with a store the caller opened (tests share one with the server).
    pub fn start_with_store(
        config: Config,
        store: Arc<dyn UserStore>,
    ) -> Result<Server, StartError> {
        Server::serve(&config, App::with_store(&config, store))
    }

    /// Binds `WXLOGIN_BIND` and serves `app` in the background.
    pub fn serve(config: &Config, mut app: App) -> Result<Server, StartError> {
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
        app.profiles.served_at(format!("http://{addr}"));
        app.moderation.served_at(format!("http://{addr}"));
        let sweeper = Sweeper::start(
            app.store.clone(),
            SweepConfig {
                interval: config.accounts.sweep_interval,
                login_history: config.accounts.login_history,
                session_tail: config.jwt.ttl,
                reuse_grace: config.sessions.reuse_grace,
            },
        )
        .map_err(|e| StartError::Bind(format!("cannot start the sweep thread: {e}")))?;
        let webhooks = config
            .webhook
            .as_ref()
            .map(|hook| {
                WebhookWorker::start(Delivery::new(app.store.clone(), hook, app.metrics.clone()))
            })
            .transpose()
            .map_err(|e| StartError::Bind(format!("cannot start the webhook thread: {e}")))?;
        let shared = Arc::new(Shared {
            app,
            request_ids: RequestIds::new(),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        });
        let http = Arc::new(
            tiny_http::Server::from_listener_with_limits(
                listener,
                None,
                http_limits(config, Arc::downgrade(&shared)),
            )
            .map_err(|e| bind_error(&e))?,
        );
        let listener_failed = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (http, shared, failed) = (http.clone(), shared.clone(), listener_failed.clone());
            std::thread::Builder::new()
                .name("wxlogin-listener".into())
                .spawn(move || watch(&http, &shared.stopping, &failed))
                .map_err(|e| StartError::Bind(format!("cannot start the listener watch: {e}")))?
        };
        let resubmitter = if shared.app.moderation.enabled() {
            Some(start_resubmitter(shared.clone()).map_err(|e| {
                StartError::Bind(format!("cannot start the moderation thread: {e}"))
            })?)
        } else {
            None
        };
        Ok(Server {
            resubmitter,
            addr,
            http,
            listener: our_handle,
            shared,
            watcher: Some(watcher),
            listener_failed,
            drain_timeout: config.drain_timeout,
            sweeper,
            webhooks,
        })
    }

    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store the server writes to.
    pub fn store(&self) -> Arc<dyn UserStore> {
        self.shared.app.store.clone()
    }

    /// Whether the server stopped accepting connections on its own: tiny_http's accept loop
    /// ended (an accept error such as running out of file descriptors, or a panic). A panic on
    /// any other thread ends only that connection or request.
    pub fn listener_failed(&self) -> bool {
        self.listener_failed.load(Ordering::SeqCst)
    }

    /// Stops accepting connections, lets every request already admitted finish and be written
    /// back for up to `WXLOGIN_DRAIN_TIMEOUT`, and returns whether they all did in time.
    pub fn shutdown(mut self) -> bool {
        self.drain()
    }

    fn drain(&mut self) -> bool {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return true;
        }
        self.sweeper.stop();
        // Stopped now, joined after the drain: its POST in flight ends while requests finish.
        if let Some(webhooks) = &self.webhooks {
            webhooks.signal();
        }
        if let Some((thread, stop)) = self.resubmitter.take() {
            drop(stop);
            let _ = thread.join();
        }
        // Closing our handle on the listening socket makes tiny_http's accept() fail, so new
        // connections are refused at once instead of queued behind the drain.
        crate::logging::expect_closed_listener();
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        self.http.unblock();
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        // Requests admitted before `stopping` was set finish and are written back; any read
        // after it is answered 503 with `Connection: close`.
        let deadline = Instant::now() + self.drain_timeout;
        loop {
            let running = self.shared.in_flight.load(Ordering::SeqCst);
            if running == 0 {
                break;
            }
            if Instant::now() >= deadline {
                log::warn!(
                    "shutdown: {running} request(s) still running after the {:?} drain; leaving them",
                    self.drain_timeout
                );
                return false;
            }
            std::thread::sleep(DRAIN_POLL);
        }
        if let Some(mut webhooks) = self.webhooks.take() {
            webhooks.stop();
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.drain();
    }
}

/// Runs [`crate::moderation::Moderation::resubmit_due`] every
/// [`crate::moderation::Moderation::resubmit_interval`] until the sender is dropped. Each node
/// runs one; the store hands each due check to one node only.
fn start_resubmitter(shared: Arc<Shared>) -> std::io::Result<(JoinHandle<()>, mpsc::Sender<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let interval = shared.app.moderation.resubmit_interval();
    let thread = std::thread::Builder::new()
        .name("wxlogin-moderation".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                if let Err(e) = shared.app.moderation.resubmit_due() {
                    log::warn!("resubmitting image checks failed: {e}");
                }
            }
        })?;
    Ok((thread, stop))
}

/// What tiny_http's connection threads enforce before a request reaches its handler (the
/// connection cap, the whole-request deadline, and each route's body limit, so a body is read
/// in full or refused before any handler sees it), and the handler they run.
///
/// The handler holds the shared services weakly: once the server is dropped, a connection that
/// is still open (an idle keep-alive one waiting out its timeout) does not keep the store and
/// its pool alive.
fn http_limits(config: &Config, shared: Weak<Shared>) -> tiny_http::Limits {
    let max_body_bytes = config.max_body_bytes;
    tiny_http::Limits {
        max_connections: config.max_connections,
        body_timeout: config.body_timeout,
        body_limit: Arc::new(move |_, url: &str| {
            let path = url.split('?').next().unwrap_or("");
            Route::of(path).map_or(max_body_bytes, |route| route.body_limit(max_body_bytes))
        }),
        thread_stack_bytes: CONNECTION_STACK_BYTES,
        handler: Some(Arc::new(move |request| dispatch(&shared, request))),
    }
}

/// Runs on the connection's thread for each request read whole: answers it, or refuses it with
/// a 503 once shutdown has begun. Returns the in-flight guard, which tiny_http drops after the
/// answer is written.
fn dispatch(shared: &Weak<Shared>, request: Request) -> Option<Box<dyn Any>> {
    let Some(shared) = shared.upgrade() else {
        respond(request, Reply::error(&Error::ShuttingDown), None);
        return None;
    };
    let admitted = shared.admit();
    serve(&shared, request, admitted.is_some());
    admitted.map(|guard| Box::new(guard) as Box<dyn Any>)
}

/// Waits on tiny_http's queue, which in this mode carries no requests, only the news that its
/// accept loop ended; returns at shutdown.
fn watch(http: &tiny_http::Server, stopping: &AtomicBool, listener_failed: &AtomicBool) {
    loop {
        match http.recv() {
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(e) => {
                log::error!("the listener failed and accepts no more connections: {e}");
                listener_failed.store(true, Ordering::SeqCst);
            }
            Ok(request) => {
                // Unreachable with a handler set; answered rather than dropped all the same.
                respond(request, Reply::error(&Error::ShuttingDown), None);
            }
        }
    }
}

/// Answers one request, whatever happens inside the handler; a request not `admitted` (read
/// after shutdown began) is answered 503.
fn serve(shared: &Shared, mut request: Request, admitted: bool) {
    let app = &shared.app;
    let started = Instant::now();
    let id = shared.request_ids.next(&request);
    let method = request.method().clone();
    let client = request::client_address(&request);
    let route = Route::of(request::path(&request));
    let label = route.map_or(UNMATCHED, Route::label);

    let outcome = catch_unwind(AssertUnwindSafe(|| match route {
        _ if !admitted => Err(Error::ShuttingDown),
        Some(route) => route.handle(app, &mut request, &id),
        None => Err(Error::NotFound),
    }));
    let reply = match outcome {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => {
            log_failure(&id, label, &error);
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
            log_failure(&id, label, &error);
            Reply::error(&error)
        }
    };

    let mut reply = reply;
    let closes = reply.headers.iter().any(|(name, _)| *name == "Connection");
    if shared.stopping.load(Ordering::SeqCst) && !closes {
        // The client's next request would find this node gone: it should open a new connection.
        reply.headers.push(("Connection", "close".into()));
    }
    // Logged before the answer leaves: the connection's thread writes it to the client, so a
    // client that has its answer also finds its access log line and metric.
    let (status, took) = (reply.status, started.elapsed());
    app.metrics.observe_request(label, status, took);
    log::info!(
        target: "wxlogin::access",
        "{id} {method} {label} {status} {:.1}ms {client}",
        took.as_secs_f64() * 1000.0
    );
    respond(request, reply, Some(&id));
}

/// Hands `reply` to tiny_http, which writes it once the handler returns.
fn respond(request: Request, reply: Reply, id: Option<&str>) {
    let mut response = Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_header(header("Content-Type", reply.content_type));
    if let Some(id) = id {
        response = response.with_header(header("X-Request-Id", id));
    }
    for (name, value) in &reply.headers {
        response = response.with_header(header(name, value));
    }
    if let Err(e) = request.respond(response) {
        log::debug!("{} could not send the answer: {e}", id.unwrap_or("-"));
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header names and values")
}

/// Logs why a request failed, at the level [`Error::log_level`] gives: a failure of ours or the
/// upstream's "failed", a client's mistake was "refused".
fn log_failure(id: &str, route: &str, error: &Error) {
    let level = error.log_level();
    let outcome = if level <= log::Level::Warn {
        "failed"
    } else {
        "refused"
    };
    log::log!(level, "{id} {route} {outcome}: {error}");
}
