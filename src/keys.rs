//! The keys that sign and verify access tokens, and the public key set (`/.well-known/jwks.json`).
//!
//! Access tokens are ES256 so that any backend can verify them with the public key alone, never
//! holding what mints them. The signing key is derived from `JWT_SECRET` with HKDF, so every node
//! configured with the same secret signs alike and nothing new has to be distributed; an operator
//! who prefers a managed key gives a PKCS#8 PEM file instead (`WXLOGIN_SIGNING_KEY_FILE`).
//! Previous keys (`WXLOGIN_PREVIOUS_SIGNING_KEYS`) are published and accepted during a rotation,
//! never used to sign. Each key's `kid` is its RFC 7638 JWK thumbprint: stable, and computable by
//! anyone from the public key.

use crate::secret::Secret;
use hkdf::Hkdf;
use jwt_simple::algorithms::{ES256KeyPair, ES256PublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// HKDF salt shared by every key wxlogin derives from `JWT_SECRET`.
const HKDF_SALT: &[u8] = b"wxlogin";
/// HKDF info of the ES256 signing key.
const SIGNING_KEY_INFO: &[u8] = b"es256 signing key v1";
/// HKDF info of the key that derives refresh-token successors.
const REFRESH_KEY_INFO: &[u8] = b"refresh token v1";

/// Where a key comes from; validated by the configuration, turned into a key by [`KeySet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A secret to derive the key from, as `JWT_SECRET` is.
    Derived(Secret),
    /// The text of a PKCS#8 PEM file holding a P-256 private key.
    Pem(Secret),
}

impl KeyMaterial {
    /// The key pair, or why the material holds none (without quoting it).
    pub fn key_pair(&self) -> Result<ES256KeyPair, String> {
        let pair = match self {
            KeyMaterial::Derived(secret) => derive_signing_key(secret.expose().as_bytes()),
            KeyMaterial::Pem(pem) => ES256KeyPair::from_pem(pem.expose())
                .map_err(|_| "not a PKCS#8 PEM P-256 private key".to_string())?,
        };
        let kid = pair.jwk_thumbprint();
        Ok(pair.with_key_id(&kid))
    }
}

/// HKDF-SHA256 of the secret, taken as a P-256 scalar. About one output in 2^32 is not a valid
/// scalar (zero or above the group order); the info then gets a counter byte and HKDF runs again,
/// so every node still lands on the same key.
fn derive_signing_key(secret: &[u8]) -> ES256KeyPair {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret);
    for counter in 0u8..=u8::MAX {
        let mut info = SIGNING_KEY_INFO.to_vec();
        if counter > 0 {
            info.push(counter);
        }
        let mut scalar = [0u8; 32];
        hkdf.expand(&info, &mut scalar)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        if let Ok(pair) = ES256KeyPair::from_bytes(&scalar) {
            return pair;
        }
    }
    unreachable!("256 HKDF outputs in a row were not P-256 scalars")
}

/// The key that derives refresh-token successors (see `session.rs`), from `JWT_SECRET`.
pub fn refresh_key(secret: &Secret) -> [u8; 32] {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.expose().as_bytes())
        .expand(REFRESH_KEY_INFO, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

/// One public key as the JWKS publishes it: exactly these members, so nothing private can
/// slip into the document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// The JWKS document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The key that signs, and every key that verifies (the signing key first), by `kid`.
pub struct KeySet {
    signing: ES256KeyPair,
    verifying: Vec<(String, ES256PublicKey)>,
}

impl KeySet {
    /// Builds the set; materials are validated by the configuration, so this cannot fail on a
    /// config that loaded. A previous key equal to the current one is listed once.
    pub fn new(current: &KeyMaterial, previous: &[KeyMaterial]) -> Result<KeySet, String> {
        let signing = current.key_pair()?;
        let mut verifying = vec![(signing.jwk_thumbprint(), signing.public_key())];
        for material in previous {
            let pair = material.key_pair()?;
            let kid = pair.jwk_thumbprint();
            if !verifying.iter().any(|(k, _)| *k == kid) {
                verifying.push((kid, pair.public_key()));
            }
        }
        Ok(KeySet { signing, verifying })
    }

    pub fn signing(&self) -> &ES256KeyPair {
        &self.signing
    }

    /// The public key with this `kid`, if it is one we accept.
    pub fn verifying(&self, kid: &str) -> Option<&ES256PublicKey> {
        self.verifying
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key)
    }

    /// Every accepted public key, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .verifying
                .iter()
                .map(|(_, key)| {
                    serde_json::from_str(&key.to_jwk())
                        .expect("jwt-simple exports a P-256 public JWK with every member")
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_same_secret_derives_the_same_key_on_every_node() {
        let a = KeyMaterial::Derived(Secret::new(SECRET))
            .key_pair()
            .unwrap();
        let b = KeyMaterial::Derived(Secret::new(SECRET))
            .key_pair()
            .unwrap();
        let other = KeyMaterial::Derived(Secret::new("another secret, just as long....."))
            .key_pair()
            .unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_ne!(a.to_bytes(), other.to_bytes());
        assert_ne!(
            refresh_key(&Secret::new(SECRET)).to_vec(),
            a.to_bytes(),
            "the refresh key is not the signing key"
        );
    }

    #[test]
    fn a_pem_key_loads_and_garbage_is_refused() {
        let pem = ES256KeyPair::generate().to_pem().unwrap();
        let pair = KeyMaterial::Pem(Secret::new(pem.clone()))
            .key_pair()
            .unwrap();
        assert_eq!(
            pair.to_pem().unwrap(),
            pem,
            "the file's key, not a derived one"
        );
        let err = KeyMaterial::Pem(Secret::new("-----BEGIN NOTHING-----"))
            .key_pair()
            .expect_err("refused");
        assert!(
            !err.contains("NOTHING"),
            "the material is not quoted: {err}"
        );
    }

    #[test]
    fn jwks_lists_current_then_previous_keys_once_with_public_members_only() {
        let current = KeyMaterial::Derived(Secret::new(SECRET));
        let previous = KeyMaterial::Derived(Secret::new("the secret before this one........"));
        let set = KeySet::new(&current, &[previous.clone(), current.clone()]).unwrap();
        let jwks = set.jwks();
        let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(
            kids,
            vec![
                current.key_pair().unwrap().jwk_thumbprint(),
                previous.key_pair().unwrap().jwk_thumbprint()
            ]
        );
        for key in &jwks.keys {
            assert_eq!(
                (key.kty.as_str(), key.crv.as_str(), key.alg.as_str()),
                ("EC", "P-256", "ES256")
            );
            assert_eq!(key.use_, "sig");
        }
        let text = serde_json::to_string(&jwks).unwrap();
        assert!(!text.contains("\"d\""), "no private member: {text}");
    }
}
