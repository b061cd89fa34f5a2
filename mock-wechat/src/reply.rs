//! The answers mock-wechat sends: WeChat's (JSON as `text/plain`, errors with HTTP 200 and
//! WeChat's messages), the mock's own (JSON errors with an HTTP status), and writing them to
//! the client, closing the connection or keeping it alive as configured.

use std::io::Write;

use serde_json::{json, Value};
use tiny_http::{Method, Request, StatusCode};

/// An answer, before it is written.
pub(crate) struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body,
            allow: None,
        }
    }

    pub(crate) fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain", body.into())
    }

    pub(crate) fn html(status: u16, body: String) -> Reply {
        Reply::new(status, "text/html", body)
    }

    pub(crate) fn json(status: u16, body: &Value) -> Reply {
        Reply::json_text(status, body.to_string())
    }

    /// JSON already written out, for bodies whose keys must keep their order.
    pub(crate) fn json_text(status: u16, body: String) -> Reply {
        Reply::new(status, "application/json", body)
    }

    /// An answer of WeChat's API: WeChat sends JSON as `text/plain` (jscode2session does),
    /// and clients must cope, so the mock does it on every WeChat endpoint.
    pub(crate) fn wechat(body: &Value) -> Reply {
        Reply::text(200, body.to_string())
    }

    /// A WeChat error, always with HTTP 200 as WeChat does.
    pub(crate) fn wechat_error(errcode: i64) -> Reply {
        Reply::wechat(&json!({ "errcode": errcode, "errmsg": errmsg(errcode) }))
    }

    /// An error of the mock itself (not one WeChat would send), told apart by errcode -1
    /// and an HTTP status other than 200.
    pub(crate) fn mock_error(status: u16, errmsg: &str) -> Reply {
        Reply::json(status, &json!({ "errcode": -1, "errmsg": errmsg }))
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Reply {
        let mut reply = Reply::mock_error(
            405,
            &format!("mock-wechat: method not allowed, use {allow}"),
        );
        reply.allow = Some(allow);
        reply
    }

    /// The answer of a request whose wait `stop` cut short.
    pub(crate) fn shutting_down() -> Reply {
        Reply::mock_error(503, "mock-wechat: shutting down")
    }

    /// Writes the answer: through tiny_http, which keeps the connection open for the next
    /// request, when `keep_alive`; else with `Connection: close` (see [`send_and_close`]).
    pub(crate) fn send(&self, request: Request, keep_alive: bool) {
        if keep_alive {
            self.send_keep_alive(request);
        } else {
            self.send_and_close(request);
        }
    }

    fn send_keep_alive(&self, request: Request) {
        let mut response = tiny_http::Response::from_string(self.body.clone())
            .with_status_code(self.status)
            .with_header(
                tiny_http::Header::from_bytes(&b"Content-Type"[..], self.content_type.as_bytes())
                    .expect("static content types are valid header values"),
            );
        if let Some(allow) = self.allow {
            response = response.with_header(
                tiny_http::Header::from_bytes(&b"Allow"[..], allow.as_bytes())
                    .expect("static method lists are valid header values"),
            );
        }
        if let Err(err) = request.respond(response) {
            log::debug!("could not write an answer: {err}");
        }
    }

    /// Writes the answer with `Connection: close`.
    ///
    /// tiny_http cannot close an idle keep-alive connection, and after `stop` nobody answers
    /// on one: a client reusing it would wait for its own timeout instead of being refused.
    /// So every answer asks the client to close, and the answer is written by hand because
    /// tiny_http drops a `Connection` header set on a `Response`.
    fn send_and_close(&self, request: Request) {
        let head_only = *request.method() == Method::Head;
        let reason = StatusCode(self.status).default_reason_phrase();
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        head.push_str("\r\n");
        let mut writer = request.into_writer();
        let mut written = writer.write_all(head.as_bytes());
        if !head_only {
            written = written.and_then(|()| writer.write_all(self.body.as_bytes()));
        }
        if let Err(err) = written.and_then(|()| writer.flush()) {
            log::debug!("could not write an answer: {err}");
        }
    }
}

/// WeChat's message for an errcode, or `mock error` for those the mock does not know.
fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "invalid code, this is a high risk user",
        41001 => "access_token missing",
        41008 => "missing code",
        42001 => "access_token expired",
        45011 => "api minute-quota reach limit mustslower retry next minute",
        47001 => "data format error",
        _ => "mock error",
    }
}
