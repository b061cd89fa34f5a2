//! The account's end, on both backends: deletion (at once, or after a grace period that a login
//! can see and cancel), erasure that leaves nothing of the user in any table, two nodes racing
//! to erase one account, disabling, login history and its purge, the outbox events, and the
//! `wxlogin admin` command run as the real binary.

use crate::helpers::{capture_logs, jwt_payload, race, start_mock_wechat, Answer, AppBuilder};
use crate::helpers::{Secrets, TestApp, TestDb};
use crate::on_both_backends;
use mock_wechat::MockWechat;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wxlogin::store::{self, DatabaseUrl, StoreOptions};

const JWT_SECRET: &str = "accounts-jwt-secret-0123456789abcdef";
const WEBHOOK: &[(&str, &str)] = &[
    ("WXLOGIN_WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
    ("WXLOGIN_WEBHOOK_SECRET", "whsec-0123456789abcdef"),
];

fn node(mock: &MockWechat, db: &TestDb, vars: &[(&str, &str)]) -> TestApp {
    capture_logs();
    let secrets = Secrets {
        appid: mock_wechat::DEFAULT_APPID.into(),
        wechat_secret: mock_wechat::DEFAULT_SECRET.into(),
        jwt_secret: JWT_SECRET.into(),
    };
    vars.iter()
        .fold(
            AppBuilder::new(&mock.base_url(), db, secrets),
            |builder, (name, value)| builder.var(name, value),
        )
        .start()
}

fn login(app: &TestApp, mock: &MockWechat, user: &str) -> Answer {
    app.post_form("/api/wxuser", &[("code", &mock.new_code(user))])
}

fn bearer(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "login failed: {}", answer.text);
    format!("Bearer {}", answer.body["access_token"].as_str().unwrap())
}

fn delete_account(app: &TestApp, token: &str, code: &str) -> Answer {
    app.post_json_with_token("/api/me/deletion", &json!({ "code": code }), token)
}

/// Asks until `done` holds or `limit` passes; whether it held.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    done()
}

/// One column of every row `sql` returns, as text, read around the store.
pub(crate) fn column(db: &TestDb, sql: &str) -> Vec<String> {
    match &db.url {
        DatabaseUrl::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt
                .query_map([], |row| row.get::<_, rusqlite::types::Value>(0))
                .unwrap();
            rows.map(|v| match v.unwrap() {
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Integer(n) => n.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
        }
        DatabaseUrl::Mysql(url) => {
            let mut conn = mysql::Conn::new(mysql::Opts::from_url(url.expose()).unwrap()).unwrap();
            mysql::prelude::Queryable::query_map(&mut conn, sql, |v: Option<String>| {
                v.unwrap_or_default()
            })
            .unwrap()
        }
    }
}

/// Every `(table, column)` of the schema.
fn schema_columns(db: &TestDb) -> Vec<(String, String)> {
    match &db.url {
        DatabaseUrl::Sqlite(_) => column(
            db,
            "SELECT m.name || '.' || p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        ),
        DatabaseUrl::Mysql(_) => column(
            db,
            "SELECT CONCAT(table_name, '.', column_name) FROM information_schema.columns \
             WHERE table_schema = DATABASE()",
        ),
    }
    .into_iter()
    .map(|c| {
        let (table, column) = c.split_once('.').unwrap();
        (table.to_string(), column.to_string())
    })
    .collect()
}

/// The `table.column`s in which any of `needles` still appears.
fn traces(db: &TestDb, needles: &[&str]) -> Vec<String> {
    let cast = if db.backend == "sqlite" {
        "TEXT"
    } else {
        "CHAR"
    };
    let mut found = Vec::new();
    for (table, col) in schema_columns(db) {
        for needle in needles {
            let sql = format!(
                "SELECT COUNT(*) FROM {table} WHERE CAST({col} AS {cast}) LIKE '%{needle}%'"
            );
            if column(db, &sql)[0] != "0" {
                found.push(format!("{table}.{col} holds {needle}"));
            }
        }
    }
    found
}

/// The outbox's `(type, body)` rows for `uid`, in order.
fn events(db: &TestDb, uid: &str) -> Vec<(String, Value)> {
    let types = column(
        db,
        &format!("SELECT type FROM wx_outbox WHERE uid = '{uid}' ORDER BY seq"),
    );
    let bodies = column(
        db,
        &format!("SELECT body FROM wx_outbox WHERE uid = '{uid}' ORDER BY seq"),
    );
    types
        .into_iter()
        .zip(bodies.iter().map(|b| serde_json::from_str(b).unwrap()))
        .collect()
}

fn deletion_without_grace_erases_every_trace_and_the_next_login_is_a_new_user(db: &TestDb) {
    let mock = start_mock_wechat(true);
    let app = node(&mock, db, &[]);
    let first = login(&app, &mock, "dora");
    let token = bearer(&first);
    let openid = mock.openid_for("dora");
    let uid = db.uid_of(&openid);
    let refreshed = app.post_json(
        "/api/token/refresh",
        &json!({ "refresh_token": first.body["refresh_token"] }),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let updated = app.send_json(
        "PUT",
        "/api/me",
        &json!({ "nickName": "Dora" }),
        Some(&token),
    );
    assert_eq!(updated.status, 200, "{}", updated.text);
    bearer(&login(&app, &mock, "dora"));
    assert!(
        !traces(db, &[&uid, &openid]).is_empty(),
        "the probe finds the live user"
    );

    let answer = delete_account(&app, &token, &mock.new_code("dora"));

    assert_eq!(answer.status, 200, "{}: {}", db.backend, answer.text);
    assert_eq!(
        answer.body,
        json!({"status": 200, "deletion": {"state": "erased"}})
    );
    let unionid = mock.unionid_for("dora");
    assert_eq!(
        traces(db, &[&uid, &openid, &unionid, "Dora"]),
        Vec::<String>::new(),
        "{}: nothing of the user is left in any table",
        db.backend
    );
    assert_eq!(
        app.get("/api/me", Some(&token)).status,
        401,
        "the old token is refused"
    );
    let again = bearer(&login(&app, &mock, "dora"));
    let sub = jwt_payload(&again)["sub"].as_str().unwrap().to_string();
    assert_ne!(sub, uid, "{}: the uid is never reused", db.backend);
}

fn deletion_needs_a_fresh_code_of_the_same_user(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &[]);
    let token = bearer(&login(&app, &mock, "eve"));
    let used = mock.new_code("eve");
    bearer(&login_with(&app, &used));
    let cases: &[(Value, u16, &str)] = &[
        (json!({}), 400, "no code"),
        (json!({ "code": used }), 401, "a used code"),
        (json!({ "code": "not-a-code" }), 401, "an invalid code"),
        (
            json!({ "code": mock.new_code("mallory") }),
            403,
            "another user's code",
        ),
    ];
    for (body, status, what) in cases {
        let answer = app.post_json_with_token("/api/me/deletion", body, &token);
        assert_eq!(
            answer.status, *status,
            "{}: {what}: {}",
            db.backend, answer.text
        );
    }
    assert_eq!(
        app.get("/api/me", Some(&token)).status,
        200,
        "nothing was deleted"
    );
    let no_token = app.post_json("/api/me/deletion", &json!({ "code": mock.new_code("eve") }));
    assert_eq!(no_token.status, 401, "the access token is required too");
}

fn login_with(app: &TestApp, code: &str) -> Answer {
    app.post_form("/api/wxuser", &[("code", code)])
}

fn a_grace_period_schedules_and_a_login_during_it_can_see_and_cancel_it(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &[("WXLOGIN_DELETION_GRACE", "7d")]);
    let token = bearer(&login(&app, &mock, "finn"));

    let answer = delete_account(&app, &token, &mock.new_code("finn"));

    assert_eq!(answer.status, 202, "{}: {}", db.backend, answer.text);
    assert_eq!(answer.body["deletion"]["state"], "scheduled");
    let erase_at = answer.body["deletion"]["erase_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        erase_at.ends_with('Z') && erase_at.len() == 20,
        "{erase_at}"
    );
    assert_eq!(
        app.get("/api/me", Some(&token)).status,
        401,
        "every session is revoked"
    );
    let during = login(&app, &mock, "finn");
    let fresh = bearer(&during);
    assert_eq!(
        during.body["deletion"],
        json!({"state": "scheduled", "erase_at": erase_at}),
        "{}: the login answer tells the client",
        db.backend
    );
    let shown = app.get("/api/me/deletion", Some(&fresh));
    assert_eq!(
        (shown.status, &shown.body["deletion"]["state"]),
        (202, &json!("scheduled"))
    );
    let cancelled = app.send("DELETE", "/api/me/deletion", &[], Some(&fresh), b"");
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["deletion"], json!({"state": "none"}));
    let shown = app.get("/api/me/deletion", Some(&fresh));
    assert_eq!(
        shown.body,
        json!({"status": 200, "deletion": {"state": "none"}})
    );
    let after = login(&app, &mock, "finn");
    assert!(after.body.get("deletion").is_none(), "{}", after.text);
}

fn two_nodes_sweeping_erase_a_due_account_once(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let mut vars = WEBHOOK.to_vec();
    vars.extend([
        ("WXLOGIN_DELETION_GRACE", "1s"),
        ("WXLOGIN_SWEEP_INTERVAL", "100ms"),
    ]);
    let one = node(&mock, db, &vars);
    let two = node(&mock, db, &vars);
    let openid = mock.openid_for("gus");
    let token = bearer(&login(&one, &mock, "gus"));
    let uid = db.uid_of(&openid);

    let answer = delete_account(&two, &token, &mock.new_code("gus"));
    assert_eq!(answer.status, 202, "{}", answer.text);

    assert!(
        eventually(Duration::from_secs(10), || db.count_users() == 0),
        "{}: a sweep erases the due account",
        db.backend
    );
    let deleted: Vec<_> = events(db, &uid)
        .into_iter()
        .filter(|(kind, _)| kind == "user.deleted")
        .collect();
    assert_eq!(
        deleted.len(),
        1,
        "{}: one user.deleted: {deleted:?}",
        db.backend
    );
    assert_eq!(
        deleted[0].1["data"],
        json!({"user_id": uid, "openid": openid})
    );
}

fn erasers_racing_on_one_account_erase_it_once(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &[]);
    bearer(&login(&app, &mock, "hal"));
    let uid = db.uid_of(&mock.openid_for("hal"));
    let options = StoreOptions {
        events: true,
        ..StoreOptions::default()
    };
    let stores: Vec<_> = (0..4)
        .map(|_| store::open(&db.url, options).expect("open"))
        .collect();

    let erased = race(4, |i| stores[i].erase_user(&uid, 1_800_000_000));

    let winners = erased.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(winners, 1, "{}: {erased:?}", db.backend);
    assert!(
        erased.iter().all(Result::is_ok),
        "{}: {erased:?}",
        db.backend
    );
    let kinds: Vec<String> = events(db, &uid).into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(kinds, vec!["user.deleted"], "{}", db.backend);
}

fn events_are_written_with_each_change_only_when_a_webhook_is_set(db: &TestDb) {
    let mock = start_mock_wechat(true);
    let app = node(&mock, db, WEBHOOK);
    let first = login(&app, &mock, "ivy");
    let token = bearer(&first);
    let uid = db.uid_of(&mock.openid_for("ivy"));
    bearer(&login(&app, &mock, "ivy"));
    assert_eq!(
        app.post_json_with_token("/api/logout", &json!({}), &token)
            .status,
        200
    );

    let events = events(db, &uid);

    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["user.created", "session.revoked"],
        "{}",
        db.backend
    );
    let created = &events[0].1;
    assert_eq!(created["type"], "user.created");
    assert_eq!(created["id"].as_str().unwrap().len(), 32);
    assert_eq!(
        created["data"],
        json!({"user_id": uid, "openid": mock.openid_for("ivy"), "unionid": mock.unionid_for("ivy")})
    );
    assert_eq!(events[1].1["data"]["reason"], "logout");
    assert_eq!(
        events[1].1["data"]["session_id"],
        jwt_payload(&token)["sid"],
        "{}",
        db.backend
    );

    let quiet = TestDb::sqlite();
    let app = node(&mock, &quiet, &[]);
    bearer(&login(&app, &mock, "ivy"));
    assert_eq!(column(&quiet, "SELECT COUNT(*) FROM wx_outbox"), vec!["0"]);
}

fn history_shows_the_last_20_and_is_purged_after_its_retention(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &[]);
    let mut token = String::new();
    for _ in 0..21 {
        token = bearer(&login(&app, &mock, "jay"));
    }

    let answer = app.get("/api/me/logins", Some(&token));

    assert_eq!(answer.status, 200, "{}", answer.text);
    let logins = answer.body["logins"].as_array().unwrap();
    assert_eq!(logins.len(), 20, "{}", db.backend);
    assert_eq!(logins[0]["current"], true, "newest first: {}", answer.text);
    assert_eq!(logins[0]["kind"], "login");
    assert_eq!(logins[0]["session_id"], jwt_payload(&token)["sid"]);
    assert!(
        logins[0]["ip"].as_str().unwrap().starts_with("127.0.0.1"),
        "{}",
        answer.text
    );

    let short = node(
        &mock,
        db,
        &[
            ("WXLOGIN_LOGIN_HISTORY", "1s"),
            ("WXLOGIN_SWEEP_INTERVAL", "100ms"),
        ],
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            column(db, "SELECT COUNT(*) FROM wx_login") == vec!["0"]
        }),
        "{}: history older than WXLOGIN_LOGIN_HISTORY is purged",
        db.backend
    );
    drop(short);
}

/// `wxlogin admin <args>` with the test's configuration: exit code, stdout.
fn admin(mock: &MockWechat, db: &TestDb, args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .env_clear()
        .env("WECHAT_API_BASE", mock.base_url())
        .env("WECHAT_APPID", mock_wechat::DEFAULT_APPID)
        .env("WECHAT_SECRET", mock_wechat::DEFAULT_SECRET)
        .env("JWT_SECRET", JWT_SECRET)
        .env("DATABASE_URL", db.url_text())
        .env("WXLOGIN_WEBHOOK_URL", WEBHOOK[0].1)
        .env("WXLOGIN_WEBHOOK_SECRET", WEBHOOK[1].1)
        // As the test nodes run (moderation on needs WeChat's push token).
        .env("WXLOGIN_MODERATION", "off")
        .arg("admin")
        .args(args)
        .output()
        .expect("run wxlogin admin");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn a_disabled_user_is_refused_everywhere_until_enabled(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &[("WXLOGIN_REVOCATION_DELAY", "0s")]);
    let first = login(&app, &mock, "kim");
    let token = bearer(&first);
    let openid = mock.openid_for("kim");
    let uid = db.uid_of(&openid);

    let (code, out) = admin(&mock, db, &["user", "disable", &openid, "--json"]);

    assert_eq!(code, 0, "{}: {out}", db.backend);
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["action"], "disabled");
    assert_eq!(out["sessions_revoked"], 1);
    let disabled =
        json!({"status": 403, "message": "this account is disabled", "error": "account_disabled"});
    let refused = login(&app, &mock, "kim");
    assert_eq!(
        (refused.status, &refused.body),
        (403, &disabled),
        "{}: login",
        db.backend
    );
    let refresh = app.post_json(
        "/api/token/refresh",
        &json!({ "refresh_token": first.body["refresh_token"] }),
    );
    assert_eq!((refresh.status, &refresh.body), (403, &disabled), "refresh");
    assert_eq!(app.get("/auth/verify", Some(&token)).status, 403, "verify");

    assert_eq!(admin(&mock, db, &["user", "enable", &uid]).0, 0);

    bearer(&login(&app, &mock, "kim"));
    let old = app.post_json(
        "/api/token/refresh",
        &json!({ "refresh_token": first.body["refresh_token"] }),
    );
    assert_eq!(
        old.status, 401,
        "{}: old sessions stay ended: {}",
        db.backend, old.text
    );
    let kinds: Vec<String> = events(db, &uid).into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(
        kinds,
        vec!["user.disabled", "session.revoked", "user.enabled"],
        "{}: the admin command writes events too (the server has none configured)",
        db.backend
    );
}

fn the_admin_command_shows_counts_deletes_and_says_what_happened(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = node(&mock, db, &[]);
    let answer = login(&app, &mock, "lou");
    bearer(&answer);
    let openid = mock.openid_for("lou");
    let uid = db.uid_of(&openid);

    let (code, shown) = admin(&mock, db, &["--json", "user", "show", &openid]);
    assert_eq!(code, 0, "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["user_id"], uid.as_str());
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(shown["logins"][0]["kind"], "login");
    let (code, text) = admin(&mock, db, &["user", "show", &uid]);
    assert!(
        code == 0 && text.contains(&openid) && text.contains("sessions (1 live)"),
        "{text}"
    );
    let refresh_token = answer.body["refresh_token"].as_str().unwrap();
    assert!(
        !text.contains(refresh_token) && !text.contains("session_key"),
        "{text}"
    );

    let (code, stats) = admin(&mock, db, &["stats", "--json"]);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        (
            &stats["users"],
            &stats["active_sessions"],
            &stats["logins_last_hour"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{}: {stats}",
        db.backend
    );

    let cases: &[(&[&str], i32, &str)] = &[
        (&["user", "show", "nobody"], 1, "an unknown user"),
        (&["user", "disable", "nobody"], 1, "an unknown user"),
        (&["user", "frobnicate", "x"], 2, "an unknown command"),
        (&[], 2, "no command"),
        (&["stats", "--verbose"], 2, "an unknown option"),
        (&["sessions", "revoke", &uid], 0, "revoking"),
        (&["user", "delete", &uid], 0, "erasing"),
        (&["user", "delete", &uid], 1, "erasing again: gone"),
    ];
    for (args, expected, what) in cases {
        let (code, out) = admin(&mock, db, args);
        assert_eq!(code, *expected, "{}: {what} ({args:?}): {out}", db.backend);
    }
    assert_eq!(db.count_users(), 0);
    let left = traces(db, &[&uid, &openid]);
    assert!(
        !left.is_empty() && left.iter().all(|t| t.starts_with("wx_outbox.")),
        "{}: only the events about the user remain, for delivery: {left:?}",
        db.backend
    );
}

on_both_backends!(
    deletion_without_grace_erases_every_trace_and_the_next_login_is_a_new_user,
    deletion_needs_a_fresh_code_of_the_same_user,
    a_grace_period_schedules_and_a_login_during_it_can_see_and_cancel_it,
    two_nodes_sweeping_erase_a_due_account_once,
    erasers_racing_on_one_account_erase_it_once,
    events_are_written_with_each_change_only_when_a_webhook_is_set,
    history_shows_the_last_20_and_is_purged_after_its_retention,
    a_disabled_user_is_refused_everywhere_until_enabled,
    the_admin_command_shows_counts_deletes_and_says_what_happened,
);
