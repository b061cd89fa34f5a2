//! Login codes across nodes (issue 11 item 8): a code retried on another node logs the same user
//! in, with one jscode2session call per code across the cluster; the database keeps a hash of
//! the code, never the code; a claim left by a node that died is taken over after its bound.

use crate::helpers::{capture_logs, jwt_payload, race, AppBuilder, Secrets, TestApp, TestDb};
use crate::on_both_backends;
use mock_wechat::{MockConfig, MockWechat};
use std::time::Duration;

fn mock(latency: Duration) -> MockWechat {
    MockWechat::start(MockConfig {
        bind: "127.0.0.1:0".into(),
        latency,
        ..MockConfig::default()
    })
    .expect("start mock-wechat")
}

/// Two nodes on one database, with the same secrets, as a cluster runs them.
fn two_nodes(mock: &MockWechat, db: &TestDb, window: &str) -> (TestApp, TestApp) {
    capture_logs();
    let secrets = Secrets::for_mock_wechat();
    let node = || {
        AppBuilder::new(&mock.base_url(), db, secrets.clone())
            .var("WXLOGIN_CODE_REPLAY_WINDOW", window)
            .start()
    };
    (node(), node())
}

fn sub(answer: &crate::helpers::Answer) -> String {
    jwt_payload(answer.body["token"].as_str().expect("a token"))["sub"]
        .as_str()
        .expect("a sub")
        .to_string()
}

fn a_code_retried_on_another_node_logs_the_same_user_in(db: &TestDb) {
    let mock = mock(Duration::ZERO);
    let (a, b) = two_nodes(&mock, db, "60");
    let code = mock.new_code("ren");

    let first = a.post_form("/api/wxuser", &[("code", &code)]);
    let retry = b.post_form("/api/wxuser", &[("code", &code)]);

    assert_eq!(first.status, 200, "{}: {}", db.backend, first.text);
    assert_eq!(
        retry.status, 200,
        "the retry on the other node: {}",
        retry.text
    );
    assert_eq!(sub(&first), sub(&retry), "the same user");
    assert_ne!(
        first.body["refresh_token"], retry.body["refresh_token"],
        "each login has its own session"
    );
    assert_eq!(mock.jscode2session_calls(), 1, "one upstream call per code");
    assert_eq!(db.count_users(), 1);
    let stored = db.count(&format!(
        "SELECT COUNT(*) FROM wx_code_replay WHERE code_hash = '{code}' OR openid = '{code}'"
    ));
    assert_eq!(stored, 0, "the code itself is never stored");
}

fn one_code_sent_to_two_nodes_at_once_is_exchanged_once(db: &TestDb) {
    // WeChat answers slowly, so that every request arrives while the first one is asking.
    let mock = mock(Duration::from_millis(300));
    let (a, b) = two_nodes(&mock, db, "60");
    let code = mock.new_code("ida");

    let answers = race(10, |i| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.post_form("/api/wxuser", &[("code", &code)])
    });

    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{}: {statuses:?} {:?}",
        db.backend,
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    let subs: std::collections::BTreeSet<String> = answers.iter().map(sub).collect();
    assert_eq!(subs.len(), 1, "one user: {subs:?}");
    assert_eq!(
        mock.jscode2session_calls(),
        1,
        "one upstream call across the cluster"
    );
}

fn a_claim_left_by_a_dead_node_is_taken_over_after_its_bound(db: &TestDb) {
    let mock = mock(Duration::ZERO);
    let (a, _) = two_nodes(&mock, db, "60");
    let code = mock.new_code("ola");
    // A node claimed this code and died before WeChat answered it: its claim ran out long ago.
    let hash = {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{}:{code}", mock_wechat::DEFAULT_APPID));
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    db.execute_raw(&format!(
        "INSERT INTO wx_code_replay (code_hash, openid, unionid, created_at, expires_at) \
         VALUES ('{hash}', NULL, NULL, 1, 2)"
    ));

    let answer = a.post_form("/api/wxuser", &[("code", &code)]);

    assert_eq!(answer.status, 200, "{}: {}", db.backend, answer.text);
    assert_eq!(mock.jscode2session_calls(), 1);
    let kept = db.count(&format!(
        "SELECT COUNT(*) FROM wx_code_replay WHERE code_hash = '{hash}' AND openid IS NOT NULL"
    ));
    assert_eq!(kept, 1, "the new outcome is kept for retries");
}

fn with_the_window_off_nothing_is_kept_and_a_retry_is_refused(db: &TestDb) {
    let mock = mock(Duration::ZERO);
    let (a, b) = two_nodes(&mock, db, "0");
    let code = mock.new_code("kai");

    let first = a.post_form("/api/wxuser", &[("code", &code)]);
    let retry = b.post_form("/api/wxuser", &[("code", &code)]);

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        retry.status, 401,
        "WeChat's 40163 reaches the client: {}",
        retry.text
    );
    assert_eq!(retry.body["errcode"], 40163);
    assert_eq!(db.count("SELECT COUNT(*) FROM wx_code_replay"), 0);
}

on_both_backends!(
    a_code_retried_on_another_node_logs_the_same_user_in,
    one_code_sent_to_two_nodes_at_once_is_exchanged_once,
    a_claim_left_by_a_dead_node_is_taken_over_after_its_bound,
    with_the_window_off_nothing_is_kept_and_a_retry_is_refused,
);
