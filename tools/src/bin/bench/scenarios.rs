//! What each row sends: the login scenarios, the ceilings (mock-wechat alone, the store alone,
//! and MariaDB without the store layer's pool settings), and the set-up that logs the returning
//! users in once to get their tokens.
//!
//! The load generator makes its own codes instead of asking mock-wechat for them (`/mock/code`),
//! so the benchmark measures logins, not code minting: mock-wechat accepts any `<user>.<nonce>`
//! once. Every row has its own number, and codes embed it, so no code is ever sent twice and no
//! "first" login ever meets an existing user.

use std::net::SocketAddr;

use wxlogin::secret::Secret;
use wxlogin::store::{LoginRecord, UserStore};

use wxlogin_tools::http::{write_form_post, write_get, HttpClient};

use crate::load::Worker;

/// The mock's public default credentials, which the server is started with.
pub const APPID: &str = "wx1234567890abcdef";
pub const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// mock-wechat's jscode2session driven directly: the upstream ceiling.
    MockAlone,
    /// New openids through the store layer: the database ceiling for first logins.
    StoreInsert,
    /// Existing openids through the store layer: the database ceiling for returning logins.
    StoreUpdate,
    /// The store's upsert through the mysql crate directly, prepared once per connection and
    /// without the pool's per-checkout ping and reset: what MariaDB itself can do, to show what
    /// the store layer's own overhead costs. Not used as a ceiling for the targets.
    DbRaw,
    /// `POST /api/wxuser`, a new user each time.
    First,
    /// `POST /api/wxuser` for users from a fixed set, a new code each time.
    Returning,
    /// `GET /api/me` with valid tokens.
    Me,
    /// 20% first, 30% returning, 50% `/api/me`.
    Mix,
    /// First logins while mock-wechat takes 100 ms per answer, as WeChat does.
    FirstSlowWechat,
    /// `GET /auth/verify` with valid tokens: the forward-auth check a proxy makes before every
    /// app request, so it should cost little more than [`Kind::Healthz`].
    Verify,
    /// `GET /healthz`: the server's HTTP path with no work behind it, the yardstick for
    /// [`Kind::Verify`].
    Healthz,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::MockAlone => "mock-wechat alone (jscode2session)",
            Kind::StoreInsert => "store alone, new users (upsert)",
            Kind::StoreUpdate => "store alone, existing users (upsert)",
            Kind::DbRaw => "MariaDB alone, new users (no reset/ping)",
            Kind::First => "first logins",
            Kind::Returning => "returning logins",
            Kind::Me => "GET /api/me",
            Kind::Mix => "mix 20/30/50",
            Kind::FirstSlowWechat => "first logins, WeChat +100 ms",
            Kind::Verify => "GET /auth/verify",
            Kind::Healthz => "GET /healthz",
        }
    }
}

/// Appends the request for `seq` of row `row` of a login-path scenario.
pub fn login_path_request(kind: Kind, row: usize, seq: u64, tokens: &[String], out: &mut Vec<u8>) {
    let kind = match kind {
        Kind::Mix => match seq % 10 {
            0 | 1 => Kind::First,
            2..=4 => Kind::Returning,
            _ => Kind::Me,
        },
        other => other,
    };
    match kind {
        Kind::First | Kind::FirstSlowWechat => {
            write_form_post(out, "/api/wxuser", &format!("code=f{row}_{seq}.1"));
        }
        Kind::Returning => {
            let user = seq % tokens.len() as u64;
            write_form_post(out, "/api/wxuser", &format!("code=r{user}.{row}-{seq}"));
        }
        Kind::Me => {
            let token = &tokens[(seq % tokens.len() as u64) as usize];
            write_get(out, "/api/me", Some(token));
        }
        Kind::Verify => {
            let token = &tokens[(seq % tokens.len() as u64) as usize];
            write_get(out, "/auth/verify", Some(token));
        }
        Kind::Healthz => write_get(out, "/healthz", None),
        Kind::MockAlone => {
            let path = format!(
                "/sns/jscode2session?appid={APPID}&secret={APP_SECRET}&js_code=m{row}_{seq}.1&grant_type=authorization_code"
            );
            write_get(out, &path, None);
        }
        Kind::Mix | Kind::StoreInsert | Kind::StoreUpdate | Kind::DbRaw => {
            unreachable!("not an HTTP request")
        }
    }
}

/// Logs users `r0`…`r{users-1}` in once over `conns` connections and returns their tokens
/// (`Bearer …`), in order: the returning users and the `/api/me` callers.
pub fn log_in_returning_users(
    server: SocketAddr,
    users: usize,
    conns: usize,
) -> Result<Vec<String>, String> {
    let conns = conns.clamp(1, users.max(1));
    let mut tokens = vec![String::new(); users];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..conns)
            .map(|t| {
                scope.spawn(move || -> Result<Vec<(usize, String)>, String> {
                    let mut client = HttpClient::new(server);
                    let mut request = Vec::new();
                    let mut mine = Vec::new();
                    for user in (t..users).step_by(conns) {
                        request.clear();
                        write_form_post(
                            &mut request,
                            "/api/wxuser",
                            &format!("code=r{user}.setup"),
                        );
                        let status = client
                            .send(&request)
                            .map_err(|e| format!("logging r{user} in: {e}"))?;
                        let body = String::from_utf8_lossy(client.body());
                        let token = token_of(&body).filter(|_| status == 200).ok_or_else(|| {
                            format!("logging r{user} in: HTTP {status} without a token: {body}")
                        })?;
                        mine.push((user, token.to_owned()));
                    }
                    Ok(mine)
                })
            })
            .collect();
        for worker in workers {
            for (user, token) in worker.join().expect("set-up thread panicked")? {
                tokens[user] = token;
            }
        }
        Ok(tokens)
    })
}

/// The `"token":"Bearer …"` value of a login answer.
fn token_of(body: &str) -> Option<&str> {
    let start = body.find("\"token\":\"")? + "\"token\":\"".len();
    let len = body[start..].find('"')?;
    Some(&body[start..start + len])
}

/// A session_key of WeChat's shape (24 base64 characters); its value does not matter here.
const SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";

/// Calls `upsert_login` as a login does, without HTTP or WeChat: the database ceiling.
pub struct StoreWorker<'a> {
    store: &'a dyn UserStore,
    session_key: Secret,
    row: usize,
    /// `Some(n)`: cycle through `n` existing openids; `None`: a new openid each call.
    existing: Option<u64>,
}

impl<'a> StoreWorker<'a> {
    pub fn new(store: &'a dyn UserStore, row: usize, existing: Option<u64>) -> Self {
        StoreWorker {
            store,
            session_key: Secret::new(SESSION_KEY),
            row,
            existing,
        }
    }

    /// The openid of call `seq`. Existing ones share one name per index across rows.
    pub fn openid(&self, seq: u64) -> String {
        match self.existing {
            Some(n) => format!("ceil_old_{}", seq % n.max(1)),
            None => format!("ceil_{}_{seq}", self.row),
        }
    }
}

impl Worker for StoreWorker<'_> {
    fn call(&mut self, seq: u64) -> Result<u16, String> {
        let openid = self.openid(seq);
        self.store
            .upsert_login(&LoginRecord {
                openid: &openid,
                uid: &wxlogin::secret::random_hex(16),
                unionid: None,
                profile: None,
                session_key: &self.session_key,
            })
            .map(|_uid| 200)
            .map_err(|e| e.to_string())
    }
}

/// The statement the MySQL store runs for a login, so the raw row measures the same work.
const UPSERT_LOGIN: &str = include_str!("../../../../sql/mysql/upsert_login.sql");

/// A pool like the store's (same size, same session set-up) but without the per-checkout
/// health check (`COM_PING`) and reset (`COM_RESET_CONNECTION`, which also drops the prepared
/// statements and re-runs `SET NAMES`), so each upsert is one `COM_STMT_EXECUTE`.
pub fn raw_mysql_pool(url: &str, size: usize) -> Result<mysql::Pool, String> {
    let opts = mysql::Opts::from_url(url).map_err(|e| format!("{url}: {e}"))?;
    let constraints = mysql::PoolConstraints::new(0, size.max(1)).ok_or("bad pool size")?;
    let builder = mysql::OptsBuilder::from_opts(opts)
        .pool_opts(
            mysql::PoolOpts::default()
                .with_constraints(constraints)
                .with_reset_connection(false)
                .with_check_health(false),
        )
        .init(vec!["SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci"]);
    mysql::Pool::new(builder).map_err(|e| format!("raw MariaDB pool: {e}"))
}

/// Runs the store's upsert for a new openid per call through [`raw_mysql_pool`].
pub struct RawUpsertWorker<'a> {
    pool: &'a mysql::Pool,
    row: usize,
}

impl<'a> RawUpsertWorker<'a> {
    pub fn new(pool: &'a mysql::Pool, row: usize) -> Self {
        RawUpsertWorker { pool, row }
    }
}

impl Worker for RawUpsertWorker<'_> {
    fn call(&mut self, seq: u64) -> Result<u16, String> {
        use mysql::prelude::Queryable;
        let openid = format!("raw_{}_{seq}", self.row);
        let mut conn = self
            .pool
            .try_get_conn(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let result = conn.exec_drop(
            UPSERT_LOGIN,
            (
                openid,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<i64>,
                SESSION_KEY,
                wxlogin::secret::random_hex(16),
            ),
        );
        if let Err(mysql::Error::IoError(_) | mysql::Error::CodecError(_)) = result {
            // Without reset-on-return the pool would take the broken connection back (say
            // after a database restart) and hand it out forever; asking for a reset makes the
            // pool try one when it comes back, fail, and discard it.
            conn.reset_connection(true);
        }
        result.map(|()| 200).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_in_a_login_answer() {
        let body = r#"{"messages":"login succeeded","profile":{"status":"absent"},"status":200,"token":"Bearer a.b.c"}"#;
        assert_eq!(token_of(body), Some("Bearer a.b.c"));
        assert_eq!(token_of(r#"{"status":401}"#), None);
    }

    #[test]
    fn the_mix_is_twenty_thirty_fifty() {
        let tokens = vec!["Bearer t".to_owned()];
        let (mut first, mut returning, mut me) = (0, 0, 0);
        for seq in 0..100 {
            let mut out = Vec::new();
            login_path_request(Kind::Mix, 7, seq, &tokens, &mut out);
            let text = String::from_utf8(out).unwrap();
            if text.contains("code=f7_") {
                first += 1;
            } else if text.contains("code=r0.7-") {
                returning += 1;
            } else if text.starts_with("GET /api/me") {
                me += 1;
            }
        }
        assert_eq!((first, returning, me), (20, 30, 50));
    }
}
