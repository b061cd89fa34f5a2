//! Tests of the mock over real HTTP, with a tiny std-only client so that what goes on the
//! wire (status, headers, body) is checked exactly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::{MockConfig, MockWechat, DEFAULT_APPID, DEFAULT_SECRET};

mod content_security;
mod open_data;
mod phone;
mod stable_token;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {:?}", self.body))
    }

    fn errcode(&self) -> i64 {
        self.json()["errcode"].as_i64().expect("an errcode")
    }
}

fn request(addr: SocketAddr, method: &str, target: &str) -> Answer {
    request_with_body(addr, method, target, "")
}

fn request_with_body(addr: SocketAddr, method: &str, target: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let length = body.len();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\
         Content-Length: {length}\r\n\r\n{body}"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .map(|line| {
            let (key, value) = line.split_once(':').unwrap();
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    Answer {
        status: status.parse().unwrap(),
        headers,
        body: body.to_owned(),
    }
}

fn get(mock: &MockWechat, target: &str) -> Answer {
    request(mock.addr(), "GET", target)
}

fn post(mock: &MockWechat, target: &str, body: &str) -> Answer {
    request_with_body(mock.addr(), "POST", target, body)
}

fn start(config: MockConfig) -> MockWechat {
    MockWechat::start(MockConfig {
        bind: "127.0.0.1:0".to_owned(),
        threads: 4,
        ..config
    })
    .unwrap()
}

fn mock() -> MockWechat {
    start(MockConfig::default())
}

fn jscode2session_target(appid: &str, secret: &str, code: &str, grant_type: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("appid", appid)
        .append_pair("secret", secret)
        .append_pair("js_code", code)
        .append_pair("grant_type", grant_type)
        .finish();
    format!("/sns/jscode2session?{query}")
}

fn login(mock: &MockWechat, code: &str) -> Answer {
    let target = jscode2session_target(DEFAULT_APPID, DEFAULT_SECRET, code, "authorization_code");
    get(mock, &target)
}

#[test]
fn jscode2session_logs_in_with_a_stable_openid_and_a_fresh_session_key() {
    let mock = mock();
    let first = login(&mock, &mock.new_code("alice"));
    let second = login(&mock, &mock.new_code("alice"));
    assert_eq!(first.status, 200);
    assert_eq!(first.header("Content-Type"), Some("text/plain"));
    let (first, second) = (first.json(), second.json());

    let openid = first["openid"].as_str().unwrap();
    assert_eq!(openid, second["openid"]);
    assert_eq!(openid, mock.openid_for("alice"));
    assert_eq!(openid.len(), 28);
    assert!(openid.starts_with('o'));
    assert!(first.get("errcode").is_none());
    assert!(first.get("unionid").is_none());

    let key = first["session_key"].as_str().unwrap();
    assert_eq!(key.len(), 24);
    assert_eq!(STANDARD.decode(key).unwrap().len(), 16);
    assert_ne!(key, second["session_key"]);
}

#[test]
fn jscode2session_gives_each_user_an_own_openid() {
    let mock = mock();
    let alice = login(&mock, "alice.1").json();
    let bob = login(&mock, "bob.1").json();
    assert_ne!(alice["openid"], bob["openid"]);
    assert_eq!(bob["openid"], mock.openid_for("bob"));
}

#[test]
fn jscode2session_returns_a_unionid_per_user_across_apps_when_enabled() {
    let first = start(MockConfig {
        unionid: true,
        ..MockConfig::default()
    });
    let other_app = start(MockConfig {
        unionid: true,
        appid: "wxffffffffffffffff".to_owned(),
        ..MockConfig::default()
    });
    let answer = login(&first, "alice.1").json();
    let target = jscode2session_target(
        "wxffffffffffffffff",
        DEFAULT_SECRET,
        "alice.1",
        "authorization_code",
    );
    let in_other_app = get(&other_app, &target).json();

    let unionid = answer["unionid"].as_str().unwrap();
    assert_eq!(unionid, first.unionid_for("alice"));
    assert_eq!(unionid.len(), 28);
    assert!(unionid.starts_with('u'));
    assert_eq!(unionid, in_other_app["unionid"]);
    assert_ne!(answer["openid"], in_other_app["openid"]);
    assert_eq!(in_other_app["openid"], other_app.openid_for("alice"));
}

#[test]
fn jscode2session_returns_40013_when_appid_is_wrong_or_missing() {
    let mock = mock();
    let wrong = jscode2session_target(
        "wx0000000000000000",
        DEFAULT_SECRET,
        "a.1",
        "authorization_code",
    );
    let answer = get(&mock, &wrong);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, r#"{"errcode":40013,"errmsg":"invalid appid"}"#);
    let missing = format!("/sns/jscode2session?secret={DEFAULT_SECRET}&js_code=a.1");
    assert_eq!(get(&mock, &missing).errcode(), 40013);
}

#[test]
fn jscode2session_returns_40125_when_secret_is_wrong() {
    let mock = mock();
    let target = jscode2session_target(DEFAULT_APPID, "nope", "a.1", "authorization_code");
    let answer = get(&mock, &target);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#
    );
}

#[test]
fn jscode2session_returns_40002_when_grant_type_is_wrong() {
    let mock = mock();
    let target = jscode2session_target(DEFAULT_APPID, DEFAULT_SECRET, "a.1", "client_credential");
    assert_eq!(
        get(&mock, &target).body,
        r#"{"errcode":40002,"errmsg":"invalid grant_type"}"#
    );
}

#[test]
fn jscode2session_returns_41008_when_code_is_missing() {
    let mock = mock();
    let empty = login(&mock, "");
    assert_eq!(empty.body, r#"{"errcode":41008,"errmsg":"missing code"}"#);
    let target = format!(
        "/sns/jscode2session?appid={DEFAULT_APPID}&secret={DEFAULT_SECRET}&grant_type=authorization_code"
    );
    assert_eq!(get(&mock, &target).errcode(), 41008);
}

#[test]
fn jscode2session_returns_40163_when_code_is_reused() {
    let mock = mock();
    let code = mock.new_code("alice");
    assert!(login(&mock, &code).json()["openid"].is_string());
    let again = login(&mock, &code);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, r#"{"errcode":40163,"errmsg":"code been used"}"#);
}

#[test]
fn jscode2session_returns_40029_when_code_is_malformed() {
    let mock = mock();
    for code in [
        "alice", "alice.", ".1", "al ice.1", "a.b.c", "fail.x", "http.99", "slow.1s",
    ] {
        let answer = login(&mock, code);
        assert_eq!(answer.status, 200, "{code:?}");
        assert_eq!(
            answer.body, r#"{"errcode":40029,"errmsg":"invalid code"}"#,
            "{code:?}"
        );
    }
}

#[test]
fn jscode2session_fail_codes_answer_that_errcode_every_time() {
    let mock = mock();
    let cases = [
        ("fail.40029", r#"{"errcode":40029,"errmsg":"invalid code"}"#),
        (
            "fail.45011",
            r#"{"errcode":45011,"errmsg":"api minute-quota reach limit mustslower retry next minute"}"#,
        ),
        (
            "fail.40226",
            r#"{"errcode":40226,"errmsg":"invalid code, this is a high risk user"}"#,
        ),
        ("fail.-1", r#"{"errcode":-1,"errmsg":"system error"}"#),
        (
            "fail.40163",
            r#"{"errcode":40163,"errmsg":"code been used"}"#,
        ),
        ("fail.12345", r#"{"errcode":12345,"errmsg":"mock error"}"#),
    ];
    for (code, body) in cases {
        for _ in 0..2 {
            let answer = login(&mock, code);
            assert_eq!(answer.status, 200, "{code}");
            assert_eq!(answer.header("Content-Type"), Some("text/plain"));
            assert_eq!(answer.body, body, "{code}");
        }
    }
}

#[test]
fn jscode2session_http_codes_answer_that_status_with_html() {
    let mock = mock();
    for status in [500, 502, 429] {
        let answer = login(&mock, &format!("http.{status}"));
        assert_eq!(answer.status, status);
        assert_eq!(answer.body, format!("<html>{status}</html>"));
        assert_eq!(answer.header("Content-Type"), Some("text/html"));
    }
}

#[test]
fn jscode2session_garbage_codes_answer_200_with_a_body_that_is_not_json() {
    let mock = mock();
    let answer = login(&mock, "garbage.anything");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "this is not json");
    assert_eq!(answer.header("Content-Type"), Some("text/plain"));
}

#[test]
fn jscode2session_slow_codes_wait_then_log_in_as_slow_and_can_repeat() {
    let mock = mock();
    for _ in 0..2 {
        let began = Instant::now();
        let answer = login(&mock, "slow.300").json();
        assert!(began.elapsed() >= Duration::from_millis(300));
        assert_eq!(answer["openid"], mock.openid_for("slow"));
    }
}

#[test]
fn jscode2session_waits_out_the_configured_latency_on_every_answer() {
    let mock = start(MockConfig {
        latency: Duration::from_millis(300),
        ..MockConfig::default()
    });
    for code in ["fail.40029", "alice.1"] {
        let began = Instant::now();
        login(&mock, code);
        assert!(began.elapsed() >= Duration::from_millis(300), "{code}");
    }
    let began = Instant::now();
    assert_eq!(get(&mock, "/healthz").body, "ok");
    assert!(began.elapsed() < Duration::from_millis(300));
}

#[test]
fn mock_code_mints_fresh_codes_that_log_in_as_that_user() {
    let mock = mock();
    let answer = get(&mock, "/mock/code?user=carol_9");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("text/plain"));
    let nonce = answer.body.strip_prefix("carol_9.").expect(&answer.body);
    assert_eq!(nonce.len(), 12);
    assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(answer.body, get(&mock, "/mock/code?user=carol_9").body);
    assert_eq!(
        login(&mock, &answer.body).json()["openid"],
        mock.openid_for("carol_9")
    );
}

#[test]
fn mock_code_returns_400_for_invalid_or_reserved_users() {
    let mock = mock();
    for target in [
        "/mock/code",
        "/mock/code?user=",
        "/mock/code?user=a%20b",
        "/mock/code?user=a.b",
        "/mock/code?user=fail",
        "/mock/code?user=slow",
        "/mock/code?user=%FF",
    ] {
        let answer = get(&mock, target);
        assert_eq!(answer.status, 400, "{target}");
        assert!(answer.body.contains("1 to 32"), "{}", answer.body);
    }
}

#[test]
fn new_code_for_an_unusable_user_gets_40029() {
    let mock = mock();
    for user in ["", "a b", "garbage", "fail", "slow", "fail.40029"] {
        let code = mock.new_code(user);
        assert_eq!(
            login(&mock, &code).errcode(),
            40029,
            "{user:?} gave {code:?}"
        );
    }
}

#[test]
fn mock_stats_counts_every_jscode2session_answer() {
    let mock = mock();
    assert_eq!(get(&mock, "/mock/stats").json()["jscode2session"], 0);
    login(&mock, &mock.new_code("alice"));
    login(&mock, "fail.-1");
    login(&mock, "http.500");
    get(&mock, "/sns/jscode2session");
    request(mock.addr(), "POST", "/sns/jscode2session");
    get(&mock, "/healthz");
    get(&mock, "/mock/code?user=alice");
    assert_eq!(mock.jscode2session_calls(), 5);
    let stats = get(&mock, "/mock/stats");
    assert_eq!(stats.header("Content-Type"), Some("application/json"));
    assert_eq!(
        stats.body,
        r#"{"jscode2session":5,"stable_token":0,"tokens_minted":0,"getuserphonenumber":0,"msg_sec_check":0,"media_check_async":0,"media_pushes":0}"#
    );
}

#[test]
fn healthz_answers_ok() {
    let mock = mock();
    let answer = get(&mock, "/healthz");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
}

#[test]
fn unknown_paths_answer_404_and_wrong_methods_405() {
    let mock = mock();
    let answer = get(&mock, "/cgi-bin/token");
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.body,
        r#"{"errcode":-1,"errmsg":"mock-wechat: no such endpoint"}"#
    );
    for path in [
        "/sns/jscode2session",
        "/mock/code",
        "/mock/phone_code",
        "/mock/userinfo",
        "/mock/stats",
        "/healthz",
    ] {
        let answer = request(mock.addr(), "POST", path);
        assert_eq!(answer.status, 405, "{path}");
        assert_eq!(answer.header("Allow"), Some("GET"));
        assert_eq!(answer.errcode(), -1);
    }
    for path in [
        "/cgi-bin/stable_token",
        "/wxa/business/getuserphonenumber",
        "/wxa/msg_sec_check",
        "/wxa/media_check_async",
        "/mock/expire_tokens",
        "/mock/msg_sec_check",
        "/mock/media_check",
    ] {
        let answer = request(mock.addr(), "GET", path);
        assert_eq!(answer.status, 405, "{path}");
        assert_eq!(answer.header("Allow"), Some("POST"));
        assert_eq!(answer.errcode(), -1);
    }
    let head = request(mock.addr(), "HEAD", "/healthz");
    assert_eq!((head.status, head.body.as_str()), (405, ""));
}

#[test]
fn every_answer_asks_the_client_to_close_the_connection() {
    let mock = mock();
    for target in ["/healthz", "/nope", "/mock/code?user=a"] {
        assert_eq!(get(&mock, target).header("Connection"), Some("close"));
    }
    assert_eq!(login(&mock, "a.1").header("Connection"), Some("close"));
}

#[test]
fn garbage_requests_do_not_stop_the_mock() {
    let mock = mock();
    for raw in [
        "NOT HTTP AT ALL\r\n\r\n",
        "GET /sns/jscode2session?js_code=%ZZ%&appid=%FF HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET \u{7f}\u{1} HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        "POST /cgi-bin/stable_token HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n\r\n",
        "POST /cgi-bin/stable_token HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\u{0}\u{ff}\"{",
        "POST /wxa/business/getuserphonenumber?access_token=%ZZ%FF HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        "POST /wxa/business/getuserphonenumber?access_token HTTP/1.1\r\nContent-Length: x\r\nConnection: close\r\n\r\n",
        "GET /mock/userinfo?user=%00&gender=-&nickName=%ZZ HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /mock/phone_code?user&phone&country HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(mock.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
    assert_eq!(get(&mock, "/healthz").body, "ok");
}

#[test]
fn base_url_reaches_the_mock_even_when_listening_on_all_addresses() {
    let mock = start(MockConfig {
        bind: "0.0.0.0:0".to_owned(),
        ..MockConfig::default()
    });
    let url = mock.base_url();
    let port = mock.addr().port();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    assert_eq!(request(addr, "GET", "/healthz").body, "ok");
}

#[test]
fn start_fails_when_the_port_is_taken_or_there_are_no_threads() {
    let mock = mock();
    let taken = MockWechat::start(MockConfig {
        bind: mock.addr().to_string(),
        ..MockConfig::default()
    });
    assert_eq!(
        taken.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::AddrInUse)
    );
    let no_threads = MockWechat::start(MockConfig {
        bind: "127.0.0.1:0".to_owned(),
        threads: 0,
        ..MockConfig::default()
    });
    assert!(no_threads.is_err());
}

#[test]
fn stop_frees_the_port_and_cuts_sleeping_requests_short() {
    let mock = mock();
    let addr = mock.addr();
    let slow = thread::spawn(move || {
        let target = jscode2session_target(
            DEFAULT_APPID,
            DEFAULT_SECRET,
            "slow.60000",
            "authorization_code",
        );
        request(addr, "GET", &target)
    });
    // Give the slow request time to reach the mock: one queued after stop began would
    // never be answered.
    thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    mock.stop();
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(TcpStream::connect(addr).is_err());
    let answer = slow.join().unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.body,
        r#"{"errcode":-1,"errmsg":"mock-wechat: shutting down"}"#
    );
}

#[test]
fn keep_alive_answers_several_requests_on_one_connection() {
    let mock = MockWechat::start(MockConfig {
        bind: "127.0.0.1:0".to_owned(),
        keep_alive: true,
        ..MockConfig::default()
    })
    .unwrap();
    let mut stream = TcpStream::connect(mock.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: mock\r\n\r\n")
            .unwrap();
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
}
