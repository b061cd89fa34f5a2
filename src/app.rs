//! The composition root: the one place that turns a [`Config`] into running services.
//!
//! It opens the store, builds the WeChat client, the token issuer, the sessions, the metrics and the use cases
//! that share them. `main` calls [`App::build`] and hands the result to the HTTP server; tests
//! call it too, or [`App::with_store`] to share a store they opened themselves.

use crate::access_token::AccessTokens;
use crate::account::AccountService;
use crate::config::Config;
use crate::login::LoginService;
use crate::metrics::Metrics;
use crate::moderation::Moderation;
use crate::phone::PhoneService;
use crate::profile::ProfileService;
use crate::ratelimit::{Limiter, RateLimits};
use crate::session::SessionService;
use crate::store::{self, StoreError, StoreOptions, UserStore};
use crate::token::TokenIssuer;
use crate::wechat::WechatClient;
use std::fmt;
use std::sync::Arc;

/// Why the service could not start.
#[derive(Debug)]
pub enum StartError {
    Store(StoreError),
    Bind(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "cannot open the database (DATABASE_URL): {e}"),
            StartError::Bind(e) => write!(f, "cannot listen (WXLOGIN_BIND): {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Opens the store named by `DATABASE_URL`, bringing its schema up to date; it writes events
/// when a webhook is configured. The pool holds at most one connection per client connection (a
/// connection runs one request at a time, so more could never be used) and one for the sweep.
pub fn open_store(config: &Config) -> Result<Arc<dyn UserStore>, StartError> {
    let options = StoreOptions {
        max_connections: (config.max_connections + 1).min(StoreOptions::default().max_connections),
        events: config.webhook.is_some(),
        ..StoreOptions::default()
    };
    let store = store::open(&config.database_url, options).map_err(StartError::Store)?;
    Ok(Arc::from(store))
}

/// Everything a request handler needs, shared by every connection.
pub struct App {
    pub(crate) login: LoginService,
    pub(crate) phone: PhoneService,
    pub(crate) profiles: ProfileService,
    pub(crate) sessions: Arc<SessionService>,
    pub(crate) accounts: AccountService,
    pub(crate) tokens: Arc<TokenIssuer>,
    pub(crate) store: Arc<dyn UserStore>,
    pub(crate) metrics: Arc<Metrics>,
    /// The per-client and per-user limits of login, refresh and phone.
    pub(crate) limits: RateLimits,
    /// The content checks of nicknames and avatars, and the push receiver.
    pub(crate) moderation: Arc<Moderation>,
    /// Avatar uploads per user (`WXLOGIN_AVATAR_UPLOADS_PER_HOUR`), keyed by openid; `None`
    /// when off.
    pub(crate) avatar_uploads: Option<Limiter<String>>,
    /// Largest request body accepted outside the avatar upload (`Config::max_body_bytes`).
    pub(crate) max_body_bytes: usize,
}

impl App {
    /// Opens the store named by `DATABASE_URL` (bringing its schema up to date) and builds the
    /// services on it.
    pub fn build(config: &Config) -> Result<App, StartError> {
        Ok(App::with_store(config, open_store(config)?))
    }

    /// Builds the services on a store the caller opened (tests share one with the server).
    pub fn with_store(config: &Config, store: Arc<dyn UserStore>) -> App {
        let tokens = Arc::new(TokenIssuer::new(&config.jwt));
        let sessions = Arc::new(SessionService::new(
            store.clone(),
            tokens.clone(),
            config.sessions.clone(),
            &config.jwt.secret,
        ));
        let metrics = Arc::new(Metrics::new());
        let wechat = WechatClient::new(config.wechat.clone(), metrics.clone());
        // A request waiting on another's upstream call waits at most that call's own bound
        // (plus a database round trip's worth of margin).
        let wait_limit = config.wechat.timeout * 2 + StoreOptions::default().timeout;
        let access_tokens = Arc::new(AccessTokens::new(wechat.clone(), wait_limit));
        let moderation = Arc::new(Moderation::new(
            config.moderation.clone(),
            &config.wechat.appid,
            wechat.clone(),
            access_tokens.clone(),
            store.clone(),
            config.public_url.clone(),
        ));
        let per_hour = config.avatar_uploads_per_hour;
        App {
            login: LoginService::new(
                wechat.clone(),
                config.wechat.appid.clone(),
                sessions.clone(),
                store.clone(),
                config.code_replay_window,
                wait_limit,
            )
            .with_moderation(moderation.clone()),
            phone: PhoneService::new(wechat.clone(), access_tokens, store.clone()),
            profiles: ProfileService::new(store.clone(), config.public_url.clone()),
            accounts: AccountService::new(
                store.clone(),
                sessions.clone(),
                wechat.clone(),
                config.accounts.deletion_grace,
            ),
            sessions,
            tokens,
            store,
            limits: RateLimits::new(
                config.rate_limits.client,
                config.rate_limits.user,
                metrics.clone(),
            ),
            moderation,
            avatar_uploads: (per_hour > 0)
                .then(|| Limiter::new(per_hour, f64::from(per_hour) / 3600.0)),
            metrics,
            max_body_bytes: config.max_body_bytes,
        }
    }
}
