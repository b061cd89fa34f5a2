//! The fields of a request body, read the same way from a form or a JSON object.
//!
//! A leaf: the login and phone use cases both read a `code` from a body, and neither should import
//! the other to do it. Refusals are a small [`FieldError`] (a client-safe sentence) that the
//! error module turns into a 400, so this module needs nothing of the rest of the service.

use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

/// WeChat's codes are 32 characters; anything much longer is not a code.
pub const MAX_CODE_LEN: usize = 128;

/// Why a body's fields were refused, in words the client may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError(pub String);

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fields of a form or JSON body. JSON values must be strings, except `userInfo`, which a
/// JSON client may also send as an object.
#[derive(Debug, Default)]
pub struct BodyFields {
    strings: HashMap<String, String>,
    /// JSON fields that held something other than a string or null.
    not_strings: Vec<String>,
    user_info_object: Option<Value>,
}

impl BodyFields {
    /// Reads an `application/x-www-form-urlencoded` body (the first of repeated fields wins).
    pub fn from_form(body: &[u8]) -> BodyFields {
        let mut fields = BodyFields::default();
        for (key, value) in form_urlencoded::parse(body) {
            fields
                .strings
                .entry(key.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        fields
    }

    /// Reads an `application/json` body, which must be an object.
    pub fn from_json(body: &[u8]) -> Result<BodyFields, FieldError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| FieldError("the body is not valid JSON".into()))?;
        let Value::Object(map) = value else {
            return Err(FieldError("the body must be a JSON object".into()));
        };
        let mut fields = BodyFields::default();
        for (key, value) in map {
            match value {
                Value::Null => {}
                Value::String(s) => {
                    fields.strings.insert(key, s);
                }
                other if key == "userInfo" => fields.user_info_object = Some(other),
                _ => fields.not_strings.push(key),
            }
        }
        Ok(fields)
    }

    /// A string field; empty counts as absent.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, FieldError> {
        if self.not_strings.iter().any(|n| n == name) {
            return Err(FieldError(format!("{name} must be a string")));
        }
        Ok(self.strings.remove(name).filter(|v| !v.trim().is_empty()))
    }

    /// `userInfo` when a JSON client sent it as an object rather than WeChat's rawData string.
    pub fn user_info_object(&self) -> Option<&Value> {
        self.user_info_object.as_ref()
    }

    /// The required `code` field, validated; `what` says where the code comes from.
    pub fn code(&mut self, what: &str) -> Result<String, FieldError> {
        let code = self
            .take("code")?
            .map(|c| c.trim().to_string())
            .ok_or_else(|| FieldError(format!("code is missing: send the code from {what}")))?;
        if code.len() > MAX_CODE_LEN || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError(format!(
                "code is malformed: send the code from {what} unchanged"
            )));
        }
        Ok(code)
    }
}
