//! Reading a request: which body kind it declares, its body within a bound, its fields, its
//! headers, the client's address, and the id that ties its log lines together.
//!
//! Nothing here knows a route: handlers call these helpers, and every refusal is an [`Error`]
//! with the status the client should see.

use crate::error::Error;
use crate::fields::BodyFields;
use crate::secret::random_hex;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use tiny_http::Request;

/// How a body is encoded, decided from `Content-Type` before it is read.
pub enum BodyKind {
    Form,
    Json,
    /// No `Content-Type` header at all.
    Unlabelled,
}

/// Decides from `Content-Type` how to read the body, before reading it.
pub fn body_kind(request: &Request) -> Result<BodyKind, Error> {
    let Some(value) = header_value(request, "Content-Type") else {
        return Ok(BodyKind::Unlabelled);
    };
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(BodyKind::Form)
    } else if media_type.eq_ignore_ascii_case("application/json") {
        Ok(BodyKind::Json)
    } else {
        Err(Error::UnsupportedMediaType)
    }
}

/// The body's fields, read according to its `Content-Type`; at most `limit` bytes.
pub fn read_fields(request: &mut Request, limit: usize) -> Result<BodyFields, Error> {
    let kind = body_kind(request)?;
    let body = read_body(request, limit)?;
    match kind {
        BodyKind::Json => Ok(BodyFields::from_json(&body)?),
        BodyKind::Form => Ok(BodyFields::from_form(&body)),
        BodyKind::Unlabelled if body.is_empty() => Ok(BodyFields::default()),
        BodyKind::Unlabelled => Err(Error::UnsupportedMediaType),
    }
}

/// Reads at most `limit` bytes of body; a declared or actual length beyond it is a 413. The
/// body is already in memory (tiny_http's connection thread read it, up to the route's limit,
/// under `WXLOGIN_BODY_TIMEOUT`), so this never waits on the client; a body that did not arrive
/// in time reads as timed out (408). A connection whose body was left unread is closed.
pub fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, Error> {
    if request.body_length().is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut body = Vec::with_capacity(request.body_length().unwrap_or(0));
    request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::RequestTimeout,
            _ => Error::BadRequest("the request body could not be read".into()),
        })?;
    if body.len() > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    Ok(body)
}

/// The first value of header `name` (compared case-insensitively).
pub fn header_value<'r>(request: &'r Request, name: &'static str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// The request's path, without its query.
pub fn path(request: &Request) -> &str {
    request.url().split('?').next().unwrap_or("")
}

/// The request's query string, without `?` (empty when there is none).
pub fn query(request: &Request) -> &str {
    request.url().split_once('?').map_or("", |(_, query)| query)
}

/// The client's address for the log: the peer, or, when the peer is a proxy on this machine,
/// the address it passed in `X-Real-IP` (see deploy/nginx). Other peers cannot set it.
pub fn client_address(request: &Request) -> String {
    match (request.remote_addr(), forwarded_ip(request)) {
        (Some(_), Some(ip)) => ip.to_string(),
        (Some(peer), None) => peer.to_string(),
        (None, _) => "-".into(),
    }
}

/// The client's IP address, as [`client_address`] finds it without the port: what the rate
/// limits key on (a port changes with each connection, the address does not).
pub fn client_ip(request: &Request) -> Option<IpAddr> {
    forwarded_ip(request).or_else(|| request.remote_addr().map(|peer| peer.ip()))
}

/// `X-Real-IP`, when the peer is a proxy on this machine and the header holds an address.
fn forwarded_ip(request: &Request) -> Option<IpAddr> {
    trusted_forward(*request.remote_addr()?, header_value(request, "X-Real-IP"))
}

/// The address a peer says it forwards for: believed only from loopback, where our own proxy
/// runs; anyone else could name any address and pick a fresh rate-limit bucket per request.
fn trusted_forward(peer: SocketAddr, x_real_ip: Option<&str>) -> Option<IpAddr> {
    if !peer.ip().is_loopback() {
        return None;
    }
    x_real_ip?.trim().parse().ok()
}

/// Request ids: the proxy's `X-Request-Id` when it sent a sane one, else our own, unique per
/// process run (a random prefix and a counter).
pub struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        RequestIds {
            prefix: random_hex(4),
            counter: AtomicU64::new(0),
        }
    }

    /// The id of `request`, for its answer's `X-Request-Id` and its log lines.
    pub fn next(&self, request: &Request) -> String {
        if let Some(given) = header_value(request, "X-Request-Id").filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        }) {
            return given.to_string();
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:06}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_real_ip_is_believed_only_from_loopback() {
        let proxy: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let proxy6: SocketAddr = "[::1]:50000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:50000".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(trusted_forward(proxy, Some(" 203.0.113.7 ")), Some(client));
        assert_eq!(trusted_forward(proxy6, Some("203.0.113.7")), Some(client));
        assert_eq!(trusted_forward(stranger, Some("203.0.113.7")), None);
        assert_eq!(trusted_forward(proxy, Some("not an address")), None);
        assert_eq!(trusted_forward(proxy, None), None);
    }
}
