//! One WeChat exchange per login code across every node, and the replay window.
//!
//! A `wx.login()` code works once at WeChat. A client that retries after a dropped answer, or
//! whose retry a load balancer sends to another node, would get 40163 "code been used". So the
//! first request to claim a code (in the database, by a hash of the AppID and the code, never
//! the code) asks WeChat; requests that find it claimed wait for the outcome; and once the user's
//! row is written, the outcome (who it was) is kept for `WXLOGIN_CODE_REPLAY_WINDOW`, so a retry
//! on any node logs the same user in with the session_key stored for them. A claim is bounded:
//! a node that dies while asking WeChat loses it after the wait limit. Failures are not kept:
//! the claim is given up, and a retry asks WeChat again.

use crate::error::Error;
use crate::secret::hex;
use crate::store::{CodeClaim, CodeOutcome, UserStore};
use crate::token::unix_now;
use crate::wechat::{Session, WechatError};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a request waiting for another's exchange looks again.
const POLL: Duration = Duration::from_millis(25);
/// Every this many claims, a node also forgets the codes past their window.
const PURGE_EVERY: u64 = 256;

/// The outcome of a code's exchange, as one request sees it.
#[derive(Clone)]
pub struct Exchange {
    pub session: Session,
    /// The claim this request's exchange made, to finish once the user's row is written.
    claim: Option<String>,
}

/// Login codes shared by every node through the database.
pub struct CodeReplay {
    store: Arc<dyn UserStore>,
    appid: String,
    window: Duration,
    wait_limit: Duration,
    claims: AtomicU64,
}

impl CodeReplay {
    /// `window` is how long an outcome is kept (zero: not at all, and codes are not shared
    /// between nodes either); `wait_limit` bounds both a claim and a wait for another's.
    pub fn new(
        store: Arc<dyn UserStore>,
        appid: String,
        window: Duration,
        wait_limit: Duration,
    ) -> CodeReplay {
        CodeReplay {
            store,
            appid,
            window,
            wait_limit,
            claims: AtomicU64::new(0),
        }
    }

    /// The session this code stands for: from `ask` (WeChat) when this request claims the code,
    /// else from the exchange another request made with it, on any node.
    pub fn exchange(
        &self,
        code: &str,
        ask: impl FnOnce() -> Result<Session, Error>,
    ) -> Result<Exchange, Error> {
        if self.window.is_zero() {
            return ask().map(|session| Exchange {
                session,
                claim: None,
            });
        }
        let hash = self.hash(code);
        let deadline = Instant::now() + self.wait_limit;
        loop {
            let now = unix_now() as i64;
            let claim_until = now + self.wait_limit.as_secs().max(1) as i64;
            match self.store.claim_code(&hash, now, claim_until)? {
                CodeClaim::Claimed => {
                    self.purge_now_and_then(now);
                    return match ask() {
                        Ok(session) => Ok(Exchange {
                            session,
                            claim: Some(hash),
                        }),
                        Err(e) => {
                            if let Err(release) = self.store.release_code(&hash) {
                                log::warn!("could not give up a login code's claim: {release}");
                            }
                            Err(e)
                        }
                    };
                }
                CodeClaim::Done { openid, unionid } => {
                    // Written before the outcome was: absent only if the user was erased since.
                    let session_key = self.store.find_session_key(&openid)?.ok_or_else(|| {
                        Error::Wechat(WechatError::Rejected {
                            errcode: 40163,
                            errmsg: "code been used (its user is gone)".into(),
                        })
                    })?;
                    return Ok(Exchange {
                        session: Session {
                            openid,
                            unionid,
                            session_key,
                        },
                        claim: None,
                    });
                }
                CodeClaim::Pending if Instant::now() >= deadline => {
                    return Err(Error::Wechat(WechatError::Timeout));
                }
                CodeClaim::Pending => std::thread::sleep(POLL),
            }
        }
    }

    /// What to keep of `exchange` for retries, written with its user's row (`write_login`):
    /// `None` when this request did not claim the code. If that write fails, the claim stays
    /// until its bound, and a retry then asks WeChat again.
    pub fn outcome<'a>(&self, exchange: &'a Exchange) -> Option<CodeOutcome<'a>> {
        let hash = exchange.claim.as_deref()?;
        Some(CodeOutcome {
            hash,
            unionid: exchange.session.unionid.as_deref(),
            remember_until: unix_now() as i64 + self.window.as_secs() as i64,
        })
    }

    fn hash(&self, code: &str) -> String {
        let mut sha = Sha256::new();
        sha.update(self.appid.as_bytes());
        sha.update(b":");
        sha.update(code.as_bytes());
        hex(&sha.finalize())
    }

    fn purge_now_and_then(&self, now: i64) {
        if self
            .claims
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PURGE_EVERY)
        {
            if let Err(e) = self.store.purge_codes(now) {
                log::warn!("could not forget expired login codes: {e}");
            }
        }
    }
}
