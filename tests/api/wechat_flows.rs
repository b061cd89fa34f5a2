//! The flows beyond the plain login, end to end against the real `mock-wechat`: verified
//! profiles (signature and encryptedData, including data made with the previous session_key),
//! the phone number with the cached stable access_token, and one upstream call per login code.

use crate::helpers::{capture_logs, logged_lines, race, AppBuilder, Secrets, TestApp, TestDb};
use mock_wechat::{MockConfig, MockProfile, MockWechat};
use serde_json::json;
use std::time::Duration;

fn mock(unionid: bool, latency: Duration) -> MockWechat {
    MockWechat::start(MockConfig {
        bind: "127.0.0.1:0".into(),
        unionid,
        latency,
        ..MockConfig::default()
    })
    .expect("start mock-wechat")
}

fn app(mock: &MockWechat, db: &TestDb, replay_window: &str) -> TestApp {
    capture_logs();
    AppBuilder::new(&mock.base_url(), db, Secrets::for_mock_wechat())
        .var("WXLOGIN_CODE_REPLAY_WINDOW", replay_window)
        .start()
}

fn profile(nick: &str) -> MockProfile {
    MockProfile {
        nick_name: nick.into(),
        avatar_url: format!("https://thirdwx.qlogo.cn/{nick}/132"),
        gender: 1,
    }
}

/// Logs `user` in with the open data the WeChat client would hand over.
fn login_with_open_data(
    app: &TestApp,
    code: &str,
    data: &mock_wechat::OpenData,
) -> serde_json::Value {
    let answer = app.post_form(
        "/api/wxuser",
        &[
            ("code", code),
            ("userInfo", &data.raw_data),
            ("signature", &data.signature),
            ("encryptedData", &data.encrypted_data),
            ("iv", &data.iv),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body
}

#[test]
fn profile_is_verified_when_signature_and_encrypted_data_match_the_session_key() {
    let mock = mock(true, Duration::ZERO);
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    // The client logs in first (silently), then fetches the profile, which WeChat signs and
    // encrypts with that login's session_key, then logs in again with it.
    app.login(&mock.new_code("dora"));
    let data = mock.open_data("dora", &profile("Dora 🦋")).unwrap();
    // The second login's code is new, so WeChat rotates the key: the data is now made with
    // the previous key, which the server still has.
    let body = login_with_open_data(&app, &mock.new_code("dora"), &data);

    assert_eq!(body["profile"], json!({"status": "verified"}));
    let user = app
        .store
        .find_user(&mock.openid_for("dora"))
        .unwrap()
        .unwrap();
    assert_eq!(user.profile.nick_name.as_deref(), Some("Dora 🦋"));
    assert_eq!(
        user.unionid.as_deref(),
        Some(mock.unionid_for("dora").as_str())
    );
}

#[test]
fn profile_made_with_an_unknown_session_key_is_rejected_and_the_login_still_succeeds() {
    let mock = mock(false, Duration::ZERO);
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    app.post_form(
        "/api/wxuser",
        &[
            ("code", &mock.new_code("erin")),
            ("userInfo", r#"{"nickName":"Erin"}"#),
        ],
    );
    // Two logins the server never sees rotate the key twice; data made with the middle key is
    // stale beyond what the server can verify.
    for _ in 0..2 {
        mock_login_directly(&mock, "erin");
    }
    let stale = mock.stale_open_data("erin", &profile("Mallory")).unwrap();

    let body = login_with_open_data(&app, &mock.new_code("erin"), &stale);

    assert_eq!(body["profile"]["status"], "rejected", "{body}");
    assert!(body["profile"]["reason"]
        .as_str()
        .unwrap()
        .contains("session_key"));
    let user = app
        .store
        .find_user(&mock.openid_for("erin"))
        .unwrap()
        .unwrap();
    assert_eq!(
        user.profile.nick_name.as_deref(),
        Some("Erin"),
        "stored profile kept"
    );
    assert!(
        logged_lines()
            .iter()
            .any(|l| l.contains("profile rejected") && l.contains("signature mismatch")),
        "the rejection is logged"
    );
}

/// A jscode2session call made around the server, as another backend of the same app would.
fn mock_login_directly(mock: &MockWechat, user: &str) {
    let url = format!(
        "{}/sns/jscode2session?appid={}&secret={}&js_code={}&grant_type=authorization_code",
        mock.base_url(),
        mock_wechat::DEFAULT_APPID,
        mock_wechat::DEFAULT_SECRET,
        mock.new_code(user)
    );
    let text = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(text.contains("openid"), "{text}");
}

#[test]
fn phone_number_is_stored_and_shown_by_me() {
    let mock = mock(false, Duration::ZERO);
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    let token = app.login(&mock.new_code("fay"));

    let answer = app.post_json_with_token(
        "/api/phone",
        &json!({"code": mock.new_phone_code("fay", "13800138000")}),
        &token,
    );

    assert_eq!(answer.status, 200, "{}", answer.text);
    let phone = json!({"phoneNumber": "13800138000", "purePhoneNumber": "13800138000", "countryCode": "86"});
    assert_eq!(answer.body["phone"], phone);
    let me = app.get("/api/me", Some(&token));
    assert_eq!(me.body["user"]["phoneNumber"], "13800138000");
    assert_eq!(me.body["user"]["countryCode"], "86");
    assert_eq!(mock.tokens_minted(), 1);
}

#[test]
fn phone_errors_blame_the_code_not_the_token() {
    let mock = mock(false, Duration::ZERO);
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    let token = app.login(&mock.new_code("gus"));
    let used = mock.new_phone_code("gus", "13900139000");
    assert_eq!(
        app.post_json_with_token("/api/phone", &json!({"code": used}), &token)
            .status,
        200
    );

    let cases = [
        (
            mock.new_code("gus"),
            400,
            Some("not the one from wx.login()"),
        ),
        (used, 400, Some("already used")),
        ("fail.45011".to_string(), 429, None),
        ("fail.-1".to_string(), 502, None),
        ("http.500".to_string(), 502, None),
        ("garbage.1".to_string(), 502, None),
        ("slow.3000".to_string(), 504, None),
    ];
    for (code, status, hint) in cases {
        let answer = app.post_json_with_token("/api/phone", &json!({"code": code}), &token);
        assert_eq!(answer.status, status, "{code}: {}", answer.text);
        if let Some(hint) = hint {
            assert!(answer.text.contains(hint), "{code}: {}", answer.text);
        }
    }
    let no_token = app.post_json("/api/phone", &json!({"code": "x"}));
    assert_eq!(no_token.status, 401);
    let no_code = app.post_json_with_token("/api/phone", &json!({}), &token);
    assert_eq!(no_code.status, 400);
}

#[test]
fn thirty_two_threads_racing_an_expired_access_token_cause_exactly_one_refresh() {
    let mock = mock(false, Duration::from_millis(20));
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    let token = app.login(&mock.new_code("hal"));
    let first = mock.new_phone_code("hal", "13700137000");
    assert_eq!(
        app.post_json_with_token("/api/phone", &json!({"code": first}), &token)
            .status,
        200
    );
    assert_eq!(mock.tokens_minted(), 1);

    mock.expire_access_tokens();
    let codes: Vec<String> = (0..32)
        .map(|i| mock.new_phone_code("hal", &format!("1370013{i:04}")))
        .collect();
    let statuses = race(codes.len(), |i| {
        let body = json!({"code": codes[i]});
        app.post_json_with_token("/api/phone", &body, &token).status
    });

    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(
        mock.tokens_minted(),
        2,
        "one initial token and exactly one refresh"
    );
}

#[test]
fn two_servers_share_the_stable_token_without_invalidating_each_other() {
    let mock = mock(false, Duration::ZERO);
    let db = TestDb::sqlite();
    capture_logs();
    // Two nodes of one deployment: same database, same JWT key.
    let jwt_secret = format!("jwt-secret-{}", wxlogin::secret::random_hex(16));
    let node = || {
        let secrets = Secrets {
            jwt_secret: jwt_secret.clone(),
            ..Secrets::for_mock_wechat()
        };
        AppBuilder::new(&mock.base_url(), &db, secrets).start()
    };
    let (first, second) = (node(), node());
    let token = first.login(&mock.new_code("ida"));

    for (n, server) in [&first, &second, &first, &second].into_iter().enumerate() {
        let code = mock.new_phone_code("ida", &format!("1360013600{n}"));
        let answer = server.post_json_with_token("/api/phone", &json!({"code": code}), &token);
        assert_eq!(answer.status, 200, "call {n}: {}", answer.text);
    }
    assert_eq!(mock.stable_token_calls(), 2, "one fetch per process");
    assert_eq!(
        mock.tokens_minted(),
        1,
        "normal mode hands both the same token"
    );
}

/// Twenty requests with one code at once: one upstream call, twenty 200s, one openid. Those
/// that arrive while the first is at WeChat share its call; any that arrive after it (a loaded
/// machine can spread arrivals wider than the upstream latency) get its remembered outcome. The
/// coalescing alone is tested deterministically in `singleflight`'s unit tests.
#[test]
fn twenty_concurrent_logins_with_one_code_make_one_upstream_call() {
    let mock = mock(false, Duration::from_millis(300));
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    let code = mock.new_code("jo");

    let answers = race(20, |_| {
        let answer = app.post_form("/api/wxuser", &[("code", &code)]);
        let openid = answer.body["token"]
            .as_str()
            .map(|t| crate::helpers::jwt_payload(t)["openid"].to_string())
            .unwrap_or_default();
        (answer.status, openid)
    });

    assert_eq!(mock.jscode2session_calls(), 1, "{answers:?}");
    let expected = format!("\"{}\"", mock.openid_for("jo"));
    assert!(
        answers.iter().all(|(s, o)| *s == 200 && *o == expected),
        "{answers:?}"
    );
}

#[test]
fn a_retried_code_within_the_replay_window_logs_the_same_user_in_again() {
    let mock = mock(false, Duration::ZERO);
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    let code = mock.new_code("kim");

    let first = app.post_form("/api/wxuser", &[("code", &code)]);
    let retry = app.post_form(
        "/api/wxuser",
        &[("code", &code), ("userInfo", r#"{"nickName":"Kim"}"#)],
    );

    assert_eq!((first.status, retry.status), (200, 200), "{}", retry.text);
    assert_eq!(first.body["profile"]["status"], "absent");
    assert_eq!(
        retry.body["profile"]["status"], "unverified",
        "the retry's own profile"
    );
    let user = app
        .store
        .find_user(&mock.openid_for("kim"))
        .unwrap()
        .unwrap();
    assert_eq!(user.profile.nick_name.as_deref(), Some("Kim"));
    let openid = |a: &crate::helpers::Answer| {
        crate::helpers::jwt_payload(a.body["token"].as_str().unwrap())["openid"].clone()
    };
    assert_eq!(openid(&first), openid(&retry));
    assert_eq!(mock.jscode2session_calls(), 1);
    assert!(
        !logged_lines().iter().any(|l| l.contains(&code)),
        "the code itself never reaches the log"
    );
}

#[test]
fn access_token_is_refreshed_by_one_thread_ahead_of_expiry() {
    // A 2 s token is refreshed half-way (the five-minute margin is capped at half the life).
    let mock = MockWechat::start(MockConfig {
        bind: "127.0.0.1:0".into(),
        token_ttl: Duration::from_secs(2),
        ..MockConfig::default()
    })
    .unwrap();
    let db = TestDb::sqlite();
    let app = app(&mock, &db, "60");
    let token = app.login(&mock.new_code("lee"));
    let phone = |n: usize| {
        let code = mock.new_phone_code("lee", &format!("1350013500{n}"));
        app.post_json_with_token("/api/phone", &json!({"code": code}), &token)
            .status
    };
    assert_eq!(phone(0), 200);
    assert_eq!(phone(1), 200);
    assert_eq!(mock.stable_token_calls(), 1, "cached while fresh");

    // Let the token pass its refresh point; it stays valid for about another second.
    std::thread::sleep(Duration::from_millis(1100));
    let statuses = race(8, |i| phone(2 + i));

    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(mock.stable_token_calls(), 2, "exactly one refresh");
}
