//! Hardening found in review (issue #9): WeChat calls that must not be repeated or redirected,
//! avatar headers and cheap revalidation, users deleted under a valid token, login profiles held
//! to the `PUT /api/me` rules, database files only the service can read, and MySQL over TLS.

use crate::helpers::{logged_lines, spawn_app, FakeWechat, TestDb};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremock::ResponseTemplate;

/// Lines logged for request `id`.
fn lines_of(id: &str) -> Vec<String> {
    logged_lines()
        .into_iter()
        .filter(|line| line.contains(id))
        .collect()
}

#[test]
fn login_is_a_502_without_following_when_wechat_answers_a_redirect() {
    let wechat = FakeWechat::start();
    let elsewhere = FakeWechat::start();
    wechat.answer_jscode2session(ResponseTemplate::new(302).insert_header(
        "Location",
        format!("{}/sns/jscode2session", elsewhere.uri()).as_str(),
    ));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let answer = app.post_form("/api/wxuser", &[("code", "c-redirect")]);

    assert_eq!(answer.status, 502, "{}", answer.text);
    assert_eq!(wechat.received_queries().len(), 1, "no retry of a redirect");
    assert!(
        elsewhere.received_queries().is_empty(),
        "the redirect was followed, with the AppSecret in its query"
    );
    let id = &answer.headers["x-request-id"];
    assert!(
        lines_of(id)
            .iter()
            .any(|l| l.contains("/api/wxuser failed: wechat: HTTP status 302")),
        "no log line names the redirect: {:?}",
        lines_of(id)
    );
}

/// A WeChat stand-in that reads each request in full, counts it, and resets the connection
/// instead of answering: the request arrived, the answer is lost.
fn resetting_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            // Linger 0: close() sends RST instead of FIN.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            let _ = stream.flush();
        }
    });
    (url, seen)
}

#[test]
fn login_code_is_sent_once_when_the_connection_resets_after_the_request() {
    let (upstream, seen) = resetting_upstream();
    let db = TestDb::sqlite();
    let app = spawn_app(&upstream, &db);

    let answer = app.post_form("/api/wxuser", &[("code", "c-reset")]);

    assert_eq!(answer.status, 502, "{}", answer.text);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "a code WeChat may have spent was sent again"
    );
    let id = &answer.headers["x-request-id"];
    assert!(
        lines_of(id)
            .iter()
            .any(|l| l.contains("wechat: interrupted after sending")),
        "no log line says the call was interrupted: {:?}",
        lines_of(id)
    );
}

/// The value of the metric line that starts with `prefix`, or 0 when it is absent.
fn metric(app: &crate::helpers::TestApp, prefix: &str) -> f64 {
    let metrics = app.get("/metrics", None).text;
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn login_is_retried_once_when_wechat_refuses_the_connection() {
    let db = TestDb::sqlite();
    let app = spawn_app(&crate::helpers::closed_port_url(), &db);

    let answer = app.post_form("/api/wxuser", &[("code", "c-refused")]);

    assert_eq!(answer.status, 502, "{}", answer.text);
    let attempts = metric(
        &app,
        r#"wxlogin_upstream_requests_total{endpoint="jscode2session",outcome="unreachable"}"#,
    );
    assert_eq!(attempts, 2.0, "a request that never left is retried once");
}
