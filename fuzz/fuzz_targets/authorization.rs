//! `Authorization` headers and tokens: nothing the fuzzer makes may verify.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wxlogin::config::JwtConfig;
use wxlogin::secret::Secret;
use wxlogin::token::TokenIssuer;

fuzz_target!(|header: &str| {
    static ISSUER: OnceLock<TokenIssuer> = OnceLock::new();
    let issuer = ISSUER.get_or_init(|| {
        TokenIssuer::new(&JwtConfig {
            secret: Secret::new("fuzzing-key-fuzzing-key-fuzzing-key"),
            ttl: std::time::Duration::from_secs(3600),
        })
    });
    assert!(issuer.verify_header(Some(header)).is_err());
    assert!(issuer.verify(header).is_err());
});
