// A user's whole visit, driven through the mini-program's own code (miniprogram/app.js and
// pages/index/index.js) against the real wxlogin and mock-wechat: silent login, profile,
// avatar, nickname, phone number. What the server stored is then checked behind the
// mini-program's back, with GET /api/me and the token it kept.
import assert from 'node:assert/strict';
import { event } from './support/miniprogram.mjs';
import {
  expectStatus, fetchAvatar, forEachBackend, getMe, http, loginDirect, phoneCode, startClient, test, uniqueUser, writeTempFile
} from './support/harness.mjs';
import { jpeg, png } from './support/images.mjs';

await forEachBackend('mini-program journey', (ctx) => {
  test('launch logs in silently and the page shows the stored profile', async () => {
    const client = startClient(ctx.stack, uniqueUser('launch'));
    await client.app.loginReady;
    const token = client.wx.getStorageSync('token');
    assert.match(token, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'app.js stored the token');

    const page = client.openPage();
    assert.equal(page.data.loading, true, 'the page says it is loading until /api/me answers');
    await page.loaded;
    const stored = await getMe(ctx.stack, token);
    assert.equal(page.data.loading, false);
    assert.equal(page.data.error, '');
    assert.deepEqual(page.data.user, stored);
    assert.match(stored.openid, /\S/);
    assert.equal(stored.nickName, null, 'a silent login stores no profile');
    assert.equal(client.sim.calls.login, 1, 'one wx.login for launch and page together');
    assert.deepEqual(client.sim.exchanges(), ['POST /api/wxuser 200', 'GET /api/me 200']);
    assert.deepEqual(client.logs, [], 'nothing logged by the mini-program');
    assert.deepEqual(page.warnings, []);
  });

  test('avatar, nickname and phone number end up stored on the server', async () => {
    const user = uniqueUser('journey');
    const client = startClient(ctx.stack, user);
    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.error, '', 'profile loaded');

    // <button open-type="chooseAvatar">: WeChat hands over a temporary file.
    const avatar = png();
    const avatarPath = await writeTempFile(ctx, `tmp_${user}.png`, avatar);
    await page.onChooseAvatar(event('chooseavatar', { avatarUrl: avatarPath }));
    assert.deepEqual(client.sim.toasts(), [], `no error shown; exchanges: ${client.sim.exchanges()}`);
    const upload = client.sim.calls.uploadFile[0];
    assert.equal(upload.headers.authorization, client.wx.getStorageSync('token'));
    assert.match(upload.headers['content-type'], /^multipart\/form-data; boundary=/);

    // <input type="nickname">: blur and confirm both fire with the same value: one PUT.
    await page.onNickname(event('blur', { value: '  小明 😀 ' }));
    await page.onNickname(event('confirm', { value: '小明 😀' }));
    assert.deepEqual(client.sim.toasts(), [], `no error shown; exchanges: ${client.sim.exchanges()}`);
    const puts = client.sim.calls.request.filter((r) => r.method === 'PUT');
    assert.equal(puts.length, 1, 'the same nickname is sent once');
    assert.deepEqual(JSON.parse(puts[0].body), { nickName: '小明 😀' }, 'sent trimmed, as JSON');

    // <button open-type="getPhoneNumber">: e.detail.code, traded by the server.
    const code = await phoneCode(ctx.stack, user, '13800138000');
    await page.onGetPhoneNumber(event('getphonenumber', { errMsg: 'getPhoneNumber:ok', code }));
    assert.deepEqual(client.sim.toasts(), [], `no error shown; exchanges: ${client.sim.exchanges()}`);

    // What the server has now, asked directly with the token the mini-program kept.
    const stored = await getMe(ctx.stack, client.wx.getStorageSync('token'));
    assert.equal(stored.nickName, '小明 😀');
    assert.equal(stored.phoneNumber, '13800138000');
    assert.equal(stored.purePhoneNumber, '13800138000');
    assert.equal(stored.countryCode, '86');
    assert.match(stored.avatarUrl, new RegExp(`^${ctx.stack.server.url}/avatars/[0-9a-f]{64}\\.jpg$`), 'opaque: a JPEG');

    // The page shows the same.
    assert.equal(page.data.user.nickName, '小明 😀');
    assert.equal(page.data.user.avatarUrl, stored.avatarUrl);
    assert.equal(page.data.user.phoneNumber, '13800138000');

    // The avatar URL serves the image re-encoded, named by its bytes, cacheable for ever.
    const image = await fetchAvatar(ctx.stack, stored.avatarUrl);
    assert.ok(!image.bytes.equals(avatar), 'stored re-encoded, not as uploaded');
    assert.match(image.headers.get('cache-control') || '', /immutable/);
    const etag = image.headers.get('etag');
    assert.ok(etag, 'an ETag');
    const again = await http(stored.avatarUrl, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, 'revalidation with the ETag: 304');

    assert.equal(client.sim.calls.login, 1, 'no login beyond the silent one');
    assert.ok(!client.sim.exchanges().some((e) => e.endsWith(' 401')), `${client.sim.exchanges()}`);
  });

  test('a JPEG avatar is stored as a JPEG', async () => {
    const user = uniqueUser('jpeg');
    const client = startClient(ctx.stack, user);
    const page = client.openPage();
    await page.loaded;
    const photo = jpeg();
    await page.onChooseAvatar(event('chooseavatar', { avatarUrl: await writeTempFile(ctx, `${user}.jpeg`, photo) }));
    assert.deepEqual(client.sim.toasts(), [], `no error shown; exchanges: ${client.sim.exchanges()}`);
    const stored = await getMe(ctx.stack, client.wx.getStorageSync('token'));
    assert.match(stored.avatarUrl, /\.jpg$/);
    await fetchAvatar(ctx.stack, stored.avatarUrl);
  });

  test('a refused nickname shows the server message and changes nothing', async () => {
    const client = startClient(ctx.stack, uniqueUser('nick'));
    const page = client.openPage();
    await page.loaded;

    await page.onNickname(event('blur', { value: '😀'.repeat(64) }));
    assert.deepEqual(client.sim.toasts(), [], 'the longest allowed name, in emoji (4 bytes each)');
    assert.equal(page.data.user.nickName, '😀'.repeat(64));

    await page.onNickname(event('blur', { value: '😀'.repeat(65) }));
    const toasts = client.sim.toasts();
    assert.equal(toasts.length, 1, `one error shown; exchanges: ${client.sim.exchanges()}`);
    assert.ok(toasts[0] && !/^server answered/.test(toasts[0]), `the server's own message: ${toasts[0]}`);
    assert.deepEqual(client.sim.exchanges().slice(-1), ['PUT /api/me 400']);
    const stored = await getMe(ctx.stack, client.wx.getStorageSync('token'));
    assert.equal(stored.nickName, '😀'.repeat(64), 'the stored name is kept');

    // Blank input is not sent at all.
    const before = client.sim.calls.request.length;
    await page.onNickname(event('blur', { value: '   ' }));
    assert.equal(client.sim.calls.request.length, before);
  });

  test('getPhoneNumber: a declined prompt sends nothing, a used code shows the error', async () => {
    const user = uniqueUser('phone');
    const client = startClient(ctx.stack, user);
    const page = client.openPage();
    await page.loaded;
    const requests = client.sim.calls.request.length;

    await page.onGetPhoneNumber(event('getphonenumber', { errMsg: 'getPhoneNumber:fail user deny' }));
    assert.equal(client.sim.calls.request.length, requests, 'no request when the user declines');
    assert.deepEqual(client.sim.toasts(), [], 'declining is not an error');

    const code = await phoneCode(ctx.stack, user, '13900139000');
    await page.onGetPhoneNumber(event('getphonenumber', { errMsg: 'getPhoneNumber:ok', code }));
    assert.equal(page.data.user.phoneNumber, '13900139000');
    await page.onGetPhoneNumber(event('getphonenumber', { errMsg: 'getPhoneNumber:ok', code }));
    assert.deepEqual(client.sim.exchanges().slice(-1), ['POST /api/phone 400']);
    assert.equal(client.sim.toasts().length, 1, 'the used code is reported');
    assert.equal(page.data.user.phoneNumber, '13900139000', 'the number stays');
  });

  test('changing the nickname keeps the gender and the avatar', async () => {
    const user = uniqueUser('keep');
    // An older client version sent WeChat's signed profile (gender 2) with its login.
    await loginDirect(ctx.stack, user);
    const openData = await http(`${ctx.stack.mock.base}/mock/userinfo?user=${user}&nickName=Old&gender=2&format=form`);
    assert.equal(openData.status, 200, openData.text);
    const code = (await http(`${ctx.stack.mock.base}/mock/code?user=${user}`)).text.trim();
    const legacy = await http(`${ctx.stack.server.url}/api/wxuser`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `${openData.text}&code=${encodeURIComponent(code)}`
    });
    expectStatus(legacy, 200, ctx.stack, 'legacy login with profile');
    assert.equal(legacy.json.profile.status, 'verified');

    const client = startClient(ctx.stack, user);
    const page = client.openPage();
    await page.loaded;
    assert.equal(page.data.user.gender, 2);
    await page.onChooseAvatar(event('chooseavatar', { avatarUrl: await writeTempFile(ctx, `${user}.png`, png({ rgba: [4, 5, 6, 128] })) }));
    await page.onNickname(event('blur', { value: 'New' }));
    assert.deepEqual(client.sim.toasts(), [], `no error shown; exchanges: ${client.sim.exchanges()}`);
    const stored = await getMe(ctx.stack, client.wx.getStorageSync('token'));
    assert.equal(stored.nickName, 'New');
    assert.equal(stored.gender, 2, 'the nickname update sends no gender and keeps it');
    assert.match(stored.avatarUrl, /\/avatars\/[0-9a-f]{64}\.png$/, 'the uploaded avatar is kept');
  });

  test('a second launch finds the profile saved before', async () => {
    const user = uniqueUser('again');
    const first = startClient(ctx.stack, user);
    const page1 = first.openPage();
    await page1.loaded;
    await page1.onNickname(event('confirm', { value: 'Alice 🌸' }));

    const second = startClient(ctx.stack, user); // a new run of the mini-program, new storage
    const page2 = second.openPage();
    await page2.loaded;
    assert.equal(page2.data.user.nickName, 'Alice 🌸');
    assert.equal(page2.data.user.openid, page1.data.user.openid, 'the same WeChat user');
  });
});
