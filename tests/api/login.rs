//! `POST /api/wxuser` against a wiremock WeChat: the happy path, every upstream failure row of
//! the error table, and what the token carries.

use crate::helpers::{closed_port_url, jwt_payload, spawn_app, FakeWechat, TestDb};
use serde_json::json;
use std::time::Duration;
use wiremock::ResponseTemplate;

fn session_answer(openid: &str, session_key: &str) -> ResponseTemplate {
    // WeChat sends JSON as text/plain.
    ResponseTemplate::new(200)
        .insert_header("Content-Type", "text/plain")
        .set_body_string(json!({"openid": openid, "session_key": session_key}).to_string())
}

#[test]
fn login_returns_200_with_a_bearer_token_and_writes_the_row() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session_answer("o-happy", "c2Vzc2lvbmtleQ=="));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let answer = app.post_form(
        "/api/wxuser",
        &[
            ("code", "081abcDEF"),
            (
                "userInfo",
                r#"{"nickName":"小明","avatarUrl":"https://x/a.png","gender":1}"#,
            ),
        ],
    );

    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], 200);
    assert_eq!(answer.body["profile"], json!({"status": "unverified"}));
    assert!(answer.body["messages"].is_string());
    let token = answer.body["token"].as_str().unwrap();
    assert!(token.starts_with("Bearer "), "{token}");
    assert_eq!(jwt_payload(token)["openid"], "o-happy");

    let user = app
        .store
        .find_user("o-happy")
        .unwrap()
        .expect("row written");
    assert_eq!(user.profile.nick_name.as_deref(), Some("小明"));
    assert_eq!(user.profile.gender, Some(1));

    let queries = wechat.received_queries();
    assert_eq!(queries.len(), 1);
    let q = &queries[0];
    assert_eq!(q["appid"], app.secrets.appid);
    assert_eq!(q["secret"], app.secrets.wechat_secret);
    assert_eq!(q["js_code"], "081abcDEF");
    assert_eq!(q["grant_type"], "authorization_code");
}

#[test]
fn login_accepts_a_json_body() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session_answer("o-json", "a2V5"));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let answer = app.post_json(
        "/api/wxuser",
        &json!({"code": "c-json", "userInfo": {"nickName": "J"}}),
    );

    assert_eq!(answer.status, 200, "{}", answer.text);
    let user = app.store.find_user("o-json").unwrap().unwrap();
    assert_eq!(user.profile.nick_name.as_deref(), Some("J"));
}

#[test]
fn token_carries_openid_unionid_iat_exp_and_never_the_session_key() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(ResponseTemplate::new(200).set_body_json(json!({
        "openid": "o-claims", "session_key": "U0VTU0lPTi1LRVktMTIzNA==", "unionid": "u-claims"
    })));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let answer = app.post_form("/api/wxuser", &[("code", "c-claims")]);

    assert_eq!(answer.status, 200, "{}", answer.text);
    let payload = jwt_payload(answer.body["token"].as_str().unwrap());
    assert_eq!(payload["openid"], "o-claims");
    assert_eq!(payload["unionid"], "u-claims");
    assert!(
        payload["iat"].is_u64() && payload["exp"].is_u64(),
        "{payload}"
    );
    assert!(payload["exp"].as_u64() > payload["iat"].as_u64());
    let everything = format!("{payload}{}", answer.text);
    assert!(!everything.contains("U0VTU0lPTi1LRVktMTIzNA=="));
    assert!(!everything.contains("session_key"));
    assert_eq!(
        app.store
            .find_user("o-claims")
            .unwrap()
            .unwrap()
            .unionid
            .as_deref(),
        Some("u-claims")
    );
}

#[test]
fn login_maps_every_upstream_failure_to_its_status() {
    let errcode = |code: i64| {
        ResponseTemplate::new(200)
            .set_body_json(json!({"errcode": code, "errmsg": "from wechat", "rid": "r"}))
    };
    let cases: Vec<(&str, ResponseTemplate, u16, Option<i64>)> = vec![
        ("invalid code", errcode(40029), 401, Some(40029)),
        ("code been used", errcode(40163), 401, Some(40163)),
        ("rate limited", errcode(45011), 429, Some(45011)),
        ("high-risk user", errcode(40226), 403, Some(40226)),
        ("system busy", errcode(-1), 502, Some(-1)),
        ("invalid appid", errcode(40013), 502, Some(40013)),
        ("unknown errcode", errcode(99999), 502, Some(99999)),
        (
            "upstream 500",
            ResponseTemplate::new(500).set_body_string("oops"),
            502,
            None,
        ),
        (
            "non-JSON answer",
            ResponseTemplate::new(200).set_body_string("<html>busy</html>"),
            502,
            None,
        ),
        (
            "JSON without openid",
            ResponseTemplate::new(200).set_body_json(json!({"errcode": 0})),
            502,
            None,
        ),
        (
            "slower than WECHAT_TIMEOUT",
            ResponseTemplate::new(200)
                .set_body_json(json!({"openid": "o", "session_key": "k"}))
                .set_delay(Duration::from_secs(5)),
            504,
            None,
        ),
    ];
    let db = TestDb::sqlite();
    for (what, template, status, expected_errcode) in cases {
        let wechat = FakeWechat::start();
        wechat.answer_jscode2session(template);
        let app = spawn_app(&wechat.uri(), &db);

        let answer = app.post_form("/api/wxuser", &[("code", "c-fail")]);

        assert_eq!(answer.status, status, "{what}: {}", answer.text);
        assert_eq!(answer.body["status"], status, "{what}: status in body");
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: message in body: {}",
            answer.text
        );
        assert_eq!(
            answer.body.get("errcode").and_then(|e| e.as_i64()),
            expected_errcode,
            "{what}: errcode"
        );
        assert!(answer.body.get("token").is_none(), "{what}: no token");
        assert_eq!(db.count_users(), 0, "{what}: no row");
    }
}

#[test]
fn login_returns_502_when_wechat_refuses_connections() {
    let db = TestDb::sqlite();
    let app = spawn_app(&closed_port_url(), &db);

    let answer = app.post_form("/api/wxuser", &[("code", "c-refused")]);

    assert_eq!(answer.status, 502, "{}", answer.text);
    assert_eq!(db.count_users(), 0);
}

#[test]
fn login_returns_400_when_code_is_missing_or_user_info_is_malformed() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session_answer("o-x", "a2V5"));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "no code"),
        (&[("code", "")], "empty code"),
        (&[("code", "c"), ("userInfo", "null")], "userInfo null"),
        (
            &[("code", "c"), ("userInfo", "{broken")],
            "userInfo not JSON",
        ),
        (
            &[("code", "c"), ("userInfo", r#"{"gender":"x"}"#)],
            "bad gender",
        ),
    ];
    for (fields, what) in cases {
        let answer = app.post_form("/api/wxuser", fields);
        assert_eq!(answer.status, 400, "{what}: {}", answer.text);
        assert_eq!(answer.body["status"], 400, "{what}");
    }
    assert!(
        wechat.received_queries().is_empty(),
        "bad input never reaches WeChat"
    );
}

#[test]
fn login_without_user_info_keeps_the_stored_profile() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session_answer("o-keep", "a2V5"));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);

    let first = app.post_form(
        "/api/wxuser",
        &[
            ("code", "c1"),
            (
                "userInfo",
                r#"{"nickName":"Keep","avatarUrl":"https://a","gender":2}"#,
            ),
        ],
    );
    let second = app.post_form("/api/wxuser", &[("code", "c2")]);

    assert_eq!((first.status, second.status), (200, 200));
    let user = app.store.find_user("o-keep").unwrap().unwrap();
    assert_eq!(user.profile.nick_name.as_deref(), Some("Keep"));
    assert_eq!(user.profile.avatar_url.as_deref(), Some("https://a"));
    assert_eq!(user.profile.gender, Some(2));
    assert_eq!(db.count_users(), 1);
}

#[test]
fn login_succeeds_but_keeps_the_stored_profile_when_material_does_not_verify() {
    let wechat = FakeWechat::start();
    wechat.answer_jscode2session(session_answer("o-stale", "dGlpaHROY3pmNXY2QUtSeQ=="));
    let db = TestDb::sqlite();
    let app = spawn_app(&wechat.uri(), &db);
    let first = app.post_form(
        "/api/wxuser",
        &[("code", "c1"), ("userInfo", r#"{"nickName":"Stored"}"#)],
    );
    assert_eq!(first.status, 200, "{}", first.text);

    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("signature", "0000000000000000000000000000000000000000")],
            "signature mismatch",
        ),
        (
            &[
                ("encryptedData", "ZW5jcnlwdGVkZGF0YQ=="),
                ("iv", "r7BXXKkLb8qrSNn05n0qiA=="),
            ],
            "encryptedData does not decrypt: bad padding or wrong key",
        ),
        (
            &[
                ("encryptedData", "not base64!"),
                ("iv", "r7BXXKkLb8qrSNn05n0qiA=="),
            ],
            "encryptedData or iv is not valid base64",
        ),
        (
            &[("encryptedData", "ZW5jcnlwdGVk")],
            "encryptedData and iv must be sent together",
        ),
    ];
    for (n, (material, reason)) in cases.iter().enumerate() {
        let code = format!("c-material-{n}");
        let mut fields = vec![
            ("code", code.as_str()),
            ("userInfo", r#"{"nickName":"Mallory"}"#),
        ];
        fields.extend_from_slice(material);

        let answer = app.post_form("/api/wxuser", &fields);

        assert_eq!(answer.status, 200, "{reason}: {}", answer.text);
        assert_eq!(answer.body["profile"]["status"], "rejected", "{reason}");
        assert!(
            answer.body["profile"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with(reason)),
            "want {reason:?}, got {}",
            answer.body["profile"]
        );
        let user = app.store.find_user("o-stale").unwrap().unwrap();
        assert_eq!(
            user.profile.nick_name.as_deref(),
            Some("Stored"),
            "{reason}"
        );
    }
}
