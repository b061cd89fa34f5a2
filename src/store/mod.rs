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

/// `INSERT INTO wx_outbox`: event id, uid, type, created_at, body, next_attempt_at (both
/// backends take `?` placeholders).
const INSERT_OUTBOX: &str = "INSERT INTO wx_outbox (event_id, uid, type, created_at, body, \
     next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)";

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

/// A login's session before its user's uid is known (a returning user keeps the stored one):
/// `NewSession` without the uid.
#[derive(Debug, Clone)]
pub struct LoginSession<'a> {
    pub id: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_expires_at: i64,
    pub user_agent: &'a str,
    pub ip: &'a str,
    pub refresh_hash: &'a str,
}

impl<'a> LoginSession<'a> {
    /// The session row for the user `uid`.
    pub fn for_user(&self, uid: &'a str) -> NewSession<'a> {
        NewSession {
            id: self.id,
            uid,
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_expires_at: self.max_expires_at,
            user_agent: self.user_agent,
            ip: self.ip,
            refresh_hash: self.refresh_hash,
        }
    }
}

/// The outcome of a code this login claimed, kept for retries (see `UserStore::finish_code`).
#[derive(Debug, Clone)]
pub struct CodeOutcome<'a> {
    pub hash: &'a str,
    /// The unionid WeChat gave with the code (not one decrypted from the profile).
    pub unionid: Option<&'a str>,
    pub remember_until: i64,
}

/// What a login learns about the user it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUser {
    /// The stored uid: `LoginRecord::uid` for a new user.
    pub uid: String,
    /// Disabled by the operator: the row was left as it was, and no session may be opened.
    pub disabled: bool,
    /// When a pending deletion erases the account (unix seconds), if one is pending.
    pub erase_at: Option<i64>,
}

/// Why sessions were revoked, as the `session.revoked` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// `POST /api/logout`.
    Logout,
    /// `POST /api/logout/all`.
    LogoutAll,
    /// `DELETE /api/me/sessions/{id}`.
    Revoked,
    /// A rotated refresh token came back after the grace: a copy is in other hands.
    Reuse,
    /// The operator disabled the account.
    Disabled,
    /// The user asked for the account's deletion.
    Deletion,
    /// `wxlogin admin sessions revoke`.
    Admin,
}

impl RevokeReason {
    /// The `reason` of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::Revoked => "revoked",
            RevokeReason::Reuse => "refresh_token_reused",
            RevokeReason::Disabled => "disabled",
            RevokeReason::Deletion => "deletion",
            RevokeReason::Admin => "admin",
        }
    }
}

/// A user's account as the operator sees it (`wxlogin admin user show`): no secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub profile: Profile,
    /// Whether a phone number is bound (the number itself is not shown).
    pub has_phone: bool,
    pub disabled: bool,
    pub erase_at: Option<i64>,
}

/// One successful login or refresh. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEntry {
    pub at: i64,
    pub session_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `login` or `refresh`.
    pub kind: String,
}

/// What one pass of the sweep removes: rows older than these bounds, at most `limit` of each
/// kind, so one pass never holds a long transaction.
#[derive(Debug, Clone, Copy)]
pub struct Purge {
    /// Login history before this time.
    pub history_before: i64,
    /// Sessions (with their refresh tokens) that expired before this time.
    pub sessions_before: i64,
    /// The access token kept on refresh tokens rotated before this time (past the reuse grace
    /// it is never handed out again, so it is only a secret at rest).
    pub successors_before: i64,
    pub limit: usize,
}

/// How many rows one pass of the sweep removed or scrubbed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub history: usize,
    pub sessions: usize,
    pub successors: usize,
}

/// Counts for `wxlogin admin stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub users: u64,
    pub disabled_users: u64,
    pub deletions_pending: u64,
    /// Sessions neither revoked nor expired.
    pub active_sessions: u64,
    pub logins_last_hour: u64,
    pub logins_last_day: u64,
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
    /// The user is disabled by the operator.
    pub disabled: bool,
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
    /// Who refreshed, for the login history.
    pub user_agent: &'a str,
    pub ip: &'a str,
}

/// A claim on the outbox by one node's webhook worker (see [`UserStore::claim_events`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The claiming worker's random id, kept in `locked_by`.
    pub node: &'a str,
    pub now: i64,
    /// The lease's end (`locked_until`): past it a node that died holding the events loses them.
    pub lease_until: i64,
    /// Events with this many attempts are given up and no longer block their user's later ones.
    pub max_attempts: u32,
    pub limit: usize,
}

/// An event claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxDelivery {
    pub seq: i64,
    pub event_id: String,
    pub uid: String,
    pub kind: String,
    /// The exact JSON to POST.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// How a claimed event's attempt ended (see [`UserStore::settle_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle<'a> {
    /// The receiver answered 2xx at `at`.
    Delivered { at: i64 },
    /// It did not; the next attempt is due at `next_attempt_at`. `error` is client-safe (a
    /// status or an error kind).
    Failed {
        next_attempt_at: i64,
        error: &'a str,
    },
    /// Not attempted (the worker is stopping, or its lease is running out): free for any node.
    Released,
}

/// The outbox's undelivered events, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Still being retried.
    pub pending: u64,
    /// Given up after the last attempt (kept, with `last_error`, for the operator).
    pub failed: u64,
}

/// Whether a session's access tokens may still be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    Revoked,
    /// The session stands but its user is disabled.
    Disabled,
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
    /// Inserts the user or updates their row, atomically. Returns only once the write is
    /// committed, so the caller may then tell the client it is logged in. The uid is
    /// `record.uid` for a new user (whose `user.created` event is written in the same
    /// transaction), the stored one for a returning user. A disabled user's row is not touched.
    fn upsert_login(&self, record: &LoginRecord<'_>) -> Result<LoginUser, StoreError>;

    /// Writes a whole login: the user's row (as `upsert_login`), the claimed code's outcome (as
    /// `finish_code`, also for a disabled user) and, unless the user is disabled, the session
    /// (as `create_session`, for the stored uid). A store that can do it in one transaction does
    /// (one commit instead of three); the default runs the three in turn, and only logs a
    /// failure to record the code's outcome. The caller signs tokens only once this returns.
    fn write_login(
        &self,
        record: &LoginRecord<'_>,
        code: Option<&CodeOutcome<'_>>,
        session: &LoginSession<'_>,
    ) -> Result<LoginUser, StoreError> {
        let user = self.upsert_login(record)?;
        if let Some(code) = code {
            if let Err(e) =
                self.finish_code(code.hash, record.openid, code.unionid, code.remember_until)
            {
                log::warn!("could not keep a login code's outcome for retries: {e}");
            }
        }
        if !user.disabled {
            self.create_session(&session.for_user(&user.uid))?;
        }
        Ok(user)
    }

    /// Stores a new session, its first refresh token and the login's history row, in one
    /// transaction.
    fn create_session(&self, session: &NewSession<'_>) -> Result<(), StoreError>;

    /// The refresh token with this hash, its session and its user.
    fn find_refresh(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError>;

    /// Spends `old_hash` for its successor and records the refresh in the history, in one
    /// transaction: `false` (and nothing written) when another rotation spent it first, so
    /// exactly one of concurrent refreshes wins.
    fn rotate_refresh(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError>;

    /// Whether the session is live, revoked, or gone (with its user).
    fn session_state(&self, session_id: &str) -> Result<SessionState, StoreError>;

    /// Revokes the user's session `session_id` (kept revoked if it was, with no second event);
    /// `false` when the user has no such session.
    fn revoke_session(
        &self,
        uid: &str,
        session_id: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<bool, StoreError>;

    /// Revokes every session of the user; the ids of those that were live.
    fn revoke_user_sessions(
        &self,
        uid: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError>;

    /// Disables or enables the account, in one transaction with its events; disabling also
    /// revokes every session. The ids of the revoked sessions, or `None` when no user has this
    /// uid. Setting the state the account already has changes nothing and writes no event.
    fn set_disabled(
        &self,
        uid: &str,
        disabled: bool,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError>;

    /// Schedules the account's erasure at `erase_at` (revoking every session), or cancels it
    /// (`None`). The ids of the revoked sessions, or `None` when no user has this uid.
    fn set_erase_at(
        &self,
        uid: &str,
        erase_at: Option<i64>,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError>;

    /// Erases everything of the user, in one transaction: the row (profile, phone, unionid,
    /// session_key), sessions, refresh tokens, login history, code-replay entries, and the
    /// avatar image unless another user shows it. Idempotent: `true` only for the call that
    /// deleted the row, which alone writes `user.deleted`, so nodes racing to erase one
    /// account erase it once.
    fn erase_user(&self, uid: &str, now: i64) -> Result<bool, StoreError>;

    /// The uids whose erasure is due at `now`, at most `limit`, earliest first.
    fn due_erasures(&self, now: i64, limit: usize) -> Result<Vec<String>, StoreError>;

    /// The account with this uid or openid.
    fn find_account(&self, uid_or_openid: &str) -> Result<Option<Account>, StoreError>;

    /// The user's latest logins and refreshes, newest first.
    fn list_logins(&self, uid: &str, limit: usize) -> Result<Vec<LoginEntry>, StoreError>;

    /// One bounded pass of the sweep's deletions (see [`Purge`]).
    fn purge(&self, purge: &Purge) -> Result<Purged, StoreError>;

    /// Counts for the operator at `now`.
    fn stats(&self, now: i64) -> Result<Stats, StoreError>;

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

    /// Leases the outbox events that are due at `claim.now`, at most `claim.limit`, oldest first:
    /// only each user's oldest event that is neither delivered nor given up, so a user's events
    /// are delivered in order, and none leased by a live claim, so two nodes never deliver one
    /// event at the same time.
    fn claim_events(&self, claim: &Claim<'_>) -> Result<Vec<OutboxDelivery>, StoreError>;

    /// Records how the attempt at event `seq` ended and ends the lease; `false` (nothing
    /// written) when the event is no longer leased by `node` (its lease lapsed and another node
    /// took it).
    fn settle_event(&self, seq: i64, node: &str, settle: Settle<'_>) -> Result<bool, StoreError>;

    /// The undelivered events: pending, and given up after `max_attempts`.
    fn outbox_counts(&self, max_attempts: u32) -> Result<OutboxCounts, StoreError>;

    /// Removes at most `limit` events delivered before `before`; how many.
    fn purge_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError>;
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
    /// Whether changes append their events to `wx_outbox` (`WXLOGIN_WEBHOOK_URL` is set):
    /// without a receiver nothing would ever drain it.
    pub events: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 32,
            timeout: Duration::from_secs(5),
            events: false,
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

/// The columns of `session_state.sql`: `revoked_at`, the user's uid and status.
type SessionStateRow = (Option<i64>, Option<String>, Option<String>);

/// A session's state from `session_state.sql`'s row.
fn session_state(row: Option<SessionStateRow>) -> SessionState {
    match row {
        None | Some((_, None, _)) => SessionState::Gone,
        // A disabled user's client is told so, whether or not the session was revoked.
        Some((_, Some(_), status)) if is_disabled(status.as_deref()) => SessionState::Disabled,
        Some((Some(_), Some(_), _)) => SessionState::Revoked,
        Some((None, Some(_), _)) => SessionState::Live,
    }
}

/// `wxuser.status` of a disabled account.
const DISABLED: &str = "disabled";
/// `wxuser.status` of an account in use.
const ACTIVE: &str = "active";

fn is_disabled(status: Option<&str>) -> bool {
    status == Some(DISABLED)
}

/// The hash of an avatar we serve, from the URL stored on a user (`…/avatars/<hash>.<ext>`);
/// `None` for WeChat's own avatar URLs.
fn avatar_hash(url: &str) -> Option<&str> {
    let (_, file) = url.rsplit_once("/avatars/")?;
    crate::avatar::parse_file_name(file).map(|(hash, _)| hash)
}

/// A successful attempt: delivered_at, seq, node.
const SETTLE_DELIVERED: &str = "UPDATE wx_outbox SET delivered_at = ?, attempts = attempts + 1, \
     locked_by = NULL, locked_until = NULL, last_error = NULL WHERE seq = ? AND locked_by = ?";
/// A failed attempt: next_attempt_at, last_error, seq, node.
const SETTLE_FAILED: &str = "UPDATE wx_outbox SET next_attempt_at = ?, last_error = ?, \
     attempts = attempts + 1, locked_by = NULL, locked_until = NULL \
     WHERE seq = ? AND locked_by = ?";
/// An event given back unattempted: seq, node.
const SETTLE_RELEASED: &str = "UPDATE wx_outbox SET locked_by = NULL, locked_until = NULL \
     WHERE seq = ? AND locked_by = ?";
/// Pending and given-up events: max_attempts twice.
const OUTBOX_COUNTS: &str = "SELECT COALESCE(SUM(CASE WHEN attempts < ? THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN attempts >= ? THEN 1 ELSE 0 END), 0) \
     FROM wx_outbox WHERE delivered_at IS NULL";

/// `IN (?, ?, …)` with `n` placeholders (`n` > 0), for a claim's events.
fn placeholders(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

/// One row for `wx_outbox`: the event, and the exact body the webhook worker POSTs.
struct OutboxEvent {
    event_id: String,
    uid: String,
    kind: &'static str,
    created_at: i64,
    body: String,
}

/// The JSON an event is delivered as: `{"id","type","created_at","data"}`.
#[derive(serde::Serialize)]
struct EventBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: String,
    data: serde_json::Value,
}

impl OutboxEvent {
    fn new(kind: &'static str, uid: &str, now: i64, data: serde_json::Value) -> OutboxEvent {
        let event_id = crate::secret::random_hex(16);
        let body = serde_json::to_string(&EventBody {
            id: &event_id,
            kind,
            created_at: crate::clock::rfc3339(now),
            data,
        })
        .expect("events serialize");
        OutboxEvent {
            event_id,
            uid: uid.to_string(),
            kind,
            created_at: now,
            body,
        }
    }

    /// `user.created`: the first login of an openid.
    fn user_created(uid: &str, openid: &str, unionid: Option<&str>, now: i64) -> OutboxEvent {
        let mut data = serde_json::json!({ "user_id": uid, "openid": openid });
        if let Some(unionid) = unionid {
            data["unionid"] = unionid.into();
        }
        OutboxEvent::new("user.created", uid, now, data)
    }

    /// `user.deleted`: the account is erased. It names the openid, the last thing said about
    /// the user, because that is how the app finds its own rows to erase.
    fn user_deleted(uid: &str, openid: &str, now: i64) -> OutboxEvent {
        let data = serde_json::json!({ "user_id": uid, "openid": openid });
        OutboxEvent::new("user.deleted", uid, now, data)
    }

    /// `user.disabled` or `user.enabled`.
    fn user_status(uid: &str, disabled: bool, now: i64) -> OutboxEvent {
        let kind = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        OutboxEvent::new(kind, uid, now, serde_json::json!({ "user_id": uid }))
    }

    /// `session.revoked`.
    fn session_revoked(uid: &str, session_id: &str, reason: RevokeReason, now: i64) -> OutboxEvent {
        let data = serde_json::json!({
            "user_id": uid,
            "session_id": session_id,
            "reason": reason.as_str(),
        });
        OutboxEvent::new("session.revoked", uid, now, data)
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
