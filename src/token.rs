//! Issuing and checking our own bearer tokens (HS256 JWTs).
//!
//! The token says who the user is (openid, unionid) and until when; it never carries the
//! session_key, which would let anyone holding the token decrypt the user's WeChat data. The key
//! is derived once at start-up, and verification is pinned to HS256 with a small clock leeway and
//! a required `exp`, because jwt-simple's defaults accept tokens 15 minutes past expiry.

use crate::config::JwtConfig;
use jwt_simple::algorithms::{HS256Key, MACLike};
use jwt_simple::claims::Claims;
use jwt_simple::common::VerificationOptions;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Tokens longer than this are refused before any signature work; ours are ~300 bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock drift tolerated between nodes when checking `exp`, `nbf` and `iat`.
const LEEWAY: Duration = Duration::from_secs(30);

/// Our custom claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserClaims {
    pub openid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
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
            TokenError::Invalid => "the token is invalid or expired; log in again",
        }
    }
}

/// Signs and verifies tokens with one key set up at start-up.
pub struct TokenIssuer {
    key: HS256Key,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(config: &JwtConfig) -> TokenIssuer {
        TokenIssuer {
            key: HS256Key::from_bytes(config.secret.expose().as_bytes()),
            ttl: config.ttl,
        }
    }

    /// A signed token for this user, valid for the configured lifetime.
    pub fn issue(&self, claims: UserClaims) -> String {
        let claims = Claims::with_custom_claims(claims, self.ttl.into());
        self.key
            .authenticate(claims)
            .expect("HS256 signing of serialisable claims cannot fail")
    }

    /// The user a token names, if it is ours, intact and unexpired.
    pub fn verify(&self, token: &str) -> Result<UserClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let options = VerificationOptions {
            time_tolerance: Some(LEEWAY.into()),
            max_token_length: Some(MAX_TOKEN_BYTES),
            max_header_length: Some(512),
            ..VerificationOptions::default()
        };
        let claims = self
            .key
            .verify_token::<UserClaims>(token, Some(options))
            .map_err(|_| TokenError::Invalid)?;
        // jwt-simple only checks `exp` when present; a token without one would never expire.
        if claims.expires_at.is_none() || claims.custom.openid.is_empty() {
            return Err(TokenError::Invalid);
        }
        Ok(claims.custom)
    }

    /// Extracts and verifies the token of an `Authorization: Bearer <token>` header value.
    pub fn verify_header(&self, header: Option<&str>) -> Result<UserClaims, TokenError> {
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
    use crate::secret::Secret;

    fn issuer(secret: &str, ttl: Duration) -> TokenIssuer {
        TokenIssuer::new(&JwtConfig {
            secret: Secret::new(secret),
            ttl,
        })
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn alice() -> UserClaims {
        UserClaims {
            openid: "o-alice".into(),
            unionid: Some("u-alice".into()),
        }
    }

    fn b64(data: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn issued_token_verifies_and_round_trips_claims() {
        let issuer = issuer(KEY, Duration::from_secs(3600));
        let token = issuer.issue(alice());
        assert_eq!(issuer.verify(&token), Ok(alice()));
        assert_eq!(
            issuer.verify_header(Some(&format!("Bearer {token}"))),
            Ok(alice())
        );
    }

    #[test]
    fn forged_and_broken_tokens_are_refused() {
        let issuer = issuer(KEY, Duration::from_secs(3600));
        let other = self::issuer(
            "another-key-another-key-another-k",
            Duration::from_secs(3600),
        );
        let token = issuer.issue(alice());
        let parts: Vec<&str> = token.split('.').collect();
        let edited_payload = b64(br#"{"openid":"o-mallory","exp":9999999999}"#);
        let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let cases = [
            (other.issue(alice()), "signed with another key"),
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
    fn expired_token_is_refused_beyond_the_leeway() {
        let issuer = issuer(KEY, Duration::from_secs(3600));
        let past = jwt_simple::prelude::Clock::now_since_epoch()
            - jwt_simple::prelude::Duration::from_secs(3600 + 120);
        let mut claims = Claims::with_custom_claims(alice(), Duration::from_secs(3600).into());
        claims.issued_at = Some(past);
        claims.invalid_before = Some(past);
        claims.expires_at = Some(past + jwt_simple::prelude::Duration::from_secs(3600));
        let token = issuer.key.authenticate(claims).unwrap();
        assert_eq!(issuer.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn authorization_header_must_be_bearer() {
        let issuer = issuer(KEY, Duration::from_secs(3600));
        let token = issuer.issue(alice());
        let cases = [
            (None, TokenError::Missing),
            (Some(token.clone()), TokenError::Malformed),
            (Some(format!("Basic {token}")), TokenError::Malformed),
            (Some("Bearer ".to_string()), TokenError::Malformed),
        ];
        for (header, expected) in cases {
            assert_eq!(
                issuer.verify_header(header.as_deref()),
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
        let issuer = issuer(KEY, Duration::from_secs(3600));
        let token = issuer.issue(alice());
        assert!(!token.contains(KEY));
    }
}
