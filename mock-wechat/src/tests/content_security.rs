//! Content security: `/wxa/msg_sec_check`, `/wxa/media_check_async` with its fetch and push,
//! and their `/mock` controls. Pushes are checked independently of `push.rs`: signatures
//! with sha1 here, safe mode decrypted here with the `aes` and `cbc` crates.

use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver};

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use serde_json::json;
use sha1::{Digest, Sha1};

use super::stable_token::stable_token;
use super::*;
use crate::{MediaVerdict, Suggest};

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really an image";

fn target(path: &str, token: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("access_token", token)
        .finish();
    format!("{path}?{query}")
}

fn check_text(mock: &MockWechat, token: &str, content: &str) -> Answer {
    let body = json!({ "version": 2, "scene": 1, "openid": "oA", "content": content });
    post(
        mock,
        &target("/wxa/msg_sec_check", token),
        &body.to_string(),
    )
}

fn check_media(mock: &MockWechat, token: &str, media_url: &str, openid: &str) -> Answer {
    let body = json!({
        "media_url": media_url, "media_type": 2, "version": 2, "scene": 1, "openid": openid,
    });
    post(
        mock,
        &target("/wxa/media_check_async", token),
        &body.to_string(),
    )
}

/// One request a [`Peer`] received.
struct Received {
    target: String,
    body: String,
}

impl Received {
    fn param(&self, name: &str) -> String {
        let query = self.target.split_once('?').map_or("", |(_, query)| query);
        crate::request::param(query, name).unwrap_or_default()
    }
}

/// A local HTTP server standing in for wxlogin: it serves the image and receives pushes,
/// answering the statuses in `statuses` first, then 200.
struct Peer {
    url: String,
    received: Receiver<Received>,
}

impl Peer {
    fn start(statuses: Vec<u16>) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (send, received) = mpsc::channel();
        thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let request = read_request(&mut stream);
                let status = statuses.next().unwrap_or(200);
                let body: &[u8] = if request.target.starts_with("/img") {
                    PNG
                } else {
                    b"success"
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
                if send.send(request).is_err() {
                    return;
                }
            }
        });
        Peer { url, received }
    }

    /// The next request, or `None` after `wait`.
    fn next(&self, wait: Duration) -> Option<Received> {
        self.received.recv_timeout(wait).ok()
    }
}

fn read_request(stream: &mut TcpStream) -> Received {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the request ended early");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while raw.len() < head_end + 4 + length {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the body ended early");
        raw.extend_from_slice(&buf[..n]);
    }
    Received {
        target: head.split(' ').nth(1).unwrap().to_owned(),
        body: String::from_utf8(raw[head_end + 4..].to_vec()).unwrap(),
    }
}

/// A mock pushing to `peer`, with a short delay.
fn pushing_to(peer: &Peer, aes_key: Option<&str>) -> MockWechat {
    start(MockConfig {
        media_check_delay: Duration::from_millis(50),
        push_url: Some(format!("{}/wechat/push", peer.url)),
        push_token: "pushtoken".to_owned(),
        push_aes_key: aes_key.map(str::to_owned),
        ..MockConfig::default()
    })
}

fn sha1_sorted(mut parts: Vec<String>) -> String {
    parts.sort();
    Sha1::digest(parts.concat().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The push's `signature`, checked here without `push.rs`.
fn assert_signed(push: &Received) {
    let expected = sha1_sorted(vec![
        "pushtoken".to_owned(),
        push.param("timestamp"),
        push.param("nonce"),
    ]);
    assert_eq!(push.param("signature"), expected, "{}", push.target);
    let timestamp: u64 = push.param("timestamp").parse().unwrap();
    assert!(timestamp.abs_diff(crate::state::unix_now()) < 60);
}

const WAIT: Duration = Duration::from_secs(5);

/// Waits until the mock has counted `n` accepted pushes: it counts one once the receiver's
/// answer is in, a moment after the receiver saw it.
fn wait_for_pushes(mock: &MockWechat, n: u64) {
    let began = Instant::now();
    while mock.media_pushes() < n && began.elapsed() < WAIT {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mock.media_pushes(), n);
}

/// Fetches, then the push: returns the push after checking the fetch.
fn fetch_then_push(peer: &Peer) -> Received {
    let fetch = peer.next(WAIT).expect("the image fetched");
    assert!(fetch.target.starts_with("/img/"), "{}", fetch.target);
    let push = peer.next(WAIT).expect("a push");
    assert!(push.target.starts_with("/wechat/push?"), "{}", push.target);
    push
}

#[test]
fn msg_sec_check_needs_a_token_the_mock_issued() {
    let mock = mock();
    let body = r#"{"version":2,"scene":1,"openid":"oA","content":"hi"}"#;
    assert_eq!(post(&mock, "/wxa/msg_sec_check", body).errcode(), 41001);
    assert_eq!(check_text(&mock, "nope", "hi").errcode(), 40001);
    let (token, _) = stable_token(&mock, false);
    assert_eq!(check_text(&mock, &token, "hi").errcode(), 0);
    mock.expire_access_tokens();
    assert_eq!(check_text(&mock, &token, "hi").errcode(), 42001);
    assert_eq!(mock.msg_sec_check_calls(), 4);
}

#[test]
fn msg_sec_check_judges_text_by_the_configured_words() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let pass = check_text(&mock, &token, "小明 Alice");
    assert_eq!(pass.status, 200);
    assert_eq!(pass.header("Content-Type"), Some("text/plain"));
    let pass = pass.json();
    assert_eq!(
        (pass["errcode"].as_i64(), pass["errmsg"].as_str()),
        (Some(0), Some("ok"))
    );
    assert_eq!(pass["result"], json!({ "suggest": "pass", "label": 100 }));
    assert_eq!(pass["detail"].as_array().unwrap().len(), 1);
    assert_eq!(pass["detail"][0]["strategy"], "content_model");
    assert_eq!(pass["trace_id"].as_str().unwrap().len(), 26);

    let risky = check_text(&mock, &token, "一起来赌博").json();
    assert_eq!(
        risky["result"],
        json!({ "suggest": "risky", "label": 20001 })
    );
    assert_eq!(risky["detail"][1]["strategy"], "keyword");
    assert_eq!(risky["detail"][1]["keyword"], "赌博");
    assert_eq!(
        check_text(&mock, &token, "FUCK").json()["result"]["suggest"],
        "risky"
    );
    let review = check_text(&mock, &token, "please review-me").json();
    assert_eq!(review["result"]["suggest"], "review");

    let set = post(
        &mock,
        "/mock/msg_sec_check?risky=Bad%20Word,%20x9&review=",
        "",
    );
    assert_eq!(set.status, 200);
    assert_eq!(
        set.json(),
        json!({ "risky": ["Bad Word", "x9"], "review": [], "fault": null })
    );
    assert_eq!(
        check_text(&mock, &token, "赌博").json()["result"]["suggest"],
        "pass"
    );
    assert_eq!(
        check_text(&mock, &token, "a bad word").json()["result"]["suggest"],
        "risky"
    );
    assert_eq!(
        check_text(&mock, &token, "review-me").json()["result"]["suggest"],
        "pass"
    );
    mock.set_review_words(&["hmm"]);
    assert_eq!(
        check_text(&mock, &token, "hmm").json()["result"]["suggest"],
        "review"
    );
    mock.set_risky_words(&[]);
    assert_eq!(
        check_text(&mock, &token, "x9").json()["result"]["suggest"],
        "pass"
    );
}

#[test]
fn msg_sec_check_refuses_what_is_not_a_version_2_request() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    for body in [
        "",
        "not json",
        r#"{"scene":1,"openid":"oA","content":"x"}"#,
        r#"{"version":1,"scene":1,"openid":"oA","content":"x"}"#,
        r#"{"version":2,"scene":5,"openid":"oA","content":"x"}"#,
        r#"{"version":2,"scene":1,"openid":"","content":"x"}"#,
        r#"{"version":2,"scene":1,"openid":"oA"}"#,
        r#"{"version":2,"scene":1,"openid":"oA","content":7}"#,
    ] {
        let answer = post(&mock, &target("/wxa/msg_sec_check", &token), body);
        assert_eq!(answer.errcode(), 47001, "{body}");
    }
}

#[test]
fn msg_sec_check_fails_or_stalls_when_switched_to() {
    let mock = mock();
    let (token, _) = stable_token(&mock, false);
    let set = post(&mock, "/mock/msg_sec_check?fault=fail.-1", "");
    assert_eq!(set.json()["fault"], "fail.-1");
    assert_eq!(
        check_text(&mock, &token, "hi").body,
        r#"{"errcode":-1,"errmsg":"system error"}"#
    );
    // Words are kept when only the fault changes.
    assert_eq!(set.json()["risky"], json!(["赌博", "fuck"]));

    assert!(mock.set_msg_sec_check_fault(Some("slow.300")));
    let began = Instant::now();
    let slow = check_text(&mock, &token, "赌博");
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.json()["result"]["suggest"], "risky");

    assert!(mock.set_msg_sec_check_fault(Some("http.502")));
    assert_eq!(check_text(&mock, &token, "hi").status, 502);
    assert!(!mock.set_msg_sec_check_fault(Some("alice.1")));
    assert_eq!(
        post(&mock, "/mock/msg_sec_check?fault=alice.1", "").status,
        400
    );
    assert_eq!(check_text(&mock, &token, "hi").status, 502);
    post(&mock, "/mock/msg_sec_check?fault=none", "");
    assert_eq!(check_text(&mock, &token, "hi").errcode(), 0);
}

#[test]
fn media_check_async_fetches_the_image_and_pushes_a_signed_verdict() {
    let peer = Peer::start(Vec::new());
    let mock = pushing_to(&peer, None);
    let (token, _) = stable_token(&mock, false);
    let openid = mock.openid_for("alice");
    let answer = check_media(
        &mock,
        &token,
        &format!("{}/img/a1?k=s3cret", peer.url),
        &openid,
    );
    assert_eq!(answer.status, 200);
    let answer = answer.json();
    assert_eq!(
        (answer["errcode"].as_i64(), answer["errmsg"].as_str()),
        (Some(0), Some("ok"))
    );
    let trace_id = answer["trace_id"].as_str().unwrap().to_owned();

    let fetch = peer.next(WAIT).expect("the image fetched");
    assert_eq!(fetch.target, "/img/a1?k=s3cret");
    let push = peer.next(WAIT).expect("a push");
    assert_signed(&push);
    assert_eq!(push.param("encrypt_type"), "");
    let event: Value = serde_json::from_str(&push.body).unwrap();
    assert_eq!(event["ToUserName"], crate::MINI_PROGRAM_USERNAME);
    assert_eq!(event["MsgType"], "event");
    assert_eq!(event["Event"], "wxa_media_check");
    assert_eq!(event["appid"], DEFAULT_APPID);
    assert_eq!(event["trace_id"], trace_id.as_str());
    assert_eq!(event["version"], 2);
    assert_eq!(event["errcode"], 0);
    assert_eq!(event["result"], json!({ "suggest": "pass", "label": 100 }));
    assert_eq!(event["detail"][0]["suggest"], "pass");
    // The library opens what the mock pushed.
    let (_, query) = push.target.split_once('?').unwrap();
    assert_eq!(mock.push_keys().open(query, &push.body).unwrap(), push.body);
    assert_eq!(mock.media_check_calls(), 1);
    wait_for_pushes(&mock, 1);
    let stats = get(&mock, "/mock/stats").json();
    assert_eq!(
        (
            stats["media_check_async"].as_u64(),
            stats["media_pushes"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

#[test]
fn safe_mode_pushes_decrypt_to_the_event() {
    let peer = Peer::start(Vec::new());
    let mock = pushing_to(&peer, Some(AES_KEY));
    let (token, _) = stable_token(&mock, false);
    let openid = mock.openid_for("bob");
    mock.set_media_verdict(&openid, MediaVerdict::Suggest(Suggest::Review), 1);
    let answer = check_media(&mock, &token, &format!("{}/img/b", peer.url), &openid).json();
    let push = fetch_then_push(&peer);
    assert_signed(&push);
    assert_eq!(push.param("encrypt_type"), "aes");
    let body: Value = serde_json::from_str(&push.body).unwrap();
    assert_eq!(body["ToUserName"], crate::MINI_PROGRAM_USERNAME);
    let encrypt = body["Encrypt"].as_str().unwrap();
    let msg_signature = sha1_sorted(vec![
        "pushtoken".to_owned(),
        push.param("timestamp"),
        push.param("nonce"),
        encrypt.to_owned(),
    ]);
    assert_eq!(push.param("msg_signature"), msg_signature);

    // Decrypted here as a server would, without the mock's code. The key's last character
    // carries bits past the 32 bytes, which a strict base64 decoder refuses.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    assert!(STANDARD.decode(format!("{AES_KEY}=")).is_err());
    let key = lenient.decode(format!("{AES_KEY}=")).unwrap();
    assert_eq!(key.len(), 32);
    let ciphertext = STANDARD.decode(encrypt).unwrap();
    assert_eq!(ciphertext.len() % 32, 0);
    let plain =
        cbc::Decryptor::<Aes256>::new(key[..].try_into().unwrap(), key[..16].try_into().unwrap())
            .decrypt_padded_vec::<NoPadding>(&ciphertext)
            .unwrap();
    let pad = usize::from(*plain.last().unwrap());
    assert!((1..=32).contains(&pad));
    assert!(plain[plain.len() - pad..]
        .iter()
        .all(|&b| usize::from(b) == pad));
    let framed = &plain[16..plain.len() - pad];
    let length = u32::from_be_bytes(framed[..4].try_into().unwrap()) as usize;
    let (message, appid) = framed[4..].split_at(length);
    assert_eq!(appid, DEFAULT_APPID.as_bytes());
    let event: Value = serde_json::from_slice(message).unwrap();
    assert_eq!(event["Event"], "wxa_media_check");
    assert_eq!(event["trace_id"], answer["trace_id"]);
    assert_eq!(
        event["result"],
        json!({ "suggest": "review", "label": 20001 })
    );
}

#[test]
fn a_verdict_set_for_an_openid_applies_to_its_next_checks_only() {
    let peer = Peer::start(Vec::new());
    let mock = pushing_to(&peer, None);
    let (token, _) = stable_token(&mock, false);
    let set = post(&mock, "/mock/media_check?user=alice&suggest=risky", "");
    let alice = mock.openid_for("alice");
    assert_eq!(
        set.json()["verdict"],
        json!({ "openid": alice, "suggest": "risky", "times": 1 })
    );
    let url = format!("{}/img/x", peer.url);
    let suggest = |openid: &str| {
        check_media(&mock, &token, &url, openid);
        let event: Value = serde_json::from_str(&fetch_then_push(&peer).body).unwrap();
        event["result"]["suggest"].as_str().unwrap().to_owned()
    };
    assert_eq!(suggest(&mock.openid_for("bob")), "pass");
    assert_eq!(suggest(&alice), "risky");
    assert_eq!(suggest(&alice), "pass");
    let set = post(
        &mock,
        &format!("/mock/media_check?openid={alice}&suggest=review&times=2"),
        "",
    );
    assert_eq!(set.status, 200);
    assert_eq!(suggest(&alice), "review");
    assert_eq!(suggest(&alice), "review");
    assert_eq!(suggest(&alice), "pass");
    wait_for_pushes(&mock, 6);
}

#[test]
fn a_check_set_to_time_out_pushes_nothing() {
    let peer = Peer::start(Vec::new());
    let mock = pushing_to(&peer, None);
    let (token, _) = stable_token(&mock, false);
    post(&mock, "/mock/media_check?user=carol&suggest=timeout", "");
    let answer = check_media(
        &mock,
        &token,
        &format!("{}/img/c", peer.url),
        &mock.openid_for("carol"),
    );
    assert_eq!(answer.errcode(), 0);
    assert!(peer
        .next(WAIT)
        .expect("the image fetched")
        .target
        .starts_with("/img/"));
    assert!(peer.next(Duration::from_millis(500)).is_none());
    assert_eq!(mock.media_pushes(), 0);
}

#[test]
fn a_refused_push_is_retried() {
    let peer = Peer::start(vec![200, 503]);
    let mock = pushing_to(&peer, None);
    let (token, _) = stable_token(&mock, false);
    check_media(&mock, &token, &format!("{}/img/d", peer.url), "oD");
    let first = fetch_then_push(&peer);
    let again = peer.next(WAIT).expect("a second push");
    assert_eq!(first.body, again.body);
    assert_signed(&again);
    wait_for_pushes(&mock, 1);
}

#[test]
fn media_that_cannot_be_fetched_gets_no_push() {
    let peer = Peer::start(vec![404]);
    let mock = pushing_to(&peer, None);
    let (token, _) = stable_token(&mock, false);
    check_media(&mock, &token, &format!("{}/img/gone", peer.url), "oE");
    assert!(peer.next(WAIT).is_some());
    assert!(peer.next(Duration::from_millis(300)).is_none());
    assert_eq!(mock.media_pushes(), 0);
}

#[test]
fn media_check_async_checks_its_token_and_body_and_can_fail() {
    let peer = Peer::start(Vec::new());
    let mock = pushing_to(&peer, None);
    let url = format!("{}/img/f", peer.url);
    assert_eq!(check_media(&mock, "nope", &url, "oF").errcode(), 40001);
    let (token, _) = stable_token(&mock, false);
    for body in [
        json!({ "media_type": 2, "version": 2, "scene": 1, "openid": "oF" }),
        json!({ "media_url": url, "media_type": 3, "version": 2, "scene": 1, "openid": "oF" }),
        json!({ "media_url": url, "media_type": 2, "scene": 1, "openid": "oF" }),
        json!({ "media_url": url, "media_type": 2, "version": 2, "scene": 1 }),
    ] {
        let answer = post(
            &mock,
            &target("/wxa/media_check_async", &token),
            &body.to_string(),
        );
        assert_eq!(answer.errcode(), 47001, "{body}");
    }
    assert_eq!(
        post(&mock, "/mock/media_check?fault=fail.45011", "").json()["fault"],
        "fail.45011"
    );
    assert_eq!(check_media(&mock, &token, &url, "oF").errcode(), 45011);
    assert!(mock.set_media_check_fault(None));
    assert_eq!(check_media(&mock, &token, &url, "oF").errcode(), 0);
    fetch_then_push(&peer);
    // Nothing else went out: the refused calls started no check.
    assert!(peer.next(Duration::from_millis(300)).is_none());
}

#[test]
fn mock_media_check_refuses_bad_parameters() {
    let mock = mock();
    for query in [
        "",
        "user=alice",
        "suggest=risky",
        "user=alice&suggest=maybe",
        "user=a%20b&suggest=risky",
        "user=alice&openid=oA&suggest=risky",
        "openid=oA&suggest=risky&times=1001",
        "openid=oA&suggest=risky&times=-1",
        "fault=nope",
    ] {
        let answer = post(&mock, &format!("/mock/media_check?{query}"), "");
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(answer.errcode(), -1);
    }
}

#[test]
fn a_bad_push_configuration_stops_the_start() {
    for config in [
        MockConfig {
            push_url: Some("https://example.com/push".to_owned()),
            ..MockConfig::default()
        },
        MockConfig {
            push_aes_key: Some("short".to_owned()),
            ..MockConfig::default()
        },
    ] {
        let err = MockWechat::start(MockConfig {
            bind: "127.0.0.1:0".to_owned(),
            ..config
        })
        .err()
        .expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
