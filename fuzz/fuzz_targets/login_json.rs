//! `POST /api/wxuser` JSON bodies (and `userInfo` as text or object): parse or a 400.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Err(e) = wxlogin::login::LoginRequest::from_json(body) {
        assert_eq!(e.status(), 400);
    }
});
