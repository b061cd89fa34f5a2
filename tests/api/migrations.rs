//! Numbered migrations: applied once and recorded, safe when nodes start together, adopting a
//! database of the release before migrations, and refusing databases this binary must not touch.

use crate::helpers::{race, TestDb};
use crate::on_both_backends;
use sha2::{Digest, Sha256};
use std::path::Path;
use wxlogin::secret::Secret;
use wxlogin::store::{self, DatabaseUrl, LoginRecord, StoreOptions};
use wxlogin::user::{PhoneNumber, Profile};

/// Rows of a query, every value as text (`NULL` for null), straight from the database.
fn query(db: &TestDb, sql: &str) -> Vec<Vec<String>> {
    match &db.url {
        DatabaseUrl::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).expect("open SQLite for a raw query");
            let mut stmt = conn.prepare(sql).expect("prepare a raw query");
            let width = stmt.column_count();
            stmt.query_map([], |row| {
                (0..width)
                    .map(|i| {
                        use rusqlite::types::ValueRef::*;
                        Ok(match row.get_ref(i)? {
                            Null => "NULL".to_string(),
                            Integer(n) => n.to_string(),
                            Real(x) => x.to_string(),
                            Text(t) | Blob(t) => String::from_utf8_lossy(t).into_owned(),
                        })
                    })
                    .collect()
            })
            .and_then(|rows| rows.collect())
            .expect("raw SQLite query")
        }
        DatabaseUrl::Mysql(url) => {
            use mysql::prelude::Queryable;
            let mut conn = mysql::Conn::new(mysql::Opts::from_url(url.expose()).unwrap())
                .expect("connect for a raw query");
            let rows: Vec<mysql::Row> = conn.query(sql).expect("raw MySQL query");
            rows.into_iter()
                .map(|row| {
                    row.unwrap()
                        .into_iter()
                        .map(|value| match value {
                            mysql::Value::NULL => "NULL".to_string(),
                            mysql::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                            other => other.as_sql(true),
                        })
                        .collect()
                })
                .collect()
        }
    }
}

/// The `schema_migrations` rows: version, name, checksum.
fn recorded(db: &TestDb) -> Vec<Vec<String>> {
    query(
        db,
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
    )
}

fn backend_dir(db: &TestDb) -> &'static str {
    match db.url {
        DatabaseUrl::Sqlite(_) => "sqlite",
        DatabaseUrl::Mysql(_) => "mysql",
    }
}

/// What `schema_migrations` must hold once every migration is applied: one row per file of
/// `sql/<backend>/migrations/`, with the SHA-256 of the file.
fn every_migration(db: &TestDb) -> Vec<Vec<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sql")
        .join(backend_dir(db))
        .join("migrations");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the migrations directory")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no migrations in {}", dir.display());
    names
        .into_iter()
        .map(|name| {
            let sql = std::fs::read_to_string(dir.join(&name)).unwrap();
            let digest = Sha256::digest(sql.replace("\r\n", "\n").as_bytes());
            let checksum: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let version: u32 = name[..4].parse().expect("a numbered file name");
            vec![version.to_string(), name, checksum]
        })
        .collect()
}

/// Runs a script of `;`-terminated statements (`--` comment lines allowed) around the store.
fn execute_script(db: &TestDb, script: &str) {
    let code: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        db.execute_raw(statement);
    }
}

/// The schema the release before migrations created at start-up, verbatim.
fn todays_release_schema(db: &TestDb) -> &'static str {
    match db.url {
        DatabaseUrl::Sqlite(_) => include_str!("fixtures/sqlite_before_migrations.sql"),
        DatabaseUrl::Mysql(_) => include_str!("fixtures/mysql_before_migrations.sql"),
    }
}

/// The tables' definitions as the database reports them, comparable between two databases.
fn describe_schema(db: &TestDb) -> Vec<Vec<String>> {
    let mut description = Vec::new();
    for table in ["wxuser", "avatar", "wx_session", "wx_refresh_token"] {
        match db.url {
            DatabaseUrl::Sqlite(_) => {
                description.extend(query(db, &format!("PRAGMA table_xinfo({table})")));
                description.extend(query(
                    db,
                    &format!(
                        "SELECT il.name, il.\"unique\", il.origin, ii.name \
                         FROM pragma_index_list('{table}') il, pragma_index_info(il.name) ii \
                         ORDER BY il.name, ii.seqno"
                    ),
                ));
            }
            DatabaseUrl::Mysql(_) => {
                description.extend(query(db, &format!("SHOW CREATE TABLE {table}")));
            }
        }
    }
    description
}

/// Another fresh database on the same backend.
fn another(db: &TestDb) -> TestDb {
    match db.url {
        DatabaseUrl::Sqlite(_) => TestDb::sqlite(),
        DatabaseUrl::Mysql(_) => TestDb::mysql().expect("MariaDB answered a moment ago"),
    }
}

/// The error `open` fails with; panics when it succeeds.
fn open_error(db: &TestDb) -> String {
    match store::open(&db.url, StoreOptions::default()) {
        Ok(_) => panic!("{}: the store opened, but it must refuse", db.backend),
        Err(e) => e.to_string(),
    }
}

fn fresh_database_gets_every_migration_applied_and_recorded(db: &TestDb) {
    let store = db.open();

    assert_eq!(recorded(db), every_migration(db), "{}", db.backend);
    drop(store);
    db.execute_raw(&format!(
        "INSERT INTO avatar (hash, content_type, bytes) VALUES ('{}', 'image/png', 'png')",
        "a".repeat(64)
    ));
    assert_eq!(db.count_avatars(), 1, "{}", db.backend);
    assert_eq!(db.count_users(), 0, "{}", db.backend);
}

fn reopening_applies_nothing_again(db: &TestDb) {
    let store = db.open();
    store
        .upsert_login(&LoginRecord {
            openid: "o-stay",
            uid: &wxlogin::secret::random_hex(16),
            unionid: None,
            profile: None,
            session_key: &Secret::new("a2V5"),
        })
        .unwrap();
    let before = query(db, "SELECT * FROM schema_migrations ORDER BY version");
    drop(store);

    let _reopened = db.open();

    let after = query(db, "SELECT * FROM schema_migrations ORDER BY version");
    assert_eq!(after, before, "{}: rows, applied_at included", db.backend);
    assert_eq!(db.count_users(), 1, "{}", db.backend);
}

fn migrations_apply_each_version_once_when_nodes_start_together(db: &TestDb) {
    let outcomes = race(8, |_| {
        store::open(&db.url, StoreOptions::default())
            .map(|_| ())
            .map_err(|e| e.to_string())
    });

    for (node, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome, &Ok(()), "{}: node {node}", db.backend);
    }
    assert_eq!(recorded(db), every_migration(db), "{}", db.backend);
    let versions_recorded_twice = query(
        db,
        "SELECT version FROM schema_migrations GROUP BY version HAVING COUNT(*) > 1",
    );
    assert_eq!(versions_recorded_twice, Vec::<Vec<String>>::new());
}

fn todays_release_database_upgrades_in_place_with_rows_intact(db: &TestDb) {
    execute_script(db, todays_release_schema(db));
    db.execute_raw(
        "INSERT INTO wxuser (user_id, unionid, nickName, avatar, gender, session_key, \
         phoneNumber, purePhoneNumber, countryCode) VALUES ('o-old', 'u-old', 'Old Timer', \
         'https://a/old', 2, 'b2xkLWtleQ==', '+86 13800000000', '13800000000', '86')",
    );
    let shown = "c".repeat(64);
    db.execute_raw(&format!(
        "INSERT INTO wxuser (user_id, avatar) VALUES ('o-upload', 'https://l.example/avatars/{shown}.png')"
    ));
    for hash in ["b".repeat(64), shown.clone()] {
        db.execute_raw(&format!(
            "INSERT INTO avatar (hash, content_type, bytes) VALUES ('{hash}', 'image/png', X'706e67')"
        ));
    }

    let store = db.open();

    assert_eq!(recorded(db), every_migration(db), "{}", db.backend);
    let user = store.find_user("o-old").unwrap().expect("the old row kept");
    assert_eq!(user.unionid.as_deref(), Some("u-old"), "{}", db.backend);
    assert_eq!(
        user.profile,
        Profile {
            nick_name: Some("Old Timer".into()),
            avatar_url: Some("https://a/old".into()),
            gender: Some(2),
        },
        "{}",
        db.backend
    );
    assert_eq!(
        user.phone,
        Some(PhoneNumber {
            phone_number: "+86 13800000000".into(),
            pure_phone_number: "13800000000".into(),
            country_code: "86".into(),
        }),
        "{}",
        db.backend
    );
    assert_eq!(
        store.find_session_key("o-old").unwrap(),
        Some(Secret::new("b2xkLWtleQ==")),
        "{}",
        db.backend
    );
    assert_eq!(
        store.find_avatar(&shown).unwrap(),
        Some(("image/png".to_string(), b"png".to_vec())),
        "{}: an uploaded avatar a user shows is kept",
        db.backend
    );
    assert_eq!(
        store.avatar_state("o-upload").unwrap(),
        Some(wxlogin::store::AvatarState::Active),
        "{}",
        db.backend
    );
    assert_eq!(
        store.find_avatar(&"b".repeat(64)).unwrap(),
        None,
        "{}: an image nobody shows is deleted (0009_moderation)",
        db.backend
    );
    drop(store);
    db.open();
    assert_eq!(
        recorded(db),
        every_migration(db),
        "{}: a second start adopts nothing again",
        db.backend
    );
}

fn fresh_schema_equals_an_upgraded_release_schema(db: &TestDb) {
    db.open();
    let upgraded = another(db);
    execute_script(&upgraded, todays_release_schema(&upgraded));
    upgraded.open();

    assert_eq!(
        describe_schema(db),
        describe_schema(&upgraded),
        "{}: a fresh database and one upgraded from the release before migrations must end \
         with the same schema",
        db.backend
    );
}

fn existing_users_get_distinct_uids_and_keep_their_rows(db: &TestDb) {
    execute_script(db, todays_release_schema(db));
    for n in 0..3 {
        db.execute_raw(&format!(
            "INSERT INTO wxuser (user_id, nickName, session_key) VALUES ('o-{n}', 'User {n}', 'a2V5')"
        ));
    }

    let store = db.open();

    let uids = query(db, "SELECT uid FROM wxuser ORDER BY user_id");
    let distinct: std::collections::HashSet<_> = uids.iter().collect();
    assert_eq!(distinct.len(), 3, "{}: {uids:?}", db.backend);
    for uid in &uids {
        let uid = &uid[0];
        assert!(
            uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}: uid {uid:?} is 32 hex digits",
            db.backend
        );
    }
    let user = store.find_user("o-1").unwrap().expect("the row kept");
    assert_eq!(user.profile.nick_name.as_deref(), Some("User 1"));
    let returning = store
        .upsert_login(&LoginRecord {
            openid: "o-1",
            uid: "ffffffffffffffffffffffffffffffff",
            unionid: None,
            profile: None,
            session_key: &Secret::new("bmV3"),
        })
        .unwrap();
    assert_eq!(
        returning.uid, uids[1][0],
        "{}: a returning user keeps the uid the migration gave",
        db.backend
    );
}

fn edited_migration_is_refused_naming_the_file(db: &TestDb) {
    db.open();
    db.execute_raw(&format!(
        "UPDATE schema_migrations SET checksum = '{}' WHERE version = 1",
        "0".repeat(64)
    ));

    let error = open_error(db);

    assert!(
        error.contains(&format!(
            "sql/{}/migrations/0001_wxuser.sql",
            backend_dir(db)
        )) && error.contains("edited"),
        "{}: {error}",
        db.backend
    );
}

fn database_migrated_by_a_newer_release_is_refused(db: &TestDb) {
    db.open();
    db.execute_raw(&format!(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, \
         '9999_future.sql', '{}')",
        "0".repeat(64)
    ));

    let error = open_error(db);

    assert!(
        error.contains("this database was migrated by a newer wxlogin (version 9999)"),
        "{}: {error}",
        db.backend
    );
}

on_both_backends!(
    fresh_database_gets_every_migration_applied_and_recorded,
    reopening_applies_nothing_again,
    migrations_apply_each_version_once_when_nodes_start_together,
    todays_release_database_upgrades_in_place_with_rows_intact,
    fresh_schema_equals_an_upgraded_release_schema,
    existing_users_get_distinct_uids_and_keep_their_rows,
    edited_migration_is_refused_naming_the_file,
    database_migrated_by_a_newer_release_is_refused,
);
