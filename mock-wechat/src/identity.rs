//! The identities mock-wechat hands out: openids and unionids derived from the user name (so
//! they are stable across codes and restarts), and fresh session keys, IVs, access tokens and
//! code nonces.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha1::{Digest, Sha1};

/// The openid of `user` in app `appid`: `o` + the 27 characters of URL-safe base64 of
/// sha1(`appid:user`), 28 characters like a real openid. It depends on the appid because
/// real openids are per mini-program.
pub(crate) fn openid(appid: &str, user: &str) -> String {
    derive('o', &format!("{appid}:{user}"))
}

/// The unionid of `user`: like [`openid`] with prefix `u`, from `unionid:user`. It ignores
/// the appid because real unionids are per open-platform account, shared by its apps.
pub(crate) fn unionid(user: &str) -> String {
    derive('u', &format!("unionid:{user}"))
}

fn derive(prefix: char, input: &str) -> String {
    // sha1 gives 20 bytes: exactly 27 characters of unpadded base64.
    let digest = Sha1::digest(input.as_bytes());
    let mut id = String::with_capacity(28);
    id.push(prefix);
    id.push_str(&URL_SAFE_NO_PAD.encode(digest));
    id
}

/// A session key as WeChat sends it and as it enters the rawData signature: standard base64
/// of the 16 bytes (24 characters).
pub(crate) fn session_key_text(key: &[u8; 16]) -> String {
    STANDARD.encode(key)
}

/// Fresh unpredictable bytes for session keys, IVs, access tokens and code nonces.
///
/// The operating system's randomness is read once, at start, into a seed; each draw is then
/// sha1(seed, counter). So a draw cannot fail in the middle of a request, never repeats
/// within a process, and cannot be guessed without the seed. Good enough for a mock; not a
/// cryptographic generator for real secrets.
pub(crate) struct Nonces {
    seed: [u8; 32],
    counter: AtomicU64,
}

impl Nonces {
    pub(crate) fn from_os() -> io::Result<Nonces> {
        let mut seed = [0; 32];
        getrandom::fill(&mut seed)
            .map_err(|err| io::Error::other(format!("no randomness from the OS: {err}")))?;
        Ok(Nonces {
            seed,
            counter: AtomicU64::new(0),
        })
    }

    fn draw(&self) -> [u8; 20] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Sha1::new()
            .chain_update(self.seed)
            .chain_update(n.to_le_bytes())
            .finalize()
            .into()
    }

    /// 16 fresh bytes: a session key (WeChat sends it in standard base64, 24 characters;
    /// see [`session_key_text`]) or an AES initialisation vector.
    pub(crate) fn block(&self) -> [u8; 16] {
        let mut block = [0; 16];
        block.copy_from_slice(&self.draw()[..16]);
        block
    }

    /// A fresh access token: 64 characters of `A-Z a-z 0-9 _ -` (URL-safe base64 of 48
    /// bytes), the alphabet of real ones.
    pub(crate) fn access_token(&self) -> String {
        let mut bytes = Vec::with_capacity(60);
        for _ in 0..3 {
            bytes.extend_from_slice(&self.draw());
        }
        URL_SAFE_NO_PAD.encode(&bytes[..48])
    }

    /// A content-security `trace_id`, shaped like WeChat's (`65557e88-016af6aa-17e69df6`):
    /// three groups of 8 lowercase hex digits.
    pub(crate) fn trace_id(&self) -> String {
        let hex: String = self.draw()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}-{}-{}", &hex[..8], &hex[8..16], &hex[16..])
    }

    /// The nonce of a minted code: 12 lowercase hex digits.
    pub(crate) fn code_nonce(&self) -> String {
        self.draw()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_is_28_url_safe_characters_starting_with_o() {
        let id = openid("wx1234567890abcdef", "alice");
        assert_eq!(id.len(), 28);
        assert!(id.starts_with('o'));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn openid_depends_on_appid_and_user_but_unionid_only_on_user() {
        assert_eq!(openid("wxa", "alice"), openid("wxa", "alice"));
        assert_ne!(openid("wxa", "alice"), openid("wxb", "alice"));
        assert_ne!(openid("wxa", "alice"), openid("wxa", "bob"));
        let union = unionid("alice");
        assert_eq!(union.len(), 28);
        assert!(union.starts_with('u'));
        assert_ne!(union, unionid("bob"));
    }

    #[test]
    fn nonces_are_fresh_and_well_formed() {
        let nonces = Nonces::from_os().unwrap();
        let key = session_key_text(&nonces.block());
        assert_eq!(key.len(), 24);
        assert_eq!(STANDARD.decode(&key).unwrap().len(), 16);
        assert_ne!(nonces.block(), nonces.block());
        let token = nonces.access_token();
        assert_eq!(token.len(), 64);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert_ne!(token, nonces.access_token());
        let nonce = nonces.code_nonce();
        assert_eq!(nonce.len(), 12);
        assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(nonce, nonces.code_nonce());
        let trace = nonces.trace_id();
        assert_eq!(trace.len(), 26);
        assert_eq!(trace.split('-').count(), 3);
        assert_ne!(trace, nonces.trace_id());
    }
}
