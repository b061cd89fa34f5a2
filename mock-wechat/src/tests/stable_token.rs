//! `/cgi-bin/stable_token` in normal mode, force_refresh, expiring tokens and the counters.

use super::*;

pub(super) fn token_body(force_refresh: bool) -> String {
    serde_json::json!({
        "grant_type": "client_credential",
        "appid": DEFAULT_APPID,
        "secret": DEFAULT_SECRET,
        "force_refresh": force_refresh,
    })
    .to_string()
}

pub(super) fn stable_token(mock: &MockWechat, force_refresh: bool) -> (String, u64) {
    let answer = post(mock, "/cgi-bin/stable_token", &token_body(force_refresh));
    assert_eq!(answer.status, 200);
    let json = answer.json();
    let token = json["access_token"]
        .as_str()
        .expect(&answer.body)
        .to_owned();
    (token, json["expires_in"].as_u64().unwrap())
}

fn with_ttl(ttl: Duration) -> MockWechat {
    start(MockConfig {
        token_ttl: ttl,
        ..MockConfig::default()
    })
}

#[test]
fn stable_token_returns_the_same_token_until_it_expires() {
    let mock = with_ttl(Duration::from_secs(1));
    let (first, expires_in) = stable_token(&mock, false);
    assert_eq!(expires_in, 1);
    assert_eq!(stable_token(&mock, false).0, first);
    thread::sleep(Duration::from_millis(1100));
    let (second, expires_in) = stable_token(&mock, false);
    assert_ne!(second, first);
    assert_eq!(expires_in, 1);
    assert_eq!(mock.stable_token_calls(), 3);
    assert_eq!(mock.tokens_minted(), 2);
}

#[test]
fn stable_token_counts_expires_in_down_from_the_ttl() {
    let mock = mock();
    let (token, expires_in) = stable_token(&mock, false);
    assert_eq!(expires_in, 7200);
    thread::sleep(Duration::from_millis(1100));
    let (again, expires_in) = stable_token(&mock, false);
    assert_eq!(again, token);
    assert!((7198..=7199).contains(&expires_in), "{expires_in}");
}

#[test]
fn stable_token_answers_like_wechat() {
    let mock = mock();
    let answer = post(&mock, "/cgi-bin/stable_token", &token_body(false));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("text/plain"));
    let json = answer.json();
    assert_eq!(json.as_object().unwrap().len(), 2, "{}", answer.body);
    let token = json["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    // force_refresh may be left out.
    let body = format!(
        r#"{{"grant_type":"client_credential","appid":"{DEFAULT_APPID}","secret":"{DEFAULT_SECRET}"}}"#
    );
    let again = post(&mock, "/cgi-bin/stable_token", &body).json();
    assert_eq!(again["access_token"], token);
}

#[test]
fn stable_token_force_refresh_mints_a_new_token_and_the_old_one_stays_valid() {
    let mock = mock();
    let (old, _) = stable_token(&mock, false);
    let (new, expires_in) = stable_token(&mock, true);
    assert_ne!(new, old);
    assert_eq!(expires_in, 7200);
    assert_eq!(stable_token(&mock, false).0, new);
    let (newer, _) = stable_token(&mock, true);
    assert_ne!(newer, new);
    assert_eq!(mock.tokens_minted(), 3);
    // Every token still works for an API call.
    for token in [&old, &new, &newer] {
        let code = mock.new_phone_code("alice", "13800138000");
        let answer = super::phone::get_phone_number(&mock, token, &code);
        assert_eq!(answer.errcode(), 0, "{}", answer.body);
    }
}

#[test]
fn stable_token_checks_appid_then_secret_then_grant_type() {
    let mock = mock();
    let body = |appid: &str, secret: &str, grant_type: &str| {
        serde_json::json!({ "grant_type": grant_type, "appid": appid, "secret": secret })
            .to_string()
    };
    let cases = [
        (
            body("wx0000000000000000", "nope", "x"),
            r#"{"errcode":40013,"errmsg":"invalid appid"}"#,
        ),
        (
            format!(r#"{{"secret":"{DEFAULT_SECRET}","grant_type":"client_credential"}}"#),
            r#"{"errcode":40013,"errmsg":"invalid appid"}"#,
        ),
        (
            body(DEFAULT_APPID, "nope", "x"),
            r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#,
        ),
        (
            body(DEFAULT_APPID, DEFAULT_SECRET, "authorization_code"),
            r#"{"errcode":40002,"errmsg":"invalid grant_type"}"#,
        ),
    ];
    for (request, expected) in cases {
        let answer = post(&mock, "/cgi-bin/stable_token", &request);
        assert_eq!(answer.status, 200, "{request}");
        assert_eq!(answer.header("Content-Type"), Some("text/plain"));
        assert_eq!(answer.body, expected, "{request}");
    }
    assert_eq!(mock.tokens_minted(), 0);
    assert_eq!(mock.stable_token_calls(), 4);
}

#[test]
fn stable_token_returns_47001_when_the_body_is_not_a_json_object() {
    let mock = mock();
    let bad_force = format!(
        r#"{{"grant_type":"client_credential","appid":"{DEFAULT_APPID}","secret":"{DEFAULT_SECRET}","force_refresh":"yes"}}"#
    );
    let too_long = format!(
        r#"{{"grant_type":"client_credential","appid":"{DEFAULT_APPID}","secret":"{DEFAULT_SECRET}","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    for body in [
        "",
        "not json",
        "[]",
        "\"client_credential\"",
        "{\"appid\":",
        "grant_type=client_credential",
        &bad_force,
        &too_long,
    ] {
        let answer = post(&mock, "/cgi-bin/stable_token", body);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body,
            r#"{"errcode":47001,"errmsg":"data format error"}"#,
            "{}",
            &body[..body.len().min(80)]
        );
    }
    assert_eq!(mock.tokens_minted(), 0);
}

#[test]
fn expire_access_tokens_makes_stable_token_mint_a_new_one() {
    let mock = mock();
    let (old, _) = stable_token(&mock, false);
    mock.expire_access_tokens();
    let (new, expires_in) = stable_token(&mock, false);
    assert_ne!(new, old);
    assert_eq!(expires_in, 7200);
    assert_eq!(mock.tokens_minted(), 2);
}

#[test]
fn mock_expire_tokens_expires_every_token_over_http() {
    let mock = mock();
    let (old, _) = stable_token(&mock, false);
    stable_token(&mock, true);
    let answer = post(&mock, "/mock/expire_tokens", "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, r#"{"expired":2}"#);
    let code = mock.new_phone_code("alice", "13800138000");
    assert_eq!(
        super::phone::get_phone_number(&mock, &old, &code).errcode(),
        42001
    );
    assert_ne!(stable_token(&mock, false).0, old);
}

#[test]
fn the_api_latency_applies_to_stable_token() {
    let mock = start(MockConfig {
        latency: Duration::from_millis(300),
        ..MockConfig::default()
    });
    let began = Instant::now();
    stable_token(&mock, false);
    assert!(began.elapsed() >= Duration::from_millis(300));
    let began = Instant::now();
    post(&mock, "/mock/expire_tokens", "");
    assert!(began.elapsed() < Duration::from_millis(300));
}

#[test]
fn mock_stats_counts_every_wechat_api() {
    let mock = mock();
    login(&mock, "alice.1");
    let (token, _) = stable_token(&mock, false);
    stable_token(&mock, false);
    stable_token(&mock, true);
    post(&mock, "/cgi-bin/stable_token", "x");
    get(&mock, "/cgi-bin/stable_token");
    super::phone::get_phone_number(&mock, &token, &mock.new_phone_code("a", "1"));
    super::phone::get_phone_number(&mock, "nope", "x");
    post(&mock, "/mock/expire_tokens", "");
    assert_eq!(mock.stable_token_calls(), 5);
    assert_eq!(mock.tokens_minted(), 2);
    assert_eq!(mock.phone_calls(), 2);
    assert_eq!(
        get(&mock, "/mock/stats").body,
        r#"{"jscode2session":1,"stable_token":5,"tokens_minted":2,"getuserphonenumber":2,"msg_sec_check":0,"media_check_async":0,"media_pushes":0}"#
    );
}
