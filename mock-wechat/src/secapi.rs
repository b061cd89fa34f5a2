//! WeChat's content-security APIs, version 2: `POST /wxa/msg_sec_check` (text, answered at
//! once) and `POST /wxa/media_check_async` (an image, answered with a `trace_id`, the
//! verdict pushed later by `mediacheck`). The verdicts come from `security`; the access
//! token is checked as on getuserphonenumber.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::mediacheck::{self, Job};
use crate::reply::Reply;
use crate::request::json_object;
use crate::security::{SecApi, Suggest};
use crate::state::State;
use crate::wechat::{answer_fault, check_access_token};

/// The confidence the mock's "model" claims.
const PROB: u32 = 90;

/// How strongly a keyword hit counts; WeChat sends a level with keyword hits.
const KEYWORD_LEVEL: u32 = 20;

/// `POST /wxa/msg_sec_check?access_token=…` with
/// `{"version":2,"scene":1,"openid":…,"content":…}`.
pub(crate) fn msg_sec_check(state: &State, query: &str, body: Option<&[u8]>) -> Reply {
    const API: &str = "msg_sec_check";
    if let Err(refused) = check_access_token(state, API, query) {
        return refused;
    }
    let Some(body) = json_object(body) else {
        log::info!("{API}: the body is not a JSON object -> 47001");
        return Reply::wechat_error(47001);
    };
    let content = match (v2_request(&body), body.get("content")) {
        (true, Some(Value::String(content))) => content.clone(),
        _ => {
            log::info!("{API}: not a version 2 request with openid, scene and content -> 47001");
            return Reply::wechat_error(47001);
        }
    };
    let answer = || text_verdict(state, &content);
    match state.security.fault(SecApi::MsgSecCheck) {
        Some((code, fault)) => answer_fault(state, API, &code, fault, answer),
        None => answer(),
    }
}

/// The verdict on `content`, in WeChat's shape. The content is not logged: it is what a
/// user typed.
fn text_verdict(state: &State, content: &str) -> Reply {
    let verdict = state.security.check_text(content);
    let suggest = verdict.suggest;
    let mut detail = vec![json!({
        "strategy": "content_model",
        "errcode": 0,
        "suggest": suggest.as_str(),
        "label": suggest.label(),
        "prob": PROB,
    })];
    if let Some(keyword) = &verdict.keyword {
        detail.push(json!({
            "strategy": "keyword",
            "errcode": 0,
            "suggest": suggest.as_str(),
            "label": suggest.label(),
            "level": KEYWORD_LEVEL,
            "keyword": keyword,
        }));
    }
    let why = if suggest == Suggest::Pass {
        String::new()
    } else {
        " (a configured word)".to_owned()
    };
    log::info!(
        "msg_sec_check: {} characters -> {}{why}",
        content.chars().count(),
        suggest.as_str()
    );
    Reply::wechat(&json!({
        "errcode": 0,
        "errmsg": "ok",
        "result": { "suggest": suggest.as_str(), "label": suggest.label() },
        "detail": detail,
        "trace_id": state.trace_id(),
    }))
}

/// `POST /wxa/media_check_async?access_token=…` with
/// `{"media_url":…,"media_type":2,"version":2,"scene":1,"openid":…}`.
pub(crate) fn media_check_async(state: &Arc<State>, query: &str, body: Option<&[u8]>) -> Reply {
    const API: &str = "media_check_async";
    if let Err(refused) = check_access_token(state, API, query) {
        return refused;
    }
    let Some(body) = json_object(body) else {
        log::info!("{API}: the body is not a JSON object -> 47001");
        return Reply::wechat_error(47001);
    };
    let media_type = body.get("media_type").and_then(Value::as_i64);
    let (media_url, openid) = match (
        v2_request(&body),
        media_type,
        body.get("media_url"),
        body.get("openid"),
    ) {
        (true, Some(1 | 2), Some(Value::String(url)), Some(Value::String(openid)))
            if !url.is_empty() =>
        {
            (url.clone(), openid.clone())
        }
        _ => {
            log::info!(
                "{API}: not a version 2 request with media_url, media_type 1 or 2, openid \
                 and scene -> 47001"
            );
            return Reply::wechat_error(47001);
        }
    };
    let answer = || submit(state, media_url, &openid);
    match state.security.fault(SecApi::MediaCheckAsync) {
        Some((code, fault)) => answer_fault(state, API, &code, fault, answer),
        None => answer(),
    }
}

/// Starts the check and answers its `trace_id`; errcode -1 when too many are under way.
fn submit(state: &Arc<State>, media_url: String, openid: &str) -> Reply {
    let trace_id = state.trace_id();
    let verdict = state.security.next_media_verdict(openid);
    log::info!(
        "media_check_async: check {trace_id} for {openid} will be {}",
        verdict.as_str()
    );
    let job = Job {
        trace_id: trace_id.clone(),
        media_url,
        verdict,
    };
    if !mediacheck::start(state, job) {
        log::warn!("media_check_async: too many checks under way -> -1");
        return Reply::wechat_error(-1);
    }
    Reply::wechat(&json!({ "errcode": 0, "errmsg": "ok", "trace_id": trace_id }))
}

/// Whether `body` has what every version 2 call needs: `version` 2, `scene` 1 to 4 and a
/// non-empty `openid` (version 1, without openid, is not simulated).
fn v2_request(body: &Map<String, Value>) -> bool {
    let number = |name: &str| body.get(name).and_then(Value::as_i64);
    let openid = body.get("openid").and_then(Value::as_str);
    number("version") == Some(2)
        && matches!(number("scene"), Some(1..=4))
        && openid.is_some_and(|openid| !openid.is_empty())
}
