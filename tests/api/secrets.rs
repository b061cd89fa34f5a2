//! Secrets stay secret: the AppSecret, the JWT key, the signing key derived from it and every
//! session_key must never appear in a response body, a header, a token, or a log line, whatever
//! the outcome of the request; refresh tokens appear only in the answer that hands them out.

use crate::helpers::{logged_lines, spawn_app, FakeWechat, TestDb};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use wiremock::ResponseTemplate;
use wxlogin::keys::KeyMaterial;
use wxlogin::secret::{random_hex, Secret};

#[test]
fn no_secret_appears_in_any_response_or_log_line() {
    let session_key = format!("U0VTU0lPTktFWS{}", random_hex(6));
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(ResponseTemplate::new(200).set_body_json(json!({
        "openid": "o-secret", "session_key": session_key, "unionid": "u-secret"
    })));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    let failing = FakeWechat::start();
    failing.answer_jscode2session(
        ResponseTemplate::new(200)
            .set_body_json(json!({"errcode": 40029, "errmsg": "invalid code"})),
    );
    let failing_app = spawn_app(&failing.uri(), &db);
    let unreachable_app = spawn_app("http://127.0.0.1:9", &db);

    let mut seen = Vec::new();
    let login = app.post_form(
        "/api/wxuser",
        &[("code", "c"), ("userInfo", r#"{"nickName":"S"}"#)],
    );
    assert_eq!(login.status, 200);
    let token = login.body["token"].as_str().unwrap().to_string();
    seen.push(format!("{:?}{}", login.headers, login.text));
    seen.push(app.get("/api/me", Some(&token)).text);
    seen.push(crate::helpers::jwt_payload(&token).to_string());
    seen.push(app.get("/.well-known/jwks.json", None).text);
    seen.push(app.get("/api/me/sessions", Some(&token)).text);
    let first_refresh = login.body["refresh_token"].as_str().unwrap().to_string();
    let refreshed = app.post_json(
        "/api/token/refresh",
        &json!({"refresh_token": first_refresh}),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let second_refresh = refreshed.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown_refresh = format!("rt_{}", random_hex(16));
    for answer in [
        app.post_json(
            "/api/token/refresh",
            &json!({"refresh_token": first_refresh}),
        ),
        app.post_json(
            "/api/token/refresh",
            &json!({"refresh_token": unknown_refresh}),
        ),
    ] {
        seen.push(format!("{:?}{}", answer.headers, answer.text));
    }
    for answer in [
        failing_app.post_form("/api/wxuser", &[("code", "c")]),
        unreachable_app.post_form("/api/wxuser", &[("code", "c")]),
        app.post_form("/api/wxuser", &[("code", "c"), ("userInfo", "{bad")]),
        app.get("/api/me", Some("Bearer forged.token.here")),
    ] {
        assert_ne!(answer.status, 200);
        seen.push(format!("{:?}{}", answer.headers, answer.text));
    }
    seen.extend(logged_lines());

    let mut secrets = vec![session_key.clone()];
    for a in [&app, &failing_app, &unreachable_app] {
        secrets.push(a.secrets.wechat_secret.clone());
        secrets.push(a.secrets.jwt_secret.clone());
    }
    assert!(
        logged_lines().iter().any(|l| l.contains("/api/wxuser")),
        "logs were captured"
    );
    for a in [&app, &failing_app, &unreachable_app] {
        let key = KeyMaterial::Derived(Secret::new(a.secrets.jwt_secret.clone()))
            .key_pair()
            .unwrap();
        secrets.push(URL_SAFE_NO_PAD.encode(key.to_bytes()));
        secrets.push(hex(&key.to_bytes()));
    }
    for text in &seen {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "secret leaked in: {text}");
        }
    }
    for line in logged_lines() {
        for token in [&first_refresh, &second_refresh, &unknown_refresh] {
            assert!(
                !line.contains(token.as_str()),
                "refresh token logged: {line}"
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
