//! Phone codes and `/wxa/business/getuserphonenumber`.

use super::stable_token::stable_token;
use super::*;

fn phone_target(token: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("access_token", token)
        .finish();
    format!("/wxa/business/getuserphonenumber?{query}")
}

pub(super) fn get_phone_number(mock: &MockWechat, token: &str, code: &str) -> Answer {
    let body = serde_json::json!({ "code": code }).to_string();
    post(mock, &phone_target(token), &body)
}

const USED: &str = r#"{"errcode":40163,"errmsg":"code been used"}"#;
const INVALID: &str = r#"{"errcode":40029,"errmsg":"invalid code"}"#;

#[test]
fn new_phone_code_has_the_documented_format() {
    let mock = mock();
    let code = mock.new_phone_code("alice", "13800138000");
    let nonce = code
        .strip_prefix("phone.alice.13800138000.86.")
        .expect(&code);
    assert_eq!(nonce.len(), 12);
    assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(code, mock.new_phone_code("alice", "13800138000"));
}

#[test]
fn mock_phone_code_mints_codes_over_http() {
    let mock = mock();
    let answer = get(&mock, "/mock/phone_code?user=alice&phone=13800138000");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("text/plain"));
    assert!(answer.body.starts_with("phone.alice.13800138000.86."));
    let answer = get(
        &mock,
        "/mock/phone_code?user=bob&phone=2025550123&country=1",
    );
    assert!(
        answer.body.starts_with("phone.bob.2025550123.1."),
        "{}",
        answer.body
    );
    for target in [
        "/mock/phone_code",
        "/mock/phone_code?user=alice",
        "/mock/phone_code?phone=138",
        "/mock/phone_code?user=a%20b&phone=138",
        "/mock/phone_code?user=alice&phone=138-0013",
        "/mock/phone_code?user=alice&phone=138&country=",
        "/mock/phone_code?user=alice&phone=138&country=%2B86",
        "/mock/phone_code?user=alice&phone=138&country=0086",
        "/mock/phone_code?user=alice&phone=%FF",
    ] {
        let answer = get(&mock, target);
        assert_eq!(answer.status, 400, "{target}");
        assert!(answer.body.contains("1 to 20 digits"), "{}", answer.body);
    }
}

#[test]
fn getuserphonenumber_returns_the_number_in_wechats_shape() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let code = mock.new_phone_code("alice", "13800138000");
    let answer = get_phone_number(&mock, &token, &code);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("text/plain"));
    let json = answer.json();
    assert_eq!(json["errcode"], 0);
    assert_eq!(json["errmsg"], "ok");
    let info = &json["phone_info"];
    assert_eq!(info["phoneNumber"], "13800138000");
    assert_eq!(info["purePhoneNumber"], "13800138000");
    assert_eq!(info["countryCode"], "86");
    assert_eq!(info["watermark"]["appid"], DEFAULT_APPID);
    assert!(info["watermark"]["timestamp"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(mock.phone_calls(), 1);
}

#[test]
fn getuserphonenumber_shows_the_country_code_outside_china() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let code = get(
        &mock,
        "/mock/phone_code?user=bob&phone=2025550123&country=1",
    )
    .body;
    let json = get_phone_number(&mock, &token, &code).json();
    let info = &json["phone_info"];
    assert_eq!(info["phoneNumber"], "+1 2025550123");
    assert_eq!(info["purePhoneNumber"], "2025550123");
    assert_eq!(info["countryCode"], "1");
}

#[test]
fn getuserphonenumber_accepts_hand_typed_codes_and_an_openid_field() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let body = format!(
        r#"{{"code":"phone.carol.13900139000.86.typed-1","openid":"{}"}}"#,
        mock.openid_for("carol")
    );
    let json = post(&mock, &phone_target(&token), &body).json();
    assert_eq!(json["phone_info"]["purePhoneNumber"], "13900139000");
}

#[test]
fn getuserphonenumber_returns_40163_when_the_code_is_reused() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let code = mock.new_phone_code("alice", "13800138000");
    assert_eq!(get_phone_number(&mock, &token, &code).errcode(), 0);
    let again = get_phone_number(&mock, &token, &code);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, USED);
    // Even with another valid token.
    let (other, _) = stable_token(&mock, true);
    assert_eq!(get_phone_number(&mock, &other, &code).body, USED);
}

#[test]
fn getuserphonenumber_returns_41001_without_an_access_token() {
    let mock = mock();
    let body = r#"{"code":"phone.a.1.86.n"}"#;
    for target in [
        "/wxa/business/getuserphonenumber",
        "/wxa/business/getuserphonenumber?access_token=",
        "/wxa/business/getuserphonenumber?token=x",
    ] {
        let answer = post(&mock, target, body);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body, r#"{"errcode":41001,"errmsg":"access_token missing"}"#,
            "{target}"
        );
    }
}

#[test]
fn getuserphonenumber_returns_40001_for_an_unknown_access_token() {
    let mock = mock();
    stable_token(&mock, false);
    let code = mock.new_phone_code("alice", "13800138000");
    let answer = get_phone_number(&mock, "not-a-token", &code);
    assert_eq!(
        answer.body,
        r#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest"}"#
    );
    // A token of another mock (another appid) is unknown here too.
    let other = mock_with_other_appid();
    let (foreign, _) = stable_token_for(&other, "wxffffffffffffffff");
    assert_eq!(get_phone_number(&mock, &foreign, &code).errcode(), 40001);
    // The rejected code was not used up.
    let (token, _) = stable_token(&mock, false);
    assert_eq!(get_phone_number(&mock, &token, &code).errcode(), 0);
}

fn mock_with_other_appid() -> MockWechat {
    start(MockConfig {
        appid: "wxffffffffffffffff".to_owned(),
        ..MockConfig::default()
    })
}

fn stable_token_for(mock: &MockWechat, appid: &str) -> (String, u64) {
    let body = serde_json::json!({
        "grant_type": "client_credential",
        "appid": appid,
        "secret": DEFAULT_SECRET,
    })
    .to_string();
    let json = post(mock, "/cgi-bin/stable_token", &body).json();
    (
        json["access_token"].as_str().unwrap().to_owned(),
        json["expires_in"].as_u64().unwrap(),
    )
}

#[test]
fn getuserphonenumber_returns_42001_after_tokens_expire() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let code = mock.new_phone_code("alice", "13800138000");
    mock.expire_access_tokens();
    let answer = get_phone_number(&mock, &token, &code);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        r#"{"errcode":42001,"errmsg":"access_token expired"}"#
    );
    // A new token works, and the code was not used up by the refused call.
    let (fresh, _) = stable_token(&mock, false);
    assert_eq!(get_phone_number(&mock, &fresh, &code).errcode(), 0);
}

#[test]
fn getuserphonenumber_returns_42001_when_the_token_outlives_its_ttl() {
    let mock = start(MockConfig {
        token_ttl: Duration::from_secs(1),
        ..MockConfig::default()
    });
    let (token, _) = stable_token(&mock, false);
    let code = mock.new_phone_code("alice", "13800138000");
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(get_phone_number(&mock, &token, &code).errcode(), 42001);
}

#[test]
fn getuserphonenumber_returns_47001_when_the_body_has_no_code() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let too_long = format!(
        r#"{{"code":"phone.a.1.86.n","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    for body in [
        "",
        "code=phone.a.1.86.n",
        "[]",
        "{}",
        r#"{"code":""}"#,
        r#"{"code":12345}"#,
        r#"{"code":null}"#,
        r#"{"openid":"o1"}"#,
        &too_long,
    ] {
        let answer = post(&mock, &phone_target(&token), body);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body,
            r#"{"errcode":47001,"errmsg":"data format error"}"#,
            "{}",
            &body[..body.len().min(80)]
        );
    }
}

#[test]
fn getuserphonenumber_checks_the_token_before_the_body() {
    let mock = mock();
    let answer = post(&mock, "/wxa/business/getuserphonenumber", "not json");
    assert_eq!(answer.errcode(), 41001);
    let answer = post(&mock, &phone_target("unknown"), "not json");
    assert_eq!(answer.errcode(), 40001);
    let (token, _) = stable_token(&mock, false);
    mock.expire_access_tokens();
    assert_eq!(post(&mock, &phone_target(&token), "").errcode(), 42001);
}

#[test]
fn getuserphonenumber_returns_40029_for_codes_that_are_not_phone_codes() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let login_code = mock.new_code("alice");
    for code in [
        login_code.as_str(),
        "alice.123",
        "alice",
        "phone.alice.138.86",
        "phone.alice.138.86.n.x",
        "phone.alice.+86138.86.n",
        "phone.a b.138.86.n",
        "fail.x",
        "http.99",
        "slow.1s",
        "\u{0}\u{7f}\"'",
    ] {
        let answer = get_phone_number(&mock, &token, code);
        assert_eq!(answer.status, 200, "{code:?}");
        assert_eq!(answer.body, INVALID, "{code:?}");
    }
    // An invalid name given to new_phone_code gives such a code, without panicking.
    for (user, phone) in [
        ("a b", "138"),
        ("alice", "+86 138"),
        ("", ""),
        ("alice", "x"),
    ] {
        let code = mock.new_phone_code(user, phone);
        assert_eq!(
            get_phone_number(&mock, &token, &code).body,
            INVALID,
            "{code}"
        );
    }
    // The login code was not used up by getuserphonenumber.
    assert!(login(&mock, &login_code).json()["openid"].is_string());
}

#[test]
fn getuserphonenumber_failure_codes_work_as_for_jscode2session() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    for _ in 0..2 {
        let answer = get_phone_number(&mock, &token, "fail.45011");
        assert_eq!(
            answer.body,
            r#"{"errcode":45011,"errmsg":"api minute-quota reach limit mustslower retry next minute"}"#
        );
        assert_eq!(
            get_phone_number(&mock, &token, "fail.-1").body,
            r#"{"errcode":-1,"errmsg":"system error"}"#
        );
        let answer = get_phone_number(&mock, &token, "http.502");
        assert_eq!(answer.status, 502);
        assert_eq!(answer.header("Content-Type"), Some("text/html"));
        assert_eq!(answer.body, "<html>502</html>");
        let answer = get_phone_number(&mock, &token, "garbage.x");
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "this is not json")
        );
        let began = Instant::now();
        let json = get_phone_number(&mock, &token, "slow.300").json();
        assert!(began.elapsed() >= Duration::from_millis(300));
        assert_eq!(json["phone_info"]["purePhoneNumber"], "13800138000");
    }
    assert_eq!(mock.phone_calls(), 10);
}

#[test]
fn getuserphonenumber_waits_out_the_configured_latency() {
    let mock = start(MockConfig {
        latency: Duration::from_millis(300),
        ..MockConfig::default()
    });
    let began = Instant::now();
    let answer = post(&mock, "/wxa/business/getuserphonenumber", "");
    assert_eq!(answer.errcode(), 41001);
    assert!(began.elapsed() >= Duration::from_millis(300));
    let began = Instant::now();
    get(&mock, "/mock/phone_code?user=a&phone=1");
    assert!(began.elapsed() < Duration::from_millis(300));
}

#[test]
fn phone_codes_are_not_login_codes() {
    let mock = mock();
    let code = mock.new_phone_code("alice", "13800138000");
    assert_eq!(login(&mock, &code).body, INVALID);
}
