//! The client for WeChat's server API (or `mock-wechat`, which speaks the same protocol).
//!
//! WeChat answers HTTP 200 with an `{"errcode":…,"errmsg":…}` body when it refuses, so the status
//! line alone says little: every answer is parsed with all fields optional and then classified.
//! The query string carries the AppSecret, so nothing here ever formats a URL or a transport
//! error into a message: causes are reduced to their kind before they leave this module.

use crate::config::{Secret, WechatConfig};
use serde::Deserialize;
use std::fmt;
use std::io::ErrorKind;

/// Upstream answers are a few hundred bytes; anything near this is not WeChat.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// What jscode2session proves: who the user is, and the key for their encrypted data.
#[derive(Debug, Clone)]
pub struct Session {
    pub openid: String,
    pub unionid: Option<String>,
    /// Never leaves the server: not in a token, a response, or a log line.
    pub session_key: Secret,
}

/// Why a call to WeChat did not produce a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WechatError {
    /// WeChat answered with a non-zero `errcode`.
    Rejected { errcode: i64, errmsg: String },
    /// WeChat (or a proxy in front of it) answered with a non-2xx HTTP status.
    Status(u16),
    /// The answer was not the JSON we expect (not JSON, or no openid/session_key).
    BadAnswer(String),
    /// No answer: connection refused, DNS failure, TLS failure, reset.
    Unreachable(String),
    /// No answer within `WECHAT_TIMEOUT`.
    Timeout,
}

impl fmt::Display for WechatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WechatError::Rejected { errcode, errmsg } => {
                write!(f, "errcode {errcode} ({errmsg})")
            }
            WechatError::Status(s) => write!(f, "HTTP status {s}"),
            WechatError::BadAnswer(why) => write!(f, "unusable answer: {why}"),
            WechatError::Unreachable(why) => write!(f, "unreachable: {why}"),
            WechatError::Timeout => f.write_str("timed out"),
        }
    }
}

/// jscode2session's answer, every field optional because an error body has none of the success
/// fields and a success may omit `errcode`.
#[derive(Deserialize)]
struct Code2SessionAnswer {
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
    errcode: Option<i64>,
    errmsg: Option<String>,
}

/// A shared, pooled, time-bounded client. Cheap to clone.
#[derive(Clone)]
pub struct WechatClient {
    agent: ureq::Agent,
    config: WechatConfig,
}

impl WechatClient {
    pub fn new(config: WechatConfig) -> WechatClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout))
            .http_status_as_error(false)
            .max_idle_connections(512)
            .max_idle_connections_per_host(512)
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        WechatClient { agent, config }
    }

    /// Exchanges a `wx.login()` code for the user's openid and session_key.
    pub fn code2session(&self, code: &str) -> Result<Session, WechatError> {
        let url = format!("{}/sns/jscode2session", self.config.api_base);
        let mut response = self
            .agent
            .get(&url)
            .query("appid", &self.config.appid)
            .query("secret", self.config.secret.expose())
            .query("js_code", code)
            .query("grant_type", "authorization_code")
            .call()
            .map_err(classify_transport_error)?;

        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(WechatError::Status(status));
        }
        let answer: Code2SessionAnswer = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_json()
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => WechatError::Timeout,
                ureq::Error::Json(_) => WechatError::BadAnswer("not JSON".into()),
                ureq::Error::BodyExceedsLimit(_) => {
                    WechatError::BadAnswer(format!("over {MAX_ANSWER_BYTES} bytes"))
                }
                other => classify_transport_error(other),
            })?;

        if let Some(errcode) = answer.errcode.filter(|&c| c != 0) {
            return Err(WechatError::Rejected {
                errcode,
                errmsg: answer.errmsg.unwrap_or_default(),
            });
        }
        match (answer.openid, answer.session_key) {
            (Some(openid), Some(session_key)) if !openid.is_empty() && !session_key.is_empty() => {
                Ok(Session {
                    openid,
                    unionid: answer.unionid.filter(|u| !u.is_empty()),
                    session_key: Secret::new(session_key),
                })
            }
            _ => Err(WechatError::BadAnswer(
                "no errcode but no openid/session_key either".into(),
            )),
        }
    }
}

/// Reduces a ureq error to its kind. ureq's own messages may quote the request URL, and ours
/// carries the AppSecret, so they are never passed on.
fn classify_transport_error(e: ureq::Error) -> WechatError {
    match e {
        ureq::Error::Timeout(_) => WechatError::Timeout,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => WechatError::Timeout,
            kind => WechatError::Unreachable(format!("I/O error: {kind}")),
        },
        ureq::Error::HostNotFound => WechatError::Unreachable("host not found".into()),
        ureq::Error::ConnectionFailed => WechatError::Unreachable("connection failed".into()),
        ureq::Error::Tls(_) => WechatError::Unreachable("TLS failure".into()),
        ureq::Error::Protocol(_) => WechatError::BadAnswer("malformed HTTP".into()),
        ureq::Error::LargeResponseHeader(_, _) => {
            WechatError::BadAnswer("response headers too large".into())
        }
        _ => WechatError::Unreachable("transport error".into()),
    }
}
