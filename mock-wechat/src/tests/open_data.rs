//! Open data over HTTP and through the library: signed and encrypted with the session key
//! jscode2session handed out, as WeChat does.

use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

use super::*;
use crate::{MockProfile, OpenData};

fn band() -> MockProfile {
    MockProfile {
        nick_name: "Band".to_owned(),
        avatar_url: "http://wx.qlogo.cn/mmopen/vi_32/x/0".to_owned(),
        gender: 1,
    }
}

/// Logs `user` in over HTTP and returns the session key text it got.
fn session_key(mock: &MockWechat, user: &str) -> String {
    let answer = login(mock, &mock.new_code(user)).json();
    answer["session_key"].as_str().unwrap().to_owned()
}

fn decode16(base64: &str) -> [u8; 16] {
    STANDARD.decode(base64).unwrap().try_into().unwrap()
}

/// What a server does with open data: check the signature with the session key text, then
/// decrypt. Panics with a message when either fails.
fn open(data: &OpenData, session_key: &str) -> Value {
    let expected: String = Sha1::digest(format!("{}{session_key}", data.raw_data))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(data.signature, expected, "signature");
    let encrypted = STANDARD.decode(&data.encrypted_data).unwrap();
    let plain = crate::opendata::decrypt(&decode16(session_key), &decode16(&data.iv), &encrypted)
        .expect("decrypts with this session key");
    serde_json::from_slice(&plain).unwrap()
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

#[test]
fn open_data_is_none_before_the_first_login() {
    let mock = mock();
    assert_eq!(mock.open_data("alice", &band()), None);
    assert_eq!(mock.stale_open_data("alice", &band()), None);
    // A code that was minted but never used is no login.
    mock.new_code("alice");
    assert_eq!(mock.open_data("alice", &band()), None);
    // Nor is a failed one.
    login(&mock, "fail.40029");
    assert_eq!(mock.open_data("fail", &band()), None);
}

#[test]
fn open_data_is_signed_and_encrypted_with_the_latest_session_key() {
    let mock = mock();
    let key = session_key(&mock, "alice");
    let data = mock.open_data("alice", &band()).unwrap();
    assert_eq!(
        data.raw_data,
        r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"","province":"","country":"","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/x/0"}"#
    );
    let json = open(&data, &key);
    assert_eq!(json["openId"], mock.openid_for("alice"));
    assert_eq!(json["nickName"], "Band");
    assert_eq!(json["gender"], 1);
    assert_eq!(json["avatarUrl"], band().avatar_url);
    assert_eq!(json["language"], "zh_CN");
    assert!(json.get("unionId").is_none());
    assert_eq!(json["watermark"]["appid"], DEFAULT_APPID);
    let timestamp = json["watermark"]["timestamp"].as_i64().unwrap();
    assert!((now() - timestamp).abs() <= 5, "{timestamp}");
}

#[test]
fn open_data_follows_the_key_of_each_new_login() {
    let mock = mock();
    session_key(&mock, "alice");
    let key = session_key(&mock, "alice");
    open(&mock.open_data("alice", &band()).unwrap(), &key);
    // Other users' logins do not touch alice's key.
    session_key(&mock, "bob");
    open(&mock.open_data("alice", &band()).unwrap(), &key);
}

#[test]
fn open_data_includes_the_unionid_when_enabled() {
    let mock = start(MockConfig {
        unionid: true,
        ..MockConfig::default()
    });
    let key = session_key(&mock, "alice");
    let json = open(&mock.open_data("alice", &band()).unwrap(), &key);
    assert_eq!(json["unionId"], mock.unionid_for("alice"));
    assert_eq!(json["openId"], mock.openid_for("alice"));
}

#[test]
fn open_data_uses_the_configured_appid_in_the_watermark() {
    let mock = start(MockConfig {
        appid: "wxffffffffffffffff".to_owned(),
        ..MockConfig::default()
    });
    let target = jscode2session_target(
        "wxffffffffffffffff",
        DEFAULT_SECRET,
        "alice.1",
        "authorization_code",
    );
    let answer = get(&mock, &target).json();
    let key = answer["session_key"].as_str().unwrap();
    let json = open(&mock.open_data("alice", &band()).unwrap(), key);
    assert_eq!(json["watermark"]["appid"], "wxffffffffffffffff");
}

#[test]
fn open_data_has_a_fresh_iv_every_time() {
    let mock = mock();
    let key = session_key(&mock, "alice");
    let first = mock.open_data("alice", &band()).unwrap();
    let second = mock.open_data("alice", &band()).unwrap();
    assert_ne!(first.iv, second.iv);
    assert_ne!(first.encrypted_data, second.encrypted_data);
    assert_eq!(first.signature, second.signature);
    assert_eq!(decode16(&first.iv).len(), 16);
    open(&second, &key);
}

#[test]
fn stale_open_data_uses_the_session_key_before_the_latest() {
    let mock = mock();
    let old = session_key(&mock, "alice");
    assert_eq!(mock.stale_open_data("alice", &band()), None);
    let new = session_key(&mock, "alice");
    let stale = mock.stale_open_data("alice", &band()).unwrap();
    open(&stale, &old);
    // A server holding the latest key finds the signature wrong.
    let with_new: String = Sha1::digest(format!("{}{new}", stale.raw_data))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(stale.signature, with_new);
    // One more login: the previous key is now the second one.
    session_key(&mock, "alice");
    open(&mock.stale_open_data("alice", &band()).unwrap(), &new);
}

#[test]
fn slow_codes_give_user_slow_a_session_too() {
    let mock = mock();
    let answer = login(&mock, "slow.0").json();
    let key = answer["session_key"].as_str().unwrap();
    open(&mock.open_data("slow", &band()).unwrap(), key);
}

#[test]
fn mock_userinfo_returns_open_data_over_http() {
    let mock = mock();
    let key = session_key(&mock, "alice");
    let answer = get(
        &mock,
        "/mock/userinfo?user=alice&nickName=%E5%B0%8F%E6%98%8E%20%26%20%22Co%22\
         &avatarUrl=https%3A%2F%2Fexample.com%2Fa.png%3Fx%3D1&gender=2",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    let body = answer.json();
    let data = OpenData {
        raw_data: body["rawData"].as_str().unwrap().to_owned(),
        signature: body["signature"].as_str().unwrap().to_owned(),
        encrypted_data: body["encryptedData"].as_str().unwrap().to_owned(),
        iv: body["iv"].as_str().unwrap().to_owned(),
    };
    let raw: Value = serde_json::from_str(&data.raw_data).unwrap();
    assert_eq!(raw["nickName"], "小明 & \"Co\"");
    assert_eq!(raw["avatarUrl"], "https://example.com/a.png?x=1");
    assert_eq!(raw["gender"], 2);
    let json = open(&data, &key);
    assert_eq!(json["nickName"], "小明 & \"Co\"");
    assert_eq!(json["openId"], mock.openid_for("alice"));
}

#[test]
fn mock_userinfo_with_stale_uses_the_previous_key() {
    let mock = mock();
    let old = session_key(&mock, "alice");
    session_key(&mock, "alice");
    let body = get(&mock, "/mock/userinfo?user=alice&nickName=A&stale=1").json();
    let data = OpenData {
        raw_data: body["rawData"].as_str().unwrap().to_owned(),
        signature: body["signature"].as_str().unwrap().to_owned(),
        encrypted_data: body["encryptedData"].as_str().unwrap().to_owned(),
        iv: body["iv"].as_str().unwrap().to_owned(),
    };
    assert_eq!(open(&data, &old)["nickName"], "A");
}

#[test]
fn mock_userinfo_with_format_form_returns_the_fields_the_mini_program_posts() {
    let mock = mock();
    let key = session_key(&mock, "alice");
    let answer = get(
        &mock,
        "/mock/userinfo?user=alice&nickName=A%2BB&format=form",
    );
    assert_eq!(answer.status, 200);
    let fields: std::collections::HashMap<String, String> =
        form_urlencoded::parse(answer.body.as_bytes())
            .into_owned()
            .collect();
    let data = OpenData {
        raw_data: fields["userInfo"].clone(),
        signature: fields["signature"].clone(),
        encrypted_data: fields["encryptedData"].clone(),
        iv: fields["iv"].clone(),
    };
    assert_eq!(open(&data, &key)["nickName"], "A+B");
}

#[test]
fn mock_userinfo_returns_404_without_a_session_key() {
    let mock = mock();
    let answer = get(&mock, "/mock/userinfo?user=alice&nickName=A");
    assert_eq!(answer.status, 404);
    assert_eq!(answer.errcode(), -1);
    assert!(answer.body.contains("log in first"), "{}", answer.body);
    session_key(&mock, "alice");
    let answer = get(&mock, "/mock/userinfo?user=alice&stale=1");
    assert_eq!(answer.status, 404);
    assert!(answer.body.contains("log in twice"), "{}", answer.body);
}

#[test]
fn mock_userinfo_returns_400_for_bad_parameters() {
    let mock = mock();
    session_key(&mock, "alice");
    for target in [
        "/mock/userinfo",
        "/mock/userinfo?user=",
        "/mock/userinfo?user=a%20b",
        "/mock/userinfo?user=%FF",
        "/mock/userinfo?user=alice&gender=male",
        "/mock/userinfo?user=alice&gender=",
        "/mock/userinfo?user=alice&gender=99999999999999999999",
        "/mock/userinfo?user=alice&stale=yes",
        "/mock/userinfo?user=alice&format=xml",
    ] {
        let answer = get(&mock, target);
        assert_eq!(answer.status, 400, "{target}");
        assert_eq!(answer.errcode(), -1, "{target}");
    }
    // Missing profile fields are empty, gender 0.
    let body = get(&mock, "/mock/userinfo?user=alice").json();
    let raw: Value = serde_json::from_str(body["rawData"].as_str().unwrap()).unwrap();
    assert_eq!(
        (raw["nickName"].as_str(), raw["gender"].as_i64()),
        (Some(""), Some(0))
    );
}
