//! The `js_code` format mock-wechat understands, so that a person (or a test) can log in as
//! any user by typing a code, and make the upstream fail on purpose with a special code.
//!
//! An ordinary code is `<user>.<nonce>`: the user decides the openid, the nonce only makes
//! codes unique, because each code works once like a real one. A bare `<user>` is refused so
//! that codes keep looking one-time. The user names `fail`, `http`, `garbage` and `slow` are
//! reserved for failure codes.

use std::time::Duration;

/// Longest user name: enough for readable names, short enough to keep codes typeable.
const MAX_USER_LEN: usize = 32;
/// Longest nonce: room for a UUID or a timestamp with a counter.
const MAX_NONCE_LEN: usize = 64;
/// Longest wait a `slow.<ms>` code asks for; longer values are cut to it so that a typo
/// cannot hold a worker for hours.
const MAX_SLOW_MS: u64 = 60_000;
/// User names that start failure codes, so codes can never be minted for them.
const RESERVED_USERS: [&str; 4] = ["fail", "http", "garbage", "slow"];

/// What a `js_code` asks the mock to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Code<'a> {
    /// `<user>.<nonce>`: log this user in, once per code.
    Login(&'a str),
    /// A failure code (`fail.`, `http.`, `garbage.`, `slow.` with a valid argument).
    Fault(Fault),
    /// Anything else: WeChat's 40029 invalid code.
    Invalid,
}

/// A failure code: every API that takes a code answers it the same way. The content
/// security APIs take no code, so `/mock` calls switch one on for them instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `fail.<errcode>`: answer this WeChat error.
    Fail(i64),
    /// `http.<status>`: answer this HTTP status (200–599) with an HTML body.
    Http(u16),
    /// `garbage.<anything>`: answer 200 with a body that is not JSON.
    Garbage,
    /// `slow.<ms>`: wait, then succeed for user `slow` (reusable).
    Slow(Duration),
}

/// Reads a `js_code`. Never fails: what it cannot read is [`Code::Invalid`].
pub(crate) fn parse(code: &str) -> Code<'_> {
    let Some((user, rest)) = code.split_once('.') else {
        return Code::Invalid;
    };
    match user {
        "fail" => parse_errcode(rest).map_or(Code::Invalid, |e| Code::Fault(Fault::Fail(e))),
        "http" => parse_status(rest).map_or(Code::Invalid, |s| Code::Fault(Fault::Http(s))),
        "garbage" => Code::Fault(Fault::Garbage),
        "slow" => parse_ms(rest).map_or(Code::Invalid, |wait| Code::Fault(Fault::Slow(wait))),
        _ if is_valid_user(user) && is_valid_nonce(rest) => Code::Login(user),
        _ => Code::Invalid,
    }
}

/// A failure code alone (`fail.-1`, `slow.5000`, …); `None` for anything else.
pub(crate) fn parse_fault(text: &str) -> Option<Fault> {
    match parse(text) {
        Code::Fault(fault) => Some(fault),
        _ => None,
    }
}

/// Whether codes can be minted for this user: 1–32 of `[A-Za-z0-9_]`, not reserved.
pub(crate) fn is_usable_user(user: &str) -> bool {
    is_valid_user(user) && !RESERVED_USERS.contains(&user)
}

/// 1–32 of `[A-Za-z0-9_]`, reserved or not.
pub(crate) fn is_valid_user(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len())
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// 1–64 of `[A-Za-z0-9_-]`: the nonce of login and phone codes.
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    (1..=MAX_NONCE_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `40029`, `-1`: digits with an optional minus, fitting an i64.
fn parse_errcode(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if all_digits(digits) {
        s.parse().ok()
    } else {
        None
    }
}

/// Three digits from 200 to 599: 1xx answers would leave a client waiting for the real one.
fn parse_status(s: &str) -> Option<u16> {
    if s.len() != 3 || !all_digits(s) {
        return None;
    }
    s.parse().ok().filter(|status| (200..=599).contains(status))
}

/// Milliseconds, cut to [`MAX_SLOW_MS`]; more digits than a u64 holds count as the cap.
fn parse_ms(s: &str) -> Option<Duration> {
    if !all_digits(s) {
        return None;
    }
    let ms = s.parse::<u64>().unwrap_or(u64::MAX).min(MAX_SLOW_MS);
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_ordinary_codes() {
        assert_eq!(parse("alice.1"), Code::Login("alice"));
        assert_eq!(parse("Bob_2.a-B_9"), Code::Login("Bob_2"));
        let longest = format!("{}.{}", "u".repeat(32), "n".repeat(64));
        assert_eq!(parse(&longest), Code::Login(&longest[..32]));
        // Reserved words are case-sensitive: these are ordinary users.
        assert_eq!(parse("Fail.40029"), Code::Login("Fail"));
        assert_eq!(parse("failure.x"), Code::Login("failure"));
    }

    #[test]
    fn parse_rejects_malformed_codes() {
        let too_long_user = format!("{}.n", "u".repeat(33));
        let too_long_nonce = format!("u.{}", "n".repeat(65));
        for code in [
            "",
            "alice",
            "alice.",
            ".nonce",
            "al ice.x",
            "alice.x.y",
            "alice.x y",
            "al-ice.x",
            "élise.x",
            "alice.nonce\n",
            &too_long_user,
            &too_long_nonce,
        ] {
            assert_eq!(parse(code), Code::Invalid, "{code:?}");
        }
    }

    #[test]
    fn parse_reads_failure_codes() {
        assert_eq!(parse("fail.40029"), Code::Fault(Fault::Fail(40029)));
        assert_eq!(parse("fail.-1"), Code::Fault(Fault::Fail(-1)));
        assert_eq!(parse("http.502"), Code::Fault(Fault::Http(502)));
        assert_eq!(parse("http.200"), Code::Fault(Fault::Http(200)));
        assert_eq!(parse("garbage.x"), Code::Fault(Fault::Garbage));
        assert_eq!(parse("garbage."), Code::Fault(Fault::Garbage));
        assert_eq!(
            parse("slow.250"),
            Code::Fault(Fault::Slow(Duration::from_millis(250)))
        );
        assert_eq!(
            parse("slow.99999999"),
            Code::Fault(Fault::Slow(Duration::from_secs(60)))
        );
        assert_eq!(
            parse("slow.99999999999999999999999"),
            Code::Fault(Fault::Slow(Duration::from_secs(60)))
        );
    }

    #[test]
    fn parse_rejects_failure_codes_with_bad_arguments() {
        for code in [
            "fail.",
            "fail.-",
            "fail.+5",
            "fail.x1",
            "fail.1.2",
            "fail.99999999999999999999",
            "http.",
            "http.99",
            "http.199",
            "http.600",
            "http.5000",
            "http.+50",
            "slow.",
            "slow.-1",
            "slow.1s",
        ] {
            assert_eq!(parse(code), Code::Invalid, "{code:?}");
        }
    }

    #[test]
    fn usable_users_are_valid_and_not_reserved() {
        assert!(is_usable_user("alice"));
        assert!(is_usable_user("slow_user"));
        for user in ["", "fail", "http", "garbage", "slow", "a b", "a.b", "a-b"] {
            assert!(!is_usable_user(user), "{user:?}");
        }
        assert!(!is_usable_user(&"u".repeat(33)));
    }
}
