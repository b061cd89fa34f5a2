//! Open data: what the WeChat client hands a mini-program with a user's profile
//! (`wx.getUserInfo` and friends), signed and encrypted with that user's session key exactly
//! as WeChat does it, so that a server's checks can be tested offline.
//!
//! - `rawData`: the profile as compact JSON.
//! - `signature`: lowercase hex of sha1(`rawData` + session key), the session key as its
//!   base64 *text* (string concatenation, as WeChat documents).
//! - `encryptedData`: standard base64 of AES-128-CBC with PKCS#7 padding of the profile plus
//!   `openId`, `unionId` (when there is one) and a `watermark` with the time and the appid;
//!   the key is the 16 bytes of the session key, the IV 16 fresh bytes.
//! - `iv`: standard base64 of the IV.

use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use serde_json::Value;
use sha1::{Digest, Sha1};

use crate::identity;

/// What the WeChat client hands the mini-program with a user's profile: the four strings a
/// mini-program sends its server, named as WeChat names them (`rawData`, `signature`,
/// `encryptedData`, `iv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenData {
    /// The profile as compact JSON (see [`MockProfile`]).
    pub raw_data: String,
    /// Lowercase hex of sha1(`raw_data` + session key as base64 text): 40 characters.
    pub signature: String,
    /// Standard base64 of the AES-128-CBC/PKCS#7 encryption of the profile with `openId`,
    /// `unionId` (when the mock returns unionids) and `watermark`.
    pub encrypted_data: String,
    /// Standard base64 of the 16-byte IV used for `encrypted_data`, fresh every time.
    pub iv: String,
}

/// The profile a mock user shows: what ends up in `rawData` and `encryptedData`.
///
/// The other fields WeChat sends are fixed: `language` is `zh_CN`; `city`, `province` and
/// `country` are empty, as WeChat has sent them since it stopped sharing them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MockProfile {
    /// `nickName`.
    pub nick_name: String,
    /// `avatarUrl`.
    pub avatar_url: String,
    /// `gender`: WeChat uses 0 unknown, 1 male, 2 female; the mock passes any number on.
    pub gender: i64,
}

/// The parts of the encrypted data that do not come from the profile.
pub(crate) struct Watermark<'a> {
    pub(crate) openid: &'a str,
    /// `Some` when the mock returns unionids.
    pub(crate) unionid: Option<&'a str>,
    pub(crate) appid: &'a str,
    /// Unix seconds.
    pub(crate) timestamp: u64,
}

/// Signs and encrypts `profile` with `session_key` and `iv`.
pub(crate) fn seal(
    profile: &MockProfile,
    session_key: &[u8; 16],
    iv: &[u8; 16],
    watermark: &Watermark<'_>,
) -> OpenData {
    let raw_data = raw_data(profile);
    let signature = signature(&raw_data, &identity::session_key_text(session_key));
    let plaintext = plaintext(profile, watermark);
    OpenData {
        raw_data,
        signature,
        encrypted_data: STANDARD.encode(encrypt(session_key, iv, plaintext.as_bytes())),
        iv: STANDARD.encode(iv),
    }
}

/// `rawData`: `{"nickName":…,"gender":…,"language":"zh_CN","city":"","province":"",
/// "country":"","avatarUrl":…}`, compact, in WeChat's order.
fn raw_data(profile: &MockProfile) -> String {
    format!("{{{}}}", profile_fields(profile))
}

/// The JSON inside `encryptedData`, in WeChat's order.
fn plaintext(profile: &MockProfile, watermark: &Watermark<'_>) -> String {
    let mut json = format!(
        "{{\"openId\":{},{}",
        json_string(watermark.openid),
        profile_fields(profile)
    );
    if let Some(unionid) = watermark.unionid {
        json.push_str(&format!(",\"unionId\":{}", json_string(unionid)));
    }
    json.push_str(&format!(
        ",\"watermark\":{{\"timestamp\":{},\"appid\":{}}}}}",
        watermark.timestamp,
        json_string(watermark.appid)
    ));
    json
}

/// Built by hand rather than through a JSON map: the signature covers these exact bytes, so
/// the order of the keys must not depend on serde_json's features.
fn profile_fields(profile: &MockProfile) -> String {
    format!(
        "\"nickName\":{},\"gender\":{},\"language\":\"zh_CN\",\"city\":\"\",\"province\":\"\",\
         \"country\":\"\",\"avatarUrl\":{}",
        json_string(&profile.nick_name),
        profile.gender,
        json_string(&profile.avatar_url)
    )
}

/// `s` as a JSON string literal, quoted and escaped.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// WeChat's rawData signature: lowercase hex of sha1(`raw_data` + `session_key_text`).
fn signature(raw_data: &str, session_key_text: &str) -> String {
    let digest = Sha1::new()
        .chain_update(raw_data.as_bytes())
        .chain_update(session_key_text.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// AES-128-CBC with PKCS#7 padding.
fn encrypt(key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<Aes128>::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// The reverse of [`encrypt`]; `None` when the padding is wrong (wrong key, IV or data).
#[cfg(test)]
pub(crate) fn decrypt(key: &[u8; 16], iv: &[u8; 16], ciphertext: &[u8]) -> Option<Vec<u8>> {
    use cbc::cipher::BlockModeDecrypt;
    cbc::Decryptor::<Aes128>::new(key.into(), iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(base64: &str) -> [u8; 16] {
        STANDARD.decode(base64).unwrap().try_into().unwrap()
    }

    /// WeChat's published example ("开放数据校验与解密", demo in its server SDK samples).
    const VECTOR_APPID: &str = "wx4f4bc4dec97d474b";
    const VECTOR_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const VECTOR_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const VECTOR_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

    #[test]
    fn decrypting_wechats_published_vector_gives_its_profile_and_watermark() {
        let data = STANDARD.decode(VECTOR_DATA).unwrap();
        let plain = decrypt(&block(VECTOR_KEY), &block(VECTOR_IV), &data).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        assert!(plain.contains(r#""nickName":"Band""#), "{plain}");
        assert!(
            plain.contains(r#""watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}"#),
            "{plain}"
        );
        let json: Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(json["watermark"]["appid"], VECTOR_APPID);
    }

    #[test]
    fn encrypting_wechats_published_plaintext_gives_its_published_ciphertext() {
        let (key, iv) = (block(VECTOR_KEY), block(VECTOR_IV));
        let data = STANDARD.decode(VECTOR_DATA).unwrap();
        let plain = decrypt(&key, &iv, &data).unwrap();
        assert_eq!(STANDARD.encode(encrypt(&key, &iv, &plain)), VECTOR_DATA);
    }

    #[test]
    fn open_data_signature_matches_wechats_published_vector() {
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        assert_eq!(
            signature(raw, "HyVFkGl5F5OQWJZZaNzBBg=="),
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        );
    }

    fn tricky_profile() -> MockProfile {
        MockProfile {
            nick_name: "Ann \"A\" 小\\".to_owned(),
            avatar_url: "https://example.com/a.png?x=1&y=2".to_owned(),
            gender: 2,
        }
    }

    #[test]
    fn raw_data_is_compact_json_in_wechats_order() {
        let profile = MockProfile {
            nick_name: "Band".to_owned(),
            avatar_url: "http://x/0".to_owned(),
            gender: 1,
        };
        assert_eq!(
            raw_data(&profile),
            r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"","province":"","country":"","avatarUrl":"http://x/0"}"#
        );
        // Quotes, backslashes and non-ASCII survive as JSON.
        let json: Value = serde_json::from_str(&raw_data(&tricky_profile())).unwrap();
        assert_eq!(json["nickName"], tricky_profile().nick_name);
        assert_eq!(json["avatarUrl"], tricky_profile().avatar_url);
    }

    #[test]
    fn sealed_open_data_decrypts_with_the_session_key_and_verifies() {
        let key = [7; 16];
        let iv = [9; 16];
        let watermark = Watermark {
            openid: "oABC",
            unionid: Some("uXYZ"),
            appid: "wx1234567890abcdef",
            timestamp: 1_700_000_000,
        };
        let data = seal(&tricky_profile(), &key, &iv, &watermark);
        assert_eq!(data.raw_data, raw_data(&tricky_profile()));
        assert_eq!(
            data.signature,
            signature(&data.raw_data, &STANDARD.encode(key))
        );
        assert_eq!(data.signature.len(), 40);
        assert_eq!(block(&data.iv), iv);

        let encrypted = STANDARD.decode(&data.encrypted_data).unwrap();
        let plain = decrypt(&key, &iv, &encrypted).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        assert_eq!(
            plain,
            format!(
                "{{\"openId\":\"oABC\",{},\"unionId\":\"uXYZ\",\
                 \"watermark\":{{\"timestamp\":1700000000,\"appid\":\"wx1234567890abcdef\"}}}}",
                profile_fields(&tricky_profile())
            )
        );
        let json: Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(json["nickName"], tricky_profile().nick_name);
        // Another key does not decrypt it (the padding check fails, or the text is noise).
        if let Some(noise) = decrypt(&[8; 16], &iv, &encrypted) {
            assert_ne!(noise, plain.as_bytes());
        }
    }

    #[test]
    fn plaintext_has_no_unionid_when_there_is_none() {
        let watermark = Watermark {
            openid: "oABC",
            unionid: None,
            appid: "wxa",
            timestamp: 1,
        };
        let json: Value = serde_json::from_str(&plaintext(&tricky_profile(), &watermark)).unwrap();
        assert!(json.get("unionId").is_none());
        assert_eq!(json["openId"], "oABC");
        assert_eq!(json["watermark"]["timestamp"], 1);
        assert_eq!(json["watermark"]["appid"], "wxa");
    }
}
