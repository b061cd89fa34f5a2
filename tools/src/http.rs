//! A minimal HTTP/1.1 client over one `TcpStream` and the request writers both tools use: the
//! bench's load generator drives wxlogin with it (keep-alive, as few CPU cycles as possible), and
//! the drill's open-port phases send honest requests beside their attacks with it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::SockRef;

/// Appends a `GET` request, with an `Authorization` header when `auth` is given.
pub fn write_get(out: &mut Vec<u8>, path: &str, auth: Option<&str>) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(auth) = auth {
        out.extend_from_slice(b"Authorization: ");
        out.extend_from_slice(auth.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a form `POST` request whose body is `body` (already URL-encoded).
pub fn write_form_post(out: &mut Vec<u8>, path: &str, body: &str) {
    // `write!` into a Vec cannot fail.
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// The status of `GET path` on a new connection to `addr`, `None` without an answer within
/// `timeout`: readiness polls and the drill's honest `/healthz` beside its attacks.
pub fn get_status(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    let mut request = Vec::new();
    write_get(&mut request, path, None);
    let mut client = HttpClient::new(addr);
    client.set_timeout(timeout);
    client.send(&request).ok()
}

/// Bound on any single read or write, so a hung server fails the request instead of the run.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head accepted; ours are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// A minimal HTTP/1.1 client over one `TcpStream`: keep-alive by default, reconnecting when the
/// server answered `Connection: close` (as mock-wechat does) or the connection broke.
pub struct HttpClient {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Bytes read from the socket: the response head and body of the last answer.
    buf: Vec<u8>,
    /// The decoded body of the last answer.
    body: Vec<u8>,
    /// TCP connections opened so far.
    pub connects: u64,
    /// Read and write timeout of the connection.
    timeout: Duration,
}

/// What the head of a response says about its body and the connection.
struct Head {
    status: u16,
    /// Bytes of `buf` the head (with its blank line) takes.
    len: usize,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> Self {
        HttpClient {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
            body: Vec::with_capacity(1024),
            connects: 0,
            timeout: IO_TIMEOUT,
        }
    }

    /// Sets the read and write timeout, now and for later connections.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        if let Some(stream) = &self.stream {
            let _ = stream.set_read_timeout(Some(timeout));
            let _ = stream.set_write_timeout(Some(timeout));
        }
    }

    /// Opens the connection unless one is open.
    pub fn ensure_connected(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)?;
            self.connects += 1;
            // Requests are written in one piece; Nagle would only add delay to small writes.
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_mut().expect("just set"))
    }

    /// Sends one complete request and reads the whole answer; returns its status. The body is
    /// then in [`HttpClient::body`]. Any error drops the connection, so the next call reconnects.
    pub fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        let result = self.exchange(request);
        match &result {
            Ok((_, true)) | Err(_) => {
                if let Some(stream) = self.stream.take() {
                    abort(stream);
                }
            }
            Ok((_, false)) => {}
        }
        result.map(|(status, _)| status)
    }

    /// The body of the last answer.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Writes the request and reads the answer; returns the status and whether to close.
    fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, bool)> {
        self.ensure_connected()?.write_all(request)?;
        self.buf.clear();
        self.body.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too long"));
            }
            self.fill()?;
        };
        if head.chunked {
            self.read_chunked(head.len)?;
        } else if let Some(length) = head.content_length {
            while self.buf.len() < head.len + length {
                self.fill()?;
            }
            self.body
                .extend_from_slice(&self.buf[head.len..head.len + length]);
        } else if head.status == 204 || head.status == 304 || (100..200).contains(&head.status) {
            // No body by definition.
        } else {
            // Neither length nor chunks: the body runs to the end of the connection.
            while self.fill_or_eof()? > 0 {}
            self.body.extend_from_slice(&self.buf[head.len..]);
            return Ok((head.status, true));
        }
        Ok((head.status, head.close))
    }

    /// Decodes a chunked body that starts at `buf[start..]`.
    fn read_chunked(&mut self, start: usize) -> io::Result<()> {
        let mut at = start;
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[at..], b"\r\n") {
                    break at + i;
                }
                self.fill()?;
            };
            let size_text = std::str::from_utf8(&self.buf[at..line_end])
                .map_err(|_| invalid("bad chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            at = line_end + 2;
            if size == 0 {
                // Trailers (none expected) end with a blank line.
                while find(&self.buf[at..], b"\r\n").is_none() {
                    self.fill()?;
                }
                return Ok(());
            }
            while self.buf.len() < at + size + 2 {
                self.fill()?;
            }
            self.body.extend_from_slice(&self.buf[at..at + size]);
            at += size + 2;
        }
    }

    /// Reads more bytes; the connection ending here is an error (the answer is incomplete).
    fn fill(&mut self) -> io::Result<()> {
        if self.fill_or_eof()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the answer was complete",
            ));
        }
        Ok(())
    }

    /// Reads more bytes; returns how many (0 at the end of the connection).
    fn fill_or_eof(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let stream = self.stream.as_mut().expect("connected");
        let n = stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// Closes with a reset instead of a FIN, so this side keeps no TIME_WAIT socket.
///
/// mock-wechat answers every request with `Connection: close` but leaves the closing to the
/// client, so each request would otherwise park one of the ~28,000 ephemeral loopback ports in
/// TIME_WAIT for 60 s: one mock-wechat row at 7,000 requests/s left about 20,000 of them, in the
/// same port range wxlogin needs for its own upstream connections during the next rows. The
/// answer has been read in full, so nothing is lost.
pub fn abort(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Parses the status line and the headers we need, once the blank line has arrived.
fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let mut head = Head {
        status,
        len: end + 4,
        content_length: None,
        chunked: false,
        // HTTP/1.0 closes unless asked otherwise; we never ask.
        close: version != "HTTP/1.1",
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(value.parse().map_err(|_| invalid("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(head))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves each accepted connection with the canned answers, one per request read.
    fn serve(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                loop {
                    let mut buf = [0u8; 4096];
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let Some(answer) = answers.next() else { return };
                    stream.write_all(answer.as_bytes()).unwrap();
                    if answer.contains("Connection: close") {
                        break;
                    }
                }
            }
        });
        addr
    }

    #[test]
    fn keeps_the_connection_alive_and_reconnects_after_close() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno!",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ]);
        let mut client = HttpClient::new(addr);
        let mut request = Vec::new();
        write_get(&mut request, "/x", None);
        assert_eq!(client.send(&request).unwrap(), 200);
        assert_eq!(client.body(), b"hi");
        assert_eq!(client.send(&request).unwrap(), 401);
        assert_eq!(client.body(), b"no!");
        assert_eq!(client.connects, 1);
        assert_eq!(client.send(&request).unwrap(), 200);
        assert_eq!(client.body(), b"abcde");
        assert_eq!(client.connects, 2);
    }
}
