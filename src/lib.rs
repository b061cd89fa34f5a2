//! wxlogin: logs WeChat mini-program users in.
//!
//! A mini-program posts the code from `wx.login()` to `POST /api/wxuser`; the server exchanges it
//! at WeChat's `jscode2session` for the user's openid, writes one row per openid, and answers with
//! a bearer token the mini-program sends on later calls. `main` only reads the configuration,
//! builds the [`App`] and [`Server::serve`]s it; everything else lives in this library so tests
//! run it in-process.

pub mod access_token;
pub mod account;
pub mod admin;
pub mod app;
pub mod avatar;
pub mod clock;
pub mod config;
pub mod error;
pub mod fields;
pub mod history;
pub mod http;
pub mod keys;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod moderation;
pub mod net;
pub mod opendata;
pub mod phone;
pub mod profile;
pub mod push;
pub mod ratelimit;
pub mod replay;
pub mod secret;
pub mod session;
pub mod singleflight;
pub mod store;
pub mod sweep;
pub mod token;
pub mod user;
pub mod webhooks;
pub mod wechat;

pub use app::{App, StartError};
pub use config::Config;
pub use error::Error;
pub use http::Server;
