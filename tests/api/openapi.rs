//! `docs/openapi.yaml` against the code and the running server: every route the router serves is
//! described (and the document describes nothing else), every
//! example in it validates against its schema, and real answers validate against the schema
//! documented for their status.

use crate::helpers::{spawn_app_with_mock, start_mock_wechat, TestApp, TestDb};
use crate::on_both_backends;
use crate::profile::{upload, PNG};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use wxlogin::http::Route;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

pub(crate) fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("docs/openapi.yaml is readable");
        serde_norway::from_str(&text).expect("docs/openapi.yaml is valid YAML")
    })
}

/// Follows `{"$ref": "#/…"}` within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// A validator for `schema`, a schema found in `doc`: its `#/components/…` references resolve
/// against `doc`'s components, carried along at the root.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = match schema {
        Value::Object(map) => map.clone(),
        Value::Bool(true) => Map::new(),
        other => panic!("not a schema: {other}"),
    };
    root.insert("components".into(), doc["components"].clone());
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&Value::Object(root))
        .unwrap_or_else(|e| panic!("schema {schema} compiles: {e}"))
}

fn errors(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    validator(doc, schema)
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Every (path template, method) the document describes.
fn documented() -> BTreeSet<(String, String)> {
    let paths = document()["paths"]
        .as_object()
        .expect("the document has paths");
    let mut found = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((path.clone(), method.to_ascii_uppercase()));
            }
        }
    }
    found
}

/// Every (path template, method) the router serves.
fn routed() -> BTreeSet<(String, String)> {
    Route::ALL
        .iter()
        .flat_map(|route| {
            route
                .methods()
                .into_iter()
                .map(|m| (route.path_template().to_string(), m.to_string()))
        })
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
    let mut ids = BTreeSet::new();
    for (path, method) in documented() {
        let operation = &doc["paths"][&path][method.to_ascii_lowercase()];
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has an operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} documents its responses"
        );
        for (name, scopes) in operation["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s.as_object().unwrap())
        {
            assert!(
                doc["components"]["securitySchemes"].get(name).is_some(),
                "{method} {path}: unknown security scheme {name} {scopes}"
            );
        }
    }
}

#[test]
fn every_route_in_the_router_is_in_the_openapi_document() {
    let missing: Vec<_> = routed().difference(&documented()).cloned().collect();
    assert!(
        missing.is_empty(),
        "served but not in docs/openapi.yaml: {missing:?}"
    );
}

#[test]
fn every_documented_route_is_in_the_router() {
    let unserved: Vec<_> = documented().difference(&routed()).cloned().collect();
    assert!(
        unserved.is_empty(),
        "in docs/openapi.yaml but not served: {unserved:?}"
    );
}

#[test]
fn the_running_server_takes_every_documented_method() {
    let db = TestDb::sqlite();
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, &db);
    for (path, method) in documented() {
        let concrete = path
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{file}", &format!("{}.png", "0".repeat(64)));
        let answer = app.request(&method, &concrete);
        assert_ne!(answer.status, 405, "{method} {path}: {}", answer.text);
        assert_ne!(answer.body["message"], "not found", "{method} {path}");
    }
}

/// Calls `check(pointer, schema, example)` for every example in `value` (at `pointer`): the
/// `example` and `examples` of media types, parameters and headers, and the `examples` of
/// schemas. Fails on a JSON or form media type without an example.
fn each_example(
    doc: &Value,
    pointer: &str,
    value: &Value,
    check: &mut dyn FnMut(&str, &Value, &Value),
) {
    let Some(map) = value.as_object() else {
        if let Some(items) = value.as_array() {
            for (i, item) in items.iter().enumerate() {
                each_example(doc, &format!("{pointer}/{i}"), item, check);
            }
        }
        return;
    };
    if let Some(schema) = map.get("schema") {
        if let Some(example) = map.get("example") {
            check(&format!("{pointer}/example"), schema, example);
        }
        if let Some(examples) = map.get("examples").and_then(Value::as_object) {
            for (name, example) in examples {
                let example = resolve(doc, example);
                let value = example
                    .get("value")
                    .unwrap_or_else(|| panic!("{pointer}/examples/{name} has a value"));
                check(&format!("{pointer}/examples/{name}"), schema, value);
            }
        }
    }
    if let Some(examples) = map.get("examples").and_then(Value::as_array) {
        for (i, example) in examples.iter().enumerate() {
            check(&format!("{pointer}/examples/{i}"), value, example);
        }
    }
    for (key, child) in map {
        if key == "example" || key == "examples" {
            continue;
        }
        let escaped = key.replace('~', "~0").replace('/', "~1");
        if matches!(
            key.as_str(),
            "application/json" | "application/x-www-form-urlencoded"
        ) && child.get("schema").is_some()
        {
            assert!(
                child.get("example").is_some() || child.get("examples").is_some(),
                "{pointer}/{escaped} has no example"
            );
        }
        each_example(doc, &format!("{pointer}/{escaped}"), child, check);
    }
}

#[test]
fn every_example_in_the_document_validates_against_its_schema() {
    let doc = document();
    let mut checked = 0;
    let mut failures = Vec::new();
    each_example(doc, "#", doc, &mut |pointer, schema, example| {
        checked += 1;
        for error in errors(doc, schema, example) {
            failures.push(format!("{pointer}: {error}"));
        }
    });
    assert!(
        failures.is_empty(),
        "invalid examples:\n{}",
        failures.join("\n")
    );
    assert!(
        checked >= 50,
        "only {checked} examples found: is the walk broken?"
    );
}

#[test]
fn a_wrong_example_is_caught() {
    // The checks above would pass vacuously if the validator accepted anything.
    let doc = document();
    let error = json!({"$ref": "#/components/schemas/Error"});
    assert!(errors(doc, &error, &json!({"status": 400, "message": "m"})).is_empty());
    assert!(!errors(doc, &error, &json!({"status": 400})).is_empty());
    assert!(!errors(
        doc,
        &error,
        &json!({"status": 400, "message": "m", "extra": 1})
    )
    .is_empty());
    let login = json!({"$ref": "#/components/schemas/LoginAnswer"});
    let mut answer = doc.pointer(
        "/paths/~1api~1wxuser/post/responses/200/content/application~1json/examples/verified profile/value",
    )
    .expect("the login example")
    .clone();
    assert!(errors(doc, &login, &answer).is_empty());
    answer["profile"] = json!({"status": "rejected"});
    assert!(
        !errors(doc, &login, &answer).is_empty(),
        "rejected without reason"
    );
}

/// A real answer, checked against the document: its status is documented for the operation,
/// its content type is one the response lists, a JSON body validates against the schema, and
/// every required header is present and valid.
struct Real {
    status: u16,
    headers: std::collections::HashMap<String, String>,
    json: Option<Value>,
    body_len: usize,
}

fn check_real(doc: &Value, method: &str, path: &str, real: &Real) {
    let what = format!("{method} {path} → {}", real.status);
    let operation = doc["paths"][path]
        .get(method.to_ascii_lowercase())
        .unwrap_or_else(|| panic!("{method} {path} is documented"));
    let response = operation["responses"]
        .get(real.status.to_string())
        .map(|r| resolve(doc, r))
        .unwrap_or_else(|| panic!("{what}: the status is not documented"));
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        let header = resolve(doc, header);
        let value = real.headers.get(&name.to_ascii_lowercase());
        if header["required"] == true {
            let value = value.unwrap_or_else(|| panic!("{what}: no {name} header"));
            let errs = errors(doc, &header["schema"], &json!(value));
            assert!(errs.is_empty(), "{what}: header {name}: {errs:?}");
        }
    }
    let Some(content) = response["content"].as_object() else {
        assert_eq!(real.body_len, 0, "{what}: documented without a body");
        return;
    };
    let content_type = real
        .headers
        .get("content-type")
        .map(|t| t.split(';').next().unwrap().trim().to_string())
        .unwrap_or_default();
    let media = content
        .get(&content_type)
        .unwrap_or_else(|| panic!("{what}: content type {content_type:?} is not documented"));
    if content_type == "application/json" {
        let body = real.json.as_ref().expect("a JSON body");
        let errs = errors(doc, &media["schema"], body);
        assert!(errs.is_empty(), "{what}: {body}\n{}", errs.join("\n"));
    }
}

fn real(answer: &crate::helpers::Answer) -> Real {
    Real {
        status: answer.status,
        headers: answer.headers.clone(),
        json: (!answer.body.is_null()).then(|| answer.body.clone()),
        body_len: answer.text.len(),
    }
}

pub(crate) fn check(app_doc: &Value, method: &str, path: &str, answer: &crate::helpers::Answer) {
    check_real(app_doc, method, path, &real(answer));
}

fn real_answers_validate_against_the_documented_schemas(db: &TestDb) {
    let doc = document().clone();
    let mock = start_mock_wechat(true);
    let app: TestApp = spawn_app_with_mock(&mock, db);

    // Logging in, as form and as JSON, with and without a profile.
    let login = app.post_form("/api/wxuser", &[("code", &mock.new_code("ann"))]);
    assert_eq!(login.status, 200, "{}", login.text);
    check(&doc, "POST", "/api/wxuser", &login);
    let token = login.body["token"].as_str().unwrap().to_string();
    let with_profile = app.post_json(
        "/api/wxuser",
        &json!({"code": mock.new_code("ann"), "userInfo": {"nickName": "Ann", "gender": 2}}),
    );
    assert_eq!(with_profile.status, 200, "{}", with_profile.text);
    check(&doc, "POST", "/api/wxuser", &with_profile);
    let rejected = app.post_form(
        "/api/wxuser",
        &[
            ("code", &mock.new_code("ann")),
            ("userInfo", r#"{"nickName":"Mallory"}"#),
            ("signature", "0000"),
        ],
    );
    assert_eq!(rejected.body["profile"]["status"], "rejected");
    check(&doc, "POST", "/api/wxuser", &rejected);

    // Login failures: no code (400), a code WeChat refuses (401 with errcode), a wrong method.
    let no_code = app.post_form("/api/wxuser", &[]);
    assert_eq!(no_code.status, 400);
    check(&doc, "POST", "/api/wxuser", &no_code);
    let bad_code = app.post_form("/api/wxuser", &[("code", "never-issued")]);
    assert_eq!(bad_code.status, 401, "{}", bad_code.text);
    check(&doc, "POST", "/api/wxuser", &bad_code);
    let wrong_type = app.post_raw("/api/wxuser", Some("text/plain"), b"code=x");
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text);
    check(&doc, "POST", "/api/wxuser", &wrong_type);
    let wrong_method = app.send("DELETE", "/api/me", &[], Some(&token), b"");
    assert_eq!(wrong_method.status, 405);
    check_real(
        &doc,
        "POST",
        "/api/wxuser",
        &real(&app.request("GET", "/api/wxuser")),
    );

    // The profile.
    let me = app.get("/api/me", Some(&token));
    assert_eq!(me.status, 200);
    check(&doc, "GET", "/api/me", &me);
    let anonymous = app.get("/api/me", None);
    assert_eq!(anonymous.status, 401);
    check(&doc, "GET", "/api/me", &anonymous);
    let renamed = app.send_json(
        "PUT",
        "/api/me",
        &json!({"nickName": "安 😀"}),
        Some(&token),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    check(&doc, "PUT", "/api/me", &renamed);
    let blank = app.send_json("PUT", "/api/me", &json!({"nickName": "  "}), Some(&token));
    assert_eq!(blank.status, 400);
    check(&doc, "PUT", "/api/me", &blank);
    let uploaded = upload(&app, Some(&token), "file", PNG);
    assert_eq!(uploaded.status, 200, "{}", uploaded.text);
    check(&doc, "POST", "/api/me/avatar", &uploaded);
    let not_image = upload(&app, Some(&token), "file", b"plain text");
    assert_eq!(not_image.status, 415);
    check(&doc, "POST", "/api/me/avatar", &not_image);

    // The avatar it stored, and one never stored.
    let avatar_url = uploaded.body["user"]["avatarUrl"].as_str().unwrap();
    let avatar_path = &avatar_url[avatar_url.find("/avatars/").unwrap()..];
    let (status, bytes, headers) = app.get_bytes(avatar_path, &[]);
    assert_eq!(status, 200);
    let image = Real {
        status,
        headers: headers.clone(),
        json: None,
        body_len: bytes.len(),
    };
    check_real(&doc, "GET", "/avatars/{file}", &image);
    let etag = headers["etag"].clone();
    let (status, bytes, headers) = app.get_bytes(avatar_path, &[("If-None-Match", &etag)]);
    assert_eq!(status, 304);
    check_real(
        &doc,
        "GET",
        "/avatars/{file}",
        &Real {
            status,
            headers,
            json: None,
            body_len: bytes.len(),
        },
    );
    let missing = app.get(&format!("/avatars/{}.png", "0".repeat(64)), None);
    assert_eq!(missing.status, 404);
    check(&doc, "GET", "/avatars/{file}", &missing);

    // The phone number: stored, and the login code sent by mistake.
    let phone = app.post_form(
        "/api/phone",
        &[("code", &mock.new_phone_code("ann", "13800138000"))],
    );
    let phone = {
        // post_form has no token; send the same form with one.
        assert_eq!(phone.status, 401);
        check(&doc, "POST", "/api/phone", &phone);
        let body = format!("code={}", mock.new_phone_code("ann", "13800138000"));
        app.send(
            "POST",
            "/api/phone",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(&token),
            body.as_bytes(),
        )
    };
    assert_eq!(phone.status, 200, "{}", phone.text);
    check(&doc, "POST", "/api/phone", &phone);
    let wrong_code =
        app.post_json_with_token("/api/phone", &json!({"code": mock.new_code("ann")}), &token);
    assert_eq!(wrong_code.status, 400, "{}", wrong_code.text);
    check(&doc, "POST", "/api/phone", &wrong_code);
    let me = app.get("/api/me", Some(&token));
    assert_eq!(me.body["user"]["purePhoneNumber"], "13800138000");
    check(&doc, "GET", "/api/me", &me);

    // Operations.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = app.get(path, None);
        assert_eq!(answer.status, 200, "{path}");
        check(&doc, "GET", path, &answer);
    }
    for path in ["/healthz", "/readyz"] {
        check(&doc, "HEAD", path, &app.request("HEAD", path));
    }

    // Sessions: the key set, forward auth, refresh, the session list, logouts.
    check(
        &doc,
        "GET",
        "/.well-known/jwks.json",
        &app.get("/.well-known/jwks.json", None),
    );
    let verified = app.get("/auth/verify", Some(&token));
    assert_eq!(verified.status, 204, "{}", verified.text);
    check(&doc, "GET", "/auth/verify", &verified);
    let refused = app.get("/auth/verify", Some("Bearer nonsense"));
    assert_eq!(refused.status, 401);
    check(&doc, "GET", "/auth/verify", &refused);
    let refresh_token = login.body["refresh_token"].as_str().unwrap();
    let refreshed = app.post_json(
        "/api/token/refresh",
        &json!({"refresh_token": refresh_token}),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    check(&doc, "POST", "/api/token/refresh", &refreshed);
    let unknown = app.post_json(
        "/api/token/refresh",
        &json!({"refresh_token": "rt_unknown"}),
    );
    assert_eq!(unknown.status, 401);
    check(&doc, "POST", "/api/token/refresh", &unknown);
    let current = refreshed.body["token"].as_str().unwrap().to_string();
    let sessions = app.get("/api/me/sessions", Some(&current));
    assert_eq!(sessions.status, 200, "{}", sessions.text);
    check(&doc, "GET", "/api/me/sessions", &sessions);
    let other = sessions.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .expect("another session of ann's")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let removed = app.send(
        "DELETE",
        &format!("/api/me/sessions/{other}"),
        &[],
        Some(&current),
        b"",
    );
    assert_eq!(removed.status, 200, "{}", removed.text);
    check(&doc, "DELETE", "/api/me/sessions/{id}", &removed);
    let gone = app.send(
        "DELETE",
        "/api/me/sessions/0123456789abcdef0123456789abcdef",
        &[],
        Some(&current),
        b"",
    );
    assert_eq!(gone.status, 404, "not one of ann's sessions: {}", gone.text);
    check(&doc, "DELETE", "/api/me/sessions/{id}", &gone);
    let out = app.send("POST", "/api/logout", &[], Some(&current), b"");
    assert_eq!(out.status, 200, "{}", out.text);
    check(&doc, "POST", "/api/logout", &out);
    let after = app.send("POST", "/api/logout", &[], Some(&current), b"");
    assert_eq!(after.status, 401, "{}", after.text);
    check(&doc, "POST", "/api/logout", &after);
    let again = app.post_form("/api/wxuser", &[("code", &mock.new_code("ann"))]);
    let all = app.send(
        "POST",
        "/api/logout/all",
        &[],
        Some(again.body["token"].as_str().unwrap()),
        b"",
    );
    assert_eq!(all.status, 200, "{}", all.text);
    check(&doc, "POST", "/api/logout/all", &all);
}

on_both_backends!(real_answers_validate_against_the_documented_schemas);

#[test]
fn documented_statuses_of_every_error_validate_against_the_error_schema() {
    // Every error response in the document uses the shared Error schema, so a client can read
    // any failure the same way.
    let doc = document();
    let mut seen = 0;
    for (path, method) in documented() {
        let responses = &doc["paths"][&path][method.to_ascii_lowercase()]["responses"];
        for (status, response) in responses.as_object().unwrap() {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let response = resolve(doc, response);
            if let Some(media) = response["content"].get("application/json") {
                seen += 1;
                assert_eq!(
                    media["schema"]["$ref"], "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
        }
    }
    assert!(seen > 20, "{seen}");
}
