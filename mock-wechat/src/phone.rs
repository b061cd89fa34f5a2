//! The phone codes mock-wechat understands: what `getPhoneNumber` hands a mini-program, which
//! its server trades for the number at `/wxa/business/getuserphonenumber`.
//!
//! A phone code is `phone.<user>.<phone>.<countrycode>.<nonce>`, so a person can type one:
//! `phone.alice.13800138000.86.1`. It works once. The user only labels it (WeChat ties the
//! number to the user who tapped the button; the mock does not check who asks).

use crate::code;

/// Longest phone number (digits only, without the country code).
const MAX_PHONE_LEN: usize = 20;
/// Longest country code: ITU codes have 1 to 3 digits.
const MAX_COUNTRY_LEN: usize = 3;

/// The country code of numbers WeChat shows without a prefix.
pub(crate) const CHINA: &str = "86";

/// A phone number as a phone code carries it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Phone<'a> {
    pub(crate) user: &'a str,
    /// Digits, without the country code (`purePhoneNumber`).
    pub(crate) number: &'a str,
    /// Digits, without `+` (`countryCode`).
    pub(crate) country: &'a str,
}

impl Phone<'_> {
    /// WeChat's `phoneNumber`: the bare number for China, `+<cc> <number>` otherwise.
    pub(crate) fn display(&self) -> String {
        if self.country == CHINA {
            self.number.to_owned()
        } else {
            format!("+{} {}", self.country, self.number)
        }
    }
}

/// Reads a phone code; `None` when `code` is not one.
pub(crate) fn parse(code: &str) -> Option<Phone<'_>> {
    let mut parts = code.split('.');
    let (Some("phone"), Some(user), Some(number), Some(country), Some(nonce), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let phone = Phone {
        user,
        number,
        country,
    };
    (is_valid(&phone) && code::is_valid_nonce(nonce)).then_some(phone)
}

/// The phone code for `phone` with `nonce`; `None` when a part is not valid.
pub(crate) fn format(phone: &Phone<'_>, nonce: &str) -> Option<String> {
    (is_valid(phone) && code::is_valid_nonce(nonce)).then(|| {
        format!(
            "phone.{}.{}.{}.{nonce}",
            phone.user, phone.number, phone.country
        )
    })
}

/// User as for login codes, number 1–20 digits, country code 1–3 digits not starting with 0.
fn is_valid(phone: &Phone<'_>) -> bool {
    code::is_valid_user(phone.user)
        && digits(phone.number, MAX_PHONE_LEN)
        && digits(phone.country, MAX_COUNTRY_LEN)
        && !phone.country.starts_with('0')
}

fn digits(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone<'a>(user: &'a str, number: &'a str, country: &'a str) -> Phone<'a> {
        Phone {
            user,
            number,
            country,
        }
    }

    #[test]
    fn parse_reads_phone_codes() {
        assert_eq!(
            parse("phone.alice.13800138000.86.1"),
            Some(phone("alice", "13800138000", "86"))
        );
        assert_eq!(
            parse("phone.Bob_2.2025550123.1.a-B_9"),
            Some(phone("Bob_2", "2025550123", "1"))
        );
    }

    #[test]
    fn parse_rejects_everything_else() {
        for code in [
            "",
            "phone",
            "alice.123",
            "phone.alice.138.86",
            "phone.alice.138.86.",
            "phone.alice.138.86.n.x",
            "Phone.alice.138.86.n",
            "phone..138.86.n",
            "phone.al ice.138.86.n",
            "phone.alice.+138.86.n",
            "phone.alice.138-0.86.n",
            "phone.alice..86.n",
            "phone.alice.138.086.n",
            "phone.alice.138.8686.n",
            "phone.alice.138.+86.n",
            "phone.alice.123456789012345678901.86.n",
            "phone.alice.138.86.n n",
            "phone.alice.１３８.86.n",
            "fail.40029",
        ] {
            assert_eq!(parse(code), None, "{code:?}");
        }
    }

    #[test]
    fn format_writes_what_parse_reads() {
        let code = format(&phone("alice", "13800138000", "86"), "3f9a").unwrap();
        assert_eq!(code, "phone.alice.13800138000.86.3f9a");
        assert_eq!(parse(&code), Some(phone("alice", "13800138000", "86")));
        assert_eq!(format(&phone("a b", "138", "86"), "n"), None);
        assert_eq!(format(&phone("alice", "x", "86"), "n"), None);
        assert_eq!(format(&phone("alice", "138", ""), "n"), None);
    }

    #[test]
    fn display_adds_the_country_code_outside_china() {
        assert_eq!(phone("a", "13800138000", "86").display(), "13800138000");
        assert_eq!(phone("a", "2025550123", "1").display(), "+1 2025550123");
    }
}
