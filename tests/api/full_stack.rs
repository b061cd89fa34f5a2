//! The whole flow over HTTP with the real `mock-wechat`, the way the mini-program calls it, on
//! both backends: login with a profile, read it back, log in again, concurrency, and the errors
//! mock-wechat's documented failure codes produce.

use crate::helpers::{
    capture_logs, jwt_payload, race, spawn_app_with_mock, start_mock_wechat, AppBuilder, Secrets,
    TestDb,
};
use crate::on_both_backends;

fn mini_program_logs_in_and_reads_its_profile(db: &TestDb) {
    let mock = start_mock_wechat(true);
    let app = spawn_app_with_mock(&mock, db);
    let raw_data = r#"{"nickName":"Alice 🌸","gender":2,"language":"zh_CN","city":"","province":"","country":"","avatarUrl":"https://thirdwx.qlogo.cn/alice/132"}"#;

    let login = app.post_form(
        "/api/wxuser",
        &[("code", &mock.new_code("alice")), ("userInfo", raw_data)],
    );

    assert_eq!(login.status, 200, "{}: {}", db.backend, login.text);
    assert_eq!(login.body["profile"]["status"], "unverified");
    let token = login.body["token"].as_str().unwrap();
    assert_eq!(jwt_payload(token)["openid"], mock.openid_for("alice"));
    let me = app.get("/api/me", Some(token));
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["user"]["openid"], mock.openid_for("alice"));
    assert_eq!(me.body["user"]["unionid"], mock.unionid_for("alice"));
    assert_eq!(me.body["user"]["nickName"], "Alice 🌸", "{}", db.backend);
    assert_eq!(
        me.body["user"]["avatarUrl"],
        "https://thirdwx.qlogo.cn/alice/132"
    );
    assert_eq!(me.body["user"]["gender"], 2);

    // A later silent login (no profile) keeps the profile and the single row.
    let again = app.post_form("/api/wxuser", &[("code", &mock.new_code("alice"))]);
    assert_eq!(again.status, 200, "{}", again.text);
    let me = app.get("/api/me", Some(again.body["token"].as_str().unwrap()));
    assert_eq!(me.body["user"]["nickName"], "Alice 🌸");
    assert_eq!(db.count_users(), 1);
}

fn reused_code_is_refused_with_40163_when_replay_is_off(db: &TestDb) {
    let mock = start_mock_wechat(false);
    capture_logs();
    let app = AppBuilder::new(&mock.base_url(), db, Secrets::for_mock_wechat())
        .var("WXLOGIN_CODE_REPLAY_WINDOW", "0")
        .start();
    let code = mock.new_code("bob");

    assert_eq!(app.post_form("/api/wxuser", &[("code", &code)]).status, 200);
    let reused = app.post_form("/api/wxuser", &[("code", &code)]);

    assert_eq!(reused.status, 401, "{}", reused.text);
    assert_eq!(reused.body["errcode"], 40163);
}

fn mock_failure_codes_map_to_their_statuses(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let cases = [
        ("not-a-code", 401, "invalid code"),
        ("fail.40029", 401, "errcode 40029"),
        ("fail.45011", 429, "rate limit"),
        ("fail.40226", 403, "high-risk user"),
        ("fail.-1", 502, "system busy"),
        ("http.500", 502, "upstream HTTP 500"),
        ("garbage.1", 502, "non-JSON answer"),
        ("slow.3000", 504, "slower than WECHAT_TIMEOUT (2s)"),
    ];
    for (code, status, what) in cases {
        let answer = app.post_form("/api/wxuser", &[("code", code)]);
        assert_eq!(answer.status, status, "{what} ({code}): {}", answer.text);
    }
    assert_eq!(db.count_users(), 0);
}

fn fifty_concurrent_first_logins_of_one_user_make_one_row(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let codes: Vec<String> = (0..50).map(|_| mock.new_code("carol")).collect();

    let statuses = race(codes.len(), |i| {
        app.post_form("/api/wxuser", &[("code", &codes[i])]).status
    });

    assert!(
        statuses.iter().all(|&s| s == 200),
        "{}: {statuses:?}",
        db.backend
    );
    assert_eq!(db.count_users(), 1, "{}", db.backend);
}

fn two_hundred_concurrent_distinct_users_all_get_rows(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let codes: Vec<String> = (0..200)
        .map(|i| mock.new_code(&format!("user{i}")))
        .collect();

    let answers = race(codes.len(), |i| {
        app.post_form("/api/wxuser", &[("code", &codes[i])])
    });

    let failures: Vec<_> = answers
        .iter()
        .filter(|a| a.status != 200)
        .map(|a| (a.status, &a.text))
        .collect();
    assert!(
        failures.is_empty(),
        "{}: non-200 answers {failures:?}",
        db.backend
    );
    assert_eq!(db.count_users(), 200, "{}", db.backend);
    for i in [0, 99, 199] {
        let openid = mock.openid_for(&format!("user{i}"));
        assert!(app.store.find_user(&openid).unwrap().is_some(), "user{i}");
    }
}

on_both_backends!(
    mini_program_logs_in_and_reads_its_profile,
    reused_code_is_refused_with_40163_when_replay_is_off,
    mock_failure_codes_map_to_their_statuses,
    fifty_concurrent_first_logins_of_one_user_make_one_row,
    two_hundred_concurrent_distinct_users_all_get_rows,
);
