//! The embedded SQLite backend: the default, so `make run` needs nothing installed.
//!
//! A rusqlite `Connection` is `Send` but not `Sync`, so the store keeps a small pool of them and
//! lends one to each caller. WAL mode lets readers proceed while one writer commits; SQLite
//! serialises writers itself, and the busy timeout bounds how long a writer waits for the lock.
//! `synchronous = FULL` makes each commit durable before the login is answered, even across a
//! power loss.

use super::migrate::{self, Applied, Migration, Session};
use super::{
    avatar_hash, is_disabled, is_duplicate_column, phone_from_columns, placeholders, Account,
    AvatarCheck, AvatarState, Claim, CodeClaim, LoginEntry, LoginRecord, LoginUser, NewImage,
    NewSession, OutboxCounts, OutboxDelivery, OutboxEvent, Purge, Purged, RefreshRecord,
    RevokeReason, Rotation, SessionInfo, SessionState, Settle, Stats, StoreError, StoreOptions,
    UserStore, ACTIVE, DISABLED, INSERT_OUTBOX, OUTBOX_COUNTS, SETTLE_DELIVERED, SETTLE_FAILED,
    SETTLE_RELEASED,
};
use crate::secret::Secret;
use crate::user::{PhoneNumber, Profile, User};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const CLAIM_CODE: &str = include_str!("../../sql/sqlite/claim_code.sql");
const FIND_CODE: &str = include_str!("../../sql/sqlite/find_code.sql");
const EXPIRE_CODE: &str = include_str!("../../sql/sqlite/expire_code.sql");
const FINISH_CODE: &str = include_str!("../../sql/sqlite/finish_code.sql");
const RELEASE_CODE: &str = include_str!("../../sql/sqlite/release_code.sql");
const PURGE_CODES: &str = include_str!("../../sql/sqlite/purge_codes.sql");
const UPSERT_LOGIN: &str = include_str!("../../sql/sqlite/upsert_login.sql");
const FIND_USER: &str = include_str!("../../sql/sqlite/find_user.sql");
const FIND_SESSION_KEY: &str = include_str!("../../sql/sqlite/find_session_key.sql");
const SET_PHONE: &str = include_str!("../../sql/sqlite/set_phone.sql");
const UPDATE_PROFILE: &str = include_str!("../../sql/sqlite/update_profile.sql");
const PUT_AVATAR: &str = include_str!("../../sql/sqlite/put_avatar.sql");
const FIND_AVATAR: &str = include_str!("../../sql/sqlite/find_avatar.sql");
const FIND_AVATAR_TYPE: &str = include_str!("../../sql/sqlite/find_avatar_type.sql");
const FIND_LOGIN_USER: &str = include_str!("../../sql/sqlite/find_login_user.sql");
const INSERT_SESSION: &str = include_str!("../../sql/sqlite/insert_session.sql");
const INSERT_REFRESH: &str = include_str!("../../sql/sqlite/insert_refresh.sql");
const FIND_REFRESH: &str = include_str!("../../sql/sqlite/find_refresh.sql");
const SPEND_REFRESH: &str = include_str!("../../sql/sqlite/spend_refresh.sql");
const SLIDE_SESSION: &str = include_str!("../../sql/sqlite/slide_session.sql");
const SESSION_STATE: &str = include_str!("../../sql/sqlite/session_state.sql");
const REVOKE_SESSION: &str = include_str!("../../sql/sqlite/revoke_session.sql");
const LIVE_SESSION_IDS: &str = include_str!("../../sql/sqlite/live_session_ids.sql");
const REVOKE_USER_SESSIONS: &str = include_str!("../../sql/sqlite/revoke_user_sessions.sql");
const LIST_SESSIONS: &str = include_str!("../../sql/sqlite/list_sessions.sql");
const ERASE_CODE_REPLAY: &str = include_str!("../../sql/sqlite/erase_code_replay.sql");
const CLAIMABLE_EVENTS: &str = include_str!("../../sql/sqlite/claimable_events.sql");

// The account's statements: short enough to read here.
const INSERT_LOGIN: &str = "INSERT INTO wx_login (uid, at, session_id, ip, user_agent, kind) \
     VALUES (?, ?, ?, ?, ?, ?)";
const FIND_ACCOUNT: &str = "SELECT uid, user_id, unionid, nickName, avatar, gender, \
     phoneNumber IS NOT NULL, status, erase_at FROM wxuser WHERE uid = ?1 OR user_id = ?1";
const LIST_LOGINS: &str = "SELECT at, session_id, ip, user_agent, kind FROM wx_login \
     WHERE uid = ? ORDER BY at DESC, id DESC LIMIT ?";

/// Upserts the user's avatar row as active with `?2` (unix seconds `?3`).
const ACTIVATE_ROW: &str =
    "INSERT INTO wx_user_avatar (openid, active_hash, state, attempts, updated_at)
    VALUES (?1, ?2, 'active', 0, ?3)
    ON CONFLICT (openid) DO UPDATE SET active_hash = excluded.active_hash, pending_hash = NULL,
        pending_url = NULL, state = 'active', media_token = NULL, media_expires_at = NULL,
        trace_id = NULL, submitted_at = NULL, attempts = 0, updated_at = excluded.updated_at";
const BEGIN_CHECK_ROW: &str =
    "INSERT INTO wx_user_avatar (openid, pending_hash, pending_url, state,
        media_token, media_expires_at, submitted_at, attempts, updated_at)
    VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, 1, ?6)
    ON CONFLICT (openid) DO UPDATE SET pending_hash = excluded.pending_hash,
        pending_url = excluded.pending_url, state = 'pending', media_token = excluded.media_token,
        media_expires_at = excluded.media_expires_at, trace_id = NULL,
        submitted_at = excluded.submitted_at, attempts = 1, updated_at = excluded.updated_at";
const SET_USER_AVATAR: &str = "UPDATE wxuser SET avatar = ?1,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE user_id = ?2";
/// Deletes an image no user shows or waits for.
const DELETE_UNREFERENCED: &str = "DELETE FROM avatar WHERE hash = ?1 AND NOT EXISTS
    (SELECT 1 FROM wx_user_avatar WHERE active_hash = ?1 OR pending_hash = ?1)";
const CHECK_COLUMNS: &str =
    "SELECT openid, pending_hash, media_token, attempts, submitted_at FROM wx_user_avatar";

pub struct SqliteStore {
    path: PathBuf,
    options: StoreOptions,
    pool: Mutex<PoolState>,
    returned: Condvar,
    /// This process's writers take turns on it (see [`SqliteStore::write`]).
    writer: Mutex<()>,
}

struct PoolState {
    idle: Vec<Connection>,
    /// Connections that exist, idle or lent out.
    open: usize,
}

/// A connection on loan; goes back to the pool when dropped.
struct Lease<'a> {
    store: &'a SqliteStore,
    conn: Option<Connection>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut pool = self.store.lock_pool();
            pool.idle.push(conn);
            self.store.returned.notify_one();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates the schema.
    pub fn open(path: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        restrict_files(path)?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            options,
            pool: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
            writer: Mutex::new(()),
        };
        // Processes opening a new file together can be told "database is locked" at once,
        // without the busy handler (SQLite refuses a lock that could deadlock, as when two of
        // them switch the new file to WAL): such a start is tried again, for as long as a
        // migration may be waited for.
        let deadline = Instant::now() + migrate::SQLITE_MIGRATION_TIMEOUT;
        loop {
            match store.migrate() {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(MIGRATION_RETRY_PAUSE);
                }
                outcome => return outcome.map(|()| store),
            }
        }
    }

    /// Brings the schema up to date on a connection that waits for another process's
    /// migration for up to [`migrate::SQLITE_MIGRATION_TIMEOUT`].
    fn migrate(&self) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.busy_timeout(migrate::SQLITE_MIGRATION_TIMEOUT)
            .map_err(classify)?;
        let migrated = apply_migrations(&conn);
        conn.busy_timeout(self.options.timeout).map_err(classify)?;
        migrated
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path).map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", self.path.display()))
        })?;
        conn.busy_timeout(self.options.timeout).map_err(classify)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(classify)?;
        Ok(conn)
    }

    /// Runs `work`, which writes, on a leased connection once it is this process's turn to
    /// write. SQLite lets one writer in at a time, and its busy handler makes the others sleep
    /// and retry with growing pauses: under load some waited seconds, or past the timeout (a
    /// 503), while others went through. Taking turns on a mutex first, they queue instead; every
    /// write of the store goes through here, so none is left to the busy handler but another
    /// process's (the admin command's).
    fn write<T>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.conn()?;
        // The mutex guards no data: a panic while holding it leaves nothing to repair.
        let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        work(&conn).map_err(classify)
    }

    /// Runs `work` in a write transaction taken at its start (`BEGIN IMMEDIATE`, so a read never
    /// has to upgrade to a write), in this process's turn to write; committed only when `work`
    /// succeeds.
    fn immediate<T>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.write(|conn| {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The state is a list and a count, consistent at every unlock: a panic elsewhere while
        // holding the lock cannot leave it half-updated, so poisoning is safe to ignore.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lends an idle connection, opens a new one below the cap, or waits (bounded) for one.
    fn conn(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = Instant::now() + self.options.timeout;
        let mut pool = self.lock_pool();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(Lease {
                    store: self,
                    conn: Some(conn),
                });
            }
            if pool.open < self.options.max_connections.max(1) {
                pool.open += 1;
                drop(pool);
                return match self.connect() {
                    Ok(conn) => Ok(Lease {
                        store: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.lock_pool().open -= 1;
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(
                    "no SQLite connection free in time".into(),
                ));
            }
            pool = self
                .returned
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Whether the user has a row: avatars of a user deleted meanwhile are not stored.
fn user_exists(tx: &Transaction<'_>, openid: &str) -> rusqlite::Result<bool> {
    tx.query_row("SELECT 1 FROM wxuser WHERE user_id = ?1", [openid], |_| {
        Ok(())
    })
    .optional()
    .map(|found| found.is_some())
}

/// The user's active and pending hashes, if they have a row.
fn avatar_hashes(
    tx: &Transaction<'_>,
    openid: &str,
) -> rusqlite::Result<(Option<String>, Option<String>)> {
    Ok(tx
        .query_row(
            "SELECT active_hash, pending_hash FROM wx_user_avatar WHERE openid = ?1",
            [openid],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((None, None)))
}

/// Deletes each of `hashes` that is not `keep` and that nobody refers to any more.
fn delete_unreferenced(
    tx: &Transaction<'_>,
    hashes: &[Option<String>],
    keep: &str,
) -> rusqlite::Result<()> {
    for hash in hashes.iter().flatten().filter(|h| *h != keep) {
        tx.execute(DELETE_UNREFERENCED, [hash])?;
    }
    Ok(())
}

fn avatar_check(row: &rusqlite::Row<'_>) -> rusqlite::Result<AvatarCheck> {
    Ok(AvatarCheck {
        openid: row.get(0)?,
        hash: row.get(1)?,
        media_token: row.get(2)?,
        attempts: row.get(3)?,
        submitted_at: row.get(4)?,
    })
}

/// Appends an event to the outbox, in the caller's transaction.
fn append(tx: &Transaction<'_>, event: &OutboxEvent) -> rusqlite::Result<()> {
    tx.prepare_cached(INSERT_OUTBOX)?
        .execute(params![
            event.event_id,
            event.uid,
            event.kind,
            event.created_at,
            event.body,
            event.created_at
        ])
        .map(|_| ())
}

impl SqliteStore {
    /// Revokes every live session of the user in `tx`, with an event for each; their ids.
    fn revoke_all(
        &self,
        tx: &Transaction<'_>,
        uid: &str,
        now: i64,
        reason: RevokeReason,
    ) -> rusqlite::Result<Vec<String>> {
        let ids = tx
            .prepare_cached(LIVE_SESSION_IDS)?
            .query_map([uid], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        tx.execute(REVOKE_USER_SESSIONS, params![now, uid])?;
        if self.options.events {
            for id in &ids {
                append(tx, &OutboxEvent::session_revoked(uid, id, reason, now))?;
            }
        }
        Ok(ids)
    }
}

impl UserStore for SqliteStore {
    fn activate_avatar(
        &self,
        openid: &str,
        image: &NewImage<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.immediate(|tx| {
            if !user_exists(tx, openid)? {
                return Ok(false);
            }
            let (active, pending) = avatar_hashes(tx, openid)?;
            tx.execute(
                PUT_AVATAR,
                params![image.hash, image.content_type, image.bytes],
            )?;
            tx.execute(ACTIVATE_ROW, params![openid, image.hash, now])?;
            tx.execute(SET_USER_AVATAR, params![image.url, openid])?;
            delete_unreferenced(tx, &[active, pending], image.hash)?;
            Ok(true)
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
        self.immediate(|tx| {
            if !user_exists(tx, openid)? {
                return Ok(false);
            }
            let (_, pending) = avatar_hashes(tx, openid)?;
            tx.execute(
                PUT_AVATAR,
                params![image.hash, image.content_type, image.bytes],
            )?;
            tx.execute(
                BEGIN_CHECK_ROW,
                params![
                    openid,
                    image.hash,
                    image.url,
                    media_token,
                    media_expires_at,
                    now
                ],
            )?;
            delete_unreferenced(tx, &[pending], image.hash)?;
            Ok(true)
        })
    }

    fn avatar_check_submitted(
        &self,
        media_token: &str,
        trace_id: &str,
    ) -> Result<bool, StoreError> {
        self.write(|conn| {
            conn.execute(
                "UPDATE wx_user_avatar SET trace_id = ?1 WHERE media_token = ?2 AND state = 'pending'",
                params![trace_id, media_token],
            )
        })
        .map(|n| n > 0)
    }

    fn find_avatar_check(&self, trace_id: &str) -> Result<Option<AvatarCheck>, StoreError> {
        let conn = self.conn()?;
        conn.query_row(
            &format!("{CHECK_COLUMNS} WHERE trace_id = ?1 AND state = 'pending'"),
            [trace_id],
            avatar_check,
        )
        .optional()
        .map_err(classify)
    }

    fn finish_avatar_check(
        &self,
        openid: &str,
        media_token: &str,
        accept: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.immediate(|tx| {
            let row: Option<(Option<String>, String, String)> = tx
                .query_row(
                    "SELECT active_hash, pending_hash, pending_url FROM wx_user_avatar
                     WHERE openid = ?1 AND media_token = ?2 AND state = 'pending'",
                    params![openid, media_token],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let Some((active, pending, url)) = row else {
                return Ok(false);
            };
            if accept {
                tx.execute(ACTIVATE_ROW, params![openid, pending, now])?;
                tx.execute(SET_USER_AVATAR, params![url, openid])?;
                delete_unreferenced(tx, &[active], &pending)?;
            } else {
                tx.execute(
                    "UPDATE wx_user_avatar SET pending_hash = NULL, pending_url = NULL,
                        state = 'rejected', media_token = NULL, media_expires_at = NULL,
                        trace_id = NULL, submitted_at = NULL, attempts = 0, updated_at = ?1
                     WHERE openid = ?2",
                    params![now, openid],
                )?;
                delete_unreferenced(tx, &[Some(pending)], "")?;
            }
            Ok(true)
        })
    }

    fn due_avatar_checks(
        &self,
        submitted_before: i64,
        limit: u32,
    ) -> Result<Vec<AvatarCheck>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "{CHECK_COLUMNS} WHERE state = 'pending' AND submitted_at <= ?1
                 ORDER BY submitted_at LIMIT ?2"
            ))
            .map_err(classify)?;
        let rows = stmt
            .query_map(params![submitted_before, limit], avatar_check)
            .map_err(classify)?;
        rows.collect::<rusqlite::Result<_>>().map_err(classify)
    }

    fn resubmit_avatar_check(
        &self,
        openid: &str,
        old_token: &str,
        new_token: &str,
        media_expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(|conn| {
            conn.execute(
                "UPDATE wx_user_avatar SET media_token = ?1, media_expires_at = ?2, trace_id = NULL,
                    submitted_at = ?3, attempts = attempts + 1, updated_at = ?3
                 WHERE openid = ?4 AND media_token = ?5 AND state = 'pending'",
                params![new_token, media_expires_at, now, openid, old_token],
            )
        })
        .map(|n| n > 0)
    }

    fn find_media(
        &self,
        media_token: &str,
        now: i64,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT a.content_type, a.bytes FROM wx_user_avatar u JOIN avatar a
                ON a.hash = u.pending_hash
             WHERE u.media_token = ?1 AND u.media_expires_at > ?2 AND u.state = 'pending'",
            params![media_token, now],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(classify)
    }

    fn avatar_state(&self, openid: &str) -> Result<Option<AvatarState>, StoreError> {
        let conn = self.conn()?;
        let state: Option<String> = conn
            .query_row(
                "SELECT state FROM wx_user_avatar WHERE openid = ?1",
                [openid],
                |row| row.get(0),
            )
            .optional()
            .map_err(classify)?;
        Ok(state.as_deref().and_then(AvatarState::parse))
    }

    fn find_media_verdict(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT suggest FROM wx_media_verdict WHERE hash = ?1",
            [hash],
            |row| row.get(0),
        )
        .optional()
        .map_err(classify)
    }

    fn remember_media_verdict(
        &self,
        hash: &str,
        suggest: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO wx_media_verdict (hash, suggest, decided_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (hash) DO UPDATE SET suggest = excluded.suggest,
                    decided_at = excluded.decided_at",
                params![hash, suggest, now],
            )
        })
        .map(|_| ())
    }

    fn upsert_login(&self, record: &LoginRecord<'_>) -> Result<LoginUser, StoreError> {
        let empty = Profile::default();
        let profile = record.profile.unwrap_or(&empty);
        self.immediate(|tx| {
            let find = |tx: &Transaction<'_>| {
                tx.query_row(FIND_LOGIN_USER, [record.openid], |row| {
                    Ok(LoginUser {
                        uid: row.get(0)?,
                        disabled: is_disabled(row.get::<_, Option<String>>(1)?.as_deref()),
                        erase_at: row.get(2)?,
                    })
                })
                .optional()
            };
            if let Some(user) = find(tx)?.filter(|user| user.disabled) {
                return Ok(user);
            }
            tx.prepare_cached(UPSERT_LOGIN)?.execute(params![
                record.openid,
                record.unionid,
                profile.nick_name,
                profile.avatar_url,
                profile.gender,
                record.session_key.expose(),
                record.uid,
            ])?;
            let user = find(tx)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            if self.options.events && user.uid == record.uid {
                let now = crate::clock::now();
                let event =
                    OutboxEvent::user_created(&user.uid, record.openid, record.unionid, now);
                append(tx, &event)?;
            }
            Ok(user)
        })
    }

    fn create_session(&self, session: &NewSession<'_>) -> Result<(), StoreError> {
        self.immediate(|tx| {
            tx.execute(
                INSERT_SESSION,
                params![
                    session.id,
                    session.uid,
                    session.created_at,
                    session.created_at,
                    session.expires_at,
                    session.max_expires_at,
                    session.user_agent,
                    session.ip,
                ],
            )?;
            tx.execute(
                INSERT_REFRESH,
                params![session.refresh_hash, session.id, session.created_at],
            )?;
            tx.execute(
                INSERT_LOGIN,
                params![
                    session.uid,
                    session.created_at,
                    session.id,
                    session.ip,
                    session.user_agent,
                    "login"
                ],
            )?;
            Ok(())
        })
    }

    fn find_refresh(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        self.conn()?
            .prepare_cached(FIND_REFRESH)
            .and_then(|mut stmt| {
                stmt.query_row([hash], |row| {
                    Ok(RefreshRecord {
                        session_id: row.get(0)?,
                        uid: row.get(1)?,
                        openid: row.get(2)?,
                        unionid: row.get(3)?,
                        rotated_at: row.get(4)?,
                        successor_access: row.get(5)?,
                        expires_at: row.get(6)?,
                        max_expires_at: row.get(7)?,
                        revoked: row.get::<_, Option<i64>>(8)?.is_some(),
                        disabled: is_disabled(row.get::<_, Option<String>>(9)?.as_deref()),
                    })
                })
                .optional()
            })
            .map_err(classify)
    }

    fn rotate_refresh(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        self.immediate(|tx| {
            let spent = tx.execute(
                SPEND_REFRESH,
                params![rotation.now, rotation.access_token, rotation.old_hash],
            )?;
            if spent == 0 {
                return Ok(false);
            }
            tx.execute(
                INSERT_REFRESH,
                params![rotation.new_hash, rotation.session_id, rotation.now],
            )?;
            tx.execute(
                SLIDE_SESSION,
                params![rotation.expires_at, rotation.now, rotation.session_id],
            )?;
            let uid: String = tx.query_row(
                "SELECT uid FROM wx_session WHERE id = ?",
                [rotation.session_id],
                |row| row.get(0),
            )?;
            tx.execute(
                INSERT_LOGIN,
                params![
                    uid,
                    rotation.now,
                    rotation.session_id,
                    rotation.ip,
                    rotation.user_agent,
                    "refresh"
                ],
            )?;
            Ok(true)
        })
    }

    fn session_state(&self, session_id: &str) -> Result<SessionState, StoreError> {
        let row = self
            .conn()?
            .prepare_cached(SESSION_STATE)
            .and_then(|mut stmt| {
                stmt.query_row([session_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()
            })
            .map_err(classify)?;
        Ok(super::session_state(row))
    }

    fn revoke_session(
        &self,
        uid: &str,
        session_id: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<bool, StoreError> {
        self.immediate(|tx| {
            let revoked = tx
                .prepare_cached(REVOKE_SESSION)?
                .execute(params![now, session_id, uid])?;
            if revoked > 0 {
                if self.options.events {
                    append(
                        tx,
                        &OutboxEvent::session_revoked(uid, session_id, reason, now),
                    )?;
                }
                return Ok(true);
            }
            tx.query_row(
                "SELECT COUNT(*) FROM wx_session WHERE id = ? AND uid = ?",
                params![session_id, uid],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
        })
    }

    fn revoke_user_sessions(
        &self,
        uid: &str,
        now: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError> {
        self.immediate(|tx| self.revoke_all(tx, uid, now, reason))
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
        self.immediate(|tx| {
            let changed = tx.execute(
                "UPDATE wxuser SET status = ? WHERE uid = ? AND status = ?",
                params![status, uid, other],
            )?;
            if changed == 0 {
                let exists =
                    tx.query_row("SELECT COUNT(*) FROM wxuser WHERE uid = ?", [uid], |row| {
                        row.get::<_, i64>(0)
                    })? > 0;
                return Ok(exists.then(Vec::new));
            }
            if self.options.events {
                append(tx, &OutboxEvent::user_status(uid, disabled, now))?;
            }
            if disabled {
                return self
                    .revoke_all(tx, uid, now, RevokeReason::Disabled)
                    .map(Some);
            }
            Ok(Some(Vec::new()))
        })
    }

    fn set_erase_at(
        &self,
        uid: &str,
        erase_at: Option<i64>,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.immediate(|tx| {
            let found = tx.execute(
                "UPDATE wxuser SET erase_at = ? WHERE uid = ?",
                params![erase_at, uid],
            )?;
            match (found, erase_at) {
                (0, _) => Ok(None),
                (_, Some(_)) => self
                    .revoke_all(tx, uid, now, RevokeReason::Deletion)
                    .map(Some),
                (_, None) => Ok(Some(Vec::new())),
            }
        })
    }

    fn erase_user(&self, uid: &str, now: i64) -> Result<bool, StoreError> {
        self.immediate(|tx| {
            let row: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT user_id, avatar FROM wxuser WHERE uid = ?",
                    [uid],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            tx.execute(
                "DELETE FROM wx_refresh_token WHERE session_id IN \
                 (SELECT id FROM wx_session WHERE uid = ?)",
                [uid],
            )?;
            tx.execute("DELETE FROM wx_session WHERE uid = ?", [uid])?;
            tx.execute("DELETE FROM wx_login WHERE uid = ?", [uid])?;
            let Some((openid, avatar)) = row else {
                return Ok(false);
            };
            tx.execute("DELETE FROM wxuser WHERE uid = ?", [uid])?;
            for statement in super::statements(ERASE_CODE_REPLAY) {
                tx.execute(&statement, [&openid])?;
            }
            // Their images go unless another user shows them or waits for them.
            let (active, pending) = avatar_hashes(tx, &openid)?;
            tx.execute("DELETE FROM wx_user_avatar WHERE openid = ?", [&openid])?;
            let shown = avatar.as_deref().and_then(avatar_hash).map(str::to_string);
            let mut hashes = vec![active, pending, shown];
            hashes.sort();
            hashes.dedup();
            for hash in hashes.into_iter().flatten() {
                let pattern = format!("%/avatars/{hash}.%");
                let shown = tx.query_row(
                    "SELECT COUNT(*) FROM wxuser WHERE avatar LIKE ?",
                    [&pattern],
                    |row| row.get::<_, i64>(0),
                )?;
                if shown == 0 {
                    delete_unreferenced(tx, &[Some(hash)], "")?;
                }
            }
            if self.options.events {
                append(tx, &OutboxEvent::user_deleted(uid, &openid, now))?;
            }
            Ok(true)
        })
    }

    fn due_erasures(&self, now: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.conn()?
            .prepare_cached(
                "SELECT uid FROM wxuser WHERE erase_at IS NOT NULL AND erase_at <= ? \
                 ORDER BY erase_at LIMIT ?",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![now, limit as i64], |row| row.get(0))?
                    .collect()
            })
            .map_err(classify)
    }

    fn find_account(&self, uid_or_openid: &str) -> Result<Option<Account>, StoreError> {
        self.conn()?
            .prepare_cached(FIND_ACCOUNT)
            .and_then(|mut stmt| {
                stmt.query_row([uid_or_openid], |row| {
                    Ok(Account {
                        uid: row.get(0)?,
                        openid: row.get(1)?,
                        unionid: row.get(2)?,
                        profile: Profile {
                            nick_name: row.get(3)?,
                            avatar_url: row.get(4)?,
                            gender: row.get(5)?,
                        },
                        has_phone: row.get(6)?,
                        disabled: is_disabled(row.get::<_, Option<String>>(7)?.as_deref()),
                        erase_at: row.get(8)?,
                    })
                })
                .optional()
            })
            .map_err(classify)
    }

    fn list_logins(&self, uid: &str, limit: usize) -> Result<Vec<LoginEntry>, StoreError> {
        self.conn()?
            .prepare_cached(LIST_LOGINS)
            .and_then(|mut stmt| {
                stmt.query_map(params![uid, limit as i64], |row| {
                    Ok(LoginEntry {
                        at: row.get(0)?,
                        session_id: row.get(1)?,
                        ip: row.get(2)?,
                        user_agent: row.get(3)?,
                        kind: row.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(classify)
    }

    fn purge(&self, purge: &Purge) -> Result<Purged, StoreError> {
        let limit = purge.limit as i64;
        self.immediate(|tx| {
            let history = tx.execute(
                "DELETE FROM wx_login WHERE id IN \
                 (SELECT id FROM wx_login WHERE at < ? LIMIT ?)",
                params![purge.history_before, limit],
            )?;
            let expired: Vec<String> = tx
                .prepare("SELECT id FROM wx_session WHERE expires_at < ? LIMIT ?")?
                .query_map(params![purge.sessions_before, limit], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &expired {
                tx.execute("DELETE FROM wx_refresh_token WHERE session_id = ?", [id])?;
                tx.execute("DELETE FROM wx_session WHERE id = ?", [id])?;
            }
            let successors = tx.execute(
                "UPDATE wx_refresh_token SET successor_access = NULL WHERE hash IN \
                 (SELECT hash FROM wx_refresh_token WHERE rotated_at < ? \
                  AND successor_access IS NOT NULL LIMIT ?)",
                params![purge.successors_before, limit],
            )?;
            Ok(Purged {
                history,
                sessions: expired.len(),
                successors,
            })
        })
    }

    fn stats(&self, now: i64) -> Result<Stats, StoreError> {
        let conn = self.conn()?;
        let count = |sql: &str, bound: Option<i64>| -> Result<u64, StoreError> {
            let n: i64 = match bound {
                Some(bound) => conn.query_row(sql, [bound], |row| row.get(0)),
                None => conn.query_row(sql, [], |row| row.get(0)),
            }
            .map_err(classify)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Stats {
            users: count("SELECT COUNT(*) FROM wxuser", None)?,
            disabled_users: count(
                "SELECT COUNT(*) FROM wxuser WHERE status = 'disabled'",
                None,
            )?,
            deletions_pending: count(
                "SELECT COUNT(*) FROM wxuser WHERE erase_at IS NOT NULL",
                None,
            )?,
            active_sessions: count(
                "SELECT COUNT(*) FROM wx_session WHERE revoked_at IS NULL AND expires_at > ?",
                Some(now),
            )?,
            logins_last_hour: count(
                "SELECT COUNT(*) FROM wx_login WHERE kind = 'login' AND at > ?",
                Some(now - 3600),
            )?,
            logins_last_day: count(
                "SELECT COUNT(*) FROM wx_login WHERE kind = 'login' AND at > ?",
                Some(now - 86_400),
            )?,
        })
    }

    fn list_sessions(&self, uid: &str, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        self.conn()?
            .prepare_cached(LIST_SESSIONS)
            .and_then(|mut stmt| {
                stmt.query_map(params![uid, now], |row| {
                    Ok(SessionInfo {
                        id: row.get(0)?,
                        created_at: row.get(1)?,
                        last_used_at: row.get(2)?,
                        expires_at: row.get(3)?,
                        user_agent: row.get(4)?,
                        ip: row.get(5)?,
                    })
                })?
                .collect()
            })
            .map_err(classify)
    }

    fn find_user(&self, openid: &str) -> Result<Option<User>, StoreError> {
        self.conn()?
            .prepare_cached(FIND_USER)
            .and_then(|mut stmt| {
                stmt.query_row([openid], |row| {
                    Ok(User {
                        openid: row.get(0)?,
                        unionid: row.get(1)?,
                        profile: Profile {
                            nick_name: row.get(2)?,
                            avatar_url: row.get(3)?,
                            gender: row.get(4)?,
                        },
                        phone: phone_from_columns(row.get(5)?, row.get(6)?, row.get(7)?),
                    })
                })
                .optional()
            })
            .map_err(classify)
    }

    fn claim_code(&self, hash: &str, now: i64, claim_until: i64) -> Result<CodeClaim, StoreError> {
        self.write(|conn| {
            for _ in 0..3 {
                if conn
                    .prepare_cached(CLAIM_CODE)?
                    .execute(params![hash, now, claim_until])?
                    == 1
                {
                    return Ok(CodeClaim::Claimed);
                }
                let found = conn
                    .prepare_cached(FIND_CODE)?
                    .query_row([hash], |row| {
                        Ok((
                            row.get::<_, Option<String>>(0)?,
                            row.get::<_, Option<String>>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })
                    .optional()?;
                match found {
                    Some((_, _, expires_at)) if expires_at < now => {
                        conn.prepare_cached(EXPIRE_CODE)?
                            .execute(params![hash, now])?;
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
        self.write(|conn| {
            conn.prepare_cached(FINISH_CODE)?.execute(params![
                openid,
                unionid,
                remember_until,
                hash
            ])
        })
        .map(|_| ())
    }

    fn release_code(&self, hash: &str) -> Result<(), StoreError> {
        self.write(|conn| conn.prepare_cached(RELEASE_CODE)?.execute([hash]))
            .map(|_| ())
    }

    fn purge_codes(&self, now: i64) -> Result<u64, StoreError> {
        self.write(|conn| conn.prepare_cached(PURGE_CODES)?.execute([now]))
            .map(|rows| rows as u64)
    }

    fn find_session_key(&self, openid: &str) -> Result<Option<Secret>, StoreError> {
        self.conn()?
            .prepare_cached(FIND_SESSION_KEY)
            .and_then(|mut stmt| {
                stmt.query_row([openid], |row| row.get::<_, Option<String>>(0))
                    .optional()
            })
            .map(|key| key.flatten().map(Secret::new))
            .map_err(classify)
    }

    fn set_phone(&self, openid: &str, phone: &PhoneNumber) -> Result<bool, StoreError> {
        self.write(|conn| {
            conn.prepare_cached(SET_PHONE)?.execute(params![
                phone.phone_number,
                phone.pure_phone_number,
                phone.country_code,
                openid,
            ])
        })
        .map(|rows| rows > 0)
    }

    fn update_profile(&self, openid: &str, profile: &Profile) -> Result<bool, StoreError> {
        self.write(|conn| {
            conn.prepare_cached(UPDATE_PROFILE)?.execute(params![
                profile.nick_name,
                profile.avatar_url,
                profile.gender,
                openid,
            ])
        })
        .map(|rows| rows > 0)
    }

    fn find_avatar(&self, hash: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.conn()?
            .prepare_cached(FIND_AVATAR)
            .and_then(|mut stmt| {
                stmt.query_row([hash], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(classify)
    }

    fn find_avatar_type(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.conn()?
            .prepare_cached(FIND_AVATAR_TYPE)
            .and_then(|mut stmt| stmt.query_row([hash], |row| row.get(0)).optional())
            .map_err(classify)
    }

    fn claim_events(&self, claim: &Claim<'_>) -> Result<Vec<OutboxDelivery>, StoreError> {
        // One write transaction: nothing changes between choosing the events and leasing them.
        self.immediate(|tx| {
            let seqs: Vec<i64> = tx
                .prepare_cached(CLAIMABLE_EVENTS)?
                .query_map(
                    params![
                        claim.now,
                        claim.max_attempts,
                        claim.now,
                        claim.max_attempts,
                        claim.limit as i64
                    ],
                    |row| row.get(0),
                )?
                .collect::<Result<_, _>>()?;
            if seqs.is_empty() {
                return Ok(Vec::new());
            }
            let list = placeholders(seqs.len());
            let mut lease = vec![
                rusqlite::types::Value::from(claim.node.to_string()),
                claim.lease_until.into(),
            ];
            lease.extend(seqs.iter().map(|&seq| rusqlite::types::Value::from(seq)));
            tx.execute(
                &format!(
                    "UPDATE wx_outbox SET locked_by = ?, locked_until = ? WHERE seq IN {list}"
                ),
                rusqlite::params_from_iter(&lease),
            )?;
            tx.prepare(&format!(
                "SELECT seq, event_id, uid, type, body, attempts FROM wx_outbox \
                 WHERE seq IN {list} ORDER BY seq"
            ))?
            .query_map(rusqlite::params_from_iter(&seqs), |row| {
                Ok(OutboxDelivery {
                    seq: row.get(0)?,
                    event_id: row.get(1)?,
                    uid: row.get(2)?,
                    kind: row.get(3)?,
                    body: row.get(4)?,
                    attempts: row.get(5)?,
                })
            })?
            .collect()
        })
    }

    fn settle_event(&self, seq: i64, node: &str, settle: Settle<'_>) -> Result<bool, StoreError> {
        let changed = self.write(|conn| match settle {
            Settle::Delivered { at } => conn.execute(SETTLE_DELIVERED, params![at, seq, node]),
            Settle::Failed {
                next_attempt_at,
                error,
            } => conn.execute(SETTLE_FAILED, params![next_attempt_at, error, seq, node]),
            Settle::Released => conn.execute(SETTLE_RELEASED, params![seq, node]),
        })?;
        Ok(changed == 1)
    }

    fn outbox_counts(&self, max_attempts: u32) -> Result<OutboxCounts, StoreError> {
        self.conn()?
            .query_row(OUTBOX_COUNTS, params![max_attempts, max_attempts], |row| {
                Ok(OutboxCounts {
                    pending: row.get::<_, i64>(0)? as u64,
                    failed: row.get::<_, i64>(1)? as u64,
                })
            })
            .map_err(classify)
    }

    fn purge_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        self.write(|conn| {
            conn.execute(
                "DELETE FROM wx_outbox WHERE seq IN \
                 (SELECT seq FROM wx_outbox WHERE delivered_at < ? LIMIT ?)",
                params![before, limit as i64],
            )
        })
    }

    fn pool_usage(&self) -> (usize, usize) {
        let pool = self.lock_pool();
        (
            pool.open - pool.idle.len(),
            self.options.max_connections.max(1),
        )
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.conn()?
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(classify)
    }
}

/// The database holds session keys and phone numbers, so only the service's own user may read
/// it, whatever the umask. The file is created 0600 before SQLite opens it (SQLite gives its
/// `-wal` and `-shm` files the database's mode), and files an earlier run left with a wider
/// mode are brought down to 0600; one that cannot be changed is logged, not fatal.
fn restrict_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", path.display())))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::warn!("cannot make {} private (mode 0600): {e}", file.display())
            }
            _ => {}
        }
    }
    Ok(())
}

/// A busy or locked database, or a file we cannot open, is "unavailable" (503, retry); anything
/// else is a query failure.
/// How long a start told "database is locked" pauses before it tries again.
const MIGRATION_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Whether `e` is SQLite's `SQLITE_BUSY` ("database is locked"), as [`classify`] words it.
fn is_busy(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(why) if why.contains("database is locked"))
}

fn classify(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                DatabaseBusy | DatabaseLocked | CannotOpen | DiskFull | ReadOnly | SystemIoFailure
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Query(e.to_string()),
    }
}

/// Applies the migrations in one exclusive transaction: processes opening the file together wait
/// for it (up to the busy timeout), then find the migrations recorded and apply nothing; a
/// failure rolls everything back, DDL included.
fn apply_migrations(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN EXCLUSIVE").map_err(classify)?;
    match migrate::migrate(&mut SqliteSession(conn), &migrate::SQLITE) {
        Ok(_) => conn.execute_batch("COMMIT").map_err(classify),
        Err(e) => {
            // Best effort: SQLite may have rolled back already, and the error to report is `e`.
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

struct SqliteSession<'a>(&'a Connection);

impl Session for SqliteSession<'_> {
    fn execute(&mut self, statement: &str) -> Result<(), StoreError> {
        self.0.execute_batch(statement).map_err(classify)
    }

    fn add_column(&mut self, statement: &str) -> Result<(), StoreError> {
        match self.0.execute_batch(statement) {
            Err(e) if is_duplicate_column(&e.to_string()) => Ok(()),
            other => other.map_err(classify),
        }
    }

    fn table_exists(&mut self, table: &str) -> Result<bool, StoreError> {
        self.0
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(classify)
    }

    fn applied(&mut self) -> Result<Vec<Applied>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .map_err(classify)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(Applied {
                    version: row.get(0)?,
                    name: row.get(1)?,
                    checksum: row.get(2)?,
                })
            })
            .map_err(classify)?;
        rows.collect::<Result<_, _>>().map_err(classify)
    }

    fn record(&mut self, migration: &Migration, checksum: &str) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?1, ?2, ?3)",
                params![migration.version, migration.name, checksum],
            )
            .map(|_| ())
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrate::Plan;

    /// Today's migrations plus one a later release will add, to test what follows adoption.
    const WITH_A_LATER_MIGRATION: Plan = Plan {
        migrations: &[
            migrate::SQLITE.migrations[0],
            migrate::SQLITE.migrations[1],
            Migration {
                version: 3,
                name: "0003_later.sql",
                sql: "CREATE TABLE later (id INTEGER NOT NULL PRIMARY KEY);",
            },
        ],
        ..migrate::SQLITE
    };

    #[test]
    fn an_adopted_database_then_gets_the_later_migrations() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE wxuser (user_id TEXT NOT NULL PRIMARY KEY, unionid TEXT, \
             nickName TEXT, avatar TEXT, gender INTEGER, created_at TEXT NOT NULL DEFAULT '', \
             updated_at TEXT NOT NULL DEFAULT ''); \
             INSERT INTO wxuser (user_id, nickName) VALUES ('o-old', 'Old');",
        )
        .unwrap();

        let done = migrate::migrate(&mut SqliteSession(&conn), &WITH_A_LATER_MIGRATION).unwrap();

        assert_eq!(done, vec![1, 2, 3], "adopted 1 and 2, applied 3");
        let versions: Vec<u32> = SqliteSession(&conn)
            .applied()
            .unwrap()
            .iter()
            .map(|a| a.version)
            .collect();
        assert_eq!(versions, vec![1, 2, 3]);
        let (nick, key): (String, Option<String>) = conn
            .query_row(
                "SELECT nickName, session_key FROM wxuser WHERE user_id = 'o-old'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (nick.as_str(), key),
            ("Old", None),
            "row kept, column added"
        );
        conn.execute_batch("INSERT INTO later (id) VALUES (1); INSERT INTO avatar (hash, content_type, bytes) VALUES ('h', 't', x'00');")
            .expect("tables of migrations 2 and 3 exist");
        assert_eq!(
            migrate::migrate(&mut SqliteSession(&conn), &WITH_A_LATER_MIGRATION).unwrap(),
            Vec::<u32>::new(),
            "a second run applies nothing"
        );
    }
}
