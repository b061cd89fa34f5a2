// utils/api.js — every call to the wxlogin server goes through here.
//
// The session in storage:
// - 'token': "Bearer <access token>", sent as is in `Authorization` (the key and the format of
//   the previous release, so a token stored by it keeps working);
// - 'refresh_token': the opaque refresh token (absent for state stored by the previous release,
//   or when the server hands none out).
//
// - login(): wx.login() → POST /api/wxuser {code} → both tokens stored. ensureLogin() (the
//   launch) does that only when nothing is stored.
// - get/put/post/upload: add `Authorization`. On a 401 (access token expired, revoked, or signed
//   with a key the server no longer has) they renew the session ONCE and repeat the call ONCE:
//   renewing is POST /api/token/refresh {refresh_token} (both tokens rotate); when the server
//   refuses the refresh token (4xx, e.g. "refresh_token_reused"), or there is none, it is a
//   silent wx.login() + POST /api/wxuser. Every call that gets a 401 meanwhile shares that one
//   renewal. If the repeated call fails too, its error is returned: there is no loop.
// - logout() / logoutAll(): POST /api/logout (this session) or /api/logout/all (every session of
//   the user), then the tokens are removed from storage.
// - deleteAccount(): asks the user (wx.showModal), takes a fresh wx.login() code as proof of
//   presence, POST /api/me/deletion {code}, then clears storage. cancelDeletion(),
//   deletionStatus(), loginHistory(): DELETE/GET /api/me/deletion, GET /api/me/logins.
// - A disabled account (403 from the login or the refresh) is final: the server's message is
//   returned, and no call starts another wx.login() until login() is called on purpose.
// - Everything returns a Promise. It resolves with the server's JSON body on 2xx and rejects
//   with an Error carrying `statusCode` (0 for a network failure) and the server's `message`,
//   which is safe to show to the user.
//
// Concurrent callers share one login: the page's first request may start while the silent
// login from app.js is still in flight; it waits for that login instead of starting another.

const config = require('../config.js');

const TOKEN_KEY = 'token';
const REFRESH_KEY = 'refresh_token';
// The account's scheduled deletion ({state: 'scheduled', erase_at}) as the last login answer
// told it, so that a page can offer to cancel it; absent when none is scheduled.
const DELETION_KEY = 'deletion';

// The server's refusal of this account (403 to a login or a refresh: "this account is
// disabled"), or null. While set, no call logs in on its own: the answer would be the same, and
// each wx.login() costs a code. Only login() called on purpose (the user's "retry") tries again.
let refusal = null;

// The login in flight (a Promise), or null.
let pendingLogin = null;
// The renewal after a 401 in flight (refresh, then wx.login if the refresh is refused), or null.
let pendingRenewal = null;

function apiError(statusCode, message, code) {
  const err = new Error(message);
  err.statusCode = statusCode;
  if (code) {
    err.code = code; // the server's machine-readable "error", e.g. "refresh_token_reused"
  }
  return err;
}

// A non-2xx answer as an Error with the server's message ({"status":…,"message":"…"}).
function answerError(res) {
  const body = res.data;
  const isObject = body && typeof body === 'object';
  const message = isObject && body.message
    ? body.message
    : 'server answered HTTP ' + res.statusCode;
  return apiError(res.statusCode, message, isObject ? body.error : undefined);
}

function isSuccess(res) {
  return res.statusCode >= 200 && res.statusCode < 300;
}

// Stores the tokens of a login or refresh answer. The access token goes in as the header value
// ("Bearer <access>"); `token` carries exactly that, `token_type` + `access_token` too. A server
// that hands out no refresh token (the previous release) leaves none behind: an old one would
// belong to another session.
function storeSession(data) {
  const header = data.access_token
    ? (data.token_type || 'Bearer') + ' ' + data.access_token
    : data.token;
  wx.setStorageSync(TOKEN_KEY, header);
  if (data.refresh_token) {
    wx.setStorageSync(REFRESH_KEY, data.refresh_token);
  } else {
    wx.removeStorageSync(REFRESH_KEY);
  }
}

function clearSession() {
  wx.removeStorageSync(TOKEN_KEY);
  wx.removeStorageSync(REFRESH_KEY);
}

// A 403 to a login or refresh, or one that says `"error":"account_disabled"` on any call: the
// account itself is refused (disabled by the operator). Its sessions are revoked on the
// server, so the tokens here are worth nothing: drop them.
function refused(res) {
  const err = answerError(res);
  if (!err.code) {
    err.code = 'account_disabled'; // older servers send only the message
  }
  refusal = err;
  clearSession();
  return err;
}

// Settles the same way whatever happened: for "wait until that is over".
function settled(promise) {
  return promise.then(() => undefined, () => undefined);
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

// Logs in: wx.login() → POST /api/wxuser → tokens in storage. Resolves with the server's answer
// ({status, token, access_token, refresh_token, …, profile}). Callers at the same time share
// one login.
function login() {
  if (pendingLogin) {
    return pendingLogin;
  }
  pendingLogin = wxLogin()
    .then((code) => send('POST', '/api/wxuser', { code: code }))
    .then((res) => {
      if (res.statusCode === 403) {
        throw refused(res);
      }
      if (res.statusCode !== 200 || !res.data || !(res.data.access_token || res.data.token)) {
        throw answerError(res);
      }
      refusal = null;
      storeSession(res.data);
      // During a deletion's grace period the login answer says so ("deletion": {…}).
      const deletion = res.data.deletion;
      if (deletion && deletion.state === 'scheduled') {
        wx.setStorageSync(DELETION_KEY, deletion);
      } else {
        wx.removeStorageSync(DELETION_KEY);
      }
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

// POST /api/token/refresh with the stored refresh token → both new tokens stored. A refresh
// token the server refuses (4xx: unknown, expired, revoked, or reused after rotation, which
// also revokes its session) is dead: it is removed. A network error or a 5xx says nothing
// about the token: it stays, for the next try.
function refresh() {
  const refreshToken = wx.getStorageSync(REFRESH_KEY);
  if (!refreshToken) {
    return Promise.reject(apiError(401, 'no refresh token'));
  }
  return send('POST', '/api/token/refresh', { refresh_token: refreshToken }).then((res) => {
    if (res.statusCode === 200 && res.data && res.data.access_token && res.data.refresh_token) {
      storeSession(res.data);
      return res.data;
    }
    if (res.statusCode === 403) {
      throw refused(res);
    }
    if (res.statusCode >= 400 && res.statusCode < 500
      && wx.getStorageSync(REFRESH_KEY) === refreshToken) {
      wx.removeStorageSync(REFRESH_KEY);
    }
    throw answerError(res);
  });
}

// The renewal after a 401, shared by every caller that asks while it runs: a refresh, and when
// the server refuses the refresh token (or there is none), a silent login. With
// `relogin: false` (logout) a refused refresh token ends it: there is no session left to end.
function renew(relogin) {
  if (pendingRenewal) {
    return pendingRenewal;
  }
  if (pendingLogin) {
    return pendingLogin;
  }
  const hasRefreshToken = Boolean(wx.getStorageSync(REFRESH_KEY));
  let attempt = hasRefreshToken ? refresh() : Promise.reject(apiError(401, 'no refresh token'));
  attempt = attempt.catch((err) => {
    // A 403 refuses the account, not the token: a login would get the same answer.
    const dead = err.statusCode >= 400 && err.statusCode < 500 && err.statusCode !== 403;
    if (!dead || relogin === false) {
      throw err;
    }
    return login();
  });
  pendingRenewal = attempt.then(
    () => {
      pendingRenewal = null;
    },
    (err) => {
      pendingRenewal = null;
      throw err;
    }
  );
  return pendingRenewal;
}

// The stored token, or a login when there is none, unless the server has refused the account:
// then its error, without another wx.login().
function tokenOrLogin() {
  const token = wx.getStorageSync(TOKEN_KEY);
  if (token) {
    return Promise.resolve(token);
  }
  if (refusal) {
    return Promise.reject(refusal);
  }
  return login().then(() => wx.getStorageSync(TOKEN_KEY));
}

// The token to use now: waits for a login or renewal in flight, logs in if there is no token.
function currentToken() {
  if (pendingLogin || pendingRenewal) {
    return settled(pendingRenewal || pendingLogin).then(tokenOrLogin);
  }
  return tokenOrLogin();
}

// Runs `call(token)`; on a 401, renews the session and runs it once more, with the new token.
// If another call already replaced the token meanwhile, no renewal is needed: retry with it.
// Resolves with the last {statusCode, data}, whatever its status.
function authorized(call, relogin) {
  return currentToken().then((token) => call(token).then((res) => {
    if (res.statusCode !== 401) {
      return res;
    }
    let renewal;
    if (pendingRenewal || pendingLogin) {
      // Another caller is renewing: share its outcome, its failure included.
      renewal = pendingRenewal || pendingLogin;
    } else if (wx.getStorageSync(TOKEN_KEY) && wx.getStorageSync(TOKEN_KEY) !== token) {
      // Another caller renewed while this call was on its way: its tokens are the new ones.
      renewal = Promise.resolve();
    } else {
      renewal = renew(relogin);
    }
    // Whatever happens next, this call is repeated at most once: never a second renewal.
    return renewal.then(() => {
      const fresh = wx.getStorageSync(TOKEN_KEY);
      return fresh ? call(fresh) : res;
    });
  }));
}

function withToken(call) {
  return authorized(call).then((res) => {
    if (isSuccess(res)) {
      return res.data;
    }
    if (res.statusCode === 403 && res.data && res.data.error === 'account_disabled') {
      throw refused(res);
    }
    throw answerError(res);
  });
}

// Ends a session on the server, then forgets the tokens here, whatever the server said: the
// user asked to be logged out. Resolves when the server ended it (or it had already ended:
// a 401 after a refused refresh); rejects with the server's or the network's error otherwise,
// the tokens being gone all the same.
function endSession(path, relogin) {
  const waitIdle = settled(pendingRenewal || pendingLogin || Promise.resolve());
  return waitIdle
    .then(() => {
      if (!relogin && !wx.getStorageSync(TOKEN_KEY)) {
        return { statusCode: 200, data: null }; // no session here: nothing to end
      }
      return authorized((token) => send('POST', path, {}, token), relogin);
    })
    .catch((err) => {
      // Without a re-login, a refused refresh token means the session is already over.
      if (!relogin && err.statusCode === 401) {
        return { statusCode: 401, data: null };
      }
      throw err;
    })
    .then(
      (res) => {
        clearSession();
        if (!isSuccess(res) && !(res.statusCode === 401 && !relogin)) {
          throw answerError(res);
        }
        return res.data;
      },
      (err) => {
        clearSession();
        throw err;
      }
    );
}

// Asks the user to confirm with a modal; resolves true only for "confirm".
function confirmDeletion() {
  return new Promise((resolve) => {
    wx.showModal({
      title: '注销账号',
      content: '注销后，你的资料、手机号、头像和登录记录都将被删除，且无法恢复。确定注销？',
      confirmText: '注销',
      confirmColor: '#e64340',
      cancelText: '取消',
      success: (res) => resolve(Boolean(res && res.confirm)),
      fail: () => resolve(false) // no modal, no consent
    });
  });
}

// Deletes the account: the user confirms, a fresh wx.login() code proves they hold this WeChat
// account now (there is no password), POST /api/me/deletion {code} with the access token, then
// everything stored here goes. Resolves with null when the user cancelled (nothing was sent),
// else with the server's `deletion`: {state: 'erased'} or {state: 'scheduled', erase_at}.
// The code is taken anew for each attempt: a 401 renews the session and repeats the call, and
// a code is good for one exchange only.
function deleteAccount() {
  return confirmDeletion().then((confirmed) => {
    if (!confirmed) {
      return null;
    }
    return authorized((token) => wxLogin()
      .then((code) => send('POST', '/api/me/deletion', { code: code }, token)))
      .then((res) => {
        if (!isSuccess(res)) {
          throw answerError(res); // e.g. 403: the code is another WeChat user's; nothing changed
        }
        // Every session is revoked on the server; the profile is gone (or will be). Nothing
        // kept on this phone is about anyone else: clear it all, not just the tokens.
        wx.clearStorageSync();
        const deletion = (res.data && res.data.deletion) || { state: 'erased' };
        if (deletion.state === 'scheduled') {
          wx.setStorageSync(DELETION_KEY, deletion); // so that a relaunch still offers to cancel
        }
        return deletion;
      });
  });
}

// Cancels a scheduled deletion: DELETE /api/me/deletion. The deletion revoked every session, so
// this usually logs in first (allowed during the grace period). Resolves with the server's
// answer.
function cancelDeletion() {
  return withToken((token) => send('DELETE', '/api/me/deletion', undefined, token)).then((data) => {
    wx.removeStorageSync(DELETION_KEY);
    return data;
  });
}

// At launch: keeps the stored session if there is one (no network at all: its first 401, if
// any, renews it), logs in otherwise. Every login starts a new session on the server (one more
// line in GET /api/me/sessions), so logging in at each launch would pile them up. Resolves with
// the login answer when it logged in, with null when it kept the stored session.
function ensureLogin() {
  if (pendingLogin) {
    return pendingLogin;
  }
  if (wx.getStorageSync(TOKEN_KEY)) {
    return Promise.resolve(null);
  }
  return login();
}

module.exports = {
  login: login,
  ensureLogin: ensureLogin,
  deleteAccount: deleteAccount,
  cancelDeletion: cancelDeletion,

  // GET /api/me/deletion → the server's `deletion` ({state, erase_at?}).
  deletionStatus() {
    return withToken((token) => send('GET', '/api/me/deletion', undefined, token))
      .then((data) => data.deletion);
  },

  // The scheduled deletion the last login reported (or deleteAccount() made), or null.
  pendingDeletion() {
    return wx.getStorageSync(DELETION_KEY) || null;
  },

  // GET /api/me/logins → the user's last logins and refreshes, newest first:
  // [{at, session_id, ip, user_agent, kind: 'login'|'refresh'}].
  loginHistory() {
    return withToken((token) => send('GET', '/api/me/logins', undefined, token))
      .then((data) => data.logins || []);
  },

  // Logs out this device: POST /api/logout with the access token (after one refresh if it has
  // expired; never a new login just to end it), then clears the stored tokens.
  logout() {
    return endSession('/api/logout', false);
  },

  // Logs out every device of this user: POST /api/logout/all, then clears the stored tokens.
  // This one may log in again first (the refresh token may be the very one that was stolen):
  // ending the other sessions is the point.
  logoutAll() {
    return endSession('/api/logout/all', true);
  },

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
