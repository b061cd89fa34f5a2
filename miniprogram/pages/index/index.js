// pages/index/index.js — the user's profile: avatar, nickname, phone number.
//
// Every handler returns its Promise: WeChat ignores it, tests wait on it.
const api = require('../../utils/api.js');

// A short message for the user: the server's messages are written to be shown.
function showError(err) {
  wx.showToast({ title: err.message || '出错了', icon: 'none', duration: 3000 });
}

Page({
  data: {
    loading: true, // true until GET /api/me has answered
    user: null,    // the profile from GET /api/me: openid, nickName, avatarUrl, gender, phoneNumber…
    error: '',     // why the profile could not be loaded
    loggedOut: false // true after a logout, until the user logs in again
  },

  onLoad() {
    return this.loadProfile();
  },

  onPullDownRefresh() {
    return this.loadProfile().then(() => wx.stopPullDownRefresh());
  },

  // GET /api/me → what the server has stored about this user. With no session (after a
  // logout, or the launch login failed), utils/api.js logs in silently first: the "log in
  // again" button is this very handler.
  loadProfile() {
    this.setData({ loading: true, error: '', loggedOut: false });
    return api.get('/api/me').then(
      (res) => this.setData({ loading: false, user: res.user }),
      (err) => this.setData({ loading: false, error: err.message })
    );
  },

  // <button open-type="chooseAvatar">: the user picked a photo (or their WeChat avatar).
  // e.detail.avatarUrl is a temporary local file: upload it, the server answers with the
  // stored profile whose avatarUrl is the server's own, permanent URL of the image.
  onChooseAvatar(e) {
    const filePath = e.detail.avatarUrl;
    if (!filePath) {
      return Promise.resolve();
    }
    wx.showLoading({ title: '上传中', mask: true });
    return api.upload('/api/me/avatar', filePath).then(
      (res) => {
        wx.hideLoading();
        this.setData({ user: res.user });
      },
      (err) => {
        wx.hideLoading();
        showError(err);
      }
    );
  },

  // <input type="nickname">: fires on blur and on confirm, so the same name often comes twice;
  // only a new, non-empty name is sent. The server trims it too and allows 1–64 characters
  // (emoji included); its 400 message says what is wrong.
  onNickname(e) {
    const nickName = String(e.detail.value || '').trim();
    const stored = this.data.user ? this.data.user.nickName : null;
    if (!nickName || nickName === stored || nickName === this.savingNickName) {
      return Promise.resolve();
    }
    this.savingNickName = nickName;
    return api.put('/api/me', { nickName: nickName }).then(
      (res) => {
        this.savingNickName = null;
        this.setData({ user: res.user });
      },
      (err) => {
        this.savingNickName = null;
        showError(err);
      }
    );
  },

  // "退出登录": ends this device's session on the server (POST /api/logout) and forgets its
  // tokens. The page then shows nothing of the user until they log in again.
  onLogout() {
    return this.endSession(api.logout());
  },

  // "退出所有设备": ends every session of this user, on every phone (POST /api/logout/all).
  onLogoutAll() {
    return this.endSession(api.logoutAll());
  },

  // The tokens are gone here whether or not the server answered: show the user as logged out
  // either way, and say so when the server could not confirm.
  endSession(ending) {
    wx.showLoading({ title: '退出中', mask: true });
    return ending.then(
      () => {
        wx.hideLoading();
        this.setData({ user: null, loggedOut: true });
      },
      (err) => {
        wx.hideLoading();
        this.setData({ user: null, loggedOut: true });
        showError(err);
      }
    );
  },

  // <button open-type="getPhoneNumber">: e.detail.code is a one-time code the server trades
  // for the number at WeChat. No code means the user declined (or the base library is older
  // than 2.21.2).
  onGetPhoneNumber(e) {
    const code = e.detail.code;
    if (!code) {
      if (!/deny|cancel/.test(e.detail.errMsg || '')) {
        showError(new Error('无法获取手机号: ' + (e.detail.errMsg || '请升级微信')));
      }
      return Promise.resolve();
    }
    return api.post('/api/phone', { code: code }).then(
      (res) => this.setData({
        'user.phoneNumber': res.phone.phoneNumber,
        'user.purePhoneNumber': res.phone.purePhoneNumber,
        'user.countryCode': res.phone.countryCode
      }),
      (err) => showError(err)
    );
  }
});
