//! The MySQL-compatible backend (MySQL, MariaDB, TiDB), for several stateless nodes sharing one
//! database.
//!
//! Start-up migrates the schema, so it needs the database; after that the pool keeps no minimum
//! of connections (`min 0`) and reconnects on demand, so an outage makes requests fail with 503
//! (every wait, connect, checkout, read and write, has a bound) and ends without a restart.

use super::migrate::{self, Applied, Migration, Session};
use super::{
    avatar_hash, is_disabled, is_duplicate_column, placeholders, Account, AvatarCheck, AvatarState,
    Claim, CodeClaim, CodeOutcome, LoginEntry, LoginRecord, LoginSession, LoginUser, NewImage,
    NewSession, OutboxCounts, OutboxDelivery, OutboxEvent, Purge, Purged, RefreshRecord,
    RevokeReason, Rotation, SessionInfo, SessionState, SessionStateRow, Settle, Stats, StoreError,
    StoreOptions, UserStore, ACTIVE, DISABLED, INSERT_OUTBOX, OUTBOX_COUNTS, SETTLE_DELIVERED,
    SETTLE_FAILED, SETTLE_RELEASED,
};
use crate::net::is_loopback_host;
use crate::secret::Secret;
use crate::user::{PhoneNumber, Profile, User};
use mysql::consts::CapabilityFlags;
use mysql::prelude::Queryable;
use mysql::{
    Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, PooledConn, SslOpts, Transaction,
    TxOpts,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const UPSERT_LOGIN: &str = include_str!("../../sql/mysql/upsert_login.sql");
const CLAIMABLE_EVENTS: &str = include_str!("../../sql/mysql/claimable_events.sql");
const FIND_USER: &str = include_str!("../../sql/mysql/find_user.sql");
const FIND_SESSION_KEY: &str = include_str!("../../sql/mysql/find_session_key.sql");
const SET_PHONE: &str = include_str!("../../sql/mysql/set_phone.sql");
const UPDATE_PROFILE: &str = include_str!("../../sql/mysql/update_profile.sql");
const PUT_AVATAR: &str = include_str!("../../sql/mysql/put_avatar.sql");
const FIND_AVATAR: &str = include_str!("../../sql/mysql/find_avatar.sql");
const FIND_AVATAR_TYPE: &str = include_str!("../../sql/mysql/find_avatar_type.sql");
const FIND_LOGIN_USER: &str = include_str!("../../sql/mysql/find_login_user.sql");
const INSERT_SESSION: &str = include_str!("../../sql/mysql/insert_session.sql");
const INSERT_REFRESH: &str = include_str!("../../sql/mysql/insert_refresh.sql");
const FIND_REFRESH: &str = include_str!("../../sql/mysql/find_refresh.sql");
const SPEND_REFRESH: &str = include_str!("../../sql/mysql/spend_refresh.sql");
const SLIDE_SESSION: &str = include_str!("../../sql/mysql/slide_session.sql");
const SESSION_STATE: &str = include_str!("../../sql/mysql/session_state.sql");
const REVOKE_SESSION: &str = include_str!("../../sql/mysql/revoke_session.sql");
const LIVE_SESSION_IDS: &str = include_str!("../../sql/mysql/live_session_ids.sql");
const REVOKE_USER_SESSIONS: &str = include_str!("../../sql/mysql/revoke_user_sessions.sql");
const LIST_SESSIONS: &str = include_str!("../../sql/mysql/list_sessions.sql");
const CLAIM_CODE: &str = include_str!("../../sql/mysql/claim_code.sql");
const FIND_CODE: &str = include_str!("../../sql/mysql/find_code.sql");
const EXPIRE_CODE: &str = include_str!("../../sql/mysql/expire_code.sql");
const FINISH_CODE: &str = include_str!("../../sql/mysql/finish_code.sql");
const RELEASE_CODE: &str = include_str!("../../sql/mysql/release_code.sql");
const PURGE_CODES: &str = include_str!("../../sql/mysql/purge_codes.sql");
const ERASE_CODE_REPLAY: &str = include_str!("../../sql/mysql/erase_code_replay.sql");

// The account's statements: short enough to read here.
const INSERT_LOGIN: &str = "INSERT INTO wx_login (uid, at, session_id, ip, user_agent, kind) \
     VALUES (?, ?, ?, ?, ?, ?)";
const FIND_ACCOUNT: &str = "SELECT uid, user_id, unionid, nickName, avatar, gender, \
     phoneNumber IS NOT NULL, status, erase_at FROM wxuser WHERE uid = ? OR user_id = ?";
const LIST_LOGINS: &str = "SELECT at, session_id, ip, user_agent, kind FROM wx_login \
     WHERE uid = ? ORDER BY at DESC, id DESC LIMIT ?";

/// The columns `FIND_ACCOUNT` selects, in order.
type AccountRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    bool,
    Option<String>,
    Option<i64>,
);

/// The columns `LIST_LOGINS` selects, in order.
type LoginRow = (i64, String, Option<String>, Option<String>, String);

/// InnoDB may pick an upsert as a deadlock victim under heavy contention on one key; the
/// statement is idempotent, so it is simply run again, up to this many times.
const DEADLOCK_RETRIES: usize = 3;
/// ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT.
const RETRYABLE_CODES: [u16; 2] = [1213, 1205];

/// The columns `find_refresh.sql` selects, in order.
type RefreshRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

/// The columns `list_sessions.sql` selects, in order.
type SessionRow = (String, i64, i64, i64, Option<String>, Option<String>);

/// The columns `find_user.sql` selects, in order.
type UserRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub struct MysqlStore {
    pool: Pool,
    options: StoreOptions,
    /// The pool's own limit (from the URL's `pool_max` or the options).
    max: usize,
    /// Connections lent out now; the mysql crate does not report it.
    in_use: AtomicUsize,
}

/// A pooled connection on loan, counted while it is out.
struct Checkout<'a> {
    conn: PooledConn,
    in_use: &'a AtomicUsize,
}

impl std::ops::Deref for Checkout<'_> {
    type Target = PooledConn;
    fn deref(&self) -> &PooledConn {
        &self.conn
    }
}

impl std::ops::DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut PooledConn {
        &mut self.conn
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MysqlStore {
    /// Connects to `url` (`mysql://user:pass@host:port/db`) and migrates the schema.
    ///
    /// `pool_max` in the URL's query overrides `options.max_connections`; `require_ssl=true`
    /// turns TLS on (see `parse_url`).
    pub fn open(url: &str, options: StoreOptions) -> Result<MysqlStore, StoreError> {
        let opts = parse_url(url)?;
        if let Some(warning) = transport_warning(&opts) {
            log::warn!("{warning}");
        }
        let max = if url.contains("pool_max=") {
            opts.get_pool_opts().constraints().max()
        } else {
            options.max_connections
        };
        let max = max.max(1);
        let constraints = PoolConstraints::new(0, max).expect("0 <= max");
        let builder = OptsBuilder::from_opts(opts)
            // No reset on return (it drops the prepared-statement cache and re-runs SET NAMES:
            // three round trips per checkout) and no ping on checkout: our statements leave no
            // session state behind, and `run` retries once on a connection that died idle.
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_reset_connection(false)
                    .with_check_health(false),
            )
            .tcp_connect_timeout(Some(options.timeout))
            .read_timeout(Some(options.timeout))
            .write_timeout(Some(options.timeout))
            // UPDATE reports rows matched, not rows changed, so set_phone can tell "no user".
            .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS)
            .init(vec!["SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci"]);
        apply_migrations(builder.clone())?;
        let pool = Pool::new(builder).map_err(classify)?;
        let store = MysqlStore {
            pool,
            options,
            max,
            in_use: AtomicUsize::new(0),
        };
        Ok(store)
    }

    /// Runs `statement` (idempotent, as all of ours are) on a pooled connection. The pool does
    /// not ping connections on checkout (a round trip per query), so a connection that died
    /// while idle (a database restart, a proxy timeout) fails on first use: the statement is
    /// then run once more on a fresh one. Deadlock victims and lock-wait timeouts are retried
    /// too; everything else is returned at once.
    fn run<T>(
        &self,
        statement: impl Fn(&mut PooledConn) -> mysql::Result<T>,
    ) -> Result<T, StoreError> {
        let mut reconnected = false;
        let mut lock_retries = 0;
        loop {
            let mut conn = self.conn()?;
            match statement(&mut conn) {
                Ok(value) => return Ok(value),
                Err(mysql::Error::MySqlError(e))
                    if RETRYABLE_CODES.contains(&e.code) && lock_retries < DEADLOCK_RETRIES =>
                {
                    lock_retries += 1;
                    log::debug!("statement retried after MySQL error {}", e.code);
                }
                Err(e @ (mysql::Error::IoError(_) | mysql::Error::CodecError(_))) => {
                    // Without reset-on-return the pool would take a broken connection back;
                    // the reset it now attempts fails, and the pool discards it instead.
                    conn.reset_connection(true);
                    if reconnected {
                        return Err(classify(e));
                    }
                    reconnected = true;
                    log::debug!("statement retried on a fresh connection");
                }
                Err(e) => return Err(classify(e)),
            }
        }
    }

    fn conn(&self) -> Result<Checkout<'_>, StoreError> {
        let conn = self
            .pool
            .try_get_conn(self.options.timeout)
            .map_err(classify)?;
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(Checkout {
            conn,
            in_use: &self.in_use,
        })
    }
}

/// What `MysqlStore::upsert_in` found.
enum Upserted {
    /// The row is written (inserted or updated), not yet committed.
    Written(LoginUser),
    /// The user is disabled: the row was left as it was.
    Disabled(LoginUser),
    /// The row vanished between the upsert and the read.
    Gone,
}

fn row_gone() -> StoreError {
    StoreError::Query("the upserted user row is gone".into())
}

impl MysqlStore {
    /// `upsert_login`'s statements, in the caller's transaction (with the `user.created` event
    /// for a new user).
    fn upsert_in(
        &self,
        tx: &mut Transaction<'_>,
        record: &LoginRecord<'_>,
    ) -> mysql::Result<Upserted> {
        let empty = Profile::default();
        let profile = record.profile.unwrap_or(&empty);
        let params = (
            record.openid,
            record.unionid,
            profile.nick_name.as_deref(),
            profile.avatar_url.as_deref(),
            profile.gender,
            record.session_key.expose(),
            record.uid,
        );
        type Row = (String, Option<String>, Option<i64>);
        let user = |row: Row| LoginUser {
            uid: row.0,
            disabled: is_disabled(row.1.as_deref()),
            erase_at: row.2,
        };
        // The upsert leaves a disabled account's row as it is (see upsert_login.sql), so one
        // read after it tells both the uid and whether the account is disabled.
        tx.exec_drop(UPSERT_LOGIN, params)?;
        let Some(found) = tx.exec_first::<Row, _, _>(FIND_LOGIN_USER, (record.openid,))? else {
            return Ok(Upserted::Gone);
        };
        let found = user(found);
        if found.disabled {
            return Ok(Upserted::Disabled(found));
        }
        if self.options.events && found.uid == record.uid {
            let now = crate::clock::now();
            append(
                tx,
                &OutboxEvent::user_created(&found.uid, record.openid, record.unionid, now),
            )?;
        }
        Ok(Upserted::Written(found))
    }
}

/// A new session, its first refresh token and the login's history row, in the caller's
/// transaction.
fn insert_session(tx: &mut Transaction<'_>, session: &NewSession<'_>) -> mysql::Result<()> {
    tx.exec_drop(
        INSERT_SESSION,
        (
            session.id,
            session.uid,
            session.created_at,
            session.created_at,
            session.expires_at,
            session.max_expires_at,
            session.user_agent,
            session.ip,
        ),
    )?;
    tx.exec_drop(
        INSERT_REFRESH,
        (session.refresh_hash, session.id, session.created_at),
    )?;
    tx.exec_drop(
        INSERT_LOGIN,
        (
            session.uid,
            session.created_at,
            session.id,
            session.ip,
            session.user_agent,
            "login",
        ),
    )
}

/// Upserts the user's avatar row as active.
const ACTIVATE_ROW: &str =
    "INSERT INTO wx_user_avatar (openid, active_hash, state, attempts, updated_at)
    VALUES (?, ?, 'active', 0, ?)
    ON DUPLICATE KEY UPDATE active_hash = VALUES(active_hash), pending_hash = NULL,
        pending_url = NULL, state = 'active', media_token = NULL, media_expires_at = NULL,
        trace_id = NULL, submitted_at = NULL, attempts = 0, updated_at = VALUES(updated_at)";
const BEGIN_CHECK_ROW: &str =
    "INSERT INTO wx_user_avatar (openid, pending_hash, pending_url, state,
        media_token, media_expires_at, submitted_at, attempts, updated_at)
    VALUES (?, ?, ?, 'pending', ?, ?, ?, 1, ?)
    ON DUPLICATE KEY UPDATE pending_hash = VALUES(pending_hash),
        pending_url = VALUES(pending_url), state = 'pending', media_token = VALUES(media_token),
        media_expires_at = VALUES(media_expires_at), trace_id = NULL,
        submitted_at = VALUES(submitted_at), attempts = 1, updated_at = VALUES(updated_at)";
const SET_USER_AVATAR: &str =
    "UPDATE wxuser SET avatar = ?, updated_at = CURRENT_TIMESTAMP(3) WHERE user_id = ?";
/// Deletes an image no user shows or waits for.
const DELETE_UNREFERENCED: &str = "DELETE FROM avatar WHERE hash = ? AND NOT EXISTS
    (SELECT 1 FROM wx_user_avatar WHERE active_hash = ? OR pending_hash = ?)";
const CHECK_COLUMNS: &str =
    "SELECT openid, pending_hash, media_token, attempts, submitted_at FROM wx_user_avatar";

type CheckRow = (String, String, String, u32, i64);

fn avatar_check((openid, hash, media_token, attempts, submitted_at): CheckRow) -> AvatarCheck {
    AvatarCheck {
        openid,
        hash,
        media_token,
        attempts,
        submitted_at,
    }
}

/// Whether the user has a row, locking it so a concurrent deletion waits for this write.
fn user_exists(tx: &mut mysql::Transaction<'_>, openid: &str) -> mysql::Result<bool> {
    let found: Option<u8> = tx.exec_first(
        "SELECT 1 FROM wxuser WHERE user_id = ? FOR UPDATE",
        (openid,),
    )?;
    Ok(found.is_some())
}

/// The user's active and pending hashes, the row locked for this transaction.
fn avatar_hashes(
    tx: &mut mysql::Transaction<'_>,
    openid: &str,
) -> mysql::Result<(Option<String>, Option<String>)> {
    Ok(tx
        .exec_first(
            "SELECT active_hash, pending_hash FROM wx_user_avatar WHERE openid = ? FOR UPDATE",
            (openid,),
        )?
        .unwrap_or((None, None)))
}

/// Deletes each of `hashes` that is not `keep` and that nobody refers to any more.
fn delete_unreferenced(
    tx: &mut mysql::Transaction<'_>,
    hashes: &[Option<String>],
    keep: &str,
) -> mysql::Result<()> {
    for hash in hashes.iter().flatten().filter(|h| *h != keep) {
        tx.exec_drop(DELETE_UNREFERENCED, (hash, hash, hash))?;
    }
    Ok(())
}

/// Appends an event to the outbox, in the caller's transaction.
fn append(tx: &mut Transaction<'_>, event: &OutboxEvent) -> mysql::Result<()> {
    tx.exec_drop(
        INSERT_OUTBOX,
        (
            &event.event_id,
            &event.uid,
            event.kind,
            event.created_at,
            &event.body,
            event.created_at,
        ),
    )
}

impl MysqlStore {
    /// Revokes every live session of the user in `tx`, with an event for each; their ids.
    fn revoke_all(
        &self,
        tx: &mut Transaction<'_>,
        uid: &str,
        now: i64,
        reason: RevokeReason,
    ) -> mysql::Result<Vec<String>> {
        let ids: Vec<String> = tx.exec(LIVE_SESSION_IDS, (uid,))?;
        tx.exec_drop(REVOKE_USER_SESSIONS, (now, uid))?;
        if self.options.events {
            for id in &ids {
                append(tx, &OutboxEvent::session_revoked(uid, id, reason, now))?;
            }
        }
        Ok(ids)
    }
}

impl UserStore for MysqlStore {
    fn activate_avatar(
        &self,
        openid: &str,
        image: &NewImage<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            if !user_exists(&mut tx, openid)? {
                return Ok(false);
            }
            let (active, pending) = avatar_hashes(&mut tx, openid)?;
            tx.exec_drop(PUT_AVATAR, (image.hash, image.content_type, image.bytes))?;
            tx.exec_drop(ACTIVATE_ROW, (openid, image.hash, now))?;
            tx.exec_drop(SET_USER_AVATAR, (image.url, openid))?;
            delete_unreferenced(&mut tx, &[active, pending], image.hash)?;
            tx.commit().map(|()| true)
        })
    }

    fn begin_avatar_check(
        &self,
        openid: &str,
        image: &NewImage<'_>,
        media_token: &str,
        media_expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            if !user_exists(&mut tx, openid)? {
                return Ok(false);
            }
            let (_, pending) = avatar_hashes(&mut tx, openid)?;
            tx.exec_drop(PUT_AVATAR, (image.hash, image.content_type, image.bytes))?;
            tx.exec_drop(
                BEGIN_CHECK_ROW,
                (
                    openid,
                    image.hash,
                    image.url,
                    media_token,
                    media_expires_at,
                    now,
                    now,
                ),
            )?;
            delete_unreferenced(&mut tx, &[pending], image.hash)?;
            tx.commit().map(|()| true)
        })
    }

    fn avatar_check_submitted(
        &self,
        media_token: &str,
        trace_id: &str,
    ) -> Result<bool, StoreError> {
        self.run(|conn| {
            conn.exec_drop(
                "UPDATE wx_user_avatar SET trace_id = ? WHERE media_token = ? AND state = 'pending'",
                (trace_id, media_token),
            )
            .map(|()| conn.affected_rows() > 0)
        })
    }

    fn find_avatar_check(&self, trace_id: &str) -> Result<Option<AvatarCheck>, StoreError> {
        let sql = format!("{CHECK_COLUMNS} WHERE trace_id = ? AND state = 'pending'");
        let row: Option<CheckRow> = self.run(|conn| conn.exec_first(&sql, (trace_id,)))?;
        Ok(row.map(avatar_check))
    }

    fn finish_avatar_check(
        &self,
        openid: &str,
        media_token: &str,
        accept: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let row: Option<(Option<String>, String, String)> = tx.exec_first(
                "SELECT active_hash, pending_hash, pending_url FROM wx_user_avatar
                 WHERE openid = ? AND media_token = ? AND state = 'pending' FOR UPDATE",
                (openid, media_token),
            )?;
            let Some((active, pending, url)) = row else {
                return Ok(false);
            };
            if accept {
                tx.exec_drop(ACTIVATE_ROW, (openid, &pending, now))?;
                tx.exec_drop(SET_USER_AVATAR, (&url, openid))?;
                delete_unreferenced(&mut tx, &[active], &pending)?;
            } else {
                tx.exec_drop(
                    "UPDATE wx_user_avatar SET pending_hash = NULL, pending_url = NULL,
                        state = 'rejected', media_token = NULL, media_expires_at = NULL,
                        trace_id = NULL, submitted_at = NULL, attempts = 0, updated_at = ?
                     WHERE openid = ?",
                    (now, openid),
                )?;
                delete_unreferenced(&mut tx, &[Some(pending)], "")?;
            }
            tx.commit().map(|()| true)
        })
    }

    fn due_avatar_checks(
        &self,
        submitted_before: i64,
        limit: u32,
    ) -> Result<Vec<AvatarCheck>, StoreError> {
        let sql = format!(
            "{CHECK_COLUMNS} WHERE state = 'pending' AND submitted_at <= ? ORDER BY submitted_at LIMIT ?"
        );
        let rows: Vec<CheckRow> = self.run(|conn| conn.exec(&sql, (submitted_before, limit)))?;
        Ok(rows.into_iter().map(avatar_check).collect())
    }

    fn resubmit_avatar_check(
        &self,
        openid: &str,
        old_token: &str,
        new_token: &str,
        media_expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run(|conn| {
            conn.exec_drop(
                "UPDATE wx_user_avatar SET media_token = ?, media_expires_at = ?, trace_id = NULL,
                    submitted_at = ?, attempts = attempts + 1, updated_at = ?
                 WHERE openid = ? AND media_token = ? AND state = 'pending'",
                (new_token, media_expires_at, now, now, openid, old_token),
            )
            .map(|()| conn.affected_rows() > 0)
        })
    }

    fn find_media(
        &self,
        media_token: &str,
        now: i64,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.run(|conn| {
            conn.exec_first(
                "SELECT a.content_type, a.bytes FROM wx_user_avatar u JOIN avatar a
                    ON a.hash = u.pending_hash
                 WHERE u.media_token = ? AND u.media_expires_at > ? AND u.state = 'pending'",
                (media_token, now),
            )
        })
    }

    fn avatar_state(&self, openid: &str) -> Result<Option<AvatarState>, StoreError> {
        let state: Option<String> = self.run(|conn| {
            conn.exec_first(
                "SELECT state FROM wx_user_avatar WHERE openid = ?",
                (openid,),
            )
        })?;
        Ok(state.as_deref().and_then(AvatarState::parse))
    }

    fn find_media_verdict(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.run(|conn| {
            conn.exec_first(
                "SELECT suggest FROM wx_media_verdict WHERE hash = ?",
                (hash,),
            )
        })
    }

    fn remember_media_verdict(
        &self,
        hash: &str,
        suggest: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.exec_drop(
                "INSERT INTO wx_media_verdict (hash, suggest, decided_at) VALUES (?, ?, ?)
                 ON DUPLICATE KEY UPDATE suggest = VALUES(suggest), decided_at = VALUES(decided_at)",
                (hash, suggest, now),
            )
        })
    }

    fn upsert_login(&self, record: &LoginRecord<'_>) -> Result<LoginUser, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            match self.upsert_in(&mut tx, record)? {
                Upserted::Written(found) => tx.commit().map(|()| Ok(found)),
                Upserted::Disabled(found) => tx.rollback().map(|()| Ok(found)),
                Upserted::Gone => tx.rollback().map(|()| Err(row_gone())),
            }
        })?
    }

    fn write_login(
        &self,
        record: &LoginRecord<'_>,
        code: Option<&CodeOutcome<'_>>,
        session: &LoginSession<'_>,
    ) -> Result<LoginUser, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let found = match self.upsert_in(&mut tx, record)? {
                Upserted::Written(found) | Upserted::Disabled(found) => found,
                Upserted::Gone => return tx.rollback().map(|()| Err(row_gone())),
            };
            if let Some(code) = code {
                tx.exec_drop(
                    FINISH_CODE,
                    (record.openid, code.unionid, code.remember_until, code.hash),
                )?;
            }
            if !found.disabled {
                insert_session(&mut tx, &session.for_user(&found.uid))?;
            }
            tx.commit().map(|()| Ok(found))
        })?
    }

    fn create_session(&self, session: &NewSession<'_>) -> Result<(), StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            insert_session(&mut tx, session)?;
            tx.commit()
        })
    }

    fn find_refresh(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let row: Option<RefreshRow> = self.run(|conn| conn.exec_first(FIND_REFRESH, (hash,)))?;
        Ok(row.map(
            |(
                session_id,
                uid,
                openid,
                unionid,
                rotated_at,
                successor_access,
                expires_at,
                max_expires_at,
                revoked_at,
                status,
            )| RefreshRecord {
                session_id,
                uid,
                openid,
                unionid,
                rotated_at,
                successor_access,
                expires_at,
                max_expires_at,
                revoked: revoked_at.is_some(),
                disabled: is_disabled(status.as_deref()),
            },
        ))
    }

    fn rotate_refresh(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                SPEND_REFRESH,
                (rotation.now, rotation.access_token, rotation.old_hash),
            )?;
            if tx.affected_rows() == 0 {
                tx.rollback()?;
                return Ok(false);
            }
            tx.exec_drop(
                INSERT_REFRESH,
                (rotation.new_hash, rotation.session_id, rotation.now),
            )?;
            tx.exec_drop(
                SLIDE_SESSION,
                (rotation.expires_at, rotation.now, rotation.session_id),
            )?;
            tx.exec_drop(
                "INSERT INTO wx_login (uid, at, session_id, ip, user_agent, kind) \
                 SELECT uid, ?, id, ?, ?, 'refresh' FROM wx_session WHERE id = ?",
                (
                    rotation.now,
                    rotation.ip,
                    rotation.user_agent,
                    rotation.session_id,
                ),
            )?;
            tx.commit().map(|()| true)
        })
    }

    fn session_state(&self, session_id: &str) -> Result<SessionState, StoreError> {
        let row: Option<SessionStateRow> =
            self.run(|conn| conn.exec_first(SESSION_STATE, (session_id,)))?;
        Ok(super::session_state(row))
    }

    fn revoke_session(
        &self,
        uid: &str,
        session_id: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<bool, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(REVOKE_SESSION, (now, session_id, uid))?;
            let found = if tx.affected_rows() > 0 {
                if self.options.events {
                    append(
                        &mut tx,
                        &OutboxEvent::session_revoked(uid, session_id, reason, now),
                    )?;
                }
                true
            } else {
                let n: Option<u64> = tx.exec_first(
                    "SELECT COUNT(*) FROM wx_session WHERE id = ? AND uid = ?",
                    (session_id, uid),
                )?;
                n.unwrap_or(0) > 0
            };
            tx.commit().map(|()| found)
        })
    }

    fn revoke_user_sessions(
        &self,
        uid: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let ids = self.revoke_all(&mut tx, uid, now, reason)?;
            tx.commit().map(|()| ids)
        })
    }

    fn set_disabled(
        &self,
        uid: &str,
        disabled: bool,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let (status, other) = if disabled {
            (DISABLED, ACTIVE)
        } else {
            (ACTIVE, DISABLED)
        };
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "UPDATE wxuser SET status = ? WHERE uid = ? AND status = ?",
                (status, uid, other),
            )?;
            if tx.affected_rows() == 0 {
                let n: Option<u64> =
                    tx.exec_first("SELECT COUNT(*) FROM wxuser WHERE uid = ?", (uid,))?;
                tx.rollback()?;
                return Ok((n.unwrap_or(0) > 0).then(Vec::new));
            }
            if self.options.events {
                append(&mut tx, &OutboxEvent::user_status(uid, disabled, now))?;
            }
            let ids = if disabled {
                self.revoke_all(&mut tx, uid, now, RevokeReason::Disabled)?
            } else {
                Vec::new()
            };
            tx.commit().map(|()| Some(ids))
        })
    }

    fn set_erase_at(
        &self,
        uid: &str,
        erase_at: Option<i64>,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "UPDATE wxuser SET erase_at = ? WHERE uid = ?",
                (erase_at, uid),
            )?;
            if tx.affected_rows() == 0 {
                tx.rollback()?;
                return Ok(None);
            }
            let ids = if erase_at.is_some() {
                self.revoke_all(&mut tx, uid, now, RevokeReason::Deletion)?
            } else {
                Vec::new()
            };
            tx.commit().map(|()| Some(ids))
        })
    }

    fn erase_user(&self, uid: &str, now: i64) -> Result<bool, StoreError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            // The row lock makes nodes racing to erase one account take turns: the second
            // finds the row gone and writes no event.
            let row: Option<(String, Option<String>)> = tx.exec_first(
                "SELECT user_id, avatar FROM wxuser WHERE uid = ? FOR UPDATE",
                (uid,),
            )?;
            tx.exec_drop(
                "DELETE FROM wx_refresh_token WHERE session_id IN \
                 (SELECT id FROM wx_session WHERE uid = ?)",
                (uid,),
            )?;
            tx.exec_drop("DELETE FROM wx_session WHERE uid = ?", (uid,))?;
            tx.exec_drop("DELETE FROM wx_login WHERE uid = ?", (uid,))?;
            let Some((openid, avatar)) = row else {
                return tx.commit().map(|()| false);
            };
            tx.exec_drop("DELETE FROM wxuser WHERE uid = ?", (uid,))?;
            for statement in super::statements(ERASE_CODE_REPLAY) {
                tx.exec_drop(statement, (&openid,))?;
            }
            // Their images go unless another user shows them or waits for them.
            let (active, pending) = avatar_hashes(&mut tx, &openid)?;
            tx.exec_drop("DELETE FROM wx_user_avatar WHERE openid = ?", (&openid,))?;
            let shown = avatar.as_deref().and_then(avatar_hash).map(str::to_string);
            let mut hashes = vec![active, pending, shown];
            hashes.sort();
            hashes.dedup();
            for hash in hashes.into_iter().flatten() {
                let pattern = format!("%/avatars/{hash}.%");
                let shown: Option<u64> = tx.exec_first(
                    "SELECT COUNT(*) FROM wxuser WHERE avatar LIKE ?",
                    (pattern,),
                )?;
                if shown.unwrap_or(0) == 0 {
                    delete_unreferenced(&mut tx, &[Some(hash)], "")?;
                }
            }
            if self.options.events {
                append(&mut tx, &OutboxEvent::user_deleted(uid, &openid, now))?;
            }
            tx.commit().map(|()| true)
        })
    }

    fn due_erasures(&self, now: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.run(|conn| {
            conn.exec(
                "SELECT uid FROM wxuser WHERE erase_at IS NOT NULL AND erase_at <= ? \
                 ORDER BY erase_at LIMIT ?",
                (now, limit as u64),
            )
        })
    }

    fn find_account(&self, uid_or_openid: &str) -> Result<Option<Account>, StoreError> {
        let row: Option<AccountRow> =
            self.run(|conn| conn.exec_first(FIND_ACCOUNT, (uid_or_openid, uid_or_openid)))?;
        Ok(row.map(
            |(uid, openid, unionid, nick_name, avatar_url, gender, has_phone, status, erase_at)| {
                Account {
                    uid,
                    openid,
                    unionid,
                    profile: Profile {
                        nick_name,
                        avatar_url,
                        gender,
                    },
                    has_phone,
                    disabled: is_disabled(status.as_deref()),
                    erase_at,
                }
            },
        ))
    }

    fn list_logins(&self, uid: &str, limit: usize) -> Result<Vec<LoginEntry>, StoreError> {
        let rows: Vec<LoginRow> = self.run(|conn| conn.exec(LIST_LOGINS, (uid, limit as u64)))?;
        Ok(rows
            .into_iter()
            .map(|(at, session_id, ip, user_agent, kind)| LoginEntry {
                at,
                session_id,
                ip,
                user_agent,
                kind,
            })
            .collect())
    }

    fn purge(&self, purge: &Purge) -> Result<Purged, StoreError> {
        let limit = purge.limit as u64;
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM wx_login WHERE at < ? LIMIT ?",
                (purge.history_before, limit),
            )?;
            let history = conn.affected_rows() as usize;
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let expired: Vec<String> = tx.exec(
                "SELECT id FROM wx_session WHERE expires_at < ? LIMIT ? FOR UPDATE",
                (purge.sessions_before, limit),
            )?;
            for id in &expired {
                tx.exec_drop("DELETE FROM wx_refresh_token WHERE session_id = ?", (id,))?;
                tx.exec_drop("DELETE FROM wx_session WHERE id = ?", (id,))?;
            }
            tx.commit()?;
            conn.exec_drop(
                "UPDATE wx_refresh_token SET successor_access = NULL \
                 WHERE rotated_at < ? AND successor_access IS NOT NULL LIMIT ?",
                (purge.successors_before, limit),
            )?;
            Ok(Purged {
                history,
                sessions: expired.len(),
                successors: conn.affected_rows() as usize,
            })
        })
    }

    fn stats(&self, now: i64) -> Result<Stats, StoreError> {
        type Row = (u64, u64, u64, u64, u64, u64);
        let row: Option<Row> = self.run(|conn| {
            conn.exec_first(
                "SELECT (SELECT COUNT(*) FROM wxuser), \
                 (SELECT COUNT(*) FROM wxuser WHERE status = 'disabled'), \
                 (SELECT COUNT(*) FROM wxuser WHERE erase_at IS NOT NULL), \
                 (SELECT COUNT(*) FROM wx_session WHERE revoked_at IS NULL AND expires_at > ?), \
                 (SELECT COUNT(*) FROM wx_login WHERE kind = 'login' AND at > ?), \
                 (SELECT COUNT(*) FROM wx_login WHERE kind = 'login' AND at > ?)",
                (now, now - 3600, now - 86_400),
            )
        })?;
        let (users, disabled_users, deletions_pending, active_sessions, hour, day) =
            row.unwrap_or_default();
        Ok(Stats {
            users,
            disabled_users,
            deletions_pending,
            active_sessions,
            logins_last_hour: hour,
            logins_last_day: day,
        })
    }

    fn list_sessions(&self, uid: &str, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        let rows: Vec<SessionRow> = self.run(|conn| conn.exec(LIST_SESSIONS, (uid, now)))?;
        Ok(rows
            .into_iter()
            .map(
                |(id, created_at, last_used_at, expires_at, user_agent, ip)| SessionInfo {
                    id,
                    created_at,
                    last_used_at,
                    expires_at,
                    user_agent,
                    ip,
                },
            )
            .collect())
    }

    fn find_user(&self, openid: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = self.run(|conn| conn.exec_first(FIND_USER, (openid,)))?;
        Ok(row.map(
            |(openid, unionid, nick_name, avatar_url, gender, phone, pure, country)| User {
                openid,
                unionid,
                profile: Profile {
                    nick_name,
                    avatar_url,
                    gender,
                },
                phone: super::phone_from_columns(phone, pure, country),
            },
        ))
    }

    fn claim_code(&self, hash: &str, now: i64, claim_until: i64) -> Result<CodeClaim, StoreError> {
        self.run(|conn| {
            for _ in 0..3 {
                conn.exec_drop(CLAIM_CODE, (hash, now, claim_until))?;
                if conn.affected_rows() == 1 {
                    return Ok(CodeClaim::Claimed);
                }
                let found: Option<(Option<String>, Option<String>, i64)> =
                    conn.exec_first(FIND_CODE, (hash,))?;
                match found {
                    Some((_, _, expires_at)) if expires_at < now => {
                        conn.exec_drop(EXPIRE_CODE, (hash, now))?;
                    }
                    Some((Some(openid), unionid, _)) => {
                        return Ok(CodeClaim::Done { openid, unionid })
                    }
                    Some((None, _, _)) => return Ok(CodeClaim::Pending),
                    // Released between our insert and our look: claim again.
                    None => {}
                }
            }
            Ok(CodeClaim::Pending)
        })
    }

    fn finish_code(
        &self,
        hash: &str,
        openid: &str,
        unionid: Option<&str>,
        remember_until: i64,
    ) -> Result<(), StoreError> {
        self.run(|conn| conn.exec_drop(FINISH_CODE, (openid, unionid, remember_until, hash)))
    }

    fn release_code(&self, hash: &str) -> Result<(), StoreError> {
        self.run(|conn| conn.exec_drop(RELEASE_CODE, (hash,)))
    }

    fn purge_codes(&self, now: i64) -> Result<u64, StoreError> {
        self.run(|conn| {
            conn.exec_drop(PURGE_CODES, (now,))
                .map(|()| conn.affected_rows())
        })
    }

    fn find_session_key(&self, openid: &str) -> Result<Option<Secret>, StoreError> {
        let key: Option<Option<String>> =
            self.run(|conn| conn.exec_first(FIND_SESSION_KEY, (openid,)))?;
        Ok(key.flatten().map(Secret::new))
    }

    fn set_phone(&self, openid: &str, phone: &PhoneNumber) -> Result<bool, StoreError> {
        let params = (
            &phone.phone_number,
            &phone.pure_phone_number,
            &phone.country_code,
            openid,
        );
        self.run(|conn| {
            conn.exec_drop(SET_PHONE, params)
                .map(|()| conn.affected_rows() > 0)
        })
    }

    fn update_profile(&self, openid: &str, profile: &Profile) -> Result<bool, StoreError> {
        let params = (
            profile.nick_name.as_deref(),
            profile.avatar_url.as_deref(),
            profile.gender,
            openid,
        );
        self.run(|conn| {
            conn.exec_drop(UPDATE_PROFILE, params)
                .map(|()| conn.affected_rows() > 0)
        })
    }

    fn find_avatar(&self, hash: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.run(|conn| conn.exec_first(FIND_AVATAR, (hash,)))
    }

    fn find_avatar_type(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.run(|conn| conn.exec_first(FIND_AVATAR_TYPE, (hash,)))
    }

    fn claim_events(&self, claim: &Claim<'_>) -> Result<Vec<OutboxDelivery>, StoreError> {
        self.run(|conn| {
            let seqs: Vec<i64> = conn.exec(
                CLAIMABLE_EVENTS,
                (
                    claim.now,
                    claim.max_attempts,
                    claim.now,
                    claim.max_attempts,
                    claim.limit as u64,
                ),
            )?;
            if seqs.is_empty() {
                return Ok(Vec::new());
            }
            // The lease is taken by one UPDATE that checks again that each event is free: of
            // nodes that chose the same events, the row locks let one lease each event, and the
            // others find it leased.
            let list = placeholders(seqs.len());
            let mut lease = vec![
                mysql::Value::from(claim.node),
                claim.lease_until.into(),
                claim.now.into(),
            ];
            lease.extend(seqs.iter().map(|&seq| mysql::Value::from(seq)));
            conn.exec_drop(
                format!(
                    "UPDATE wx_outbox SET locked_by = ?, locked_until = ? \
                     WHERE delivered_at IS NULL AND (locked_until IS NULL OR locked_until <= ?) \
                     AND seq IN {list}"
                ),
                lease,
            )?;
            let mut ours = vec![mysql::Value::from(claim.node), claim.lease_until.into()];
            ours.extend(seqs.iter().map(|&seq| mysql::Value::from(seq)));
            let rows: Vec<(i64, String, String, String, String, u32)> = conn.exec(
                format!(
                    "SELECT seq, event_id, uid, type, body, attempts FROM wx_outbox \
                     WHERE locked_by = ? AND locked_until = ? AND seq IN {list} ORDER BY seq"
                ),
                ours,
            )?;
            Ok(rows
                .into_iter()
                .map(
                    |(seq, event_id, uid, kind, body, attempts)| OutboxDelivery {
                        seq,
                        event_id,
                        uid,
                        kind,
                        body,
                        attempts,
                    },
                )
                .collect())
        })
    }

    fn settle_event(&self, seq: i64, node: &str, settle: Settle<'_>) -> Result<bool, StoreError> {
        self.run(|conn| {
            match settle {
                Settle::Delivered { at } => conn.exec_drop(SETTLE_DELIVERED, (at, seq, node))?,
                Settle::Failed {
                    next_attempt_at,
                    error,
                } => conn.exec_drop(SETTLE_FAILED, (next_attempt_at, error, seq, node))?,
                Settle::Released => conn.exec_drop(SETTLE_RELEASED, (seq, node))?,
            }
            Ok(conn.affected_rows() == 1)
        })
    }

    fn outbox_counts(&self, max_attempts: u32) -> Result<OutboxCounts, StoreError> {
        let row: Option<(u64, u64)> =
            self.run(|conn| conn.exec_first(OUTBOX_COUNTS, (max_attempts, max_attempts)))?;
        let (pending, failed) = row.unwrap_or_default();
        Ok(OutboxCounts { pending, failed })
    }

    fn purge_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM wx_outbox WHERE delivered_at < ? LIMIT ?",
                (before, limit as u64),
            )?;
            Ok(conn.affected_rows() as usize)
        })
    }

    fn pool_usage(&self) -> (usize, usize) {
        (self.in_use.load(Ordering::Relaxed), self.max)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| conn.query_drop("SELECT 1"))
    }
}

/// Parses `DATABASE_URL` with the mysql crate, plus one option of ours: `require_ssl=true`
/// makes the connection use TLS and verify the server's certificate (a public CA, or the
/// crate's own `root_cert_path=` for a private one) and host name. The crate's TLS options
/// (`root_cert_path`, `danger_skip_domain_validation`, `danger_accept_invalid_certs`) turn TLS
/// on by themselves. A server without TLS is then refused at connect. Errors never quote the
/// URL: it holds the password.
fn parse_url(url: &str) -> Result<Opts, StoreError> {
    let invalid = |why: &str| StoreError::Query(format!("DATABASE_URL {why}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut require_ssl = false;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("require_ssl", "true")) => require_ssl = true,
            Some(("require_ssl", "false")) => require_ssl = false,
            Some(("require_ssl", _)) | None if pair.starts_with("require_ssl") => {
                return Err(invalid(
                    "has require_ssl without true or false; use ?require_ssl=true",
                ))
            }
            _ => rest.push(pair),
        }
    }
    // The pool opens no connection ahead of need (see `open`); without this, the mysql crate's
    // default minimum of 10 made any `pool_max` below 10 an invalid URL.
    if rest.iter().any(|p| p.starts_with("pool_max="))
        && !rest.iter().any(|p| p.starts_with("pool_min="))
    {
        rest.push("pool_min=0");
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let opts = Opts::from_url(&url).map_err(|e| match e {
        mysql::UrlError::UnknownParameter(name) => invalid(&format!(
            "has an unknown option {name:?}; see docs/operations.md, Configuration"
        )),
        _ => {
            invalid("is not a valid mysql:// URL (mysql://user:pass@host:port/db?require_ssl=true)")
        }
    })?;
    if require_ssl && opts.get_ssl_opts().is_none() {
        return Ok(OptsBuilder::from_opts(opts)
            .ssl_opts(SslOpts::default())
            .into());
    }
    Ok(opts)
}

/// What to warn about when the connection to the database can be read or impersonated on the
/// way: no TLS to another machine, or TLS that accepts any certificate.
fn transport_warning(opts: &Opts) -> Option<String> {
    let host = opts.get_ip_or_hostname();
    match opts.get_ssl_opts() {
        None if opts.get_socket().is_some() || is_loopback_host(&host) => None,
        None => Some(format!(
            "DATABASE_URL: the MySQL server {host} is not on this machine and the connection has no TLS: session keys and phone numbers travel in clear; add ?require_ssl=true"
        )),
        Some(tls) if tls.accept_invalid_certs() => Some(format!(
            "DATABASE_URL: TLS to {host} accepts any certificate (danger_accept_invalid_certs=true): whoever sits on the path can pose as the database; use root_cert_path= for a private CA instead"
        )),
        Some(_) => None,
    }
}

/// Network and capacity failures are "unavailable" (503, retry); a server error with a SQL code
/// is a query failure, except the ones that mean the server is going away or overloaded.
fn classify(e: mysql::Error) -> StoreError {
    match e {
        mysql::Error::IoError(io) => StoreError::Unavailable(format!("I/O error: {}", io.kind())),
        mysql::Error::DriverError(mysql::DriverError::TlsNotSupported) => StoreError::Unavailable(
            "the server does not offer TLS, which DATABASE_URL requires (require_ssl=true or a TLS option): enable TLS on the server, or drop the option for a server on this machine".into(),
        ),
        mysql::Error::DriverError(d) => StoreError::Unavailable(d.to_string()),
        mysql::Error::TlsError(e) => StoreError::Unavailable(format!("TLS: {e}")),
        mysql::Error::CodecError(c) => StoreError::Unavailable(format!("protocol: {c}")),
        mysql::Error::MySqlError(e) => match e.code {
            // Too many connections, server shutdown, read-only, lock wait, deadlock, access denied.
            1040 | 1053 | 1205 | 1213 | 1290 | 1045 | 1044 | 1049 | 2002 | 2003 | 2006 | 2013 => {
                StoreError::Unavailable(format!("MySQL error {}: {}", e.code, e.message))
            }
            _ => StoreError::Query(format!("MySQL error {}: {}", e.code, e.message)),
        },
        other => StoreError::Query(other.to_string()),
    }
}

/// The named lock that serialises migrations, one per database (lock names are server-wide; a
/// name truncated to MySQL's 64 characters may only make two databases wait for each other).
const MIGRATION_LOCK: &str = "LEFT(CONCAT('wxlogin_migrations.', COALESCE(DATABASE(), '')), 64)";

/// Applies the migrations on a connection of its own, outside the pool: its timeouts allow a long
/// `ALTER TABLE`, and the named lock belongs to it, so a node that dies while migrating releases
/// the lock with its session. Nodes starting together wait for the lock, then find the
/// migrations recorded and apply nothing.
fn apply_migrations(builder: OptsBuilder) -> Result<(), StoreError> {
    let timeout = migrate::MYSQL_MIGRATION_TIMEOUT;
    let builder = builder
        .read_timeout(Some(timeout + Duration::from_secs(10)))
        .write_timeout(Some(timeout));
    let mut conn = Conn::new(builder).map_err(classify)?;
    let locked: Option<Option<i64>> = conn
        .query_first(format!(
            "SELECT GET_LOCK({MIGRATION_LOCK}, {})",
            timeout.as_secs()
        ))
        .map_err(classify)?;
    if locked.flatten() != Some(1) {
        return Err(StoreError::Unavailable(format!(
            "another node held the migration lock for {}s",
            timeout.as_secs()
        )));
    }
    let result = migrate::migrate(&mut MysqlSession(&mut conn), &migrate::MYSQL);
    let released = conn
        .query_drop(format!("DO RELEASE_LOCK({MIGRATION_LOCK})"))
        .map_err(classify);
    result?;
    released
}

struct MysqlSession<'a>(&'a mut Conn);

impl Session for MysqlSession<'_> {
    fn execute(&mut self, statement: &str) -> Result<(), StoreError> {
        self.0.query_drop(statement).map_err(classify)
    }

    fn add_column(&mut self, statement: &str) -> Result<(), StoreError> {
        match self.0.query_drop(statement) {
            Err(mysql::Error::MySqlError(e)) if is_duplicate_column(&e.message) => Ok(()),
            other => other.map_err(classify),
        }
    }

    fn table_exists(&mut self, table: &str) -> Result<bool, StoreError> {
        let n: Option<u64> = self
            .0
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (table,),
            )
            .map_err(classify)?;
        Ok(n.unwrap_or(0) > 0)
    }

    fn applied(&mut self) -> Result<Vec<Applied>, StoreError> {
        self.0
            .query_map(
                "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
                |(version, name, checksum)| Applied {
                    version,
                    name,
                    checksum,
                },
            )
            .map_err(classify)
    }

    fn record(&mut self, migration: &Migration, checksum: &str) -> Result<(), StoreError> {
        self.0
            .exec_drop(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                (migration.version, migration.name, checksum),
            )
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_connections_to_other_machines_are_warned_about() {
        let cases = [
            ("mysql://u:p@127.0.0.1:3306/wx", None),
            ("mysql://u:p@localhost/wx", None),
            ("mysql://u:p@[::1]:3306/wx", None),
            (
                "mysql://u:p@db.internal/wx?socket=/run/mysqld/mysqld.sock",
                None,
            ),
            ("mysql://u:p@db.internal/wx", Some("travel in clear")),
            ("mysql://u:p@10.0.0.7:3306/wx", Some("travel in clear")),
            ("mysql://u:p@db.internal/wx?require_ssl=true", None),
            (
                "mysql://u:p@db.internal/wx?root_cert_path=/etc/ssl/db-ca.pem",
                None,
            ),
            (
                "mysql://u:p@db.internal/wx?danger_accept_invalid_certs=true",
                Some("accepts any certificate"),
            ),
            (
                "mysql://u:p@db.internal/wx?require_ssl=false",
                Some("travel in clear"),
            ),
        ];
        for (url, expected) in cases {
            let warning = transport_warning(&parse_url(url).unwrap());
            match (&warning, expected) {
                (None, None) => {}
                (Some(w), Some(want)) => assert!(w.contains(want), "{url}: {w}"),
                _ => panic!("{url}: warning {warning:?}, expected one containing {expected:?}"),
            }
            assert!(
                !warning.unwrap_or_default().contains("u:p"),
                "{url}: the warning quotes credentials"
            );
        }
    }

    #[test]
    fn require_ssl_turns_tls_on_and_is_not_passed_to_the_driver() {
        let opts = parse_url("mysql://u:p@db.internal/wx?require_ssl=true&pool_max=40").unwrap();
        let tls = opts.get_ssl_opts().expect("TLS is on");
        assert!(!tls.accept_invalid_certs(), "the certificate is verified");
        assert!(!tls.skip_domain_validation(), "the host name is verified");
        assert_eq!(
            opts.get_pool_opts().constraints().max(),
            40,
            "other options kept"
        );
        for url in [
            "mysql://u:p@db/wx?require_ssl=yes",
            "mysql://u:p@db/wx?require_ssl",
        ] {
            let err = parse_url(url).expect_err("refused");
            assert!(err.to_string().contains("require_ssl=true"), "{url}: {err}");
        }
        let err = parse_url("mysql://u:secret-pw@db/wx?verify_ca=true")
            .expect_err("an unknown option is refused");
        assert!(err.to_string().contains("verify_ca"), "{err}");
        assert!(!err.to_string().contains("secret-pw"), "{err}");
    }

    #[test]
    fn a_small_pool_max_is_a_valid_url() {
        for (url, max) in [
            ("mysql://u:p@db/wx?pool_max=4", 4),
            ("mysql://u:p@db/wx?pool_max=1&require_ssl=false", 1),
            ("mysql://u:p@db/wx?pool_min=2&pool_max=8", 8),
        ] {
            let opts = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(opts.get_pool_opts().constraints().max(), max, "{url}");
        }
    }
}
