// app.js — the mini-program's entry point.
const api = require('./utils/api.js');

App({
  globalData: {},

  onLaunch() {
    // Silent login, no button and no prompt, when no session is stored yet:
    //   wx.login() → POST /api/wxuser {code} → the access token ('token') and the refresh
    //   token ('refresh_token') in storage (see ensureLogin() in utils/api.js).
    // A stored session is kept as it is: utils/api.js refreshes it when the server answers 401.
    // The code only proves who the user is (their openid); the profile is filled in later on
    // the page, by the user.
    //
    // Pages need not wait for this: a request made through utils/api.js while this login is
    // in flight waits for it instead of starting a second one.
    this.loginReady = api.ensureLogin().catch((err) => {
      // Not fatal: the next request through utils/api.js logs in again.
      console.warn('silent login failed:', err.message);
    });
  }
});
