//! The `/mock/…` endpoints, which WeChat does not have: they let a person or a test play the
//! WeChat client (`wx.login()` codes, phone codes, open data), expire access tokens, set how
//! content security answers, and read the call counters. Each does what a
//! [`crate::MockWechat`] method does in-process.

use serde_json::json;

use crate::code;
use crate::opendata::MockProfile;
use crate::phone;
use crate::reply::Reply;
use crate::request::param;
use crate::security::{self, MediaVerdict, SecApi, Switch};
use crate::state::{Api, State};

/// Most checks one `/mock/media_check` verdict applies to.
const MAX_TIMES: u32 = 1000;

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

/// `POST /mock/msg_sec_check[?risky=W,W][&review=W,W][&fault=CODE]`: replaces the risky
/// words, the review words, or the fault every msg_sec_check answers (`fault=` or
/// `fault=none` turns it off); answers the settings now in force.
pub(crate) fn msg_sec_check(state: &State, query: &str) -> Reply {
    let words = |name: &str| param(query, name).map(|list| security::parse_words(&list));
    let fault = match read_fault(query) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    state.security.set_words(words("risky"), words("review"));
    if let Some(fault) = fault {
        state.security.set_fault(SecApi::MsgSecCheck, fault);
    }
    let (risky, review) = state.security.words();
    log::info!("msg_sec_check: risky words {risky:?}, review words {review:?}");
    Reply::json(
        200,
        &json!({
            "risky": risky,
            "review": review,
            "fault": fault_text(state, SecApi::MsgSecCheck),
        }),
    )
}

/// `POST /mock/media_check?openid=O|user=U&suggest=pass|risky|review|timeout[&times=N]`: the
/// next N (default 1; 0 forgets the verdict) media checks of that openid get that verdict; and/or
/// `?fault=CODE`: every media_check_async answers that failure (`fault=none` turns it off).
pub(crate) fn media_check(state: &State, query: &str) -> Reply {
    let bad = |what: &str| Reply::mock_error(400, &format!("mock-wechat: {what}"));
    let fault = match read_fault(query) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    let openid = match (param(query, "openid"), param(query, "user")) {
        (Some(openid), None) if !openid.is_empty() => Some(openid),
        (None, Some(user)) if code::is_valid_user(&user) => Some(state.openid_for(&user)),
        (None, None) => None,
        _ => return bad("give either openid or user (1 to 32 of A-Z a-z 0-9 _)"),
    };
    let verdict = match param(query, "suggest") {
        None => None,
        Some(suggest) => match MediaVerdict::parse(&suggest) {
            Some(verdict) => Some(verdict),
            None => return bad("suggest must be pass, risky, review or timeout"),
        },
    };
    let times = match param(query, "times").map(|times| times.parse::<u32>()) {
        None => 1,
        Some(Ok(times)) if times <= MAX_TIMES => times,
        Some(_) => return bad("times must be a whole number from 0 to 1000"),
    };
    let set = match (openid, verdict) {
        (Some(openid), Some(verdict)) => {
            state.security.set_media_verdict(&openid, verdict, times);
            log::info!(
                "media_check: the next {times} checks of {openid} will be {}",
                verdict.as_str()
            );
            json!({ "openid": openid, "suggest": verdict.as_str(), "times": times })
        }
        (None, None) if fault.is_some() => serde_json::Value::Null,
        _ => return bad("give openid (or user) with suggest, or fault"),
    };
    if let Some(fault) = fault {
        state.security.set_fault(SecApi::MediaCheckAsync, fault);
    }
    Reply::json(
        200,
        &json!({ "verdict": set, "fault": fault_text(state, SecApi::MediaCheckAsync) }),
    )
}

/// The `fault` parameter: `None` when absent; `Some(None)` to turn the fault off (empty or
/// `none`); `Some(Some(…))` for a failure code (`fail.-1`, `http.502`, `garbage.x`,
/// `slow.5000`); a 400 for anything else.
fn read_fault(query: &str) -> Result<Option<Switch>, Reply> {
    match param(query, "fault") {
        None => Ok(None),
        Some(text) if text.is_empty() || text == "none" => Ok(Some(None)),
        Some(text) => match code::parse_fault(&text) {
            Some(fault) => Ok(Some(Some((text, fault)))),
            None => Err(Reply::mock_error(
                400,
                "mock-wechat: fault must be fail.<errcode>, http.<status>, garbage.<x>, \
                 slow.<ms> or none",
            )),
        },
    }
}

fn fault_text(state: &State, api: SecApi) -> Option<String> {
    state.security.fault(api).map(|(text, _)| text)
}

/// `GET /mock/stats`, built by hand so that the keys keep this order.
pub(crate) fn stats(state: &State) -> Reply {
    Reply::json_text(
        200,
        format!(
            "{{\"jscode2session\":{},\"stable_token\":{},\"tokens_minted\":{},\"getuserphonenumber\":{},\
             \"msg_sec_check\":{},\"media_check_async\":{},\"media_pushes\":{}}}",
            state.calls(Api::Jscode2session),
            state.calls(Api::StableToken),
            state.tokens_minted(),
            state.calls(Api::PhoneNumber),
            state.calls(Api::MsgSecCheck),
            state.calls(Api::MediaCheckAsync),
            state.pushes()
        ),
    )
}
