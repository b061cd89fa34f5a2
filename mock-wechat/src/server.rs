//! [`MockWechat`]: starting the HTTP server with its worker threads, the handles tests use
//! (codes, expected openids, call counts), and stopping it cleanly so ports are freed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::MockConfig;
use crate::identity::{self, Nonces};
use crate::opendata::{MockProfile, OpenData};
use crate::phone;
use crate::router;
use crate::state::{Api, State};

/// How long `stop` waits for tiny_http's accept thread to close the listening socket.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A running mock-wechat server. Dropping it stops it, like [`MockWechat::stop`].
pub struct MockWechat {
    /// `None` only while stopping.
    server: Option<Arc<tiny_http::Server>>,
    workers: Vec<JoinHandle<()>>,
    state: Arc<State>,
    addr: SocketAddr,
}

impl MockWechat {
    /// Listens on `config.bind` and starts `config.threads` workers, then returns at once:
    /// the mock answers as soon as this returns.
    ///
    /// Fails when the address cannot be bound (in use, bad host), when `threads` is 0, or
    /// when threads cannot be spawned.
    pub fn start(config: MockConfig) -> io::Result<MockWechat> {
        if config.threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mock-wechat needs at least 1 worker thread",
            ));
        }
        // Bound here rather than by tiny_http so that errors keep their io::ErrorKind.
        let listener = TcpListener::bind(&config.bind)?;
        let addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?;
        let threads = config.threads;
        let mut mock = MockWechat {
            server: Some(Arc::new(server)),
            workers: Vec::with_capacity(threads),
            state: Arc::new(State::new(config, Nonces::from_os()?)),
            addr,
        };
        for n in 0..threads {
            let Some(server) = mock.server.clone() else {
                break;
            };
            let state = Arc::clone(&mock.state);
            // On error, dropping `mock` stops the workers already started.
            let worker = thread::Builder::new()
                .name(format!("mock-wechat-{n}"))
                .spawn(move || work(&server, &state))?;
            mock.workers.push(worker);
        }
        Ok(mock)
    }

    /// The address it listens on, with the real port when `bind` asked for port 0.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT` to reach it: the loopback address when it listens on all
    /// addresses (`0.0.0.0` or `[::]`), since that is not an address to connect to.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.connect_addr())
    }

    /// A fresh, never-used code for `user`, the same as `GET /mock/code?user=USER`.
    ///
    /// `user` must be 1–32 of `[A-Za-z0-9_]` and not `fail`, `http`, `garbage` or `slow`.
    /// For any other name this does not panic: it logs a warning and returns a code that
    /// jscode2session rejects with 40029 (invalid code), as WeChat would.
    pub fn new_code(&self, user: &str) -> String {
        self.state.mint_code(user).unwrap_or_else(|| {
            log::warn!("new_code: {user:?} is not a usable user name; the code will get 40029");
            format!("invalid-user.{}", self.state.code_nonce())
        })
    }

    /// The openid that codes of `user` log in as (in the configured appid).
    pub fn openid_for(&self, user: &str) -> String {
        self.state.openid_for(user)
    }

    /// The unionid of `user`, returned with logins when `unionid` is on.
    pub fn unionid_for(&self, user: &str) -> String {
        identity::unionid(user)
    }

    /// How many requests to `/sns/jscode2session` it has answered, whatever the outcome.
    pub fn jscode2session_calls(&self) -> u64 {
        self.state.calls(Api::Jscode2session)
    }

    /// The open data the WeChat client would hand `user`'s mini-program with `profile`:
    /// `rawData`, its `signature` and `encryptedData`, made with the session key of `user`'s
    /// latest successful jscode2session, as WeChat does. The same as
    /// `GET /mock/userinfo?user=USER&…`.
    ///
    /// `None` if `user` never logged in (or the mock forgot: it remembers 100,000 users).
    pub fn open_data(&self, user: &str, profile: &MockProfile) -> Option<OpenData> {
        self.state.open_data(user, profile, false)
    }

    /// Like [`MockWechat::open_data`] but made with the session key before the latest, as a
    /// client hands over when `wx.login` renewed the key after the profile was fetched: a
    /// server holding the latest key must reject it. `None` if `user` logged in fewer than
    /// two times. The same as `GET /mock/userinfo?user=USER&…&stale=1`.
    pub fn stale_open_data(&self, user: &str, profile: &MockProfile) -> Option<OpenData> {
        self.state.open_data(user, profile, true)
    }

    /// A fresh, never-used phone code for `phone` (digits, country code 86), the same as
    /// `GET /mock/phone_code?user=USER&phone=PHONE`: `phone.<user>.<phone>.86.<nonce>`.
    /// `/wxa/business/getuserphonenumber` trades it, once, for that number.
    ///
    /// `user` must be 1–32 of `[A-Za-z0-9_]` and `phone` 1–20 digits. Otherwise this does
    /// not panic: it logs a warning and returns a code that getuserphonenumber rejects with
    /// 40029 (invalid code).
    pub fn new_phone_code(&self, user: &str, phone: &str) -> String {
        self.state
            .mint_phone_code(user, phone, phone::CHINA)
            .unwrap_or_else(|| {
                log::warn!(
                    "new_phone_code: {user:?} or the phone number is not usable; \
                     the code will get 40029"
                );
                format!("invalid-phone.{}", self.state.code_nonce())
            })
    }

    /// Makes every access token issued so far expired: the next API call with one of them
    /// gets 42001 (access_token expired), and the next `/cgi-bin/stable_token` mints a new
    /// one. The same as `POST /mock/expire_tokens`.
    pub fn expire_access_tokens(&self) {
        self.state.expire_access_tokens();
    }

    /// How many requests to `/cgi-bin/stable_token` it has answered, whatever the outcome.
    pub fn stable_token_calls(&self) -> u64 {
        self.state.calls(Api::StableToken)
    }

    /// How many access tokens `/cgi-bin/stable_token` has minted (a call that returned the
    /// current token mints none).
    pub fn tokens_minted(&self) -> u64 {
        self.state.tokens_minted()
    }

    /// How many requests to `/wxa/business/getuserphonenumber` it has answered, whatever
    /// the outcome.
    pub fn phone_calls(&self) -> u64 {
        self.state.calls(Api::PhoneNumber)
    }

    /// Stops the server: requests in flight are answered (those still sleeping get 503),
    /// the workers are joined, and once this returns the port refuses connections.
    pub fn stop(self) {
        drop(self);
    }

    fn connect_addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }
}

impl Drop for MockWechat {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        self.state.shutdown.begin();
        // Each unblock wakes one worker waiting in recv(), or the next one to call it.
        for _ in &self.workers {
            server.unblock();
        }
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                log::error!("a mock-wechat worker panicked");
            }
        }
        // The last handle: tiny_http's accept thread now closes the listening socket, but on
        // its own time, so wait until connections are refused.
        drop(server);
        wait_until_closed(self.connect_addr());
    }
}

/// A worker: answers requests until the mock stops.
fn work(server: &tiny_http::Server, state: &State) {
    loop {
        match server.recv() {
            Ok(request) => router::handle(state, request),
            Err(_) if state.shutdown.is_stopping() => return,
            // tiny_http reports here that accepting connections failed; nothing to answer.
            Err(err) => log::error!("mock-wechat: {err}"),
        }
    }
}

fn wait_until_closed(addr: SocketAddr) {
    let deadline = Instant::now() + CLOSE_WAIT;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Err(_) => return,
            Ok(probe) => {
                drop(probe);
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    log::warn!("mock-wechat: {addr} still accepts connections after stop");
}
