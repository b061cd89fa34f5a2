//! The state every worker shares: the configuration, the used codes, each user's session
//! keys, the access tokens, the content-security settings, the media checks under way, and
//! the call counters the tests and `/mock/stats` read. The endpoints in `wechat`, `secapi`
//! and `control` read and change the mock only through it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::code;
use crate::config::MockConfig;
use crate::http::Url;
use crate::identity::{self, Nonces};
use crate::opendata::{self, MockProfile, OpenData, Watermark};
use crate::phone::{self, Phone};
use crate::push::PushKeys;
use crate::security::Security;
use crate::sync::{lock, Shutdown};
use crate::token::{Check, Tokens};

/// How many used codes are remembered, of each kind (login codes, phone codes). When the
/// memory is full it is cleared whole rather than oldest-first: that needs no second
/// structure, and after a million logins letting each earlier code work one more time is
/// harmless for a mock. 1,000,000 codes of ~20 characters take about 100 MB at worst.
const USED_CODES_LIMIT: usize = 1_000_000;

/// How many users' session keys are remembered; cleared whole when full, like used codes
/// (those users then have no open data until they log in again). ~100 bytes a user.
const SESSIONS_LIMIT: usize = 100_000;

/// How many media checks may be under way at once (each is a thread that waits, fetches and
/// pushes); more are refused with errcode -1, as a busy WeChat would.
const CHECKS_LIMIT: usize = 1000;

/// The WeChat APIs whose calls are counted.
#[derive(Clone, Copy)]
pub(crate) enum Api {
    Jscode2session,
    StableToken,
    PhoneNumber,
    MsgSecCheck,
    MediaCheckAsync,
}

/// Everything the workers share.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    pub(crate) shutdown: Shutdown,
    nonces: Nonces,
    login_codes: UsedCodes,
    phone_codes: UsedCodes,
    sessions: Mutex<HashMap<String, SessionKeys>>,
    tokens: Tokens,
    /// Indexed by [`Api`].
    calls: [AtomicU64; 5],
    pub(crate) security: Security,
    /// Where media-check verdicts go, read from `config.push_url`.
    pub(crate) push_url: Option<Url>,
    pub(crate) push_keys: PushKeys,
    /// The media checks under way, joined by `stop`.
    checks: Mutex<Vec<JoinHandle<()>>>,
    /// Pushes a receiver accepted (answered 2xx).
    pushes: AtomicU64,
}

/// A user's session keys: the one from the latest login and the one before it.
#[derive(Clone, Copy)]
struct SessionKeys {
    latest: [u8; 16],
    previous: Option<[u8; 16]>,
}

/// Codes that worked once and must not work again.
struct UsedCodes {
    kind: &'static str,
    used: Mutex<HashSet<String>>,
}

impl UsedCodes {
    fn new(kind: &'static str) -> UsedCodes {
        UsedCodes {
            kind,
            used: Mutex::new(HashSet::new()),
        }
    }

    /// Marks `code` used; false when it already was.
    fn claim(&self, code: &str) -> bool {
        let mut used = lock(&self.used);
        if used.contains(code) {
            return false;
        }
        if used.len() >= USED_CODES_LIMIT {
            log::warn!(
                "forgetting {} used {} codes (limit reached)",
                used.len(),
                self.kind
            );
            used.clear();
        }
        used.insert(code.to_owned())
    }
}

impl State {
    /// Fails when the push URL or the EncodingAESKey is not usable.
    pub(crate) fn new(config: MockConfig, nonces: Nonces) -> io::Result<State> {
        let push_url = config
            .check_push()
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
        Ok(State {
            tokens: Tokens::new(config.token_ttl),
            security: Security::new(config.risky_words.clone(), config.review_words.clone()),
            push_url,
            push_keys: PushKeys {
                token: config.push_token.clone(),
                aes_key: config.push_aes_key.clone(),
                appid: config.appid.clone(),
            },
            checks: Mutex::new(Vec::new()),
            pushes: AtomicU64::new(0),
            config,
            shutdown: Shutdown::default(),
            nonces,
            login_codes: UsedCodes::new("login"),
            phone_codes: UsedCodes::new("phone"),
            sessions: Mutex::new(HashMap::new()),
            calls: Default::default(),
        })
    }

    /// A fresh `trace_id` for a content-security call.
    pub(crate) fn trace_id(&self) -> String {
        self.nonces.trace_id()
    }

    /// Keeps a media check's thread for `stop` to join; false (and the thread is not
    /// started) when [`CHECKS_LIMIT`] are under way.
    pub(crate) fn start_check(
        &self,
        spawn: impl FnOnce() -> io::Result<JoinHandle<()>>,
    ) -> io::Result<bool> {
        let mut checks = lock(&self.checks);
        checks.retain(|check| !check.is_finished());
        if checks.len() >= CHECKS_LIMIT {
            return Ok(false);
        }
        checks.push(spawn()?);
        Ok(true)
    }

    /// The media checks under way, for `stop` to join.
    pub(crate) fn take_checks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *lock(&self.checks))
    }

    /// Counts a push a receiver accepted.
    pub(crate) fn count_push(&self) {
        self.pushes.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn pushes(&self) -> u64 {
        self.pushes.load(Ordering::SeqCst)
    }

    /// A fresh code for `user`, or `None` when no code can be minted for that name.
    pub(crate) fn mint_code(&self, user: &str) -> Option<String> {
        code::is_usable_user(user).then(|| format!("{user}.{}", self.nonces.code_nonce()))
    }

    /// Same as the mock's nonce source; used for codes that must be rejected.
    pub(crate) fn code_nonce(&self) -> String {
        self.nonces.code_nonce()
    }

    /// A fresh phone code, or `None` when a part is not valid.
    pub(crate) fn mint_phone_code(
        &self,
        user: &str,
        number: &str,
        country: &str,
    ) -> Option<String> {
        let phone = Phone {
            user,
            number,
            country,
        };
        phone::format(&phone, &self.nonces.code_nonce())
    }

    /// Marks a login code used; false when it already was.
    pub(crate) fn claim_login_code(&self, code: &str) -> bool {
        self.login_codes.claim(code)
    }

    /// Marks a phone code used; false when it already was.
    pub(crate) fn claim_phone_code(&self, code: &str) -> bool {
        self.phone_codes.claim(code)
    }

    pub(crate) fn openid_for(&self, user: &str) -> String {
        identity::openid(&self.config.appid, user)
    }

    /// Counts one answered call to `api`.
    pub(crate) fn count(&self, api: Api) {
        self.calls[api as usize].fetch_add(1, Ordering::SeqCst);
    }

    /// How many calls to `api` have been answered.
    pub(crate) fn calls(&self, api: Api) -> u64 {
        self.calls[api as usize].load(Ordering::SeqCst)
    }

    pub(crate) fn tokens_minted(&self) -> u64 {
        self.tokens.minted()
    }

    /// A stable_token answer: the access token and its remaining seconds.
    pub(crate) fn stable_token(&self, force_refresh: bool) -> (String, u64) {
        self.tokens
            .stable(force_refresh, || self.nonces.access_token())
    }

    pub(crate) fn check_token(&self, token: &str) -> Check {
        self.tokens.check(token)
    }

    /// Makes every access token issued so far expired; returns how many were still valid.
    pub(crate) fn expire_access_tokens(&self) -> usize {
        let expired = self.tokens.expire_all();
        log::info!("expired every access token ({expired} were still valid)");
        expired
    }

    /// A fresh session key for `user`'s new login; it becomes the latest, and the one it
    /// replaces is kept for stale open data.
    pub(crate) fn new_session(&self, user: &str) -> [u8; 16] {
        let key = self.nonces.block();
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= SESSIONS_LIMIT && !sessions.contains_key(user) {
            log::warn!(
                "forgetting the session keys of {} users (limit reached)",
                sessions.len()
            );
            sessions.clear();
        }
        let previous = sessions.get(user).map(|keys| keys.latest);
        sessions.insert(
            user.to_owned(),
            SessionKeys {
                latest: key,
                previous,
            },
        );
        key
    }

    /// The open data the WeChat client would hand the mini-program of `user`, made with the
    /// latest session key (or, when `stale`, the one before it); `None` without that key.
    pub(crate) fn open_data(
        &self,
        user: &str,
        profile: &MockProfile,
        stale: bool,
    ) -> Option<OpenData> {
        let keys = lock(&self.sessions).get(user).copied()?;
        let key = if stale { keys.previous? } else { keys.latest };
        let openid = self.openid_for(user);
        let unionid = self.config.unionid.then(|| identity::unionid(user));
        let watermark = Watermark {
            openid: &openid,
            unionid: unionid.as_deref(),
            appid: &self.config.appid,
            timestamp: unix_now(),
        };
        Some(opendata::seal(
            profile,
            &key,
            &self.nonces.block(),
            &watermark,
        ))
    }
}

/// The time in WeChat's watermarks: Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
