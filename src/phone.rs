//! The phone-number use case: a `getPhoneNumber` button code in, the user's number stored.
//!
//! The code goes to `/wxa/business/getuserphonenumber` with the cached access_token. A bad code
//! is the client's mistake (400), not a bad bearer token, so WeChat's errors here have their own
//! mapping (`Error::Phone`); 401 stays reserved for our own token.

use crate::access_token::AccessTokens;
use crate::error::Error;
use crate::fields::BodyFields;
use crate::store::UserStore;
use crate::user::PhoneNumber;
use crate::wechat::WechatClient;
use std::sync::Arc;

/// Binds phone numbers to users.
pub struct PhoneService {
    wechat: WechatClient,
    tokens: Arc<AccessTokens>,
    store: Arc<dyn UserStore>,
}

impl PhoneService {
    pub fn new(
        wechat: WechatClient,
        tokens: Arc<AccessTokens>,
        store: Arc<dyn UserStore>,
    ) -> PhoneService {
        PhoneService {
            wechat,
            tokens,
            store,
        }
    }

    /// Reads `code` from the request body's fields.
    pub fn code(fields: &mut BodyFields) -> Result<String, Error> {
        Ok(fields.code("the getPhoneNumber button's event (e.detail.code)")?)
    }

    /// Asks WeChat for the number behind `code` and stores it on the user. A deleted user is
    /// refused before WeChat is asked: the code would be spent for a number with nowhere to go.
    pub fn bind(&self, openid: &str, code: &str) -> Result<PhoneNumber, Error> {
        if self.store.find_user(openid)?.is_none() {
            return Err(Error::user_gone());
        }
        let phone = self
            .tokens
            .with_token(|token| self.wechat.phone_number(token, code, openid))
            .map_err(Error::Phone)?;
        if !self.store.set_phone(openid, &phone)? {
            return Err(Error::user_gone());
        }
        Ok(phone)
    }
}
