//! Routing, content types, body limits, `GET /api/me` token checks, health, request ids, and a
//! database outage, over real HTTP.

use crate::helpers::{capture_logs, spawn_app, AppBuilder, FakeWechat, Secrets, TestDb};
use serde_json::json;
use std::sync::Arc;
use wiremock::ResponseTemplate;
use wxlogin::secret::Secret;
use wxlogin::store::{
    Account, AvatarCheck, AvatarState, CodeClaim, LoginEntry, LoginRecord, LoginUser, NewImage,
    NewSession, Purge, Purged, RefreshRecord, RevokeReason, Rotation, SessionInfo, SessionState,
    Stats, StoreError, UserStore,
};
use wxlogin::store::{Claim, OutboxCounts, OutboxDelivery, Settle};
use wxlogin::user::{PhoneNumber, Profile, User};

fn wechat_for(openid: &str) -> FakeWechat {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(
        ResponseTemplate::new(200).set_body_json(json!({"openid": openid, "session_key": "a2V5"})),
    );
    wechat
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let db = TestDb::sqlite();
    let app = spawn_app("http://127.0.0.1:9", &db);

    let cases = [
        ("GET", "/nope", 404),
        ("GET", "/api/wxuser", 405),
        ("PUT", "/api/wxuser", 405),
        ("POST", "/api/me", 405),
        ("DELETE", "/healthz", 405),
    ];
    for (method, path, status) in cases {
        let answer = app.request(method, path);
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text);
        assert_eq!(answer.body["status"], status, "{method} {path}");
        if status == 405 {
            assert!(answer.headers.contains_key("allow"), "{method} {path}");
        }
    }
}

#[test]
fn healthz_answers_200_with_a_request_id() {
    let db = TestDb::sqlite();
    let app = spawn_app("http://127.0.0.1:9", &db);

    let answer = app.get("/healthz", None);

    assert_eq!(answer.status, 200);
    assert!(!answer.headers["x-request-id"].is_empty());
    assert_eq!(app.get("/readyz", None).status, 200);
}

#[test]
fn login_returns_415_for_other_content_types() {
    let db = TestDb::sqlite();
    let app = spawn_app("http://127.0.0.1:9", &db);

    for content_type in [
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let answer = app.post_raw("/api/wxuser", content_type, b"code=abc");
        assert_eq!(answer.status, 415, "{content_type:?}: {}", answer.text);
    }
}

#[test]
fn login_returns_413_for_bodies_over_64_kib() {
    let wechat = wechat_for("o-big");
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let padding = "x".repeat(64 * 1024);
    let too_big = app.post_form("/api/wxuser", &[("code", "c"), ("pad", &padding)]);
    assert_eq!(too_big.status, 413, "{}", too_big.text);

    let just_fits = app.post_form("/api/wxuser", &[("code", "c"), ("pad", &padding[..60_000])]);
    assert_eq!(just_fits.status, 200, "{}", just_fits.text);
}

#[test]
fn login_returns_400_for_an_unreadable_json_body() {
    let db = TestDb::sqlite();
    let app = spawn_app("http://127.0.0.1:9", &db);

    let answer = app.post_raw("/api/wxuser", Some("application/json"), b"{\"code\":");

    assert_eq!(answer.status, 400, "{}", answer.text);
}

#[test]
fn me_returns_the_stored_profile_for_a_valid_token() {
    let wechat = wechat_for("o-me");
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    let login = app.post_form(
        "/api/wxuser",
        &[
            ("code", "c"),
            (
                "userInfo",
                r#"{"nickName":"Me 😀","avatarUrl":"https://a/me.png","gender":2}"#,
            ),
        ],
    );
    let token = login.body["token"].as_str().unwrap();

    let answer = app.get("/api/me", Some(token));

    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body["user"],
        json!({"openid": "o-me", "unionid": null, "nickName": "Me 😀",
               "avatarUrl": "https://a/me.png", "gender": 2,
               "phoneNumber": null, "purePhoneNumber": null, "countryCode": null,
               "avatarState": null})
    );
}

#[test]
fn me_returns_401_for_missing_malformed_forged_or_expired_tokens() {
    let wechat = wechat_for("o-401");
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    let token = app.login("c");
    let jwt = token.trim_start_matches("Bearer ");
    let parts: Vec<&str> = jwt.split('.').collect();

    // The same user's session, for the same mini-program, signed with another key.
    let other_secrets = Secrets {
        appid: app.secrets.appid.clone(),
        ..Secrets::unique()
    };
    let other = AppBuilder::new(&wechat.uri(), &db, other_secrets).config();
    let claims = crate::helpers::jwt_payload(&token);
    let forged = wxlogin::token::TokenIssuer::new(&other.jwt).issue(
        claims["sub"].as_str().unwrap(),
        claims["sid"].as_str().unwrap(),
        "o-401",
        None,
    );
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "no header"),
        (Some(jwt.to_string()), "no Bearer prefix"),
        (Some("Bearer".into()), "no token"),
        (Some("Bearer not.a.jwt".into()), "garbage"),
        (Some(format!("Bearer {forged}")), "another key"),
        (
            Some(format!("Bearer {none_header}.{}.", parts[1])),
            "alg none",
        ),
        (
            Some(format!("Bearer {}.{}x.{}", parts[0], parts[1], parts[2])),
            "edited payload",
        ),
        (Some(format!("Bearer {}", "a".repeat(5000))), "oversized"),
    ];
    for (header, what) in cases {
        let answer = app.get("/api/me", header.as_deref());
        assert_eq!(answer.status, 401, "{what}: {}", answer.text);
        assert_eq!(answer.body["status"], 401, "{what}");
    }
    assert_eq!(app.get("/api/me", Some(&token)).status, 200);
}

/// A store whose database is down.
struct DownStore;

impl UserStore for DownStore {
    fn upsert_login(&self, _: &LoginRecord<'_>) -> Result<LoginUser, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn create_session(&self, _: &NewSession<'_>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_refresh(&self, _: &str) -> Result<Option<RefreshRecord>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn rotate_refresh(&self, _: &Rotation<'_>) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn session_state(&self, _: &str) -> Result<SessionState, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn revoke_session(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: RevokeReason,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn revoke_user_sessions(
        &self,
        _: &str,
        _: i64,
        _: RevokeReason,
    ) -> Result<Vec<String>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn list_sessions(&self, _: &str, _: i64) -> Result<Vec<SessionInfo>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn claim_code(&self, _: &str, _: i64, _: i64) -> Result<CodeClaim, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn finish_code(&self, _: &str, _: &str, _: Option<&str>, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn release_code(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn purge_codes(&self, _: i64) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    fn set_disabled(&self, _: &str, _: bool, _: i64) -> Result<Option<Vec<String>>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn set_erase_at(
        &self,
        _: &str,
        _: Option<i64>,
        _: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn erase_user(&self, _: &str, _: i64) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn due_erasures(&self, _: i64, _: usize) -> Result<Vec<String>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_account(&self, _: &str) -> Result<Option<Account>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn list_logins(&self, _: &str, _: usize) -> Result<Vec<LoginEntry>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn purge(&self, _: &Purge) -> Result<Purged, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn claim_events(&self, _: &Claim<'_>) -> Result<Vec<OutboxDelivery>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn settle_event(&self, _: i64, _: &str, _: Settle<'_>) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn outbox_counts(&self, _: u32) -> Result<OutboxCounts, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn purge_delivered(&self, _: i64, _: usize) -> Result<usize, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn stats(&self, _: i64) -> Result<Stats, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_user(&self, _: &str) -> Result<Option<User>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_session_key(&self, _: &str) -> Result<Option<Secret>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn set_phone(&self, _: &str, _: &PhoneNumber) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn update_profile(&self, _: &str, _: &Profile) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn activate_avatar(&self, _: &str, _: &NewImage<'_>, _: i64) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn begin_avatar_check(
        &self,
        _: &str,
        _: &NewImage<'_>,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn avatar_check_submitted(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_avatar_check(&self, _: &str) -> Result<Option<AvatarCheck>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn finish_avatar_check(&self, _: &str, _: &str, _: bool, _: i64) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn due_avatar_checks(&self, _: i64, _: u32) -> Result<Vec<AvatarCheck>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn resubmit_avatar_check(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_media(&self, _: &str, _: i64) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn avatar_state(&self, _: &str) -> Result<Option<AvatarState>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_media_verdict(&self, _: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn remember_media_verdict(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn find_avatar(&self, _: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    fn pool_usage(&self) -> (usize, usize) {
        (0, 1)
    }
    fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

#[test]
fn login_returns_503_without_a_token_when_the_database_is_unavailable() {
    capture_logs();
    let wechat = wechat_for("o-down");
    let db = TestDb::sqlite();
    let app = AppBuilder::new(&wechat.uri(), &db, Secrets::unique())
        .start_with_store(Arc::new(DownStore));

    let answer = app.post_form("/api/wxuser", &[("code", "c")]);

    assert_eq!(answer.status, 503, "{}", answer.text);
    assert!(answer.body.get("token").is_none());
    assert_eq!(app.get("/readyz", None).status, 503);
    assert_eq!(app.get("/healthz", None).status, 200);
}

#[test]
fn metrics_count_requests_upstream_calls_and_show_the_build() {
    let wechat = wechat_for("o-metrics");
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    app.login("c-metrics");
    app.get("/api/me", Some("Bearer nope"));

    let answer = app.get_bytes("/metrics", &[]);

    assert_eq!(answer.0, 200);
    assert!(answer.2["content-type"].starts_with("text/plain"));
    let text = String::from_utf8(answer.1).unwrap();
    for expected in [
        r#"wxlogin_http_requests_total{route="/api/wxuser",status="200"} 1"#,
        r#"wxlogin_http_requests_total{route="/api/me",status="401"} 1"#,
        r#"wxlogin_http_request_duration_seconds_bucket{route="/api/wxuser",le="10"} 1"#,
        r#"wxlogin_upstream_requests_total{endpoint="jscode2session",outcome="ok"} 1"#,
        r#"wxlogin_upstream_request_duration_seconds_count{endpoint="jscode2session"} 1"#,
        "wxlogin_db_connections_in_use 0",
        "wxlogin_db_connections_max ",
        r#"wxlogin_build_info{version=""#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for secret in [&app.secrets.wechat_secret, &app.secrets.jwt_secret] {
        assert!(!text.contains(secret.as_str()));
    }
}

#[test]
fn every_request_leaves_one_access_log_line_with_its_request_id() {
    let db = TestDb::sqlite();
    let app = spawn_app("http://127.0.0.1:9", &db);
    let id = format!("test-{}", wxlogin::secret::random_hex(6));

    let answer = app.send(
        "GET",
        "/healthz",
        &[("X-Request-Id", &id), ("X-Real-IP", "203.0.113.7")],
        None,
        b"",
    );

    assert_eq!(answer.headers["x-request-id"], id, "the proxy's id is kept");
    let lines: Vec<String> = crate::helpers::logged_lines()
        .into_iter()
        .filter(|l| l.contains("wxlogin::access") && l.contains(&id))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("GET /healthz 200"), "{}", lines[0]);
    assert!(
        lines[0].contains("203.0.113.7"),
        "real client address from a local proxy: {}",
        lines[0]
    );
}
