//! The two HTTP calls the mock makes itself, as WeChat does for `media_check_async`:
//! fetching the image at `media_url` and pushing the verdict. A few lines over std's
//! `TcpStream` rather than an HTTP client crate, because both go to a server on the same
//! machine over plain `http://`, and the mock should stay quick to build.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a connection, a write or a read may take. WeChat gives a push receiver 5 s.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Room for an answer's status line and headers, beyond its body limit.
const HEAD_LIMIT: usize = 16 * 1024;

/// An `http://` URL, split for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// `host:port` as written, for the `Host` header.
    authority: String,
    /// `host:port` with port 80 when none was written, to connect to.
    connect: String,
    /// The path and the query, starting with `/`.
    target: String,
}

impl Url {
    /// Reads `http://host[:port][/path][?query]`; `None` for anything else (`https://`
    /// included: the mock speaks plain HTTP only).
    pub(crate) fn parse(url: &str) -> Option<Url> {
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        let target = target.split('#').next().unwrap_or_default();
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '@';
        if authority.is_empty() || authority.contains(bad_char) || target.contains(bad_char) {
            return None;
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let connect = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let target = match target.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if target.is_empty() => "/".to_owned(),
            None => target.to_owned(),
        };
        Some(Url {
            authority: authority.to_owned(),
            connect,
            target,
        })
    }

    /// The same URL with `query` added to its query string.
    pub(crate) fn with_query(&self, query: &str) -> Url {
        let separator = if self.target.contains('?') { '&' } else { '?' };
        Url {
            target: format!("{}{separator}{query}", self.target),
            ..self.clone()
        }
    }
}

/// `GET url`: the status and the body, which may be at most `limit` bytes.
///
/// Sent as HTTP/1.0 so that the server must neither keep the connection open nor send the
/// body in chunks, which this client does not decode.
pub(crate) fn get(url: &Url, limit: usize) -> io::Result<(u16, Vec<u8>)> {
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: mock-wechat\r\n\r\n",
        url.target, url.authority
    );
    exchange(url, request.as_bytes(), limit)
}

/// `POST url` with a JSON body: the status of the answer.
pub(crate) fn post_json(url: &Url, body: &str) -> io::Result<u16> {
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mock-wechat\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.target,
        url.authority,
        body.len()
    );
    exchange(url, request.as_bytes(), HEAD_LIMIT).map(|(status, _)| status)
}

fn exchange(url: &Url, request: &[u8], limit: usize) -> io::Result<(u16, Vec<u8>)> {
    let addr = url
        .connect
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{} resolves to no address", url.connect)))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    let cap = (limit + HEAD_LIMIT) as u64;
    stream.take(cap + 1).read_to_end(&mut raw)?;
    let head_end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("the answer has no complete head"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other("the answer has no status"))?;
    let mut body = raw.split_off(head_end + 4);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(length) = length {
        body.truncate(length);
    }
    if body.len() > limit {
        return Err(io::Error::other(format!(
            "the body is longer than {limit} bytes"
        )));
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn parse_reads_plain_http_urls_only() {
        let url = Url::parse("http://127.0.0.1:8080/wechat/push?x=1#frag").unwrap();
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.connect, "127.0.0.1:8080");
        assert_eq!(url.target, "/wechat/push?x=1");
        assert_eq!(url.with_query("a=b").target, "/wechat/push?x=1&a=b");
        let bare = Url::parse("HTTP://localhost").unwrap();
        assert_eq!(bare.connect, "localhost:80");
        assert_eq!(bare.with_query("a=b").target, "/?a=b");
        assert_eq!(Url::parse("http://[::1]/p").unwrap().connect, "[::1]:80");
        assert_eq!(Url::parse("http://[::1]:9/p").unwrap().connect, "[::1]:9");
        assert_eq!(Url::parse("http://h?q").unwrap().target, "/?q");
        for bad in [
            "https://h/",
            "ftp://h",
            "http://",
            "http:///p",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert_eq!(Url::parse(bad), None, "{bad}");
        }
    }

    /// Answers one request with `answer` and hands back what it received.
    fn serve_once(answer: &'static str) -> (Url, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/img", listener.local_addr().unwrap())).unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = vec![0; 4096];
            let n = stream.read(&mut received).unwrap();
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&received[..n]).into_owned()
        });
        (url, server)
    }

    #[test]
    fn get_reads_the_status_and_the_body_up_to_a_limit() {
        let (url, server) = serve_once("HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nPNG!");
        assert_eq!(get(&url, 10).unwrap(), (200, b"PNG!".to_vec()));
        assert!(server.join().unwrap().starts_with("GET /img HTTP/1.0\r\n"));
        let (url, _server) = serve_once("HTTP/1.0 200 OK\r\n\r\n0123456789ABC");
        assert!(get(&url, 10).is_err());
    }

    #[test]
    fn post_json_sends_the_body_and_reads_the_status() {
        let (url, server) = serve_once("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(post_json(&url.with_query("s=1"), "{}").unwrap(), 500);
        let received = server.join().unwrap();
        assert!(
            received.starts_with("POST /img?s=1 HTTP/1.1\r\n"),
            "{received}"
        );
        assert!(received.ends_with("\r\n\r\n{}"), "{received}");
    }
}
