//! Content moderation (issue 13): nicknames through msg_sec_check, avatars through
//! media_check_async and the verdict mock-wechat pushes to `/wechat/push`, remembered verdicts,
//! resubmission, and bounded storage. Each test runs wxlogin with moderation on against an
//! in-process mock-wechat whose push URL is the server's.

use crate::helpers::{capture_logs, AppBuilder, Secrets, TestApp, TestDb};
use crate::on_both_backends;
use crate::openapi::{check, document};
use crate::profile::upload;
use mock_wechat::{MediaVerdict, MockConfig, MockWechat, PushKeys, Suggest};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PUSH_TOKEN: &str = "pushtoken42";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// The mock (pushing to the server) and the server, moderation on, with `vars` on top.
fn start(db: &TestDb, aes_key: Option<&str>, vars: &[(&str, &str)]) -> (MockWechat, TestApp) {
    capture_logs();
    // The mock must know the push URL before the server starts, and the server the mock's
    // address: the server gets a port picked now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mock = MockWechat::start(MockConfig {
        bind: "127.0.0.1:0".into(),
        push_url: Some(format!("http://127.0.0.1:{port}/wechat/push")),
        push_token: PUSH_TOKEN.into(),
        push_aes_key: aes_key.map(str::to_owned),
        media_check_delay: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .expect("start mock-wechat");
    let mut builder = AppBuilder::new(&mock.base_url(), db, Secrets::for_mock_wechat())
        .var("WXLOGIN_BIND", &format!("127.0.0.1:{port}"))
        .var("WXLOGIN_MODERATION", "on")
        .var("WECHAT_PUSH_TOKEN", PUSH_TOKEN);
    if let Some(key) = aes_key {
        builder = builder.var("WECHAT_PUSH_AES_KEY", key);
    }
    for (name, value) in vars {
        builder = builder.var(name, value);
    }
    (mock, builder.start())
}

/// A distinct small PNG per `n`, as a phone would upload it.
fn image(n: u32) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(4, 4, |x, y| {
        image::Rgb([(n % 256) as u8, (n / 256) as u8, (x * 16 + y) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// `GET /api/me`'s user once `done` holds, polling for at most 10 s.
fn me_when(app: &TestApp, token: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let user = app.get("/api/me", Some(token)).body["user"].clone();
        if done(&user) {
            return user;
        }
        assert!(Instant::now() < deadline, "{what}: still {user}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |user| user["avatarState"] == state
}

fn nicknames_are_checked_at_put_and_at_login(db: &TestDb) {
    let (mock, app) = start(db, None, &[]);
    let doc = document().clone();
    let token = app.login(&mock.new_code("nick"));
    let put =
        |nick: &str| app.send_json("PUT", "/api/me", &json!({"nickName": nick}), Some(&token));

    let pass = put("Alice");
    assert_eq!(pass.status, 200, "{}", pass.text);
    let risky = put("一起来赌博");
    assert_eq!(risky.status, 422, "{}", risky.text);
    assert_eq!(risky.body["label"], 20001);
    check(&doc, "PUT", "/api/me", &risky);
    let review = put("please review-me");
    assert_eq!(
        review.status, 422,
        "review is rejected by default: {}",
        review.text
    );
    mock.set_msg_sec_check_fault(Some("slow.5000"));
    let timeout = put("Bob");
    assert_eq!(timeout.status, 503, "{}", timeout.text);
    check(&doc, "PUT", "/api/me", &timeout);
    mock.set_msg_sec_check_fault(None);
    assert_eq!(
        app.get("/api/me", Some(&token)).body["user"]["nickName"],
        "Alice"
    );

    let login = |nick: &str| {
        app.post_json(
            "/api/wxuser",
            &json!({"code": mock.new_code("nick"), "userInfo": {"nickName": nick}}),
        )
    };
    let refused = login("fuck");
    assert_eq!(refused.status, 200, "a login never fails over profile data");
    assert_eq!(
        refused.body["profile"],
        json!({"status": "rejected", "reason": "content"})
    );
    mock.set_msg_sec_check_fault(Some("fail.-1"));
    let unchecked = login("Carol");
    assert_eq!(unchecked.status, 200);
    assert_eq!(
        unchecked.body["profile"],
        json!({"status": "rejected", "reason": "content_check_unavailable"})
    );
    mock.set_msg_sec_check_fault(None);
    assert_eq!(login("Dave").body["profile"]["status"], "unverified");
    assert_eq!(
        app.get("/api/me", Some(&token)).body["user"]["nickName"],
        "Dave"
    );
}

fn review_and_errors_can_be_accepted_by_policy(db: &TestDb) {
    let (mock, app) = start(
        db,
        None,
        &[
            ("WXLOGIN_MODERATION_ON_REVIEW", "accept"),
            ("WXLOGIN_MODERATION_ON_ERROR", "accept"),
        ],
    );
    let token = app.login(&mock.new_code("lenient"));
    let put =
        |nick: &str| app.send_json("PUT", "/api/me", &json!({"nickName": nick}), Some(&token));
    assert_eq!(put("review-me please").status, 200);
    mock.set_msg_sec_check_fault(Some("http.502"));
    assert_eq!(put("Erin").status, 200);
    assert_eq!(
        put("赌博").status,
        200,
        "unchecked while WeChat fails, by policy"
    );
    mock.set_msg_sec_check_fault(None);
    assert_eq!(
        put("赌博").status,
        422,
        "risky is refused whatever the policy"
    );
}

fn an_upload_is_pending_until_pushed_and_verdicts_are_remembered(db: &TestDb) {
    let (mock, app) = start(db, None, &[]);
    let doc = document().clone();
    let token = app.login(&mock.new_code("amy"));

    let first = upload(&app, Some(&token), "file", &image(1));
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.body["avatar"]["state"], "pending");
    assert_eq!(
        first.body["user"]["avatarUrl"],
        Value::Null,
        "not shown before it passes"
    );
    check(&doc, "POST", "/api/me/avatar", &first);
    let user = me_when(&app, &token, "pass pushed", state_is("active"));
    let url = user["avatarUrl"].as_str().expect("published").to_string();
    assert_eq!(app.get(&url[app.url.len()..], None).status, 200);
    check(&doc, "GET", "/api/me", &app.get("/api/me", Some(&token)));

    // Risky: rejected, deleted, the old avatar kept; the same image again is refused at once.
    mock.set_media_verdict(
        &mock.openid_for("amy"),
        MediaVerdict::Suggest(Suggest::Risky),
        1,
    );
    assert_eq!(upload(&app, Some(&token), "file", &image(2)).status, 202);
    let user = me_when(&app, &token, "risky pushed", state_is("rejected"));
    assert_eq!(user["avatarUrl"], url.as_str());
    assert_eq!(
        db.count_avatars(),
        1,
        "{}: the risky image is deleted",
        db.backend
    );
    let again = upload(&app, Some(&token), "file", &image(2));
    assert_eq!(again.status, 422, "{}", again.text);
    check(&doc, "POST", "/api/me/avatar", &again);

    // A passed image is published at once, for anyone.
    let bob = app.login(&mock.new_code("bob"));
    let known = upload(&app, Some(&bob), "file", &image(1));
    assert_eq!(known.status, 200, "{}", known.text);
    assert_eq!(known.body["user"]["avatarUrl"], url.as_str());
    assert_eq!(known.body["user"]["avatarState"], "active");
    check(&doc, "POST", "/api/me/avatar", &known);

    // Review is rejected by default.
    mock.set_media_verdict(
        &mock.openid_for("bob"),
        MediaVerdict::Suggest(Suggest::Review),
        1,
    );
    assert_eq!(upload(&app, Some(&bob), "file", &image(3)).status, 202);
    me_when(&app, &bob, "review pushed", state_is("rejected"));
}

fn the_media_url_serves_only_the_pending_image(db: &TestDb) {
    let (mock, app) = start(db, None, &[]);
    let token = app.login(&mock.new_code("meg"));
    mock.set_media_verdict(&mock.openid_for("meg"), MediaVerdict::Timeout, 1);
    assert_eq!(upload(&app, Some(&token), "file", &image(7)).status, 202);
    let media = db.text("SELECT media_token FROM wx_user_avatar");
    assert_eq!(media.len(), 64, "256 random bits");

    let served = app.get(&format!("/media/{media}"), None);
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["cache-control"], "no-store");
    assert_eq!(served.headers["content-type"], "image/jpeg");
    let guessed = format!("/media/{}", "0".repeat(64));
    assert_eq!(app.get(&guessed, None).status, 404);
    db.execute_raw("UPDATE wx_user_avatar SET media_expires_at = 1");
    assert_eq!(
        app.get(&format!("/media/{media}"), None).status,
        404,
        "expired"
    );
}

fn pushes_are_verified_and_unknown_trace_ids_acknowledged(db: &TestDb) {
    let (mock, app) = start(db, Some(AES_KEY), &[]);
    let token = app.login(&mock.new_code("sam"));
    mock.set_media_verdict(&mock.openid_for("sam"), MediaVerdict::Timeout, 1);
    assert_eq!(upload(&app, Some(&token), "file", &image(9)).status, 202);
    let trace_id = db.text("SELECT trace_id FROM wx_user_avatar");
    let event =
        mock_wechat::media_check_event(mock_wechat::DEFAULT_APPID, &trace_id, Suggest::Pass);
    let keys = |token: &str| PushKeys {
        token: token.into(),
        aes_key: Some(AES_KEY.into()),
        appid: mock_wechat::DEFAULT_APPID.into(),
    };
    let post = |push: mock_wechat::Push| {
        app.send(
            "POST",
            &format!("/wechat/push?{}", push.query),
            &[("Content-Type", "application/json")],
            None,
            push.body.as_bytes(),
        )
    };

    let forged = post(keys("guessed").seal(&event).unwrap());
    assert_eq!(forged.status, 401, "{}", forged.text);
    let stale = post(
        keys(PUSH_TOKEN)
            .seal_at(&event, 1_500_000_000, "1")
            .unwrap(),
    );
    assert_eq!(stale.status, 401, "{}", stale.text);
    assert_eq!(
        app.get("/api/me", Some(&token)).body["user"]["avatarState"],
        "pending"
    );

    let unknown_event =
        mock_wechat::media_check_event(mock_wechat::DEFAULT_APPID, "no-such-trace", Suggest::Pass);
    let unknown = post(keys(PUSH_TOKEN).seal(&unknown_event).unwrap());
    assert_eq!((unknown.status, unknown.text.as_str()), (200, "success"));
    assert_eq!(
        app.get("/api/me", Some(&token)).body["user"]["avatarState"],
        "pending"
    );

    let safe = post(keys(PUSH_TOKEN).seal(&event).unwrap());
    assert_eq!((safe.status, safe.text.as_str()), (200, "success"));
    let user = app.get("/api/me", Some(&token)).body["user"].clone();
    assert_eq!(user["avatarState"], "active", "{user}");

    // The URL check of WeChat's console.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signature = mock_wechat::push_signature(PUSH_TOKEN, &now, "42");
    let good = app.get(
        &format!("/wechat/push?signature={signature}&timestamp={now}&nonce=42&echostr=hi5"),
        None,
    );
    assert_eq!((good.status, good.text.as_str()), (200, "hi5"));
    let bad = app.get(
        &format!("/wechat/push?signature=0{signature}&timestamp={now}&nonce=42&echostr=hi5"),
        None,
    );
    assert_eq!(bad.status, 401);
    assert!(!bad.text.contains("hi5"));
    let logs = crate::helpers::logged_lines().join("\n");
    assert!(
        !logs.contains(PUSH_TOKEN) && !logs.contains(AES_KEY),
        "a push secret was logged"
    );
}

fn unanswered_checks_are_resubmitted_then_given_up(db: &TestDb) {
    let (mock, app) = start(
        db,
        None,
        &[
            ("WXLOGIN_MODERATION_RESUBMIT_AFTER", "1s"),
            ("WXLOGIN_MODERATION_MAX_ATTEMPTS", "2"),
        ],
    );
    let token = app.login(&mock.new_code("tim"));
    mock.set_media_verdict(&mock.openid_for("tim"), MediaVerdict::Timeout, 10);
    assert_eq!(upload(&app, Some(&token), "file", &image(11)).status, 202);
    let user = me_when(&app, &token, "given up", state_is("rejected"));
    assert_eq!(user["avatarUrl"], Value::Null);
    assert_eq!(
        mock.media_check_calls(),
        2,
        "submitted, then resubmitted once"
    );
    assert_eq!(
        db.count_avatars(),
        0,
        "{}: the given-up image is deleted",
        db.backend
    );
}

fn a_hundred_uploads_leave_one_or_two_images(db: &TestDb) {
    let (mock, app) = start(db, None, &[("WXLOGIN_AVATAR_UPLOADS_PER_HOUR", "1000")]);
    let token = app.login(&mock.new_code("hoarder"));
    assert_eq!(upload(&app, Some(&token), "file", &image(100)).status, 202);
    me_when(&app, &token, "first avatar", state_is("active"));
    mock.set_media_verdict(&mock.openid_for("hoarder"), MediaVerdict::Timeout, 1000);
    for n in 0..99 {
        let answer = upload(&app, Some(&token), "file", &image(n));
        assert_eq!(answer.status, 202, "upload {n}: {}", answer.text);
    }
    assert_eq!(
        db.count_avatars(),
        2,
        "{}: one active, one pending",
        db.backend
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM wx_user_avatar"), 1);
}

fn uploads_are_limited_per_user_and_hour(db: &TestDb) {
    let (mock, app) = start(db, None, &[("WXLOGIN_AVATAR_UPLOADS_PER_HOUR", "2")]);
    let token = app.login(&mock.new_code("rita"));
    for n in 0..2 {
        assert_eq!(upload(&app, Some(&token), "file", &image(n)).status, 202);
    }
    let limited = upload(&app, Some(&token), "file", &image(3));
    assert_eq!(limited.status, 429, "{}", limited.text);
    let retry: u64 = limited.headers["retry-after"].parse().unwrap();
    assert!((1..=1800).contains(&retry), "{retry}");
    check(&document().clone(), "POST", "/api/me/avatar", &limited);
    let other = app.login(&mock.new_code("sue"));
    assert_eq!(upload(&app, Some(&other), "file", &image(4)).status, 202);
}

on_both_backends!(
    nicknames_are_checked_at_put_and_at_login,
    review_and_errors_can_be_accepted_by_policy,
    an_upload_is_pending_until_pushed_and_verdicts_are_remembered,
    the_media_url_serves_only_the_pending_image,
    pushes_are_verified_and_unknown_trace_ids_acknowledged,
    unanswered_checks_are_resubmitted_then_given_up,
    a_hundred_uploads_leave_one_or_two_images,
    uploads_are_limited_per_user_and_hour,
);
