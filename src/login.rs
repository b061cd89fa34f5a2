//! The login use case: a `wx.login()` code in, a bearer token out, the user's row written.
//!
//! Parsing lives here too, because what counts as a valid login request (field names, the
//! `userInfo` rawData format, limits) is part of the use case, not of HTTP.

use crate::error::Error;
use crate::store::{LoginRecord, Profile, UserStore};
use crate::token::{TokenIssuer, UserClaims};
use crate::wechat::WechatClient;
use serde_json::Value;
use std::sync::Arc;

/// WeChat's codes are 32 characters; anything much longer is not a code.
const MAX_CODE_LEN: usize = 128;
/// Nicknames are at most a few dozen characters on WeChat; the column holds 255.
const MAX_NICKNAME_CHARS: usize = 255;
/// Avatar URLs are ~130 bytes on WeChat; the column holds 1024.
const MAX_AVATAR_URL_LEN: usize = 1024;

/// A parsed, validated login request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub code: String,
    /// From `userInfo`; `None` when the client sent none, which keeps the stored profile.
    pub profile: Option<Profile>,
}

impl LoginRequest {
    /// Reads an `application/x-www-form-urlencoded` body, as the original mini-program sends it.
    pub fn from_form(body: &[u8]) -> Result<LoginRequest, Error> {
        let mut code = None;
        let mut user_info = None;
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "code" => code = Some(value.into_owned()),
                "userInfo" => user_info = Some(value.into_owned()),
                _ => {}
            }
        }
        LoginRequest::build(code, user_info.as_deref().map(RawUserInfo::Text))
    }

    /// Reads an `application/json` body: `{"code": …, "userInfo": "<rawData>" | {…}}`.
    pub fn from_json(body: &[u8]) -> Result<LoginRequest, Error> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| Error::BadRequest("the body is not valid JSON".into()))?;
        let Value::Object(fields) = value else {
            return Err(Error::BadRequest("the body must be a JSON object".into()));
        };
        let code = match fields.get("code") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Error::BadRequest("code must be a string".into())),
        };
        let user_info = match fields.get("userInfo") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(RawUserInfo::Text(s)),
            Some(v) => Some(RawUserInfo::Json(v)),
        };
        LoginRequest::build(code, user_info)
    }

    fn build(code: Option<String>, user_info: Option<RawUserInfo>) -> Result<LoginRequest, Error> {
        let code = code.map(|c| c.trim().to_string()).unwrap_or_default();
        if code.is_empty() {
            return Err(Error::BadRequest(
                "code is missing: send the code from wx.login()".into(),
            ));
        }
        if code.len() > MAX_CODE_LEN || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::BadRequest(
                "code is malformed: send the code from wx.login() unchanged".into(),
            ));
        }
        let profile = match user_info {
            Some(raw) => parse_user_info(raw)?,
            None => None,
        };
        Ok(LoginRequest { code, profile })
    }
}

/// `userInfo` as it arrived: the rawData string (form, or JSON string) or an inline JSON value.
enum RawUserInfo<'a> {
    Text(&'a str),
    Json(&'a Value),
}

/// Parses WeChat's rawData (`{"nickName":…,"avatarUrl":…,"gender":…}`). Empty means absent;
/// anything that is not a JSON object is a broken client and a 400, never a crash.
fn parse_user_info(raw: RawUserInfo<'_>) -> Result<Option<Profile>, Error> {
    let parsed;
    let value = match raw {
        RawUserInfo::Text(text) if text.trim().is_empty() => return Ok(None),
        RawUserInfo::Text(text) => {
            parsed = serde_json::from_str::<Value>(text).map_err(|_| {
                Error::BadRequest(
                    "userInfo is not JSON: send the rawData string from WeChat".into(),
                )
            })?;
            &parsed
        }
        RawUserInfo::Json(value) => value,
    };
    let Value::Object(fields) = value else {
        return Err(Error::BadRequest(
            "userInfo must be a JSON object such as {\"nickName\":\"…\",\"avatarUrl\":\"…\",\"gender\":0}".into(),
        ));
    };
    let text_field = |name: &str, max_chars: usize| -> Result<Option<String>, Error> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max_chars => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(Error::BadRequest(format!(
                "userInfo.{name} is longer than {max_chars} characters"
            ))),
            Some(_) => Err(Error::BadRequest(format!(
                "userInfo.{name} must be a string"
            ))),
        }
    };
    let nick_name = text_field("nickName", MAX_NICKNAME_CHARS)?;
    let avatar_url = text_field("avatarUrl", MAX_AVATAR_URL_LEN)?;
    let gender = match fields.get("gender") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(g @ 0..=2) => Some(g),
            _ => {
                return Err(Error::BadRequest(
                    "userInfo.gender must be 0 (unknown), 1 (male) or 2 (female)".into(),
                ))
            }
        },
    };
    Ok(Some(Profile {
        nick_name,
        avatar_url,
        gender,
    }))
}

/// What a successful login produced.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub openid: String,
    /// The signed JWT, without the `Bearer ` prefix.
    pub token: String,
}

/// Runs logins: upstream exchange, row write, token.
pub struct LoginService {
    wechat: WechatClient,
    tokens: Arc<TokenIssuer>,
    store: Arc<dyn UserStore>,
}

impl LoginService {
    pub fn new(
        wechat: WechatClient,
        tokens: Arc<TokenIssuer>,
        store: Arc<dyn UserStore>,
    ) -> LoginService {
        LoginService {
            wechat,
            tokens,
            store,
        }
    }

    /// Exchanges the code, writes the row, and only then signs the token: a client is never told
    /// it is logged in unless its row is committed.
    pub fn login(&self, request: &LoginRequest) -> Result<LoginOutcome, Error> {
        let session = self.wechat.code2session(&request.code)?;
        self.store.upsert_login(&LoginRecord {
            openid: &session.openid,
            unionid: session.unionid.as_deref(),
            profile: request.profile.as_ref(),
        })?;
        let token = self.tokens.issue(UserClaims {
            openid: session.openid.clone(),
            unionid: session.unionid,
        });
        Ok(LoginOutcome {
            openid: session.openid,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_of_the_original_client_parses() {
        let body = b"code=abc123&userInfo=%7B%22nickName%22%3A%22%E5%B0%8F%E6%98%8E%F0%9F%98%80%22%2C%22avatarUrl%22%3A%22https%3A%2F%2Fx%2Fa.png%22%2C%22gender%22%3A1%7D&encryptedData=x&iv=y";
        let req = LoginRequest::from_form(body).unwrap();
        assert_eq!(req.code, "abc123");
        assert_eq!(
            req.profile,
            Some(Profile {
                nick_name: Some("小明😀".into()),
                avatar_url: Some("https://x/a.png".into()),
                gender: Some(1),
            })
        );
    }

    #[test]
    fn json_body_accepts_user_info_as_string_or_object() {
        let as_string = br#"{"code":"c1","userInfo":"{\"nickName\":\"a\"}"}"#;
        let as_object = br#"{"code":"c1","userInfo":{"nickName":"a"}}"#;
        for body in [&as_string[..], &as_object[..]] {
            let req = LoginRequest::from_json(body).unwrap();
            assert_eq!(req.profile.unwrap().nick_name.as_deref(), Some("a"));
        }
    }

    #[test]
    fn login_without_user_info_keeps_profile_absent() {
        for body in [&b"code=c1"[..], b"code=c1&userInfo="] {
            assert_eq!(LoginRequest::from_form(body).unwrap().profile, None);
        }
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let long = format!("code={}", "a".repeat(MAX_CODE_LEN + 1));
        let cases: &[(&[u8], &str)] = &[
            (b"", "code is missing"),
            (b"code=", "code is missing"),
            (b"code=%20%20", "code is missing"),
            (b"code=a%00b", "code is malformed"),
            (long.as_bytes(), "code is malformed"),
            (b"code=c&userInfo=null", "userInfo must be a JSON object"),
            (b"code=c&userInfo=undefined", "userInfo is not JSON"),
            (b"code=c&userInfo=%5B1%5D", "userInfo must be a JSON object"),
            (
                b"code=c&userInfo=%7B%22gender%22%3A7%7D",
                "userInfo.gender must be",
            ),
            (
                b"code=c&userInfo=%7B%22nickName%22%3A5%7D",
                "userInfo.nickName must be a string",
            ),
        ];
        for (body, expected) in cases {
            let err = LoginRequest::from_form(body).expect_err(&format!(
                "{} should be refused",
                String::from_utf8_lossy(body)
            ));
            assert_eq!(err.status(), 400, "{expected}");
            assert!(
                err.client_message().starts_with(expected),
                "{}: got {:?}, want {expected:?}",
                String::from_utf8_lossy(body),
                err.client_message()
            );
        }
    }

    #[test]
    fn json_bodies_of_the_wrong_shape_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "the body is not valid JSON"),
            (b"[]", "the body must be a JSON object"),
            (br#"{"code":5}"#, "code must be a string"),
            (
                br#"{"code":"c","userInfo":3}"#,
                "userInfo must be a JSON object",
            ),
        ];
        for (body, expected) in cases {
            let err = LoginRequest::from_json(body).unwrap_err();
            assert!(
                err.client_message().starts_with(expected),
                "{}: {:?}",
                String::from_utf8_lossy(body),
                err.client_message()
            );
        }
    }
}
