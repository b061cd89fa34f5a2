//! The rate limits of login, refresh and phone: generous enough for carrier NAT, refusing with
//! 429 and `Retry-After` before WeChat is asked, per client address (or the loopback proxy's
//! `X-Real-IP`) and per user, refilling, and counted in the metrics.

use crate::helpers::{
    capture_logs, race, start_mock_wechat, Answer, AppBuilder, Secrets, TestApp, TestDb,
};
use crate::openapi::{check, document};
use mock_wechat::MockWechat;
use serde_json::json;
use std::time::{Duration, Instant};

fn app(mock: &MockWechat, db: &TestDb, vars: &[(&str, &str)]) -> TestApp {
    capture_logs();
    vars.iter()
        .fold(
            AppBuilder::new(&mock.base_url(), db, Secrets::for_mock_wechat()),
            |builder, (name, value)| builder.var(name, value),
        )
        .start()
}

fn login(app: &TestApp, mock: &MockWechat, user: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    let body = format!("code={}", mock.new_code(user));
    app.send("POST", "/api/wxuser", &all, None, body.as_bytes())
}

fn refresh(app: &TestApp, refresh_token: &str) -> Answer {
    app.post_json(
        "/api/token/refresh",
        &json!({ "refresh_token": refresh_token }),
    )
}

/// Repeats `attempt` every 50 ms until it gives 200, for at most 5 s; its last answer.
fn until_ok(mut attempt: impl FnMut() -> Answer) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = attempt();
        if answer.status == 200 || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_limited(answer: &Answer, retry_after: u64) {
    assert_eq!(answer.status, 429, "{}", answer.text);
    assert_eq!(
        answer.body,
        json!({"status": 429, "message": format!("too many requests; retry in {retry_after} s")})
    );
    assert_eq!(answer.headers["retry-after"], retry_after.to_string());
}

fn metric(app: &TestApp, route: &str, scope: &str) -> String {
    let text = app.get("/metrics", None).text;
    let series = format!("wxlogin_rate_limited_total{{route=\"{route}\",scope=\"{scope}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or("absent")
        .to_string()
}

fn two_hundred_concurrent_logins_from_one_address_pass_with_the_defaults(db: &TestDb) {
    let mock = start_mock_wechat(false);
    let app = app(&mock, db, &[]);
    let codes: Vec<String> = (0..200)
        .map(|i| mock.new_code(&format!("nat{i}")))
        .collect();

    let statuses = race(200, |i| {
        app.post_form("/api/wxuser", &[("code", &codes[i])]).status
    });

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(mock.jscode2session_calls(), 200);
    assert_eq!(metric(&app, "/api/wxuser", "client"), "absent");
}

crate::on_both_backends!(two_hundred_concurrent_logins_from_one_address_pass_with_the_defaults);

#[test]
fn past_a_small_burst_the_login_is_429_before_wechat_is_asked() {
    let mock = start_mock_wechat(false);
    let db = TestDb::sqlite();
    let app = app(
        &mock,
        &db,
        &[
            ("WXLOGIN_RATE_LIMIT_BURST", "2"),
            ("WXLOGIN_RATE_LIMIT_PER_SECOND", "0.01"),
        ],
    );
    for user in ["ann", "bob"] {
        assert_eq!(login(&app, &mock, user, &[]).status, 200);
    }

    let refused = login(&app, &mock, "cat", &[]);

    assert_limited(&refused, 100);
    check(document(), "POST", "/api/wxuser", &refused);
    assert_eq!(mock.jscode2session_calls(), 2, "WeChat was not asked");
    // Decided before the body is read: even a body we could not read gets the 429.
    let unreadable = app.post_raw("/api/wxuser", Some("text/plain"), b"x");
    assert_eq!(unreadable.status, 429, "{}", unreadable.text);
    assert_eq!(metric(&app, "/api/wxuser", "client"), "2");
    // Each route has its own bucket per address.
    let refresh = refresh(&app, "rt_unknown");
    assert_eq!(refresh.status, 401, "{}", refresh.text);
}

#[test]
fn an_empty_bucket_refills() {
    let mock = start_mock_wechat(false);
    let db = TestDb::sqlite();
    let app = app(
        &mock,
        &db,
        &[
            ("WXLOGIN_RATE_LIMIT_BURST", "1"),
            ("WXLOGIN_RATE_LIMIT_PER_SECOND", "1"),
        ],
    );
    assert_eq!(login(&app, &mock, "ann", &[]).status, 200);
    let refused = login(&app, &mock, "bob", &[]);
    assert_limited(&refused, 1);

    let again = until_ok(|| login(&app, &mock, "bob", &[]));

    assert_eq!(again.status, 200, "{}", again.text);
}

#[test]
fn x_real_ip_from_the_loopback_proxy_keys_the_bucket() {
    let mock = start_mock_wechat(false);
    let db = TestDb::sqlite();
    let app = app(
        &mock,
        &db,
        &[
            ("WXLOGIN_RATE_LIMIT_BURST", "1"),
            ("WXLOGIN_RATE_LIMIT_PER_SECOND", "0.01"),
        ],
    );
    let from = |ip: &'static str| [("X-Real-IP", ip)];
    assert_eq!(login(&app, &mock, "a1", &from("203.0.113.7")).status, 200);
    assert_eq!(login(&app, &mock, "a2", &from("203.0.113.7")).status, 429);
    assert_eq!(login(&app, &mock, "b1", &from("203.0.113.8")).status, 200);
    // The proxy's own address (no header) is another client.
    assert_eq!(login(&app, &mock, "c1", &[]).status, 200);
    assert_eq!(login(&app, &mock, "c2", &[]).status, 429);
    // An IPv6 subscriber is one client across its /64.
    assert_eq!(
        login(&app, &mock, "d1", &from("2001:db8:1:2::1")).status,
        200
    );
    assert_eq!(
        login(&app, &mock, "d2", &from("2001:db8:1:2::9")).status,
        429
    );
    assert_eq!(mock.jscode2session_calls(), 4);
}

#[test]
fn refreshes_are_limited_per_user_without_rotating_the_refused_token() {
    let mock = start_mock_wechat(false);
    let db = TestDb::sqlite();
    let app = app(
        &mock,
        &db,
        &[
            ("WXLOGIN_RATE_LIMIT_BURST", "0"),
            ("WXLOGIN_USER_RATE_LIMIT_BURST", "2"),
            ("WXLOGIN_USER_RATE_LIMIT_PER_SECOND", "1"),
            ("WXLOGIN_REFRESH_REUSE_GRACE", "0s"),
        ],
    );
    let refresh_token =
        |answer: &Answer| answer.body["refresh_token"].as_str().unwrap().to_string();
    let mut token = refresh_token(&login(&app, &mock, "ann", &[]));
    let bob = refresh_token(&login(&app, &mock, "bob", &[]));
    for _ in 0..2 {
        let answer = refresh(&app, &token);
        assert_eq!(answer.status, 200, "{}", answer.text);
        token = refresh_token(&answer);
    }

    let refused = refresh(&app, &token);

    assert_limited(&refused, 1);
    check(document(), "POST", "/api/token/refresh", &refused);
    assert_eq!(
        refresh(&app, &bob).status,
        200,
        "another user has their own bucket"
    );
    assert_eq!(metric(&app, "/api/token/refresh", "user"), "1");
    // The refused token was not rotated: once refilled it still works (a rotated one would now
    // be a reuse, with a zero grace, and end the session).
    let later = until_ok(|| refresh(&app, &token));
    assert_eq!(later.status, 200, "{}", later.text);
}

#[test]
fn phone_binds_are_limited_per_user_before_wechat_is_asked() {
    let mock = start_mock_wechat(false);
    let db = TestDb::sqlite();
    let app = app(
        &mock,
        &db,
        &[
            ("WXLOGIN_USER_RATE_LIMIT_BURST", "1"),
            ("WXLOGIN_USER_RATE_LIMIT_PER_SECOND", "0.01"),
        ],
    );
    let bearer = |user: &str| {
        login(&app, &mock, user, &[]).body["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (fay, gus) = (bearer("fay"), bearer("gus"));
    let bind = |token: &str, user: &str| {
        app.post_json_with_token(
            "/api/phone",
            &json!({"code": mock.new_phone_code(user, "13800138000")}),
            token,
        )
    };
    assert_eq!(bind(&fay, "fay").status, 200);

    let refused = bind(&fay, "fay");

    assert_limited(&refused, 100);
    check(document(), "POST", "/api/phone", &refused);
    assert_eq!(mock.phone_calls(), 1, "WeChat was not asked");
    assert_eq!(
        bind(&gus, "gus").status,
        200,
        "another user has their own bucket"
    );
    assert_eq!(metric(&app, "/api/phone", "user"), "1");
    assert_eq!(metric(&app, "/api/phone", "client"), "absent");
}
