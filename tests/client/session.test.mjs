// The mini-program's session (issue 11, item 9), driven through its own code: the login keeps the
// access and the refresh token; a 401 leads to one refresh (shared by every call that got a 401
// meanwhile) and one retry; a refused refresh falls back to a silent wx.login(); logout ends the
// session on the server and forgets the tokens; a token stored by the previous release still
// works. No path loops.
//
// Every suite runs against the stub server (support/stub.mjs), which follows the contract; the
// same tests run against the real wxlogin (SQLite, MariaDB) once this tree's server has the
// session endpoints, and are reported as skipped until then (see forEachSessionTarget). Tests
// marked stubOnly need a switch only the stub has (expire every token at once, hold refreshes,
// make the refresh endpoint fail, a zero reuse grace).
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import {
  expectStatus, forEachSessionTarget, http, startClient, stubOnly, test, uniqueUser
} from './support/harness.mjs';

const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A token as the previous release stored it: an HS256 JWT the session server no longer accepts. */
function previousReleaseToken() {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ openid: 'o_old', iat: now, nbf: now, exp: now + 86400 })}`;
  const signature = createHmac('sha256', randomBytes(32)).update(input).digest('base64url');
  return `Bearer ${input}.${signature}`;
}

await forEachSessionTarget('session: refresh, re-login, logout', (ctx) => {
  const server = () => ctx.stack.server.url;

  /** Launches as a new user, loads the page once, then forgets what that did. */
  async function loggedIn(prefix, user = uniqueUser(prefix)) {
    const client = startClient(ctx.stack, user);
    const answer = await client.app.loginReady;
    assert.ok(answer && answer.refresh_token, `the launch logged in: ${JSON.stringify(answer)}`);
    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '', `profile loaded; exchanges: ${client.sim.exchanges()}`);
    client.sim.calls.login = 0;
    client.sim.calls.request.length = 0;
    return { client, page, answer };
  }

  /**
   * Makes the client's access token one the server refuses while its refresh token stays good.
   * The stub expires its access tokens; with the real server, whose tokens expire only with time,
   * the stored token gets a signature that does not verify: a 401 all the same.
   */
  function expireAccess(client) {
    if (ctx.real) {
      const [header, payload] = client.wx.getStorageSync('token').replace(/^Bearer /, '').split('.');
      client.wx.setStorageSync('token', `Bearer ${header}.${payload}.${randomBytes(64).toString('base64url')}`);
    } else {
      ctx.stack.stub.expireAccessTokens();
    }
  }

  /** Ends the client's session behind its back (as another device's logout would). */
  async function revokeBehindItsBack(client) {
    const res = await http(`${server()}/api/logout`, {
      method: 'POST',
      headers: { Authorization: client.wx.getStorageSync('token') }
    });
    expectStatus(res, 200, ctx.stack, 'POST /api/logout behind the client');
  }

  /** What the server says to a token ("Bearer …"), straight, with no client in between. */
  async function meStatus(token) {
    return (await http(`${server()}/api/me`, { headers: { Authorization: token } })).status;
  }

  async function refreshStatus(refreshToken) {
    const res = await http(`${server()}/api/token/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: refreshToken })
    });
    return res;
  }

  const refreshCalls = (client) => client.sim.calls.request.filter((r) => new URL(r.url).pathname === '/api/token/refresh');

  test('the login keeps the access and the refresh token and sends the access token', async () => {
    const client = startClient(ctx.stack, uniqueUser('store'));
    const answer = await client.app.loginReady;
    assert.equal(answer.token_type, 'Bearer');
    assert.equal(answer.token, `Bearer ${answer.access_token}`);
    assert.ok(answer.expires_in > 0 && answer.refresh_expires_in > answer.expires_in, JSON.stringify(answer));
    assert.equal(client.wx.getStorageSync('token'), `Bearer ${answer.access_token}`);
    assert.equal(client.wx.getStorageSync('refresh_token'), answer.refresh_token);

    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '');
    const me = client.sim.calls.request.find((r) => new URL(r.url).pathname === '/api/me');
    assert.equal(me.headers.authorization, `Bearer ${answer.access_token}`);
    assert.deepEqual(client.sim.exchanges(), ['POST /api/wxuser 200', 'GET /api/me 200']);
  });

  test('a new launch keeps the stored session: no wx.login, no call until a page asks', async () => {
    const { client } = await loggedIn('relaunch');
    const stored = client.wx.getStorageSync('token');
    client.launch(); // the mini-program started again: same storage, fresh code
    assert.equal(await client.app.loginReady, null, 'nothing to log in');
    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '');
    assert.equal(client.sim.calls.login, 0);
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 200']);
    assert.equal(client.sim.calls.request[0].headers.authorization, stored);
  });

  test('a 401 leads to exactly one refresh, both tokens rotate, the call is retried once', async () => {
    const { client, page, answer } = await loggedIn('refresh');
    expireAccess(client);
    const spoiled = client.wx.getStorageSync('token');

    await page.loadProfile();
    assert.equal(page.data.error, '', `no error; exchanges: ${client.sim.exchanges()}`);
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 401', 'POST /api/token/refresh 200', 'GET /api/me 200']);
    assert.equal(client.sim.calls.login, 0, 'no wx.login');
    const [call] = refreshCalls(client);
    assert.deepEqual(JSON.parse(call.body), { refresh_token: answer.refresh_token });
    assert.equal(call.headers.authorization, undefined, 'the refresh token alone proves the session');

    const token = client.wx.getStorageSync('token');
    const refreshToken = client.wx.getStorageSync('refresh_token');
    assert.notEqual(token, spoiled, 'a new access token');
    assert.notEqual(refreshToken, answer.refresh_token, 'a new refresh token (rotation)');
    assert.match(refreshToken, /\S{16,}/);
    assert.equal(client.sim.calls.request.at(-1).headers.authorization, token, 'the retry used the new token');
    assert.equal(await meStatus(token), 200);
    assert.equal(page.data.user.openid, (await http(`${server()}/api/me`, { headers: { Authorization: token } })).json.user.openid);
  });

  test('concurrent 401s share one refresh, and each call is retried once', async () => {
    const { client, page, answer } = await loggedIn('burst');
    expireAccess(client);
    // On the stub the refresh is held until all three calls have had their 401, so the three
    // are sure to be waiting on it at once (the real server's is too quick to be held).
    const release = ctx.real ? null : ctx.stack.stub.holdRefreshes();
    const start = ctx.real ? 0 : ctx.stack.stub.exchanges.length; // this test's exchanges only
    try {
      const calls = [page.loadProfile(), page.loadProfile(), page.loadProfile()];
      if (release) {
        await ctx.stack.stub.waitFor(
          (stub) => stub.heldRefreshes === 1 &&
            stub.exchanges.slice(start).filter((e) => e.path === '/api/me' && e.status === 401).length === 3,
          'three 401s while the refresh is held'
        );
        release();
      }
      await Promise.all(calls);
    } finally {
      release?.();
    }
    const exchanges = client.sim.exchanges();
    assert.equal(page.data.error, '', `no error; exchanges: ${exchanges}`);
    assert.equal(refreshCalls(client).length, 1, `one refresh: ${exchanges}`);
    if (!ctx.real) {
      const seen = ctx.stack.stub.exchanges.filter((e) => e.path === '/api/token/refresh' &&
        JSON.parse(e.body).refresh_token === answer.refresh_token);
      assert.equal(seen.length, 1, 'the server saw one refresh too');
    }
    assert.equal(exchanges.filter((e) => e === 'GET /api/me 401').length, 3, `${exchanges}`);
    assert.equal(exchanges.filter((e) => e === 'GET /api/me 200').length, 3, `${exchanges}`);
    assert.equal(exchanges.length, 7, `nothing else: ${exchanges}`);
    assert.equal(client.sim.calls.login, 0);
    const token = client.wx.getStorageSync('token');
    const retries = client.sim.calls.request.filter((r) => r.statusCode === 200 && new URL(r.url).pathname === '/api/me');
    assert.deepEqual(retries.map((r) => r.headers.authorization), [token, token, token]);
  });

  test('a refused refresh (session ended elsewhere) falls back to wx.login and the call succeeds', async () => {
    const { client, page, answer } = await loggedIn('revoked');
    await revokeBehindItsBack(client);

    await page.loadProfile();
    assert.equal(page.data.error, '', `no error; exchanges: ${client.sim.exchanges()}`);
    assert.deepEqual(client.sim.exchanges(), [
      'GET /api/me 401', 'POST /api/token/refresh 401', 'POST /api/wxuser 200', 'GET /api/me 200'
    ]);
    assert.equal(client.sim.calls.login, 1, 'exactly one wx.login');
    const refreshToken = client.wx.getStorageSync('refresh_token');
    assert.ok(refreshToken && refreshToken !== answer.refresh_token, 'the new session\'s refresh token');
    assert.equal(await meStatus(client.wx.getStorageSync('token')), 200);
  });

  test('a reused refresh token ("refresh_token_reused") falls back to wx.login', { skip: stubOnly(ctx) }, async () => {
    const { stub } = ctx.stack;
    const { client, page, answer } = await loggedIn('reused');
    // Someone else (a thief) refreshed with this token first; with a grace below zero, any
    // presentation after that is late, so the client's own refresh is the reuse.
    const stolen = await refreshStatus(answer.refresh_token);
    assert.equal(stolen.status, 200);
    stub.reuseGraceMs = -1;
    try {
      expireAccess(client);
      await page.loadProfile();
    } finally {
      stub.reuseGraceMs = 30_000;
    }
    assert.equal(page.data.error, '', `no error; exchanges: ${client.sim.exchanges()}`);
    assert.deepEqual(client.sim.exchanges(), [
      'GET /api/me 401', 'POST /api/token/refresh 401', 'POST /api/wxuser 200', 'GET /api/me 200'
    ]);
    const refused = stub.exchanges.find((e) => e.path === '/api/token/refresh' && e.status === 401 &&
      JSON.parse(e.body).refresh_token === answer.refresh_token);
    assert.ok(refused, 'the stub refused the reused token');
    assert.equal(stub.sessionRevoked(stub.sessionOf(stolen.json.access_token)), true, 'the reuse revoked the session');
    assert.equal(client.sim.calls.login, 1);
  });

  test('when the refresh and the re-login both fail, the call fails once: no loop', async () => {
    const { client, page } = await loggedIn('noloop');
    await revokeBehindItsBack(client);
    client.sim.loginCodes.push('fail.40029', 'fail.40029', 'fail.40029');

    await page.loadProfile();
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 401', 'POST /api/token/refresh 401', 'POST /api/wxuser 401']);
    assert.equal(client.sim.calls.login, 1, 'one wx.login');
    assert.equal(page.data.loading, false);
    assert.match(page.data.error, /\S/, 'the page shows why');
    assert.equal(client.wx.getStorageSync('refresh_token'), '', 'the refused refresh token is dropped');
  });

  test('a retry that gets 401 again after a good refresh fails: no second renewal', { skip: stubOnly(ctx) }, async () => {
    const { stub } = ctx.stack;
    const { client, page } = await loggedIn('again401');
    stub.rejectAccessTokens = true;
    try {
      await page.loadProfile();
    } finally {
      stub.rejectAccessTokens = false;
    }
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 401', 'POST /api/token/refresh 200', 'GET /api/me 401']);
    assert.equal(client.sim.calls.login, 0);
    assert.match(page.data.error, /\S/);
  });

  test('a refresh that fails with 503 fails the call and keeps the refresh token for later', { skip: stubOnly(ctx) }, async () => {
    const { stub } = ctx.stack;
    const { client, page, answer } = await loggedIn('busy');
    expireAccess(client);
    stub.refreshStatus = 503;
    try {
      await page.loadProfile();
    } finally {
      stub.refreshStatus = null;
    }
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 401', 'POST /api/token/refresh 503']);
    assert.equal(client.sim.calls.login, 0, 'a server error says nothing against the session: no new login');
    assert.match(page.data.error, /\S/);
    assert.equal(client.wx.getStorageSync('refresh_token'), answer.refresh_token, 'kept');

    await page.loadProfile(); // the server is back
    assert.equal(page.data.error, '');
    assert.deepEqual(client.sim.exchanges().slice(2), ['GET /api/me 401', 'POST /api/token/refresh 200', 'GET /api/me 200']);
  });

  test('logout ends the session on the server and clears the stored tokens', async () => {
    const { client, page, answer } = await loggedIn('logout');
    const token = client.wx.getStorageSync('token');

    await page.onLogout();
    assert.deepEqual(client.sim.exchanges(), ['POST /api/logout 200']);
    assert.equal(client.sim.calls.request[0].headers.authorization, token, 'with the access token');
    assert.equal(client.wx.getStorageSync('token'), '');
    assert.equal(client.wx.getStorageSync('refresh_token'), '');
    assert.equal(page.data.loggedOut, true);
    assert.equal(page.data.user, null);
    assert.deepEqual(client.sim.toasts(), []);
    assert.equal(await meStatus(token), 401, 'the access token is refused');
    assert.equal((await refreshStatus(answer.refresh_token)).status, 401, 'the refresh token is refused');

    await page.loadProfile(); // "重新登录"
    assert.equal(page.data.error, '');
    assert.equal(page.data.loggedOut, false);
    assert.equal(client.sim.calls.login, 1);
    assert.deepEqual(client.sim.exchanges().slice(1), ['POST /api/wxuser 200', 'GET /api/me 200']);
  });

  test('logout with an expired access token refreshes once, then ends that session', async () => {
    const { client, page } = await loggedIn('lateout');
    expireAccess(client);

    await page.onLogout();
    assert.deepEqual(client.sim.exchanges(), ['POST /api/logout 401', 'POST /api/token/refresh 200', 'POST /api/logout 200']);
    assert.equal(client.sim.calls.login, 0, 'no new session only to end it');
    assert.equal(client.wx.getStorageSync('token'), '');
    assert.equal(client.wx.getStorageSync('refresh_token'), '');
    const used = client.sim.calls.request.at(-1).headers.authorization;
    assert.equal(await meStatus(used), 401, 'the refreshed session is the one that ended');
    assert.deepEqual(client.sim.toasts(), []);
  });

  test('logout of a session already ended elsewhere just clears the tokens', async () => {
    const { client, page } = await loggedIn('goneout');
    await revokeBehindItsBack(client);

    await page.onLogout();
    assert.deepEqual(client.sim.exchanges(), ['POST /api/logout 401', 'POST /api/token/refresh 401']);
    assert.equal(client.sim.calls.login, 0);
    assert.equal(client.wx.getStorageSync('token'), '');
    assert.equal(client.wx.getStorageSync('refresh_token'), '');
    assert.equal(page.data.loggedOut, true);
    assert.deepEqual(client.sim.toasts(), [], 'nothing to report: the session is over');
  });

  test('logout everywhere ends the other device\'s session too; it logs in again silently', async () => {
    const user = uniqueUser('everywhere');
    const phone = await loggedIn('a', user);
    const tablet = await loggedIn('b', user);
    const tabletRefresh = tablet.client.wx.getStorageSync('refresh_token');
    const openid = phone.page.data.user.openid;
    assert.equal(tablet.page.data.user.openid, openid, 'one user, two devices');

    await phone.page.onLogoutAll();
    assert.deepEqual(phone.client.sim.exchanges(), ['POST /api/logout/all 200']);
    assert.equal(phone.client.wx.getStorageSync('token'), '');
    assert.equal(phone.client.wx.getStorageSync('refresh_token'), '');
    assert.equal(phone.page.data.loggedOut, true);
    assert.equal(await meStatus(tablet.client.wx.getStorageSync('token')), 401, 'the tablet\'s access token is refused');
    assert.equal((await refreshStatus(tabletRefresh)).status, 401, 'and its refresh token');

    await tablet.page.loadProfile();
    assert.equal(tablet.page.data.error, '', `exchanges: ${tablet.client.sim.exchanges()}`);
    assert.deepEqual(tablet.client.sim.exchanges(), [
      'GET /api/me 401', 'POST /api/token/refresh 401', 'POST /api/wxuser 200', 'GET /api/me 200'
    ]);
    assert.equal(tablet.page.data.user.openid, openid, 'the same user again');
  });

  test('a token stored by the previous release (no refresh token) still works: a 401 goes straight to wx.login', async () => {
    const client = startClient(ctx.stack, uniqueUser('old'), { launchApp: false });
    const old = previousReleaseToken();
    client.wx.setStorageSync('token', old); // all the previous release kept
    client.launch();
    assert.equal(await client.app.loginReady, null, 'the stored token is kept at launch');
    assert.equal(client.sim.calls.login, 0);

    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '', `no error; exchanges: ${client.sim.exchanges()}`);
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 401', 'POST /api/wxuser 200', 'GET /api/me 200']);
    assert.equal(client.sim.calls.request[0].headers.authorization, old, 'the old token was sent as is');
    assert.equal(client.sim.calls.login, 1);
    assert.notEqual(client.wx.getStorageSync('token'), old);
    assert.ok(client.wx.getStorageSync('refresh_token'), 'now with a refresh token');
  });

  test('logout with only a previous-release token clears it without a new login', async () => {
    const client = startClient(ctx.stack, uniqueUser('oldout'), { launchApp: false });
    client.wx.setStorageSync('token', previousReleaseToken());
    client.launch();
    await client.app.loginReady;
    const page = client.openPage();
    await page.loaded;
    client.wx.setStorageSync('token', previousReleaseToken()); // as if the page never refreshed it
    client.wx.removeStorageSync('refresh_token');
    client.sim.calls.login = 0;
    client.sim.calls.request.length = 0;

    await page.onLogout();
    assert.deepEqual(client.sim.exchanges(), ['POST /api/logout 401']);
    assert.equal(client.sim.calls.login, 0);
    assert.equal(client.wx.getStorageSync('token'), '');
    assert.equal(page.data.loggedOut, true);
  });
});
