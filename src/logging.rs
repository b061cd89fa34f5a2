//! The process logger: `env_logger` configured by `RUST_LOG` (default `info`), behind a filter
//! that keeps secrets out of the log whatever level an operator asks for.
//!
//! ureq logs each request's full URL at debug level, and jscode2session's URL carries the
//! AppSecret, so ureq's records below `warn` are dropped here rather than trusted to `RUST_LOG`.

use log::{Level, Log, Metadata, Record};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once shutdown closes the listening socket on purpose.
static LISTENER_CLOSED_ON_PURPOSE: AtomicBool = AtomicBool::new(false);

/// Says that the listening socket is being closed for shutdown, so tiny_http's "error accepting
/// new client" that follows is expected and not an error worth an operator's attention.
pub fn expect_closed_listener() {
    LISTENER_CLOSED_ON_PURPOSE.store(true, Ordering::SeqCst);
}

/// Whether a record may be written at all. Tests install their capturing logger behind the same
/// check, so they see exactly what production would write.
pub fn allowed(metadata: &Metadata) -> bool {
    let from_http_client = metadata.target().starts_with("ureq");
    !(from_http_client && metadata.level() > Level::Warn)
}

struct SecretSafeLogger(env_logger::Logger);

impl Log for SecretSafeLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        allowed(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        let expected_accept_error = record.target().starts_with("tiny_http")
            && LISTENER_CLOSED_ON_PURPOSE.load(Ordering::SeqCst);
        if allowed(record.metadata()) && !expected_accept_error {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the logger for the process. Call once, first thing in `main`.
pub fn init() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    log::set_max_level(logger.filter());
    log::set_boxed_logger(Box::new(SecretSafeLogger(logger)))
        .expect("the logger is installed once, at start-up");
}
