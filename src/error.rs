//! The one error type of the service and the one place that turns it into an HTTP answer.
//!
//! Each variant carries two kinds of text: what the client may read (the `message` of the JSON
//! body) and what the operator needs (the cause, logged with the request id). Keeping them apart
//! is how secrets, SQL and upstream internals stay out of responses. The mapping is an exhaustive
//! `match`, so a new variant cannot ship without a status.

use crate::fields::FieldError;
use crate::push::PushError;
use crate::ratelimit::RetryAfter;
use crate::store::StoreError;
use crate::wechat::WechatError;
use serde::Serialize;
use std::fmt;

/// Why a request failed. `Clone` so that requests sharing one login code share its outcome.
#[derive(Debug, Clone)]
pub enum Error {
    /// The request is malformed; the text says how, in client-safe words.
    BadRequest(String),
    /// The body's `Content-Type` is not one we read.
    UnsupportedMediaType,
    /// An uploaded file is not an image type we accept, or does not decode as one.
    UnsupportedImage,
    /// An uploaded image declares more pixels than we decode (a decompression bomb, or just a
    /// huge picture): refused from its header, before the pixels are allocated.
    ImageTooLarge,
    /// The client stopped sending its body for longer than `WXLOGIN_CLIENT_TIMEOUT`.
    RequestTimeout,
    /// The body is larger than `limit` bytes.
    PayloadTooLarge { limit: usize },
    /// No route has this path.
    NotFound,
    /// The route exists but not for this method; `allow` lists the methods it takes.
    MethodNotAllowed { allow: &'static str },
    /// Our own bearer token is missing, malformed, forged or expired, or its session ended.
    Unauthorized(&'static str),
    /// A refresh token is unknown, expired, or its session ended.
    RefreshRefused(&'static str),
    /// A refresh token was presented again after its rotation's grace: its session is revoked.
    RefreshReused,
    /// The caller has no session with this id (another user's is not theirs to see).
    SessionNotFound,
    /// Our own rate limit refused the request; the client may retry after this many seconds.
    RateLimited { retry_after: u64 },
    /// The operator disabled the account: no login, refresh or token is honoured.
    AccountDisabled,
    /// A deletion's code resolved to another WeChat user than the token's.
    CodeOfAnotherUser,
    /// WeChat refused a login code, or could not be asked.
    Wechat(WechatError),
    /// WeChat refused a phone-number code, or could not be asked.
    Phone(WechatError),
    /// WeChat's content check found the nickname risky (or to be reviewed, and
    /// `WXLOGIN_MODERATION_ON_REVIEW=reject`); `label` is WeChat's category, for the client.
    ContentRejected { label: i64 },
    /// An uploaded image was refused by WeChat's check before (its verdict is remembered).
    ImageRejected,
    /// WeChat's content check failed or timed out and `WXLOGIN_MODERATION_ON_ERROR=reject`.
    ModerationUnavailable,
    /// A request to `/wechat/push` that is not a push WeChat signed for us.
    Push(PushError),
    /// The database could not be used.
    Store(StoreError),
    /// The request arrived after this node began to shut down: another node (or this one,
    /// restarted) answers the retry.
    ShuttingDown,
    /// A bug: a panic in a handler or an invariant that did not hold.
    Internal(String),
}

/// A valid token whose user row is gone (deleted by an operator): the same 401 on every
/// endpoint, so the client logs in again and gets a fresh row.
const USER_GONE: &str = "this user no longer exists; log in again";

impl Error {
    /// The token's user no longer exists.
    pub fn user_gone() -> Error {
        Error::Unauthorized(USER_GONE)
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::UnsupportedMediaType | Error::UnsupportedImage => 415,
            Error::PayloadTooLarge { .. } | Error::ImageTooLarge => 413,
            Error::RequestTimeout => 408,
            Error::NotFound | Error::SessionNotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::Unauthorized(_) | Error::RefreshRefused(_) | Error::RefreshReused => 401,
            Error::RateLimited { .. } => 429,
            Error::AccountDisabled | Error::CodeOfAnotherUser => 403,
            Error::ContentRejected { .. } | Error::ImageRejected => 422,
            Error::ModerationUnavailable | Error::ShuttingDown => 503,
            Error::Push(_) => 401,
            Error::Wechat(WechatError::Rejected { errcode, .. }) => match errcode {
                40029 | 40163 => 401,
                45011 => 429,
                40226 => 403,
                _ => 502,
            },
            Error::Phone(WechatError::Rejected { errcode, .. }) => match errcode {
                40029 | 40163 => 400,
                45011 => 429,
                _ => 502,
            },
            Error::Wechat(e) | Error::Phone(e) => upstream_failure(e).0,
            Error::Store(e) => match e {
                StoreError::Unavailable(_) => 503,
                StoreError::Query(_) => 500,
            },
            Error::Internal(_) => 500,
        }
    }

    /// What the client is told: short, actionable, and free of secrets and internals.
    pub fn client_message(&self) -> String {
        match self {
            Error::BadRequest(message) => message.clone(),
            Error::UnsupportedMediaType => {
                "send the body as application/x-www-form-urlencoded or application/json".into()
            }
            Error::UnsupportedImage => "the file is not a JPEG, PNG, WebP or GIF image".into(),
            Error::ImageTooLarge => format!(
                "the image is too large: at most {side}×{side} pixels and {mib} MiB decoded",
                side = crate::avatar::MAX_SIDE,
                mib = crate::avatar::MAX_DECODED_BYTES / (1024 * 1024),
            ),
            Error::RequestTimeout => "the request body stopped arriving; send it again".into(),
            Error::PayloadTooLarge { limit } => {
                format!("the request body is larger than {limit} bytes")
            }
            Error::NotFound => "no such endpoint".into(),
            Error::MethodNotAllowed { allow } => format!("this endpoint accepts {allow}"),
            Error::Unauthorized(why) | Error::RefreshRefused(why) => (*why).into(),
            Error::RefreshReused => {
                "this refresh token was already used, so a copy of it may be in other hands: the session is ended; log in again".into()
            }
            Error::SessionNotFound => "you have no session with this id".into(),
            Error::ContentRejected { .. } => {
                "WeChat's content check refused this nickname; choose another".into()
            }
            Error::ImageRejected => {
                "WeChat's content check refused this image; choose another".into()
            }
            Error::ModerationUnavailable => {
                "WeChat's content check is unavailable, so nothing was changed; retry shortly".into()
            }
            Error::Push(why) => why.reason().into(),
            Error::ShuttingDown => "the server is shutting down; retry".into(),
            Error::RateLimited { retry_after } => {
                format!("too many requests; retry in {retry_after} s")
            }
            Error::AccountDisabled => "this account is disabled".into(),
            Error::CodeOfAnotherUser => {
                "the code belongs to another WeChat user than the token: call wx.login() as the signed-in user".into()
            }
            Error::Wechat(WechatError::Rejected { errcode, .. }) => match errcode {
                40029 => "the login code is invalid; call wx.login() again".into(),
                40163 => "the login code was already used; call wx.login() again".into(),
                45011 => "WeChat's rate limit was reached; retry in a minute".into(),
                40226 => "WeChat blocked this login: the user is flagged as high-risk".into(),
                other => format!("WeChat refused the login (errcode {other})"),
            },
            Error::Phone(WechatError::Rejected { errcode, .. }) => match errcode {
                40029 => "the phone code is invalid: send the code from the getPhoneNumber button's event (e.detail.code), not the one from wx.login()".into(),
                40163 => "the phone code was already used; ask the user to tap the button again".into(),
                45011 => "WeChat's rate limit was reached; retry in a minute".into(),
                other => format!("WeChat refused the phone number request (errcode {other})"),
            },
            Error::Wechat(e) | Error::Phone(e) => upstream_failure(e).1.into(),
            Error::Store(StoreError::Unavailable(_)) => {
                "the database is unavailable; retry shortly".into()
            }
            Error::Store(StoreError::Query(_)) | Error::Internal(_) => "internal error".into(),
        }
    }

    /// Headers the answer needs beyond the ones every answer gets: the methods a route takes
    /// (RFC 9110 requires `Allow` on a 405), `Connection: close` after an oversized body, whose
    /// unread rest is not worth reading on this connection, and at shutdown; the bearer
    /// challenge of a refused access token (RFC 6750 §3; forward-auth proxies relay it), and
    /// when to retry after our own rate limit or a shutdown (RFC 9110 `Retry-After`, whole
    /// seconds, which clients and proxies honour).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::MethodNotAllowed { allow } => vec![("Allow", (*allow).into())],
            Error::Unauthorized(_) => {
                vec![("WWW-Authenticate", "Bearer error=\"invalid_token\"".into())]
            }
            Error::PayloadTooLarge { .. } => vec![("Connection", "close".into())],
            Error::RateLimited { retry_after } => vec![("Retry-After", retry_after.to_string())],
            Error::ShuttingDown => {
                vec![("Retry-After", "1".into()), ("Connection", "close".into())]
            }
            _ => Vec::new(),
        }
    }

    /// How loudly to log the failure, by whose fault it is: ours (error), the upstream's (warn),
    /// or the client's (info: a refusal, not a problem of the service).
    pub fn log_level(&self) -> log::Level {
        match self {
            Error::Internal(_) | Error::Store(_) => log::Level::Error,
            Error::Wechat(_) | Error::Phone(_) => log::Level::Warn,
            Error::BadRequest(_)
            | Error::UnsupportedMediaType
            | Error::UnsupportedImage
            | Error::ImageTooLarge
            | Error::RequestTimeout
            | Error::PayloadTooLarge { .. }
            | Error::NotFound
            | Error::MethodNotAllowed { .. }
            | Error::Unauthorized(_)
            | Error::RefreshRefused(_)
            | Error::SessionNotFound
            | Error::ContentRejected { .. }
            | Error::ImageRejected
            | Error::RateLimited { .. } => log::Level::Info,
            Error::AccountDisabled | Error::CodeOfAnotherUser => log::Level::Info,
            Error::ModerationUnavailable => log::Level::Warn,
            Error::ShuttingDown => log::Level::Info,
            // Someone probing the push URL, or a push token that differs from the console's.
            Error::Push(_) => log::Level::Warn,
            // Possibly a stolen token: worth an operator's look.
            Error::RefreshReused => log::Level::Warn,
        }
    }

    /// A machine-readable code for the failures a client must tell apart: a refresh token to
    /// drop (`invalid_grant`, OAuth 2.0's name) or one that was reused (the session is gone).
    fn code(&self) -> Option<&'static str> {
        match self {
            Error::RefreshRefused(_) => Some("invalid_grant"),
            Error::RefreshReused => Some("refresh_token_reused"),
            // Any endpoint may answer it (the session check reads the account's status), so a
            // client tells it apart from other 403s by this code, not by the route.
            Error::AccountDisabled => Some("account_disabled"),
            _ => None,
        }
    }

    /// The JSON body: `{"status":…,"message":…}` plus WeChat's `errcode` when it gave one, and
    /// our `error` code when there is one.
    pub fn body(&self) -> ErrorBody {
        let errcode = match self {
            Error::Wechat(WechatError::Rejected { errcode, .. })
            | Error::Phone(WechatError::Rejected { errcode, .. }) => Some(*errcode),
            _ => None,
        };
        let label = match self {
            Error::ContentRejected { label } => Some(*label),
            _ => None,
        };
        ErrorBody {
            status: self.status(),
            message: self.client_message(),
            errcode,
            error: self.code(),
            label,
        }
    }
}

/// The JSON body of every failed request.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub status: u16,
    pub message: String,
    /// WeChat's errcode, so a client can tell its refusals apart; absent when it gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// What a client must do differently (`refresh_token_reused`, `invalid_grant`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// WeChat's label of refused content (a 422 of the content check), so the client can say
    /// why; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<i64>,
}

/// Status and message for a WeChat failure other than an errcode, the same for every WeChat
/// API: the upstream misbehaved (502) or was too slow (504).
fn upstream_failure(e: &WechatError) -> (u16, &'static str) {
    match e {
        WechatError::Timeout => (504, "WeChat did not answer in time; retry shortly"),
        WechatError::Rejected { .. }
        | WechatError::Status(_)
        | WechatError::BadAnswer(_)
        | WechatError::Unreachable(_)
        | WechatError::Interrupted(_) => (
            502,
            "WeChat could not be reached or gave an unusable answer; retry shortly",
        ),
    }
}

/// The operator's view: the cause, for the log line. Never contains secrets, because no variant
/// is ever built from one (the wechat and store modules strip them before they get here).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m) => write!(f, "bad request: {m}"),
            Error::UnsupportedMediaType => f.write_str("unsupported content type"),
            Error::UnsupportedImage => f.write_str("unsupported or undecodable image"),
            Error::ImageTooLarge => f.write_str("image over the decoding limits"),
            Error::PayloadTooLarge { limit } => write!(f, "body over {limit} bytes"),
            Error::RequestTimeout => f.write_str("client stalled while sending the body"),
            Error::NotFound => f.write_str("no route"),
            Error::MethodNotAllowed { allow } => write!(f, "method not allowed (allow {allow})"),
            Error::Unauthorized(why) => write!(f, "unauthorized: {why}"),
            Error::RefreshRefused(why) => write!(f, "refresh refused: {why}"),
            Error::RefreshReused => f.write_str("refresh token reused after the grace"),
            Error::SessionNotFound => f.write_str("no such session of the caller"),
            Error::ContentRejected { label } => {
                write!(f, "nickname refused by the content check (label {label})")
            }
            Error::ImageRejected => f.write_str("image refused by a remembered content check"),
            Error::ModerationUnavailable => f.write_str("the content check failed; refused"),
            Error::Push(why) => write!(f, "push refused: {why}"),
            Error::RateLimited { retry_after } => {
                write!(f, "rate limited (retry after {retry_after} s)")
            }
            Error::AccountDisabled => f.write_str("the account is disabled"),
            Error::CodeOfAnotherUser => f.write_str("the deletion code is another user's"),
            Error::Wechat(e) => write!(f, "wechat: {e}"),
            Error::Phone(e) => write!(f, "wechat phone number: {e}"),
            Error::Store(e) => write!(f, "store: {e}"),
            Error::ShuttingDown => f.write_str("arrived during shutdown"),
            Error::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<WechatError> for Error {
    fn from(e: WechatError) -> Self {
        Error::Wechat(e)
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::BadRequest(e.0)
    }
}

impl From<RetryAfter> for Error {
    fn from(r: RetryAfter) -> Self {
        Error::RateLimited {
            retry_after: r.seconds(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_errcodes_map_to_the_documented_statuses() {
        let cases = [
            (40029, 401),
            (40163, 401),
            (45011, 429),
            (40226, 403),
            (-1, 502),
            (40013, 502),
            (40125, 502),
        ];
        for (errcode, status) in cases {
            let e = Error::Wechat(WechatError::Rejected {
                errcode,
                errmsg: "x".into(),
            });
            assert_eq!(e.status(), status, "errcode {errcode}");
            assert_eq!(e.body().errcode, Some(errcode), "errcode {errcode} echoed");
            assert_eq!(e.body().status, status, "status {status} in body");
        }
    }

    #[test]
    fn our_rate_limit_is_a_429_with_retry_after() {
        let e = Error::RateLimited { retry_after: 3 };
        assert_eq!(e.status(), 429);
        assert_eq!(e.body().message, "too many requests; retry in 3 s");
        assert_eq!(e.body().errcode, None);
        assert_eq!(e.headers(), vec![("Retry-After", "3".to_string())]);
    }

    #[test]
    fn internal_causes_stay_out_of_the_body() {
        let e = Error::Store(StoreError::Query("Table 'wx.wxuser' doesn't exist".into()));
        assert_eq!(e.status(), 500);
        assert_eq!(e.body().message, "internal error");
        assert!(e.to_string().contains("doesn't exist"));
    }
}
