//! Access tokens as `/cgi-bin/stable_token` hands them out in WeChat's normal mode: the
//! current token while it is valid, a new one when none is or when asked to force a refresh,
//! older tokens staying valid until their own expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// How many tokens are remembered. When full, expired ones are forgotten first, then all of
/// them (forgotten tokens get 40001 instead of 42001). Only force refreshes mint many.
const TOKENS_LIMIT: usize = 100_000;

/// What a token presented to an API is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Valid,
    /// Never issued (or forgotten): 40001.
    Unknown,
    /// Issued, but past its lifetime or expired by `expire_all`: 42001.
    Expired,
}

pub(crate) struct Tokens {
    ttl: Duration,
    inner: Mutex<Inner>,
    minted: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// The token normal mode hands out while it is valid.
    current: Option<String>,
    issued: HashMap<String, Issued>,
}

struct Issued {
    at: Instant,
    /// Set to zero by `expire_all`. Kept as a duration rather than an end instant so that
    /// no lifetime, however long, can overflow an `Instant`.
    ttl: Duration,
}

impl Issued {
    fn remaining(&self) -> Duration {
        self.ttl.saturating_sub(self.at.elapsed())
    }
}

impl Tokens {
    pub(crate) fn new(ttl: Duration) -> Tokens {
        Tokens {
            ttl,
            inner: Mutex::new(Inner::default()),
            minted: AtomicU64::new(0),
        }
    }

    /// A stable_token answer: the token and its remaining whole seconds, rounded up so that
    /// a valid token never says 0. `mint` makes a new token when one is needed.
    pub(crate) fn stable(
        &self,
        force_refresh: bool,
        mint: impl FnOnce() -> String,
    ) -> (String, u64) {
        let mut inner = lock(&self.inner);
        if !force_refresh {
            let current = inner.current.as_ref().and_then(|token| {
                let remaining = inner.issued.get(token)?.remaining();
                (!remaining.is_zero()).then(|| (token.clone(), ceil_secs(remaining)))
            });
            if let Some(current) = current {
                log::info!(
                    "stable_token: the current access_token ({} s left)",
                    current.1
                );
                return current;
            }
        }
        if inner.issued.len() >= TOKENS_LIMIT {
            inner
                .issued
                .retain(|_, issued| !issued.remaining().is_zero());
            if inner.issued.len() >= TOKENS_LIMIT {
                log::warn!(
                    "forgetting {} access tokens (limit reached)",
                    inner.issued.len()
                );
                inner.issued.clear();
            }
        }
        let token = mint();
        inner.issued.insert(
            token.clone(),
            Issued {
                at: Instant::now(),
                ttl: self.ttl,
            },
        );
        inner.current = Some(token.clone());
        self.minted.fetch_add(1, Ordering::SeqCst);
        let why = if force_refresh {
            "force_refresh"
        } else {
            "none was valid"
        };
        log::info!("stable_token: minted a new access_token ({why})");
        (token, ceil_secs(self.ttl))
    }

    pub(crate) fn check(&self, token: &str) -> Check {
        match lock(&self.inner).issued.get(token) {
            None => Check::Unknown,
            Some(issued) if issued.remaining().is_zero() => Check::Expired,
            Some(_) => Check::Valid,
        }
    }

    /// Makes every token issued so far expired; returns how many were still valid.
    pub(crate) fn expire_all(&self) -> usize {
        let mut inner = lock(&self.inner);
        let mut expired = 0;
        for issued in inner.issued.values_mut() {
            if !issued.remaining().is_zero() {
                expired += 1;
            }
            issued.ttl = Duration::ZERO;
        }
        expired
    }

    pub(crate) fn minted(&self) -> u64 {
        self.minted.load(Ordering::SeqCst)
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    let round_up = u64::from(duration.subsec_nanos() > 0);
    duration.as_secs().saturating_add(round_up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn minter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("token{n}")
        }
    }

    #[test]
    fn normal_mode_returns_the_current_token_with_its_remaining_seconds() {
        let tokens = Tokens::new(Duration::from_secs(7200));
        let mut mint = minter();
        assert_eq!(tokens.stable(false, &mut mint), ("token1".to_owned(), 7200));
        thread::sleep(Duration::from_millis(1100));
        let (token, expires_in) = tokens.stable(false, &mut mint);
        assert_eq!(token, "token1");
        assert!((7198..=7199).contains(&expires_in), "{expires_in}");
        assert_eq!(tokens.minted(), 1);
    }

    #[test]
    fn force_refresh_mints_a_new_token_and_keeps_the_old_one_valid() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let mut mint = minter();
        tokens.stable(false, &mut mint);
        assert_eq!(tokens.stable(true, &mut mint).0, "token2");
        assert_eq!(tokens.stable(false, &mut mint).0, "token2");
        assert_eq!(tokens.check("token1"), Check::Valid);
        assert_eq!(tokens.check("token2"), Check::Valid);
        assert_eq!(tokens.check("token3"), Check::Unknown);
        assert_eq!(tokens.minted(), 2);
    }

    #[test]
    fn an_expired_token_is_replaced_and_reported_expired() {
        let tokens = Tokens::new(Duration::from_millis(200));
        let mut mint = minter();
        assert_eq!(tokens.stable(false, &mut mint), ("token1".to_owned(), 1));
        thread::sleep(Duration::from_millis(250));
        assert_eq!(tokens.check("token1"), Check::Expired);
        assert_eq!(tokens.stable(false, &mut mint).0, "token2");
    }

    #[test]
    fn expire_all_expires_every_token_so_far() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let mut mint = minter();
        tokens.stable(false, &mut mint);
        tokens.stable(true, &mut mint);
        assert_eq!(tokens.expire_all(), 2);
        assert_eq!(tokens.expire_all(), 0);
        assert_eq!(tokens.check("token1"), Check::Expired);
        assert_eq!(tokens.check("token2"), Check::Expired);
        assert_eq!(tokens.stable(false, &mut mint), ("token3".to_owned(), 60));
        assert_eq!(tokens.check("token3"), Check::Valid);
    }

    #[test]
    fn extreme_lifetimes_do_not_panic() {
        let forever = Tokens::new(Duration::MAX);
        assert_eq!(forever.stable(false, minter()).1, u64::MAX);
        assert_eq!(forever.check("token1"), Check::Valid);
        let never = Tokens::new(Duration::ZERO);
        assert_eq!(never.stable(false, minter()).1, 0);
        assert_eq!(never.check("token1"), Check::Expired);
    }
}
