//! Reading a request: which body kind it declares, its body within a bound, its fields, its
//! headers, the client's address, and the id that ties its log lines together.
//!
//! Nothing here knows a route: handlers call these helpers, and every refusal is an [`Error`]
//! with the status the client should see.

use crate::error::Error;
use crate::fields::BodyFields;
use crate::secret::random_hex;
use std::io::Read;
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

/// The client's address for the log: the peer, or, when the peer is a proxy on this machine,
/// the address it passed in `X-Real-IP` (see deploy/nginx). Other peers cannot set it.
pub fn client_address(request: &Request) -> String {
    match request.remote_addr() {
        Some(peer) if peer.ip().is_loopback() => header_value(request, "X-Real-IP")
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| peer.to_string()),
        Some(peer) => peer.to_string(),
        None => "-".into(),
    }
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
