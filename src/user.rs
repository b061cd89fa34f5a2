//! Who a user is, as the store keeps them and the endpoints show them: the profile, the phone
//! number, and the row that ties them to an openid.
//!
//! A leaf: the store, the WeChat client (which reads phone numbers) and the use cases all speak
//! these types, so none of them has to import another to name a user.

use serde::{Deserialize, Serialize};

/// The profile a client may send with a login. `None` fields keep what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub nick_name: Option<String>,
    pub avatar_url: Option<String>,
    pub gender: Option<i64>,
}

/// A stored user, with WeChat's field names where it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub openid: String,
    pub unionid: Option<String>,
    pub profile: Profile,
    pub phone: Option<PhoneNumber>,
}

/// A user's phone number as WeChat returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PhoneNumber {
    /// With the country code for numbers outside mainland China, e.g. `+1 2025550123`.
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    /// Without the country code.
    #[serde(rename = "purePhoneNumber", default)]
    pub pure_phone_number: String,
    #[serde(rename = "countryCode", default)]
    pub country_code: String,
}
