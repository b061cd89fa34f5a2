//! Sessions: what a login opens, a refresh extends, and a logout, a revocation or a detected
//! theft ends.
//!
//! A login opens a session and hands out a short access token (ES256, `token.rs`) and an opaque
//! refresh token. Refresh tokens are stored only as their SHA-256 and rotate on every use. The
//! successor of a refresh token is derived from it (HMAC with a key derived from `JWT_SECRET`),
//! not drawn at random, so every node computes the same one: a mini-program that fires several
//! refreshes at once when its access token expires gets the same pair from each, whichever node
//! serves them, within `WXLOGIN_REFRESH_REUSE_GRACE`. A rotated token presented later is a copy
//! in someone else's hands: the whole session is revoked.
//!
//! Every authenticated endpoint calls [`SessionService::authenticate`]: the token's signature and
//! claims, then whether its session still stands. That answer is cached per node for
//! `WXLOGIN_REVOCATION_DELAY`, so a revocation is seen at once on the node that made it and
//! within the delay on the others; the refresh path always reads the database.

use crate::config::SessionConfig;
use crate::error::Error;
use crate::keys;
use crate::secret::{hex, random_hex, Secret};
use crate::store::{
    LoginSession, RevokeReason, Rotation, SessionInfo, SessionState, StoreError, UserStore,
};
use crate::token::{unix_now, Identity, TokenIssuer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Every refresh token starts with this, so a leaked one is recognisable (secret scanners) and a
/// client cannot confuse it with an access token.
const REFRESH_PREFIX: &str = "rt_";
/// Ours are 46 bytes; anything much longer is not worth hashing.
const MAX_REFRESH_TOKEN_BYTES: usize = 128;
/// `User-Agent` kept on a session, in characters.
const MAX_USER_AGENT_CHARS: usize = 255;
/// Client address kept on a session, in characters.
const MAX_IP_CHARS: usize = 64;
/// Sessions whose state a node remembers. Beyond it, stale entries go first, then all: a
/// forgotten entry costs one database read, never a wrong answer (revocations are written to
/// the database before they are cached).
const REVOCATION_CACHE_ENTRIES: usize = 100_000;

/// What a login or a refresh hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    /// Seconds the access token has left.
    pub expires_in: u64,
    pub refresh_token: String,
    /// Seconds the refresh token has left.
    pub refresh_expires_in: u64,
}

/// A session about to be written: see `SessionService::draft`.
pub struct SessionDraft<'c> {
    id: String,
    refresh_token: String,
    refresh_hash: String,
    now: i64,
    expires_at: i64,
    max_expires_at: i64,
    user_agent: &'c str,
    ip: &'c str,
}

impl SessionDraft<'_> {
    /// The row to write, for any uid.
    pub fn row(&self) -> LoginSession<'_> {
        LoginSession {
            id: &self.id,
            created_at: self.now,
            expires_at: self.expires_at,
            max_expires_at: self.max_expires_at,
            user_agent: self.user_agent,
            ip: self.ip,
            refresh_hash: &self.refresh_hash,
        }
    }
}

/// Who opened a session, as the session list shows it.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    pub user_agent: &'a str,
    /// The client address as the access log computes it.
    pub ip: &'a str,
}

/// The refresh expiry after a refresh at `now`: the idle lifetime from now, never past the cap.
pub fn slide(now: i64, refresh_ttl: Duration, max_expires_at: i64) -> i64 {
    now.saturating_add(secs(refresh_ttl)).min(max_expires_at)
}

/// Whether a token rotated at `rotated_at` may still be presented at `now` for the same pair.
/// Times are whole seconds, so the grace is too (rounded down; 0 allows only the same second).
pub fn within_grace(now: i64, rotated_at: i64, grace: Duration) -> bool {
    now.saturating_sub(rotated_at) <= secs(grace)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds from `now` until `at`, zero when past.
fn remaining(at: i64, now: i64) -> u64 {
    u64::try_from(at.saturating_sub(now)).unwrap_or(0)
}

/// The first `max` characters of `text`.
fn truncate(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(end, _)| &text[..end])
}

/// Hex SHA-256: how a refresh token is stored and looked up.
fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Per-node memory of session states: `sid → (state, checked at)`.
struct RevocationCache {
    delay: Duration,
    /// Read on every authenticated request, written once per session and delay: readers share.
    entries: RwLock<HashMap<String, (SessionState, Instant)>>,
}

impl RevocationCache {
    // Each entry is written whole: poisoning cannot leave a half-written one.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, (SessionState, Instant)>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, (SessionState, Instant)>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's state: a revoked or gone session stays so; a live one is trusted for
    /// `delay`, then read again with `lookup`. A zero delay reads the database every time.
    fn state(
        &self,
        sid: &str,
        lookup: impl FnOnce() -> Result<SessionState, StoreError>,
    ) -> Result<SessionState, StoreError> {
        if self.delay.is_zero() {
            return lookup();
        }
        if let Some(&(state, checked_at)) = self.read().get(sid) {
            if state != SessionState::Live || checked_at.elapsed() < self.delay {
                return Ok(state);
            }
        }
        let state = lookup()?;
        self.remember(sid, state);
        Ok(state)
    }

    /// Records a state this node just wrote to the database.
    fn remember(&self, sid: &str, state: SessionState) {
        if self.delay.is_zero() {
            return;
        }
        let mut entries = self.write();
        if entries.len() >= REVOCATION_CACHE_ENTRIES {
            let delay = self.delay;
            entries.retain(|_, (state, at)| *state != SessionState::Live || at.elapsed() < delay);
            if entries.len() >= REVOCATION_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(sid.to_string(), (state, Instant::now()));
    }
}

/// The session use cases, shared by every connection.
pub struct SessionService {
    store: Arc<dyn UserStore>,
    tokens: Arc<TokenIssuer>,
    config: SessionConfig,
    /// HMAC key deriving each refresh token's successor.
    refresh_key: [u8; 32],
    revocations: RevocationCache,
}

/// Why a refresh token was refused, in the client's words.
const REFRESH_UNKNOWN: &str = "the refresh token is unknown; log in again";
const REFRESH_EXPIRED: &str = "the refresh token has expired; log in again";
const REFRESH_REVOKED: &str = "this session was ended (logout or revocation); log in again";
const SESSION_ENDED: &str = "this session was ended (logout or revocation); log in again";

impl SessionService {
    pub fn new(
        store: Arc<dyn UserStore>,
        tokens: Arc<TokenIssuer>,
        config: SessionConfig,
        jwt_secret: &Secret,
    ) -> SessionService {
        SessionService {
            store,
            tokens,
            revocations: RevocationCache {
                delay: config.revocation_delay,
                entries: RwLock::new(HashMap::new()),
            },
            config,
            refresh_key: keys::refresh_key(jwt_secret),
        }
    }

    /// Opens a session for a user who just logged in.
    pub fn start(
        &self,
        uid: &str,
        openid: &str,
        unionid: Option<&str>,
        client: ClientInfo<'_>,
    ) -> Result<TokenPair, Error> {
        let draft = self.draft(client);
        self.store.create_session(&draft.row().for_user(uid))?;
        Ok(self.issue(&draft, uid, openid, unionid))
    }

    /// A new session's identifiers and times, to be written (`SessionDraft::row`) before
    /// `issue` signs its tokens.
    pub fn draft<'c>(&self, client: ClientInfo<'c>) -> SessionDraft<'c> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let id = random_hex(16);
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).expect("the operating system's random source failed");
        let refresh_token = format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        let max_expires_at = now.saturating_add(secs(self.config.max_age));
        let expires_at = slide(now, self.config.refresh_ttl, max_expires_at);
        SessionDraft {
            refresh_hash: token_hash(&refresh_token),
            id,
            refresh_token,
            now,
            expires_at,
            max_expires_at,
            user_agent: truncate(client.user_agent, MAX_USER_AGENT_CHARS),
            ip: truncate(client.ip, MAX_IP_CHARS),
        }
    }

    /// The tokens of a session `draft` whose row is committed.
    pub fn issue(
        &self,
        draft: &SessionDraft<'_>,
        uid: &str,
        openid: &str,
        unionid: Option<&str>,
    ) -> TokenPair {
        TokenPair {
            access_token: self.tokens.issue(uid, &draft.id, openid, unionid),
            expires_in: self.tokens.ttl().as_secs(),
            refresh_token: draft.refresh_token.clone(),
            refresh_expires_in: remaining(draft.expires_at, draft.now),
        }
    }

    /// The refresh token that rotating `token` produces, the same on every node.
    fn successor(&self, token: &str) -> String {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.refresh_key)
            .expect("HMAC takes a key of any length");
        mac.update(token.as_bytes());
        format!(
            "{REFRESH_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// Exchanges a refresh token for a new pair (see the module documentation); `client` is
    /// recorded in the login history. `admit` is asked with the session's uid before a rotation
    /// writes anything, so a per-user limit refuses it without spending the token; a repeat
    /// within the grace only reads what a rotation already wrote, and is not asked about.
    pub fn refresh(
        &self,
        refresh_token: &str,
        client: ClientInfo<'_>,
        admit: impl FnOnce(&str) -> Result<(), Error>,
    ) -> Result<TokenPair, Error> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        if !refresh_token.starts_with(REFRESH_PREFIX)
            || refresh_token.len() > MAX_REFRESH_TOKEN_BYTES
        {
            return Err(Error::RefreshRefused(REFRESH_UNKNOWN));
        }
        let hash = token_hash(refresh_token);
        let mut admit = Some(admit);
        // A lost race means another refresh just rotated the token: the second read finds it
        // rotated, within the grace.
        for _ in 0..2 {
            let record = self
                .store
                .find_refresh(&hash)?
                .ok_or(Error::RefreshRefused(REFRESH_UNKNOWN))?;
            if record.disabled {
                return Err(Error::AccountDisabled);
            }
            if record.revoked {
                return Err(Error::RefreshRefused(REFRESH_REVOKED));
            }
            let openid = record.openid.as_deref().ok_or_else(Error::user_gone)?;
            if record.expires_at <= now {
                return Err(Error::RefreshRefused(REFRESH_EXPIRED));
            }
            let successor = self.successor(refresh_token);
            match record.rotated_at {
                None => {
                    if let Some(admit) = admit.take() {
                        admit(&record.uid)?;
                    }
                    let access_token = self.tokens.issue(
                        &record.uid,
                        &record.session_id,
                        openid,
                        record.unionid.as_deref(),
                    );
                    let expires_at = slide(now, self.config.refresh_ttl, record.max_expires_at);
                    let rotated = self.store.rotate_refresh(&Rotation {
                        old_hash: &hash,
                        new_hash: &token_hash(&successor),
                        session_id: &record.session_id,
                        access_token: &access_token,
                        now,
                        expires_at,
                        user_agent: truncate(client.user_agent, MAX_USER_AGENT_CHARS),
                        ip: truncate(client.ip, MAX_IP_CHARS),
                    })?;
                    if rotated {
                        return Ok(TokenPair {
                            access_token,
                            expires_in: self.tokens.ttl().as_secs(),
                            refresh_token: successor,
                            refresh_expires_in: remaining(expires_at, now),
                        });
                    }
                }
                Some(rotated_at) if within_grace(now, rotated_at, self.config.reuse_grace) => {
                    let access_token = record.successor_access.ok_or_else(|| {
                        Error::Internal("a rotated refresh token has no successor".into())
                    })?;
                    let expires_at = self.tokens.verify(&access_token).map_or(now, |identity| {
                        i64::try_from(identity.expires_at).unwrap_or(i64::MAX)
                    });
                    return Ok(TokenPair {
                        access_token,
                        expires_in: remaining(expires_at, now),
                        refresh_token: successor,
                        refresh_expires_in: remaining(record.expires_at, now),
                    });
                }
                Some(_) => {
                    self.store.revoke_session(
                        &record.uid,
                        &record.session_id,
                        now,
                        RevokeReason::Reuse,
                    )?;
                    self.revocations
                        .remember(&record.session_id, SessionState::Revoked);
                    log::warn!(
                        "refresh token reused after its rotation: session {} revoked",
                        record.session_id
                    );
                    return Err(Error::RefreshReused);
                }
            }
        }
        Err(Error::Internal(
            "a refresh token was rotated concurrently but not found rotated".into(),
        ))
    }

    /// The verified identity of an `Authorization` header whose session still stands.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, Error> {
        let identity = self
            .tokens
            .verify_header(authorization)
            .map_err(|e| Error::Unauthorized(e.client_message()))?;
        let state = self
            .revocations
            .state(&identity.sid, || self.store.session_state(&identity.sid))?;
        match state {
            SessionState::Live => Ok(identity),
            SessionState::Revoked => Err(Error::Unauthorized(SESSION_ENDED)),
            SessionState::Disabled => Err(Error::AccountDisabled),
            SessionState::Gone => Err(Error::user_gone()),
        }
    }

    /// Ends the caller's session.
    pub fn logout(&self, identity: &Identity) -> Result<(), Error> {
        self.revoke_for(identity, &identity.sid, RevokeReason::Logout)
    }

    /// Ends every session of the caller's user; how many were live.
    pub fn logout_all(&self, identity: &Identity) -> Result<usize, Error> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let ids = self
            .store
            .revoke_user_sessions(&identity.uid, now, RevokeReason::LogoutAll)?;
        self.revoked(&ids);
        self.revoked(std::slice::from_ref(&identity.sid));
        Ok(ids.len())
    }

    /// Tells this node's cache about sessions another use case revoked in the database
    /// (disabling, deletion), so this node refuses them at once.
    pub fn revoked(&self, ids: &[String]) {
        for id in ids {
            self.revocations.remember(id, SessionState::Revoked);
        }
    }

    /// The caller's live sessions, newest first.
    pub fn list(&self, identity: &Identity) -> Result<Vec<SessionInfo>, Error> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        Ok(self.store.list_sessions(&identity.uid, now)?)
    }

    /// Ends one of the caller's own sessions; another user's is not found.
    pub fn revoke(&self, identity: &Identity, session_id: &str) -> Result<(), Error> {
        self.revoke_for(identity, session_id, RevokeReason::Revoked)
    }

    fn revoke_for(
        &self,
        identity: &Identity,
        session_id: &str,
        reason: RevokeReason,
    ) -> Result<(), Error> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        if !self
            .store
            .revoke_session(&identity.uid, session_id, now, reason)?
        {
            return Err(Error::SessionNotFound);
        }
        self.revocations.remember(session_id, SessionState::Revoked);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn each_refresh_slides_the_expiry_up_to_the_cap() {
        let login = 1_700_000_000;
        let ttl = Duration::from_secs(30 * DAY as u64);
        let cap = login + 180 * DAY;
        let cases = [
            (login, login + 30 * DAY, "at login: the idle lifetime"),
            (login + 10 * DAY, login + 40 * DAY, "a refresh slides it"),
            (login + 149 * DAY, login + 179 * DAY, "still under the cap"),
            (login + 160 * DAY, cap, "capped by the max age"),
            (login + 179 * DAY, cap, "never past the cap"),
        ];
        for (now, expected, what) in cases {
            assert_eq!(slide(now, ttl, cap), expected, "{what}");
        }
    }

    #[test]
    fn the_grace_counts_whole_seconds_from_the_rotation() {
        let rotated = 1_700_000_000;
        let grace = Duration::from_secs(30);
        let cases = [
            (rotated, true, "the same second"),
            (rotated + 30, true, "the last second of the grace"),
            (rotated + 31, false, "after the grace"),
        ];
        for (now, expected, what) in cases {
            assert_eq!(within_grace(now, rotated, grace), expected, "{what}");
        }
        assert!(within_grace(rotated, rotated, Duration::ZERO));
        assert!(!within_grace(rotated + 1, rotated, Duration::ZERO));
    }

    #[test]
    fn user_agents_are_truncated_on_a_character_boundary() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("微信小程序", 2), "微信");
        assert_eq!(truncate("ab", 5), "ab");
    }

    #[test]
    fn a_cached_live_session_is_read_again_after_the_delay_and_a_revoked_one_never() {
        let cache = RevocationCache {
            delay: Duration::from_secs(3600),
            entries: RwLock::new(HashMap::new()),
        };
        let lookups = std::cell::Cell::new(0);
        let live = || {
            lookups.set(lookups.get() + 1);
            Ok(SessionState::Live)
        };
        assert_eq!(cache.state("s", live), Ok(SessionState::Live));
        assert_eq!(cache.state("s", live), Ok(SessionState::Live));
        assert_eq!(lookups.get(), 1, "the second check is cached");
        cache.remember("s", SessionState::Revoked);
        assert_eq!(
            cache.state("s", live),
            Ok(SessionState::Revoked),
            "a local revocation is seen at once"
        );
        let uncached = RevocationCache {
            delay: Duration::ZERO,
            entries: RwLock::new(HashMap::new()),
        };
        uncached.state("s", live).unwrap();
        uncached.state("s", live).unwrap();
        assert_eq!(lookups.get(), 3, "a zero delay reads every time");
    }
}
