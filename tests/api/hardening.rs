//! Hardening found in review (issue #9): WeChat calls that must not be repeated or redirected,
//! avatar headers and cheap revalidation, users deleted under a valid token, login profiles held
//! to the `PUT /api/me` rules, database files only the service can read, and MySQL over TLS.

use crate::helpers::{
    capture_logs, logged_lines, spawn_app, spawn_app_with_mock, start_mock_wechat, AppBuilder,
    FakeWechat, Secrets, TestDb,
};
use crate::on_both_backends;
use crate::profile::{upload, PNG};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A store that counts how often an image is read in full, and passes everything through.
struct CountingStore {
    inner: Arc<dyn UserStore>,
    image_reads: AtomicUsize,
}

impl UserStore for CountingStore {
    fn upsert_login(&self, record: &LoginRecord<'_>) -> Result<LoginUser, StoreError> {
        self.inner.upsert_login(record)
    }
    fn create_session(&self, session: &NewSession<'_>) -> Result<(), StoreError> {
        self.inner.create_session(session)
    }
    fn find_refresh(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        self.inner.find_refresh(hash)
    }
    fn rotate_refresh(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        self.inner.rotate_refresh(rotation)
    }
    fn session_state(&self, session_id: &str) -> Result<SessionState, StoreError> {
        self.inner.session_state(session_id)
    }
    fn revoke_session(
        &self,
        uid: &str,
        session_id: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<bool, StoreError> {
        self.inner.revoke_session(uid, session_id, now, reason)
    }
    fn revoke_user_sessions(
        &self,
        uid: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.revoke_user_sessions(uid, now, reason)
    }
    fn set_disabled(
        &self,
        uid: &str,
        disabled: bool,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.inner.set_disabled(uid, disabled, now)
    }
    fn set_erase_at(
        &self,
        uid: &str,
        erase_at: Option<i64>,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.inner.set_erase_at(uid, erase_at, now)
    }
    fn erase_user(&self, uid: &str, now: i64) -> Result<bool, StoreError> {
        self.inner.erase_user(uid, now)
    }
    fn due_erasures(&self, now: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.due_erasures(now, limit)
    }
    fn find_account(&self, key: &str) -> Result<Option<Account>, StoreError> {
        self.inner.find_account(key)
    }
    fn list_logins(&self, uid: &str, limit: usize) -> Result<Vec<LoginEntry>, StoreError> {
        self.inner.list_logins(uid, limit)
    }
    fn purge(&self, purge: &Purge) -> Result<Purged, StoreError> {
        self.inner.purge(purge)
    }
    fn claim_events(&self, claim: &Claim<'_>) -> Result<Vec<OutboxDelivery>, StoreError> {
        self.inner.claim_events(claim)
    }
    fn settle_event(&self, seq: i64, node: &str, settle: Settle<'_>) -> Result<bool, StoreError> {
        self.inner.settle_event(seq, node, settle)
    }
    fn outbox_counts(&self, max_attempts: u32) -> Result<OutboxCounts, StoreError> {
        self.inner.outbox_counts(max_attempts)
    }
    fn purge_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        self.inner.purge_delivered(before, limit)
    }
    fn stats(&self, now: i64) -> Result<Stats, StoreError> {
        self.inner.stats(now)
    }

    fn list_sessions(&self, uid: &str, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.list_sessions(uid, now)
    }
    fn claim_code(&self, hash: &str, now: i64, until: i64) -> Result<CodeClaim, StoreError> {
        self.inner.claim_code(hash, now, until)
    }
    fn finish_code(
        &self,
        hash: &str,
        openid: &str,
        unionid: Option<&str>,
        until: i64,
    ) -> Result<(), StoreError> {
        self.inner.finish_code(hash, openid, unionid, until)
    }
    fn release_code(&self, hash: &str) -> Result<(), StoreError> {
        self.inner.release_code(hash)
    }
    fn purge_codes(&self, now: i64) -> Result<u64, StoreError> {
        self.inner.purge_codes(now)
    }
    fn find_user(&self, openid: &str) -> Result<Option<User>, StoreError> {
        self.inner.find_user(openid)
    }
    fn find_session_key(&self, openid: &str) -> Result<Option<Secret>, StoreError> {
        self.inner.find_session_key(openid)
    }
    fn set_phone(&self, openid: &str, phone: &PhoneNumber) -> Result<bool, StoreError> {
        self.inner.set_phone(openid, phone)
    }
    fn update_profile(&self, openid: &str, profile: &Profile) -> Result<bool, StoreError> {
        self.inner.update_profile(openid, profile)
    }
    fn activate_avatar(
        &self,
        openid: &str,
        image: &NewImage<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner.activate_avatar(openid, image, now)
    }
    fn begin_avatar_check(
        &self,
        openid: &str,
        image: &NewImage<'_>,
        token: &str,
        expires: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner
            .begin_avatar_check(openid, image, token, expires, now)
    }
    fn avatar_check_submitted(&self, token: &str, trace_id: &str) -> Result<bool, StoreError> {
        self.inner.avatar_check_submitted(token, trace_id)
    }
    fn find_avatar_check(&self, trace_id: &str) -> Result<Option<AvatarCheck>, StoreError> {
        self.inner.find_avatar_check(trace_id)
    }
    fn finish_avatar_check(
        &self,
        openid: &str,
        token: &str,
        accept: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner.finish_avatar_check(openid, token, accept, now)
    }
    fn due_avatar_checks(&self, before: i64, limit: u32) -> Result<Vec<AvatarCheck>, StoreError> {
        self.inner.due_avatar_checks(before, limit)
    }
    fn resubmit_avatar_check(
        &self,
        openid: &str,
        old: &str,
        new: &str,
        expires: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner
            .resubmit_avatar_check(openid, old, new, expires, now)
    }
    fn find_media(&self, token: &str, now: i64) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.inner.find_media(token, now)
    }
    fn avatar_state(&self, openid: &str) -> Result<Option<AvatarState>, StoreError> {
        self.inner.avatar_state(openid)
    }
    fn find_media_verdict(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.find_media_verdict(hash)
    }
    fn remember_media_verdict(
        &self,
        hash: &str,
        suggest: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.remember_media_verdict(hash, suggest, now)
    }
    fn find_avatar(&self, hash: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.image_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.find_avatar(hash)
    }
    fn find_avatar_type(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.find_avatar_type(hash)
    }
    fn pool_usage(&self) -> (usize, usize) {
        self.inner.pool_usage()
    }
    fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping()
    }
}

fn avatar_is_served_with_security_headers_and_revalidated_without_reading_it(db: &TestDb) {
    capture_logs();
    let mock = start_mock_wechat(false);
    let store = Arc::new(CountingStore {
        inner: db.open(),
        image_reads: AtomicUsize::new(0),
    });
    let app = AppBuilder::new(&mock.base_url(), db, Secrets::for_mock_wechat())
        .start_with_store(store.clone());
    let token = app.login(&mock.new_code("ivy"));
    let uploaded = upload(&app, Some(&token), "file", PNG);
    assert_eq!(uploaded.status, 200, "{}: {}", db.backend, uploaded.text);
    let url = uploaded.body["user"]["avatarUrl"].as_str().unwrap();
    let path = &url[app.url.len()..];

    let (status, _, headers) = app.get_bytes(path, &[]);
    assert_eq!(status, 200);
    assert_eq!(
        store.image_reads.load(Ordering::SeqCst),
        1,
        "a 200 reads it"
    );
    let (status, body, revalidated) = app.get_bytes(path, &[("If-None-Match", &headers["etag"])]);
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(
        store.image_reads.load(Ordering::SeqCst),
        1,
        "a 304 must not read the image"
    );
    for headers in [&headers, &revalidated] {
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("content-security-policy", "default-src 'none'; sandbox"),
            ("cross-origin-resource-policy", "cross-origin"),
        ] {
            assert_eq!(
                headers.get(name).map(String::as_str),
                Some(value),
                "{name} on {path}"
            );
        }
    }

    let never_stored = format!("\"{}\"", "0".repeat(64));
    let (status, _, _) = app.get_bytes(
        &format!("/avatars/{}.png", "0".repeat(64)),
        &[("If-None-Match", &never_stored)],
    );
    assert_eq!(
        status, 404,
        "a 304 must not vouch for an image never stored"
    );
    let wrong_type = path.replace(".png", ".gif");
    let (status, _, _) = app.get_bytes(&wrong_type, &[("If-None-Match", &headers["etag"])]);
    assert_eq!(status, 404, "the extension must match the stored type");
}

fn phone_of_a_deleted_user_is_401_and_wechat_is_not_asked(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let token = app.login(&mock.new_code("gus"));
    db.execute_raw("DELETE FROM wxuser");

    let answer = app.post_json_with_token(
        "/api/phone",
        &json!({"code": mock.new_phone_code("gus", "13800138000")}),
        &token,
    );

    assert_eq!(answer.status, 401, "{}: {}", db.backend, answer.text);
    assert_eq!(
        answer.body["message"],
        app.get("/api/me", Some(&token)).body["message"],
        "the same answer as GET /api/me for a deleted user"
    );
    assert_eq!(mock.phone_calls(), 0, "WeChat was asked for a number");
    assert_eq!(mock.tokens_minted(), 0, "an access_token was fetched");
}

fn avatar_upload_of_a_deleted_user_is_401_and_stores_nothing(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let token = app.login(&mock.new_code("hal"));
    db.execute_raw("DELETE FROM wxuser");

    let answer = upload(&app, Some(&token), "file", PNG);

    assert_eq!(answer.status, 401, "{}: {}", db.backend, answer.text);
    let hash = wxlogin::avatar::validate(PNG.to_vec()).unwrap().hash;
    assert_eq!(
        app.store.find_avatar_type(&hash).unwrap(),
        None,
        "the image was stored for a user who no longer exists"
    );
}

fn login_profiles_are_held_to_the_nickname_and_avatar_rules(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let good = "https://thirdwx.qlogo.cn/mmopen/a/132";
    let cases: &[(serde_json::Value, Option<&str>, &str)] = &[
        (
            json!({"nickName": "  Ann  ", "avatarUrl": good}),
            None,
            "a valid profile is applied, trimmed",
        ),
        (
            json!({"nickName": "evil\u{202E}gnp.exe", "avatarUrl": good}),
            Some("nickName must not contain bidirectional-override characters"),
            "a bidi override",
        ),
        (
            json!({"nickName": "bell\u{0007}", "avatarUrl": good}),
            Some("nickName must not contain control characters"),
            "a control character",
        ),
        (
            json!({"nickName": "x".repeat(65)}),
            Some("nickName is longer than 64 characters"),
            "too long for PUT /api/me",
        ),
        (
            json!({"nickName": "Ann", "avatarUrl": "http://thirdwx.qlogo.cn/a/132"}),
            Some("avatarUrl must be an https:// URL"),
            "a plain-http avatar",
        ),
        (
            json!({"nickName": "Ann", "avatarUrl": "javascript:alert(1)"}),
            Some("avatarUrl must be an https:// URL"),
            "a script URL",
        ),
    ];
    for (n, (user_info, rejection, why)) in cases.iter().enumerate() {
        let user = format!("user{n}");
        let answer = app.post_form(
            "/api/wxuser",
            &[
                ("code", &mock.new_code(&user)),
                ("userInfo", &user_info.to_string()),
            ],
        );
        assert_eq!(answer.status, 200, "{why}: {}", answer.text);
        let token = answer.body["token"].as_str().unwrap();
        let me = app.get("/api/me", Some(token)).body;
        match rejection {
            None => {
                assert_eq!(answer.body["profile"]["status"], "unverified", "{why}");
                assert_eq!(me["user"]["nickName"], "Ann", "{why}");
                assert_eq!(me["user"]["avatarUrl"], good, "{why}");
            }
            Some(reason) => {
                assert_eq!(
                    answer.body["profile"],
                    json!({"status": "rejected", "reason": reason}),
                    "{why}"
                );
                assert_eq!(
                    me["user"]["nickName"],
                    serde_json::Value::Null,
                    "{why}: stored"
                );
                assert_eq!(
                    me["user"]["avatarUrl"],
                    serde_json::Value::Null,
                    "{why}: stored"
                );
            }
        }
    }
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn companions(db: &std::path::Path) -> [std::path::PathBuf; 3] {
    ["", "-wal", "-shm"].map(|suffix| {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        path.into()
    })
}

#[test]
fn sqlite_files_are_created_readable_by_the_service_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wx.db");
    let store = wxlogin::store::SqliteStore::open(&path, Default::default()).unwrap();
    // A write makes SQLite create the -wal and -shm files.
    store
        .upsert_login(&LoginRecord {
            openid: "o-mode",
            uid: &wxlogin::secret::random_hex(16),
            unionid: None,
            profile: None,
            session_key: &Secret::new("a2V5"),
        })
        .unwrap();

    for file in companions(&path) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn sqlite_files_left_readable_by_others_are_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wx.db");
    drop(wxlogin::store::SqliteStore::open(&path, Default::default()).unwrap());
    // What an older release could leave: the database and empty -wal and -shm files (SQLite
    // treats both as absent and rebuilds them), all readable by everyone.
    for file in companions(&path) {
        if !file.exists() {
            std::fs::write(&file, b"").unwrap();
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let _open = wxlogin::store::SqliteStore::open(&path, Default::default()).unwrap();

    for file in companions(&path) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

on_both_backends!(
    avatar_is_served_with_security_headers_and_revalidated_without_reading_it,
    phone_of_a_deleted_user_is_401_and_wechat_is_not_asked,
    avatar_upload_of_a_deleted_user_is_401_and_stores_nothing,
    login_profiles_are_held_to_the_nickname_and_avatar_rules,
);

#[test]
fn require_ssl_against_a_server_without_tls_fails_with_a_clear_error() {
    let Some(db) = TestDb::mysql() else { return };
    let url = format!("{}?require_ssl=true", db.url_text());

    let result = std::panic::catch_unwind(|| {
        wxlogin::store::open(
            &wxlogin::store::DatabaseUrl::parse(&url).unwrap(),
            Default::default(),
        )
        .map(|_| ())
    });

    let error = result
        .expect("a TLS option must not panic at connect")
        .expect_err("a server without TLS must be refused");
    assert!(
        matches!(error, StoreError::Unavailable(_)) && error.to_string().contains("TLS"),
        "the error should say TLS is missing: {error}"
    );
}
