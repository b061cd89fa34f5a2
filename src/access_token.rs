//! The process-wide cache of WeChat's access_token (for server APIs such as the phone number).
//!
//! The token comes from `/cgi-bin/stable_token` in normal mode, so other wxlogin processes can
//! fetch their own without invalidating ours. It is refreshed ahead of expiry by exactly one
//! thread while the others go on using the still-valid token; threads wait only when there is no
//! valid token at all, and never while holding the lock across the HTTP call. An API answer of
//! 40001 (invalid) or 42001 (expired) drops the token and the call is retried once.
//! jscode2session needs no access_token and never goes through here.

use crate::secret::Secret;
use crate::wechat::{AccessToken, WechatClient, WechatError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long before expiry a token is refreshed (WeChat's own advice is five minutes).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// The access_token cache.
pub struct AccessTokens {
    client: WechatClient,
    state: Mutex<State>,
    changed: Condvar,
    /// Bound on waiting for another thread's refresh.
    wait_limit: Duration,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// A thread is fetching a token right now.
    refreshing: bool,
    /// Completed fetches, successful or not: waiters compare it to know one finished.
    attempts: u64,
    last_error: Option<WechatError>,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

impl Cached {
    fn new(token: AccessToken, fetched_at: Instant) -> Cached {
        // Refresh five minutes ahead, or half-way through for tokens that live less than ten.
        let ahead = REFRESH_AHEAD.min(token.expires_in / 2);
        Cached {
            token: token.value,
            refresh_at: fetched_at + token.expires_in - ahead,
            expires_at: fetched_at + token.expires_in,
        }
    }
}

impl AccessTokens {
    /// `wait_limit` bounds how long a caller waits for another thread's fetch; use the upstream
    /// timeout plus a margin.
    pub fn new(client: WechatClient, wait_limit: Duration) -> AccessTokens {
        AccessTokens {
            client,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            wait_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every field is consistent at each unlock, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A valid token: the cached one, or a freshly fetched one.
    pub fn token(&self) -> Result<Secret, WechatError> {
        let deadline = Instant::now() + self.wait_limit;
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let valid = state.current.as_ref().filter(|c| now < c.expires_at);
            if let Some(cached) = valid {
                if now < cached.refresh_at || state.refreshing {
                    return Ok(cached.token.clone());
                }
            }
            if !state.refreshing {
                state.refreshing = true;
                drop(state);
                return self.refresh();
            }
            // Someone else is fetching and we have nothing valid: wait for them, bounded.
            let seen = state.attempts;
            if now >= deadline {
                return Err(WechatError::Timeout);
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            let fresh = state
                .current
                .as_ref()
                .filter(|c| Instant::now() < c.expires_at);
            if let Some(cached) = fresh {
                return Ok(cached.token.clone());
            }
            if state.attempts != seen {
                return Err(state.last_error.clone().unwrap_or(WechatError::Timeout));
            }
        }
    }

    /// Fetches a token, the lock released; called by the one thread that set `refreshing`.
    fn refresh(&self) -> Result<Secret, WechatError> {
        /// Clears `refreshing` even if the fetch panics, so waiters are never stranded.
        struct Finish<'a>(&'a AccessTokens);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mut state = self.0.lock();
                state.refreshing = false;
                state.attempts += 1;
                self.0.changed.notify_all();
            }
        }
        let finish = Finish(self);
        let fetched_at = Instant::now();
        let result = self.client.stable_token();
        let mut state = self.lock();
        let outcome = match result {
            Ok(token) => {
                let cached = Cached::new(token, fetched_at);
                let value = cached.token.clone();
                state.current = Some(cached);
                state.last_error = None;
                Ok(value)
            }
            Err(e) => {
                log::warn!("access_token refresh failed: {e}");
                state.last_error = Some(e.clone());
                // A token that is still valid beats an error.
                match state
                    .current
                    .as_ref()
                    .filter(|c| Instant::now() < c.expires_at)
                {
                    Some(cached) => Ok(cached.token.clone()),
                    None => Err(e),
                }
            }
        };
        drop(state);
        drop(finish);
        outcome
    }

    /// Drops `token` if it is still the cached one (a newer token is left alone).
    pub fn invalidate(&self, token: &Secret) {
        let mut state = self.lock();
        if state.current.as_ref().is_some_and(|c| &c.token == token) {
            state.current = None;
        }
    }

    /// Runs `call` with a valid token; on 40001/42001 drops the token and retries once.
    pub fn with_token<T>(
        &self,
        call: impl Fn(&Secret) -> Result<T, WechatError>,
    ) -> Result<T, WechatError> {
        let token = self.token()?;
        match call(&token) {
            Err(WechatError::Rejected {
                errcode: 40001 | 42001,
                ..
            }) => {
                log::info!("access_token rejected by WeChat; fetching a new one and retrying once");
                self.invalidate(&token);
                call(&self.token()?)
            }
            other => other,
        }
    }
}
