//! Sessions end to end: the login answer, ES256 access tokens and the JWKS, refresh rotation and
//! reuse detection, logout and revocation, `/auth/verify`, and two nodes sharing one database.

use crate::helpers::{
    capture_logs, jwt_header, jwt_payload, race, start_mock_wechat, Answer, AppBuilder, Secrets,
    TestApp, TestDb,
};
use crate::on_both_backends;
use jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256PublicKey, HS256Key, MACLike};
use jwt_simple::claims::{Claims, NoCustomClaims};
use mock_wechat::MockWechat;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The mock's credentials with this JWT key, so several nodes can share it.
fn secrets_with(jwt_secret: &str) -> Secrets {
    Secrets {
        appid: mock_wechat::DEFAULT_APPID.into(),
        wechat_secret: mock_wechat::DEFAULT_SECRET.into(),
        jwt_secret: jwt_secret.into(),
    }
}

/// A node against `mock` and `db` with `jwt_secret` and extra variables.
fn node(mock: &MockWechat, db: &TestDb, jwt_secret: &str, vars: &[(&str, &str)]) -> TestApp {
    capture_logs();
    vars.iter()
        .fold(
            AppBuilder::new(&mock.base_url(), db, secrets_with(jwt_secret)),
            |builder, (name, value)| builder.var(name, value),
        )
        .start()
}

fn unique_jwt_secret() -> String {
    format!("jwt-secret-{}", wxlogin::secret::random_hex(16))
}

/// Logs `user` in with a fresh code and a `User-Agent`; the whole answer.
fn login(app: &TestApp, mock: &MockWechat, user: &str) -> Answer {
    let body = format!("code={}", mock.new_code(user));
    let answer = app.send(
        "POST",
        "/api/wxuser",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", "MiniProgram/8.0 (test)"),
        ],
        None,
        body.as_bytes(),
    );
    assert_eq!(answer.status, 200, "login failed: {}", answer.text);
    answer
}

fn bearer(answer: &Answer) -> String {
    format!("Bearer {}", answer.body["access_token"].as_str().unwrap())
}

fn refresh(app: &TestApp, refresh_token: &str) -> Answer {
    app.post_json(
        "/api/token/refresh",
        &json!({ "refresh_token": refresh_token }),
    )
}

fn refresh_token(answer: &Answer) -> &str {
    answer.body["refresh_token"].as_str().unwrap()
}

/// Asks until `done` holds or `limit` passes; whether it held.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn login_answer_keeps_the_old_fields_and_adds_the_token_pair(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);

    let answer = login(&app, &mock, "ann");

    let body = &answer.body;
    assert_eq!(body["status"], 200, "{}", db.backend);
    assert_eq!(body["messages"], "login succeeded");
    assert_eq!(body["profile"]["status"], "absent");
    assert_eq!(body["token"].as_str().unwrap(), bearer(&answer));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 7200, "JWT_TTL defaults to 2h");
    assert_eq!(body["refresh_expires_in"], 30 * 86_400, "30d by default");
    let refresh = refresh_token(&answer);
    assert!(
        refresh.starts_with("rt_") && refresh.len() >= 3 + 22,
        "at least 128 random bits: {refresh}"
    );
    assert_eq!(answer.headers["cache-control"], "no-store");
}

fn access_token_names_the_uid_the_session_the_audience_and_the_issuer(db: &TestDb) {
    let mock = start_mock_wechat(true);
    let app = node(
        &mock,
        db,
        &unique_jwt_secret(),
        &[("WXLOGIN_PUBLIC_URL", "https://login.example.com")],
    );

    let answer = login(&app, &mock, "ben");

    let token = bearer(&answer);
    let header = jwt_header(&token);
    let claims = jwt_payload(&token);
    let jwks = app.get("/.well-known/jwks.json", None);
    assert_eq!(header["alg"], "ES256", "{}", db.backend);
    assert_eq!(header["kid"], jwks.body["keys"][0]["kid"]);
    assert_eq!(claims["sub"], db.uid_of(&mock.openid_for("ben")).as_str());
    assert_eq!(claims["aud"], mock_wechat::DEFAULT_APPID);
    assert_eq!(
        claims["iss"], "https://login.example.com",
        "the public URL by default"
    );
    assert_eq!(claims["openid"], mock.openid_for("ben").as_str());
    assert!(claims["unionid"].is_string(), "known, so present");
    let sid = claims["sid"].as_str().unwrap();
    let sessions = app.get("/api/me/sessions", Some(&token));
    assert_eq!(sessions.body["sessions"][0]["id"], sid);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        7200
    );
}

fn jwks_alone_verifies_the_access_token(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);
    let answer = login(&app, &mock, "cat");

    let jwks = app.get("/.well-known/jwks.json", None);

    assert_eq!(jwks.status, 200, "{}", db.backend);
    assert_eq!(jwks.headers["cache-control"], "public, max-age=300");
    let key = &jwks.body["keys"][0];
    let members: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        vec!["alg", "crv", "kid", "kty", "use", "x", "y"],
        "public members only"
    );
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    let public = ES256PublicKey::from_jwk(&key.to_string()).expect("a P-256 public JWK");
    let claims = public
        .verify_token::<NoCustomClaims>(answer.body["access_token"].as_str().unwrap(), None)
        .expect("the published key verifies the token");
    assert_eq!(claims.subject.unwrap(), db.uid_of(&mock.openid_for("cat")));
}

fn an_hs256_token_of_the_previous_release_is_refused(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let secret = unique_jwt_secret();
    let app = node(&mock, db, &secret, &[]);
    login(&app, &mock, "dan");
    let old = HS256Key::from_bytes(secret.as_bytes())
        .authenticate(Claims::with_custom_claims(
            json!({ "openid": mock.openid_for("dan") }),
            jwt_simple::prelude::Duration::from_hours(8640),
        ))
        .unwrap();

    let answer = app.get("/api/me", Some(&format!("Bearer {old}")));

    assert_eq!(answer.status, 401, "{}: {}", db.backend, answer.text);
    assert_eq!(
        answer.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
}

fn a_previous_key_still_verifies_is_published_and_never_signs(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let old_secret = unique_jwt_secret();
    let before = node(&mock, db, &old_secret, &[]);
    let old_login = login(&before, &mock, "eve");
    let old_kid = jwt_header(&bearer(&old_login))["kid"].clone();
    drop(before);

    let after = node(
        &mock,
        db,
        &unique_jwt_secret(),
        &[("WXLOGIN_PREVIOUS_SIGNING_KEYS", &old_secret)],
    );

    let me = after.get("/api/me", Some(&bearer(&old_login)));
    assert_eq!(me.status, 200, "{}: {}", db.backend, me.text);
    let kids: Vec<Value> = after.get("/.well-known/jwks.json", None).body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        kids[1], old_kid,
        "the previous key is published after the current one"
    );
    let new_login = login(&after, &mock, "eve");
    assert_eq!(jwt_header(&bearer(&new_login))["kid"], kids[0]);
    let refreshed = refresh(&after, refresh_token(&old_login));
    assert_eq!(
        jwt_header(&bearer(&refreshed))["kid"],
        kids[0],
        "a refresh signs with the current key"
    );
}

fn refresh_rotates_and_a_repeat_within_the_grace_gets_the_same_pair(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);
    let login = login(&app, &mock, "fay");
    let first = refresh_token(&login);

    let rotated = refresh(&app, first);
    let repeated = refresh(&app, first);

    assert_eq!(rotated.status, 200, "{}: {}", db.backend, rotated.text);
    assert_ne!(refresh_token(&rotated), first, "rotated");
    assert_ne!(rotated.body["access_token"], login.body["access_token"]);
    assert_eq!(rotated.body["token"].as_str().unwrap(), bearer(&rotated));
    assert_eq!(rotated.body["token_type"], "Bearer");
    assert_eq!(rotated.body["expires_in"], 7200);
    assert_eq!(repeated.status, 200, "{}", repeated.text);
    assert_eq!(
        (
            &repeated.body["access_token"],
            &repeated.body["refresh_token"]
        ),
        (
            &rotated.body["access_token"],
            &rotated.body["refresh_token"]
        ),
        "a repeat within the grace gets the pair the rotation produced"
    );
    assert_eq!(app.get("/api/me", Some(&bearer(&rotated))).status, 200);
    let next = refresh(&app, refresh_token(&rotated));
    assert_eq!(next.status, 200, "the successor rotates in turn");
    assert_eq!(mock.jscode2session_calls(), 1, "refresh never calls WeChat");
}

fn concurrent_refreshes_with_one_token_all_get_200_and_the_same_pair(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);
    let login = login(&app, &mock, "gus");
    let token = refresh_token(&login).to_string();

    let answers = race(32, |_| refresh(&app, &token));

    let pairs: std::collections::HashSet<(String, String)> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{}: {}", db.backend, a.text);
            (
                a.body["access_token"].as_str().unwrap().to_string(),
                refresh_token(a).to_string(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 1, "{}: every refresh agrees", db.backend);
    let (access, _) = pairs.into_iter().next().unwrap();
    assert_eq!(
        app.get("/api/me", Some(&format!("Bearer {access}"))).status,
        200
    );
}

fn refresh_returns_401_when_the_token_was_reused_after_the_grace(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(
        &mock,
        db,
        &unique_jwt_secret(),
        &[("WXLOGIN_REFRESH_REUSE_GRACE", "1s")],
    );
    let login = login(&app, &mock, "hal");
    let stolen = refresh_token(&login).to_string();
    let rotated = refresh(&app, &stolen);
    assert_eq!(rotated.status, 200, "{}", rotated.text);

    // Within the grace a repeat still gets the same pair; the grace ends two seconds later.
    let mut last = refresh(&app, &stolen);
    let reused = eventually(Duration::from_secs(5), || {
        last = refresh(&app, &stolen);
        last.status != 200
    });

    assert!(reused, "{}: still accepted: {}", db.backend, last.text);
    assert_eq!(last.status, 401, "{}", last.text);
    assert_eq!(last.body["error"], "refresh_token_reused");
    assert_eq!(
        app.get("/api/me", Some(&bearer(&rotated))).status,
        401,
        "the session's access token is refused too"
    );
    let successor = refresh(&app, refresh_token(&rotated));
    assert_eq!(
        successor.status, 401,
        "the session's refresh token is refused"
    );
    assert_eq!(successor.body["error"], "invalid_grant");
}

fn refresh_returns_401_for_unknown_expired_or_revoked_tokens(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);
    let expired = login(&app, &mock, "ida");
    let expired_sid = jwt_payload(&bearer(&expired))["sid"].clone();
    db.execute_raw(&format!(
        "UPDATE wx_session SET expires_at = 1 WHERE id = {expired_sid}"
    ));
    let revoked = login(&app, &mock, "ida");
    assert_eq!(
        app.send("POST", "/api/logout", &[], Some(&bearer(&revoked)), b"")
            .status,
        200
    );

    let cases = [
        (
            "rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
            "unknown",
        ),
        ("not-a-refresh-token".to_string(), "malformed"),
        (bearer(&revoked).replace("Bearer ", ""), "an access token"),
        (refresh_token(&expired).to_string(), "expired"),
        (refresh_token(&revoked).to_string(), "revoked by a logout"),
    ];
    for (token, what) in cases {
        let answer = refresh(&app, &token);
        assert_eq!(
            answer.status, 401,
            "{}: {what}: {}",
            db.backend, answer.text
        );
        assert_eq!(answer.body["error"], "invalid_grant", "{what}");
    }
    let form = app.post_form(
        "/api/token/refresh",
        &[("refresh_token", refresh_token(&revoked))],
    );
    assert_eq!(form.status, 401, "a form body is read too: {}", form.text);
    let missing = app.post_json("/api/token/refresh", &json!({}));
    assert_eq!(missing.status, 400, "{}", missing.text);
}

fn logout_ends_one_session_and_logout_all_ends_every_one(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);
    let first = login(&app, &mock, "jon");
    let second = login(&app, &mock, "jon");
    let third = login(&app, &mock, "jon");

    let out = app.send("POST", "/api/logout", &[], Some(&bearer(&first)), b"");

    assert_eq!(out.status, 200, "{}: {}", db.backend, out.text);
    assert_eq!(app.get("/api/me", Some(&bearer(&first))).status, 401);
    assert_eq!(app.get("/api/me", Some(&bearer(&second))).status, 200);
    let all = app.send("POST", "/api/logout/all", &[], Some(&bearer(&second)), b"");
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["revoked"], 2, "the second and third sessions");
    for (answer, what) in [(&second, "the caller's"), (&third, "another session's")] {
        let me = app.get("/api/me", Some(&bearer(answer)));
        assert_eq!(me.status, 401, "{what} access token");
        assert_eq!(
            refresh(&app, refresh_token(answer)).status,
            401,
            "{what} refresh token"
        );
    }
}

fn sessions_list_marks_the_caller_and_only_the_owner_may_revoke_one(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);
    let phone = login(&app, &mock, "kim");
    let laptop = login(&app, &mock, "kim");
    let mallory = login(&app, &mock, "mal");

    let list = app.get("/api/me/sessions", Some(&bearer(&phone)));

    assert_eq!(list.status, 200, "{}: {}", db.backend, list.text);
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{}", list.text);
    let phone_sid = jwt_payload(&bearer(&phone))["sid"].clone();
    let laptop_sid = jwt_payload(&bearer(&laptop))["sid"].clone();
    for session in sessions {
        assert_eq!(session["current"], session["id"] == phone_sid, "{session}");
        assert_eq!(session["user_agent"], "MiniProgram/8.0 (test)");
        assert!(session["ip"].as_str().unwrap().starts_with("127.0.0.1"));
        for time in ["created_at", "last_used_at", "expires_at"] {
            let text = session[time].as_str().unwrap();
            assert!(
                text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
                "{time} is RFC 3339: {text}"
            );
        }
    }
    let laptop_path = format!("/api/me/sessions/{}", laptop_sid.as_str().unwrap());
    let stranger = app.send("DELETE", &laptop_path, &[], Some(&bearer(&mallory)), b"");
    assert_eq!(
        stranger.status, 404,
        "another user's session: {}",
        stranger.text
    );
    assert_eq!(app.get("/api/me", Some(&bearer(&laptop))).status, 200);
    let own = app.send("DELETE", &laptop_path, &[], Some(&bearer(&phone)), b"");
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(app.get("/api/me", Some(&bearer(&laptop))).status, 401);
    let after = app.get("/api/me/sessions", Some(&bearer(&phone)));
    assert_eq!(after.body["sessions"].as_array().unwrap().len(), 1);
    let unknown = app.send(
        "DELETE",
        "/api/me/sessions/0123456789abcdef0123456789abcdef",
        &[],
        Some(&bearer(&phone)),
        b"",
    );
    assert_eq!(unknown.status, 404);
}

fn auth_verify_answers_204_with_the_identity_or_401_with_the_challenge(db: &TestDb) {
    let mock = start_mock_wechat(true);
    let app = node(&mock, db, &unique_jwt_secret(), &[]);
    let answer = login(&app, &mock, "liz");
    let claims = jwt_payload(&bearer(&answer));

    let ok = app.get("/auth/verify", Some(&bearer(&answer)));

    assert_eq!(ok.status, 204, "{}: {}", db.backend, ok.text);
    assert_eq!(ok.headers["x-wx-user-id"], claims["sub"].as_str().unwrap());
    assert_eq!(ok.headers["x-wx-openid"], mock.openid_for("liz").as_str());
    assert_eq!(
        ok.headers["x-wx-unionid"],
        claims["unionid"].as_str().unwrap()
    );
    assert_eq!(
        ok.headers["x-wx-session-id"],
        claims["sid"].as_str().unwrap()
    );
    for (authorization, what) in [(None, "no token"), (Some("Bearer not.a.token"), "garbage")] {
        let refused = app.get("/auth/verify", authorization);
        assert_eq!(refused.status, 401, "{what}");
        assert_eq!(
            refused.headers["www-authenticate"], "Bearer error=\"invalid_token\"",
            "{what}"
        );
        assert!(!refused.headers.contains_key("x-wx-user-id"), "{what}");
    }
    app.send("POST", "/api/logout", &[], Some(&bearer(&answer)), b"");
    assert_eq!(
        app.get("/auth/verify", Some(&bearer(&answer))).status,
        401,
        "refused at once on the node that logged out"
    );
}

fn two_nodes_share_tokens_and_a_logout_on_one_reaches_the_other_within_the_delay(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let secret = unique_jwt_secret();
    let delay = [("WXLOGIN_REVOCATION_DELAY", "1s")];
    let a = node(&mock, db, &secret, &delay);
    let b = node(&mock, db, &secret, &delay);
    let answer = login(&a, &mock, "max");
    let token = bearer(&answer);
    assert_eq!(b.get("/api/me", Some(&token)).status, 200, "{}", db.backend);
    assert_eq!(b.get("/auth/verify", Some(&token)).status, 204);

    let out = a.send("POST", "/api/logout", &[], Some(&token), b"");
    assert_eq!(out.status, 200);

    assert_eq!(a.get("/api/me", Some(&token)).status, 401, "at once on A");
    assert_eq!(
        refresh(&b, refresh_token(&answer)).status,
        401,
        "the refresh token is refused at once everywhere"
    );
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || b
            .get("/auth/verify", Some(&token))
            .status
            == 401),
        "{}: B never saw the logout",
        db.backend
    );
    assert!(
        started.elapsed() < Duration::from_millis(1000 + 500),
        "B saw it within the 1s delay (plus a request's time): {:?}",
        started.elapsed()
    );
}

fn with_no_revocation_delay_the_other_node_refuses_at_once(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let secret = unique_jwt_secret();
    let no_delay = [("WXLOGIN_REVOCATION_DELAY", "0")];
    let a = node(&mock, db, &secret, &no_delay);
    let b = node(&mock, db, &secret, &no_delay);
    let answer = login(&a, &mock, "ned");
    let token = bearer(&answer);
    assert_eq!(b.get("/api/me", Some(&token)).status, 200, "{}", db.backend);

    a.send("POST", "/api/logout", &[], Some(&token), b"");

    assert_eq!(b.get("/api/me", Some(&token)).status, 401, "{}", db.backend);
    assert_eq!(b.get("/auth/verify", Some(&token)).status, 401);
}

on_both_backends!(
    login_answer_keeps_the_old_fields_and_adds_the_token_pair,
    access_token_names_the_uid_the_session_the_audience_and_the_issuer,
    jwks_alone_verifies_the_access_token,
    an_hs256_token_of_the_previous_release_is_refused,
    a_previous_key_still_verifies_is_published_and_never_signs,
    refresh_rotates_and_a_repeat_within_the_grace_gets_the_same_pair,
    concurrent_refreshes_with_one_token_all_get_200_and_the_same_pair,
    refresh_returns_401_when_the_token_was_reused_after_the_grace,
    refresh_returns_401_for_unknown_expired_or_revoked_tokens,
    logout_ends_one_session_and_logout_all_ends_every_one,
    sessions_list_marks_the_caller_and_only_the_owner_may_revoke_one,
    auth_verify_answers_204_with_the_identity_or_401_with_the_challenge,
    two_nodes_share_tokens_and_a_logout_on_one_reaches_the_other_within_the_delay,
    with_no_revocation_delay_the_other_node_refuses_at_once,
);
