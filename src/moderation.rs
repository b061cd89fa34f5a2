//! Content moderation of what users publish through us: nicknames and avatar images must pass
//! WeChat's content-security APIs (operating rules §5.18), on the server, since the checks in
//! the mini-program's components are bypassed by anyone calling our API directly.
//!
//! - **Nicknames** go to `msg_sec_check` before they are stored, synchronously: `pass` is
//!   stored, `risky` refused, `review` and WeChat failing as configured.
//! - **Avatars** go to `media_check_async`, whose verdict WeChat pushes later to
//!   `/wechat/push`. Until then the upload is *pending*: stored, reachable by WeChat through an
//!   unguessable `/media/<token>` URL that expires, but not the user's avatar. Verdicts are
//!   remembered by content hash, so a known image is published or refused at once. Checks
//!   WeChat never answered are resubmitted by [`Moderation::resubmit_due`] and given up after
//!   `WXLOGIN_MODERATION_MAX_ATTEMPTS`, as `WXLOGIN_MODERATION_ON_ERROR` says.
//!
//! With `WXLOGIN_MODERATION=off` nothing is checked and uploads are active at once; storage is
//! bounded either way (one active and one pending image per user; unreferenced images deleted).

use crate::access_token::AccessTokens;
use crate::avatar::Avatar;
use crate::config::{ModerationConfig, Policy};
use crate::error::Error;
use crate::push::{PushError, PushVerifier, Query};
use crate::secret::random_hex;
use crate::store::{AvatarState, NewImage, UserStore};
use crate::wechat::{Suggest, WechatClient};
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a `/media/<token>` URL serves its image: WeChat fetches it within minutes, and a
/// resubmission makes a new one.
pub const MEDIA_URL_LIFETIME: Duration = Duration::from_secs(3600);
/// Checks resubmitted (or given up) per run of [`Moderation::resubmit_due`], so one run stays
/// short; the next run takes the rest.
const RESUBMIT_BATCH: u32 = 100;

/// What became of a nickname at the content check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextJudgement {
    /// Store it.
    Accept,
    /// Refused by WeChat (risky, or review under `reject`), with WeChat's label.
    Refuse { label: i64 },
    /// WeChat could not be asked and `WXLOGIN_MODERATION_ON_ERROR=reject`.
    Unavailable,
}

/// The checks, their policies and the push receiver.
pub struct Moderation {
    config: ModerationConfig,
    wechat: WechatClient,
    tokens: Arc<AccessTokens>,
    store: Arc<dyn UserStore>,
    /// `None` without a push token: then every push is refused.
    verifier: Option<PushVerifier>,
    /// Prefix of `/avatars/` and `/media/` URLs (`WXLOGIN_PUBLIC_URL`)…
    public_url: Option<String>,
    /// …or else the server's own address, known once it is bound. Set through a shared
    /// reference, since the login service holds this service too.
    bound_url: OnceLock<String>,
}

impl Moderation {
    pub fn new(
        config: ModerationConfig,
        appid: &str,
        wechat: WechatClient,
        tokens: Arc<AccessTokens>,
        store: Arc<dyn UserStore>,
        public_url: Option<String>,
    ) -> Moderation {
        let verifier = config
            .push_token
            .clone()
            .map(|token| PushVerifier::new(token, config.push_aes_key.clone(), appid.to_string()));
        Moderation {
            config,
            wechat,
            tokens,
            store,
            verifier,
            public_url,
            bound_url: OnceLock::new(),
        }
    }

    /// Tells the service where the server listens, the prefix when no public URL was
    /// configured.
    pub fn served_at(&self, url: String) {
        let _ = self.bound_url.set(url);
    }

    fn prefix(&self) -> &str {
        self.public_url
            .as_deref()
            .or(self.bound_url.get().map(String::as_str))
            .unwrap_or_default()
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// How often the server runs [`Moderation::resubmit_due`]: often enough that a check is
    /// resubmitted soon after it is due, never busier than twice a second.
    pub fn resubmit_interval(&self) -> Duration {
        (self.config.resubmit_after / 4).clamp(Duration::from_millis(500), Duration::from_secs(60))
    }

    /// Asks WeChat about a nickname `openid` wants to use, and applies the policies.
    pub fn judge_nickname(&self, openid: &str, nickname: &str) -> TextJudgement {
        if !self.config.enabled {
            return TextJudgement::Accept;
        }
        let verdict = self
            .tokens
            .with_token(|token| self.wechat.msg_sec_check(token, openid, nickname));
        match verdict {
            Ok(v) => match (v.suggest, self.config.on_review) {
                (Suggest::Pass, _) | (Suggest::Review, Policy::Accept) => TextJudgement::Accept,
                (Suggest::Risky, _) | (Suggest::Review, Policy::Reject) => {
                    TextJudgement::Refuse { label: v.label }
                }
            },
            Err(e) => {
                log::warn!("msg_sec_check failed: {e}");
                match self.config.on_error {
                    Policy::Accept => TextJudgement::Accept,
                    Policy::Reject => TextJudgement::Unavailable,
                }
            }
        }
    }

    /// [`Moderation::judge_nickname`] as `PUT /api/me` answers it: 422 or 503 unless accepted.
    pub fn check_nickname(&self, openid: &str, nickname: &str) -> Result<(), Error> {
        match self.judge_nickname(openid, nickname) {
            TextJudgement::Accept => Ok(()),
            TextJudgement::Refuse { label } => Err(Error::ContentRejected { label }),
            TextJudgement::Unavailable => Err(Error::ModerationUnavailable),
        }
    }

    /// Stores an upload: the user's avatar at once when moderation is off or the image passed
    /// before, refused when it was refused before, else pending and submitted to WeChat.
    pub fn upload(&self, openid: &str, avatar: &Avatar) -> Result<AvatarState, Error> {
        let url = format!("{}/avatars/{}", self.prefix(), avatar.file_name());
        let image = NewImage {
            hash: &avatar.hash,
            content_type: avatar.image_type.content_type(),
            bytes: &avatar.bytes,
            url: &url,
        };
        let now = unix_now();
        let remembered = if self.config.enabled {
            self.store.find_media_verdict(&avatar.hash)?
        } else {
            Some(Suggest::Pass.as_str().to_string())
        };
        match remembered.as_deref().and_then(Suggest::parse) {
            Some(suggest) if self.accepts(suggest) => {
                if !self.store.activate_avatar(openid, &image, now)? {
                    return Err(Error::user_gone());
                }
                Ok(AvatarState::Active)
            }
            Some(_) => Err(Error::ImageRejected),
            None => {
                let token = random_hex(32);
                let expires = now + MEDIA_URL_LIFETIME.as_secs() as i64;
                if !self
                    .store
                    .begin_avatar_check(openid, &image, &token, expires, now)?
                {
                    return Err(Error::user_gone());
                }
                self.submit(openid, &token)?;
                Ok(AvatarState::Pending)
            }
        }
    }

    /// Whether a verdict publishes the image, by the review policy.
    fn accepts(&self, suggest: Suggest) -> bool {
        match suggest {
            Suggest::Pass => true,
            Suggest::Risky => false,
            Suggest::Review => self.config.on_review == Policy::Accept,
        }
    }

    /// Submits the pending image behind `token` and records its trace_id. WeChat failing is
    /// logged, not returned: the check stays pending and is resubmitted later.
    fn submit(&self, openid: &str, token: &str) -> Result<(), Error> {
        let media_url = format!("{}/media/{token}", self.prefix());
        let submitted = self
            .tokens
            .with_token(|access| self.wechat.media_check_async(access, openid, &media_url));
        match submitted {
            Ok(trace_id) => {
                self.store.avatar_check_submitted(token, &trace_id)?;
            }
            Err(e) => log::warn!("media_check_async failed, to be resubmitted: {e}"),
        }
        Ok(())
    }

    /// The pending image behind a `/media/` token, while the token is valid.
    pub fn media(&self, token: &str) -> Result<Option<(String, Vec<u8>)>, Error> {
        let well_formed = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Ok(None);
        }
        Ok(self.store.find_media(token, unix_now())?)
    }

    fn verifier(&self) -> Result<&PushVerifier, Error> {
        self.verifier
            .as_ref()
            .ok_or(Error::Push(PushError::BadSignature))
    }

    /// The `GET` URL check of the push configuration: the `echostr` to echo.
    pub fn url_check(&self, query: &str) -> Result<String, Error> {
        self.verifier()?
            .url_check(&Query::parse(query), unix_now())
            .map_err(Error::Push)
    }

    /// A `POST` push. A `wxa_media_check` verdict for a pending check is remembered by content
    /// hash and applied; anything else (other events, unknown or finished trace_ids) is
    /// acknowledged and changes nothing, since WeChat would only push it again.
    pub fn receive_push(&self, query: &str, body: &[u8]) -> Result<(), Error> {
        let event = self
            .verifier()?
            .open(&Query::parse(query), body, unix_now())
            .map_err(Error::Push)?;
        if event.get("Event").and_then(Value::as_str) != Some("wxa_media_check") {
            log::info!("push: an event other than wxa_media_check, ignored");
            return Ok(());
        }
        let trace_id = event.get("trace_id").and_then(Value::as_str).unwrap_or("");
        let suggest = event
            .pointer("/result/suggest")
            .and_then(Value::as_str)
            .and_then(Suggest::parse);
        let Some(suggest) = suggest else {
            log::warn!(
                "push: wxa_media_check for trace_id {trace_id:?} without a known suggest, ignored"
            );
            return Ok(());
        };
        let Some(check) = self.store.find_avatar_check(trace_id)? else {
            log::info!(
                "push: wxa_media_check for unknown or finished trace_id {trace_id:?}, ignored"
            );
            return Ok(());
        };
        let now = unix_now();
        self.store
            .remember_media_verdict(&check.hash, suggest.as_str(), now)?;
        let accept = self.accepts(suggest);
        self.store
            .finish_avatar_check(&check.openid, &check.media_token, accept, now)?;
        log::info!(
            "push: image check {trace_id} is {}: {}",
            suggest.as_str(),
            if accept { "published" } else { "rejected" }
        );
        Ok(())
    }

    /// Resubmits pending checks WeChat has not answered for `WXLOGIN_MODERATION_RESUBMIT_AFTER`,
    /// with a fresh `/media/` URL, and gives up on those submitted
    /// `WXLOGIN_MODERATION_MAX_ATTEMPTS` times, as `WXLOGIN_MODERATION_ON_ERROR` says. Safe to
    /// run on every node at once: each check is claimed by one. Returns how many it handled.
    pub fn resubmit_due(&self) -> Result<usize, Error> {
        let now = unix_now();
        let due_before = now - self.config.resubmit_after.as_secs() as i64;
        let due = self.store.due_avatar_checks(due_before, RESUBMIT_BATCH)?;
        let mut handled = 0;
        for check in due {
            if check.attempts >= self.config.max_attempts {
                let accept = self.config.on_error == Policy::Accept;
                if self
                    .store
                    .finish_avatar_check(&check.openid, &check.media_token, accept, now)?
                {
                    log::warn!(
                        "image check unanswered after {} submissions: {}",
                        check.attempts,
                        if accept { "published" } else { "rejected" }
                    );
                    handled += 1;
                }
                continue;
            }
            let token = random_hex(32);
            let expires = now + MEDIA_URL_LIFETIME.as_secs() as i64;
            if self.store.resubmit_avatar_check(
                &check.openid,
                &check.media_token,
                &token,
                expires,
                now,
            )? {
                log::info!("image check unanswered: submitting it again");
                self.submit(&check.openid, &token)?;
                handled += 1;
            }
        }
        Ok(handled)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
