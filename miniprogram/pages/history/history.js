// pages/history/history.js — the user's last logins (GET /api/me/logins): when, how, from where.
// A login the user does not recognise is their cue to "退出所有设备" on the profile page.
//
// Every handler returns its Promise: WeChat ignores it, tests wait on it.
const api = require('../../utils/api.js');
const time = require('../../utils/time.js');

const KIND_LABELS = { login: '登录', refresh: '续期' };

Page({
  data: {
    loading: true,
    error: '',
    logins: [] // [{key, at, time, kind, kindLabel, ip, device, sessionId}], newest first as the server sends them
  },

  onLoad() {
    return this.load();
  },

  onPullDownRefresh() {
    return this.load().then(() => wx.stopPullDownRefresh());
  },

  load() {
    this.setData({ loading: true, error: '' });
    return api.loginHistory().then(
      (logins) => this.setData({
        loading: false,
        logins: logins.map((entry, i) => ({
          key: i + ':' + entry.at, // wx:key; two entries may share a second
          at: entry.at,
          time: time.formatTime(entry.at),
          kind: entry.kind,
          kindLabel: KIND_LABELS[entry.kind] || entry.kind,
          ip: entry.ip || '未知',
          // The user agent is the device as the WeChat client describes itself.
          device: entry.user_agent || '未知设备',
          sessionId: entry.session_id
        }))
      }),
      (err) => this.setData({ loading: false, error: err.message })
    );
  }
});
