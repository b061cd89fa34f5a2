//! Routing: which endpoint answers a request, the method each one takes, and what every call
//! to a WeChat API goes through (the configured latency, the call counter).

use std::sync::Arc;

use tiny_http::{Method, Request};

use crate::control;
use crate::reply::Reply;
use crate::request::read_body;
use crate::secapi;
use crate::state::{Api, State};
use crate::wechat;

/// Answers one request. Never panics, whatever the request holds. The state comes as an
/// `Arc` because a media check outlives the request that started it.
pub(crate) fn handle(state: &Arc<State>, mut request: Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let is_get = *request.method() == Method::Get;
    let is_post = *request.method() == Method::Post;
    let reply = match path {
        "/sns/jscode2session" => call_wechat(state, Api::Jscode2session, is_get, "GET", || {
            wechat::jscode2session(state, query)
        }),
        "/cgi-bin/stable_token" => {
            let body = post_body(&mut request, is_post);
            call_wechat(state, Api::StableToken, is_post, "POST", || {
                wechat::stable_token(state, body.as_deref())
            })
        }
        "/wxa/business/getuserphonenumber" => {
            let body = post_body(&mut request, is_post);
            call_wechat(state, Api::PhoneNumber, is_post, "POST", || {
                wechat::get_user_phone_number(state, query, body.as_deref())
            })
        }
        "/wxa/msg_sec_check" => {
            let body = post_body(&mut request, is_post);
            call_wechat(state, Api::MsgSecCheck, is_post, "POST", || {
                secapi::msg_sec_check(state, query, body.as_deref())
            })
        }
        "/wxa/media_check_async" => {
            let body = post_body(&mut request, is_post);
            call_wechat(state, Api::MediaCheckAsync, is_post, "POST", || {
                secapi::media_check_async(state, query, body.as_deref())
            })
        }
        "/mock/expire_tokens" | "/mock/msg_sec_check" | "/mock/media_check" if !is_post => {
            Reply::method_not_allowed("POST")
        }
        "/mock/expire_tokens" => control::expire_tokens(state),
        "/mock/msg_sec_check" => control::msg_sec_check(state, query),
        "/mock/media_check" => control::media_check(state, query),
        "/mock/code" | "/mock/phone_code" | "/mock/userinfo" | "/mock/stats" | "/healthz"
            if !is_get =>
        {
            Reply::method_not_allowed("GET")
        }
        "/mock/code" => control::code(state, query),
        "/mock/phone_code" => control::phone_code(state, query),
        "/mock/userinfo" => control::userinfo(state, query),
        "/mock/stats" => control::stats(state),
        "/healthz" => Reply::text(200, "ok"),
        _ => Reply::mock_error(404, "mock-wechat: no such endpoint"),
    };
    reply.send(request, state.config.keep_alive);
}

/// One call to a WeChat API: 405 unless `method_ok`, else the configured latency, then
/// `answer`. The call is counted before the answer leaves, so that a client holding the
/// answer always sees its call counted.
fn call_wechat(
    state: &State,
    api: Api,
    method_ok: bool,
    allow: &'static str,
    answer: impl FnOnce() -> Reply,
) -> Reply {
    let reply = if !method_ok {
        Reply::method_not_allowed(allow)
    } else if state.shutdown.sleep(state.config.latency) {
        answer()
    } else {
        Reply::shutting_down()
    };
    state.count(api);
    reply
}

/// The body of a POST, read before the latency as WeChat receives it before answering;
/// other methods are refused unread.
fn post_body(request: &mut Request, is_post: bool) -> Option<Vec<u8>> {
    if is_post {
        read_body(request)
    } else {
        None
    }
}
