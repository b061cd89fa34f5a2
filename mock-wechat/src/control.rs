//! The `/mock/…` endpoints, which WeChat does not have: they let a person or a test play the
//! WeChat client (`wx.login()` codes, phone codes, open data), expire access tokens, and read
//! the call counters. Each does what a [`crate::MockWechat`] method does in-process.

use serde_json::json;

use crate::code;
use crate::opendata::MockProfile;
use crate::phone;
use crate::reply::Reply;
use crate::request::param;
use crate::state::{Api, State};

/// `GET /mock/code?user=NAME`: what a simulated `wx.login()` calls to get a code.
pub(crate) fn code(state: &State, query: &str) -> Reply {
    let user = param(query, "user").unwrap_or_default();
    match state.mint_code(&user) {
        Some(code) => Reply::text(200, code),
        None => Reply::text(
            400,
            "mock-wechat: user must be 1 to 32 characters of A-Z a-z 0-9 _ \
             and not fail, http, garbage or slow",
        ),
    }
}

/// `GET /mock/phone_code?user=NAME&phone=DIGITS[&country=DIGITS]`: what a simulated
/// `getPhoneNumber` button hands the mini-program.
pub(crate) fn phone_code(state: &State, query: &str) -> Reply {
    let user = param(query, "user").unwrap_or_default();
    let number = param(query, "phone").unwrap_or_default();
    let country = param(query, "country").unwrap_or_else(|| phone::CHINA.to_owned());
    match state.mint_phone_code(&user, &number, &country) {
        Some(code) => Reply::text(200, code),
        None => Reply::text(
            400,
            "mock-wechat: user must be 1 to 32 characters of A-Z a-z 0-9 _, \
             phone 1 to 20 digits, country (default 86) 1 to 3 digits not starting with 0",
        ),
    }
}

/// `GET /mock/userinfo?user=NAME&nickName=…&avatarUrl=…&gender=N[&stale=1][&format=form]`:
/// the open data the WeChat client would hand the mini-program of that user, as JSON or
/// (with `format=form`) as the form fields the mini-program posts, ready for `curl -d @-`.
pub(crate) fn userinfo(state: &State, query: &str) -> Reply {
    let bad = |what: &str| Reply::mock_error(400, &format!("mock-wechat: {what}"));
    let user = param(query, "user").unwrap_or_default();
    if !code::is_valid_user(&user) {
        return bad("user must be 1 to 32 characters of A-Z a-z 0-9 _");
    }
    let gender = match param(query, "gender") {
        None => 0,
        Some(gender) => match gender.parse::<i64>() {
            Ok(gender) => gender,
            Err(_) => return bad("gender must be a whole number (0 unknown, 1 male, 2 female)"),
        },
    };
    let stale = match param(query, "stale").as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => return bad("stale must be 1 or 0"),
    };
    let as_form = match param(query, "format").as_deref() {
        None | Some("json") => false,
        Some("form") => true,
        Some(_) => return bad("format must be json or form"),
    };
    let profile = MockProfile {
        nick_name: param(query, "nickName").unwrap_or_default(),
        avatar_url: param(query, "avatarUrl").unwrap_or_default(),
        gender,
    };
    let Some(data) = state.open_data(&user, &profile, stale) else {
        let why = if stale {
            "has no session key before the latest: log in twice"
        } else {
            "has no session key: log in first"
        };
        return Reply::mock_error(404, &format!("mock-wechat: {user} {why}"));
    };
    let which = if stale { "the previous" } else { "the latest" };
    log::info!("userinfo: open data of {user} with {which} session key");
    if as_form {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("userInfo", &data.raw_data)
            .append_pair("signature", &data.signature)
            .append_pair("encryptedData", &data.encrypted_data)
            .append_pair("iv", &data.iv)
            .finish();
        return Reply::text(200, body);
    }
    Reply::json(
        200,
        &json!({
            "rawData": data.raw_data,
            "signature": data.signature,
            "encryptedData": data.encrypted_data,
            "iv": data.iv,
        }),
    )
}

/// `POST /mock/expire_tokens`: makes every access token so far expired.
pub(crate) fn expire_tokens(state: &State) -> Reply {
    let expired = state.expire_access_tokens();
    Reply::json(200, &json!({ "expired": expired }))
}

/// `GET /mock/stats`, built by hand so that the keys keep this order.
pub(crate) fn stats(state: &State) -> Reply {
    Reply::json_text(
        200,
        format!(
            "{{\"jscode2session\":{},\"stable_token\":{},\"tokens_minted\":{},\"getuserphonenumber\":{}}}",
            state.calls(Api::Jscode2session),
            state.calls(Api::StableToken),
            state.tokens_minted(),
            state.calls(Api::PhoneNumber)
        ),
    )
}
