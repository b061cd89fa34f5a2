// Content moderation (issue 13) through the profile page, against the real wxlogin with
// moderation ON and mock-wechat playing WeChat's checks: msg_sec_check for nicknames (risky and
// review words, faults), media_check_async for avatars, whose verdict the mock pushes to
// wxlogin's /wechat/push (startStack wires the push URL and token). What the page must do:
// a refused nickname shows the server's message and keeps the old one, an unavailable check says
// "try again later"; an uploaded avatar is shown marked 审核中 while the old one stays the
// profile's, then becomes the avatar (pass) or is reported refused (risky, review) with the old
// one kept; a check WeChat never answers leaves it pending, and the page stops asking.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { event } from './support/miniprogram.mjs';
import {
  expectStatus, fetchAvatar, forEachBackend, getMe, http, startClient, test, uniqueUser, writeTempFile
} from './support/harness.mjs';
import { png } from './support/images.mjs';
import { buildMultipart } from './support/wx.mjs';

// The uploads one user may make per hour in this suite: above what any test here needs (3), so
// that the 429 test reaches it in a few uploads.
const UPLOADS_PER_HOUR = 3;

await forEachBackend('moderation through the page', (ctx) => {
  /** A POST to one of mock-wechat's /mock/ switches; answers its JSON. */
  async function mock(pathAndQuery) {
    const res = await http(`${ctx.stack.mock.base}${pathAndQuery}`, { method: 'POST' });
    assert.equal(res.status, 200, `mock-wechat ${pathAndQuery}: ${res.text}`);
    return res.json;
  }

  /**
   * A PNG no other test uploads. Verdicts are remembered by the image's hash, so a shared image
   * would be judged by another test's verdict; a translucent pixel keeps it a PNG when the
   * server re-encodes it (lossless: distinct colours stay distinct images).
   */
  async function freshImage(name) {
    const [r, g, b] = randomBytes(3);
    return writeTempFile(ctx, `${name}.png`, png({ rgba: [r, g, b, 200] }));
  }

  /** The user opening the page: a launch (silent login), then the profile loaded. */
  async function openProfile(prefix) {
    const client = startClient(ctx.stack, uniqueUser(prefix));
    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '', `the profile loaded: ${page.data.error}`);
    return { client, page };
  }

  /** Chooses `file` as the avatar on `page` and asserts the upload's answer status. */
  async function chooseAvatar(client, page, file, status) {
    await page.onChooseAvatar(event('chooseavatar', { avatarUrl: file }));
    assert.deepEqual(client.sim.exchanges().slice(-1), [`POST /api/me/avatar ${status}`],
      `upload answer: ${JSON.stringify(client.sim.lastAnswer('POST /api/me/avatar'))}\n${ctx.stack.server.logs(20)}`);
  }

  /** GET /api/me polls the page made since exchange number `from`. */
  function polls(client, from) {
    return client.sim.exchanges().slice(from).filter((e) => e.startsWith('GET /api/me ')).length;
  }

  /** An avatar that passed, as the page's user's current one: its URL. */
  async function activeAvatar(client, page) {
    await chooseAvatar(client, page, await freshImage('first'), 202);
    await page.avatarWatch;
    assert.equal(page.data.user.avatarState, 'active', 'the first avatar passed');
    return page.data.user.avatarUrl;
  }

  async function typeNickname(page, value) {
    await page.onNickname(event('blur', { value }));
  }

  test('nickname: a name that passes is stored', async () => {
    const { client, page } = await openProfile('nickpass');
    await typeNickname(page, '小明 😀');
    assert.deepEqual(client.sim.exchanges().slice(-1), ['PUT /api/me 200']);
    assert.equal(page.data.user.nickName, '小明 😀');
    assert.equal((await getMe(ctx.stack, client.sim.storage.get('token'))).nickName, '小明 😀');
  });

  test('nickname: a risky name shows the server message, keeps the old name, is not sent twice', async () => {
    const { client, page } = await openProfile('nickrisky');
    await typeNickname(page, 'Alice');
    assert.equal(page.data.user.nickName, 'Alice');

    await typeNickname(page, '一起来赌博'); // 赌博 is one of the mock's default risky words
    assert.deepEqual(client.sim.exchanges().slice(-1), ['PUT /api/me 422']);
    const answer = client.sim.lastAnswer('PUT /api/me');
    assert.equal(answer.status, 422);
    assert.equal(typeof answer.label, 'number', `WeChat's category: ${JSON.stringify(answer)}`);
    assert.deepEqual(client.sim.toasts(), [answer.message], "the server's own message, once");
    assert.equal(page.data.user.nickName, 'Alice', 'the input goes back to the stored name');
    assert.equal((await getMe(ctx.stack, client.sim.storage.get('token'))).nickName, 'Alice');

    // The input's confirm and blur both fire: the refused name is not asked about again.
    const sent = client.sim.exchanges().length;
    await page.onNickname(event('confirm', { value: '一起来赌博' }));
    assert.equal(client.sim.exchanges().length, sent, 'no second PUT for the same refused name');
  });

  test('nickname: a name WeChat wants reviewed is refused (default policy) and shown so', async () => {
    const { client, page } = await openProfile('nickreview');
    await typeNickname(page, 'Bob');
    await typeNickname(page, 'please review-me'); // the mock's default review word
    assert.deepEqual(client.sim.exchanges().slice(-1), ['PUT /api/me 422']);
    assert.deepEqual(client.sim.toasts(), [client.sim.lastAnswer('PUT /api/me').message]);
    assert.equal(page.data.user.nickName, 'Bob');
    assert.equal((await getMe(ctx.stack, client.sim.storage.get('token'))).nickName, 'Bob');
  });

  test('nickname: a check that times out or fails is 503, shown as "try later"; the retry works', async () => {
    const { client, page } = await openProfile('nickdown');
    await typeNickname(page, 'Carol');
    try {
      // Slower than the server's WECHAT_TIMEOUT (1s in this suite): the check times out.
      await mock('/mock/msg_sec_check?fault=slow.3000');
      await typeNickname(page, 'Carol 2');
      assert.deepEqual(client.sim.exchanges().slice(-1), ['PUT /api/me 503']);
      // WeChat answering an error (system busy) is the same to the user.
      await mock('/mock/msg_sec_check?fault=fail.-1');
      await typeNickname(page, 'Carol 3');
      assert.deepEqual(client.sim.exchanges().slice(-1), ['PUT /api/me 503']);
    } finally {
      await mock('/mock/msg_sec_check?fault=none');
    }
    const toasts = client.sim.toasts();
    assert.equal(toasts.length, 2);
    for (const toast of toasts) {
      assert.match(toast, /稍后再试/, 'the page asks to try again later');
    }
    assert.equal(page.data.user.nickName, 'Carol', 'nothing changed');
    assert.equal((await getMe(ctx.stack, client.sim.storage.get('token'))).nickName, 'Carol');

    // Unlike a refusal, an unavailable check does not rule the name out: sent again, it passes.
    await typeNickname(page, 'Carol 2');
    assert.deepEqual(client.sim.exchanges().slice(-1), ['PUT /api/me 200']);
    assert.equal(page.data.user.nickName, 'Carol 2');
  });

  test('avatar: pass — shown 审核中 while the old one stays, then the new one', async () => {
    const { client, page } = await openProfile('avpass');
    const before = page.data.user.avatarUrl;
    const file = await freshImage('pass');
    await chooseAvatar(client, page, file, 202);
    assert.equal(page.data.avatarStatus, 'pending', 'the page says 审核中');
    assert.equal(page.data.avatarPreview, file, 'the chosen image is shown meanwhile');
    assert.equal(page.data.user.avatarUrl, before, 'the profile keeps the old avatar');
    assert.equal(page.data.user.avatarState, 'pending');
    assert.ok(page.avatarWatch, 'the page watches for the verdict');

    const since = client.sim.exchanges().length;
    await page.avatarWatch;
    assert.ok(polls(client, since) >= 1 && polls(client, since) <= page.avatarPollDelays.length, 'bounded polling');
    assert.equal(page.data.avatarStatus, '');
    assert.equal(page.data.avatarPreview, '');
    assert.equal(page.data.user.avatarState, 'active');
    assert.match(page.data.user.avatarUrl, /\/avatars\/[0-9a-f]{64}\.png$/);
    assert.ok(client.sim.toasts().includes('头像已更新'), `toasts: ${client.sim.toasts()}`);
    await fetchAvatar(ctx.stack, page.data.user.avatarUrl);
    const stored = await getMe(ctx.stack, client.sim.storage.get('token'));
    assert.equal(stored.avatarUrl, page.data.user.avatarUrl);
  });

  test('avatar: risky — refused, the old avatar stays; the same image again is 422 at once', async () => {
    const { client, page } = await openProfile('avrisky');
    const old = await activeAvatar(client, page);

    await mock(`/mock/media_check?user=${client.user}&suggest=risky`);
    const file = await freshImage('risky');
    await chooseAvatar(client, page, file, 202);
    assert.equal(page.data.avatarStatus, 'pending');
    assert.equal(page.data.avatarPreview, file);
    assert.equal(page.data.user.avatarUrl, old);

    await page.avatarWatch;
    assert.equal(page.data.avatarStatus, 'rejected', 'the page says the image was refused');
    assert.equal(page.data.avatarPreview, '', 'the refused image is no longer shown');
    assert.equal(page.data.user.avatarUrl, old, 'the old avatar stays');
    assert.ok(client.sim.toasts().some((t) => /未通过审核/.test(t)), `toasts: ${client.sim.toasts()}`);
    const stored = await getMe(ctx.stack, client.sim.storage.get('token'));
    assert.equal(stored.avatarState, 'rejected');
    assert.equal(stored.avatarUrl, old);

    // The verdict is remembered by the image: the server refuses it at upload, with its message.
    const toasts = client.sim.toasts().length;
    await chooseAvatar(client, page, file, 422);
    assert.deepEqual(client.sim.toasts().slice(toasts), [client.sim.lastAnswer('POST /api/me/avatar').message]);
    assert.equal(page.data.user.avatarUrl, old);

    // Told once: a later page show does not announce the old refusal again.
    const again = client.openPage();
    await again.loaded;
    assert.equal(again.data.avatarStatus, '');
    assert.equal(again.data.user.avatarUrl, old);
  });

  test('avatar: an image WeChat wants reviewed is refused (default policy)', async () => {
    const { client, page } = await openProfile('avreview');
    const before = page.data.user.avatarUrl;
    await mock(`/mock/media_check?user=${client.user}&suggest=review`);
    await chooseAvatar(client, page, await freshImage('review'), 202);
    assert.equal(page.data.avatarStatus, 'pending');
    await page.avatarWatch;
    assert.equal(page.data.avatarStatus, 'rejected');
    assert.equal(page.data.user.avatarUrl, before);
    assert.equal((await getMe(ctx.stack, client.sim.storage.get('token'))).avatarState, 'rejected');
  });

  test('avatar: WeChat never answers — the page stops asking and still says 审核中, also on the next show', async () => {
    const { client, page } = await openProfile('avtimeout');
    const before = page.data.user.avatarUrl;
    await mock(`/mock/media_check?user=${client.user}&suggest=timeout`);
    // The bound is what this test checks, not its length: the page's own schedule (30 s in all)
    // would only make the run longer.
    page.avatarPollDelays = [50, 100, 200];
    const file = await freshImage('timeout');
    await chooseAvatar(client, page, file, 202);
    const since = client.sim.exchanges().length;
    await page.avatarWatch;
    assert.equal(polls(client, since), 3, 'one GET /api/me per delay, then no more');
    assert.equal(page.avatarWatch, null, 'the watch is over');
    assert.equal(page.data.avatarStatus, 'pending', 'still 审核中');
    assert.equal(page.data.avatarPreview, file);
    assert.equal(page.data.user.avatarUrl, before);
    const stored = await getMe(ctx.stack, client.sim.storage.get('token'));
    assert.equal(stored.avatarState, 'pending');

    // The next show of the page (the app opened again) learns it from the server.
    const again = client.openPage();
    await again.loaded;
    assert.equal(again.data.avatarStatus, 'pending');
    assert.equal(again.data.user.avatarUrl, before);
    again.onUnload(); // leaving the page ends its watch (after its first delay)
    await again.avatarWatch;
  });

  test('avatar: over the upload limit, the server message (429) is shown and nothing changes', async () => {
    const { client, page } = await openProfile('avlimit');
    const token = client.sim.storage.get('token');
    for (let i = 0; i < UPLOADS_PER_HOUR; i++) {
      const multipart = buildMultipart({
        files: [{ name: 'file', filename: 'a.png', contentType: 'image/png', bytes: png({ rgba: [...randomBytes(3), 200] }) }]
      });
      const res = await http(`${ctx.stack.server.url}/api/me/avatar`, {
        method: 'POST', headers: { authorization: token, 'content-type': multipart.contentType }, body: multipart.body
      });
      expectStatus(res, 202, ctx.stack, `upload ${i + 1}`);
    }
    await chooseAvatar(client, page, await freshImage('limit'), 429);
    const answer = client.sim.lastAnswer('POST /api/me/avatar');
    assert.deepEqual(client.sim.toasts(), [answer.message]);
    assert.match(answer.message, /retry/, 'the message says when');
    assert.equal(page.data.avatarPreview, '', 'nothing was uploaded: nothing to preview');
  });
}, { moderation: true, env: { WECHAT_TIMEOUT: '1s', WXLOGIN_AVATAR_UPLOADS_PER_HOUR: String(UPLOADS_PER_HOUR) } });
