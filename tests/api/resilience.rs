//! Faults the service must survive: a panicking handler, WeChat busy or unreachable for a
//! moment, and shutdown with requests in flight (in-process and via SIGTERM to the binary).

use crate::helpers::{capture_logs, spawn_app, AppBuilder, Binary, FakeWechat, Secrets, TestDb};
use crate::hostile::{read_reply, Reply};
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use wiremock::ResponseTemplate;
use wxlogin::secret::Secret;
use wxlogin::store::{
    Account, AvatarCheck, AvatarState, CodeClaim, LoginEntry, LoginRecord, LoginUser, NewImage,
    NewSession, Purge, Purged, RefreshRecord, RevokeReason, Rotation, SessionInfo, SessionState,
    Stats, StoreError, UserStore,
};
use wxlogin::store::{Claim, OutboxCounts, OutboxDelivery, Settle};
use wxlogin::user::{PhoneNumber, Profile, User};

fn session(openid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"openid": openid, "session_key": "a2V5"}))
}

/// A store with a bug: every write panics.
struct PanickingStore;

impl UserStore for PanickingStore {
    fn upsert_login(&self, _: &LoginRecord<'_>) -> Result<LoginUser, StoreError> {
        panic!("bug in the store")
    }
    fn create_session(&self, _: &NewSession<'_>) -> Result<(), StoreError> {
        panic!("bug in the store")
    }
    fn find_refresh(&self, _: &str) -> Result<Option<RefreshRecord>, StoreError> {
        panic!("bug in the store")
    }
    fn rotate_refresh(&self, _: &Rotation<'_>) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn session_state(&self, _: &str) -> Result<SessionState, StoreError> {
        panic!("bug in the store")
    }
    fn revoke_session(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: RevokeReason,
    ) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn revoke_user_sessions(
        &self,
        _: &str,
        _: i64,
        _: RevokeReason,
    ) -> Result<Vec<String>, StoreError> {
        panic!("bug in the store")
    }
    fn list_sessions(&self, _: &str, _: i64) -> Result<Vec<SessionInfo>, StoreError> {
        panic!("bug in the store")
    }
    fn claim_code(&self, _: &str, _: i64, _: i64) -> Result<CodeClaim, StoreError> {
        panic!("bug in the store")
    }
    fn finish_code(&self, _: &str, _: &str, _: Option<&str>, _: i64) -> Result<(), StoreError> {
        panic!("bug in the store")
    }
    fn release_code(&self, _: &str) -> Result<(), StoreError> {
        panic!("bug in the store")
    }
    fn purge_codes(&self, _: i64) -> Result<u64, StoreError> {
        panic!("bug in the store")
    }

    // The sweep calls these in the background: nothing to do, so no panic outside a request.
    fn set_disabled(&self, _: &str, _: bool, _: i64) -> Result<Option<Vec<String>>, StoreError> {
        panic!("bug in the store")
    }
    fn set_erase_at(
        &self,
        _: &str,
        _: Option<i64>,
        _: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        panic!("bug in the store")
    }
    fn erase_user(&self, _: &str, _: i64) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn due_erasures(&self, _: i64, _: usize) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    fn find_account(&self, _: &str) -> Result<Option<Account>, StoreError> {
        Ok(None)
    }
    fn list_logins(&self, _: &str, _: usize) -> Result<Vec<LoginEntry>, StoreError> {
        Ok(Vec::new())
    }
    fn purge(&self, _: &Purge) -> Result<Purged, StoreError> {
        Ok(Purged::default())
    }
    fn claim_events(&self, _: &Claim<'_>) -> Result<Vec<OutboxDelivery>, StoreError> {
        Ok(Vec::new())
    }
    fn settle_event(&self, _: i64, _: &str, _: Settle<'_>) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn outbox_counts(&self, _: u32) -> Result<OutboxCounts, StoreError> {
        Ok(OutboxCounts::default())
    }
    fn purge_delivered(&self, _: i64, _: usize) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn stats(&self, _: i64) -> Result<Stats, StoreError> {
        Ok(Stats::default())
    }
    fn find_user(&self, _: &str) -> Result<Option<User>, StoreError> {
        Ok(None)
    }
    fn find_session_key(&self, _: &str) -> Result<Option<Secret>, StoreError> {
        Ok(None)
    }
    fn set_phone(&self, _: &str, _: &PhoneNumber) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn update_profile(&self, _: &str, _: &Profile) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn activate_avatar(&self, _: &str, _: &NewImage<'_>, _: i64) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn begin_avatar_check(
        &self,
        _: &str,
        _: &NewImage<'_>,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn avatar_check_submitted(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn find_avatar_check(&self, _: &str) -> Result<Option<AvatarCheck>, StoreError> {
        panic!("bug in the store")
    }
    fn finish_avatar_check(&self, _: &str, _: &str, _: bool, _: i64) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn due_avatar_checks(&self, _: i64, _: u32) -> Result<Vec<AvatarCheck>, StoreError> {
        panic!("bug in the store")
    }
    fn resubmit_avatar_check(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<bool, StoreError> {
        panic!("bug in the store")
    }
    fn find_media(&self, _: &str, _: i64) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        panic!("bug in the store")
    }
    fn avatar_state(&self, _: &str) -> Result<Option<AvatarState>, StoreError> {
        panic!("bug in the store")
    }
    fn find_media_verdict(&self, _: &str) -> Result<Option<String>, StoreError> {
        panic!("bug in the store")
    }
    fn remember_media_verdict(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
        panic!("bug in the store")
    }
    fn find_avatar(&self, _: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(None)
    }
    fn pool_usage(&self) -> (usize, usize) {
        (0, 1)
    }
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[test]
fn a_panicking_handler_becomes_a_500_and_the_server_lives_on() {
    capture_logs();
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session("o-panic"));
    let db = TestDb::sqlite();
    let app = AppBuilder::new(&wechat.uri(), &db, Secrets::unique())
        .var("WXLOGIN_CODE_REPLAY_WINDOW", "0")
        .start_with_store(Arc::new(PanickingStore));

    // If a panic took its thread or a lock down with it, the later requests would hang.
    for n in 0..12 {
        let answer = app.post_form("/api/wxuser", &[("code", &format!("c{n}"))]);
        assert_eq!(answer.status, 500, "request {n}: {}", answer.text);
        assert_eq!(answer.body["message"], "internal error");
    }
    assert_eq!(app.get("/healthz", None).status, 200);
}

#[test]
fn wechat_busy_once_is_retried_and_the_login_succeeds() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session_once(
        ResponseTemplate::new(200).set_body_json(json!({"errcode": -1, "errmsg": "system error"})),
    );
    wechat.answer_jscode2session(session("o-retry"));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let answer = app.post_form("/api/wxuser", &[("code", "c-retry")]);

    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(wechat.received_queries().len(), 2, "one retry");
}

#[test]
fn other_wechat_errors_are_answered_at_once_without_a_retry() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(
        ResponseTemplate::new(200).set_body_json(json!({"errcode": 45011, "errmsg": "limit"})),
    );
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let answer = app.post_form("/api/wxuser", &[("code", "c-once")]);

    assert_eq!(answer.status, 429, "{}", answer.text);
    assert_eq!(wechat.received_queries().len(), 1, "no retry");
}

/// Polls until WeChat has seen `n` requests, so the test knows a login is in flight.
fn wait_for_upstream_calls(wechat: &FakeWechat, n: usize) {
    for _ in 0..1000 {
        if wechat.received_queries().len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the login never reached WeChat");
}

/// POSTs a login from another thread, independent of the `TestApp` (which shutdown consumes).
fn login_in_background(url: &str, code: &str) -> std::thread::JoinHandle<(u16, String)> {
    let (url, code) = (url.to_string(), code.to_string());
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .post(format!("{url}/api/wxuser"))
            .content_type("application/x-www-form-urlencoded")
            .send(format!("code={code}"))
            .expect("the server answers the login in flight");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    })
}

#[test]
fn shutdown_finishes_a_login_in_flight_and_then_refuses_connections() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session("o-drain").set_delay(Duration::from_millis(800)));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    let (store, url) = (app.store.clone(), app.url.clone());
    let login = login_in_background(&url, "c-drain");
    wait_for_upstream_calls(&wechat, 1);

    let clean = app.shutdown();
    let (status, text) = login.join().unwrap();

    assert!(clean, "the drain finished in time");
    assert_eq!(status, 200, "{text}");
    assert!(
        store.find_user("o-drain").unwrap().is_some(),
        "its row is committed"
    );
    assert!(
        ureq::get(format!("{url}/healthz")).call().is_err(),
        "no new connections after shutdown"
    );
}

/// Sends `GET /healthz` on an open keep-alive connection and reads one whole answer (or what
/// came before the server closed it).
fn healthz_on(stream: &mut std::net::TcpStream) -> Reply {
    use std::io::Write;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_reply(
        stream,
        std::time::Instant::now(),
        Duration::from_secs(10),
        true,
    )
}

#[test]
fn a_request_read_during_the_drain_gets_503_and_its_connection_closes() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session("o-draining").set_delay(Duration::from_millis(1500)));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    let addr = app.url.trim_start_matches("http://").to_string();
    // Two keep-alive connections: a request admitted just before the drain began is answered
    // 200 with `Connection: close`; the spare one's next request then surely comes after.
    let mut open: Vec<_> = (0..2)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            let first = healthz_on(&mut stream);
            assert_eq!(first.status(), Some(200), "before the drain: {first:?}");
            stream
        })
        .collect();
    let login = login_in_background(&app.url, "c-draining");
    wait_for_upstream_calls(&wechat, 1);

    let shutdown = std::thread::spawn(move || app.shutdown());
    let mut during = healthz_on(open.last_mut().unwrap());
    for _ in 0..5000 {
        if during.status() != Some(200) {
            break;
        }
        if during.header("Connection").as_deref() == Some("close") {
            assert!(
                open.len() == 2,
                "two answers straddled the drain: {during:?}"
            );
            open.pop();
        }
        during = healthz_on(open.last_mut().unwrap());
    }
    let mut open = open.pop().unwrap();

    assert_eq!(during.status(), Some(503), "during the drain: {during:?}");
    assert_eq!(
        during.header("Connection").as_deref(),
        Some("close"),
        "{during:?}"
    );
    assert_eq!(
        during.header("Retry-After").as_deref(),
        Some("1"),
        "{during:?}"
    );
    assert!(during.text().contains("shutting down"), "{during:?}");
    let after = read_reply(
        &mut open,
        std::time::Instant::now(),
        Duration::from_secs(10),
        false,
    );
    assert!(
        after.closed() && after.text().is_empty(),
        "the connection is closed after the 503: {after:?}"
    );
    let (status, text) = login.join().unwrap();
    assert_eq!(
        status, 200,
        "the login admitted before the drain finishes: {text}"
    );
    assert!(shutdown.join().unwrap(), "the drain finished in time");
}

#[test]
fn shutdown_gives_up_on_requests_slower_than_the_drain_timeout() {
    capture_logs();
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session("o-slow").set_delay(Duration::from_secs(4)));
    let db = TestDb::sqlite();
    let app = AppBuilder::new(&wechat.uri(), &db, Secrets::unique())
        .var("WECHAT_TIMEOUT", "10s")
        .var("WXLOGIN_DRAIN_TIMEOUT", "1s")
        .start();
    let login = login_in_background(&app.url, "c-slow");
    wait_for_upstream_calls(&wechat, 1);

    assert!(
        !app.shutdown(),
        "shutdown reports the request it left behind"
    );
    drop(login);
}

#[test]
fn sigterm_drains_the_binary_and_it_exits_0() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session("o-sigterm").set_delay(Duration::from_millis(800)));
    let db = TestDb::sqlite();
    let mut binary = Binary::start(&[], &wechat.uri(), &db, &[]);
    let login = login_in_background(&binary.url, "c-sigterm");
    wait_for_upstream_calls(&wechat, 1);

    let killed = Command::new("kill")
        .args(["-TERM", &binary.child.id().to_string()])
        .status()
        .unwrap();
    let (status, text) = login.join().unwrap();
    let (exit, rest) = binary.wait_exit();

    assert!(killed.success());
    assert_eq!(status, 200, "{text}");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        rest.iter().any(|l| l.contains("stopped cleanly")),
        "{rest:?}"
    );
    assert!(!rest.iter().any(|l| l.contains("ERROR")), "{rest:?}");
}

/// tiny_http's accept loop ends for good on any accept error; out of file descriptors is the
/// likely one. The process must then exit non-zero, so that its supervisor restarts it, rather
/// than live on deaf. (The connection cap normally keeps descriptors from running out; here it
/// is set above the descriptor limit on purpose.)
#[test]
fn the_binary_exits_1_when_its_listener_dies() {
    let db = TestDb::sqlite();
    let mut binary = Binary::start(
        &["prlimit", "--nofile=48:48", "--"],
        "http://127.0.0.1:9",
        &db,
        &[("WXLOGIN_MAX_CONNECTIONS", "1000")],
    );
    // Hold connections open until accept() runs out of descriptors. Once it has, new
    // connections only queue in the kernel's backlog, so each attempt is bounded.
    let addr = binary.addr();
    let mut held = Vec::new();
    let exit = loop {
        if let Some(exit) = binary.child.try_wait().unwrap() {
            break exit;
        }
        if held.len() >= 2_000 {
            let _ = binary.child.kill();
            panic!("the binary lived on after its listener failed");
        }
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        {
            held.push(stream);
        }
    };

    let (_, rest) = binary.wait_exit();
    assert_eq!(exit.code(), Some(1), "{exit:?}");
    assert!(
        rest.iter().any(|l| l.contains("the listener failed")),
        "{rest:?}"
    );
}

/// A TCP forwarder to the database that a test can cut and restore, to play an outage without
/// stopping the server that other tests share.
struct CuttableLink {
    addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CuttableLink {
    fn to(target: std::net::SocketAddr) -> CuttableLink {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let link = CuttableLink {
            addr: listener.local_addr().unwrap(),
            cut: Arc::default(),
            open: Arc::default(),
        };
        let (cut, open) = (link.cut.clone(), link.open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if cut.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let mut open = open.lock().unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                open.extend([client, server]);
            }
        });
        link
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn database_outage_gives_503_and_service_resumes_without_a_restart() {
    let Some(db) = TestDb::mysql() else { return };
    let url = db.url_text();
    let (_, rest) = url.split_once('@').unwrap();
    let (host, name) = rest.split_once('/').unwrap();
    let link = CuttableLink::to(host.parse().unwrap());
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session("o-outage"));
    capture_logs();
    let app = AppBuilder::new(&wechat.uri(), &db, Secrets::unique())
        // Through the link only: the mysql crate would otherwise switch to the local socket.
        .var(
            "DATABASE_URL",
            &format!("mysql://root@{}/{name}?prefer_socket=false", link.addr),
        )
        .var("WXLOGIN_CODE_REPLAY_WINDOW", "0")
        .start();
    assert_eq!(app.post_form("/api/wxuser", &[("code", "c1")]).status, 200);

    link.cut();
    let during = app.post_form("/api/wxuser", &[("code", "c2")]);
    let ready = app.get("/readyz", None);
    let healthy = app.get("/healthz", None);
    link.restore();
    let after = app.post_form("/api/wxuser", &[("code", "c3")]);

    assert_eq!(during.status, 503, "{}", during.text);
    assert!(
        during.body.get("token").is_none(),
        "no token without a committed row"
    );
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(healthy.status, 200);
    assert_eq!(after.status, 200, "resumed: {}", after.text);
}

#[test]
fn a_hundred_slow_clients_do_not_stop_an_honest_login() {
    use std::io::Write;
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session("o-honest"));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    let addr = app.url.trim_start_matches("http://").to_string();

    // Half connect and say nothing; half start a request and stall inside its headers. Each
    // holds its connection open for the rest of the test.
    let slow: Vec<std::net::TcpStream> = (0..100)
        .map(|n| {
            let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
            if n % 2 == 1 {
                stream
                    .write_all(b"POST /api/wxuser HTTP/1.1\r\nHost: x\r\nContent-Ty")
                    .unwrap();
            }
            stream
        })
        .collect();

    let answer = app.post_form("/api/wxuser", &[("code", "c-honest")]);
    let me = app.get("/api/me", Some(answer.body["token"].as_str().unwrap_or("")));

    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(me.status, 200, "{}", me.text);
    drop(slow);
}

#[test]
fn a_huge_declared_body_is_refused_without_taking_the_server_down() {
    use std::io::{Read, Write};
    let db = TestDb::sqlite();
    let app = spawn_app("http://127.0.0.1:9", &db);
    let addr = app.url.trim_start_matches("http://").to_string();
    let cases = [
        ("POST /api/phone", 401, "refused before the body is read"),
        ("POST /api/wxuser", 413, "over the login limit"),
        ("POST /api/me/avatar", 401, "no token"),
        ("POST /nowhere", 404, "no route"),
    ];
    for (request_line, status, what) in cases {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "{request_line} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000000\r\n\r\ncode=abc"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = [0u8; 64];
        let n = stream.read(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {text}"
        );
    }
    assert_eq!(app.get("/healthz", None).status, 200, "still up");
}

/// tiny_http's connection pool used to queue a burst of new connections behind a few threads,
/// leaving some unanswered until another keep-alive connection closed (vendor/tiny_http).
#[test]
fn a_burst_of_keep_alive_connections_is_answered_at_once() {
    use std::io::{Read, Write};
    let db = TestDb::sqlite();
    let app = spawn_app("http://127.0.0.1:9", &db);
    let addr = app.url.trim_start_matches("http://").to_string();

    let answers = crate::helpers::race(48, |_| {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = [0u8; 32];
        let n = stream.read(&mut answer).unwrap_or(0);
        // Keep the connection open (keep-alive) until every thread has its answer.
        (String::from_utf8_lossy(&answer[..n]).into_owned(), stream)
    });

    let unanswered = answers
        .iter()
        .filter(|(text, _)| !text.starts_with("HTTP/1.1 200"))
        .count();
    assert_eq!(
        unanswered, 0,
        "{unanswered} of 48 connections got no answer"
    );
}

/// Sockets time out after `WXLOGIN_CLIENT_TIMEOUT` of silence: a client that sends nothing is
/// dropped, and one that stalls inside a body is answered 408 and its connection closed.
#[test]
fn silent_clients_are_dropped_and_stalled_bodies_are_answered_408() {
    use std::io::{Read, Write};
    capture_logs();
    let db = TestDb::sqlite();
    let app = AppBuilder::new("http://127.0.0.1:9", &db, Secrets::unique())
        .var("WXLOGIN_CLIENT_TIMEOUT", "1s")
        .start();
    let addr = app.url.trim_start_matches("http://").to_string();
    let connect = || {
        let stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };

    let mut silent = connect();
    let mut stalled: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect();
            s.write_all(b"POST /api/wxuser HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\ncode=").unwrap();
            s
        })
        .collect();

    let mut buf = [0u8; 64];
    assert_eq!(
        silent.read(&mut buf).unwrap_or(0),
        0,
        "the silent client is closed"
    );
    for s in &mut stalled {
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // The stalled bodies held nothing the next client needs.
    assert_eq!(app.get("/healthz", None).status, 200);
}
