//! Property tests over every parser that reads client input: whatever the bytes, the answer is
//! a value or a client error with its documented status, never a panic, and no mutation of a
//! token ever verifies.

use proptest::prelude::*;
use std::time::Duration;
use wxlogin::avatar;
use wxlogin::config::JwtConfig;
use wxlogin::fields::BodyFields;
use wxlogin::keys::KeyMaterial;
use wxlogin::login::LoginRequest;
use wxlogin::opendata;
use wxlogin::profile;
use wxlogin::secret::Secret;
use wxlogin::token::TokenIssuer;

fn issuer() -> TokenIssuer {
    let secret = Secret::new("property-test-key-property-test-key");
    TokenIssuer::new(&JwtConfig {
        signing_key: KeyMaterial::Derived(secret.clone()),
        secret,
        ttl: Duration::from_secs(3600),
        previous_keys: Vec::new(),
        issuer: "wxlogin".into(),
        audience: "wxprop".into(),
    })
}

/// JSON values of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::hash_map(
                prop_oneof![
                    Just("code".to_string()),
                    Just("userInfo".to_string()),
                    Just("nickName".to_string()),
                    Just("gender".to_string()),
                    Just("avatarUrl".to_string()),
                    Just("signature".to_string()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn form_bodies_never_panic_and_fail_as_400(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = LoginRequest::from_form(&body) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn form_bodies_with_login_fields_parse_or_fail_as_400(
        code in ".{0,200}",
        user_info in ".{0,200}",
        signature in ".{0,60}",
    ) {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("userInfo", &user_info)
            .append_pair("signature", &signature)
            .finish();
        match LoginRequest::from_form(body.as_bytes()) {
            Ok(request) => prop_assert_eq!(request.code, code.trim()),
            Err(e) => prop_assert_eq!(e.status(), 400),
        }
    }

    #[test]
    fn json_bodies_never_panic_and_fail_as_400(value in json_value()) {
        let body = value.to_string();
        if let Err(e) = LoginRequest::from_json(body.as_bytes()) {
            prop_assert_eq!(e.status(), 400);
        }
        if let Err(e) = profile::parse_update(body.as_bytes()) {
            prop_assert_eq!(e.status(), 400);
        }
        if let Ok(mut fields) = BodyFields::from_json(body.as_bytes()) {
            let _ = fields.code("a test");
        }
    }

    #[test]
    fn raw_json_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = LoginRequest::from_json(&body);
        let _ = profile::parse_update(&body);
    }

    #[test]
    fn user_info_of_any_shape_is_a_profile_or_a_400(user_info in json_value()) {
        let body = serde_json::json!({"code": "c", "userInfo": user_info}).to_string();
        if let Err(e) = LoginRequest::from_json(body.as_bytes()) {
            prop_assert_eq!(e.status(), 400);
        }
        let text = serde_json::json!({"code": "c", "userInfo": user_info.to_string()}).to_string();
        if let Err(e) = LoginRequest::from_json(text.as_bytes()) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn authorization_headers_of_any_text_are_refused(header in ".{0,600}") {
        prop_assert!(issuer().verify_header(Some(&header)).is_err());
    }

    #[test]
    fn no_single_character_change_to_a_token_verifies(position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_.=-]") {
        let issuer = issuer();
        let token = issuer.issue("uid-prop", "sid-prop", "o-prop", None);
        let at = position.index(token.len());
        let mut mutated = token.clone();
        mutated.replace_range(at..at + 1, &replacement);
        if mutated != token {
            prop_assert!(issuer.verify(&mutated).is_err(), "{} verified", mutated);
        }
    }

    #[test]
    fn multipart_bodies_never_panic_and_fail_with_a_client_status(
        boundary in "[A-Za-z0-9'()+_,./:=?-]{0,70}",
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let content_type = format!("multipart/form-data; boundary={boundary}");
        if let Err(e) = avatar::from_multipart(&content_type, body) {
            prop_assert!([400, 413, 415].contains(&e.status()), "{}", e.status());
        }
    }

    #[test]
    fn multipart_file_parts_of_any_content_are_sniffed_safely(content in prop::collection::vec(any::<u8>(), 0..2048)) {
        let boundary = "xYzBoundary";
        let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n").into_bytes();
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        match avatar::from_multipart(&format!("multipart/form-data; boundary={boundary}"), body) {
            Ok(image) => prop_assert!(image::load_from_memory(&image.bytes).is_ok()),
            Err(e) => prop_assert!([400, 413, 415].contains(&e.status()), "{}", e.status()),
        }
    }

    /// The decoders see hostile bytes only behind a magic number we accept: any rest is
    /// refused with 413 or 415 or stored as an image that decodes, never a panic (a 500).
    #[test]
    fn anything_behind_an_image_magic_number_is_decoded_safely(
        magic in prop::sample::select(vec![
            &b"\xFF\xD8\xFF"[..],
            b"\x89PNG\r\n\x1a\n",
            b"GIF89a",
            b"RIFF\x00\x01\x00\x00WEBPVP8L",
        ]),
        rest in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        match avatar::validate([magic, &rest].concat()) {
            Ok(image) => prop_assert!(image::load_from_memory(&image.bytes).is_ok()),
            Err(e) => prop_assert!([413, 415].contains(&e.status()), "{}: {}", e.status(), e),
        }
    }

    #[test]
    fn open_data_of_any_text_never_panics(
        data in "[A-Za-z0-9+/=]{0,200}",
        iv in "[A-Za-z0-9+/=]{0,30}",
        key in "[A-Za-z0-9+/=]{0,30}",
        raw in ".{0,100}",
        signature in "[0-9a-f]{0,40}",
    ) {
        let _ = opendata::decrypt(&data, &iv, &key, "wx4f4bc4dec97d474b");
        let _ = opendata::signature_matches(&raw, &key, &signature);
    }
}
