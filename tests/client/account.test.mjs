// The account's end and its record (issue 12, item 8), driven through the mini-program's own code:
// "注销账号" asks first, then deletes with a fresh wx.login() code and clears storage (erased at
// once, or scheduled with a date and a way to cancel); the login history page lists the last
// logins newest first; a disabled account shows the server's message and does not keep calling
// wx.login().
//
// Every suite runs against the stub server (support/stub.mjs, the contract), and against the real
// wxlogin (SQLite, MariaDB) once this tree's server has the endpoint it needs; until then that half
// is reported as SKIPPED, loudly (see forEachContractTarget).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  expectStatus, forEachContractTarget, http, serverAccountFeatures, startClient, test, uniqueUser
} from './support/harness.mjs';
import { WECHAT_USER_AGENT } from './support/wx.mjs';

const features = serverAccountFeatures();
const HISTORY_ROUTE = 'pages/history/history';
const GRACE_S = 7 * 86400;

/**
 * Launches as a new user, loads the profile page once, then forgets what that did. Answers the
 * client, the page, the login answer and the code the launch login used.
 */
async function loggedIn(ctx, prefix, user = uniqueUser(prefix)) {
  const client = startClient(ctx.stack, user);
  const answer = await client.app.loginReady;
  assert.ok(answer && answer.refresh_token, `the launch logged in: ${JSON.stringify(answer)}`);
  const page = client.openPage();
  await page.loaded;
  assert.equal(page.data.error, '', `profile loaded; exchanges: ${client.sim.exchanges()}`);
  const launchCode = sent(client, 'POST', '/api/wxuser').json.code;
  forget(client);
  return { client, page, answer, launchCode };
}

/** Clears what the simulated wx recorded, so a test sees only what comes next. */
function forget(client) {
  client.sim.calls.login = 0;
  client.sim.calls.request.length = 0;
  client.sim.ui.length = 0;
}

/** What the server says to a token ("Bearer …") at GET /api/me, straight. */
async function meStatus(ctx, token) {
  return (await http(`${ctx.stack.server.url}/api/me`, { headers: { Authorization: token } })).status;
}

async function refreshStatus(ctx, refreshToken) {
  return (await http(`${ctx.stack.server.url}/api/token/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refreshToken })
  })).status;
}

/** A fresh login code of `user` from "WeChat" (mock-wechat, or the stub playing it). */
async function codeOf(ctx, user) {
  const res = await http(`${ctx.stack.mock.base}/mock/code?user=${encodeURIComponent(user)}`);
  assert.equal(res.status, 200, res.text);
  return res.text.trim();
}

/** The client's access token made one the server refuses (see session.test.mjs). */
function expireAccess(ctx, client) {
  if (ctx.real) {
    const [header, payload] = client.wx.getStorageSync('token').replace(/^Bearer /, '').split('.');
    client.wx.setStorageSync('token', `Bearer ${header}.${payload}.${randomBytes(64).toString('base64url')}`);
  } else {
    ctx.stack.stub.expireAccessTokens();
  }
}

/** The request the client made to `path` (the last one), with its JSON body parsed. */
function sent(client, method, path) {
  const record = client.sim.calls.request.filter((r) => r.method === method && new URL(r.url).pathname === path).at(-1);
  assert.ok(record, `${method} ${path} was sent; exchanges: ${client.sim.exchanges()}`);
  return { ...record, json: record.body ? JSON.parse(record.body) : undefined };
}

/** "YYYY-MM-DD HH:mm" in this process's time zone, as utils/time.js shows a date. */
function localMinute(rfc3339) {
  const d = new Date(rfc3339);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

// ---------------------------------------------------------------------------------------------

await forEachContractTarget('account: delete my account', {
  present: features.deletion,
  missing: 'deletion endpoint (issue 12): src/http has no "/api/me/deletion" route yet',
  stub: { deletionGraceS: 0 },
  env: { WXLOGIN_DELETION_GRACE: '0s' }
}, (ctx) => {
  test('cancel in the modal: nothing is sent, no wx.login, the session stays', async () => {
    const { client, page } = await loggedIn(ctx, 'keep');
    const token = client.wx.getStorageSync('token');
    client.sim.modalAnswers.push('cancel');

    await page.onDeleteAccount();
    assert.equal(client.sim.modals().length, 1, 'the user was asked');
    assert.deepEqual(client.sim.exchanges(), [], 'nothing sent');
    assert.equal(client.sim.calls.login, 0, 'no wx.login');
    assert.equal(client.wx.getStorageSync('token'), token);
    assert.ok(page.data.user, 'the profile is still shown');
    assert.equal(page.data.deleted, false);
    if (!ctx.real) {
      assert.equal(ctx.stack.stub.counts.deletion, 0);
    }
    assert.equal(await meStatus(ctx, token), 200, 'the session is alive');
  });

  test('confirm: a fresh wx.login code, POST /api/me/deletion with the access token, storage cleared', async () => {
    const { client, page, answer, launchCode } = await loggedIn(ctx, 'erase');
    const token = client.wx.getStorageSync('token');
    client.wx.setStorageSync('draft', 'something else the app kept about the user');
    client.sim.modalAnswers.push('confirm');

    await page.onDeleteAccount();
    assert.equal(client.sim.modals().length, 1, 'the user was asked first');
    assert.deepEqual(client.sim.exchanges(), ['POST /api/me/deletion 200']);
    assert.equal(client.sim.calls.login, 1, 'one wx.login, for the proof of presence');
    const call = sent(client, 'POST', '/api/me/deletion');
    assert.equal(call.headers.authorization, token, 'with the access token');
    assert.match(String(call.json.code), /\S/, 'a code');
    assert.notEqual(call.json.code, launchCode, 'a fresh code, not the login\'s');
    assert.deepEqual(Object.keys(call.json), ['code']);
    assert.deepEqual([...client.sim.storage.keys()], [], 'storage cleared, all of it');
    assert.equal(page.data.deleted, true);
    assert.equal(page.data.user, null);
    assert.deepEqual(client.sim.toasts(), [], 'no error shown');
    if (!ctx.real) {
      assert.equal(ctx.stack.stub.counts.deletion, 1);
      assert.equal(ctx.stack.stub.erased.length, 1);
    }
    assert.equal(await meStatus(ctx, token), 401, 'the access token is refused');
    assert.equal(await refreshStatus(ctx, answer.refresh_token), 401, 'the refresh token is refused');
  });

  test('an expired access token: one refresh, then the deletion again with another fresh code', async () => {
    const { client, page } = await loggedIn(ctx, 'erase401');
    expireAccess(ctx, client);
    client.sim.modalAnswers.push('confirm');

    await page.onDeleteAccount();
    assert.deepEqual(client.sim.exchanges(), [
      'POST /api/me/deletion 401', 'POST /api/token/refresh 200', 'POST /api/me/deletion 200'
    ]);
    const codes = client.sim.calls.request.filter((r) => new URL(r.url).pathname === '/api/me/deletion')
      .map((r) => JSON.parse(r.body).code);
    assert.equal(client.sim.calls.login, 2, 'a code per attempt: a code is good for one exchange');
    assert.notEqual(codes[0], codes[1]);
    assert.equal(client.sim.modals().length, 1, 'asked once');
    assert.deepEqual([...client.sim.storage.keys()], []);
    assert.equal(page.data.deleted, true);
  });

  test('a code of another WeChat user: 403, its message shown, nothing cleared', async () => {
    const { client, page } = await loggedIn(ctx, 'erase403');
    const token = client.wx.getStorageSync('token');
    client.sim.loginCodes.push(await codeOf(ctx, uniqueUser('other')));
    client.sim.modalAnswers.push('confirm');

    await page.onDeleteAccount();
    assert.deepEqual(client.sim.exchanges(), ['POST /api/me/deletion 403']);
    const [toast] = client.sim.toasts();
    assert.match(toast ?? '', /\S/, 'the server\'s message is shown');
    assert.equal(client.wx.getStorageSync('token'), token, 'the session is kept');
    assert.ok(page.data.user, 'still shown');
    assert.equal(page.data.deleted, false);
    assert.equal(await meStatus(ctx, token), 200);
  });

  test('a used code: 401 from the deletion is not mistaken for success', async () => {
    const { client, page, launchCode } = await loggedIn(ctx, 'erasereplay');
    // The launch login's code, already exchanged: the server must refuse it (401); the client
    // renews its session and tries once more with a fresh code of its own.
    client.sim.loginCodes.push(launchCode);
    client.sim.modalAnswers.push('confirm');

    await page.onDeleteAccount();
    const exchanges = client.sim.exchanges();
    assert.equal(exchanges[0], 'POST /api/me/deletion 401', `${exchanges}`);
    assert.equal(exchanges.at(-1), 'POST /api/me/deletion 200', `${exchanges}`);
    assert.equal(exchanges.filter((e) => e.startsWith('POST /api/me/deletion')).length, 2, 'retried once');
    assert.equal(page.data.deleted, true);
  });
});

// ---------------------------------------------------------------------------------------------

await forEachContractTarget('account: deletion with a grace period', {
  present: features.deletion,
  missing: 'deletion endpoint (issue 12): src/http has no "/api/me/deletion" route yet',
  stub: { deletionGraceS: GRACE_S },
  env: { WXLOGIN_DELETION_GRACE: '7d' }
}, (ctx) => {
  test('202: the page shows the date; cancelling logs in again and DELETE /api/me/deletion', async () => {
    const { client, page, answer } = await loggedIn(ctx, 'grace');
    client.sim.modalAnswers.push('confirm');
    const before = Date.now();

    await page.onDeleteAccount();
    assert.deepEqual(client.sim.exchanges(), ['POST /api/me/deletion 202']);
    const deletion = page.data.deletion;
    assert.equal(deletion?.state, 'scheduled', JSON.stringify(page.data));
    const eraseAt = Date.parse(deletion.erase_at);
    assert.ok(Math.abs(eraseAt - (before + GRACE_S * 1000)) < 120_000, `erase_at ${deletion.erase_at} is in 7 days`);
    assert.equal(deletion.eraseAt, localMinute(deletion.erase_at), 'shown in local time');
    assert.equal(page.data.user, null);
    assert.equal(client.wx.getStorageSync('token'), '', 'the tokens are gone (every session is revoked)');
    assert.equal(client.wx.getStorageSync('refresh_token'), '');
    assert.equal(await refreshStatus(ctx, answer.refresh_token), 401, 'the old session is over');

    forget(client);
    await page.onCancelDeletion();
    assert.deepEqual(client.sim.exchanges(), [
      'POST /api/wxuser 200', 'DELETE /api/me/deletion 200', 'GET /api/me 200'
    ], 'a login (allowed during the grace), the cancel, the profile');
    assert.equal(client.sim.calls.login, 1);
    assert.equal(page.data.deletion, null);
    assert.equal(page.data.error, '');
    assert.ok(page.data.user, 'the profile is back');
    assert.deepEqual(client.sim.toasts(), ['已撤销注销']);

    const status = await http(`${ctx.stack.server.url}/api/me/deletion`, {
      headers: { Authorization: client.wx.getStorageSync('token') }
    });
    expectStatus(status, 200, ctx.stack, 'GET /api/me/deletion');
    assert.notEqual(status.json.deletion?.state, 'scheduled', JSON.stringify(status.json));
    assert.equal(await page.onDeleteAccount().then(() => client.sim.modals().length), 1,
      'the delete button asks again (and is answered "cancel": nothing more)');
  });

  test('a launch during the grace period says so and offers to cancel', async () => {
    const user = uniqueUser('gracelaunch');
    const { client, page } = await loggedIn(ctx, 'gracelaunch', user);
    client.sim.modalAnswers.push('confirm');
    await page.onDeleteAccount();
    assert.equal(page.data.deletion?.state, 'scheduled');

    // The user comes back another day: a new launch on an empty storage, silent login.
    const again = startClient(ctx.stack, user);
    const answer = await again.app.loginReady;
    assert.equal(answer?.deletion?.state, 'scheduled', `the login answer says so: ${JSON.stringify(answer)}`);
    const next = again.openPage();
    await next.loaded;
    assert.equal(next.data.error, '');
    assert.ok(next.data.user, 'logging in works during the grace period');
    assert.equal(next.data.deletion?.state, 'scheduled', 'the page shows the pending deletion');
    assert.equal(next.data.deletion.eraseAt, localMinute(answer.deletion.erase_at));

    forget(again);
    await next.onCancelDeletion();
    assert.deepEqual(again.sim.exchanges(), ['DELETE /api/me/deletion 200', 'GET /api/me 200']);
    assert.equal(next.data.deletion, null);
    assert.equal(again.wx.getStorageSync('deletion'), '');
  });
});

// ---------------------------------------------------------------------------------------------

await forEachContractTarget('account: login history', {
  present: features.logins,
  missing: 'login history endpoint (issue 12): src/http has no "/api/me/logins" route yet'
}, (ctx) => {
  test('the history page lists the logins and refreshes, newest first: time, kind, ip, device', async () => {
    const { client, page } = await loggedIn(ctx, 'history');
    expireAccess(ctx, client);
    await page.loadProfile(); // 401 → a refresh: the second entry
    assert.equal(page.data.error, '');
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 401', 'POST /api/token/refresh 200', 'GET /api/me 200']);

    await page.onShowHistory();
    const nav = client.sim.ui.find((u) => u.api === 'navigateTo');
    assert.equal(nav?.options.url, '/pages/history/history', 'the button opens the history page');

    forget(client);
    const history = client.openPage(HISTORY_ROUTE);
    await history.loaded;
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me/logins 200']);
    assert.equal(history.data.error, '');
    assert.equal(history.data.loading, false);
    const logins = history.data.logins;
    assert.deepEqual(logins.map((l) => l.kind), ['refresh', 'login'], `newest first: ${JSON.stringify(logins)}`);
    assert.deepEqual(logins.map((l) => l.kindLabel), ['续期', '登录']);
    assert.ok(Date.parse(logins[0].at) >= Date.parse(logins[1].at), 'times do not go up');
    for (const entry of logins) {
      assert.ok(Math.abs(Date.parse(entry.at) - Date.now()) < 120_000, `a time of now: ${entry.at}`);
      assert.equal(entry.time, localMinute(entry.at));
      assert.match(entry.ip, /^(::ffff:)?127\.0\.0\.1$|^::1$/, 'the client address');
      assert.equal(entry.device, WECHAT_USER_AGENT, 'the WeChat client\'s user agent');
    }
    assert.equal(logins[0].sessionId, logins[1].sessionId, 'the refresh continued the login\'s session');
    assert.equal(new Set(logins.map((l) => l.key)).size, logins.length, 'wx:key values are unique');
  });

  test('the history page says why when it cannot load', async () => {
    const { client } = await loggedIn(ctx, 'historyerr');
    client.sim.loginCodes.push('fail.40029'); // the re-login after the refused refresh fails
    await http(`${ctx.stack.server.url}/api/logout`, {
      method: 'POST', headers: { Authorization: client.wx.getStorageSync('token') }
    });
    const history = client.openPage(HISTORY_ROUTE);
    await history.loaded;
    assert.equal(history.data.loading, false);
    assert.match(history.data.error, /\S/);
    assert.deepEqual(history.data.logins, []);
  });
});

// ---------------------------------------------------------------------------------------------

await forEachContractTarget('account: disabled', {
  present: features.admin,
  missing: '`wxlogin admin user disable` command (issue 12): there is no src/admin.rs yet',
  // The admin command is another process: a node learns of its change within
  // WXLOGIN_REVOCATION_DELAY; with 0 it asks the database on every request, as these tests need.
  env: { WXLOGIN_REVOCATION_DELAY: '0s' }
}, (ctx) => {
  const DISABLED = 'this account is disabled';

  /** The user id (`sub`) behind a login answer's access token (the real server's ES256 JWT). */
  const subOf = (answer) => JSON.parse(Buffer.from(answer.access_token.split('.')[1], 'base64url')).sub;

  /** The operator disables (or enables) the user: the admin command, or the stub's switch. */
  async function operator(action, client, answer) {
    if (ctx.real) {
      const res = await ctx.stack.server.admin(['user', action, subOf(answer)]);
      assert.equal(res.code, 0, `wxlogin admin user ${action}: ${res.stdout}${res.stderr}`);
    } else if (action === 'disable') {
      ctx.stack.stub.disableUser(client.user);
    } else {
      ctx.stack.stub.enableUser(client.user);
    }
  }

  test('a disabled account: the server\'s message, then no more wx.login until the user retries', async () => {
    const { client, page, answer } = await loggedIn(ctx, 'disabled');
    await operator('disable', client, answer);

    await page.loadProfile();
    const exchanges = client.sim.exchanges();
    assert.equal(page.data.error, DISABLED, `the server's message; exchanges: ${exchanges}`);
    assert.equal(page.data.disabled, true);
    assert.ok(client.sim.calls.login <= 1, `at most one wx.login: ${client.sim.calls.login}`);
    if (exchanges.includes('POST /api/token/refresh 403')) {
      // The refresh already said the account is refused: a login would only hear it again.
      assert.equal(client.sim.calls.login, 0, `no wx.login after a 403 to the refresh: ${exchanges}`);
    }
    if (!ctx.real) {
      assert.deepEqual(exchanges, ['GET /api/me 401', 'POST /api/token/refresh 403']);
    }
    assert.ok(exchanges.filter((e) => e.startsWith('POST /api/wxuser')).length <= 1, `${exchanges}`);
    assert.match(exchanges.at(-1), / 403$/, `ends on the 403: ${exchanges}`);
    assert.equal(client.wx.getStorageSync('token'), '', 'the dead tokens are dropped');
    assert.equal(client.wx.getStorageSync('refresh_token'), '');

    // Everything else the user does now fails the same way without asking WeChat or the server.
    forget(client);
    await page.loadProfile();
    await page.onNickname({ detail: { value: '小明' } });
    const history = client.openPage(HISTORY_ROUTE);
    await history.loaded;
    assert.equal(page.data.error, DISABLED);
    assert.equal(history.data.error, DISABLED);
    assert.equal(client.sim.calls.login, 0, 'no wx.login loop');
    assert.deepEqual(client.sim.exchanges(), [], 'no request either');

    // "重试": the one time it asks again, still refused.
    await page.onRetry();
    assert.equal(client.sim.calls.login, 1);
    assert.deepEqual(client.sim.exchanges(), ['POST /api/wxuser 403']);
    assert.equal(page.data.error, DISABLED);
    assert.equal(page.data.loading, false);

    // The operator enables the account: the retry logs in (a new session) and the page loads.
    await operator('enable', client, answer);
    forget(client);
    await page.onRetry();
    assert.deepEqual(client.sim.exchanges(), ['POST /api/wxuser 200', 'GET /api/me 200']);
    assert.equal(page.data.error, '');
    assert.equal(page.data.disabled, false);
    assert.ok(page.data.user);
  });

  test('a launch of a disabled account: one wx.login, the message, no second login for the page', async () => {
    const user = uniqueUser('disabledlaunch');
    const { client, answer } = await loggedIn(ctx, 'disabledlaunch', user);
    await operator('disable', client, answer);

    const again = startClient(ctx.stack, user); // a new phone: nothing stored
    await again.app.loginReady;
    const page = again.openPage();
    await page.loaded;
    assert.equal(page.data.error, DISABLED);
    assert.equal(again.sim.calls.login, 1, 'the launch login only');
    assert.deepEqual(again.sim.exchanges(), ['POST /api/wxuser 403']);
  });
});
