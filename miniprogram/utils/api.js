// utils/api.js — every call to the wxlogin server goes through here.
//
// - login(): wx.login() → POST /api/wxuser {code} → the token is kept in storage ('token').
// - get/put/post/upload: add `Authorization: <token>` (the server hands out the whole
//   "Bearer <jwt>" string, so it is sent as is). When the server answers 401 (token missing,
//   expired, or signed with an older key), they log in again ONCE and repeat the call ONCE.
// - Everything returns a Promise. It resolves with the server's JSON body on 2xx and rejects
//   with an Error carrying `statusCode` (0 for a network failure) and the server's `message`,
//   which is safe to show to the user.
//
// Concurrent callers share one login: the page's first request may start while the silent
// login from app.js is still in flight; it waits for that login instead of starting another.

const config = require('../config.js');

const TOKEN_KEY = 'token';

// The login in flight (a Promise), or null.
let pendingLogin = null;

function apiError(statusCode, message) {
  const err = new Error(message);
  err.statusCode = statusCode;
  return err;
}

// A non-2xx answer as an Error with the server's message ({"status":…,"message":"…"}).
function answerError(res) {
  const body = res.data;
  const message = body && typeof body === 'object' && body.message
    ? body.message
    : 'server answered HTTP ' + res.statusCode;
  return apiError(res.statusCode, message);
}

// wx.login() as a Promise of the one-time code.
function wxLogin() {
  return new Promise((resolve, reject) => {
    wx.login({
      success: (res) => {
        if (res.code) {
          resolve(res.code);
        } else {
          reject(apiError(0, 'wx.login gave no code: ' + res.errMsg));
        }
      },
      fail: (err) => reject(apiError(0, 'wx.login failed: ' + (err && err.errMsg)))
    });
  });
}

// One wx.request. Resolves with {statusCode, data} whatever the HTTP status (like wx.request,
// whose `success` also fires for 4xx/5xx); rejects only when no answer arrived.
function send(method, path, data, token) {
  return new Promise((resolve, reject) => {
    const header = { 'content-type': 'application/json' };
    if (token) {
      header.Authorization = token;
    }
    wx.request({
      url: config.baseUrl + path,
      method: method,
      data: data,
      header: header,
      timeout: 15000,
      success: (res) => resolve({ statusCode: res.statusCode, data: res.data }),
      fail: (err) => reject(apiError(0, 'network error: ' + (err && err.errMsg)))
    });
  });
}

// One wx.uploadFile of `filePath` as the multipart field `file`. Its `success` also fires for
// every HTTP status, and gives the body as a string: parse it here.
function sendFile(path, filePath, token) {
  return new Promise((resolve, reject) => {
    const header = {};
    if (token) {
      header.Authorization = token;
    }
    wx.uploadFile({
      url: config.baseUrl + path,
      filePath: filePath,
      name: 'file',
      header: header,
      timeout: 30000,
      success: (res) => {
        let data = res.data;
        try {
          data = JSON.parse(res.data);
        } catch (e) {
          // not JSON (a proxy's error page): keep the text, answerError() falls back to the status
        }
        resolve({ statusCode: res.statusCode, data: data });
      },
      fail: (err) => reject(apiError(0, 'upload failed: ' + (err && err.errMsg)))
    });
  });
}

// Logs in: wx.login() → POST /api/wxuser → token in storage. Resolves with the server's answer
// ({status, token, messages, profile}). Callers at the same time share one login.
function login() {
  if (pendingLogin) {
    return pendingLogin;
  }
  pendingLogin = wxLogin()
    .then((code) => send('POST', '/api/wxuser', { code: code }))
    .then((res) => {
      if (res.statusCode !== 200 || !res.data || !res.data.token) {
        throw answerError(res);
      }
      wx.setStorageSync(TOKEN_KEY, res.data.token);
      return res.data;
    })
    .then(
      (data) => {
        pendingLogin = null;
        return data;
      },
      (err) => {
        pendingLogin = null;
        throw err;
      }
    );
  return pendingLogin;
}

// The token to use now: waits for a login in flight, logs in if there is no token yet.
function currentToken() {
  if (pendingLogin) {
    return pendingLogin.then(() => wx.getStorageSync(TOKEN_KEY));
  }
  const token = wx.getStorageSync(TOKEN_KEY);
  if (token) {
    return Promise.resolve(token);
  }
  return login().then(() => wx.getStorageSync(TOKEN_KEY));
}

// Runs `call(token)`. On a 401: logs in again and runs it once more, with the new token.
// If another call already replaced the token meanwhile, no new login is needed: retry with it.
function withToken(call) {
  return currentToken()
    .then((token) => call(token).then((res) => {
      if (res.statusCode !== 401) {
        return res;
      }
      let relogin;
      if (pendingLogin) {
        relogin = pendingLogin;
      } else if (wx.getStorageSync(TOKEN_KEY) !== token) {
        relogin = Promise.resolve();
      } else {
        relogin = login();
      }
      return relogin.then(() => call(wx.getStorageSync(TOKEN_KEY)));
    }))
    .then((res) => {
      if (res.statusCode >= 200 && res.statusCode < 300) {
        return res.data;
      }
      throw answerError(res);
    });
}

module.exports = {
  login: login,

  // GET path → the JSON body.
  get(path) {
    return withToken((token) => send('GET', path, undefined, token));
  },

  // PUT path with a JSON body → the JSON body.
  put(path, data) {
    return withToken((token) => send('PUT', path, data, token));
  },

  // POST path with a JSON body → the JSON body.
  post(path, data) {
    return withToken((token) => send('POST', path, data, token));
  },

  // Uploads a local file (e.g. chooseAvatar's temporary path) as the multipart field `file`.
  upload(path, filePath) {
    return withToken((token) => sendFile(path, filePath, token));
  }
};
