//! [`MockWechat`]: starting the HTTP server with its worker threads, the handles tests use
//! (codes, expected openids, call counts), and stopping it cleanly so ports are freed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::code;
use crate::config::MockConfig;
use crate::identity::{self, Nonces};
use crate::opendata::{MockProfile, OpenData};
use crate::phone;
use crate::push::PushKeys;
use crate::router;
use crate::security::{MediaVerdict, SecApi};
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
    /// Fails when the address cannot be bound (in use, bad host), when `threads` is 0, when
    /// `push_url` is not a plain `http://` URL or `push_aes_key` not an EncodingAESKey, or
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
            state: Arc::new(State::new(config, Nonces::from_os()?)?),
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

    /// How many requests to `/wxa/msg_sec_check` it has answered, whatever the outcome.
    pub fn msg_sec_check_calls(&self) -> u64 {
        self.state.calls(Api::MsgSecCheck)
    }

    /// How many requests to `/wxa/media_check_async` it has answered, whatever the outcome.
    pub fn media_check_calls(&self) -> u64 {
        self.state.calls(Api::MediaCheckAsync)
    }

    /// How many media-check verdicts a push receiver accepted (answered 2xx).
    pub fn media_pushes(&self) -> u64 {
        self.state.pushes()
    }

    /// Replaces the words that make msg_sec_check answer `risky` (case ignored), the same
    /// as `POST /mock/msg_sec_check?risky=W,W`.
    pub fn set_risky_words(&self, words: &[&str]) {
        let words = words.iter().map(|word| (*word).to_owned()).collect();
        self.state.security.set_words(Some(words), None);
    }

    /// Replaces the words that make msg_sec_check answer `review`, the same as
    /// `POST /mock/msg_sec_check?review=W,W`.
    pub fn set_review_words(&self, words: &[&str]) {
        let words = words.iter().map(|word| (*word).to_owned()).collect();
        self.state.security.set_words(None, Some(words));
    }

    /// Makes every following msg_sec_check answer failure code `fault` (`fail.-1`,
    /// `http.502`, `garbage.x`, or `slow.<ms>` to outwait a client's timeout), or answer
    /// normally again with `None`. False, changing nothing, when `fault` is not a failure
    /// code. The same as `POST /mock/msg_sec_check?fault=CODE`.
    pub fn set_msg_sec_check_fault(&self, fault: Option<&str>) -> bool {
        self.set_fault(SecApi::MsgSecCheck, fault)
    }

    /// Like [`MockWechat::set_msg_sec_check_fault`] for media_check_async: its answer fails,
    /// and no check starts. The same as `POST /mock/media_check?fault=CODE`.
    pub fn set_media_check_fault(&self, fault: Option<&str>) -> bool {
        self.set_fault(SecApi::MediaCheckAsync, fault)
    }

    fn set_fault(&self, api: SecApi, fault: Option<&str>) -> bool {
        let switch = match fault {
            None => None,
            Some(text) => match code::parse_fault(text) {
                Some(fault) => Some((text.to_owned(), fault)),
                None => return false,
            },
        };
        self.state.security.set_fault(api, switch);
        true
    }

    /// The next `times` media checks of `openid` get `verdict` instead of `pass`
    /// (`MediaVerdict::Timeout`: nothing is pushed); `times` 0 forgets it. The same as
    /// `POST /mock/media_check?openid=O&suggest=S&times=N`.
    ///
    /// Images cannot be marked by their bytes: a server that re-encodes uploads, as it
    /// should, drops any marker, so the verdict is chosen per openid.
    pub fn set_media_verdict(&self, openid: &str, verdict: MediaVerdict, times: u32) {
        self.state
            .security
            .set_media_verdict(openid, verdict, times);
    }

    /// The token, EncodingAESKey and appid the mock signs pushes with, to open them in
    /// tests or to forge pushes that a server should take for WeChat's.
    pub fn push_keys(&self) -> PushKeys {
        self.state.push_keys.clone()
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
        // Media checks stop at their next wait; one in a fetch or a push finishes it first
        // (at most the 5 s timeout of a call).
        for check in self.state.take_checks() {
            if check.join().is_err() {
                log::error!("a mock-wechat media check panicked");
            }
        }
        // The last handle: tiny_http's accept thread now closes the listening socket, but on
        // its own time, so wait until connections are refused.
        drop(server);
        wait_until_closed(self.connect_addr());
    }
}

/// A worker: answers requests until the mock stops.
fn work(server: &tiny_http::Server, state: &Arc<State>) {
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
