//! The shipped nginx forward-auth recipe (`deploy/nginx/forward-auth.conf`), run for real: nginx
//! in front of a small app backend, asking wxlogin's `GET /auth/verify` about every request. The
//! app must see the identity headers for a good token, never see a request without one (or with
//! forged identity headers only), and stop seeing a user's requests once they log out.

use crate::helpers::{spawn_app_with_mock, start_mock_wechat, TestDb};
use crate::on_both_backends;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";

/// A request through nginx: what it is, its headers, the status nginx must answer.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);

/// What the app backend received: each request's path and its `X-Wx-*` and `Authorization`
/// headers (names lowercased).
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A tiny HTTP backend on loopback that records each request and answers 200.
struct AppBackend {
    addr: SocketAddr,
    seen: Seen,
}

impl AppBackend {
    fn start() -> AppBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the app backend");
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let record = record.clone();
                std::thread::spawn(move || serve_one(stream, &record));
            }
        });
        AppBackend { addr, seen }
    }

    fn requests(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Serves the requests of one (keep-alive) connection from nginx.
fn serve_one(stream: TcpStream, seen: &Seen) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = stream.try_clone().expect("clone the app connection");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().to_string();
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                if name.starts_with("x-wx-") || name == "authorization" {
                    headers.push((name, value));
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path, headers));
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\napp";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// nginx, run in the foreground from a generated configuration that includes the shipped
/// recipe; stopped when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// `None` (said loudly) when nginx is not installed outside CI; in CI it must be.
    fn start(wxlogin: SocketAddr, app: SocketAddr) -> Option<Nginx> {
        if !Path::new(NGINX).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is missing in CI: .ci/run installs nginx-light"
            );
            eprintln!("\n!!!!!!!! SKIPPED: nginx is not installed (apt-get install nginx-light) !!!!!!!!\n");
            return None;
        }
        let dir = tempfile::tempdir().expect("a folder for nginx");
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let recipe: PathBuf =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/forward-auth.conf");
        let d = dir.path().display();
        let config = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               upstream wxlogin {{ server {wxlogin}; keepalive 8; }}\n\
               upstream app {{ server {app}; keepalive 8; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    include {recipe};\n  }}\n}}\n",
            recipe = recipe.display()
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut nginx = Nginx {
            child,
            addr,
            _dir: dir,
        };
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(exit)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(nginx._dir.path().join("error.log"))
                    .unwrap_or_default();
                panic!("nginx exited at start ({exit}): {log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not listen on {addr} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }

    /// `GET path` through nginx with these headers: the status.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> u16 {
        let mut stream = TcpStream::connect(self.addr).expect("connect to nginx");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("nginx answered: {answer:?}"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_passes_identity_headers_only_for_live_tokens(db: &TestDb) {
    let mock = start_mock_wechat(true);
    let app = spawn_app_with_mock(&mock, db);
    let backend = AppBackend::start();
    let wxlogin: SocketAddr = app.url.trim_start_matches("http://").parse().unwrap();
    let Some(nginx) = Nginx::start(wxlogin, backend.addr) else {
        return;
    };

    let login = app.post_form("/api/wxuser", &[("code", &mock.new_code("alice"))]);
    assert_eq!(login.status, 200, "{}", login.text);
    let bearer = login.body["token"].as_str().unwrap().to_string();
    let claims = crate::helpers::jwt_payload(&bearer);

    let cases: [Case; 3] = [
        ("no token", &[], 401),
        (
            "forged identity headers, no token",
            &[
                ("X-Wx-User-Id", "someone-else"),
                ("X-Wx-Openid", "o-forged"),
            ],
            401,
        ),
        (
            "a token that is not ours",
            &[("Authorization", "Bearer abc.def.ghi")],
            401,
        ),
    ];
    for (what, headers, status) in cases {
        assert_eq!(nginx.get("/app/orders", headers), status, "{what}");
    }
    assert!(
        backend.requests().is_empty(),
        "the app saw requests that had no valid token: {:?}",
        backend.requests()
    );

    let status = nginx.get(
        "/app/orders",
        &[("Authorization", &bearer), ("X-Wx-User-Id", "someone-else")],
    );
    assert_eq!(status, 200, "a valid token passes");
    let requests = backend.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (path, headers) = &requests[0];
    assert_eq!(path, "/app/orders");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        header("x-wx-user-id"),
        claims["sub"].as_str(),
        "the user id, not the forged one"
    );
    assert_eq!(header("x-wx-openid"), claims["openid"].as_str());
    assert_eq!(header("x-wx-session-id"), claims["sid"].as_str());
    assert_eq!(header("x-wx-unionid"), claims["unionid"].as_str());
    assert_eq!(
        header("authorization"),
        None,
        "the token is not passed on to the app"
    );

    let logout = app.send("POST", "/api/logout", &[], Some(&bearer), b"");
    assert!(
        (200..300).contains(&logout.status),
        "logout: {} {}",
        logout.status,
        logout.text
    );
    assert_eq!(
        nginx.get("/app/orders", &[("Authorization", &bearer)]),
        401,
        "after logout the token is refused"
    );
    assert_eq!(
        backend.requests().len(),
        1,
        "the app saw no request after the logout"
    );
}

on_both_backends!(nginx_passes_identity_headers_only_for_live_tokens);
