//! Profile material: encryptedData, iv, session_key and signature of any text, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|parts: (&str, &str, &str, &str)| {
    let (data, iv, key, signature) = parts;
    let _ = wxlogin::opendata::decrypt(data, iv, key, "wx4f4bc4dec97d474b");
    let _ = wxlogin::opendata::signature_matches(data, key, signature);
});
