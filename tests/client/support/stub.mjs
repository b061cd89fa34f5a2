// A stand-in for wxlogin's session endpoints (issue 11), in plain Node `http`, so the
// mini-program's refresh/re-login/logout logic is tested before (and besides) the real server.
// It follows the contract, not the server's code:
// - POST /api/wxuser {code}            → 200 login answer: status, token ("Bearer <access>"),
//                                        messages, profile, access_token, token_type, expires_in,
//                                        refresh_token, refresh_expires_in; a new session each time
// - POST /api/token/refresh {refresh_token} (JSON or form) → 200 the same shape minus profile,
//   both tokens new (rotation). The rotated token presented again within `reuseGraceMs` answers
//   the same pair; later it is theft: 401 "refresh_token_reused" and the session is revoked.
//   Unknown or revoked → 401.
// - POST /api/logout (Bearer)          → revokes its session;  POST /api/logout/all → every
//                                        session of the user
// - GET /api/me (Bearer)               → 200 {status, user}
// Issue 12 (account deletion, disabling, login history):
// - POST /api/me/deletion (Bearer) {code} → the code must be a fresh one of the same user
//   (missing → 400, unknown or used → 401, another user's → 403); every session of the user is
//   revoked; with `deletionGraceS` 0: erased now, 200 {status, deletion: {state: "erased"}} (the
//   same WeChat user logging in later is a new user); else 202 {status, deletion: {state:
//   "scheduled", erase_at: <RFC 3339>}}, and a login during the grace says so ("deletion").
// - GET /api/me/deletion → 200 {status, deletion: {state: "none"} or the scheduled one};
//   DELETE /api/me/deletion → cancels: 200 {status, deletion: {state: "none"}}; 404 if none.
// - GET /api/me/logins → 200 {status, logins: [{at, session_id, ip, user_agent, kind}]}, newest
//   first, at most 20; each successful login ("login") and refresh ("refresh") adds one.
// - disableUser(name): revokes the user's sessions; its logins and refreshes answer 403
//   {"status":403,"message":"this account is disabled"} until enableUser(name).
// - GET /mock/code?user=…              → a one-time login code, as mock-wechat hands them out, so
//                                        the simulated wx.login can use this server as "WeChat".
//                                        Codes "fail.<errcode>" fail as wxlogin answers them
//                                        (-1: WeChat busy → 502; anything else → 401).
// Switches for the tests: expireAccessTokens(), rejectAccessTokens, refreshStatus,
// holdRefreshes(); counters in `counts`; every exchange in `exchanges`.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';

const ACCESS_TTL_S = 7200;
const REFRESH_TTL_S = 30 * 86400;
const BODY_LIMIT = 64 * 1024;

const token = (prefix) => `${prefix}_${randomBytes(24).toString('base64url')}`;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > BODY_LIMIT) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The fields of a JSON or form body, as wxlogin reads them. */
function fields(req, text) {
  const type = req.headers['content-type'] || '';
  if (type.includes('application/x-www-form-urlencoded')) {
    return Object.fromEntries(new URLSearchParams(text));
  }
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {};
  }
}

/**
 * Starts the stub on a free loopback port. `reuseGraceMs`: how long a rotated refresh token
 * still answers the pair it was rotated into (the contract's WXLOGIN_REFRESH_REUSE_GRACE).
 */
export async function startStubServer({ reuseGraceMs = 30_000, deletionGraceS = 0 } = {}) {
  const events = new EventEmitter();
  const users = new Map(); // user name → {uid, openid, disabled, deletion, logins}
  const codes = new Map(); // code → user name (one use each)
  const sessions = new Map(); // sid → {uid, revoked}
  const access = new Map(); // access token → {sid, expired}
  const refresh = new Map(); // refresh token → {sid, rotatedAt, successor: answer}
  const held = [];
  let holding = false;
  let codeSeq = 0;

  const stub = {
    url: null,
    reuseGraceMs,
    /** WXLOGIN_DELETION_GRACE in seconds: 0 erases at once, more schedules the erasure. */
    deletionGraceS,
    /** Every protected call answers 401 while true, even with a token issued just now. */
    rejectAccessTokens: false,
    /** When set, POST /api/token/refresh answers this status (e.g. 503) and rotates nothing. */
    refreshStatus: null,
    counts: {
      code: 0, wxuser: 0, refresh: 0, logout: 0, logoutAll: 0, me: 0,
      deletion: 0, deletionGet: 0, deletionCancel: 0, logins: 0
    },
    /** The uids erased so far (for assertions). */
    erased: [],
    /** [{method, path, status, authorization, body}], in arrival order; status set on answer. */
    exchanges: [],

    /** Every access token issued so far is expired from now on; sessions and refresh tokens stay. */
    expireAccessTokens() {
      for (const entry of access.values()) {
        entry.expired = true;
      }
    },

    /** Refresh requests wait unanswered until the returned function is called. */
    holdRefreshes() {
      holding = true;
      return () => {
        holding = false;
        for (const go of held.splice(0)) {
          go();
        }
      };
    },

    /** How many refresh requests are waiting (see holdRefreshes). */
    get heldRefreshes() {
      return held.length;
    },

    /** The operator disables `name`: every session revoked, logins and refreshes refused (403). */
    disableUser(name) {
      const user = userFor(name);
      user.disabled = true;
      revokeAll(user.uid);
    },

    enableUser(name) {
      userFor(name).disabled = false;
    },

    /** The live record of `name` ({uid, openid, disabled, deletion, logins}), or null. */
    user(name) {
      return users.get(name) ?? null;
    },

    /** Whether `sid`'s session is revoked (for assertions). */
    sessionRevoked(sid) {
      return sessions.get(sid)?.revoked ?? null;
    },

    /** The session id behind an access token ("Bearer …" or bare), or null. */
    sessionOf(bearer) {
      return access.get(String(bearer).replace(/^Bearer /, ''))?.sid ?? null;
    },

    /**
     * Resolves once `predicate(stub)` holds, checked after every request and answer; rejects
     * after `timeoutMs` saying `what` was awaited.
     */
    waitFor(predicate, what, timeoutMs = 5000) {
      if (predicate(stub)) {
        return Promise.resolve();
      }
      return new Promise((resolve, reject) => {
        const check = () => {
          if (predicate(stub)) {
            done();
            resolve();
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`stub: ${what} not seen within ${timeoutMs} ms; exchanges: ${stub.log()}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          events.off('change', check);
        };
        events.on('change', check);
      });
    },

    /** The exchanges as "METHOD /path status", for failure messages. */
    log() {
      return stub.exchanges.map((e) => `${e.method} ${e.path} ${e.status ?? '…'}`).join(', ');
    }
  };

  function userFor(name) {
    if (!users.has(name)) {
      users.set(name, {
        uid: randomBytes(16).toString('hex'),
        openid: `o_stub_${name}`,
        disabled: false,
        deletion: null, // {state: 'scheduled', erase_at}
        logins: [] // newest last
      });
    }
    return users.get(name);
  }

  function userByUid(uid) {
    return [...users.values()].find((u) => u.uid === uid) ?? null;
  }

  function revokeAll(uid) {
    for (const session of sessions.values()) {
      if (session.uid === uid) {
        session.revoked = true;
      }
    }
  }

  /** Erasure: nothing of the user is left; the same name logging in later gets a new uid. */
  function erase(user) {
    revokeAll(user.uid);
    for (const [name, u] of users) {
      if (u === user) {
        users.delete(name);
      }
    }
    stub.erased.push(user.uid);
  }

  function recordLogin(req, user, sid, kind) {
    user.logins.push({
      at: new Date().toISOString(),
      session_id: sid,
      ip: req.socket.remoteAddress,
      user_agent: req.headers['user-agent'] ?? null,
      kind
    });
  }

  const disabledAnswer = [403, { status: 403, message: 'this account is disabled' }];

  function newSession(uid) {
    const sid = randomBytes(16).toString('hex');
    sessions.set(sid, { uid, revoked: false });
    return sid;
  }

  /** A fresh access/refresh pair for session `sid`, as the login and refresh answers carry it. */
  function issue(sid) {
    const accessToken = token('at');
    const refreshToken = token('rt');
    access.set(accessToken, { sid, expired: false });
    refresh.set(refreshToken, { sid, rotatedAt: null, successor: null });
    return {
      status: 200,
      token: `Bearer ${accessToken}`,
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: ACCESS_TTL_S,
      refresh_token: refreshToken,
      refresh_expires_in: REFRESH_TTL_S
    };
  }

  /** The live session behind the request's bearer token, or null (→ 401). */
  function authenticate(req) {
    const header = req.headers.authorization || '';
    const match = /^Bearer (\S+)$/.exec(header);
    const entry = match && access.get(match[1]);
    if (!entry || entry.expired || stub.rejectAccessTokens) {
      return null;
    }
    const session = sessions.get(entry.sid);
    return session && !session.revoked ? { sid: entry.sid, ...session } : null;
  }

  const unauthorized = { status: 401, message: 'login required: the token is missing, expired or revoked' };

  async function handle(req, url, body) {
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /healthz':
        return [200, { status: 200 }];
      case 'GET /mock/code': {
        stub.counts.code += 1;
        const user = url.searchParams.get('user') || '';
        const code = `stubcode_${++codeSeq}_${randomBytes(6).toString('hex')}`;
        codes.set(code, user);
        return [200, code];
      }
      case 'POST /api/wxuser': {
        stub.counts.wxuser += 1;
        const code = String(fields(req, body).code || '');
        if (code === 'fail.-1') {
          return [502, { status: 502, message: 'WeChat is busy, try again' }];
        }
        if (!codes.has(code)) {
          return [401, { status: 401, message: 'invalid login code' }];
        }
        const user = userFor(codes.get(code));
        codes.delete(code);
        if (user.disabled) {
          return disabledAnswer;
        }
        const sid = newSession(user.uid);
        const answer = issue(sid);
        recordLogin(req, user, sid, 'login');
        const deletion = user.deletion ? { deletion: user.deletion } : {};
        return [200, { ...answer, messages: 'login succeeded', profile: { status: 'absent' }, ...deletion }];
      }
      case 'POST /api/token/refresh': {
        stub.counts.refresh += 1;
        if (holding) {
          await new Promise((resolve) => {
            held.push(resolve);
            events.emit('change'); // heldRefreshes changed: let waitFor() see it
          });
        }
        if (stub.refreshStatus) {
          return [stub.refreshStatus, { status: stub.refreshStatus, message: 'refresh unavailable' }];
        }
        const presented = String(fields(req, body).refresh_token || '');
        const entry = refresh.get(presented);
        const session = entry && sessions.get(entry.sid);
        if (session && userByUid(session.uid)?.disabled) {
          return disabledAnswer; // the account, not the token, is refused
        }
        if (!entry || !session || session.revoked) {
          return [401, { status: 401, message: 'invalid refresh token' }];
        }
        if (entry.rotatedAt !== null) {
          if (Date.now() - entry.rotatedAt <= stub.reuseGraceMs) {
            return [200, entry.successor];
          }
          session.revoked = true;
          return [401, { status: 401, error: 'refresh_token_reused', message: 'refresh token reused: the session is revoked' }];
        }
        entry.rotatedAt = Date.now();
        entry.successor = issue(entry.sid);
        recordLogin(req, userByUid(session.uid), entry.sid, 'refresh');
        return [200, entry.successor];
      }
      case 'POST /api/logout': {
        stub.counts.logout += 1;
        const who = authenticate(req);
        if (!who) {
          return [401, unauthorized];
        }
        sessions.get(who.sid).revoked = true;
        return [200, { status: 200, message: 'logged out' }];
      }
      case 'POST /api/logout/all': {
        stub.counts.logoutAll += 1;
        const who = authenticate(req);
        if (!who) {
          return [401, unauthorized];
        }
        for (const session of sessions.values()) {
          if (session.uid === who.uid) {
            session.revoked = true;
          }
        }
        return [200, { status: 200, message: 'logged out everywhere' }];
      }
      case 'GET /api/me': {
        stub.counts.me += 1;
        const who = authenticate(req);
        if (!who) {
          return [401, unauthorized];
        }
        const user = [...users.values()].find((u) => u.uid === who.uid);
        return [200, {
          status: 200,
          user: {
            openid: user.openid, unionid: null, nickName: null, avatarUrl: null, gender: 0,
            phoneNumber: null, purePhoneNumber: null, countryCode: null
          }
        }];
      }
      case 'POST /api/me/deletion': {
        stub.counts.deletion += 1;
        const who = authenticate(req);
        if (!who) {
          return [401, unauthorized];
        }
        const code = String(fields(req, body).code || '');
        if (!code) {
          return [400, { status: 400, message: 'code is required' }];
        }
        if (!codes.has(code)) {
          return [401, { status: 401, message: 'invalid login code' }];
        }
        const owner = users.get(codes.get(code));
        codes.delete(code);
        const user = userByUid(who.uid);
        if (!owner || owner !== user) {
          return [403, { status: 403, message: 'the login code belongs to another WeChat user' }];
        }
        revokeAll(user.uid);
        if (!stub.deletionGraceS) {
          erase(user);
          return [200, { status: 200, deletion: { state: 'erased' } }];
        }
        user.deletion = {
          state: 'scheduled',
          erase_at: new Date(Date.now() + stub.deletionGraceS * 1000).toISOString().replace(/\.\d+Z$/, 'Z')
        };
        return [202, { status: 202, deletion: user.deletion }];
      }
      case 'GET /api/me/deletion': {
        stub.counts.deletionGet += 1;
        const who = authenticate(req);
        if (!who) {
          return [401, unauthorized];
        }
        return [200, { status: 200, deletion: userByUid(who.uid).deletion ?? { state: 'none' } }];
      }
      case 'DELETE /api/me/deletion': {
        stub.counts.deletionCancel += 1;
        const who = authenticate(req);
        if (!who) {
          return [401, unauthorized];
        }
        const user = userByUid(who.uid);
        if (!user.deletion) {
          return [404, { status: 404, message: 'no deletion is scheduled' }];
        }
        user.deletion = null;
        return [200, { status: 200, deletion: { state: 'none' } }];
      }
      case 'GET /api/me/logins': {
        stub.counts.logins += 1;
        const who = authenticate(req);
        if (!who) {
          return [401, unauthorized];
        }
        return [200, { status: 200, logins: userByUid(who.uid).logins.slice(-20).reverse() }];
      }
      default:
        return [404, { status: 404, message: `no route ${route}` }];
    }
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://stub');
    const record = {
      method: req.method,
      path: url.pathname,
      status: null,
      authorization: req.headers.authorization ?? null,
      body: null
    };
    if (url.pathname !== '/healthz' && url.pathname !== '/mock/code') {
      stub.exchanges.push(record);
    }
    readBody(req)
      .then((body) => {
        record.body = body;
        events.emit('change');
        return handle(req, url, body);
      })
      .catch((err) => [500, { status: 500, message: `stub failed: ${err.message}` }])
      .then(([status, answer]) => {
        record.status = status;
        const text = typeof answer === 'string' ? answer : JSON.stringify(answer);
        res.writeHead(status, {
          'content-type': typeof answer === 'string' ? 'text/plain' : 'application/json'
        });
        res.end(text, () => events.emit('change'));
      });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  stub.url = `http://127.0.0.1:${server.address().port}`;
  stub.stop = () => new Promise((resolve) => {
    for (const go of held.splice(0)) {
      go(); // nothing may wait for ever on a stopped stub
    }
    server.closeAllConnections();
    server.close(() => resolve());
  });
  return stub;
}
