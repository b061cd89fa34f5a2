// pages/index/index.js — the user's profile: avatar, nickname, phone number; logout, login
// history, account deletion.
//
// Every handler returns its Promise: WeChat ignores it, tests wait on it.
const api = require('../../utils/api.js');
const time = require('../../utils/time.js');

// A short message for the user: the server's messages are written to be shown.
function showError(err) {
  wx.showToast({ title: err.message || '出错了', icon: 'none', duration: 3000 });
}

// A scheduled deletion with its date as the user reads it; null for anything else.
function shownDeletion(deletion) {
  if (!deletion || deletion.state !== 'scheduled') {
    return null;
  }
  return { state: deletion.state, erase_at: deletion.erase_at, eraseAt: time.formatTime(deletion.erase_at) };
}

Page({
  data: {
    loading: true, // true until GET /api/me has answered
    user: null,    // the profile from GET /api/me: openid, nickName, avatarUrl, gender, phoneNumber…
    error: '',     // why the profile could not be loaded
    disabled: false, // the server refuses this account ("this account is disabled"): see onRetry
    loggedOut: false, // true after a logout, until the user logs in again
    deleted: false,  // true once the account is erased
    deletion: null   // a scheduled deletion: {state: 'scheduled', erase_at, eraseAt (as shown)}
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
    this.setData({ loading: true, error: '', disabled: false, loggedOut: false, deleted: false });
    return api.get('/api/me').then(
      (res) => this.setData({
        loading: false,
        user: res.user,
        deletion: shownDeletion(api.pendingDeletion()) // a login during the grace period says so
      }),
      (err) => this.setData({
        loading: false,
        error: err.message,
        disabled: err.code === 'account_disabled'
      })
    );
  },

  // The "重试" button. For a disabled account api.js starts no wx.login() on its own (that would
  // only ask again and again); the user's tap is the one time it tries again.
  onRetry() {
    if (!this.data.disabled) {
      return this.loadProfile();
    }
    this.setData({ loading: true, error: '' });
    return api.login().then(
      () => this.loadProfile(),
      (err) => this.setData({
        loading: false,
        error: err.message,
        disabled: err.code === 'account_disabled'
      })
    );
  },

  // "登录记录": the last logins of this account (pages/history).
  onShowHistory() {
    wx.navigateTo({ url: '/pages/history/history' });
  },

  // "注销账号": api.deleteAccount() asks first (a modal), then deletes with a fresh wx.login()
  // code. Cancelled: nothing happens. Erased: the page says so and shows nothing of the user.
  // Scheduled (a grace period): the page shows the date and a button to cancel.
  onDeleteAccount() {
    return api.deleteAccount().then(
      (deletion) => {
        if (!deletion) {
          return; // the user cancelled in the modal
        }
        if (deletion.state === 'scheduled') {
          this.setData({ user: null, deletion: shownDeletion(deletion) });
        } else {
          this.setData({ user: null, deletion: null, deleted: true });
        }
      },
      (err) => showError(err)
    );
  },

  // "撤销注销": DELETE /api/me/deletion (after a login: the deletion revoked every session),
  // then the profile again.
  onCancelDeletion() {
    wx.showLoading({ title: '撤销中', mask: true });
    return api.cancelDeletion().then(
      () => {
        wx.hideLoading();
        this.setData({ deletion: null });
        wx.showToast({ title: '已撤销注销', icon: 'success' });
        return this.loadProfile();
      },
      (err) => {
        wx.hideLoading();
        showError(err);
      }
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
