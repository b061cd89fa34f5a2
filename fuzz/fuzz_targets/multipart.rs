//! Avatar uploads: the first line is the Content-Type, the rest the body; an image or a
//! client error (400, 413, 415), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let split = input.iter().position(|&b| b == b'\n').unwrap_or(input.len());
    let content_type = String::from_utf8_lossy(&input[..split]).into_owned();
    let body = input.get(split + 1..).unwrap_or_default().to_vec();
    if let Err(e) = wxlogin::avatar::from_multipart(&content_type, body) {
        assert!([400, 413, 415].contains(&e.status()));
    }
});
