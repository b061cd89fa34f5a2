//! WeChat's message push (消息推送) as our `/wechat/push` receives it: the `GET` URL check the
//! console makes when the push URL is saved, and `POST` events in JSON, in plain mode or in
//! safe mode (安全模式, encrypted with the EncodingAESKey).
//!
//! Anyone can reach the push URL, and a forged `wxa_media_check` event would publish any image
//! as a user's avatar, so nothing is read before the signature holds: `signature` is the sha1
//! of the push token, `timestamp` and `nonce` sorted and joined; in safe mode `msg_signature`
//! also covers the ciphertext, which then decrypts to the event followed by our appid. A
//! timestamp further than [`MAX_SKEW_SECS`] from our clock is refused too, so a push captured
//! on the way cannot be replayed later.

use crate::secret::Secret;
use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use serde_json::Value;
use sha1::{Digest, Sha1};
use std::fmt;

/// How far a push's `timestamp` may be from our clock, either way: WeChat sends the time of
/// sending, so five minutes covers clock skew and retries while bounding replays.
pub const MAX_SKEW_SECS: i64 = 300;

/// WeChat pads to 32 bytes (its WXBizMsgCrypt sample does), not to the AES block size.
const PAD_BLOCK: usize = 32;

/// Decodes EncodingAESKeys. WeChat draws them as 43 random base64 characters, so the last one
/// usually carries bits beyond the 32 bytes, which a strict decoder refuses; WeChat's own
/// sample code ignores them.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a push was refused. Every case is a 401: the sender is not WeChat, or not for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// `signature` or `msg_signature` is missing or wrong.
    BadSignature,
    /// `timestamp` is missing or too far from now.
    Stale,
    /// The body is not what the mode expects, or `Encrypt` does not decrypt to a framed message.
    BadBody,
    /// The decrypted message names another appid.
    WrongAppid,
}

impl PushError {
    /// Client-safe words for the 401 body.
    pub fn reason(self) -> &'static str {
        match self {
            PushError::BadSignature => "the push signature is missing or wrong",
            PushError::Stale => "the push timestamp is missing or too old",
            PushError::BadBody => "the push body is not a push of the configured mode",
            PushError::WrongAppid => "the push is for another appid",
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Whether an EncodingAESKey is usable: 43 characters of base64 standing for 32 bytes. Config
/// checks it at start-up, so a push never finds a bad key.
pub fn aes_key_is_valid(key: &str) -> bool {
    aes_key(key).is_some()
}

fn aes_key(key: &str) -> Option<[u8; 32]> {
    if key.len() != 43 {
        return None;
    }
    LENIENT
        .decode(format!("{key}="))
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
}

/// What checks pushes: the push token (令牌), the EncodingAESKey in safe mode, our appid.
#[derive(Clone, Debug)]
pub struct PushVerifier {
    token: Secret,
    aes_key: Option<Secret>,
    appid: String,
}

impl PushVerifier {
    /// `aes_key` must have passed [`aes_key_is_valid`].
    pub fn new(token: Secret, aes_key: Option<Secret>, appid: String) -> PushVerifier {
        PushVerifier {
            token,
            aes_key,
            appid,
        }
    }

    /// The `GET` URL check: the `echostr` to echo when `signature` and `timestamp` hold.
    pub fn url_check(&self, query: &Query, now: i64) -> Result<String, PushError> {
        self.check_signature(query, now)?;
        Ok(query.get("echostr").to_string())
    }

    /// A `POST` push: the event JSON once the signatures (and in safe mode the decryption and
    /// appid) hold. With an EncodingAESKey configured only encrypted pushes are taken: a plain
    /// push's signature does not cover its body, so one captured query could carry any event
    /// for as long as its timestamp is fresh.
    pub fn open(&self, query: &Query, body: &[u8], now: i64) -> Result<Value, PushError> {
        self.check_signature(query, now)?;
        let body: Value = serde_json::from_slice(body).map_err(|_| PushError::BadBody)?;
        let encrypted = body.get("Encrypt").and_then(Value::as_str);
        let (key, encrypted) = match (&self.aes_key, encrypted) {
            (None, None) => return Ok(body),
            (Some(key), Some(encrypted)) => (key, encrypted),
            _ => return Err(PushError::BadBody),
        };
        let expected = signature(&[
            self.token.expose(),
            query.get("timestamp"),
            query.get("nonce"),
            encrypted,
        ]);
        if !constant_time_eq(query.get("msg_signature"), &expected) {
            return Err(PushError::BadSignature);
        }
        let key = aes_key(key.expose()).ok_or(PushError::BadBody)?;
        let (message, appid) = decrypt(&key, encrypted).ok_or(PushError::BadBody)?;
        if appid != self.appid {
            return Err(PushError::WrongAppid);
        }
        serde_json::from_str(&message).map_err(|_| PushError::BadBody)
    }

    /// `signature` over token, timestamp and nonce, and the timestamp within [`MAX_SKEW_SECS`].
    fn check_signature(&self, query: &Query, now: i64) -> Result<(), PushError> {
        let (timestamp, nonce) = (query.get("timestamp"), query.get("nonce"));
        let expected = signature(&[self.token.expose(), timestamp, nonce]);
        if !constant_time_eq(query.get("signature"), &expected) {
            return Err(PushError::BadSignature);
        }
        match timestamp.parse::<i64>() {
            Ok(t) if (now - t).abs() <= MAX_SKEW_SECS => Ok(()),
            _ => Err(PushError::Stale),
        }
    }
}

/// A push's query string, parsed once.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: &str) -> Query {
        Query(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `name`, or `""`.
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value)
    }
}

/// Lowercase hex sha1 of the parts sorted as strings and joined: WeChat's push signature.
fn signature(parts: &[&str]) -> String {
    let mut parts = parts.to_vec();
    parts.sort_unstable();
    crate::secret::hex(&Sha1::digest(parts.concat().as_bytes()))
}

/// Compares without stopping at the first difference, so the time taken says nothing about
/// how much of a forged signature was right.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Opens `Encrypt`: AES-256-CBC with IV = the key's first 16 bytes, padding to 32-byte blocks,
/// framing 16 random bytes ‖ length (4 bytes, big-endian) ‖ message ‖ appid.
fn decrypt(key: &[u8; 32], encrypted: &str) -> Option<(String, String)> {
    let mut data = base64::engine::general_purpose::STANDARD
        .decode(encrypted)
        .ok()?;
    if data.is_empty() || data.len() % 16 != 0 {
        return None;
    }
    let iv: [u8; 16] = key[..16].try_into().ok()?;
    let plain = cbc::Decryptor::<Aes256>::new(key.into(), &iv.into())
        .decrypt_padded::<NoPadding>(&mut data)
        .ok()?;
    let pad = usize::from(*plain.last()?);
    if !(1..=PAD_BLOCK).contains(&pad) || pad > plain.len() {
        return None;
    }
    let framed = plain.get(16..plain.len() - pad)?;
    let (length, rest) = framed.split_at_checked(4)?;
    let length = u32::from_be_bytes(length.try_into().ok()?) as usize;
    let (message, appid) = rest.split_at_checked(length)?;
    Some((
        String::from_utf8(message.to_vec()).ok()?,
        String::from_utf8(appid.to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mock_wechat::{media_check_event, PushKeys, Suggest};

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx1234567890abcdef";

    fn verifier(aes: Option<&str>) -> PushVerifier {
        PushVerifier::new(Secret::new("pushtoken"), aes.map(Secret::new), APPID.into())
    }

    fn keys(aes: Option<&str>) -> PushKeys {
        PushKeys {
            token: "pushtoken".into(),
            aes_key: aes.map(str::to_owned),
            appid: APPID.into(),
        }
    }

    #[test]
    fn pushes_sealed_like_wechats_open_in_both_modes() {
        let event = media_check_event(APPID, "t-1", Suggest::Risky);
        for aes in [None, Some(KEY)] {
            let push = keys(aes).seal_at(&event, 1_700_000_000, "7").unwrap();
            let opened = verifier(aes)
                .open(
                    &Query::parse(&push.query),
                    push.body.as_bytes(),
                    1_700_000_100,
                )
                .unwrap();
            assert_eq!(opened["trace_id"], "t-1", "{aes:?}");
        }
    }

    #[test]
    fn forged_stale_foreign_and_downgraded_pushes_are_refused() {
        let event = media_check_event(APPID, "t-1", Suggest::Pass);
        let now = 1_700_000_000;
        let guess = |aes: Option<&str>| PushKeys {
            token: "guess".into(),
            ..keys(aes)
        };
        let other_app = PushKeys {
            appid: "wxffffffffffffffff".into(),
            ..keys(Some(KEY))
        };
        let cases = [
            (
                guess(None),
                None,
                now,
                PushError::BadSignature,
                "plain, wrong token",
            ),
            (
                guess(Some(KEY)),
                Some(KEY),
                now,
                PushError::BadSignature,
                "safe, wrong token",
            ),
            (
                keys(Some(KEY)),
                Some(KEY),
                now - 301,
                PushError::Stale,
                "replayed later",
            ),
            (
                keys(None),
                None,
                now + 301,
                PushError::Stale,
                "from the future",
            ),
            (
                other_app,
                Some(KEY),
                now,
                PushError::WrongAppid,
                "another app's push",
            ),
            (
                keys(None),
                Some(KEY),
                now,
                PushError::BadBody,
                "plain where safe is set",
            ),
            (
                keys(Some(KEY)),
                None,
                now,
                PushError::BadBody,
                "safe where plain is set",
            ),
        ];
        for (sealer, aes, sent_at, expected, why) in cases {
            let push = sealer.seal_at(&event, sent_at as u64, "9").unwrap();
            let result = verifier(aes).open(&Query::parse(&push.query), push.body.as_bytes(), now);
            assert_eq!(result.unwrap_err(), expected, "{why}");
        }
    }

    #[test]
    fn the_url_check_echoes_only_with_a_good_signature() {
        let now = 1_700_000_000;
        let good = format!(
            "signature={}&timestamp={now}&nonce=42&echostr=hello",
            mock_wechat::push_signature("pushtoken", &now.to_string(), "42")
        );
        assert_eq!(
            verifier(None).url_check(&Query::parse(&good), now).unwrap(),
            "hello"
        );
        let bad = good.replace("signature=", "signature=0");
        assert_eq!(
            verifier(None).url_check(&Query::parse(&bad), now),
            Err(PushError::BadSignature)
        );
    }

    #[test]
    fn encoding_aes_keys_are_decoded_leniently_and_checked() {
        assert!(aes_key_is_valid(KEY), "trailing bits in the last character");
        for bad in ["", "short", &format!("{KEY}A"), &KEY.replace('a', "!")] {
            assert!(!aes_key_is_valid(bad), "{bad:?}");
        }
    }
}
