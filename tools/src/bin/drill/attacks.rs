//! The hostile clients: slow clients that hold connections to nginx open without ever
//! finishing a request, and a request that declares a body of a terabyte.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A slow client sends its next header byte this often (and checks this often whether nginx
/// has closed the connection).
const DRIP_EVERY: Duration = Duration::from_secs(2);
/// The request head slow clients send byte by byte, never reaching its blank line.
const SLOW_HEAD: &[u8] = b"POST /api/wxuser HTTP/1.1\r\nHost: login.example.com\r\n\
    Content-Type: application/x-www-form-urlencoded\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
/// The declared body of the huge request: a terabyte, never sent.
pub const HUGE_LENGTH: u64 = 1_000_000_000_000;

/// A rustls client configuration that trusts exactly the drill's certificate (DER).
pub fn tls_config(cert_der: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert_der.to_vec()))
        .map_err(|e| format!("the drill's certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("rustls: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A TLS connection to 127.0.0.1:`port`; the handshake happens on first use.
fn tls_connect(
    port: u16,
    config: &Arc<ClientConfig>,
    read_timeout: Duration,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(read_timeout))?;
    tcp.set_write_timeout(Some(read_timeout))?;
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let connection =
        ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    Ok(StreamOwned::new(connection, tcp))
}

/// The kinds of slow client, in the proportions they are opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlowKind {
    /// Completes the TLS handshake on the HTTPS port, then drips a request head.
    TlsDrip,
    /// Connects to the HTTPS port and never sends a byte (not even a ClientHello).
    TlsSilent,
    /// Drips a request head on the plain-HTTP port (the shipped redirect to HTTPS).
    HttpDrip,
}

impl SlowKind {
    pub const ALL: [SlowKind; 3] = [SlowKind::TlsDrip, SlowKind::TlsSilent, SlowKind::HttpDrip];

    pub fn describe(self) -> &'static str {
        match self {
            SlowKind::TlsDrip => "HTTPS port, TLS then a header byte every 2 s",
            SlowKind::TlsSilent => "HTTPS port, no byte sent",
            SlowKind::HttpDrip => "HTTP port, a header byte every 2 s",
        }
    }
}

/// How one slow client ended.
pub struct SlowResult {
    pub kind: SlowKind,
    /// Whether its connection (and TLS handshake, for [`SlowKind::TlsDrip`]) was accepted.
    pub opened: bool,
    /// When nginx closed it, counted from the connect; `None` if it was still open at the end.
    pub dropped_after: Option<Duration>,
}

/// Slow clients running, one thread each.
pub struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Clients whose connection has ended (closed by nginx, or never opened).
    ended: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<SlowResult>>,
}

impl SlowClients {
    /// Opens `count` slow clients to nginx's HTTPS and HTTP ports, kinds taken in turn.
    pub fn start(count: usize, https: u16, http: u16, tls: &Arc<ClientConfig>) -> SlowClients {
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|i| {
                let kind = SlowKind::ALL[i % SlowKind::ALL.len()];
                let (stop, ended, tls) = (Arc::clone(&stop), Arc::clone(&ended), Arc::clone(tls));
                std::thread::spawn(move || {
                    let result = slow_client(kind, https, http, &tls, &stop);
                    ended.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        SlowClients {
            stop,
            ended,
            threads,
        }
    }

    /// Whether every client's connection has ended.
    pub fn all_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst) == self.threads.len()
    }

    /// Closes the clients still open and returns how each ended (within [`DRIP_EVERY`]).
    pub fn finish(mut self) -> Vec<SlowResult> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .drain(..)
            .filter_map(|thread| thread.join().ok())
            .collect()
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One slow client: connects, then every [`DRIP_EVERY`] sends one more byte of a request head
/// that never ends (or nothing), until nginx closes the connection or `stop` is raised.
fn slow_client(
    kind: SlowKind,
    https: u16,
    http: u16,
    tls: &Arc<ClientConfig>,
    stop: &AtomicBool,
) -> SlowResult {
    let started = Instant::now();
    let stream: std::io::Result<Box<dyn ReadWrite>> = match kind {
        SlowKind::TlsDrip => tls_connect(https, tls, DRIP_EVERY).and_then(|mut tls| {
            // The handshake, now: a refused handshake is a connection never opened.
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock)?;
            }
            Ok(Box::new(tls) as Box<dyn ReadWrite>)
        }),
        SlowKind::TlsSilent | SlowKind::HttpDrip => {
            let port = if kind == SlowKind::HttpDrip {
                http
            } else {
                https
            };
            TcpStream::connect_timeout(&loopback(port), Duration::from_secs(2))
                .and_then(|tcp| tcp.set_read_timeout(Some(DRIP_EVERY)).map(|_| tcp))
                .map(|tcp| Box::new(tcp) as Box<dyn ReadWrite>)
        }
    };
    let Ok(mut stream) = stream else {
        return SlowResult {
            kind,
            opened: false,
            dropped_after: None,
        };
    };
    let drips = kind != SlowKind::TlsSilent;
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    let dropped = loop {
        if stop.load(Ordering::SeqCst) {
            break false;
        }
        if drips && sent < SLOW_HEAD.len() {
            if stream
                .write_all(&SLOW_HEAD[sent..=sent])
                .and_then(|_| stream.flush())
                .is_err()
            {
                break true;
            }
            sent += 1;
        }
        // Blocks until nginx says something or closes, or for DRIP_EVERY.
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
    };
    SlowResult {
        kind,
        opened: true,
        dropped_after: dropped.then(|| started.elapsed()),
    }
}

/// What both ends of a slow client need.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// nginx's or wxlogin's answer to the huge request.
pub struct HugeAnswer {
    /// The status line's code; `None` if the connection closed without one.
    pub status: Option<u16>,
    pub after: Duration,
}

/// Sends a login whose head declares a body of [`HUGE_LENGTH`] bytes, then only five bytes
/// of it, and reads the status line of the answer (waiting at most 5 s).
pub fn send_huge_request(stream: &mut (impl Read + Write)) -> Result<HugeAnswer, String> {
    let head = format!(
        "POST /api/wxuser HTTP/1.1\r\nHost: login.example.com\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {HUGE_LENGTH}\r\n\r\ncode="
    );
    let started = Instant::now();
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.flush())
        .map_err(|e| format!("sending the huge request: {e}"))?;
    let status = read_status(stream, Duration::from_secs(5));
    Ok(HugeAnswer {
        status,
        after: started.elapsed(),
    })
}

/// The huge request to nginx over TLS.
pub fn huge_request_tls(port: u16, tls: &Arc<ClientConfig>) -> Result<HugeAnswer, String> {
    let mut stream = tls_connect(port, tls, Duration::from_millis(500))
        .map_err(|e| format!("connecting to nginx: {e}"))?;
    send_huge_request(&mut stream)
}

/// Waits up to `limit` for the server to close `stream` (reading and dropping whatever it
/// sends); returns how long that took, or `None` if it was still open.
pub fn wait_for_close(stream: &mut impl Read, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// A plain connection to 127.0.0.1:`port`, for the huge request sent straight to wxlogin.
pub fn plain_connect(port: u16) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(2))
        .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    Ok(tcp)
}

/// A plain `GET path` on `port` that returns the status code, for nginx's port-80 redirect
/// (which ureq would follow or refuse rather than show).
pub fn plain_get_status(port: u16, path: &str) -> Result<u16, String> {
    let mut tcp = plain_connect(port)?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: login.example.com\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    read_status(&mut tcp, Duration::from_secs(5))
        .ok_or_else(|| format!("no status line from 127.0.0.1:{port}"))
}

/// The status code of the answer's status line, read for at most `limit` (the stream's read
/// timeout must be shorter); `None` if the connection ends or the time runs out first.
fn read_status(stream: &mut impl Read, limit: Duration) -> Option<u16> {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.contains(&b'\n') && started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
}
