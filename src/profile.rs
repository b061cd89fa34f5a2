//! Today's profile flow: the user types a nickname (`<input type="nickname">`) and picks an
//! avatar (`<button open-type="chooseAvatar">`), and the mini-program sends both here, since
//! `wx.getUserProfile` has returned an anonymous profile since late 2022.

use crate::error::Error;
use crate::store::UserStore;
use crate::user::{Profile, User};
use serde_json::Value;
use std::sync::Arc;

/// WeChat's own nickname input allows about this many characters.
pub const MAX_NICKNAME_CHARS: usize = 64;

/// Reads `PUT /api/me`'s JSON body: `{"nickName": …, "gender": 0|1|2}` (gender optional).
pub fn parse_update(body: &[u8]) -> Result<Profile, Error> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Error::BadRequest("the body is not valid JSON".into()))?;
    let Value::Object(fields) = value else {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
    };
    let nick_name = match fields.get("nickName") {
        Some(Value::String(s)) => validate_nickname(s)?,
        None | Some(Value::Null) => {
            return Err(Error::BadRequest("nickName is missing".into()));
        }
        Some(_) => return Err(Error::BadRequest("nickName must be a string".into())),
    };
    let gender = parse_gender(fields.get("gender"), "gender")?;
    Ok(Profile {
        nick_name: Some(nick_name),
        avatar_url: None,
        gender,
    })
}

/// WeChat's gender field: absent or null, else 0 (unknown), 1 (male) or 2 (female). `name` is
/// how the client knows the field, for the error message.
pub fn parse_gender(value: Option<&Value>, name: &str) -> Result<Option<i64>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(g @ 0..=2) => Ok(Some(g)),
            _ => Err(Error::BadRequest(format!(
                "{name} must be 0 (unknown), 1 (male) or 2 (female)"
            ))),
        },
    }
}

/// Trimmed, non-empty, at most 64 characters (Unicode scalar values, not bytes: an emoji is
/// one), and no control or bidirectional-override characters.
pub fn validate_nickname(raw: &str) -> Result<String, Error> {
    let nick = raw.trim();
    match nickname_problem(nick) {
        Some(why) => Err(Error::BadRequest(why.into())),
        None => Ok(nick.to_string()),
    }
}

/// `MAX_NICKNAME_CHARS` in words, for a message that must be `'static`.
const NICKNAME_TOO_LONG: &str = "nickName is longer than 64 characters";

/// What is wrong with a (trimmed) nickname, in client-safe words. Control characters break
/// logs and layouts; bidirectional overrides (U+202A–U+202E, U+2066–U+2069) make a name read
/// differently from what it is, which impersonation relies on.
pub fn nickname_problem(nick: &str) -> Option<&'static str> {
    if nick.is_empty() {
        Some("nickName is empty")
    } else if nick.chars().count() > MAX_NICKNAME_CHARS {
        Some(NICKNAME_TOO_LONG)
    } else if nick.chars().any(char::is_control) {
        Some("nickName must not contain control characters")
    } else if nick.chars().any(is_bidi_control) {
        Some("nickName must not contain bidirectional-override characters")
    } else {
        None
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// What is wrong with an avatar URL a client sent: it must be `https://`, because the
/// mini-program shows it to other users and a plain-http image is both trackable and
/// replaceable on the way; no control characters either.
pub fn avatar_url_problem(url: &str) -> Option<&'static str> {
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if !https || url.len() == 8 {
        Some("avatarUrl must be an https:// URL")
    } else if url.chars().any(char::is_control) {
        Some("avatarUrl must not contain control characters")
    } else {
        None
    }
}

/// Reads and writes users' profiles.
pub struct ProfileService {
    store: Arc<dyn UserStore>,
    /// Prefix of avatar URLs, without a trailing slash: `WXLOGIN_PUBLIC_URL`, or else the
    /// server's own address, known only once it is bound (see [`ProfileService::served_at`]).
    public_url: Option<String>,
}

impl ProfileService {
    pub fn new(store: Arc<dyn UserStore>, public_url: Option<String>) -> ProfileService {
        ProfileService { store, public_url }
    }

    /// Tells the service where the server listens: the avatar URL prefix when no public URL
    /// was configured. The server calls it once it has bound (its port may have been 0).
    pub fn served_at(&mut self, url: String) {
        self.public_url.get_or_insert(url);
    }

    /// The stored user; a valid token for a deleted user is treated as a stale login.
    pub fn user(&self, openid: &str) -> Result<User, Error> {
        self.store.find_user(openid)?.ok_or_else(Error::user_gone)
    }

    /// Applies the fields of `profile` that are set, and returns the updated user.
    pub fn update(&self, openid: &str, profile: &Profile) -> Result<User, Error> {
        if !self.store.update_profile(openid, profile)? {
            return Err(Error::user_gone());
        }
        self.user(openid)
    }

    /// The image stored under `hash`, with its content type.
    pub fn avatar(&self, hash: &str) -> Result<Option<(String, Vec<u8>)>, Error> {
        Ok(self.store.find_avatar(hash)?)
    }

    /// The content type of the image stored under `hash`, without its bytes.
    pub fn avatar_type(&self, hash: &str) -> Result<Option<String>, Error> {
        Ok(self.store.find_avatar_type(hash)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_trimmed_and_counted_in_characters() {
        let emoji_64 = "😀".repeat(64);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("  小明 😀  ", Ok("小明 😀")),
            (&emoji_64, Ok(&emoji_64)),
            ("", Err("nickName is empty")),
            ("   ", Err("nickName is empty")),
            (
                "a\u{0007}b",
                Err("nickName must not contain control characters"),
            ),
            (
                "line\nbreak",
                Err("nickName must not contain control characters"),
            ),
        ];
        for (input, expected) in cases {
            let got = validate_nickname(input).map_err(|e| e.client_message());
            assert_eq!(
                got.as_deref().map_err(|e| e.as_str()),
                *expected,
                "input {input:?}"
            );
        }
        let too_long = "😀".repeat(65);
        assert!(validate_nickname(&too_long).is_err(), "65 emoji");
        assert!(
            NICKNAME_TOO_LONG.contains(&MAX_NICKNAME_CHARS.to_string()),
            "the message states the real limit"
        );
    }

    #[test]
    fn nicknames_with_bidi_overrides_are_refused() {
        for nick in ["ab\u{202E}cd", "\u{2066}admin\u{2069}", "x\u{202A}y"] {
            assert_eq!(
                nickname_problem(nick),
                Some("nickName must not contain bidirectional-override characters"),
                "{nick:?}"
            );
        }
        assert_eq!(
            nickname_problem("مرحبا Ann"),
            None,
            "right-to-left text itself is fine"
        );
    }

    #[test]
    fn avatar_urls_must_be_https() {
        let cases = [
            ("https://thirdwx.qlogo.cn/mmopen/x/132", None),
            ("HTTPS://example.com/a.png", None),
            (
                "http://example.com/a.png",
                Some("avatarUrl must be an https:// URL"),
            ),
            (
                "javascript:alert(1)",
                Some("avatarUrl must be an https:// URL"),
            ),
            ("https://", Some("avatarUrl must be an https:// URL")),
            (
                "//example.com/a.png",
                Some("avatarUrl must be an https:// URL"),
            ),
            (
                "https://example.com/a\nb.png",
                Some("avatarUrl must not contain control characters"),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(avatar_url_problem(url), expected, "{url}");
        }
    }

    #[test]
    fn update_bodies_are_validated() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (br#"{"nickName":"Ann","gender":2}"#, None),
            (br#"{"nickName":"Ann"}"#, None),
            (br#"{"gender":2}"#, Some("nickName is missing")),
            (br#"{"nickName":5}"#, Some("nickName must be a string")),
            (br#"{"nickName":"A","gender":3}"#, Some("gender must be")),
            (b"[]", Some("the body must be a JSON object")),
            (b"{", Some("the body is not valid JSON")),
        ];
        for (body, error) in cases {
            match (parse_update(body), error) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => assert!(
                    e.client_message().starts_with(want),
                    "{}: {}",
                    String::from_utf8_lossy(body),
                    e.client_message()
                ),
                (got, want) => panic!(
                    "{}: got {got:?}, want {want:?}",
                    String::from_utf8_lossy(body)
                ),
            }
        }
    }
}
