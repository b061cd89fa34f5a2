//! wxlogin patch: one client connection, served on its own thread.
//!
//! The original read each request's head byte by byte, handed the application a reader on the
//! socket for the body, and went on reading the next request while the application answered.
//! A slow client then held an application worker for as long as it trickled its body, a reset
//! peer panicked the connection thread, and nothing bounded the size of a head.
//!
//! Here the connection thread does all the reading: the head under size limits, then the whole
//! body (up to the limit the application chose for that route) under one deadline measured from
//! the request's first byte. Only then does the request reach the application, which answers into
//! memory; this thread writes the answer and reads the next request. Framing errors, oversized
//! heads and unsupported versions are answered here and the connection closed (RFC 9112).

use ascii::AsciiString;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::convert::TryFrom;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Header, Method};
use crate::request::{Body, ResponseBuffer};
use crate::util::RefinedTcpStream;
use crate::{Limits, Request};

/// Longest request line or header line (nginx's `large_client_header_buffers` default).
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Longest request head, request line and headers together.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in one request.
pub const MAX_HEADERS: usize = 100;
/// After an answer that closes the connection, the unread rest of a request is read and
/// discarded for at most this long and this much, so that the client sees the answer instead of
/// a reset (nginx's lingering close).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 1024 * 1024;

/// A ClientConnection stores a socket to a client and yields its requests.
pub struct ClientConnection {
    remote_addr: Option<SocketAddr>,
    /// The socket, read through a buffer and written directly (answers come whole).
    reader: BufReader<RefinedTcpStream>,
    limits: Arc<Limits>,
    /// The socket's read timeout when accepted (inherited from the listener): how long an idle
    /// connection may stay silent.
    idle_timeout: Option<Duration>,
    /// The read timeout last set on the socket, to skip setting the same one again.
    read_timeout: Option<Duration>,
    /// Set once no further request may be read: the client or an answer said `close`, a body was
    /// left unread, or the server is closing.
    no_more_requests: bool,
    /// Set by the server when it shuts down.
    server_closing: Arc<AtomicBool>,
    secure: bool,
}

/// wxlogin patch: a connection waiting for a thread to serve it. Dropped unserved (no thread
/// could be started for it), it is answered 503 and closed, instead of closed in silence.
pub struct Waiting(Option<ClientConnection>);

impl Waiting {
    pub fn new(connection: ClientConnection) -> Waiting {
        Waiting(Some(connection))
    }

    /// The connection, to serve it.
    pub fn take(&mut self) -> Option<ClientConnection> {
        self.0.take()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut connection) = self.0.take() {
            connection.refuse(503, "the server is out of threads; retry shortly");
            let _ = connection.reader.get_mut().shutdown_write();
        }
    }
}

/// Why a request could not be read; each has its own answer, or none.
enum ReadError {
    /// The peer closed, reset or went silent before a request started: close quietly.
    Gone,
    /// Answer with this status and close.
    Refuse(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        match e.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                ReadError::Refuse(408, "the request did not arrive in time")
            }
            ErrorKind::InvalidData => ReadError::Refuse(400, "malformed request"),
            _ => ReadError::Gone,
        }
    }
}

/// How the length of a request body is known (RFC 9112 §6.3).
enum Framing {
    None,
    Length(u64),
    Chunked,
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the socket.
    pub fn new(
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
        server_closing: Arc<AtomicBool>,
    ) -> ClientConnection {
        // A peer that already reset the connection has no address; its requests (if any were
        // read) get none either, and nothing unwraps it.
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();
        let idle_timeout = read_socket.read_timeout().ok().flatten();
        ClientConnection {
            remote_addr,
            reader: BufReader::with_capacity(4096, read_socket),
            limits,
            idle_timeout,
            read_timeout: idle_timeout,
            no_more_requests: false,
            server_closing,
            secure,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Serves every request of the connection: each is read whole, given to the application
    /// with `deliver` (queued for a worker, or handled right here), and its answer written back
    /// before the next is read. What `deliver` returns is dropped once the answer is written.
    pub fn serve(mut self, deliver: impl Fn(Request) -> Option<Box<dyn std::any::Any>>) {
        let (sender, answers) = mpsc::channel();
        while let Some((request, close_requested)) = self.next_request(&sender) {
            let held = deliver(request);
            if !self.write_answer(&answers) || close_requested.load(Ordering::Acquire) {
                self.no_more_requests = true;
            }
            drop(held);
            if self.no_more_requests {
                break;
            }
        }
        self.linger();
    }

    /// Waits for the application's answer to the request just delivered and writes it.
    fn write_answer(&mut self, answers: &Receiver<Vec<u8>>) -> bool {
        match answers.recv() {
            Ok(bytes) => self.write_all(&bytes),
            Err(_) => false,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> bool {
        let socket = self.reader.get_mut();
        socket.write_all(bytes).and_then(|()| socket.flush()).is_ok()
    }

    /// Reads the next request, or answers why it cannot and returns `None`.
    fn next_request(
        &mut self,
        answers: &mpsc::Sender<Vec<u8>>,
    ) -> Option<(Request, Arc<AtomicBool>)> {
        if self.no_more_requests || self.server_closing.load(Ordering::Acquire) {
            return None;
        }
        match self.read_request(answers) {
            Ok(found) => Some(found),
            Err(ReadError::Gone) => None,
            Err(ReadError::Refuse(status, why)) => {
                self.refuse(status, why);
                None
            }
        }
    }

    /// Answers a request this layer refuses, and marks the connection for closing.
    fn refuse(&mut self, status: u16, why: &str) {
        self.no_more_requests = true;
        let reason = crate::common::StatusCode(status).default_reason_phrase();
        let body = format!("{{\"status\":{status},\"message\":\"{why}\"}}");
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.write_all(answer.as_bytes());
    }

    /// After the last answer: stop writing, then read and drop what the client still sends for
    /// a moment, so that closing does not reset the connection before the answer is read.
    fn linger(&mut self) {
        let _ = self.reader.get_mut().shutdown_write();
        let _ = self.reader.get_mut().set_read_timeout(Some(LINGER_TIME));
        let deadline = Instant::now() + LINGER_TIME;
        let mut rest = (&mut self.reader).take(LINGER_BYTES);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match rest.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Sets the socket's read timeout for the next read from the socket: the idle timeout, or
    /// less when a deadline is nearer. Past the deadline, the read fails as timed out.
    fn arm(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        if !self.reader.buffer().is_empty() {
            return Ok(());
        }
        let wanted = match deadline {
            None => self.idle_timeout,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ErrorKind::TimedOut.into());
                }
                Some(self.idle_timeout.map_or(left, |idle| idle.min(left)))
            }
        };
        if wanted != self.read_timeout {
            self.reader.get_mut().set_read_timeout(wanted)?;
            self.read_timeout = wanted;
        }
        Ok(())
    }

    /// Reads one line ending in CRLF (or a bare LF), without its end, refusing lines longer than
    /// `MAX_LINE_BYTES` or that would take the head past `head_left` bytes.
    fn read_line(&mut self, deadline: Instant, head_left: &mut usize) -> Result<Vec<u8>, ReadError> {
        let mut line = Vec::new();
        loop {
            self.arm(Some(deadline))?;
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Err(ReadError::Gone);
            }
            let (taken, done) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if line.len() + taken > MAX_LINE_BYTES + 2 || taken > *head_left {
                return Err(ReadError::Refuse(431, "request header fields too large"));
            }
            line.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
            *head_left -= taken;
            if done {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
        }
    }

    /// Reads a request: its head under the size limits, then its body under the deadline.
    fn read_request(
        &mut self,
        answers: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(Request, Arc<AtomicBool>), ReadError> {
        // Waiting for a request to begin is bounded by the idle timeout only; from its first
        // byte on, the whole request must arrive within the body timeout.
        self.arm(None).map_err(|_| ReadError::Gone)?;
        match self.reader.fill_buf() {
            Ok([]) | Err(_) => return Err(ReadError::Gone),
            Ok(_) => {}
        }
        let deadline = Instant::now() + self.limits.body_timeout;
        let mut head_left = MAX_HEAD_BYTES;

        // RFC 9112 §2.2: empty lines before a request line are ignored (a few of them).
        let mut request_line = Vec::new();
        for _ in 0..4 {
            request_line = self.read_line(deadline, &mut head_left)?;
            if !request_line.is_empty() {
                break;
            }
        }
        let (method, path, version) = parse_request_line(&request_line)?;

        let mut headers = Vec::new();
        loop {
            let line = self.read_line(deadline, &mut head_left)?;
            if line.is_empty() {
                break;
            }
            if headers.len() == MAX_HEADERS {
                return Err(ReadError::Refuse(431, "too many request header fields"));
            }
            headers.push(parse_header(line)?);
        }

        let framing = framing(&headers, &version)?;
        let expects_continue = match find(&headers, "Expect") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            Some(_) => return Err(ReadError::Refuse(417, "expectation failed")),
        };
        if connection_says(&headers, "close")
            || (version == HTTPVersion(1, 0) && !connection_says(&headers, "keep-alive"))
        {
            self.no_more_requests = true;
        }

        let limit = (self.limits.body_limit)(&method, &path) as u64;
        let body = match framing {
            Framing::None => Body::Complete(Vec::new()),
            Framing::Length(0) => Body::Complete(Vec::new()),
            // Too large by its own account: the application refuses it unread.
            Framing::Length(n) if n > limit => Body::NotRead,
            Framing::Length(n) => {
                self.send_continue(expects_continue, &version);
                self.read_body(n, deadline, |r, out| {
                    r.take(n).read_to_end(out).map(|_| ())
                })
            }
            Framing::Chunked => {
                self.send_continue(expects_continue, &version);
                self.read_body(limit + 1, deadline, |r, out| {
                    chunked_transfer::Decoder::new(r)
                        .take(limit + 1)
                        .read_to_end(out)
                        .map(|_| ())
                })
            }
        };
        let body_length = match framing {
            Framing::Length(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => None,
        };
        if let Body::Complete(data) = &body {
            let declared = body_length.map(|n| n as u64);
            if declared.is_some_and(|n| n != data.len() as u64) {
                // The client closed in the middle of its body.
                return Err(ReadError::Gone);
            }
            if matches!(framing, Framing::Chunked) && data.len() as u64 > limit {
                // The rest of an oversized chunked body stays unread: close after the answer.
                self.no_more_requests = true;
            }
        } else {
            self.no_more_requests = true;
        }

        let close_requested = Arc::new(AtomicBool::new(false));
        let request = crate::request::received_request(
            self.secure,
            method,
            path,
            version,
            headers,
            self.remote_addr,
            body_length,
            body,
            ResponseBuffer::new(answers.clone()),
            self.no_more_requests,
            close_requested.clone(),
        );
        Ok((request, close_requested))
    }

    /// Reads a body whose reading `read` describes; a deadline or a reset while reading is
    /// reported inside the body, so the application answers it (408) from memory.
    fn read_body(
        &mut self,
        capacity: u64,
        deadline: Instant,
        read: impl FnOnce(&mut DeadlineReader<'_>, &mut Vec<u8>) -> io::Result<()>,
    ) -> Body {
        let mut data = Vec::with_capacity(capacity.min(64 * 1024) as usize);
        let mut reader = DeadlineReader {
            connection: self,
            deadline,
        };
        match read(&mut reader, &mut data) {
            Ok(()) => Body::Complete(data),
            Err(e) => Body::Failed(data, e.kind()),
        }
    }

    /// Sends `100 Continue` when the client waits for it before sending its body.
    fn send_continue(&mut self, expects_continue: bool, version: &HTTPVersion) {
        if expects_continue && *version >= HTTPVersion(1, 1) {
            self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
    }
}

/// Reads the connection's socket, each read bounded by the request's deadline.
struct DeadlineReader<'c> {
    connection: &'c mut ClientConnection,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.connection.arm(Some(self.deadline))?;
        self.connection.reader.read(buf)
    }
}

impl BufRead for DeadlineReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.connection.arm(Some(self.deadline))?;
        self.connection.reader.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.connection.reader.consume(amount)
    }
}

/// Decides how the body's length is known, refusing what RFC 9112 §6.3 says a server must not
/// guess at: both `Content-Length` and `Transfer-Encoding`, several or invalid lengths, and a
/// transfer coding other than a final `chunked`.
fn framing(headers: &[Header], version: &HTTPVersion) -> Result<Framing, ReadError> {
    let mut lengths = headers.iter().filter(|h| h.field.equiv("Content-Length"));
    let mut codings = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"));
    let length = lengths.next();
    let coding = codings.next();
    if lengths.next().is_some() {
        return Err(ReadError::Refuse(400, "several Content-Length headers"));
    }
    if codings.next().is_some() {
        return Err(ReadError::Refuse(400, "several Transfer-Encoding headers"));
    }
    match (length, coding) {
        (Some(_), Some(_)) => Err(ReadError::Refuse(
            400,
            "both Content-Length and Transfer-Encoding",
        )),
        (Some(length), None) => {
            let text = length.value.as_str();
            if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Refuse(400, "invalid Content-Length"));
            }
            text.parse()
                .map(Framing::Length)
                .map_err(|_| ReadError::Refuse(400, "invalid Content-Length"))
        }
        (None, Some(coding)) => {
            if *version < HTTPVersion(1, 1) {
                return Err(ReadError::Refuse(
                    400,
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            let codings: Vec<&str> = coding.value.as_str().split(',').map(str::trim).collect();
            match codings.as_slice() {
                [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
                [.., last] if last.eq_ignore_ascii_case("chunked") => Err(ReadError::Refuse(
                    501,
                    "only the chunked transfer coding is supported",
                )),
                _ => Err(ReadError::Refuse(400, "the body is not chunked last")),
            }
        }
        (None, None) => Ok(Framing::None),
    }
}

fn find<'h>(headers: &'h [Header], name: &'static str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Whether a `Connection` header lists `option`.
fn connection_says(headers: &[Header], option: &'static str) -> bool {
    headers
        .iter()
        .filter(|h| h.field.equiv("Connection"))
        .flat_map(|h| h.value.as_str().split(','))
        .any(|o| o.trim().eq_ignore_ascii_case(option))
}

fn parse_header(line: Vec<u8>) -> Result<Header, ReadError> {
    let line = AsciiString::from_ascii(line)
        .map_err(|_| ReadError::Refuse(400, "a header is not ASCII"))?;
    Header::from_str(line.as_str().trim())
        .map_err(|_| ReadError::Refuse(400, "malformed header field"))
}

/// Parses the request line, e.g. `GET / HTTP/1.1`. Versions other than 1.0 and 1.1 are
/// answered 505, anything that is not a request line 400.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), ReadError> {
    let bad = || ReadError::Refuse(400, "malformed request line");
    let line = std::str::from_utf8(line).map_err(|_| bad())?;
    let mut parts = line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let method: Method = method.parse().map_err(|_| bad())?;
    if path.is_empty() || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    let version = match version {
        "HTTP/1.0" => HTTPVersion(1, 0),
        "HTTP/1.1" => HTTPVersion(1, 1),
        v if v.len() == 8
            && v.starts_with("HTTP/")
            && v.as_bytes()[5].is_ascii_digit()
            && v.as_bytes()[6] == b'.'
            && v.as_bytes()[7].is_ascii_digit() =>
        {
            return Err(ReadError::Refuse(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ))
        }
        _ => return Err(bad()),
    };
    Ok((method, path.to_owned(), version))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_parse_request_line() {
        let Ok((method, path, ver)) = parse_request_line(b"GET /hello HTTP/1.1") else {
            panic!("a valid request line");
        };
        assert!(method == Method::Get);
        assert!(path == "/hello");
        assert!(ver == HTTPVersion(1, 1));

        for (line, status) in [
            (&b"GET /hello"[..], 400),
            (b"qsd qsd qsd", 400),
            (b"GET / HTTP/2.0", 505),
            (b"GET / HTTP/3.0", 505),
            (b"GET / HTTP/1.1 extra", 400),
            (b"GET  HTTP/1.1", 400),
        ] {
            match parse_request_line(line) {
                Err(ReadError::Refuse(s, _)) => assert_eq!(s, status, "{line:?}"),
                _ => panic!("{line:?} must be refused"),
            }
        }
    }

    fn header(name: &str, value: &str) -> Header {
        Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
    }

    #[test]
    fn framing_refuses_what_rfc_9112_forbids() {
        let v11 = HTTPVersion(1, 1);
        let cases: Vec<(Vec<Header>, Option<u16>, &str)> = vec![
            (vec![header("Content-Length", "5")], None, "one length"),
            (
                vec![header("Content-Length", "5"), header("Content-Length", "5")],
                Some(400),
                "duplicate length",
            ),
            (vec![header("Content-Length", "5x")], Some(400), "not a number"),
            (vec![header("Content-Length", "-1")], Some(400), "negative"),
            (vec![header("Content-Length", "+5")], Some(400), "signed"),
            (vec![header("Content-Length", "5, 5")], Some(400), "list"),
            (
                vec![header("Content-Length", "99999999999999999999999")],
                Some(400),
                "overflow",
            ),
            (
                vec![
                    header("Content-Length", "5"),
                    header("Transfer-Encoding", "chunked"),
                ],
                Some(400),
                "both",
            ),
            (vec![header("Transfer-Encoding", "chunked")], None, "chunked"),
            (
                vec![header("Transfer-Encoding", "gzip, chunked")],
                Some(501),
                "unknown coding",
            ),
            (
                vec![header("Transfer-Encoding", "chunked, gzip")],
                Some(400),
                "chunked not last",
            ),
        ];
        for (headers, expected, what) in cases {
            let got = match framing(&headers, &v11) {
                Ok(_) => None,
                Err(ReadError::Refuse(status, _)) => Some(status),
                Err(ReadError::Gone) => Some(0),
            };
            assert_eq!(got, expected, "{what}");
        }
    }
}
