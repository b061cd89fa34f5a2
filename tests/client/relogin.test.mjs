// utils/api.js's promise: a 401 (token expired, forged, from an older key, or missing) leads to
// exactly one new login and one retry, concurrent callers share that login, and a login that
// cannot succeed ends in an error instead of a loop. These are the paths without a refresh token
// (state stored by the previous release, or a refresh token the server refused): the refresh
// itself is session.test.mjs's.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { event } from './support/miniprogram.mjs';
import {
  forEachBackend, getMe, resignToken, startClient, test, uniqueUser, writeTempFile
} from './support/harness.mjs';
import { png } from './support/images.mjs';

const now = () => Math.floor(Date.now() / 1000);

await forEachBackend('re-login on 401', (ctx) => {
  /** Launches as `user`, waits for the silent login, then puts `badToken(goodToken)` in storage. */
  async function launchedWithBadToken(user, badToken) {
    const client = startClient(ctx.stack, user);
    await client.app.loginReady;
    const good = client.wx.getStorageSync('token');
    assert.ok(good, 'silent login stored a token');
    client.wx.setStorageSync('token', badToken(good));
    // No refresh token: a 401 must go to wx.login (with one, it would be refreshed instead).
    client.wx.removeStorageSync('refresh_token');
    client.sim.calls.login = 0;
    client.sim.calls.request.length = 0;
    return client;
  }

  const badTokens = {
    'an expired token': (good) =>
      resignToken(good, ctx.stack.server.jwtSecret, { iat: now() - 7200, nbf: now() - 7200, exp: now() - 3600 }),
    'a token signed with another key': (good) =>
      resignToken(good, randomBytes(32).toString('hex'), {}),
    'a garbage token': () => 'Bearer not-a-jwt',
    'a token without the Bearer scheme': (good) => good.replace(/^Bearer /, '')
  };

  for (const [what, badToken] of Object.entries(badTokens)) {
    test(`${what} in storage: one re-login, one retry, the page loads`, async () => {
      const user = uniqueUser('relog');
      const client = await launchedWithBadToken(user, badToken);
      const bad = client.wx.getStorageSync('token');

      const page = client.openPage();
      await page.loaded;

      assert.equal(page.data.error, '', `no error; exchanges: ${client.sim.exchanges()}`);
      assert.equal(client.sim.calls.login, 1, 'exactly one wx.login');
      assert.deepEqual(client.sim.exchanges(), [
        'GET /api/me 401',
        'POST /api/wxuser 200',
        'GET /api/me 200'
      ]);
      const fresh = client.wx.getStorageSync('token');
      assert.notEqual(fresh, bad, 'the new token replaced the bad one');
      assert.deepEqual(page.data.user, await getMe(ctx.stack, fresh));
    });
  }

  test('concurrent calls that all get 401 share one re-login', async () => {
    const client = await launchedWithBadToken(uniqueUser('burst'), () => 'Bearer stale.stale.stale');
    const page = client.openPage();
    await Promise.all([page.loaded, page.loadProfile(), page.loadProfile()]);
    assert.equal(page.data.error, '', `no error; exchanges: ${client.sim.exchanges()}`);
    assert.equal(client.sim.calls.login, 1, 'exactly one wx.login');
    const exchanges = client.sim.exchanges();
    assert.equal(exchanges.filter((e) => e === 'POST /api/wxuser 200').length, 1, `${exchanges}`);
    assert.equal(exchanges.filter((e) => e === 'GET /api/me 200').length, 3, `${exchanges}`);
  });

  test('a page opened while the launch login is in flight waits for it', async () => {
    const client = startClient(ctx.stack, uniqueUser('race')); // no await: login in flight
    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '');
    assert.equal(client.sim.calls.login, 1, 'one login, not one per caller');
    assert.deepEqual(client.sim.exchanges(), ['POST /api/wxuser 200', 'GET /api/me 200']);
  });

  test('no token yet (silent login failed): the first request logs in', async () => {
    const client = startClient(ctx.stack, uniqueUser('late'), { launchApp: false });
    client.sim.loginCodes.push('fail.-1'); // WeChat busy at launch
    client.launch();
    await client.app.loginReady;
    assert.equal(client.wx.getStorageSync('token'), '', 'no token after a failed launch login');
    assert.equal(client.logs.filter((l) => l.level === 'warn').length, 1, 'the failure was logged');

    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '', `no error; exchanges: ${client.sim.exchanges()}`);
    assert.equal(client.sim.calls.login, 2);
    assert.deepEqual(client.sim.exchanges(), ['POST /api/wxuser 502', 'POST /api/wxuser 200', 'GET /api/me 200']);
  });

  test('when the re-login fails too, the call fails once: no loop', async () => {
    const client = await launchedWithBadToken(uniqueUser('loop'), () => 'Bearer not-a-jwt');
    client.sim.loginCodes.push('fail.40029', 'fail.40029', 'fail.40029');
    const page = client.openPage();
    await page.loaded;
    assert.equal(client.sim.calls.login, 1, 'one login attempt');
    assert.deepEqual(client.sim.exchanges(), ['GET /api/me 401', 'POST /api/wxuser 401']);
    assert.equal(page.data.loading, false);
    assert.match(page.data.error, /\S/, 'the page shows why');
  });

  test('an avatar upload with an expired token re-logs in and uploads once more', async () => {
    const user = uniqueUser('uprel');
    const client = await launchedWithBadToken(user, (good) =>
      resignToken(good, ctx.stack.server.jwtSecret, { exp: now() - 3600 }));
    const page = client.openPage();
    await page.loaded; // this re-logs in; spoil the new token again for the upload
    client.wx.setStorageSync('token', resignToken(client.wx.getStorageSync('token'),
      ctx.stack.server.jwtSecret, { exp: now() - 3600 }));
    client.wx.removeStorageSync('refresh_token'); // the re-login path, as above
    client.sim.calls.login = 0;

    const file = await writeTempFile(ctx, `${user}.png`, png({ rgba: [1, 2, 3, 128] }));
    await page.onChooseAvatar(event('chooseavatar', { avatarUrl: file }));
    assert.equal(client.sim.calls.login, 1, 'exactly one wx.login');
    assert.deepEqual(client.sim.exchanges().slice(-3), [
      'POST /api/me/avatar 401',
      'POST /api/wxuser 200',
      'POST /api/me/avatar 200'
    ]);
    assert.deepEqual(client.sim.toasts(), []);
    assert.match(page.data.user.avatarUrl, /\/avatars\/[0-9a-f]{64}\.png$/);
  });
});
