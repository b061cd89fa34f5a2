// app.js — the mini-program's entry point.
const api = require('./utils/api.js');

App({
  globalData: {},

  onLaunch() {
    // Silent login, no button and no prompt:
    //   wx.login() → POST /api/wxuser {code} → wx.setStorageSync('token', res.data.token)
    // (see login() in utils/api.js). The code only proves who the user is (their openid);
    // the profile is filled in later on the page, by the user.
    //
    // Pages need not wait for this: a request made through utils/api.js while this login is
    // in flight waits for it instead of starting a second one.
    this.loginReady = api.login().catch((err) => {
      // Not fatal: the next request through utils/api.js logs in again.
      console.warn('silent login failed:', err.message);
    });
  }
});
