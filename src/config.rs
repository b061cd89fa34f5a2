//! Typed configuration, read once from the environment and validated before anything starts.
//!
//! Every variable name here is part of the public interface (operators put them in unit files and
//! `.env` files), so a bad value stops start-up with a message that names the variable and says how
//! to fix it, instead of surfacing later as a confusing runtime failure.

use crate::keys::KeyMaterial;
use crate::net::is_loopback_url;
use crate::ratelimit::Rate;
use crate::secret::{random_hex, Secret};
use crate::store::DatabaseUrl;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the service listens when `WXLOGIN_BIND` is not set.
pub const DEFAULT_BIND: &str = "127.0.0.1:8888";
/// WeChat's production API.
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
/// SQLite file used when `DATABASE_URL` is not set, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://wxlogin.db";
/// Default `WXLOGIN_MAX_CONNECTIONS`. Each open connection has a thread of its own that runs its
/// requests, blocked for the whole WeChat round trip (50–300 ms on real WeChat), so this is also
/// how many logins can be in flight at once: 1,024 threads with small stacks fit a small VPS.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default bound on the whole jscode2session round trip.
pub const DEFAULT_WECHAT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default access-token lifetime: short, because a refresh token renews it and a stolen access
/// token is only revoked within `WXLOGIN_REVOCATION_DELAY` where it is checked by wxlogin, and
/// never where a backend checks it with the JWKS alone.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(2 * 3600);
/// Longest `JWT_TTL`: ten years, well inside the JWT library's 32-bit time arithmetic.
pub const MAX_JWT_TTL: Duration = Duration::from_secs(3650 * 86_400);
/// `JWT_SECRET` is the input of every key derived from it (HKDF): less than 32 bytes of it is
/// less than the 128-bit strength of the P-256 key it becomes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Default `WXLOGIN_ISSUER` when `WXLOGIN_PUBLIC_URL` is not set either.
pub const DEFAULT_ISSUER: &str = "wxlogin";
/// Default `WXLOGIN_REFRESH_TTL`: a session unused this long ends.
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Default `WXLOGIN_SESSION_MAX_AGE`: a session ends this long after its login, used or not.
pub const DEFAULT_SESSION_MAX_AGE: Duration = Duration::from_secs(180 * 86_400);
/// Default `WXLOGIN_REFRESH_REUSE_GRACE`.
pub const DEFAULT_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(30);
/// Default `WXLOGIN_REVOCATION_DELAY`.
pub const DEFAULT_REVOCATION_DELAY: Duration = Duration::from_secs(5);

/// Default `WXLOGIN_RATE_LIMIT_BURST`: requests one client address may make at once to each
/// limited route. Generous, because carrier NAT puts many real users behind one address: 200
/// logins at once from one address must pass.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 300;
/// Default `WXLOGIN_RATE_LIMIT_PER_SECOND`: how fast an address's bucket refills.
pub const DEFAULT_RATE_LIMIT_PER_SECOND: f64 = 100.0;
/// Default `WXLOGIN_USER_RATE_LIMIT_BURST`: refresh rotations (or phone binds) one user may make
/// at once. A mini-program refreshes about once per access-token lifetime, but every request it
/// has waiting may fire its own refresh when it wakes (32 at once are tested to agree), so the
/// burst leaves room for that; the rate is what stops a script.
pub const DEFAULT_USER_RATE_LIMIT_BURST: u32 = 60;
/// Default `WXLOGIN_USER_RATE_LIMIT_PER_SECOND`.
pub const DEFAULT_USER_RATE_LIMIT_PER_SECOND: f64 = 1.0;
/// Largest burst or rate accepted: beyond it a limit is no limit, and `0` says that plainly.
const MAX_RATE_LIMIT: u32 = 1_000_000;

/// Default `WXLOGIN_AVATAR_UPLOADS_PER_HOUR`: a person changes their avatar a few times at most;
/// 20 leaves room for trying pictures out and stops a script filling the disk.
pub const DEFAULT_AVATAR_UPLOADS_PER_HOUR: u32 = 20;
/// Default `WXLOGIN_MODERATION_RESUBMIT_AFTER`: WeChat promises a verdict within 30 minutes
/// and usually pushes it within seconds, so one still missing after ten was most likely lost.
pub const DEFAULT_MODERATION_RESUBMIT_AFTER: Duration = Duration::from_secs(600);
/// Default `WXLOGIN_MODERATION_MAX_ATTEMPTS`: submissions of one image before giving up.
pub const DEFAULT_MODERATION_MAX_ATTEMPTS: u32 = 3;

/// What to do with content WeChat could not clear: a `review` verdict, or no verdict at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Refuse it: nothing unchecked is published (the default).
    Reject,
    /// Publish it: availability over strictness.
    Accept,
}

/// Content moderation of nicknames and avatars (issue 13).
#[derive(Clone, Debug)]
pub struct ModerationConfig {
    /// `WXLOGIN_MODERATION` (`on`, the default, or `off`, for development only).
    pub enabled: bool,
    /// `WXLOGIN_MODERATION_ON_REVIEW`.
    pub on_review: Policy,
    /// `WXLOGIN_MODERATION_ON_ERROR`: WeChat failing, timing out, or never pushing a verdict.
    pub on_error: Policy,
    /// `WECHAT_PUSH_TOKEN`: the token (令牌) of the message push configuration; required when
    /// moderation is on, since image verdicts only arrive by push.
    pub push_token: Option<Secret>,
    /// `WECHAT_PUSH_AES_KEY`: the EncodingAESKey, set for safe mode (encrypted pushes).
    pub push_aes_key: Option<Secret>,
    /// `WXLOGIN_MODERATION_RESUBMIT_AFTER`: an image check unanswered this long is submitted
    /// again.
    pub resubmit_after: Duration,
    /// `WXLOGIN_MODERATION_MAX_ATTEMPTS`: submissions before `on_error` decides.
    pub max_attempts: u32,
}

/// Everything the service needs to know about WeChat.
#[derive(Clone, Debug)]
pub struct WechatConfig {
    pub appid: String,
    pub secret: Secret,
    /// Base URL without a trailing slash, e.g. `https://api.weixin.qq.com`.
    pub api_base: String,
    /// Bound on one whole upstream call (connect, send, receive).
    pub timeout: Duration,
}

/// How access tokens are signed and what they say.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// `JWT_SECRET`: the input of the derived signing key (unless a key file is given) and of
    /// the refresh-token key.
    pub secret: Secret,
    /// Access-token lifetime (`JWT_TTL`).
    pub ttl: Duration,
    /// The key that signs: `WXLOGIN_SIGNING_KEY_FILE`, else derived from `JWT_SECRET`.
    pub signing_key: KeyMaterial,
    /// Keys still accepted and published, never used to sign (`WXLOGIN_PREVIOUS_SIGNING_KEYS`).
    pub previous_keys: Vec<KeyMaterial>,
    /// `iss` (`WXLOGIN_ISSUER`, else `WXLOGIN_PUBLIC_URL`, else `wxlogin`).
    pub issuer: String,
    /// `aud`: the mini-program's AppID.
    pub audience: String,
}

/// How sessions live and end.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Each refresh extends the session this long (`WXLOGIN_REFRESH_TTL`)...
    pub refresh_ttl: Duration,
    /// ...but never beyond this long after its login (`WXLOGIN_SESSION_MAX_AGE`).
    pub max_age: Duration,
    /// How long a rotated refresh token still gets the pair its rotation produced
    /// (`WXLOGIN_REFRESH_REUSE_GRACE`); later it is treated as stolen.
    pub reuse_grace: Duration,
    /// How long a node may trust its cached answer to "is this session revoked?"
    /// (`WXLOGIN_REVOCATION_DELAY`); zero asks the database on every request.
    pub revocation_delay: Duration,
}

/// The rate limits of `/api/wxuser`, `/api/token/refresh` and `/api/phone`; `None` is off.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Per client address and route (`WXLOGIN_RATE_LIMIT_BURST`, `…_PER_SECOND`).
    pub client: Option<Rate>,
    /// Per user and route, on refresh and phone (`WXLOGIN_USER_RATE_LIMIT_BURST`, `…_PER_SECOND`).
    pub user: Option<Rate>,
}

/// Default `WXLOGIN_DELETION_GRACE`: a deletion erases the account at once.
pub const DEFAULT_DELETION_GRACE: Duration = Duration::ZERO;
/// Default `WXLOGIN_LOGIN_HISTORY`.
pub const DEFAULT_LOGIN_HISTORY: Duration = Duration::from_secs(90 * 86_400);
/// Default `WXLOGIN_SWEEP_INTERVAL`.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// `WXLOGIN_WEBHOOK_SECRET` signs every event (HMAC-SHA256): shorter is guessable.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// How accounts end and what is kept about them.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    /// How long a deletion the user asked for waits before the erasure, during which logging in
    /// and cancelling still work (`WXLOGIN_DELETION_GRACE`); zero erases before the answer.
    pub deletion_grace: Duration,
    /// How long login history is kept (`WXLOGIN_LOGIN_HISTORY`).
    pub login_history: Duration,
    /// How often each node's sweep runs, give or take a fifth (`WXLOGIN_SWEEP_INTERVAL`).
    pub sweep_interval: Duration,
}

/// Where events go (`WXLOGIN_WEBHOOK_URL`) and the key that signs them
/// (`WXLOGIN_WEBHOOK_SECRET`). Set, it makes every change append its event to the outbox.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    /// `WXLOGIN_THREADS`, which no longer sizes anything but the default connection cap of a
    /// deployment that still sets it (there is no worker pool since connections run their own
    /// requests); start-up warns about it.
    pub legacy_threads: Option<usize>,
    pub wechat: WechatConfig,
    pub jwt: JwtConfig,
    pub sessions: SessionConfig,
    pub rate_limits: RateLimitConfig,
    pub accounts: AccountConfig,
    /// `None` when no webhook is configured: no events are written.
    pub webhook: Option<WebhookConfig>,
    pub moderation: ModerationConfig,
    /// Avatar uploads one user may make in an hour (`WXLOGIN_AVATAR_UPLOADS_PER_HOUR`); 0 is
    /// no limit.
    pub avatar_uploads_per_hour: u32,
    pub database_url: DatabaseUrl,
    /// Largest request body accepted; beyond it the answer is 413.
    pub max_body_bytes: usize,
    /// The address clients reach the service at (`WXLOGIN_PUBLIC_URL`), used to build avatar
    /// URLs; `None` means `http://` plus the bound address.
    pub public_url: Option<String>,
    /// How long a client connection may stay silent, reading or writing, before it is dropped
    /// (`WXLOGIN_CLIENT_TIMEOUT`): idle keep-alive connections, clients that send nothing, and
    /// stalled bodies.
    pub client_timeout: Duration,
    /// How long a shutdown waits for requests in flight (`WXLOGIN_DRAIN_TIMEOUT`).
    pub drain_timeout: Duration,
    /// From a request's first byte, how long its head and body may take to arrive
    /// (`WXLOGIN_BODY_TIMEOUT`); a body still incomplete then is answered 408. A request reaches
    /// its handler only once read, so a slow client holds nothing but its own connection.
    pub body_timeout: Duration,
    /// Open client connections at most (`WXLOGIN_MAX_CONNECTIONS`); each has a thread of its
    /// own while open, and a connection beyond the cap is answered 503 and closed at once.
    pub max_connections: usize,
    /// How long a login code's successful outcome is remembered, so that a retry with the same
    /// code gets a fresh token instead of WeChat's "code been used". Zero turns it off.
    pub code_replay_window: Duration,
    /// Set when `JWT_SECRET` was missing and a random key was generated because the upstream is a
    /// local mock: tokens will not survive a restart, which `main` warns about.
    pub jwt_secret_generated: bool,
}

/// Default `WXLOGIN_CLIENT_TIMEOUT`: above nginx's upstream keep-alive timeout (50s in
/// deploy/nginx), so that nginx, not wxlogin, closes idle upstream connections.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default `WXLOGIN_BODY_TIMEOUT` (nginx's `client_header_timeout` and `client_body_timeout`
/// are 60s each, per read; this one bounds the whole request).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection cap per `WXLOGIN_THREADS` of a deployment that still sets it, as when that
/// variable sized a worker pool: its capacity stays what it was.
pub const LEGACY_CONNECTIONS_PER_THREAD: usize = 4;

/// Default `WXLOGIN_DRAIN_TIMEOUT`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `WXLOGIN_CODE_REPLAY_WINDOW`.
pub const DEFAULT_CODE_REPLAY_WINDOW: Duration = Duration::from_secs(60);
/// WeChat's codes live five minutes; remembering one longer has no use.
const MAX_CODE_REPLAY_WINDOW: Duration = Duration::from_secs(300);

/// Largest request body accepted. Login bodies are well under 4 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can supply variables without touching the
    /// process environment (which is shared between parallel tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let bind_text = get("WXLOGIN_BIND").unwrap_or_else(|| DEFAULT_BIND.into());
        let bind = bind_text.parse::<SocketAddr>().map_err(|_| {
            format!("WXLOGIN_BIND: {bind_text:?} is not an address; use IP:PORT, e.g. 127.0.0.1:8888 or 0.0.0.0:8888")
        })?;

        let legacy_threads = match get("WXLOGIN_THREADS") {
            None => None,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=4096).contains(&n) => Some(n),
                _ => {
                    return Err(format!(
                        "WXLOGIN_THREADS: {text:?} is not a thread count; remove the variable (it is no longer used: WXLOGIN_MAX_CONNECTIONS bounds requests in flight), or use a whole number from 1 to 4096"
                    ))
                }
            },
        };

        let api_base = get("WECHAT_API_BASE")
            .unwrap_or_else(|| DEFAULT_WECHAT_API_BASE.into())
            .trim()
            .trim_end_matches('/')
            .to_string();
        if !(api_base.starts_with("http://") || api_base.starts_with("https://")) {
            return Err(format!(
                "WECHAT_API_BASE: {api_base:?} is not an http(s) URL; use https://api.weixin.qq.com or the address of mock-wechat, e.g. http://127.0.0.1:9999"
            ));
        }
        let upstream_is_local = is_loopback_url(&api_base);
        if api_base.starts_with("http://") && !upstream_is_local {
            return Err(format!(
                "WECHAT_API_BASE: {api_base:?} is plain http to a host that is not this machine, so the AppSecret would travel in clear; use https://api.weixin.qq.com, or http:// only for a mock on loopback (127.0.0.1, [::1], localhost)"
            ));
        }

        let appid = get("WECHAT_APPID").ok_or(
            "WECHAT_APPID is not set; use your mini-program's AppID (mp.weixin.qq.com → Development → Development settings)",
        )?;
        let secret = get("WECHAT_SECRET").ok_or(
            "WECHAT_SECRET is not set; use your mini-program's AppSecret (mp.weixin.qq.com → Development → Development settings)",
        )?;

        let timeout = match get("WECHAT_TIMEOUT") {
            None => DEFAULT_WECHAT_TIMEOUT,
            Some(text) => match parse_duration(&text) {
                Some(d) if d > Duration::ZERO && d <= Duration::from_secs(60) => d,
                _ => return Err(format!(
                    "WECHAT_TIMEOUT: {text:?} is not a timeout; use a duration from 1ms to 60s such as 5s or 2500ms"
                )),
            },
        };

        let ttl = match get("JWT_TTL") {
            None => DEFAULT_JWT_TTL,
            Some(text) => match parse_duration(&text) {
                Some(d) if d >= Duration::from_secs(60) && d <= MAX_JWT_TTL => d,
                _ => {
                    return Err(format!(
                        "JWT_TTL: {text:?} is not a token lifetime; use a duration from 60s to 3650d such as 2h, 30m or 1d (default 2h)"
                    ))
                }
            },
        };

        let (jwt_secret, jwt_secret_generated) = match lookup("JWT_SECRET") {
            Some(s) if key_bytes(&s) >= MIN_JWT_SECRET_BYTES => (Secret::new(s), false),
            Some(s) if !s.is_empty() => {
                return Err(format!(
                    "JWT_SECRET has {} non-whitespace bytes; use at least {MIN_JWT_SECRET_BYTES} random bytes, e.g. JWT_SECRET=$(openssl rand -hex 32)",
                    key_bytes(&s)
                ))
            }
            _ if upstream_is_local => (Secret::new(random_hex(32)), true),
            _ => return Err(format!(
                "JWT_SECRET is not set; use at least {MIN_JWT_SECRET_BYTES} random bytes, e.g. JWT_SECRET=$(openssl rand -hex 32) (only a local mock upstream may run without it)"
            )),
        };

        let code_replay_window = match get("WXLOGIN_CODE_REPLAY_WINDOW") {
            None => DEFAULT_CODE_REPLAY_WINDOW,
            Some(text) => match text.trim().parse::<u64>().map(Duration::from_secs) {
                Ok(d) if d <= MAX_CODE_REPLAY_WINDOW => d,
                _ => return Err(format!(
                    "WXLOGIN_CODE_REPLAY_WINDOW: {text:?} is not a window; use whole seconds from 0 (off) to 300 (default 60)"
                )),
            },
        };

        let client_timeout = match get("WXLOGIN_CLIENT_TIMEOUT") {
            None => DEFAULT_CLIENT_TIMEOUT,
            Some(text) => match parse_duration(&text) {
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => d,
                _ => return Err(format!(
                    "WXLOGIN_CLIENT_TIMEOUT: {text:?} is not a timeout; use a duration from 1s to 3600s such as 60s (default 60s; keep it above the proxy's upstream keep-alive timeout)"
                )),
            },
        };

        let drain_timeout = match get("WXLOGIN_DRAIN_TIMEOUT") {
            None => DEFAULT_DRAIN_TIMEOUT,
            Some(text) => match parse_duration(&text) {
                Some(d) if d <= Duration::from_secs(600) => d,
                _ => return Err(format!(
                    "WXLOGIN_DRAIN_TIMEOUT: {text:?} is not a duration; use one from 0s to 600s such as 10s (default 10s)"
                )),
            },
        };

        let body_timeout = match get("WXLOGIN_BODY_TIMEOUT") {
            None => DEFAULT_BODY_TIMEOUT,
            Some(text) => match parse_duration(&text) {
                Some(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(600) => d,
                _ => return Err(format!(
                    "WXLOGIN_BODY_TIMEOUT: {text:?} is not a timeout; use a duration from 100ms to 600s such as 10s (default 10s)"
                )),
            },
        };

        let max_connections = match get("WXLOGIN_MAX_CONNECTIONS") {
            None => legacy_threads
                .map_or(DEFAULT_MAX_CONNECTIONS, |n| n * LEGACY_CONNECTIONS_PER_THREAD),
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=65_536).contains(&n) => n,
                _ => return Err(format!(
                    "WXLOGIN_MAX_CONNECTIONS: {text:?} is not a connection count; use a whole number from 1 to 65536 (default {DEFAULT_MAX_CONNECTIONS})"
                )),
            },
        };

        let public_url = match get("WXLOGIN_PUBLIC_URL") {
            None => None,
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_string();
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                    return Err(format!(
                        "WXLOGIN_PUBLIC_URL: {url:?} is not an http(s) URL; use the address clients reach this service at, e.g. https://login.example.com"
                    ));
                }
                Some(url)
            }
        };

        let issuer = match get("WXLOGIN_ISSUER") {
            Some(issuer) if issuer.trim().len() <= 256 => issuer.trim().to_string(),
            Some(_) => {
                return Err(
                    "WXLOGIN_ISSUER: longer than 256 characters; use this service's URL, e.g. https://login.example.com".into(),
                )
            }
            None => public_url.clone().unwrap_or_else(|| DEFAULT_ISSUER.into()),
        };

        let signing_key = match get("WXLOGIN_SIGNING_KEY_FILE") {
            None => KeyMaterial::Derived(jwt_secret.clone()),
            Some(path) => pem_file("WXLOGIN_SIGNING_KEY_FILE", path.trim())?,
        };
        let mut previous_keys = Vec::new();
        for item in get("WXLOGIN_PREVIOUS_SIGNING_KEYS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let is_file = (item.starts_with('/') || item.starts_with('.'))
                && std::path::Path::new(item).is_file();
            let material = if is_file {
                pem_file("WXLOGIN_PREVIOUS_SIGNING_KEYS", item)?
            } else if key_bytes(item) >= MIN_JWT_SECRET_BYTES {
                KeyMaterial::Derived(Secret::new(item))
            } else {
                return Err(format!(
                    "WXLOGIN_PREVIOUS_SIGNING_KEYS: item {} is neither a readable PEM file (a path starting with / or .) nor a secret of at least {MIN_JWT_SECRET_BYTES} non-whitespace bytes (a previous JWT_SECRET); separate items with commas",
                    previous_keys.len() + 1
                ));
            };
            previous_keys.push(material);
        }

        let sessions = SessionConfig {
            refresh_ttl: bounded_duration(
                &get,
                "WXLOGIN_REFRESH_TTL",
                DEFAULT_REFRESH_TTL,
                (Duration::from_secs(60), MAX_JWT_TTL),
                "a session's idle lifetime; use a duration from 60s to 3650d such as 30d (default 30d)",
            )?,
            max_age: bounded_duration(
                &get,
                "WXLOGIN_SESSION_MAX_AGE",
                DEFAULT_SESSION_MAX_AGE,
                (Duration::from_secs(60), MAX_JWT_TTL),
                "a session's longest life; use a duration from 60s to 3650d such as 180d (default 180d)",
            )?,
            reuse_grace: bounded_duration(
                &get,
                "WXLOGIN_REFRESH_REUSE_GRACE",
                DEFAULT_REFRESH_REUSE_GRACE,
                (Duration::ZERO, Duration::from_secs(600)),
                "a grace period; use a duration from 0s to 600s such as 30s (default 30s)",
            )?,
            revocation_delay: bounded_duration(
                &get,
                "WXLOGIN_REVOCATION_DELAY",
                DEFAULT_REVOCATION_DELAY,
                (Duration::ZERO, Duration::from_secs(300)),
                "a delay; use a duration from 0 (check the database on every request) to 300s such as 5s (default 5s)",
            )?,
        };

        let rate_limits = RateLimitConfig {
            client: rate(
                &get,
                "WXLOGIN_RATE_LIMIT",
                DEFAULT_RATE_LIMIT_BURST,
                DEFAULT_RATE_LIMIT_PER_SECOND,
            )?,
            user: rate(
                &get,
                "WXLOGIN_USER_RATE_LIMIT",
                DEFAULT_USER_RATE_LIMIT_BURST,
                DEFAULT_USER_RATE_LIMIT_PER_SECOND,
            )?,
        };

        let accounts = AccountConfig {
            deletion_grace: bounded_duration(
                &get,
                "WXLOGIN_DELETION_GRACE",
                DEFAULT_DELETION_GRACE,
                (Duration::ZERO, Duration::from_secs(365 * 86_400)),
                "a grace period; use a duration from 0s (erase at once) to 365d such as 7d (default 0s)",
            )?,
            login_history: bounded_duration(
                &get,
                "WXLOGIN_LOGIN_HISTORY",
                DEFAULT_LOGIN_HISTORY,
                (Duration::from_secs(1), MAX_JWT_TTL),
                "a retention period; use a duration from 1s to 3650d such as 90d (default 90d)",
            )?,
            sweep_interval: bounded_duration(
                &get,
                "WXLOGIN_SWEEP_INTERVAL",
                DEFAULT_SWEEP_INTERVAL,
                (Duration::from_millis(100), Duration::from_secs(3600)),
                "an interval; use a duration from 100ms to 3600s such as 30s (default 30s)",
            )?,
        };

        let webhook = match (get("WXLOGIN_WEBHOOK_URL"), lookup("WXLOGIN_WEBHOOK_SECRET")) {
            (None, None) => None,
            (Some(_), None) => return Err(
                "WXLOGIN_WEBHOOK_SECRET is not set but WXLOGIN_WEBHOOK_URL is; set both (the secret signs every event: WXLOGIN_WEBHOOK_SECRET=$(openssl rand -hex 32)) or neither".into(),
            ),
            (None, Some(_)) => return Err(
                "WXLOGIN_WEBHOOK_URL is not set but WXLOGIN_WEBHOOK_SECRET is; set both (the URL receives the events) or neither".into(),
            ),
            (Some(url), Some(secret)) => {
                let url = url.trim().to_string();
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"));
                if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
                    return Err(format!(
                        "WXLOGIN_WEBHOOK_URL: {url:?} is not an http(s) URL; use the address of the endpoint that receives events, e.g. https://app.example.com/hooks/wxlogin"
                    ));
                }
                if key_bytes(&secret) < MIN_WEBHOOK_SECRET_BYTES {
                    return Err(format!(
                        "WXLOGIN_WEBHOOK_SECRET has {} non-whitespace bytes; use at least {MIN_WEBHOOK_SECRET_BYTES}, e.g. WXLOGIN_WEBHOOK_SECRET=$(openssl rand -hex 32)",
                        key_bytes(&secret)
                    ));
                }
                Some(WebhookConfig {
                    url,
                    secret: Secret::new(secret.trim()),
                })
            }
        };

        let moderation = moderation(&get, upstream_is_local, public_url.is_some())?;
        let avatar_uploads_per_hour = match get("WXLOGIN_AVATAR_UPLOADS_PER_HOUR") {
            None => DEFAULT_AVATAR_UPLOADS_PER_HOUR,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if n <= MAX_RATE_LIMIT => n,
                _ => return Err(format!(
                    "WXLOGIN_AVATAR_UPLOADS_PER_HOUR: {text:?} is not a count; use a whole number of uploads per user and hour from 0 (no limit) to {MAX_RATE_LIMIT} (default {DEFAULT_AVATAR_UPLOADS_PER_HOUR})"
                )),
            },
        };

        let database_url = DatabaseUrl::parse(
            get("DATABASE_URL")
                .as_deref()
                .unwrap_or(DEFAULT_DATABASE_URL)
                .trim(),
        )?;

        Ok(Config {
            bind,
            legacy_threads,
            wechat: WechatConfig {
                appid: appid.trim().to_string(),
                secret: Secret::new(secret.trim()),
                api_base,
                timeout,
            },
            jwt: JwtConfig {
                secret: jwt_secret,
                ttl,
                signing_key,
                previous_keys,
                issuer,
                audience: appid.trim().to_string(),
            },
            sessions,
            rate_limits,
            accounts,
            webhook,
            moderation,
            avatar_uploads_per_hour,
            database_url,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            code_replay_window,
            drain_timeout,
            body_timeout,
            max_connections,
            client_timeout,
            public_url,
            jwt_secret_generated,
        })
    }
}

impl Config {
    /// What an operator should hear about at start-up: settings that work but are risky.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.jwt_secret_generated {
            warnings.push(format!(
                "JWT_SECRET is not set: using a random key because the upstream is a local mock ({}); tokens will not survive a restart",
                self.wechat.api_base
            ));
        }
        if let Some(threads) = self.legacy_threads {
            warnings.push(format!(
                "WXLOGIN_THREADS={threads} is no longer used: each connection's thread runs its own requests, and WXLOGIN_MAX_CONNECTIONS (now {}) bounds connections and requests in flight; remove WXLOGIN_THREADS",
                self.max_connections
            ));
        }
        if !self.bind.ip().is_loopback() {
            warnings.push(format!(
                "WXLOGIN_BIND={} is reachable from other machines, but wxlogin has no TLS: bind it to 127.0.0.1 and put it behind the TLS proxy (deploy/nginx)",
                self.bind
            ));
        }
        warnings
    }
}

/// Reads the moderation variables. On, the push token is required (image verdicts arrive only
/// by push) and so is `WXLOGIN_PUBLIC_URL` unless the upstream is a local mock, because WeChat
/// fetches pending images from it.
fn moderation(
    get: &impl Fn(&str) -> Option<String>,
    upstream_is_local: bool,
    has_public_url: bool,
) -> Result<ModerationConfig, String> {
    let enabled = match get("WXLOGIN_MODERATION").as_deref().map(str::trim) {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(format!(
                "WXLOGIN_MODERATION: {other:?} is neither on nor off; use on (the default: nicknames and avatars are checked by WeChat) or off (development only)"
            ))
        }
    };
    let policy = |name: &str| match get(name).as_deref().map(str::trim) {
        None | Some("reject") => Ok(Policy::Reject),
        Some("accept") => Ok(Policy::Accept),
        Some(other) => Err(format!(
            "{name}: {other:?} is neither reject nor accept; use reject (the default) or accept"
        )),
    };
    let on_review = policy("WXLOGIN_MODERATION_ON_REVIEW")?;
    let on_error = policy("WXLOGIN_MODERATION_ON_ERROR")?;
    let push_token = match get("WECHAT_PUSH_TOKEN").map(|t| t.trim().to_string()) {
        Some(token)
            if (3..=32).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Some(Secret::new(token))
        }
        Some(_) => {
            return Err(
                "WECHAT_PUSH_TOKEN: not 3 to 32 letters and digits; use the Token (令牌) of the message push settings (mp.weixin.qq.com → Development → Development settings → Message push)".into(),
            )
        }
        None if enabled => {
            return Err(
                "WECHAT_PUSH_TOKEN is not set, but WXLOGIN_MODERATION is on (the default) and WeChat pushes image verdicts signed with it; set it to the Token (令牌) of the message push settings, or WXLOGIN_MODERATION=off for development".into(),
            )
        }
        None => None,
    };
    let push_aes_key = match get("WECHAT_PUSH_AES_KEY").map(|k| k.trim().to_string()) {
        Some(key) if crate::push::aes_key_is_valid(&key) => Some(Secret::new(key)),
        Some(_) => {
            return Err(
                "WECHAT_PUSH_AES_KEY: not an EncodingAESKey (43 characters of base64); copy the EncodingAESKey of the message push settings, or leave it unset for plain mode".into(),
            )
        }
        None => None,
    };
    if enabled && !has_public_url && !upstream_is_local {
        return Err(
            "WXLOGIN_PUBLIC_URL is not set, but WXLOGIN_MODERATION is on and WeChat fetches pending avatars from it; set the https:// address clients and WeChat reach this service at".into(),
        );
    }
    let resubmit_after = bounded_duration(
        get,
        "WXLOGIN_MODERATION_RESUBMIT_AFTER",
        DEFAULT_MODERATION_RESUBMIT_AFTER,
        (Duration::from_secs(1), Duration::from_secs(86_400)),
        "a delay; use a duration from 1s to 1d such as 10m (default 10m)",
    )?;
    let max_attempts = match get("WXLOGIN_MODERATION_MAX_ATTEMPTS") {
        None => DEFAULT_MODERATION_MAX_ATTEMPTS,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=20).contains(&n) => n,
            _ => return Err(format!(
                "WXLOGIN_MODERATION_MAX_ATTEMPTS: {text:?} is not a count; use a whole number from 1 to 20 (default {DEFAULT_MODERATION_MAX_ATTEMPTS})"
            )),
        },
    };
    Ok(ModerationConfig {
        enabled,
        on_review,
        on_error,
        push_token,
        push_aes_key,
        resubmit_after,
        max_attempts,
    })
}

/// Parses `500ms`, `30s`, `15m`, `8640h`, `7d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs_per_unit = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs_per_unit).map(Duration::from_secs)
}

/// A duration variable within `(min, max)`, or a message naming it; `what` says what it is and
/// how to write it.
fn bounded_duration(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
    (min, max): (Duration, Duration),
    what: &str,
) -> Result<Duration, String> {
    match get(name) {
        None => Ok(default),
        Some(text) => match parse_duration(&text) {
            Some(d) if d >= min && d <= max => Ok(d),
            _ => Err(format!("{name}: {text:?} is not {what}")),
        },
    }
}

/// A limit from `<prefix>_BURST` (whole requests, `0` turns it off) and `<prefix>_PER_SECOND`
/// (a positive number, fractions allowed: `0.5` is one every two seconds).
fn rate(
    get: &impl Fn(&str) -> Option<String>,
    prefix: &str,
    default_burst: u32,
    default_per_second: f64,
) -> Result<Option<Rate>, String> {
    let burst = match get(&format!("{prefix}_BURST")) {
        None => default_burst,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if n <= MAX_RATE_LIMIT => n,
            _ => return Err(format!(
                "{prefix}_BURST: {text:?} is not a burst; use a whole number of requests from 0 (no limit) to {MAX_RATE_LIMIT} (default {default_burst})"
            )),
        },
    };
    let per_second = match get(&format!("{prefix}_PER_SECOND")) {
        None => default_per_second,
        Some(text) => match text.trim().parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.001 && r <= f64::from(MAX_RATE_LIMIT) => r,
            _ => return Err(format!(
                "{prefix}_PER_SECOND: {text:?} is not a rate; use requests per second from 0.001 to {MAX_RATE_LIMIT}, such as 100 or 0.5 (default {default_per_second})"
            )),
        },
    };
    Ok((burst > 0).then_some(Rate { burst, per_second }))
}

/// A PKCS#8 PEM P-256 private key file named by `variable`, read and checked now so that a bad
/// file stops start-up instead of the first login.
fn pem_file(variable: &str, path: &str) -> Result<KeyMaterial, String> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("{variable}: cannot read {path:?}: {e}"))?;
    let material = KeyMaterial::Pem(Secret::new(pem));
    material.key_pair().map_err(|why| {
        format!("{variable}: {path:?} is {why}; create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`")
    })?;
    Ok(material)
}

/// The bytes of a key that are not whitespace: `"   "` or a padded short key is no stronger than
/// what is left without the padding.
fn key_bytes(key: &str) -> usize {
    key.bytes().filter(|b| !b.is_ascii_whitespace()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    /// Moderation is off here so the other settings can be tested without its required
    /// variables; `moderation_is_on_by_default_and_needs_its_push_settings` covers it.
    const REAL: &[(&str, &str)] = &[
        ("WECHAT_APPID", "wxappid"),
        ("WECHAT_SECRET", "wechat-secret"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("WXLOGIN_MODERATION", "off"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars = REAL.to_vec();
        vars.extend_from_slice(extra);
        vars
    }

    #[test]
    fn defaults_apply_when_only_credentials_are_set() {
        let c = config(REAL).unwrap();
        assert_eq!(c.bind.to_string(), DEFAULT_BIND);
        assert_eq!(c.legacy_threads, None);
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(c.wechat.api_base, DEFAULT_WECHAT_API_BASE);
        assert_eq!(c.jwt.ttl, DEFAULT_JWT_TTL);
        assert_eq!(
            c.database_url,
            DatabaseUrl::Sqlite(PathBuf::from("wxlogin.db"))
        );
        assert!(!c.jwt_secret_generated);
        assert_eq!(c.jwt.ttl, Duration::from_secs(7200));
        assert_eq!(c.jwt.issuer, "wxlogin");
        assert_eq!(c.jwt.audience, "wxappid");
        assert_eq!(
            c.jwt.signing_key,
            KeyMaterial::Derived(Secret::new("0123456789abcdef0123456789abcdef"))
        );
        assert_eq!(c.sessions.refresh_ttl, DEFAULT_REFRESH_TTL);
        assert_eq!(c.sessions.max_age, DEFAULT_SESSION_MAX_AGE);
        assert_eq!(c.sessions.reuse_grace, Duration::from_secs(30));
        assert_eq!(c.sessions.revocation_delay, Duration::from_secs(5));
        assert_eq!(c.accounts.deletion_grace, Duration::ZERO);
        assert_eq!(c.accounts.login_history, Duration::from_secs(90 * 86_400));
        assert_eq!(c.accounts.sweep_interval, Duration::from_secs(30));
        assert!(c.webhook.is_none());
        assert_eq!(
            c.rate_limits,
            RateLimitConfig {
                client: Some(Rate {
                    burst: 300,
                    per_second: 100.0
                }),
                user: Some(Rate {
                    burst: 60,
                    per_second: 1.0
                }),
            }
        );
    }

    #[test]
    fn rate_limits_are_set_and_turned_off_by_a_zero_burst() {
        let c = config(&with(&[
            ("WXLOGIN_RATE_LIMIT_BURST", "0"),
            ("WXLOGIN_USER_RATE_LIMIT_BURST", "5"),
            ("WXLOGIN_USER_RATE_LIMIT_PER_SECOND", "0.25"),
        ]))
        .unwrap();
        assert_eq!(c.rate_limits.client, None);
        assert_eq!(
            c.rate_limits.user,
            Some(Rate {
                burst: 5,
                per_second: 0.25
            })
        );
    }

    #[test]
    fn a_webhook_takes_an_http_url_and_a_secret_kept_out_of_debug_output() {
        let c = config(&with(&[
            (
                "WXLOGIN_WEBHOOK_URL",
                " https://app.example.com/hooks/wxlogin ",
            ),
            ("WXLOGIN_WEBHOOK_SECRET", "whsec-0123456789abcdef"),
        ]))
        .unwrap();
        let webhook = c.webhook.clone().expect("configured");
        assert_eq!(webhook.url, "https://app.example.com/hooks/wxlogin");
        assert_eq!(webhook.secret.expose(), "whsec-0123456789abcdef");
        assert!(!format!("{c:?}").contains("whsec-0123456789abcdef"));
    }

    #[test]
    fn the_issuer_defaults_to_the_public_url_and_a_pem_file_replaces_the_derived_key() {
        let dir = std::env::temp_dir().join(format!("wxlogin-key-{}", random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let pem_path = dir.join("key.pem");
        let pem = jwt_simple::algorithms::ES256KeyPair::generate()
            .to_pem()
            .unwrap();
        std::fs::write(&pem_path, &pem).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN SECRET-----").unwrap();
        let pem_text = pem_path.display().to_string();
        let previous = format!("{pem_text}, the-previous-jwt-secret-0123456789");
        let garbage_text = garbage.display().to_string();
        let with_vars = |extra: &[(&str, &str)]| {
            let mut vars: Vec<(&str, &str)> = REAL.to_vec();
            vars.extend_from_slice(extra);
            config(&vars)
        };
        let c = with_vars(&[
            ("WXLOGIN_PUBLIC_URL", "https://login.example.com"),
            ("WXLOGIN_SIGNING_KEY_FILE", &pem_text),
            ("WXLOGIN_PREVIOUS_SIGNING_KEYS", &previous),
        ])
        .unwrap();
        assert_eq!(c.jwt.issuer, "https://login.example.com");
        assert_eq!(
            c.jwt.signing_key,
            KeyMaterial::Pem(Secret::new(pem.clone()))
        );
        assert_eq!(
            c.jwt.previous_keys,
            vec![
                KeyMaterial::Pem(Secret::new(pem)),
                KeyMaterial::Derived(Secret::new("the-previous-jwt-secret-0123456789"))
            ]
        );
        let issuer = config(&with(&[("WXLOGIN_ISSUER", "https://issuer.example.com")])).unwrap();
        assert_eq!(issuer.jwt.issuer, "https://issuer.example.com");
        let err = with_vars(&[("WXLOGIN_SIGNING_KEY_FILE", &garbage_text)]).unwrap_err();
        assert!(
            err.starts_with("WXLOGIN_SIGNING_KEY_FILE") && !err.contains("BEGIN SECRET"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("WXLOGIN_BIND", "nowhere")], "WXLOGIN_BIND"),
            (&[("WXLOGIN_THREADS", "0")], "WXLOGIN_THREADS"),
            (&[("WXLOGIN_THREADS", "many")], "WXLOGIN_THREADS"),
            (&[("WECHAT_API_BASE", "ftp://x")], "WECHAT_API_BASE"),
            (&[("WECHAT_TIMEOUT", "soon")], "WECHAT_TIMEOUT"),
            (&[("WECHAT_TIMEOUT", "0s")], "WECHAT_TIMEOUT"),
            (&[("JWT_TTL", "forever")], "JWT_TTL"),
            (&[("JWT_TTL", "3000000000s")], "JWT_TTL"),
            (
                &[("WXLOGIN_CODE_REPLAY_WINDOW", "1h")],
                "WXLOGIN_CODE_REPLAY_WINDOW",
            ),
            (
                &[("WXLOGIN_CODE_REPLAY_WINDOW", "301")],
                "WXLOGIN_CODE_REPLAY_WINDOW",
            ),
            (&[("JWT_SECRET", "short")], "JWT_SECRET"),
            (&[("DATABASE_URL", "postgres://x/y")], "DATABASE_URL"),
            (
                &[("WXLOGIN_PUBLIC_URL", "login.example.com")],
                "WXLOGIN_PUBLIC_URL",
            ),
            (&[("DATABASE_URL", "sqlite://")], "DATABASE_URL"),
            (&[("WXLOGIN_REFRESH_TTL", "10s")], "WXLOGIN_REFRESH_TTL"),
            (
                &[("WXLOGIN_SESSION_MAX_AGE", "soon")],
                "WXLOGIN_SESSION_MAX_AGE",
            ),
            (
                &[("WXLOGIN_REFRESH_REUSE_GRACE", "1h")],
                "WXLOGIN_REFRESH_REUSE_GRACE",
            ),
            (
                &[("WXLOGIN_REVOCATION_DELAY", "1d")],
                "WXLOGIN_REVOCATION_DELAY",
            ),
            (
                &[("WXLOGIN_RATE_LIMIT_BURST", "-1")],
                "WXLOGIN_RATE_LIMIT_BURST",
            ),
            (
                &[("WXLOGIN_RATE_LIMIT_PER_SECOND", "0")],
                "WXLOGIN_RATE_LIMIT_PER_SECOND",
            ),
            (
                &[("WXLOGIN_RATE_LIMIT_PER_SECOND", "NaN")],
                "WXLOGIN_RATE_LIMIT_PER_SECOND",
            ),
            (
                &[("WXLOGIN_USER_RATE_LIMIT_BURST", "lots")],
                "WXLOGIN_USER_RATE_LIMIT_BURST",
            ),
            (
                &[("WXLOGIN_USER_RATE_LIMIT_PER_SECOND", "1/s")],
                "WXLOGIN_USER_RATE_LIMIT_PER_SECOND",
            ),
            (
                &[("WXLOGIN_SIGNING_KEY_FILE", "/nonexistent/key.pem")],
                "WXLOGIN_SIGNING_KEY_FILE",
            ),
            (
                &[("WXLOGIN_PREVIOUS_SIGNING_KEYS", "short-old-secret")],
                "WXLOGIN_PREVIOUS_SIGNING_KEYS",
            ),
            (
                &[("WXLOGIN_DELETION_GRACE", "a week")],
                "WXLOGIN_DELETION_GRACE",
            ),
            (&[("WXLOGIN_LOGIN_HISTORY", "0s")], "WXLOGIN_LOGIN_HISTORY"),
            (
                &[("WXLOGIN_SWEEP_INTERVAL", "10ms")],
                "WXLOGIN_SWEEP_INTERVAL",
            ),
            (
                &[("WXLOGIN_WEBHOOK_URL", "https://app.example.com/hook")],
                "WXLOGIN_WEBHOOK_SECRET",
            ),
            (
                &[("WXLOGIN_WEBHOOK_SECRET", "0123456789abcdef")],
                "WXLOGIN_WEBHOOK_URL",
            ),
            (
                &[
                    ("WXLOGIN_WEBHOOK_URL", "ftp://app.example.com/hook"),
                    ("WXLOGIN_WEBHOOK_SECRET", "0123456789abcdef"),
                ],
                "WXLOGIN_WEBHOOK_URL",
            ),
            (
                &[
                    ("WXLOGIN_WEBHOOK_URL", "https://app.example.com/hook"),
                    ("WXLOGIN_WEBHOOK_SECRET", "too-short"),
                ],
                "WXLOGIN_WEBHOOK_SECRET",
            ),
        ];
        for (extra, variable) in cases {
            let err = config(&with(extra)).expect_err(&format!("{extra:?} should be rejected"));
            assert!(
                err.starts_with(variable),
                "error for {extra:?} should name {variable}: {err}"
            );
        }
    }

    #[test]
    fn moderation_is_on_by_default_and_needs_its_push_settings() {
        let on: &[(&str, &str)] = &[
            ("WECHAT_APPID", "wxappid"),
            ("WECHAT_SECRET", "wechat-secret"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ];
        let with_on = |extra: &[(&str, &str)]| {
            let mut vars = on.to_vec();
            vars.extend_from_slice(extra);
            config(&vars)
        };
        let err = with_on(&[]).unwrap_err();
        assert!(err.starts_with("WECHAT_PUSH_TOKEN"), "{err}");
        let err = with_on(&[("WECHAT_PUSH_TOKEN", "tok123")]).unwrap_err();
        assert!(err.starts_with("WXLOGIN_PUBLIC_URL"), "{err}");
        let c = with_on(&[
            ("WECHAT_PUSH_TOKEN", "tok123"),
            ("WXLOGIN_PUBLIC_URL", "https://login.example.com"),
        ])
        .unwrap();
        let m = &c.moderation;
        assert!(m.enabled);
        assert_eq!((m.on_review, m.on_error), (Policy::Reject, Policy::Reject));
        assert_eq!(m.resubmit_after, DEFAULT_MODERATION_RESUBMIT_AFTER);
        assert_eq!(m.max_attempts, 3);
        assert!(m.push_aes_key.is_none());
        assert_eq!(c.avatar_uploads_per_hour, 20);
        let local = with_on(&[
            ("WECHAT_PUSH_TOKEN", "tok123"),
            ("WECHAT_API_BASE", "http://127.0.0.1:9999"),
            (
                "WECHAT_PUSH_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
            ("WXLOGIN_MODERATION_ON_REVIEW", "accept"),
        ])
        .expect("a local mock needs no public URL: the bound address serves");
        assert_eq!(local.moderation.on_review, Policy::Accept);
        assert!(local.moderation.push_aes_key.is_some());
        let shown = format!("{local:?}");
        assert!(
            !shown.contains("tok123") && !shown.contains("ABCDEFG"),
            "{shown}"
        );
        for (name, value) in [
            ("WXLOGIN_MODERATION", "maybe"),
            ("WXLOGIN_MODERATION_ON_REVIEW", "ignore"),
            ("WXLOGIN_MODERATION_ON_ERROR", "yes"),
            ("WECHAT_PUSH_TOKEN", "no spaces allowed"),
            ("WECHAT_PUSH_AES_KEY", "tooshort"),
            ("WXLOGIN_MODERATION_RESUBMIT_AFTER", "never"),
            ("WXLOGIN_MODERATION_MAX_ATTEMPTS", "0"),
            ("WXLOGIN_AVATAR_UPLOADS_PER_HOUR", "-1"),
        ] {
            let err = config(&with(&[(name, value)])).unwrap_err();
            assert!(err.starts_with(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn missing_jwt_secret_is_refused_for_real_wechat() {
        let err = config(&[("WECHAT_APPID", "a"), ("WECHAT_SECRET", "s")]).unwrap_err();
        assert!(err.starts_with("JWT_SECRET"), "{err}");
    }

    #[test]
    fn missing_jwt_secret_is_generated_for_a_local_mock() {
        let c = config(&[
            ("WECHAT_APPID", "a"),
            ("WECHAT_SECRET", "s"),
            ("WECHAT_API_BASE", "http://127.0.0.1:9999/"),
            ("WXLOGIN_MODERATION", "off"),
        ])
        .unwrap();
        assert!(c.jwt_secret_generated);
        assert_eq!(c.jwt.secret.expose().len(), 64);
        assert_eq!(c.wechat.api_base, "http://127.0.0.1:9999");
    }

    #[test]
    fn durations_parse_in_every_documented_unit() {
        let secs = Duration::from_secs;
        let cases = [
            ("7d", Some(secs(7 * 86_400))),
            ("8640h", Some(secs(8640 * 3600))),
            ("30m", Some(secs(1800))),
            ("45s", Some(secs(45))),
            ("45", Some(secs(45))),
            ("1500ms", Some(Duration::from_millis(1500))),
            ("h", None),
            ("-1s", None),
            ("3w", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), expected, "parsing {text:?}");
        }
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let c = config(&with(&[(
            "DATABASE_URL",
            "mysql://app:hunter2-db@db.internal:3306/wx",
        )]))
        .unwrap();
        let shown = format!("{c:?}");
        for secret in [
            "wechat-secret",
            "0123456789abcdef0123456789abcdef",
            "hunter2-db",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(
            shown.contains("mysql://app:***@db.internal:3306/wx"),
            "{shown}"
        );
    }

    #[test]
    fn wechat_api_base_over_plain_http_is_only_allowed_on_loopback() {
        let cases: &[(&str, bool, &str)] = &[
            ("https://api.weixin.qq.com", true, "production"),
            ("https://127.0.0.1:9999", true, "https anywhere"),
            ("http://127.0.0.1:9999", true, "mock on IPv4 loopback"),
            ("http://localhost:9999", true, "mock on localhost"),
            ("http://[::1]:9999", true, "mock on IPv6 loopback"),
            ("http://api.weixin.qq.com", false, "the AppSecret in clear"),
            ("http://10.0.0.5:9999", false, "a mock on another machine"),
            (
                "http://127.0.0.1:80@evil.example",
                false,
                "userinfo hiding the real host",
            ),
        ];
        for (base, accepted, why) in cases {
            let result = config(&with(&[("WECHAT_API_BASE", base)]));
            match (result, accepted) {
                (Ok(_), true) => {}
                (Err(e), false) => assert!(
                    e.starts_with("WECHAT_API_BASE") && e.contains("in clear"),
                    "{base} ({why}): the refusal should name the variable and the risk: {e}"
                ),
                (Ok(_), false) => panic!("{base} ({why}) should be refused"),
                (Err(e), true) => panic!("{base} ({why}) should be accepted: {e}"),
            }
        }
    }

    #[test]
    fn jwt_secret_needs_32_non_whitespace_bytes() {
        let cases: &[(&str, bool, &str)] = &[
            ("0123456789abcdef0123456789abcdef", true, "exactly 32 bytes"),
            (
                "0123456789abcdef0123456789abcde                 ",
                false,
                "31 bytes padded with spaces",
            ),
            ("short", false, "5 bytes"),
            (
                "                                        ",
                false,
                "only spaces",
            ),
            (
                "\t\n0123456789abcdef0123456789abcde",
                false,
                "31 bytes and whitespace",
            ),
        ];
        for (secret, accepted, why) in cases {
            let result = config(&with(&[("JWT_SECRET", secret)]));
            match (result, accepted) {
                (Ok(_), true) => {}
                (Err(e), false) => assert!(
                    e.starts_with("JWT_SECRET") && e.contains("openssl rand -hex 32"),
                    "{why}: the refusal should name the variable and the fix: {e}"
                ),
                (Ok(_), false) => panic!("{why}: should be refused"),
                (Err(e), true) => panic!("{why}: should be accepted: {e}"),
            }
        }
    }

    #[test]
    fn startup_warns_when_the_bind_address_is_not_loopback() {
        let cases = [
            ("127.0.0.1:8888", false),
            ("[::1]:8888", false),
            ("0.0.0.0:8888", true),
            ("[::]:8888", true),
            ("192.168.1.10:8888", true),
        ];
        for (bind, warned) in cases {
            let c = config(&with(&[("WXLOGIN_BIND", bind)])).unwrap();
            let warnings = c.startup_warnings();
            let found = warnings
                .iter()
                .any(|w| w.starts_with("WXLOGIN_BIND") && w.contains("TLS proxy"));
            assert_eq!(found, warned, "bind {bind}: warnings {warnings:?}");
        }
    }

    #[test]
    fn a_legacy_thread_count_keeps_its_connection_cap_and_is_warned_about() {
        let cases = [
            (&[][..], DEFAULT_MAX_CONNECTIONS, false, "neither set"),
            (
                &[("WXLOGIN_THREADS", "64")][..],
                256,
                true,
                "threads alone: 4 × 64",
            ),
            (
                &[
                    ("WXLOGIN_THREADS", "64"),
                    ("WXLOGIN_MAX_CONNECTIONS", "100"),
                ][..],
                100,
                true,
                "an explicit cap wins",
            ),
        ];
        for (vars, connections, warned, why) in cases {
            let c = config(&with(vars)).unwrap();
            assert_eq!(c.max_connections, connections, "{why}");
            let warnings = c.startup_warnings();
            let found = warnings
                .iter()
                .any(|w| w.starts_with("WXLOGIN_THREADS") && w.contains("WXLOGIN_MAX_CONNECTIONS"));
            assert_eq!(found, warned, "{why}: {warnings:?}");
        }
    }
}
