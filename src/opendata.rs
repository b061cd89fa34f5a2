//! WeChat "open data": checking the rawData signature and decrypting `encryptedData`.
//!
//! Both are keyed by the user's session_key. `signature` is `hex(sha1(rawData + session_key))`;
//! `encryptedData` is AES-128-CBC with PKCS#7 padding, key = base64-decoded session_key and iv =
//! base64-decoded `iv`, and its plaintext names the AppID it was made for in `watermark.appid`.
//! Every input comes from the client, so every step returns an error instead of panicking, and
//! each error says which step failed in words a client can act on.

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use sha1::{Digest, Sha1};
use std::fmt;

/// Why profile material did not verify. The texts are client-safe: they name the cause, never
/// a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenDataError {
    SignatureMismatch,
    BadBase64,
    BadPadding,
    NotJson,
    WrongAppid,
    OtherUser,
    InvalidFields,
    IncompleteMaterial,
}

impl OpenDataError {
    pub fn reason(self) -> &'static str {
        match self {
            OpenDataError::SignatureMismatch => {
                "signature mismatch: the profile was signed with another session_key (usually a stale one: call wx.login() before wx.getUserProfile())"
            }
            OpenDataError::BadBase64 => "encryptedData or iv is not valid base64",
            OpenDataError::BadPadding => {
                "encryptedData does not decrypt: bad padding or wrong key (usually a stale session_key: call wx.login() before wx.getUserProfile())"
            }
            OpenDataError::NotJson => "encryptedData decrypts to something that is not JSON",
            OpenDataError::WrongAppid => "encryptedData carries a watermark for another appid",
            OpenDataError::OtherUser => "encryptedData belongs to another user",
            OpenDataError::InvalidFields => {
                "the decrypted profile has fields of the wrong type or size"
            }
            OpenDataError::IncompleteMaterial => {
                "encryptedData and iv must be sent together, and signature needs userInfo"
            }
        }
    }
}

impl fmt::Display for OpenDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Whether `signature` is `hex(sha1(raw_data + session_key))`.
pub fn signature_matches(raw_data: &str, session_key: &str, signature: &str) -> bool {
    let mut hasher = Sha1::new();
    hasher.update(raw_data.as_bytes());
    hasher.update(session_key.as_bytes());
    let digest = hasher.finalize();
    let expected = crate::secret::hex(&digest);
    // Not secret-dependent timing worth guarding: the signature is public once sent.
    expected.eq_ignore_ascii_case(signature.trim())
}

/// Decrypts `encryptedData` and checks that it was made for `appid`; returns the JSON object.
pub fn decrypt(
    encrypted_data: &str,
    iv: &str,
    session_key: &str,
    appid: &str,
) -> Result<serde_json::Map<String, Value>, OpenDataError> {
    let key = decode_16(session_key).ok_or(OpenDataError::BadPadding)?;
    let iv = decode_16(iv).ok_or(OpenDataError::BadBase64)?;
    let data = STANDARD
        .decode(encrypted_data.trim())
        .map_err(|_| OpenDataError::BadBase64)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(OpenDataError::BadPadding);
    }
    let plain = cbc::Decryptor::<aes::Aes128>::new(&key.into(), &iv.into())
        .decrypt_padded_vec::<Pkcs7>(&data)
        .map_err(|_| OpenDataError::BadPadding)?;
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&plain) else {
        return Err(OpenDataError::NotJson);
    };
    let watermark_appid = fields
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(Value::as_str);
    if watermark_appid != Some(appid) {
        return Err(OpenDataError::WrongAppid);
    }
    Ok(fields)
}

/// Standard base64 that must decode to exactly 16 bytes (an AES-128 key or block).
fn decode_16(text: &str) -> Option<[u8; 16]> {
    STANDARD.decode(text.trim()).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // WeChat's published sample (developers.weixin.qq.com, "开放数据校验与解密").
    const APPID: &str = "wx4f4bc4dec97d474b";
    const SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const ENCRYPTED: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    const SIG_SESSION_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
    const RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;

    #[test]
    fn signature_matches_wechats_published_vector() {
        assert!(signature_matches(
            RAW_DATA,
            SIG_SESSION_KEY,
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        ));
        assert!(!signature_matches(
            RAW_DATA,
            SESSION_KEY,
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        ));
    }

    #[test]
    fn decrypt_matches_wechats_published_vector() {
        let fields = decrypt(ENCRYPTED, IV, SESSION_KEY, APPID).unwrap();
        assert_eq!(fields["nickName"], "Band");
        assert_eq!(fields["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(fields["watermark"]["timestamp"], 1477314187);
    }

    #[test]
    fn decrypt_names_the_failing_step() {
        let cases = [
            (
                ENCRYPTED,
                IV,
                SESSION_KEY,
                "wx0000000000000000",
                OpenDataError::WrongAppid,
            ),
            (
                ENCRYPTED,
                IV,
                SIG_SESSION_KEY,
                APPID,
                OpenDataError::BadPadding,
            ),
            (
                ENCRYPTED,
                IV,
                "not base64!",
                APPID,
                OpenDataError::BadPadding,
            ),
            ("%%%", IV, SESSION_KEY, APPID, OpenDataError::BadBase64),
            (
                ENCRYPTED,
                "AAAA",
                SESSION_KEY,
                APPID,
                OpenDataError::BadBase64,
            ),
            ("AAAA", IV, SESSION_KEY, APPID, OpenDataError::BadPadding),
            ("", IV, SESSION_KEY, APPID, OpenDataError::BadPadding),
        ];
        for (data, iv, key, appid, expected) in cases {
            assert_eq!(
                decrypt(data, iv, key, appid).unwrap_err(),
                expected,
                "data {:.8}… iv {iv} key {key} appid {appid}",
                data
            );
        }
    }

    #[test]
    fn decrypt_reports_non_json_plaintext() {
        use aes::cipher::BlockModeEncrypt;
        let key = decode_16(SESSION_KEY).unwrap();
        let iv = decode_16(IV).unwrap();
        let cipher = cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into())
            .encrypt_padded_vec::<Pkcs7>(b"hello, not json");
        let data = STANDARD.encode(cipher);
        assert_eq!(
            decrypt(&data, IV, SESSION_KEY, APPID).unwrap_err(),
            OpenDataError::NotJson
        );
    }
}
