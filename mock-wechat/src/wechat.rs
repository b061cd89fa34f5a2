//! The endpoints that imitate WeChat's API: `/sns/jscode2session`, `/cgi-bin/stable_token`
//! and `/wxa/business/getuserphonenumber`, each with WeChat's rules (which errcode for which
//! input, in which order) and WeChat's answers, and the access-token check and failure
//! answers that the content-security APIs (`secapi`) share. The router counts the calls and
//! adds the configured latency.

use serde_json::{json, Map, Value};

use crate::code::{self, Code, Fault};
use crate::identity;
use crate::phone::{self, Phone};
use crate::reply::Reply;
use crate::request::{json_object, param};
use crate::state::{unix_now, State};
use crate::token::Check;

/// The number a `slow.<ms>` code gets from getuserphonenumber.
const SLOW_PHONE: Phone<'static> = Phone {
    user: "slow",
    number: "13800138000",
    country: phone::CHINA,
};

/// `GET /sns/jscode2session?appid=…&secret=…&js_code=…&grant_type=authorization_code`.
pub(crate) fn jscode2session(state: &State, query: &str) -> Reply {
    const API: &str = "jscode2session";
    let config = &state.config;
    if param(query, "appid").as_deref() != Some(config.appid.as_str()) {
        log::info!("{API}: wrong appid -> 40013");
        return Reply::wechat_error(40013);
    }
    // Never log the secret, even a wrong one: it may be a real one sent here by mistake.
    if param(query, "secret").as_deref() != Some(config.secret.as_str()) {
        log::info!("{API}: wrong secret -> 40125");
        return Reply::wechat_error(40125);
    }
    if param(query, "grant_type").as_deref() != Some("authorization_code") {
        log::info!("{API}: wrong grant_type -> 40002");
        return Reply::wechat_error(40002);
    }
    let js_code = match param(query, "js_code") {
        Some(js_code) if !js_code.is_empty() => js_code,
        _ => {
            log::info!("{API}: no js_code -> 41008");
            return Reply::wechat_error(41008);
        }
    };
    match code::parse(&js_code) {
        Code::Login(user) => {
            if state.claim_login_code(&js_code) {
                login(state, user)
            } else {
                log::info!("{API}: {js_code:?} already used -> 40163");
                Reply::wechat_error(40163)
            }
        }
        Code::Fault(fault) => answer_fault(state, API, &js_code, fault, || login(state, "slow")),
        Code::Invalid => {
            log::info!("{API}: {js_code:?} is not a valid code -> 40029");
            Reply::wechat_error(40029)
        }
    }
}

/// A successful login, with a fresh session key that becomes the user's latest. The
/// session key is never logged.
fn login(state: &State, user: &str) -> Reply {
    let openid = state.openid_for(user);
    log::info!("jscode2session: {user} logged in as {openid}");
    let key = state.new_session(user);
    let mut body = Map::new();
    body.insert("openid".to_owned(), Value::String(openid));
    body.insert(
        "session_key".to_owned(),
        Value::String(identity::session_key_text(&key)),
    );
    if state.config.unionid {
        body.insert("unionid".to_owned(), Value::String(identity::unionid(user)));
    }
    Reply::wechat(&Value::Object(body))
}

/// `POST /cgi-bin/stable_token` in WeChat's normal mode: the current access token while it
/// is valid, else a new one; `force_refresh: true` always mints one. Tokens are never logged.
pub(crate) fn stable_token(state: &State, body: Option<&[u8]>) -> Reply {
    const API: &str = "stable_token";
    let Some(body) = json_object(body) else {
        log::info!("{API}: the body is not a JSON object -> 47001");
        return Reply::wechat_error(47001);
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    let config = &state.config;
    if field("appid") != Some(config.appid.as_str()) {
        log::info!("{API}: wrong appid -> 40013");
        return Reply::wechat_error(40013);
    }
    if field("secret") != Some(config.secret.as_str()) {
        log::info!("{API}: wrong secret -> 40125");
        return Reply::wechat_error(40125);
    }
    if field("grant_type") != Some("client_credential") {
        log::info!("{API}: wrong grant_type -> 40002");
        return Reply::wechat_error(40002);
    }
    let force_refresh = match body.get("force_refresh") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => {
            log::info!("{API}: force_refresh is not a boolean -> 47001");
            return Reply::wechat_error(47001);
        }
    };
    let (token, expires_in) = state.stable_token(force_refresh);
    Reply::wechat(&json!({ "access_token": token, "expires_in": expires_in }))
}

/// `POST /wxa/business/getuserphonenumber?access_token=…` with `{"code":…}`.
pub(crate) fn get_user_phone_number(state: &State, query: &str, body: Option<&[u8]>) -> Reply {
    const API: &str = "getuserphonenumber";
    if let Err(refused) = check_access_token(state, API, query) {
        return refused;
    }
    let code = match json_object(body).as_ref().and_then(|body| body.get("code")) {
        Some(Value::String(code)) if !code.is_empty() => code.clone(),
        _ => {
            log::info!("{API}: the body is not JSON with a code -> 47001");
            return Reply::wechat_error(47001);
        }
    };
    if let Some(phone) = phone::parse(&code) {
        if state.claim_phone_code(&code) {
            return phone_number(state, &phone);
        }
        log::info!(
            "{API}: a phone code of {} already used -> 40163",
            phone.user
        );
        return Reply::wechat_error(40163);
    }
    match code::parse(&code) {
        Code::Fault(fault) => answer_fault(state, API, &code, fault, || {
            phone_number(state, &SLOW_PHONE)
        }),
        Code::Login(user) => {
            log::info!("{API}: a wx.login code of {user}, not a phone code -> 40029");
            Reply::wechat_error(40029)
        }
        Code::Invalid => {
            // Not echoed: it could be anything a client put in the wrong field.
            log::info!(
                "{API}: a code that is not a phone code ({} bytes) -> 40029",
                code.len()
            );
            Reply::wechat_error(40029)
        }
    }
}

/// The `access_token` of a call to `api`: the error to answer unless it is one the mock
/// issued and still valid (41001 missing, 40001 unknown, 42001 expired).
pub(crate) fn check_access_token(state: &State, api: &str, query: &str) -> Result<(), Reply> {
    let token = match param(query, "access_token") {
        Some(token) if !token.is_empty() => token,
        _ => {
            log::info!("{api}: no access_token -> 41001");
            return Err(Reply::wechat_error(41001));
        }
    };
    match state.check_token(&token) {
        Check::Valid => Ok(()),
        Check::Unknown => {
            log::info!("{api}: an unknown access_token -> 40001");
            Err(Reply::wechat_error(40001))
        }
        Check::Expired => {
            log::info!("{api}: an expired access_token -> 42001");
            Err(Reply::wechat_error(42001))
        }
    }
}

/// A successful getuserphonenumber, in WeChat's shape.
fn phone_number(state: &State, phone: &Phone<'_>) -> Reply {
    log::info!("getuserphonenumber: the phone number of {}", phone.user);
    Reply::wechat(&json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone.display(),
            "purePhoneNumber": phone.number,
            "countryCode": phone.country,
            "watermark": { "timestamp": unix_now(), "appid": state.config.appid },
        },
    }))
}

/// The answer to failure code `code` sent to `api`, the same on every API that takes a
/// code (and on the content-security APIs, whose fault `/mock` switches on); `succeed`
/// answers a `slow.<ms>` code once its wait is over.
pub(crate) fn answer_fault(
    state: &State,
    api: &str,
    code: &str,
    fault: Fault,
    succeed: impl FnOnce() -> Reply,
) -> Reply {
    match fault {
        Fault::Fail(errcode) => {
            log::info!("{api}: {code:?} -> errcode {errcode}");
            Reply::wechat_error(errcode)
        }
        Fault::Http(status) => {
            log::info!("{api}: {code:?} -> HTTP {status}");
            Reply::html(status, format!("<html>{status}</html>"))
        }
        Fault::Garbage => {
            log::info!("{api}: {code:?} -> a body that is not JSON");
            Reply::text(200, "this is not json")
        }
        Fault::Slow(wait) => {
            if state.shutdown.sleep(wait) {
                succeed()
            } else {
                Reply::shutting_down()
            }
        }
    }
}
