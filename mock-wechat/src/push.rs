//! WeChat's message push (消息推送) as a mini-program's server receives it, in JSON format:
//! the signatures, and the encryption of safe mode (安全模式) with the EncodingAESKey. The
//! mock pushes media-check verdicts with it, and it is public so that a server's tests can
//! forge good and bad pushes ([`PushKeys::seal`]) and compute the URL check's signature
//! ([`signature`]), while the mock's own tests open pushes ([`PushKeys::open`]).
//!
//! - `signature` = lowercase hex sha1 of the concatenation of the token, the timestamp and
//!   the nonce, sorted as strings: on every push and on the `GET` URL check.
//! - Plain mode: `POST <url>?signature=…&timestamp=…&nonce=…`, the event JSON as the body.
//! - Safe mode: `POST <url>?signature=…&timestamp=…&nonce=…&encrypt_type=aes&msg_signature=…`
//!   with body `{"ToUserName":…,"Encrypt":…}`. `Encrypt` = base64 of AES-256-CBC (key =
//!   base64 of EncodingAESKey + `=`, 32 bytes; IV = its first 16 bytes; PKCS#7 padding to
//!   32-byte blocks) of 16 random bytes ‖ the event's length (4 bytes, big-endian) ‖ the
//!   event ‖ the appid. `msg_signature` = sha1 as above of token, timestamp, nonce and
//!   `Encrypt`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::security::Suggest;

/// The push token the mock signs with unless told otherwise. Public, like the default
/// secret: a real token must never be given to the mock.
pub const DEFAULT_PUSH_TOKEN: &str = "mockwechatpushtoken";

/// The mini-program's original ID (`gh_` + 12 hex digits), the `ToUserName` of its pushes.
pub const MINI_PROGRAM_USERNAME: &str = "gh_0123456789ab";

/// Decodes EncodingAESKeys. WeChat draws them as 43 random base64 characters, so the last
/// one usually carries bits past the 32 bytes, which a strict decoder refuses; WeChat's
/// own sample code ignores them, and so must everyone.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The `FromUserName` of pushes: the platform's push service, an openid-like name.
const PUSH_SERVICE_USERNAME: &str = "oMockWechatPushService000000";

/// WeChat pads to 32 bytes, not to the AES block size, as its sample code (WXBizMsgCrypt)
/// does.
const PAD_BLOCK: usize = 32;

/// Why a push could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The EncodingAESKey is not 43 characters of base64 standing for 32 bytes.
    BadKey,
    /// `signature` or `msg_signature` is missing or wrong.
    BadSignature,
    /// The body is not what the mode expects (JSON, with `Encrypt` in safe mode).
    BadBody,
    /// `Encrypt` is not base64 of a well-padded, well-framed message.
    BadEncrypt,
    /// The decrypted message names another appid.
    WrongAppid,
    /// No randomness from the operating system for the nonce or the random prefix.
    NoRandomness,
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::BadKey => "the EncodingAESKey is not 43 characters of base64",
            PushError::BadSignature => "the signature is missing or wrong",
            PushError::BadBody => "the body is not a push of this mode",
            PushError::BadEncrypt => "Encrypt does not decrypt to a framed message",
            PushError::WrongAppid => "the message is for another appid",
            PushError::NoRandomness => "no randomness from the operating system",
        })
    }
}

impl std::error::Error for PushError {}

/// A push ready to send: `POST <push url>?<query>` with `body` (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The query string, without `?`: `signature`, `timestamp`, `nonce`, and in safe mode
    /// `encrypt_type=aes` and `msg_signature`.
    pub query: String,
    /// The event JSON (plain mode) or `{"ToUserName":…,"Encrypt":…}` (safe mode).
    pub body: String,
}

/// What signs and encrypts pushes, as configured for the mini-program on WeChat's side.
#[derive(Clone, PartialEq, Eq)]
pub struct PushKeys {
    /// The token (令牌) of the message push configuration.
    pub token: String,
    /// The EncodingAESKey (43 characters) in safe mode; `None` in plain mode.
    pub aes_key: Option<String>,
    /// The appid appended to every encrypted message.
    pub appid: String,
}

impl fmt::Debug for PushKeys {
    /// Hides the token and the key, so that configurations can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushKeys")
            .field("token", &"<redacted>")
            .field("aes_key", &self.aes_key.as_ref().map(|_| "<redacted>"))
            .field("appid", &self.appid)
            .finish()
    }
}

impl PushKeys {
    /// Signs (and in safe mode encrypts) `event` with the current time and a fresh nonce.
    pub fn seal(&self, event: &str) -> Result<Push, PushError> {
        let mut nonce = [0; 4];
        getrandom::fill(&mut nonce).map_err(|_| PushError::NoRandomness)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.seal_at(event, timestamp, &u32::from_be_bytes(nonce).to_string())
    }

    /// [`PushKeys::seal`] with a chosen timestamp and nonce, to forge old or replayed pushes.
    pub fn seal_at(&self, event: &str, timestamp: u64, nonce: &str) -> Result<Push, PushError> {
        let timestamp = timestamp.to_string();
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("signature", &signature(&self.token, &timestamp, nonce))
            .append_pair("timestamp", &timestamp)
            .append_pair("nonce", nonce);
        let Some(aes_key) = &self.aes_key else {
            return Ok(Push {
                query: query.finish(),
                body: event.to_owned(),
            });
        };
        let key = aes_key_bytes(aes_key)?;
        let mut random = [0; 16];
        getrandom::fill(&mut random).map_err(|_| PushError::NoRandomness)?;
        let encrypt = encrypt(&key, &random, event, &self.appid);
        let to_user = serde_json::from_str::<Value>(event)
            .ok()
            .and_then(|event| event.get("ToUserName")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| MINI_PROGRAM_USERNAME.to_owned());
        query.append_pair("encrypt_type", "aes").append_pair(
            "msg_signature",
            &signature_of(&[&self.token, &timestamp, nonce, &encrypt]),
        );
        Ok(Push {
            query: query.finish(),
            body: json!({ "ToUserName": to_user, "Encrypt": encrypt }).to_string(),
        })
    }

    /// Checks a push as a server must and returns the event JSON: in plain mode the
    /// `signature`; in safe mode the `msg_signature` over `Encrypt`, which is then
    /// decrypted and must name this appid.
    pub fn open(&self, query: &str, body: &str) -> Result<String, PushError> {
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        };
        let (timestamp, nonce) = (param("timestamp"), param("nonce"));
        let Some(aes_key) = &self.aes_key else {
            if param("signature") != signature(&self.token, &timestamp, &nonce) {
                return Err(PushError::BadSignature);
            }
            return Ok(body.to_owned());
        };
        let key = aes_key_bytes(aes_key)?;
        let encrypt = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|body| body.get("Encrypt")?.as_str().map(str::to_owned))
            .ok_or(PushError::BadBody)?;
        if param("encrypt_type") != "aes"
            || param("msg_signature") != signature_of(&[&self.token, &timestamp, &nonce, &encrypt])
        {
            return Err(PushError::BadSignature);
        }
        let (event, appid) = decrypt(&key, &encrypt)?;
        if appid != self.appid {
            return Err(PushError::WrongAppid);
        }
        Ok(event)
    }
}

/// The `signature` of a push and of the `GET` URL check (`signature`, `timestamp`,
/// `nonce`, `echostr`): lowercase hex sha1 of token, timestamp and nonce, sorted and joined.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    signature_of(&[token, timestamp, nonce])
}

fn signature_of(parts: &[&str]) -> String {
    let mut parts = parts.to_vec();
    parts.sort_unstable();
    Sha1::digest(parts.concat().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `wxa_media_check` event WeChat pushes with the verdict of `media_check_async`
/// (version 2), with `CreateTime` now.
pub fn media_check_event(appid: &str, trace_id: &str, suggest: Suggest) -> String {
    let create_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    json!({
        "ToUserName": MINI_PROGRAM_USERNAME,
        "FromUserName": PUSH_SERVICE_USERNAME,
        "CreateTime": create_time,
        "MsgType": "event",
        "Event": "wxa_media_check",
        "appid": appid,
        "trace_id": trace_id,
        "version": 2,
        "detail": [{
            "strategy": "content_model",
            "errcode": 0,
            "suggest": suggest.as_str(),
            "label": suggest.label(),
            "prob": 90,
        }],
        "errcode": 0,
        "errmsg": "ok",
        "result": { "suggest": suggest.as_str(), "label": suggest.label() },
    })
    .to_string()
}

/// The 32-byte AES key of an EncodingAESKey (43 characters of base64, without its `=`).
pub(crate) fn aes_key_bytes(aes_key: &str) -> Result<[u8; 32], PushError> {
    if aes_key.len() != 43 {
        return Err(PushError::BadKey);
    }
    LENIENT
        .decode(format!("{aes_key}="))
        .ok()
        .and_then(|key| key.try_into().ok())
        .ok_or(PushError::BadKey)
}

/// Frames and encrypts `message` as WeChat does; see the module documentation.
fn encrypt(key: &[u8; 32], random: &[u8; 16], message: &str, appid: &str) -> String {
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut plain = Vec::with_capacity(message.len() + appid.len() + 20 + PAD_BLOCK);
    plain.extend_from_slice(random);
    plain.extend_from_slice(&length.to_be_bytes());
    plain.extend_from_slice(message.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
    // `pad` is 1 to 32, so it fits a byte.
    plain.resize(plain.len() + pad, pad as u8);
    let iv: &[u8; 16] = key[..16].try_into().expect("16 of 32 bytes");
    let ciphertext = cbc::Encryptor::<Aes256>::new(key.into(), iv.into())
        .encrypt_padded_vec::<NoPadding>(&plain);
    STANDARD.encode(ciphertext)
}

/// The reverse of [`encrypt`]: the message and the appid.
fn decrypt(key: &[u8; 32], encrypt: &str) -> Result<(String, String), PushError> {
    let ciphertext = STANDARD
        .decode(encrypt)
        .map_err(|_| PushError::BadEncrypt)?;
    let iv: &[u8; 16] = key[..16].try_into().expect("16 of 32 bytes");
    let plain = cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec::<NoPadding>(&ciphertext)
        .map_err(|_| PushError::BadEncrypt)?;
    let pad = usize::from(*plain.last().ok_or(PushError::BadEncrypt)?);
    if !(1..=PAD_BLOCK).contains(&pad) || pad > plain.len() {
        return Err(PushError::BadEncrypt);
    }
    let framed = plain
        .get(16..plain.len() - pad)
        .ok_or(PushError::BadEncrypt)?;
    let (length, rest) = framed.split_at_checked(4).ok_or(PushError::BadEncrypt)?;
    let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
    let (message, appid) = rest.split_at_checked(length).ok_or(PushError::BadEncrypt)?;
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| PushError::BadEncrypt);
    Ok((text(message)?, text(appid)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EncodingAESKey of the documented shape (43 characters).
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn keys(aes_key: Option<&str>) -> PushKeys {
        PushKeys {
            token: "pushtoken".to_owned(),
            aes_key: aes_key.map(str::to_owned),
            appid: "wx1234567890abcdef".to_owned(),
        }
    }

    #[test]
    fn signature_is_sha1_of_the_sorted_parts() {
        // sha1 of "1372623149" + "1409659813" + "token": the three sorted as strings.
        let expected: String = Sha1::digest(b"13726231491409659813token")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(signature("token", "1409659813", "1372623149"), expected);
        assert_eq!(signature("token", "1372623149", "1409659813"), expected);
    }

    #[test]
    fn a_plain_push_opens_with_its_token_only() {
        let push = keys(None)
            .seal_at("{\"a\":1}", 1_700_000_000, "42")
            .unwrap();
        assert_eq!(push.body, "{\"a\":1}");
        assert!(push.query.contains("timestamp=1700000000&nonce=42"));
        assert_eq!(
            keys(None).open(&push.query, &push.body).unwrap(),
            "{\"a\":1}"
        );
        let other = PushKeys {
            token: "other".to_owned(),
            ..keys(None)
        };
        assert_eq!(
            other.open(&push.query, &push.body),
            Err(PushError::BadSignature)
        );
    }

    #[test]
    fn a_safe_push_round_trips_and_refuses_tampering() {
        let event = media_check_event("wx1234567890abcdef", "t-1", Suggest::Risky);
        let keys = keys(Some(KEY));
        let push = keys.seal(&event).unwrap();
        assert!(push.query.contains("encrypt_type=aes"));
        assert!(!push.body.contains("wxa_media_check"));
        assert_eq!(keys.open(&push.query, &push.body).unwrap(), event);

        let body: Value = serde_json::from_str(&push.body).unwrap();
        assert_eq!(body["ToUserName"], MINI_PROGRAM_USERNAME);
        let tampered = push.body.replace(body["Encrypt"].as_str().unwrap(), "AAAA");
        assert_eq!(
            keys.open(&push.query, &tampered),
            Err(PushError::BadSignature)
        );
        let other_app = PushKeys {
            appid: "wxffffffffffffffff".to_owned(),
            ..keys.clone()
        };
        assert_eq!(
            other_app.open(&push.query, &push.body),
            Err(PushError::WrongAppid)
        );
    }

    #[test]
    fn the_plaintext_is_padded_to_32_byte_blocks() {
        let key = aes_key_bytes(KEY).unwrap();
        for message in ["", "x", &"y".repeat(100)] {
            let encrypt = encrypt(&key, &[1; 16], message, "wxa");
            let length = STANDARD.decode(&encrypt).unwrap().len();
            assert_eq!(length % 32, 0, "{message:?}");
            assert_eq!(
                decrypt(&key, &encrypt).unwrap(),
                (message.to_owned(), "wxa".to_owned())
            );
        }
        assert_eq!(decrypt(&key, "not base64!"), Err(PushError::BadEncrypt));
    }

    #[test]
    fn bad_keys_are_refused() {
        for key in ["", "short", &format!("{KEY}A"), &KEY.replace('a', "!")] {
            assert_eq!(aes_key_bytes(key), Err(PushError::BadKey), "{key:?}");
        }
        let push = keys(Some("short")).seal("{}");
        assert_eq!(push, Err(PushError::BadKey));
    }

    #[test]
    fn the_media_check_event_has_wechats_fields() {
        let event: Value =
            serde_json::from_str(&media_check_event("wxa", "t-1", Suggest::Pass)).unwrap();
        assert_eq!(event["Event"], "wxa_media_check");
        assert_eq!(event["MsgType"], "event");
        assert_eq!(event["trace_id"], "t-1");
        assert_eq!(event["appid"], "wxa");
        assert_eq!(event["version"], 2);
        assert_eq!(event["result"]["suggest"], "pass");
        assert_eq!(event["result"]["label"], 100);
        assert_eq!(event["detail"][0]["strategy"], "content_model");
        assert!(event["CreateTime"].as_u64().unwrap() > 1_700_000_000);
    }

    #[test]
    fn debug_output_hides_the_token_and_key() {
        let shown = format!("{:?}", keys(Some(KEY)));
        assert!(
            !shown.contains("pushtoken") && !shown.contains(KEY),
            "{shown}"
        );
    }
}
