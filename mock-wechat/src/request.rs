//! Reading what a request carries: query parameters, and a bounded body as a JSON object.

use std::io::Read;

use serde_json::{Map, Value};
use tiny_http::Request;

/// Longest request body read (stable_token, getuserphonenumber); longer ones are 47001.
const BODY_LIMIT: usize = 64 * 1024;

/// The first value of a query parameter, percent-decoded.
pub(crate) fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The request body, at most [`BODY_LIMIT`] bytes; `None` when longer or unreadable.
pub(crate) fn read_body(request: &mut Request) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let limit = BODY_LIMIT as u64 + 1;
    match request.as_reader().take(limit).read_to_end(&mut body) {
        Ok(_) if body.len() <= BODY_LIMIT => Some(body),
        Ok(_) => {
            log::info!("a request body longer than {BODY_LIMIT} bytes");
            None
        }
        Err(err) => {
            log::info!("could not read a request body: {err}");
            None
        }
    }
}

/// The body as a JSON object; `None` for anything else (WeChat's 47001).
pub(crate) fn json_object(body: Option<&[u8]>) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body?) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}
