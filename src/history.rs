//! Login history: every successful login and refresh, so users can spot a session they do not
//! recognise (`GET /api/me/logins`).
//!
//! The rows are written by the store in the same transaction as the session they record
//! (`create_session`, `rotate_refresh`), so there is no history of a login that did not happen.
//! The sweep (`sweep.rs`) purges rows older than `WXLOGIN_LOGIN_HISTORY`.

use crate::error::Error;
use crate::store::{LoginEntry, UserStore};
use crate::token::Identity;

/// How many entries the user is shown: enough to spot a stranger, few enough to read.
pub const SHOWN: usize = 20;

/// The caller's latest logins and refreshes, newest first.
pub fn recent(store: &dyn UserStore, identity: &Identity) -> Result<Vec<LoginEntry>, Error> {
    Ok(store.list_logins(&identity.uid, SHOWN)?)
}
