//! Issuing and checking access tokens: ES256 JWTs with a `kid`, naming the user (`sub`, the
//! stable uid) and the session (`sid`).
//!
//! The token never carries the session_key, which would let anyone holding it decrypt the user's
//! WeChat data. Verification is pinned to ES256 and to a `kid` we publish (an HS256 token of the
//! previous release, or one signed with an unknown key, is refused before any signature work),
//! to our issuer and audience, with a small clock leeway and a required `exp`, because
//! jwt-simple's defaults accept tokens 15 minutes past expiry.
//!
//! A P-256 verification costs tens of microseconds, and `/auth/verify` may check the same token
//! on every request of a backend: verified tokens are cached per node (by the SHA-256 of the
//! token) until they expire, so each token is verified once per node. Whether its session was
//! revoked is a separate check (`session.rs`).

use crate::config::JwtConfig;
use crate::keys::{Jwks, KeySet};
use jwt_simple::algorithms::{ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike};
use jwt_simple::claims::Claims;
use jwt_simple::common::VerificationOptions;
use jwt_simple::token::Token;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tokens longer than this are refused before any signature work; ours are ~600 bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock drift tolerated between nodes when checking `exp`, `nbf` and `iat`.
const LEEWAY: Duration = Duration::from_secs(30);
/// Verified tokens kept per node. Beyond it, expired entries are dropped first, then the whole
/// cache: a refill costs one verification per live token, never a wrong answer.
const VERIFIED_CACHE_ENTRIES: usize = 100_000;

/// Our custom claims: the session, and who the user is at WeChat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct AccessClaims {
    sid: String,
    openid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
}

/// Who a verified access token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The stable user id (`sub`).
    pub uid: String,
    /// The session id (`sid`).
    pub sid: String,
    pub openid: String,
    pub unionid: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Why a token was refused; each reason is safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed,
    TooLong,
    Invalid,
}

impl TokenError {
    pub fn client_message(self) -> &'static str {
        match self {
            TokenError::Missing => {
                "send Authorization: Bearer <token> (the token from /api/wxuser)"
            }
            TokenError::Malformed => "the Authorization header must be: Bearer <token>",
            TokenError::TooLong => "the token is too long",
            TokenError::Invalid => "the token is invalid or expired; refresh it or log in again",
        }
    }
}

/// Signs and verifies access tokens with the key set built at start-up.
pub struct TokenIssuer {
    keys: KeySet,
    ttl: Duration,
    issuer: String,
    audience: String,
    /// SHA-256 of a verified token → what it says. Read far more often than written (once per
    /// token and node), so readers share the lock.
    verified: RwLock<HashMap<[u8; 32], Identity>>,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    /// Panics on key material the configuration did not validate (a bug, not an input).
    pub fn new(config: &JwtConfig) -> TokenIssuer {
        TokenIssuer {
            keys: KeySet::new(&config.signing_key, &config.previous_keys)
                .expect("the configuration validated every signing key"),
            ttl: config.ttl,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// Access-token lifetime, for `expires_in`.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Every accepted public key.
    pub fn jwks(&self) -> Jwks {
        self.keys.jwks()
    }

    /// A signed access token for this user's session, valid for the configured lifetime.
    pub fn issue(&self, uid: &str, sid: &str, openid: &str, unionid: Option<&str>) -> String {
        let custom = AccessClaims {
            sid: sid.into(),
            openid: openid.into(),
            unionid: unionid.map(String::from),
        };
        let claims = Claims::with_custom_claims(custom, self.ttl.into())
            .with_issuer(&self.issuer)
            .with_subject(uid)
            .with_audience(&self.audience);
        self.keys
            .signing()
            .sign(claims)
            .expect("ES256 signing of serialisable claims cannot fail")
    }

    /// Who the token names, if it is ours, intact and unexpired.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(identity) = self.read_verified().get(&digest) {
            if identity.expires_at > now {
                return Ok(identity.clone());
            }
        }
        let identity = self.verify_signature(token)?;
        let mut cache = self.write_verified();
        if cache.len() >= VERIFIED_CACHE_ENTRIES {
            cache.retain(|_, cached| cached.expires_at > now);
            if cache.len() >= VERIFIED_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, identity.clone());
        Ok(identity)
    }

    // Every entry is a complete verified identity: a panic elsewhere cannot leave one
    // half-written, so poisoning is safe to ignore.
    fn read_verified(&self) -> RwLockReadGuard<'_, HashMap<[u8; 32], Identity>> {
        self.verified.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_verified(&self) -> RwLockWriteGuard<'_, HashMap<[u8; 32], Identity>> {
        self.verified.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The full check, without the cache.
    fn verify_signature(&self, token: &str) -> Result<Identity, TokenError> {
        let metadata = Token::decode_metadata(token).map_err(|_| TokenError::Invalid)?;
        if metadata.algorithm() != "ES256" {
            return Err(TokenError::Invalid);
        }
        let key = metadata
            .key_id()
            .and_then(|kid| self.keys.verifying(kid))
            .ok_or(TokenError::Invalid)?;
        let options = VerificationOptions {
            time_tolerance: Some(LEEWAY.into()),
            max_token_length: Some(MAX_TOKEN_BYTES),
            max_header_length: Some(512),
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([self.audience.clone()])),
            ..VerificationOptions::default()
        };
        let claims = key
            .verify_token::<AccessClaims>(token, Some(options))
            .map_err(|_| TokenError::Invalid)?;
        // jwt-simple only checks `exp` when present; a token without one would never expire.
        let expires_at = claims.expires_at.ok_or(TokenError::Invalid)?.as_secs();
        let uid = claims.subject.ok_or(TokenError::Invalid)?;
        if uid.is_empty() || claims.custom.sid.is_empty() || claims.custom.openid.is_empty() {
            return Err(TokenError::Invalid);
        }
        Ok(Identity {
            uid,
            sid: claims.custom.sid,
            openid: claims.custom.openid,
            unionid: claims.custom.unionid,
            expires_at,
        })
    }

    /// Extracts and verifies the token of an `Authorization: Bearer <token>` header value.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Identity, TokenError> {
        let header = header.ok_or(TokenError::Missing)?.trim();
        if header.len() > MAX_TOKEN_BYTES + 16 {
            return Err(TokenError::TooLong);
        }
        let (scheme, token) = header.split_once(' ').ok_or(TokenError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(TokenError::Malformed);
        }
        self.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyMaterial;
    use crate::secret::Secret;
    use jwt_simple::algorithms::{HS256Key, MACLike};

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn config(secret: &str, previous: &[&str]) -> JwtConfig {
        JwtConfig {
            secret: Secret::new(secret),
            ttl: Duration::from_secs(3600),
            signing_key: KeyMaterial::Derived(Secret::new(secret)),
            previous_keys: previous
                .iter()
                .map(|p| KeyMaterial::Derived(Secret::new(*p)))
                .collect(),
            issuer: "https://login.example.com".into(),
            audience: "wxappid".into(),
        }
    }

    fn issuer(secret: &str) -> TokenIssuer {
        TokenIssuer::new(&config(secret, &[]))
    }

    fn alice(issuer: &TokenIssuer) -> String {
        issuer.issue("uid-alice", "sid-1", "o-alice", Some("u-alice"))
    }

    fn b64(data: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    #[test]
    fn issued_token_verifies_and_round_trips_claims() {
        let issuer = issuer(KEY);
        let token = alice(&issuer);
        let identity = issuer.verify(&token).unwrap();
        assert_eq!(
            (
                identity.uid.as_str(),
                identity.sid.as_str(),
                identity.openid.as_str(),
                identity.unionid.as_deref()
            ),
            ("uid-alice", "sid-1", "o-alice", Some("u-alice"))
        );
        assert_eq!(
            issuer.verify_header(Some(&format!("Bearer {token}"))),
            Ok(identity),
            "the cached answer equals the first"
        );
    }

    #[test]
    fn forged_and_broken_tokens_are_refused() {
        let issuer = issuer(KEY);
        let other = self::issuer("another-key-another-key-another-k");
        let token = alice(&issuer);
        let parts: Vec<&str> = token.split('.').collect();
        let edited_payload = b64(br#"{"sub":"uid-mallory","exp":9999999999}"#);
        let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let hs256 = HS256Key::from_bytes(KEY.as_bytes())
            .authenticate(Claims::with_custom_claims(
                AccessClaims {
                    sid: "sid-1".into(),
                    openid: "o-alice".into(),
                    unionid: None,
                },
                Duration::from_secs(3600).into(),
            ))
            .unwrap();
        let mut wrong_audience = config(KEY, &[]);
        wrong_audience.audience = "wx-other-app".into();
        let cases = [
            (alice(&other), "signed with another key"),
            (
                alice(&TokenIssuer::new(&wrong_audience)),
                "for another mini-program",
            ),
            (
                hs256,
                "HS256 with JWT_SECRET, as the previous release signed",
            ),
            (
                format!("{}.{}.{}", parts[0], edited_payload, parts[2]),
                "payload edited",
            ),
            (format!("{none_header}.{}.", parts[1]), "alg none"),
            (token[..token.len() - 5].to_string(), "truncated"),
            ("not-a-jwt".to_string(), "garbage"),
            ("a".repeat(MAX_TOKEN_BYTES + 1), "oversized"),
        ];
        for (token, what) in cases {
            assert!(issuer.verify(&token).is_err(), "{what} must be refused");
        }
    }

    #[test]
    fn a_previous_key_verifies_but_never_signs() {
        let old = issuer("the-secret-before-this-one-000000");
        let rotated = TokenIssuer::new(&config(KEY, &["the-secret-before-this-one-000000"]));
        let old_token = alice(&old);
        assert!(rotated.verify(&old_token).is_ok(), "old tokens stay valid");
        let new_token = alice(&rotated);
        assert!(
            old.verify(&new_token).is_err(),
            "the new token is signed with the new key"
        );
        assert_eq!(rotated.jwks().keys.len(), 2);
    }

    #[test]
    fn expired_token_is_refused_beyond_the_leeway() {
        let issuer = issuer(KEY);
        let past = jwt_simple::prelude::Clock::now_since_epoch()
            - jwt_simple::prelude::Duration::from_secs(3600 + 120);
        let mut claims = Claims::with_custom_claims(
            AccessClaims {
                sid: "sid-1".into(),
                openid: "o-alice".into(),
                unionid: None,
            },
            Duration::from_secs(3600).into(),
        )
        .with_issuer("https://login.example.com")
        .with_audience("wxappid")
        .with_subject("uid-alice");
        claims.issued_at = Some(past);
        claims.invalid_before = Some(past);
        claims.expires_at = Some(past + jwt_simple::prelude::Duration::from_secs(3600));
        let token = issuer.keys.signing().sign(claims).unwrap();
        assert_eq!(issuer.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn authorization_header_must_be_bearer() {
        let issuer = issuer(KEY);
        let token = alice(&issuer);
        let cases = [
            (None, TokenError::Missing),
            (Some(token.clone()), TokenError::Malformed),
            (Some(format!("Basic {token}")), TokenError::Malformed),
            (Some("Bearer ".to_string()), TokenError::Malformed),
        ];
        for (header, expected) in cases {
            assert_eq!(
                issuer.verify_header(header.as_deref()).map(|_| ()),
                Err(expected),
                "header {header:?}"
            );
        }
        assert!(issuer
            .verify_header(Some(&format!("bearer {token}")))
            .is_ok());
    }

    #[test]
    fn token_never_contains_the_signing_key() {
        let issuer = issuer(KEY);
        let token = alice(&issuer);
        assert!(!token.contains(KEY));
        assert!(!token.contains(&b64(&issuer.keys.signing().to_bytes())));
    }
}
