//! Where users live: one trait, two backends (MySQL-compatible servers and embedded SQLite).
//!
//! The backend is chosen by the scheme of `DATABASE_URL`. Both keep one row per openid with a
//! single atomic upsert, so concurrent first logins of one user can never create two rows, and
//! both pass the same contract tests (`tests/api/store.rs`).

mod migrate;
mod mysql;
mod sqlite;
mod url;

use crate::secret::Secret;
use crate::user::{PhoneNumber, Profile, User};
use std::fmt;
use std::time::Duration;

pub use self::mysql::MysqlStore;
pub use self::sqlite::SqliteStore;
pub use self::url::DatabaseUrl;

/// What a successful login writes.
#[derive(Debug, Clone)]
pub struct LoginRecord<'a> {
    pub openid: &'a str,
    /// The stable id a new user gets (a returning user keeps theirs).
    pub uid: &'a str,
    pub unionid: Option<&'a str>,
    /// `None` keeps the stored profile as it is.
    pub profile: Option<&'a Profile>,
    /// The session_key of this login, kept so later calls can verify and decrypt the user's data.
    pub session_key: &'a Secret,
}

/// A session opened by a login, with its first refresh token. Times are unix seconds.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub uid: &'a str,
    pub created_at: i64,
    /// When the refresh token runs out unless a refresh slides it.
    pub expires_at: i64,
    /// The cap on every slide.
    pub max_expires_at: i64,
    pub user_agent: &'a str,
    pub ip: &'a str,
    /// Hex SHA-256 of the first refresh token (the token itself is never stored).
    pub refresh_hash: &'a str,
}

/// A refresh token as stored, with its session and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub session_id: String,
    pub uid: String,
    /// `None` when the user's row is gone.
    pub openid: Option<String>,
    pub unionid: Option<String>,
    /// When the token was exchanged for its successor.
    pub rotated_at: Option<i64>,
    /// The access token that exchange issued, returned to a repeat within the grace.
    pub successor_access: Option<String>,
    pub expires_at: i64,
    pub max_expires_at: i64,
    pub revoked: bool,
}

/// One rotation: the old token spent, its successor stored, the session slid.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    pub session_id: &'a str,
    pub access_token: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

/// Whether a session's access tokens may still be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    Revoked,
    /// No such session, or its user's row was deleted.
    Gone,
}

/// What a node found when it claimed a login code (see [`UserStore::claim_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeClaim {
    /// The code is this node's to exchange at WeChat; it then calls `finish_code` or
    /// `release_code`.
    Claimed,
    /// Another request (on any node) is exchanging it now.
    Pending,
    /// It was exchanged within the replay window, for this user.
    Done {
        openid: String,
        unionid: Option<String>,
    },
}

/// A live session, as `GET /api/me/sessions` lists it. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Where a user's uploaded avatar stands (`avatarState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvatarState {
    /// The last upload is the user's avatar.
    Active,
    /// The last upload waits for WeChat's verdict; the previous avatar is still shown.
    Pending,
    /// The last upload was refused; the previous avatar is still shown.
    Rejected,
}

impl AvatarState {
    pub fn as_str(self) -> &'static str {
        match self {
            AvatarState::Active => "active",
            AvatarState::Pending => "pending",
            AvatarState::Rejected => "rejected",
        }
    }

    /// The stored word; `None` for anything else (a row written by a newer release).
    fn parse(text: &str) -> Option<AvatarState> {
        match text {
            "active" => Some(AvatarState::Active),
            "pending" => Some(AvatarState::Pending),
            "rejected" => Some(AvatarState::Rejected),
            _ => None,
        }
    }
}

/// An image stored for a user: its content address, type, bytes, and the public URL it gets
/// once it is their avatar.
#[derive(Debug, Clone, Copy)]
pub struct NewImage<'a> {
    pub hash: &'a str,
    pub content_type: &'a str,
    pub bytes: &'a [u8],
    pub url: &'a str,
}

/// A pending avatar check, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarCheck {
    pub openid: String,
    /// The pending image's content address.
    pub hash: String,
    /// The token of the `/media/` URL of this submission; it also names the submission, so a
    /// verdict or resubmission for a replaced upload changes nothing.
    pub media_token: String,
    /// Submissions so far.
    pub attempts: u32,
    /// When the latest submission was made (unix seconds).
    pub submitted_at: i64,
}

/// Why the store failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database cannot be reached or has no capacity now (connection refused, pool
    /// exhausted, server gone, lock timeout): the client may retry.
    Unavailable(String),
    /// A statement failed for another reason: a bug or a schema problem.
    Query(String),
}

impl StoreError {
    /// A fixed label for the metric of database failures.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Query(_) => "query",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "unavailable: {why}"),
            StoreError::Query(why) => write!(f, "query failed: {why}"),
        }
    }
}

/// The operations the service needs from a database.
pub trait UserStore: Send + Sync {
    /// Inserts the user or updates their row, atomically, in one statement. Returns only once the
    /// write is committed, so the caller may then tell the client it is logged in. Returns the
    /// user's uid: `record.uid` for a new user, the stored one for a returning user.
    fn upsert_login(&self, record: &LoginRecord<'_>) -> Result<String, StoreError>;

    /// Stores a new session and its first refresh token, in one transaction.
    fn create_session(&self, session: &NewSession<'_>) -> Result<(), StoreError>;

    /// The refresh token with this hash, its session and its user.
    fn find_refresh(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError>;

    /// Spends `old_hash` for its successor, in one transaction: `false` (and nothing written)
    /// when another rotation spent it first, so exactly one of concurrent refreshes wins.
    fn rotate_refresh(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError>;

    /// Whether the session is live, revoked, or gone (with its user).
    fn session_state(&self, session_id: &str) -> Result<SessionState, StoreError>;

    /// Revokes the user's session `session_id` (kept revoked if it was); `false` when the user
    /// has no such session.
    fn revoke_session(&self, uid: &str, session_id: &str, now: i64) -> Result<bool, StoreError>;

    /// Revokes every session of the user; the ids of those that were live.
    fn revoke_user_sessions(&self, uid: &str, now: i64) -> Result<Vec<String>, StoreError>;

    /// The user's sessions that are neither revoked nor expired at `now`, newest first.
    fn list_sessions(&self, uid: &str, now: i64) -> Result<Vec<SessionInfo>, StoreError>;

    /// Claims the login code with this hash for one WeChat exchange across every node, or finds
    /// who has it. A claim is bound by `claim_until` (unix seconds): past it, a node that gave up
    /// or died loses the claim to the next request.
    fn claim_code(&self, hash: &str, now: i64, claim_until: i64) -> Result<CodeClaim, StoreError>;

    /// Records who the claimed code logged in, for retries until `remember_until`. Called only
    /// once that user's row is written, so a retry on any node finds their session_key.
    fn finish_code(
        &self,
        hash: &str,
        openid: &str,
        unionid: Option<&str>,
        remember_until: i64,
    ) -> Result<(), StoreError>;

    /// Gives up a claim after WeChat failed, so that a retry may ask again.
    fn release_code(&self, hash: &str) -> Result<(), StoreError>;

    /// Forgets codes past their bound; how many.
    fn purge_codes(&self, now: i64) -> Result<u64, StoreError>;

    /// The user with this openid, if any.
    fn find_user(&self, openid: &str) -> Result<Option<User>, StoreError>;

    /// The session_key of the user's latest login, if any.
    fn find_session_key(&self, openid: &str) -> Result<Option<Secret>, StoreError>;

    /// Stores the user's phone number; `false` when no such user exists.
    fn set_phone(&self, openid: &str, phone: &PhoneNumber) -> Result<bool, StoreError>;

    /// Updates the profile fields that are `Some`; `false` when no such user exists.
    fn update_profile(&self, openid: &str, profile: &Profile) -> Result<bool, StoreError>;

    /// Stores an image under its content hash (a no-op when it is already there).
    fn put_avatar(&self, hash: &str, content_type: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// The image stored under `hash`, with its content type.
    fn find_avatar(&self, hash: &str) -> Result<Option<(String, Vec<u8>)>, StoreError>;

    /// The content type of the image stored under `hash`, without reading the image: enough to
    /// answer a revalidation (`If-None-Match`) with 304. The backends override this with a query
    /// that leaves the bytes on disk; the default serves stores written for tests.
    fn find_avatar_type(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .find_avatar(hash)?
            .map(|(content_type, _)| content_type))
    }

    /// Stores `image` and makes it the user's avatar at once (moderation off, or a verdict of
    /// `pass` remembered): any pending upload is dropped, and the images the user no longer
    /// refers to are deleted unless another user does. `false` when no such user exists.
    fn activate_avatar(
        &self,
        openid: &str,
        image: &NewImage<'_>,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Stores `image` as the user's pending avatar, reachable at `/media/<media_token>` until
    /// `media_expires_at`, counted as its first submission at `now`. A pending image it
    /// replaces is deleted unless referred to elsewhere. `false` when no such user exists.
    fn begin_avatar_check(
        &self,
        openid: &str,
        image: &NewImage<'_>,
        media_token: &str,
        media_expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Records the `trace_id` WeChat gave the submission `media_token`; `false` when that
    /// submission is no longer pending.
    fn avatar_check_submitted(&self, media_token: &str, trace_id: &str)
        -> Result<bool, StoreError>;

    /// The pending check with this `trace_id`, if any.
    fn find_avatar_check(&self, trace_id: &str) -> Result<Option<AvatarCheck>, StoreError>;

    /// Ends the submission `media_token` of the user's pending check: `accept` makes the image
    /// their avatar (the old one deleted unless used elsewhere), otherwise it is rejected and
    /// deleted unless used elsewhere. `false` (nothing changed) when it is no longer pending.
    fn finish_avatar_check(
        &self,
        openid: &str,
        media_token: &str,
        accept: bool,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Pending checks last submitted at or before `submitted_before`, oldest first.
    fn due_avatar_checks(
        &self,
        submitted_before: i64,
        limit: u32,
    ) -> Result<Vec<AvatarCheck>, StoreError>;

    /// Claims the pending check's resubmission: its submission `old_token` becomes
    /// `new_token` (one more attempt, submitted at `now`). `false` when another node claimed
    /// it first or it is no longer pending.
    fn resubmit_avatar_check(
        &self,
        openid: &str,
        old_token: &str,
        new_token: &str,
        media_expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// The pending image behind a `/media/` token still valid at `now`: content type, bytes.
    fn find_media(
        &self,
        media_token: &str,
        now: i64,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError>;

    /// Where the user's uploaded avatar stands; `None` when they never uploaded one.
    fn avatar_state(&self, openid: &str) -> Result<Option<AvatarState>, StoreError>;

    /// WeChat's remembered verdict (`pass`, `risky`, `review`) on the image with this hash.
    fn find_media_verdict(&self, hash: &str) -> Result<Option<String>, StoreError>;

    /// Remembers WeChat's verdict on the image with this hash.
    fn remember_media_verdict(&self, hash: &str, suggest: &str, now: i64)
        -> Result<(), StoreError>;

    /// Connections lent out now, and the most the pool will hold (for metrics).
    fn pool_usage(&self) -> (usize, usize);

    /// Cheap round trip proving the database answers.
    fn ping(&self) -> Result<(), StoreError>;
}

/// Options that apply to every backend.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Most connections held at once.
    pub max_connections: usize,
    /// Bound on waiting for a connection or a lock, and on one statement's network I/O.
    pub timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 32,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A phone number from its three nullable columns (present only when the number is).
fn phone_from_columns(
    phone_number: Option<String>,
    pure_phone_number: Option<String>,
    country_code: Option<String>,
) -> Option<PhoneNumber> {
    Some(PhoneNumber {
        phone_number: phone_number?,
        pure_phone_number: pure_phone_number.unwrap_or_default(),
        country_code: country_code.unwrap_or_default(),
    })
}

/// A session's state from `session_state.sql`'s row: its `revoked_at` and its user's uid.
fn session_state(row: Option<(Option<i64>, Option<String>)>) -> SessionState {
    match row {
        None | Some((_, None)) => SessionState::Gone,
        Some((Some(_), Some(_))) => SessionState::Revoked,
        Some((None, Some(_))) => SessionState::Live,
    }
}

/// Whether a failed `ALTER TABLE … ADD COLUMN` failed only because the column exists.
fn is_duplicate_column(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("duplicate column")
}

/// Opens the store named by the URL and brings its schema up to date (see `migrate`).
pub fn open(url: &DatabaseUrl, options: StoreOptions) -> Result<Box<dyn UserStore>, StoreError> {
    Ok(match url {
        DatabaseUrl::Mysql(url) => Box::new(MysqlStore::open(url.expose(), options)?),
        DatabaseUrl::Sqlite(path) => Box::new(SqliteStore::open(path, options)?),
    })
}

/// The statements of a migration file: `--` comment lines dropped, then split on `;`, which our
/// files use only as terminators.
fn statements(script: &str) -> Vec<String> {
    let code: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
