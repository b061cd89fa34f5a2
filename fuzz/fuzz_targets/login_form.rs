//! `POST /api/wxuser` form bodies (and `userInfo` inside them): parse or a 400, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Err(e) = wxlogin::login::LoginRequest::from_form(body) {
        assert_eq!(e.status(), 400);
    }
});
