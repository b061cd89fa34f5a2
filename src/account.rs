//! The account's end: deletion by the user (with an optional grace period), erasure, and
//! disabling by the operator.
//!
//! A deletion needs the access token **and** a fresh `wx.login()` code of the same WeChat user:
//! there is no password to ask for, and a stolen access token alone must not be able to erase an
//! account. Every step is written to the database before it is answered: a deletion is first
//! scheduled (`erase_at`, which revokes every session), then erased. A crash between the two
//! leaves a due `erase_at`, which the sweep of any node (`sweep.rs`) erases; the erasure itself
//! is one idempotent transaction, so nodes racing to erase one account erase it once.

use crate::clock;
use crate::error::Error;
use crate::session::SessionService;
use crate::store::UserStore;
use crate::token::Identity;
use crate::wechat::WechatClient;
use std::sync::Arc;
use std::time::Duration;

/// Where a user's deletion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// No deletion is pending.
    None,
    /// The account is erased at `erase_at` (unix seconds) unless the user cancels first.
    Scheduled { erase_at: i64 },
    /// The account is gone.
    Erased,
}

/// The account use cases, shared by every connection and by the admin command.
pub struct AccountService {
    store: Arc<dyn UserStore>,
    sessions: Arc<SessionService>,
    wechat: WechatClient,
    grace: Duration,
}

impl AccountService {
    pub fn new(
        store: Arc<dyn UserStore>,
        sessions: Arc<SessionService>,
        wechat: WechatClient,
        grace: Duration,
    ) -> AccountService {
        AccountService {
            store,
            sessions,
            wechat,
            grace,
        }
    }

    /// The user asks for their account's deletion, proving presence with a fresh `code`.
    /// Every session is revoked at once; without a grace period the account is erased before
    /// this returns.
    pub fn request_deletion(&self, identity: &Identity, code: &str) -> Result<Deletion, Error> {
        let session = self.wechat.code2session(code)?;
        if session.openid != identity.openid {
            return Err(Error::CodeOfAnotherUser);
        }
        let now = clock::now();
        let grace = i64::try_from(self.grace.as_secs()).unwrap_or(i64::MAX);
        let erase_at = now.saturating_add(grace);
        let revoked = self
            .store
            .set_erase_at(&identity.uid, Some(erase_at), now)?
            .ok_or_else(Error::user_gone)?;
        self.sessions.revoked(&revoked);
        if grace > 0 {
            return Ok(Deletion::Scheduled { erase_at });
        }
        self.store.erase_user(&identity.uid, now)?;
        Ok(Deletion::Erased)
    }

    /// The caller's pending deletion, if any.
    pub fn deletion(&self, identity: &Identity) -> Result<Deletion, Error> {
        let account = self
            .store
            .find_account(&identity.uid)?
            .ok_or_else(Error::user_gone)?;
        Ok(account
            .erase_at
            .map_or(Deletion::None, |erase_at| Deletion::Scheduled { erase_at }))
    }

    /// Cancels the caller's pending deletion (nothing to do when none is pending).
    pub fn cancel_deletion(&self, identity: &Identity) -> Result<Deletion, Error> {
        self.store
            .set_erase_at(&identity.uid, None, clock::now())?
            .ok_or_else(Error::user_gone)?;
        Ok(Deletion::None)
    }

    /// Erases the account now, with no grace (the operator's `admin user delete`): scheduled
    /// first, so that a crash halfway is finished by the sweep. `false` when no user has this
    /// uid.
    pub fn erase_now(&self, uid: &str) -> Result<bool, Error> {
        let now = clock::now();
        let Some(revoked) = self.store.set_erase_at(uid, Some(now), now)? else {
            return Ok(false);
        };
        self.sessions.revoked(&revoked);
        self.store.erase_user(uid, now)?;
        Ok(true)
    }

    /// Disables (revoking every session) or enables the account; how many sessions were
    /// revoked, or `None` when no user has this uid.
    pub fn set_disabled(&self, uid: &str, disabled: bool) -> Result<Option<usize>, Error> {
        let Some(revoked) = self.store.set_disabled(uid, disabled, clock::now())? else {
            return Ok(None);
        };
        self.sessions.revoked(&revoked);
        Ok(Some(revoked.len()))
    }
}
