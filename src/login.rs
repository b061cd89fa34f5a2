//! The login use case: a `wx.login()` code in, a bearer token out, the user's row written.
//!
//! Parsing lives here too, because what counts as a valid login request (field names, the
//! `userInfo` rawData format, limits) is part of the use case, not of HTTP.

use crate::error::Error;
use crate::fields::BodyFields;
use crate::moderation::{Moderation, TextJudgement};
use crate::opendata::{self, OpenDataError};
use crate::profile;
use crate::replay::{CodeReplay, Exchange};
use crate::secret::random_hex;
use crate::session::{ClientInfo, SessionService, TokenPair};
use crate::singleflight::CodeFlights;
use crate::store::{LoginRecord, UserStore};
use crate::user::Profile;
use crate::wechat::{Session, WechatClient, WechatError};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

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
    /// `userInfo` exactly as sent (WeChat's rawData), which the signature covers.
    pub raw_data: Option<String>,
    pub signature: Option<String>,
    pub encrypted_data: Option<String>,
    pub iv: Option<String>,
}

impl LoginRequest {
    /// Reads an `application/x-www-form-urlencoded` body, as the original mini-program sends it.
    pub fn from_form(body: &[u8]) -> Result<LoginRequest, Error> {
        LoginRequest::from_fields(BodyFields::from_form(body))
    }

    /// Reads an `application/json` body: `{"code": …, "userInfo": "<rawData>" | {…}, …}`.
    pub fn from_json(body: &[u8]) -> Result<LoginRequest, Error> {
        LoginRequest::from_fields(BodyFields::from_json(body)?)
    }

    /// Reads the login fields of a parsed body.
    pub fn from_fields(mut fields: BodyFields) -> Result<LoginRequest, Error> {
        let code = fields.code("wx.login()")?;
        let raw_data = fields.take("userInfo")?;
        let profile = match (&raw_data, fields.user_info_object()) {
            (Some(text), _) => Some(parse_user_info_text(text)?),
            (None, Some(object)) => Some(profile_from_json(object)?),
            (None, None) => None,
        };
        Ok(LoginRequest {
            code,
            profile,
            raw_data,
            signature: fields.take("signature")?,
            encrypted_data: fields.take("encryptedData")?,
            iv: fields.take("iv")?,
        })
    }

    /// Whether the client sent anything that proves the profile (signature or encrypted data).
    fn has_verification_material(&self) -> bool {
        self.signature.is_some() || self.encrypted_data.is_some() || self.iv.is_some()
    }
}

/// Parses WeChat's rawData string; anything that is not a JSON object is a broken client and a
/// 400, never a crash.
fn parse_user_info_text(text: &str) -> Result<Profile, Error> {
    let value = serde_json::from_str::<Value>(text).map_err(|_| {
        Error::BadRequest("userInfo is not JSON: send the rawData string from WeChat".into())
    })?;
    profile_from_json(&value)
}

/// Reads `{"nickName":…,"avatarUrl":…,"gender":…}`, checking each field's type and size.
fn profile_from_json(value: &Value) -> Result<Profile, Error> {
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
    let gender = profile::parse_gender(fields.get("gender"), "userInfo.gender")?;
    Ok(Profile {
        nick_name,
        avatar_url,
        gender,
    })
}

/// What happened to the profile a login carried; every 200 says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileStatus {
    /// Signature and/or encrypted data verified with the user's session_key; profile applied.
    Verified,
    /// Only rawData was sent; applied as is, as the original tutorial did.
    Unverified,
    /// Material was sent but did not verify; the stored profile was kept.
    Rejected(OpenDataError),
    /// The profile is WeChat's anonymous placeholder; the stored profile was kept.
    Anonymous,
    /// A field breaks the rules `PUT /api/me` enforces (the text says which); the stored profile
    /// was kept.
    Unsafe(&'static str),
    /// WeChat's content check refused the nickname; the stored profile was kept.
    Content,
    /// WeChat's content check could not be asked (`WXLOGIN_MODERATION_ON_ERROR=reject`); the
    /// stored profile was kept.
    Unchecked,
    /// No profile was sent; the stored profile was kept.
    Absent,
}

/// The nickname `wx.getUserProfile` has returned to everyone since late 2022, with a grey avatar.
const ANONYMOUS_NICKNAME: &str = "微信用户";

impl ProfileStatus {
    /// The word the login answer reports: the client only needs to know whether its profile was
    /// applied, so every reason for keeping the stored one is "rejected".
    pub fn label(self) -> &'static str {
        match self {
            ProfileStatus::Verified => "verified",
            ProfileStatus::Unverified => "unverified",
            ProfileStatus::Absent => "absent",
            ProfileStatus::Rejected(_)
            | ProfileStatus::Anonymous
            | ProfileStatus::Unsafe(_)
            | ProfileStatus::Content
            | ProfileStatus::Unchecked => "rejected",
        }
    }

    /// Why a sent profile was not applied, in client-safe words; `None` when it was (or none
    /// was sent).
    pub fn rejection(self) -> Option<&'static str> {
        match self {
            ProfileStatus::Rejected(why) => Some(why.reason()),
            ProfileStatus::Anonymous => Some(
                "anonymous placeholder profile (微信用户) not stored: let the user choose a nickname and avatar (PUT /api/me, POST /api/me/avatar)",
            ),
            ProfileStatus::Unsafe(why) => Some(why),
            // Short words, like `PUT /api/me`'s 422 and 503, so a client can branch on them.
            ProfileStatus::Content => Some("content"),
            ProfileStatus::Unchecked => Some("content_check_unavailable"),
            ProfileStatus::Verified | ProfileStatus::Unverified | ProfileStatus::Absent => None,
        }
    }

    /// Holds a profile that passed verification (or needed none) to the rules for storing one;
    /// the status to report and the profile to store (`None` keeps the stored one). WeChat's
    /// anonymous placeholder would overwrite the nickname and avatar the user chose through
    /// `PUT /api/me` and `POST /api/me/avatar`, so it is never stored; a profile that breaks the
    /// rules of `PUT /api/me` is reported and not stored. The login itself succeeds either way.
    fn screen(self, profile: Option<Profile>) -> (ProfileStatus, Option<Profile>) {
        let Some(profile) = profile else {
            return (self, None);
        };
        if profile.nick_name.as_deref() == Some(ANONYMOUS_NICKNAME) {
            return (ProfileStatus::Anonymous, None);
        }
        match safe_profile(&profile) {
            Ok(safe) => (self, Some(safe)),
            Err(why) => (ProfileStatus::Unsafe(why), None),
        }
    }
}

/// Checks the request's material against one session_key; the verified profile and, from
/// encrypted data, the unionid.
fn verify_material(
    request: &LoginRequest,
    session_key: &str,
    appid: &str,
    openid: &str,
) -> Result<(Profile, Option<String>), OpenDataError> {
    if request.encrypted_data.is_some() != request.iv.is_some()
        || (request.signature.is_some() && request.raw_data.is_none())
    {
        return Err(OpenDataError::IncompleteMaterial);
    }
    if let (Some(signature), Some(raw_data)) = (&request.signature, &request.raw_data) {
        if !opendata::signature_matches(raw_data, session_key, signature) {
            return Err(OpenDataError::SignatureMismatch);
        }
    }
    let mut profile = request.profile.clone().unwrap_or_default();
    let mut unionid = None;
    if let (Some(data), Some(iv)) = (&request.encrypted_data, &request.iv) {
        let fields = opendata::decrypt(data, iv, session_key, appid)?;
        if fields
            .get("openId")
            .and_then(Value::as_str)
            .is_some_and(|o| o != openid)
        {
            return Err(OpenDataError::OtherUser);
        }
        // The decrypted profile wins over rawData.
        profile = profile_from_json(&Value::Object(fields.clone()))
            .map_err(|_| OpenDataError::NotJson)?;
        unionid = fields
            .get("unionId")
            .and_then(Value::as_str)
            .map(String::from);
    }
    Ok((profile, unionid))
}

/// The profile with its nickname trimmed, or why it must not be stored. An empty `avatarUrl`
/// (WeChat sends one for a user without an avatar) is no avatar: the stored one is kept.
fn safe_profile(profile: &Profile) -> Result<Profile, &'static str> {
    let nick_name = match profile.nick_name.as_deref().map(str::trim) {
        Some(nick) => match profile::nickname_problem(nick) {
            Some(why) => return Err(why),
            None => Some(nick.to_string()),
        },
        None => None,
    };
    let avatar_url = profile
        .avatar_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty());
    if let Some(why) = avatar_url.and_then(profile::avatar_url_problem) {
        return Err(why);
    }
    Ok(Profile {
        nick_name,
        avatar_url: avatar_url.map(str::to_string),
        ..profile.clone()
    })
}

/// A judged profile: what to report, what to store (`None` keeps the stored profile), and the
/// unionid the encrypted data carried, if any.
type Judged = (ProfileStatus, Option<Profile>, Option<String>);

/// What a successful login produced.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The new session's access and refresh tokens.
    pub tokens: TokenPair,
    pub profile: ProfileStatus,
    /// When the deletion the user asked for erases the account (unix seconds): logging in
    /// during the grace period works, so that the user can cancel it.
    pub erase_at: Option<i64>,
}

/// Runs logins: upstream exchange, profile verification, row write, token.
pub struct LoginService {
    wechat: WechatClient,
    appid: String,
    sessions: Arc<SessionService>,
    store: Arc<dyn UserStore>,
    /// Exchanges in flight on this node, shared by the requests that carry the same code.
    flights: CodeFlights<Exchange, Error>,
    /// Codes shared by every node, and their outcomes within the replay window.
    replay: CodeReplay,
    /// Checks nicknames before they are stored; `None` stores them unchecked.
    moderation: Option<Arc<Moderation>>,
}

impl LoginService {
    /// `replay_window` is how long a code's outcome is kept for retries (zero: not at all);
    /// `wait_limit` bounds how long a duplicate request waits for the first one's exchange.
    pub fn new(
        wechat: WechatClient,
        appid: String,
        sessions: Arc<SessionService>,
        store: Arc<dyn UserStore>,
        replay_window: Duration,
        wait_limit: Duration,
    ) -> LoginService {
        LoginService {
            wechat,
            replay: CodeReplay::new(store.clone(), appid.clone(), replay_window, wait_limit),
            appid,
            sessions,
            store,
            flights: CodeFlights::new(
                wait_limit,
                // A duplicate that waited as long as the upstream call may take saw it time out.
                Error::Wechat(WechatError::Timeout),
                Error::Internal("the login sharing this code failed unexpectedly".into()),
            ),
            moderation: None,
        }
    }

    /// Holds the nicknames of login profiles to `moderation`'s content check.
    pub fn with_moderation(mut self, moderation: Arc<Moderation>) -> LoginService {
        self.moderation = Some(moderation);
        self
    }

    /// Logs in. Requests with one code share one jscode2session call (on this node, and through
    /// the database across nodes), and a retry within the replay window, on any node, reuses its
    /// outcome, so an honest double tap or retry never sees "code been used". Each request still judges its own profile, writes its own row, and opens its
    /// own session, whose tokens are signed only once the row and the session are committed.
    pub fn login(
        &self,
        request: &LoginRequest,
        client: ClientInfo<'_>,
    ) -> Result<LoginOutcome, Error> {
        let exchange = self.flights.run(&request.code, || {
            self.replay.exchange(&request.code, || {
                self.wechat.code2session(&request.code).map_err(Error::from)
            })
        })?;
        let session = &exchange.session;
        let (status, profile, decrypted_unionid) = self.judge_profile(request, session)?;
        let unionid = session.unionid.clone().or(decrypted_unionid);
        // The user's row, the code's outcome and the session: one transaction where the store
        // can (one commit, not three); tokens are signed only once it is committed.
        let draft = self.sessions.draft(client);
        let user = self.store.write_login(
            &LoginRecord {
                openid: &session.openid,
                uid: &random_hex(16),
                unionid: unionid.as_deref(),
                profile: profile.as_ref(),
                session_key: &session.session_key,
            },
            self.replay.outcome(&exchange).as_ref(),
            &draft.row(),
        )?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        let tokens = self
            .sessions
            .issue(&draft, &user.uid, &session.openid, unionid.as_deref());
        Ok(LoginOutcome {
            tokens,
            profile: status,
            erase_at: user.erase_at,
        })
    }

    /// Applies the rules: material that verifies (with this login's session_key, or the user's
    /// previous one, which clients that call wx.login() after fetching the profile used) applies
    /// the profile; material that fails keeps the stored profile; bare rawData applies unverified.
    fn judge_profile(&self, request: &LoginRequest, session: &Session) -> Result<Judged, Error> {
        let (status, profile, unionid) = self.verify_profile(request, session)?;
        let (status, profile) = status.screen(profile);
        let (status, profile) = self.moderate(status, profile, &session.openid);
        Ok((status, profile, unionid))
    }

    /// Holds a profile about to be stored to the content check of its nickname. A login never
    /// fails over profile data: a refused or unchecked nickname keeps the stored profile and
    /// says so in the status.
    fn moderate(
        &self,
        status: ProfileStatus,
        profile: Option<Profile>,
        openid: &str,
    ) -> (ProfileStatus, Option<Profile>) {
        let (Some(moderation), Some(nick)) = (
            &self.moderation,
            profile.as_ref().and_then(|p| p.nick_name.as_deref()),
        ) else {
            return (status, profile);
        };
        match moderation.judge_nickname(openid, nick) {
            TextJudgement::Accept => (status, profile),
            TextJudgement::Refuse { .. } => (ProfileStatus::Content, None),
            TextJudgement::Unavailable => (ProfileStatus::Unchecked, None),
        }
    }

    /// The verification half of `judge_profile`.
    fn verify_profile(&self, request: &LoginRequest, session: &Session) -> Result<Judged, Error> {
        if !request.has_verification_material() {
            return Ok(match &request.profile {
                Some(profile) => (ProfileStatus::Unverified, Some(profile.clone()), None),
                None => (ProfileStatus::Absent, None, None),
            });
        }
        let key = session.session_key.expose();
        let first = match verify_material(request, key, &self.appid, &session.openid) {
            Ok((profile, unionid)) => return Ok((ProfileStatus::Verified, Some(profile), unionid)),
            Err(e) => e,
        };
        if first != OpenDataError::IncompleteMaterial {
            if let Some(previous) = self.store.find_session_key(&session.openid)? {
                if let Ok((profile, unionid)) =
                    verify_material(request, previous.expose(), &self.appid, &session.openid)
                {
                    return Ok((ProfileStatus::Verified, Some(profile), unionid));
                }
            }
        }
        Ok((ProfileStatus::Rejected(first), None, None))
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
    fn an_empty_avatar_url_is_no_avatar_and_a_plain_http_one_is_refused() {
        let with = |url: &str| Profile {
            nick_name: Some("a".into()),
            avatar_url: Some(url.into()),
            gender: Some(1),
        };
        let cases = [
            ("", Ok(None)),
            ("  ", Ok(None)),
            ("https://x/a.png", Ok(Some("https://x/a.png".to_string()))),
            ("http://x/a.png", Err("avatarUrl must be an https:// URL")),
        ];
        for (url, expected) in cases {
            let got = safe_profile(&with(url)).map(|p| p.avatar_url);
            assert_eq!(got, expected, "avatarUrl {url:?}");
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
        let long = format!("code={}", "a".repeat(crate::fields::MAX_CODE_LEN + 1));
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
