//! Today's profile flow over HTTP on both backends: the nickname (`PUT /api/me`) and the avatar
//! upload (`POST /api/me/avatar`) as `wx.uploadFile` sends it, and serving it back.

use crate::helpers::{
    capture_logs, spawn_app_with_mock, start_mock_wechat, Answer, AppBuilder, Secrets, TestApp,
    TestDb,
};
use crate::on_both_backends;
use mock_wechat::MockWechat;
use serde_json::json;

/// A valid 1×1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];
/// A 1×1 grey baseline JPEG: one all-zero block, both Huffman tables of one symbol.
const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01,
    0x01, 0x01, 0x11, 0x00, 0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xC4, 0x00, 0x14, 0x10, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x3F, 0xFF, 0xD9,
];
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
const WEBP: &[u8] = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00";

/// The body `wx.uploadFile({ name, filePath, formData })` sends.
fn upload_body(field: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----WeChatUploadBoundaryq1w2e3r4";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"wxfile://tmp_a1b2.png\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn upload(app: &TestApp, token: Option<&str>, field: &str, content: &[u8]) -> Answer {
    let (content_type, body) = upload_body(field, content);
    app.send(
        "POST",
        "/api/me/avatar",
        &[("Content-Type", &content_type)],
        token,
        &body,
    )
}

fn logged_in(db: &TestDb) -> (MockWechat, TestApp, String) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let token = app.login(&mock.new_code("pat"));
    (mock, app, token)
}

fn emoji_nickname_is_stored_trimmed_and_read_back(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);

    let answer = app.send_json(
        "PUT",
        "/api/me",
        &json!({"nickName": "  小明 😀🎉  ", "gender": 1}),
        Some(&token),
    );

    assert_eq!(answer.status, 200, "{}: {}", db.backend, answer.text);
    assert_eq!(answer.body["user"]["nickName"], "小明 😀🎉");
    let me = app.get("/api/me", Some(&token));
    assert_eq!(me.body["user"]["nickName"], "小明 😀🎉", "{}", db.backend);
    assert_eq!(me.body["user"]["gender"], 1);
}

fn nickname_updates_are_validated(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let cases = [
        (json!({"nickName": "   "}), 400, "blank"),
        (json!({"nickName": "a\u{0}b"}), 400, "control character"),
        (json!({"nickName": "😀".repeat(65)}), 400, "65 characters"),
        (json!({"nickName": 7}), 400, "not a string"),
        (json!({"gender": 1}), 400, "no nickName"),
        (json!({"nickName": "ok", "gender": 5}), 400, "bad gender"),
    ];
    for (body, status, what) in cases {
        let answer = app.send_json("PUT", "/api/me", &body, Some(&token));
        assert_eq!(answer.status, status, "{what}: {}", answer.text);
    }
    let sixty_four = "😀".repeat(64);
    let ok = app.send_json(
        "PUT",
        "/api/me",
        &json!({"nickName": sixty_four}),
        Some(&token),
    );
    assert_eq!(ok.status, 200, "64 emoji are 64 characters: {}", ok.text);
    let no_token = app.send_json("PUT", "/api/me", &json!({"nickName": "x"}), None);
    assert_eq!(no_token.status, 401);
    let form = app.send(
        "PUT",
        "/api/me",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&token),
        b"nickName=x",
    );
    assert_eq!(form.status, 415);
}

fn avatar_upload_is_stored_once_and_served_with_cache_headers(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);

    let first = upload(&app, Some(&token), "file", PNG);
    let second = upload(&app, Some(&token), "file", PNG);

    assert_eq!(first.status, 200, "{}: {}", db.backend, first.text);
    let url = first.body["user"]["avatarUrl"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with(&format!("{}/avatars/", app.url)), "{url}");
    assert!(url.ends_with(".png"), "{url}: its pixel is transparent");
    assert_eq!(
        second.body["user"]["avatarUrl"],
        url.as_str(),
        "content-addressed"
    );
    assert_eq!(
        app.get("/api/me", Some(&token)).body["user"]["avatarUrl"],
        url.as_str()
    );

    let path = &url[app.url.len()..];
    let image = app.get_bytes(path, &[]);
    assert_eq!(image.0, 200);
    assert_eq!(
        image::load_from_memory(&image.1).unwrap(),
        image::load_from_memory(PNG).unwrap(),
        "the same pixels come back (re-encoded: tests/api/images.rs)"
    );
    assert_eq!(image.2["content-type"], "image/png");
    assert_eq!(
        image.2["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = image.2["etag"].clone();
    let revalidated = app.get_bytes(path, &[("If-None-Match", &etag)]);
    assert_eq!(revalidated.0, 304);
    assert!(revalidated.1.is_empty());
    let wrong_ext = path.replace(".png", ".gif");
    assert_eq!(app.get_bytes(&wrong_ext, &[]).0, 404);
    assert_eq!(app.get_bytes("/avatars/../../etc/passwd", &[]).0, 404);
}

fn avatar_types_and_limits_are_enforced(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let mut oversized = PNG.to_vec();
    oversized.resize(2 * 1024 * 1024 + 1, 0);
    let mut largest = PNG.to_vec();
    largest.resize(2 * 1024 * 1024, 0);
    let cases: &[(&str, &[u8], u16, &str)] = &[
        ("file", JPEG, 200, "JPEG"),
        ("file", GIF, 200, "GIF"),
        ("file", WEBP, 200, "WebP"),
        ("file", &largest, 200, "exactly 2 MiB"),
        ("file", &oversized, 413, "2 MiB + 1 byte"),
        ("file", b"just some text", 415, "text"),
        (
            "file",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            415,
            "SVG",
        ),
        ("photo", PNG, 400, "no part named file"),
    ];
    for (field, content, status, what) in cases {
        let answer = upload(&app, Some(&token), field, content);
        assert_eq!(answer.status, *status, "{what}: {}", answer.text);
    }
    assert_eq!(upload(&app, None, "file", PNG).status, 401);
    let not_multipart = app.send(
        "POST",
        "/api/me/avatar",
        &[("Content-Type", "image/png")],
        Some(&token),
        PNG,
    );
    assert_eq!(not_multipart.status, 415);
}

fn another_node_sharing_the_database_serves_the_avatar(db: &TestDb) {
    let (mock, app, token) = logged_in(db);
    let url = upload(&app, Some(&token), "file", PNG).body["user"]["avatarUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let served = app.get_bytes(&url[app.url.len()..], &[]).1;
    capture_logs();
    let other = AppBuilder::new(&mock.base_url(), db, Secrets::for_mock_wechat()).start();

    let image = other.get_bytes(&url[app.url.len()..], &[]);

    assert_eq!(image.0, 200, "{}", db.backend);
    assert_eq!(image.1, served);
}

#[test]
fn avatar_url_uses_the_public_url() {
    let mock = start_mock_wechat(false);
    let db = TestDb::sqlite();
    capture_logs();
    let app = AppBuilder::new(&mock.base_url(), &db, Secrets::for_mock_wechat())
        .var("WXLOGIN_PUBLIC_URL", "https://login.example.com/")
        .start();
    let token = app.login(&mock.new_code("quin"));

    let answer = upload(&app, Some(&token), "file", PNG);

    let url = answer.body["user"]["avatarUrl"].as_str().unwrap();
    assert!(
        url.starts_with("https://login.example.com/avatars/"),
        "{url}"
    );
}

fn anonymous_placeholder_profile_never_overwrites_the_chosen_one(db: &TestDb) {
    let (mock, app, token) = logged_in(db);
    app.send_json(
        "PUT",
        "/api/me",
        &json!({"nickName": "Chosen", "gender": 2}),
        Some(&token),
    );
    let url = upload(&app, Some(&token), "file", PNG).body["user"]["avatarUrl"].clone();
    let placeholder = r#"{"nickName":"微信用户","gender":0,"language":"","city":"","province":"","country":"","avatarUrl":"https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132"}"#;

    let login = app.post_form(
        "/api/wxuser",
        &[("code", &mock.new_code("pat")), ("userInfo", placeholder)],
    );

    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["profile"]["status"], "rejected");
    assert!(login.body["profile"]["reason"]
        .as_str()
        .unwrap()
        .contains("anonymous"));
    let me = app.get("/api/me", Some(&token));
    assert_eq!(me.body["user"]["nickName"], "Chosen", "{}", db.backend);
    assert_eq!(me.body["user"]["avatarUrl"], url);
    assert_eq!(me.body["user"]["gender"], 2);
}

on_both_backends!(
    anonymous_placeholder_profile_never_overwrites_the_chosen_one,
    emoji_nickname_is_stored_trimmed_and_read_back,
    nickname_updates_are_validated,
    avatar_upload_is_stored_once_and_served_with_cache_headers,
    avatar_types_and_limits_are_enforced,
    another_node_sharing_the_database_serves_the_avatar,
);
