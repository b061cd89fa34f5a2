//! The integration suite: one test binary, one module per area. Each test starts its own server
//! on port 0 with its own database, so tests run in parallel.

mod accounts;
mod forward_auth;
mod full_stack;
mod hardening;
mod helpers;
mod hostile;
mod http;
mod images;
mod layout;
mod login;
mod migrations;
mod moderation;
mod openapi;
mod profile;
mod properties;
mod ratelimit;
mod replay;
mod resilience;
mod secrets;
mod sessions;
mod store;
mod webhooks;
mod wechat_flows;
