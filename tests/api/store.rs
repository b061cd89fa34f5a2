//! The store contract: every backend must pass the same tests, each on a fresh database.

use crate::helpers::{race, TestDb};
use crate::on_both_backends;
use wxlogin::secret::Secret;
use wxlogin::store::{LoginRecord, LoginSession};
use wxlogin::user::{PhoneNumber, Profile};

fn key() -> Secret {
    Secret::new("c2Vzc2lvbi1rZXktMTIzNA==")
}

fn profile(nick: &str, avatar: &str, gender: i64) -> Profile {
    Profile {
        nick_name: Some(nick.into()),
        avatar_url: Some(avatar.into()),
        gender: Some(gender),
    }
}

fn upsert_creates_then_updates_one_row(db: &TestDb) {
    let store = db.open();
    let first = profile("First", "https://a/1", 1);
    let second = profile("Second", "https://a/2", 2);

    for p in [&first, &second] {
        store
            .upsert_login(&LoginRecord {
                openid: "o-1",
                uid: &wxlogin::secret::random_hex(16),
                unionid: None,
                profile: Some(p),
                session_key: &key(),
            })
            .unwrap();
    }

    assert_eq!(db.count_users(), 1, "{}", db.backend);
    let user = store.find_user("o-1").unwrap().unwrap();
    assert_eq!(user.profile, second, "{}: last profile wins", db.backend);
}

fn upsert_without_profile_keeps_the_stored_one(db: &TestDb) {
    let store = db.open();
    let p = profile("Kept", "https://a/k", 2);
    store
        .upsert_login(&LoginRecord {
            openid: "o-k",
            uid: &wxlogin::secret::random_hex(16),
            unionid: Some("u-k"),
            profile: Some(&p),
            session_key: &key(),
        })
        .unwrap();

    store
        .upsert_login(&LoginRecord {
            openid: "o-k",
            uid: &wxlogin::secret::random_hex(16),
            unionid: None,
            profile: None,
            session_key: &key(),
        })
        .unwrap();

    let user = store.find_user("o-k").unwrap().unwrap();
    assert_eq!(user.profile, p, "{}", db.backend);
    assert_eq!(user.unionid.as_deref(), Some("u-k"), "{}", db.backend);
}

fn find_user_returns_none_for_an_unknown_openid(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.find_user("o-nobody").unwrap(), None, "{}", db.backend);
}

fn openids_are_case_sensitive(db: &TestDb) {
    let store = db.open();
    for openid in ["oAbC", "oabc"] {
        store
            .upsert_login(&LoginRecord {
                openid,
                uid: &wxlogin::secret::random_hex(16),
                unionid: None,
                profile: None,
                session_key: &key(),
            })
            .unwrap();
    }
    assert_eq!(db.count_users(), 2, "{}", db.backend);
}

fn emoji_and_cjk_nicknames_round_trip(db: &TestDb) {
    let store = db.open();
    let p = profile("小明😀🎉 ƒ", "https://a/e", 0);
    store
        .upsert_login(&LoginRecord {
            openid: "o-emoji",
            uid: &wxlogin::secret::random_hex(16),
            unionid: None,
            profile: Some(&p),
            session_key: &key(),
        })
        .unwrap();

    let user = store.find_user("o-emoji").unwrap().unwrap();
    assert_eq!(
        user.profile.nick_name.as_deref(),
        Some("小明😀🎉 ƒ"),
        "{}",
        db.backend
    );
}

/// What a login writes comes back exactly as given, whatever the text holds (quotes,
/// backslashes, SQL, control characters, placeholders), in the user row and in the session and
/// history rows written with it.
fn a_login_stores_quotes_backslashes_and_sql_text_exactly_as_given(db: &TestDb) {
    let store = db.open();
    let cases = [
        ("o'quote", "O'Brien \"the\" 小明😀"),
        ("o\\back", "back\\slash\\"),
        ("o-sql", "x'); DROP TABLE wxuser; -- "),
        ("o-ctrl", "line\nbreak\r\ttab \u{1a} ?"),
        ("o-hash", "# ? ?? ; /* not a comment */"),
    ];
    for (n, (openid, text)) in cases.into_iter().enumerate() {
        let p = profile(text, &format!("https://a/{text}"), 1);
        let session_id = wxlogin::secret::random_hex(16);
        let refresh_hash = wxlogin::secret::random_hex(32);
        let user = store
            .write_login(
                &LoginRecord {
                    openid,
                    uid: &wxlogin::secret::random_hex(16),
                    unionid: Some(text),
                    profile: Some(&p),
                    session_key: &key(),
                },
                None,
                &LoginSession {
                    id: &session_id,
                    created_at: 1_700_000_000 + n as i64,
                    expires_at: 1_800_000_000,
                    max_expires_at: 1_900_000_000,
                    user_agent: text,
                    ip: "127.0.0.1",
                    refresh_hash: &refresh_hash,
                },
            )
            .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", db.backend));

        let stored = store.find_user(openid).unwrap().unwrap();
        assert_eq!(stored.profile, p, "{}: {text:?}", db.backend);
        assert_eq!(
            stored.unionid.as_deref(),
            Some(text),
            "{}: {text:?}",
            db.backend
        );
        let sessions = store.list_sessions(&user.uid, 1_700_000_000).unwrap();
        assert_eq!(sessions.len(), 1, "{}: {text:?}", db.backend);
        assert_eq!(sessions[0].id, session_id, "{}: {text:?}", db.backend);
        assert_eq!(
            sessions[0].user_agent.as_deref(),
            Some(text),
            "{}",
            db.backend
        );
        let logins = store.list_logins(&user.uid, 10).unwrap();
        assert_eq!(logins.len(), 1, "{}: {text:?}: one history row", db.backend);
        assert_eq!(
            logins[0].user_agent.as_deref(),
            Some(text),
            "{}",
            db.backend
        );
        assert!(
            store.find_refresh(&refresh_hash).unwrap().is_some(),
            "{}: {text:?}: the refresh token is stored",
            db.backend
        );
    }
    assert_eq!(db.count_users(), cases.len() as u64, "{}", db.backend);
}

fn schema_applies_twice_without_losing_rows(db: &TestDb) {
    let store = db.open();
    store
        .upsert_login(&LoginRecord {
            openid: "o-stay",
            uid: &wxlogin::secret::random_hex(16),
            unionid: None,
            profile: None,
            session_key: &key(),
        })
        .unwrap();
    drop(store);

    let reopened = db.open();

    assert_eq!(db.count_users(), 1, "{}", db.backend);
    reopened.ping().unwrap();
}

fn concurrent_upserts_of_one_openid_make_one_row(db: &TestDb) {
    let store = db.open();
    let profiles: Vec<Profile> = (0..50)
        .map(|i| profile(&format!("n{i}"), "https://a", 1))
        .collect();
    race(profiles.len(), |i| {
        store
            .upsert_login(&LoginRecord {
                openid: "o-race",
                uid: &wxlogin::secret::random_hex(16),
                unionid: None,
                profile: Some(&profiles[i]),
                session_key: &key(),
            })
            .unwrap_or_else(|e| panic!("{}: upsert {i} failed: {e}", db.backend));
    });
    assert_eq!(db.count_users(), 1, "{}", db.backend);
}

fn session_key_is_kept_and_replaced_by_the_latest_login(db: &TestDb) {
    let store = db.open();
    for key in ["Zmlyc3Qta2V5LTEyMzQ1Ng==", "c2Vjb25kLWtleS0xMjM0NQ=="] {
        store
            .upsert_login(&LoginRecord {
                openid: "o-key",
                uid: &wxlogin::secret::random_hex(16),
                unionid: None,
                profile: None,
                session_key: &Secret::new(key),
            })
            .unwrap();
    }
    assert_eq!(
        store.find_session_key("o-key").unwrap(),
        Some(Secret::new("c2Vjb25kLWtleS0xMjM0NQ==")),
        "{}",
        db.backend
    );
    assert_eq!(store.find_session_key("o-none").unwrap(), None);
}

fn phone_is_stored_on_an_existing_user_only(db: &TestDb) {
    let store = db.open();
    let phone = PhoneNumber {
        phone_number: "+1 2025550123".into(),
        pure_phone_number: "2025550123".into(),
        country_code: "1".into(),
    };
    store
        .upsert_login(&LoginRecord {
            openid: "o-phone",
            uid: &wxlogin::secret::random_hex(16),
            unionid: None,
            profile: None,
            session_key: &key(),
        })
        .unwrap();

    assert!(
        store.set_phone("o-phone", &phone).unwrap(),
        "{}",
        db.backend
    );
    assert!(
        store.set_phone("o-phone", &phone).unwrap(),
        "{}: same value again",
        db.backend
    );
    assert!(
        !store.set_phone("o-nobody", &phone).unwrap(),
        "{}",
        db.backend
    );
    assert_eq!(
        store.find_user("o-phone").unwrap().unwrap().phone,
        Some(phone)
    );
}

/// The first release's table, without the columns added since.
fn migration_adds_new_columns_and_keeps_existing_rows(db: &TestDb) {
    let first_release = match db.backend {
        "sqlite" => "CREATE TABLE wxuser (user_id TEXT NOT NULL PRIMARY KEY, unionid TEXT, nickName TEXT, avatar TEXT, gender INTEGER, created_at TEXT NOT NULL DEFAULT '2026-01-01', updated_at TEXT NOT NULL DEFAULT '2026-01-01')",
        _ => "CREATE TABLE wxuser (user_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, unionid VARCHAR(64) NULL, nickName VARCHAR(255) NULL, avatar VARCHAR(1024) NULL, gender TINYINT NULL, created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) DEFAULT CHARSET = utf8mb4",
    };
    db.execute_raw(first_release);
    db.execute_raw("INSERT INTO wxuser (user_id, nickName) VALUES ('o-old', 'Old Timer')");

    for _ in 0..2 {
        let store = db.open();
        let user = store
            .find_user("o-old")
            .unwrap()
            .expect("existing row kept");
        assert_eq!(
            user.profile.nick_name.as_deref(),
            Some("Old Timer"),
            "{}",
            db.backend
        );
        assert_eq!(user.phone, None, "{}", db.backend);
        assert_eq!(
            store.find_session_key("o-old").unwrap(),
            None,
            "{}",
            db.backend
        );
    }
}

on_both_backends!(
    migration_adds_new_columns_and_keeps_existing_rows,
    session_key_is_kept_and_replaced_by_the_latest_login,
    phone_is_stored_on_an_existing_user_only,
    upsert_creates_then_updates_one_row,
    upsert_without_profile_keeps_the_stored_one,
    find_user_returns_none_for_an_unknown_openid,
    openids_are_case_sensitive,
    emoji_and_cjk_nicknames_round_trip,
    a_login_stores_quotes_backslashes_and_sql_text_exactly_as_given,
    schema_applies_twice_without_losing_rows,
    concurrent_upserts_of_one_openid_make_one_row,
);
