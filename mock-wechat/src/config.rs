//! How mock-wechat is configured: [`MockConfig`], its defaults, and reading it from the
//! `MOCK_WECHAT_*` environment variables for the `mock-wechat` program.

use std::env::VarError;
use std::fmt;
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::http::Url;
use crate::push::{self, DEFAULT_PUSH_TOKEN};
use crate::security;

/// The appid the mock accepts unless told otherwise. It has the shape of a real one
/// (`wx` + 16 hex digits) so that code checking the shape accepts it.
pub const DEFAULT_APPID: &str = "wx1234567890abcdef";

/// The app secret the mock accepts unless told otherwise (32 hex digits, like a real one).
/// It is public: a real secret must never be given to the mock.
pub const DEFAULT_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// Longest latency `MOCK_WECHAT_LATENCY_MS` accepts: a minute is already far past any
/// sensible client timeout.
const MAX_LATENCY_MS: u64 = 60_000;

/// Most worker threads `MOCK_WECHAT_THREADS` accepts.
const MAX_THREADS: usize = 1024;

/// Longest access-token lifetime `MOCK_WECHAT_TOKEN_TTL_SECS` accepts: a day.
const MAX_TOKEN_TTL_SECS: u64 = 86_400;

/// The lifetime of WeChat's access tokens.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7200);

/// Longest `MOCK_WECHAT_MEDIA_CHECK_DELAY_MS`: a minute, like the latency.
const MAX_MEDIA_CHECK_DELAY_MS: u64 = 60_000;

/// How long a media check takes before its verdict is pushed unless told otherwise: long
/// enough that a client sees the check pending, short enough for tests.
const DEFAULT_MEDIA_CHECK_DELAY: Duration = Duration::from_millis(200);

/// Words that make `msg_sec_check` answer `risky` unless told otherwise.
const DEFAULT_RISKY_WORDS: [&str; 2] = ["赌博", "fuck"];

/// Words that make `msg_sec_check` answer `review` unless told otherwise.
const DEFAULT_REVIEW_WORDS: [&str; 1] = ["review-me"];

/// Everything a [`MockWechat`](crate::MockWechat) needs to start.
///
/// Build it with struct update syntax over [`MockConfig::default`] so that new fields do not
/// break callers. Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Address to listen on, as `host:port`. Port 0 picks a free port (see
    /// [`MockWechat::addr`](crate::MockWechat::addr)). Default `127.0.0.1:9999`.
    pub bind: String,
    /// The only appid jscode2session accepts; any other answers 40013. Default
    /// [`DEFAULT_APPID`].
    pub appid: String,
    /// The only secret jscode2session accepts; any other answers 40125. Default
    /// [`DEFAULT_SECRET`].
    pub secret: String,
    /// When true, a successful jscode2session also returns a `unionid`, stable per user, as
    /// WeChat does for apps bound to an open-platform account. Default false.
    pub unionid: bool,
    /// Added to every answer of WeChat's API (jscode2session, stable_token,
    /// getuserphonenumber; not the `/mock/` endpoints), to make the upstream as slow as a
    /// real one. Default 0.
    pub latency: Duration,
    /// Worker threads answering requests. Every `slow.<ms>` code and every request waiting
    /// out `latency` holds one, so this bounds how many of those run at once. Default 64.
    pub threads: usize,
    /// Lifetime of the access tokens `/cgi-bin/stable_token` mints; `expires_in` counts it
    /// down. Default 7200 s, as WeChat's.
    pub token_ttl: Duration,
    /// Keep connections open between requests, as WeChat does. Off by default: tiny_http
    /// cannot close idle keep-alive connections, so after `stop` a client reusing one waits
    /// for its own timeout instead of being refused. Benchmarks turn it on, so that the mock
    /// is not slowed by a TCP handshake per call. `MOCK_WECHAT_KEEP_ALIVE`.
    pub keep_alive: bool,
    /// `msg_sec_check` answers `risky` for content containing one of these (case ignored).
    /// Default `赌博`, `fuck`. `MOCK_WECHAT_RISKY_WORDS`.
    pub risky_words: Vec<String>,
    /// `msg_sec_check` answers `review` for content containing one of these and no risky
    /// word. Default `review-me`. `MOCK_WECHAT_REVIEW_WORDS`.
    pub review_words: Vec<String>,
    /// How long after `media_check_async` the image is fetched and the verdict pushed.
    /// Default 200 ms. `MOCK_WECHAT_MEDIA_CHECK_DELAY_MS`.
    pub media_check_delay: Duration,
    /// Where media-check verdicts are pushed (`http://` only), as configured in WeChat's
    /// message push settings; `None`: nowhere (logged). `MOCK_WECHAT_PUSH_URL`.
    pub push_url: Option<String>,
    /// The token pushes are signed with. Default [`DEFAULT_PUSH_TOKEN`].
    /// `MOCK_WECHAT_PUSH_TOKEN`.
    pub push_token: String,
    /// The EncodingAESKey (43 characters) that switches pushes to safe mode; `None`: plain
    /// mode. `MOCK_WECHAT_PUSH_AES_KEY`.
    pub push_aes_key: Option<String>,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            bind: "127.0.0.1:9999".to_owned(),
            appid: DEFAULT_APPID.to_owned(),
            secret: DEFAULT_SECRET.to_owned(),
            unionid: false,
            latency: Duration::ZERO,
            threads: 64,
            token_ttl: DEFAULT_TOKEN_TTL,
            keep_alive: false,
            risky_words: DEFAULT_RISKY_WORDS.map(str::to_owned).to_vec(),
            review_words: DEFAULT_REVIEW_WORDS.map(str::to_owned).to_vec(),
            media_check_delay: DEFAULT_MEDIA_CHECK_DELAY,
            push_url: None,
            push_token: DEFAULT_PUSH_TOKEN.to_owned(),
            push_aes_key: None,
        }
    }
}

impl fmt::Debug for MockConfig {
    /// Shows everything but the secret, the push token and the EncodingAESKey, so that the
    /// config can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.secret == DEFAULT_SECRET {
            "<default>"
        } else {
            "<redacted>"
        };
        f.debug_struct("MockConfig")
            .field("bind", &self.bind)
            .field("appid", &self.appid)
            .field("secret", &secret)
            .field("unionid", &self.unionid)
            .field("latency", &self.latency)
            .field("threads", &self.threads)
            .field("token_ttl", &self.token_ttl)
            .field("keep_alive", &self.keep_alive)
            .field("risky_words", &self.risky_words)
            .field("review_words", &self.review_words)
            .field("media_check_delay", &self.media_check_delay)
            .field("push_url", &self.push_url)
            .field("push_token", &"<redacted>")
            .field(
                "push_aes_key",
                &self.push_aes_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl MockConfig {
    /// Reads the configuration from the environment, starting from the defaults:
    /// `MOCK_WECHAT_BIND`, `MOCK_WECHAT_APPID`, `MOCK_WECHAT_SECRET`,
    /// `MOCK_WECHAT_UNIONID` (`1`/`0`/`true`/`false`), `MOCK_WECHAT_LATENCY_MS` (0–60000),
    /// `MOCK_WECHAT_THREADS` (1–1024), `MOCK_WECHAT_TOKEN_TTL_SECS` (1–86400),
    /// `MOCK_WECHAT_KEEP_ALIVE`, `MOCK_WECHAT_RISKY_WORDS` and `MOCK_WECHAT_REVIEW_WORDS`
    /// (comma-separated), `MOCK_WECHAT_MEDIA_CHECK_DELAY_MS` (0–60000),
    /// `MOCK_WECHAT_PUSH_URL` (`http://…`), `MOCK_WECHAT_PUSH_TOKEN` and
    /// `MOCK_WECHAT_PUSH_AES_KEY` (43 characters).
    ///
    /// A variable that is unset or empty keeps its default; surrounding spaces are ignored.
    /// A bad value is an error naming the variable and saying how to fix it, so that a
    /// typo stops the program instead of being silently ignored.
    pub fn from_env() -> Result<MockConfig, String> {
        MockConfig::from_lookup(|name| std::env::var(name))
    }

    /// [`MockConfig::from_env`] over any source of variables, so that it can be tested
    /// without changing the process environment (which tests running in parallel share).
    fn from_lookup(var: impl Fn(&str) -> Result<String, VarError>) -> Result<MockConfig, String> {
        let mut config = MockConfig::default();
        if let Some(bind) = read(&var, "MOCK_WECHAT_BIND")? {
            config.bind = parse_bind("MOCK_WECHAT_BIND", bind)?;
        }
        if let Some(appid) = read(&var, "MOCK_WECHAT_APPID")? {
            config.appid = appid;
        }
        if let Some(secret) = read(&var, "MOCK_WECHAT_SECRET")? {
            config.secret = secret;
        }
        if let Some(unionid) = read(&var, "MOCK_WECHAT_UNIONID")? {
            config.unionid = parse_bool("MOCK_WECHAT_UNIONID", &unionid)?;
        }
        if let Some(latency) = read(&var, "MOCK_WECHAT_LATENCY_MS")? {
            let ms = parse_number("MOCK_WECHAT_LATENCY_MS", &latency, 0, MAX_LATENCY_MS, "200")?;
            config.latency = Duration::from_millis(ms);
        }
        if let Some(threads) = read(&var, "MOCK_WECHAT_THREADS")? {
            let n = parse_number("MOCK_WECHAT_THREADS", &threads, 1, MAX_THREADS as u64, "64")?;
            // At most MAX_THREADS, so it fits any usize.
            config.threads = n as usize;
        }
        if let Some(ttl) = read(&var, "MOCK_WECHAT_TOKEN_TTL_SECS")? {
            let secs = parse_number(
                "MOCK_WECHAT_TOKEN_TTL_SECS",
                &ttl,
                1,
                MAX_TOKEN_TTL_SECS,
                "7200",
            )?;
            config.token_ttl = Duration::from_secs(secs);
        }
        if let Some(keep_alive) = read(&var, "MOCK_WECHAT_KEEP_ALIVE")? {
            config.keep_alive = parse_bool("MOCK_WECHAT_KEEP_ALIVE", &keep_alive)?;
        }
        if let Some(words) = read(&var, "MOCK_WECHAT_RISKY_WORDS")? {
            config.risky_words = security::parse_words(&words);
        }
        if let Some(words) = read(&var, "MOCK_WECHAT_REVIEW_WORDS")? {
            config.review_words = security::parse_words(&words);
        }
        if let Some(delay) = read(&var, "MOCK_WECHAT_MEDIA_CHECK_DELAY_MS")? {
            let ms = parse_number(
                "MOCK_WECHAT_MEDIA_CHECK_DELAY_MS",
                &delay,
                0,
                MAX_MEDIA_CHECK_DELAY_MS,
                "200",
            )?;
            config.media_check_delay = Duration::from_millis(ms);
        }
        if let Some(url) = read(&var, "MOCK_WECHAT_PUSH_URL")? {
            config.push_url = Some(url);
        }
        if let Some(token) = read(&var, "MOCK_WECHAT_PUSH_TOKEN")? {
            config.push_token = token;
        }
        if let Some(key) = read(&var, "MOCK_WECHAT_PUSH_AES_KEY")? {
            config.push_aes_key = Some(key);
        }
        config.check_push()?;
        Ok(config)
    }

    /// The push URL, read; an error naming the variable when it or the EncodingAESKey is
    /// not usable, so that a typo stops the mock at start rather than at the first push.
    pub(crate) fn check_push(&self) -> Result<Option<Url>, String> {
        if let Some(key) = &self.push_aes_key {
            if push::aes_key_bytes(key).is_err() {
                return Err(format!(
                    "MOCK_WECHAT_PUSH_AES_KEY is not an EncodingAESKey; use the 43 characters \
                     of base64 WeChat shows (A-Z a-z 0-9 + /), {} given",
                    key.chars().count()
                ));
            }
        }
        match &self.push_url {
            None => Ok(None),
            Some(url) => Url::parse(url).map(Some).ok_or_else(|| {
                format!(
                    "MOCK_WECHAT_PUSH_URL={url:?} is not a plain http:// URL; \
                     e.g. MOCK_WECHAT_PUSH_URL=http://127.0.0.1:8080/wechat/push"
                )
            }),
        }
    }
}

/// One variable, trimmed; `None` when unset or blank.
fn read(
    var: &impl Fn(&str) -> Result<String, VarError>,
    name: &str,
) -> Result<Option<String>, String> {
    match var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value.trim().to_owned())),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(format!(
            "{name} is not valid UTF-8; set it to plain text or unset it"
        )),
    }
}

/// Checks the address now, so that a typo is reported as a configuration error naming the
/// variable rather than as a failure to listen.
fn parse_bind(name: &str, bind: String) -> Result<String, String> {
    let fix = "use host:port, e.g. 127.0.0.1:9999 (or 127.0.0.1:0 for any free port)";
    match bind.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(bind),
        Ok(None) => Err(format!("{name}={bind:?} resolves to no address; {fix}")),
        Err(err) => Err(format!(
            "{name}={bind:?} is not a host:port address ({err}); {fix}"
        )),
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!(
            "{name}={value:?} is not a boolean; use 1 or 0 (true or false also work)"
        )),
    }
}

fn parse_number(name: &str, value: &str, min: u64, max: u64, example: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{name}={value:?} is not a whole number from {min} to {max}; e.g. {name}={example}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from_vars(vars: &[(&str, &str)]) -> Result<MockConfig, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        MockConfig::from_lookup(|name| vars.get(name).cloned().ok_or(VarError::NotPresent))
    }

    #[test]
    fn from_env_keeps_defaults_when_nothing_is_set() {
        assert_eq!(from_vars(&[]), Ok(MockConfig::default()));
        assert_eq!(MockConfig::default().token_ttl, Duration::from_secs(7200));
    }

    #[test]
    fn from_env_keeps_defaults_when_variables_are_blank() {
        let config = from_vars(&[("MOCK_WECHAT_APPID", ""), ("MOCK_WECHAT_THREADS", "  ")]);
        assert_eq!(config, Ok(MockConfig::default()));
    }

    #[test]
    fn from_env_reads_every_variable() {
        let config = from_vars(&[
            ("MOCK_WECHAT_BIND", "127.0.0.1:0"),
            ("MOCK_WECHAT_APPID", "wxffffffffffffffff"),
            ("MOCK_WECHAT_SECRET", " s3cret "),
            ("MOCK_WECHAT_UNIONID", "TRUE"),
            ("MOCK_WECHAT_LATENCY_MS", "250"),
            ("MOCK_WECHAT_THREADS", "8"),
            ("MOCK_WECHAT_TOKEN_TTL_SECS", "60"),
            ("MOCK_WECHAT_KEEP_ALIVE", "1"),
            ("MOCK_WECHAT_RISKY_WORDS", "a, 赌博 ,,B"),
            ("MOCK_WECHAT_REVIEW_WORDS", "hmm"),
            ("MOCK_WECHAT_MEDIA_CHECK_DELAY_MS", "0"),
            ("MOCK_WECHAT_PUSH_URL", "http://127.0.0.1:8080/wechat/push"),
            ("MOCK_WECHAT_PUSH_TOKEN", "tok"),
            (
                "MOCK_WECHAT_PUSH_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
        ])
        .unwrap();
        assert_eq!(
            config,
            MockConfig {
                bind: "127.0.0.1:0".to_owned(),
                appid: "wxffffffffffffffff".to_owned(),
                secret: "s3cret".to_owned(),
                unionid: true,
                latency: Duration::from_millis(250),
                threads: 8,
                token_ttl: Duration::from_secs(60),
                keep_alive: true,
                risky_words: vec!["a".to_owned(), "赌博".to_owned(), "B".to_owned()],
                review_words: vec!["hmm".to_owned()],
                media_check_delay: Duration::ZERO,
                push_url: Some("http://127.0.0.1:8080/wechat/push".to_owned()),
                push_token: "tok".to_owned(),
                push_aes_key: Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned()),
            }
        );
        assert!(!from_vars(&[("MOCK_WECHAT_UNIONID", "0")]).unwrap().unionid);
    }

    #[test]
    fn from_env_names_the_variable_and_the_fix_for_bad_values() {
        let cases = [
            ("MOCK_WECHAT_BIND", "9999", "host:port"),
            ("MOCK_WECHAT_UNIONID", "yes", "use 1 or 0"),
            ("MOCK_WECHAT_LATENCY_MS", "-5", "from 0 to 60000"),
            ("MOCK_WECHAT_LATENCY_MS", "60001", "from 0 to 60000"),
            ("MOCK_WECHAT_THREADS", "0", "from 1 to 1024"),
            ("MOCK_WECHAT_THREADS", "many", "from 1 to 1024"),
            ("MOCK_WECHAT_TOKEN_TTL_SECS", "0", "from 1 to 86400"),
            ("MOCK_WECHAT_TOKEN_TTL_SECS", "2h", "from 1 to 86400"),
            (
                "MOCK_WECHAT_MEDIA_CHECK_DELAY_MS",
                "60001",
                "from 0 to 60000",
            ),
            (
                "MOCK_WECHAT_PUSH_URL",
                "https://example.com/push",
                "http://",
            ),
            ("MOCK_WECHAT_PUSH_AES_KEY", "tooshort", "43 characters"),
        ];
        for (name, value, fix) in cases {
            let err = from_vars(&[(name, value)]).unwrap_err();
            assert!(err.starts_with(name), "{err}");
            assert!(err.contains(fix), "{err}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let config = MockConfig {
            secret: "topsecretvalue".to_owned(),
            ..MockConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("topsecretvalue"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let shown = format!("{:?}", MockConfig::default());
        assert!(!shown.contains(DEFAULT_SECRET), "{shown}");
        assert!(!shown.contains(DEFAULT_PUSH_TOKEN), "{shown}");
    }
}
