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

// Storage key: set while this phone waits for WeChat's verdict on an uploaded avatar, so that the
// verdict can be told to the user when it arrives, even on a later page show. The server keeps
// saying `rejected` until the next upload; without the key that is old news, not shown again.
const AVATAR_CHECK_KEY = 'avatar_check';

// Shown when the server cannot check a nickname now (503): nothing changed, the same name may be
// sent again later. Other refusals show the server's own message.
const TRY_LATER = '内容审核暂时不可用，请稍后再试';

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
    deletion: null,  // a scheduled deletion: {state: 'scheduled', erase_at, eraseAt (as shown)}
    // The avatar upload waiting for WeChat's check: 'pending' (审核中) or 'rejected' (refused;
    // the old avatar stays), '' for none. user.avatarUrl is always the one others see.
    avatarStatus: '',
    avatarPreview: '' // the local file of the pending upload, shown marked 审核中 meanwhile
  },

  // While an upload is pending, GET /api/me again after each of these delays (ms), then stop:
  // WeChat usually answers within seconds (mock-wechat in 200 ms), but may take up to 30 minutes,
  // so a longer wait is left to the next page show (onShow) or a pull-down refresh.
  avatarPollDelays: [1000, 2000, 4000, 8000, 15000],

  onLoad() {
    return this.loadProfile();
  },

  // Back on the page (from the history page, or the app from the background): a verdict may have
  // arrived meanwhile. The first show, right after onLoad, has nothing loaded yet: nothing to do.
  onShow() {
    if (this.data.avatarStatus === 'pending' && !this.avatarWatch) {
      return this.watchAvatar();
    }
    return Promise.resolve();
  },

  onUnload() {
    this.avatarGeneration = (this.avatarGeneration || 0) + 1; // stops a watch in progress
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
      (res) => {
        this.setData({
          loading: false,
          user: res.user,
          deletion: shownDeletion(api.pendingDeletion()) // a login during the grace period says so
        });
        this.showAvatarState(res.user);
        if (this.data.avatarStatus === 'pending' && !this.avatarWatch) {
          this.watchAvatar(); // not waited for: the page is shown meanwhile
        }
      },
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
  // e.detail.avatarUrl is a temporary local file: upload it. The server answers with the stored
  // profile and the image's state:
  // - 200 `active` (moderation off, or an image WeChat passed before): avatarUrl is the new
  //   image, the server's own permanent URL;
  // - 202 `pending`: WeChat checks it first, avatarUrl is still the old image (what others see).
  //   The page shows the chosen file marked 审核中 and watches for the verdict (watchAvatar);
  // - an error: the server's message (422: WeChat refused this very image before; 429: too many
  //   uploads, with when to try again; 413/415: not an image it takes). Nothing changed.
  // Resolves once the upload is answered; the watch that may follow is `this.avatarWatch`.
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
        if (res.avatar && res.avatar.state === 'pending') {
          wx.setStorageSync(AVATAR_CHECK_KEY, true);
          this.setData({ avatarStatus: 'pending', avatarPreview: filePath });
          this.watchAvatar();
        } else {
          this.avatarGeneration = (this.avatarGeneration || 0) + 1; // an older watch is moot
          this.avatarWatch = null;
          wx.removeStorageSync(AVATAR_CHECK_KEY);
          this.setData({ avatarStatus: '', avatarPreview: '' });
        }
      },
      (err) => {
        wx.hideLoading();
        showError(err);
      }
    );
  },

  // What the server says of the last upload (`avatarState`), as the page shows it. A verdict this
  // phone was waiting for (AVATAR_CHECK_KEY) is told once: 头像已更新, or that it was refused and
  // the old avatar stays. Answers whether the check is over.
  showAvatarState(user) {
    const state = user && user.avatarState;
    if (state === 'pending') {
      wx.setStorageSync(AVATAR_CHECK_KEY, true); // e.g. uploaded on another launch
      this.setData({ avatarStatus: 'pending' });
      return false;
    }
    const waited = Boolean(wx.getStorageSync(AVATAR_CHECK_KEY));
    wx.removeStorageSync(AVATAR_CHECK_KEY);
    if (state === 'rejected' && waited) {
      this.setData({ avatarStatus: 'rejected', avatarPreview: '' });
      wx.showToast({ title: '新头像未通过审核，已保留原头像', icon: 'none', duration: 3000 });
    } else {
      if (state === 'active' && waited) {
        wx.showToast({ title: '头像已更新', icon: 'success' });
      }
      // A rejection told before stays on screen until the next upload; anything else clears.
      const keep = state === 'rejected' && this.data.avatarStatus === 'rejected';
      this.setData({ avatarStatus: keep ? 'rejected' : '', avatarPreview: '' });
    }
    return true;
  },

  // Polls GET /api/me after each of avatarPollDelays while the upload is pending, and shows the
  // verdict when it comes. Bounded: after the last delay the page keeps saying 审核中 and
  // leaves it to the next show. A newer upload or leaving the page ends it. Resolves (never
  // rejects: a failed poll is only a missed look) when it is over.
  watchAvatar() {
    this.avatarGeneration = (this.avatarGeneration || 0) + 1;
    const generation = this.avatarGeneration;
    const delays = this.avatarPollDelays.slice();
    const current = () => generation === this.avatarGeneration;
    const next = () => {
      if (!current() || delays.length === 0) {
        return Promise.resolve();
      }
      return new Promise((resolve) => setTimeout(resolve, delays.shift()))
        .then(() => (current() ? api.get('/api/me') : null))
        .then(
          (res) => {
            if (!res || !current()) {
              return undefined;
            }
            this.setData({ user: res.user });
            return this.showAvatarState(res.user) ? undefined : next();
          },
          () => next()
        );
    };
    const watch = next().then(() => {
      if (this.avatarWatch === watch) {
        this.avatarWatch = null;
      }
    });
    this.avatarWatch = watch;
    return watch;
  },

  // <input type="nickname">: fires on blur and on confirm, so the same name often comes twice;
  // only a new, non-empty name is sent, and a name WeChat's check refused is not sent again
  // (the second event would only repeat the refusal). The server trims it too and allows 1–64
  // characters (emoji included); its 400 message says what is wrong. With moderation on it asks
  // WeChat first: 422 is a refusal, its message is shown; 503 means the check could not be made,
  // try again later. Either way nothing changed: the input goes back to the stored name.
  onNickname(e) {
    const nickName = String(e.detail.value || '').trim();
    const stored = this.data.user ? this.data.user.nickName : null;
    if (!nickName || nickName === stored || nickName === this.savingNickName
      || nickName === this.refusedNickName) {
      return Promise.resolve();
    }
    this.savingNickName = nickName;
    return api.put('/api/me', { nickName: nickName }).then(
      (res) => {
        this.savingNickName = null;
        this.refusedNickName = null;
        this.setData({ user: res.user });
      },
      (err) => {
        this.savingNickName = null;
        if (err.statusCode === 422) {
          this.refusedNickName = nickName;
        }
        // The input shows what was typed; the view only updates when its data changes, so set
        // the refused name, then the stored one back (WeChat renders the last value).
        this.setData({ 'user.nickName': nickName });
        this.setData({ 'user.nickName': stored });
        showError(err.statusCode === 503 ? new Error(TRY_LATER) : err);
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
