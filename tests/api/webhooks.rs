//! Webhook delivery, on both backends, to a real HTTP receiver in the test: a receiver that fails
//! for a while and then gets every event exactly once, in order per user, signed, with the stored
//! body and the same id across retries; no event lost across a restart of wxlogin; two nodes on
//! one database delivering each event once; and, with the clock injected, an event failing for a
//! day given up, kept, and not blocking its user's next event.

use crate::accounts::column;
use crate::helpers::{capture_logs, logged_lines, start_mock_wechat, AppBuilder, Secrets};
use crate::helpers::{TestApp, TestDb};
use crate::on_both_backends;
use hmac::{KeyInit, Mac};
use mock_wechat::MockWechat;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wxlogin::config::WebhookConfig;
use wxlogin::metrics::Metrics;
use wxlogin::secret::{random_hex, Secret};
use wxlogin::store::{self, LoginRecord, StoreOptions};
use wxlogin::webhooks::{Delivery, MAX_ATTEMPTS, RETRY_FOR_SECS};

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
    status: u16,
}

/// An HTTP endpoint that records every request and answers 503 while down or for its next
/// `fail_next` requests, 200 otherwise.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
    fail_next: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts the receiver; each answer waits `delay` first (a slow receiver widens races).
    fn start(delay: Duration) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the receiver"));
        let addr = server.server_addr().to_ip().expect("an IP address");
        let (seen, down, fail_next) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let thread = {
            let (server, seen, down, fail_next) = (
                server.clone(),
                seen.clone(),
                down.clone(),
                fail_next.clone(),
            );
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = String::new();
                    std::io::Read::read_to_string(request.as_reader(), &mut body).unwrap();
                    let headers = request
                        .headers()
                        .iter()
                        .map(|h| {
                            let name = h.field.as_str().as_str().to_ascii_lowercase();
                            (name, h.value.as_str().to_string())
                        })
                        .collect();
                    let failing = down.load(Ordering::SeqCst)
                        || fail_next
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                    let status = if failing { 503 } else { 200 };
                    std::thread::sleep(delay);
                    seen.lock().unwrap().push(Received {
                        headers,
                        body,
                        status,
                    });
                    let _ = request.respond(tiny_http::Response::empty(status));
                }
            })
        };
        Receiver {
            url: format!("http://{addr}/hooks/wxlogin"),
            seen,
            down,
            fail_next,
            server,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn node(mock: &MockWechat, db: &TestDb, receiver: &Receiver, secret: &str) -> TestApp {
    capture_logs();
    AppBuilder::new(&mock.base_url(), db, Secrets::for_mock_wechat())
        .var("WXLOGIN_WEBHOOK_URL", &receiver.url)
        .var("WXLOGIN_WEBHOOK_SECRET", secret)
        .start()
}

fn new_secret() -> String {
    format!("whsec-{}", random_hex(16))
}

fn login(app: &TestApp, mock: &MockWechat, user: &str) -> String {
    let answer = app.post_form("/api/wxuser", &[("code", &mock.new_code(user))]);
    assert_eq!(answer.status, 200, "login failed: {}", answer.text);
    format!("Bearer {}", answer.body["access_token"].as_str().unwrap())
}

/// Asks until `done` holds or `limit` passes; whether it held.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn undelivered(db: &TestDb) -> u64 {
    db.count("SELECT COUNT(*) FROM wx_outbox WHERE delivered_at IS NULL")
}

/// The outbox as `(event_id, uid, body)`, in order of writing.
fn outbox(db: &TestDb) -> Vec<(String, String, String)> {
    let get = |col: &str| column(db, &format!("SELECT {col} FROM wx_outbox ORDER BY seq"));
    let (ids, uids, bodies) = (get("event_id"), get("uid"), get("body"));
    ids.into_iter()
        .zip(uids)
        .zip(bodies)
        .map(|((id, uid), body)| (id, uid, body))
        .collect()
}

/// Checks `v1` of the signature header independently of wxlogin: HMAC-SHA256 of `"<t>.<body>"`.
fn assert_signed(header: &str, body: &str, secret: &str) {
    let parts: HashMap<&str, &str> = header
        .split(',')
        .map(|part| part.split_once('=').expect("k=v"))
        .collect();
    let t: i64 = parts["t"].parse().expect("t is unix seconds");
    assert!(
        (t - wxlogin::clock::now()).abs() < 60,
        "t is the send time: {header}"
    );
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(parts["v1"], expected, "signature of {body}");
}

/// Every outbox event reached the receiver exactly once with a 2xx, with its stored body, its
/// id, a valid signature, in order per user; every failed attempt was of one of those events.
/// The accepted requests, in arrival order.
fn assert_delivered_once_in_order(db: &TestDb, receiver: &Receiver, secret: &str) -> Vec<Value> {
    let rows = outbox(db);
    assert!(!rows.is_empty(), "{}: events were written", db.backend);
    let seen = receiver.seen();
    let accepted: Vec<&Received> = seen.iter().filter(|r| r.status == 200).collect();
    for request in &seen {
        assert_eq!(request.headers["content-type"], "application/json");
        assert_signed(
            &request.headers["x-wxlogin-signature"],
            &request.body,
            secret,
        );
        let (id, _, body) = rows
            .iter()
            .find(|(id, _, _)| *id == request.headers["x-wxlogin-event-id"])
            .unwrap_or_else(|| panic!("an event of the outbox: {request:?}"));
        assert_eq!(&request.body, body, "{}: the exact stored body", db.backend);
        let parsed: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(&parsed["id"], id, "a retry keeps its id");
    }
    let mut ids: Vec<&str> = accepted
        .iter()
        .map(|r| r.headers["x-wxlogin-event-id"].as_str())
        .collect();
    let mut per_user: HashMap<&str, Vec<&str>> = HashMap::new();
    for id in &ids {
        let (_, uid, _) = rows.iter().find(|(e, _, _)| e == id).unwrap();
        per_user.entry(uid).or_default().push(id);
    }
    for (uid, delivered) in &per_user {
        let written: Vec<&str> = rows
            .iter()
            .filter(|(_, u, _)| u == uid)
            .map(|(id, _, _)| id.as_str())
            .collect();
        assert_eq!(delivered, &written, "{}: in order for {uid}", db.backend);
    }
    ids.sort_unstable();
    let mut expected: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "{}: each event accepted once", db.backend);
    for line in logged_lines() {
        assert!(
            !line.contains(secret),
            "the webhook secret was logged: {line}"
        );
    }
    accepted
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

fn a_receiver_failing_for_a_while_then_gets_every_event_once_in_order(db: &TestDb) {
    let mock = start_mock_wechat(true);
    let receiver = Receiver::start(Duration::ZERO);
    receiver.fail_next.store(4, Ordering::SeqCst);
    let secret = new_secret();
    let app = node(&mock, db, &receiver, &secret);

    let alice = login(&app, &mock, "alice");
    login(&app, &mock, "bob");
    login(&app, &mock, "alice");
    let out = app.post_json_with_token("/api/logout", &json!({}), &alice);
    assert_eq!(out.status, 200, "{}", out.text);
    let bob_uid = db.uid_of(&mock.openid_for("bob"));
    let now = wxlogin::clock::now();
    assert!(app
        .store
        .set_disabled(&bob_uid, true, now)
        .unwrap()
        .is_some());
    assert!(app
        .store
        .set_disabled(&bob_uid, false, now)
        .unwrap()
        .is_some());
    let erased = app.post_json_with_token(
        "/api/me/deletion",
        &json!({ "code": mock.new_code("alice") }),
        &login(&app, &mock, "alice"),
    );
    assert_eq!(erased.status, 200, "{}", erased.text);

    assert!(
        eventually(Duration::from_secs(30), || undelivered(db) == 0),
        "{}: everything delivered: {:?}",
        db.backend,
        column(db, "SELECT last_error FROM wx_outbox")
    );
    let delivered = assert_delivered_once_in_order(db, &receiver, &secret);
    let failed = receiver.seen().iter().filter(|r| r.status == 503).count();
    assert_eq!(failed, 4, "{}: the receiver failed four times", db.backend);
    let types: Vec<&str> = delivered
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in [
        "user.created",
        "session.revoked",
        "user.disabled",
        "user.enabled",
        "user.deleted",
    ] {
        assert!(types.contains(&kind), "{}: {kind} in {types:?}", db.backend);
    }
    let deleted = delivered
        .iter()
        .find(|e| e["type"] == "user.deleted")
        .unwrap();
    assert_eq!(deleted["data"]["openid"], mock.openid_for("alice"));
    assert!(
        eventually(Duration::from_secs(10), || {
            let metrics = app.get("/metrics", None).text;
            metrics.contains("wxlogin_webhook_deliveries_total{outcome=\"failed\"} 4")
                && metrics.contains(&format!(
                    "wxlogin_webhook_deliveries_total{{outcome=\"delivered\"}} {}",
                    delivered.len()
                ))
                && metrics.contains("wxlogin_webhook_events{state=\"pending\"} 0")
        }),
        "{}: {}",
        db.backend,
        app.get("/metrics", None).text
    );
}

fn no_event_is_lost_across_a_restart(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let receiver = Receiver::start(Duration::ZERO);
    receiver.down.store(true, Ordering::SeqCst);
    let secret = new_secret();
    let first = node(&mock, db, &receiver, &secret);
    let carol = login(&first, &mock, "carol");
    login(&first, &mock, "dave");
    let out = first.post_json_with_token("/api/logout", &json!({}), &carol);
    assert_eq!(out.status, 200, "{}", out.text);
    // Both users' first events were tried (and refused); carol's logout waits behind hers.
    assert!(
        eventually(Duration::from_secs(10), || db
            .count("SELECT COUNT(*) FROM wx_outbox WHERE attempts > 0")
            >= 2),
        "{}: attempts made while the receiver was down",
        db.backend
    );
    assert!(first.shutdown(), "{}: a clean stop", db.backend);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wx_outbox WHERE locked_by IS NOT NULL"),
        0,
        "{}: a stopped node holds no lease",
        db.backend
    );
    assert_eq!(undelivered(db), 3, "{}", db.backend);

    receiver.down.store(false, Ordering::SeqCst);
    let _second = node(&mock, db, &receiver, &secret);

    assert!(
        eventually(Duration::from_secs(30), || undelivered(db) == 0),
        "{}: everything delivered after the restart",
        db.backend
    );
    let delivered = assert_delivered_once_in_order(db, &receiver, &secret);
    assert_eq!(delivered.len(), 3, "{}", db.backend);
}

fn two_nodes_on_one_database_deliver_each_event_once(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let receiver = Receiver::start(Duration::from_millis(20));
    let secret = new_secret();
    let nodes = [
        node(&mock, db, &receiver, &secret),
        node(&mock, db, &receiver, &secret),
    ];
    for n in 0..8 {
        let app = &nodes[n % 2];
        let token = login(app, &mock, &format!("user{n}"));
        let out = app.post_json_with_token("/api/logout", &json!({}), &token);
        assert_eq!(out.status, 200, "{}", out.text);
    }

    assert!(
        eventually(Duration::from_secs(30), || undelivered(db) == 0),
        "{}: everything delivered",
        db.backend
    );
    let delivered = assert_delivered_once_in_order(db, &receiver, &secret);
    assert_eq!(delivered.len(), 16, "{}", db.backend);
    assert_eq!(
        receiver.seen().len(),
        16,
        "{}: no event sent twice",
        db.backend
    );
}

fn an_event_failing_for_a_day_is_given_up_and_kept_and_the_next_goes_on(db: &TestDb) {
    capture_logs();
    let receiver = Receiver::start(Duration::ZERO);
    receiver.down.store(true, Ordering::SeqCst);
    let secret = new_secret();
    let options = StoreOptions {
        events: true,
        ..StoreOptions::default()
    };
    let store: Arc<dyn store::UserStore> = Arc::from(store::open(&db.url, options).unwrap());
    let uid = random_hex(16);
    let start = wxlogin::clock::now();
    store
        .upsert_login(&LoginRecord {
            openid: "o-given-up",
            uid: &uid,
            unionid: None,
            profile: None,
            session_key: &Secret::new("session-key"),
        })
        .unwrap();
    store.set_disabled(&uid, true, start).unwrap();
    let delivery = Delivery::new(
        store.clone(),
        &WebhookConfig {
            url: receiver.url.clone(),
            secret: Secret::new(secret.clone()),
        },
        Arc::new(Metrics::new()),
    );

    // The clock jumps to each retry's time.
    let mut now = start;
    for attempt in 1..=MAX_ATTEMPTS {
        assert_eq!(delivery.run_once(now).unwrap(), 1, "attempt {attempt}");
        let next: i64 = column(db, "SELECT next_attempt_at FROM wx_outbox ORDER BY seq")[0]
            .parse()
            .unwrap();
        if attempt == 1 {
            assert!(next - now <= 2, "the first retry within seconds");
        }
        if attempt < MAX_ATTEMPTS {
            assert_eq!(delivery.run_once(next - 1).unwrap(), 0, "not yet due");
            now = next;
        }
    }
    assert!(
        now - start >= RETRY_FOR_SECS,
        "retried for {} s",
        now - start
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), MAX_ATTEMPTS as usize);
    assert!(seen
        .iter()
        .all(|r| r.headers["x-wxlogin-event-id"] == seen[0].headers["x-wxlogin-event-id"]));
    let given_up = &seen[0].headers["x-wxlogin-event-id"];
    assert!(
        logged_lines()
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains(given_up.as_str())),
        "the operator is told"
    );

    receiver.down.store(false, Ordering::SeqCst);
    let later = now + 3600;
    assert_eq!(
        delivery.run_once(later).unwrap(),
        1,
        "the user's next event"
    );
    assert_eq!(
        delivery.run_once(later + 86_400).unwrap(),
        0,
        "nothing else"
    );
    assert_eq!(
        column(
            db,
            "SELECT type FROM wx_outbox WHERE delivered_at IS NOT NULL"
        ),
        ["user.disabled"]
    );
    assert_eq!(
        column(
            db,
            "SELECT last_error FROM wx_outbox WHERE delivered_at IS NULL"
        ),
        ["HTTP status 503"],
        "{}: kept, with why",
        db.backend
    );
    let counts = store.outbox_counts(MAX_ATTEMPTS).unwrap();
    assert_eq!((counts.pending, counts.failed), (0, 1));
    assert_eq!(
        store.purge_delivered(later + 1, 100).unwrap(),
        1,
        "delivered events are purged, given-up ones kept"
    );
    assert_eq!(outbox(db).len(), 1);
}

on_both_backends!(
    a_receiver_failing_for_a_while_then_gets_every_event_once_in_order,
    no_event_is_lost_across_a_restart,
    two_nodes_on_one_database_deliver_each_event_once,
    an_event_failing_for_a_day_is_given_up_and_kept_and_the_next_goes_on,
);
