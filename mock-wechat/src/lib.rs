//! `mock-wechat`: a stand-in for WeChat's server API, so that the wxlogin login server can be
//! run (`make run`) and tested without the internet and without a real mini-program.
//!
//! It answers `GET /sns/jscode2session` the way WeChat does (HTTP 200, `text/plain`, a JSON
//! body), with a `js_code` format a person can type (`<user>.<nonce>`), and with special codes
//! that make it fail on purpose (`fail.<errcode>`, `http.<status>`, `garbage.<x>`,
//! `slow.<ms>`). `GET /mock/code?user=NAME` plays the part of `wx.login()`.
//!
//! It also plays WeChat's part in four more flows:
//! - open data (the profile): [`MockWechat::open_data`] (or `GET /mock/userinfo`) gives what
//!   the WeChat client hands the mini-program (`rawData`, `signature`, `encryptedData`, `iv`),
//!   signed and encrypted with the user's latest session key exactly as WeChat does, or with
//!   the key before it ([`MockWechat::stale_open_data`]);
//! - the access token: `POST /cgi-bin/stable_token` (normal mode and `force_refresh`), with
//!   [`MockWechat::expire_access_tokens`] to make every token so far expire;
//! - the phone number: [`MockWechat::new_phone_code`] (or `GET /mock/phone_code`) plays the
//!   `getPhoneNumber` button, `POST /wxa/business/getuserphonenumber` trades the code;
//! - content security: `POST /wxa/msg_sec_check` judges text by configured words, and
//!   `POST /wxa/media_check_async` fetches the image and later pushes the verdict to
//!   `push_url`, signed and (in safe mode) encrypted like WeChat's message push
//!   ([`PushKeys`] forges and opens such pushes, [`push_signature`] signs the URL check).
//!
//! See `README.md` beside this crate for the full description.
//!
//! Tests start it in-process on port 0:
//!
//! ```
//! use mock_wechat::{MockConfig, MockWechat};
//!
//! let mock = MockWechat::start(MockConfig {
//!     bind: "127.0.0.1:0".to_owned(),
//!     ..MockConfig::default()
//! })
//! .unwrap();
//! let code = mock.new_code("alice");
//! assert!(code.starts_with("alice."));
//! assert_eq!(mock.openid_for("alice").len(), 28);
//! mock.stop();
//! ```

mod code;
mod config;
mod control;
mod http;
mod identity;
mod mediacheck;
mod opendata;
mod phone;
mod push;
mod reply;
mod request;
mod router;
mod secapi;
mod security;
mod server;
mod state;
mod sync;
mod token;
mod wechat;

pub use config::{MockConfig, DEFAULT_APPID, DEFAULT_SECRET};
pub use opendata::{MockProfile, OpenData};
pub use push::{
    media_check_event, signature as push_signature, Push, PushError, PushKeys, DEFAULT_PUSH_TOKEN,
    MINI_PROGRAM_USERNAME,
};
pub use security::{MediaVerdict, Suggest};
pub use server::MockWechat;

#[cfg(test)]
mod tests;
