//! `PUT /api/me` bodies: a profile or a 400, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Err(e) = wxlogin::profile::parse_update(body) {
        assert_eq!(e.status(), 400);
    }
});
