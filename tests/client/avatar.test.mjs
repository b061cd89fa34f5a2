// POST /api/me/avatar through the real server, with multipart bodies as wx.uploadFile sends
// them: what is accepted (by the bytes, not the name), the size limit to the byte, the errors,
// and how the page reports a refusal. Uploads are stored re-encoded (JPEG, or PNG when a pixel
// is transparent): URLs name the bytes served (tests/api/images.rs covers the decoding).
import assert from 'node:assert/strict';
import { event } from './support/miniprogram.mjs';
import {
  expectStatus, fetchAvatar, forEachBackend, getMe, http, loginDirect, startClient, test, uniqueUser, writeTempFile
} from './support/harness.mjs';
import { gif, jpeg, png, webp } from './support/images.mjs';
import { buildMultipart } from './support/wx.mjs';

const MAX_BYTES = 2 * 1024 * 1024;

await forEachBackend('avatar upload', (ctx) => {
  /** Uploads `bytes` as wx.uploadFile would (field `file`), straight to the server. */
  async function upload(token, bytes, { filename = 'tmp_avatar.png', contentType = 'image/png', field = 'file', fields } = {}) {
    const files = bytes === null ? [] : [{ name: field, filename, contentType, bytes }];
    const multipart = buildMultipart({ fields, files });
    const headers = { 'content-type': multipart.contentType };
    if (token) {
      headers.authorization = token;
    }
    return http(`${ctx.stack.server.url}/api/me/avatar`, { method: 'POST', headers, body: multipart.body });
  }

  let token;
  const user = uniqueUser('avatar');
  const ready = async () => {
    token ??= await loginDirect(ctx.stack, user);
    return token;
  };

  test('a file of exactly 2 MiB is accepted, one byte more is 413', async () => {
    const t = await ready();
    const largest = png({ size: MAX_BYTES });
    const ok = await upload(t, largest);
    expectStatus(ok, 200, ctx.stack, '2 MiB avatar');
    const served = await fetchAvatar(ctx.stack, ok.json.user.avatarUrl);
    assert.ok(served.bytes.length < 1024, 'the padding after the pixels is not stored');

    const tooBig = await upload(t, png({ size: MAX_BYTES + 1 }));
    expectStatus(tooBig, 413, ctx.stack, '2 MiB + 1 byte avatar');
    assert.equal(tooBig.json?.status, 413, `error body: ${tooBig.text}`);
    assert.equal(typeof tooBig.json?.message, 'string');
    assert.equal((await getMe(ctx.stack, t)).avatarUrl, ok.json.user.avatarUrl, 'the stored avatar is kept');
  });

  test('a text file is 415, even named .png and labelled image/png', async () => {
    const res = await upload(await ready(), Buffer.from('hello, this is not an image\n'));
    expectStatus(res, 415, ctx.stack, 'text avatar');
    assert.equal(res.json?.status, 415, `error body: ${res.text}`);
  });

  test('the bytes decide the type, not the file name or part Content-Type', async () => {
    const image = png({ rgba: [9, 9, 9, 128] });
    const res = await upload(await ready(), image, { filename: 'photo.txt', contentType: 'application/octet-stream' });
    expectStatus(res, 200, ctx.stack, 'PNG named .txt');
    assert.match(res.json.user.avatarUrl, /\/avatars\/[0-9a-f]{64}\.png$/, 'translucent: kept a PNG');
    await fetchAvatar(ctx.stack, res.json.user.avatarUrl);
  });

  test('JPEG, GIF and WebP are accepted and served re-encoded', async () => {
    for (const [bytes, ext, type] of [[jpeg(), 'jpeg', 'image/jpeg'], [gif(), 'gif', 'image/gif'], [webp(), 'webp', 'image/webp']]) {
      const res = await upload(await ready(), bytes, { filename: `a.${ext}`, contentType: type });
      expectStatus(res, 200, ctx.stack, `${ext} avatar`);
      const served = await fetchAvatar(ctx.stack, res.json.user.avatarUrl);
      assert.ok(!served.bytes.equals(bytes), `${ext}: the upload is not served as it came`);
    }
  });

  test('no file part is 400; a file under another field name is 400', async () => {
    const t = await ready();
    const none = await upload(t, null, { fields: { note: 'no file here' } });
    expectStatus(none, 400, ctx.stack, 'multipart without a file');
    assert.equal(none.json?.status, 400, `error body: ${none.text}`);
    const elsewhere = await upload(t, png(), { field: 'avatar' });
    expectStatus(elsewhere, 400, ctx.stack, 'file under field "avatar"');
  });

  test('without a token: 401', async () => {
    const res = await upload(null, png());
    expectStatus(res, 401, ctx.stack, 'avatar without token');
  });

  test('the same image uploaded twice gives the same URL; another user gets it too', async () => {
    const image = png({ rgba: [200, 100, 50, 255] });
    const first = await upload(await ready(), image);
    const second = await upload(await ready(), image);
    expectStatus(first, 200, ctx.stack, 'first upload');
    expectStatus(second, 200, ctx.stack, 'second upload');
    assert.equal(second.json.user.avatarUrl, first.json.user.avatarUrl);

    const other = await upload(await loginDirect(ctx.stack, uniqueUser('other')), image);
    expectStatus(other, 200, ctx.stack, 'other user upload');
    assert.equal(other.json.user.avatarUrl, first.json.user.avatarUrl, 'content-addressed');
  });

  test('an unknown avatar is 404', async () => {
    const res = await http(`${ctx.stack.server.url}/avatars/${'0'.repeat(64)}.png`);
    expectStatus(res, 404, ctx.stack, 'unknown avatar');
  });

  test('through the page: a refused file shows the server message, the avatar stays', async () => {
    const client = startClient(ctx.stack, uniqueUser('pageavatar'));
    const page = client.openPage();
    await page.loaded;
    const before = page.data.user.avatarUrl;

    await page.onChooseAvatar(event('chooseavatar', { avatarUrl: await writeTempFile(ctx, 'notes.png', 'plain text') }));
    assert.deepEqual(client.sim.exchanges().slice(-1), ['POST /api/me/avatar 415']);
    const toasts = client.sim.toasts();
    assert.equal(toasts.length, 1, 'one message');
    assert.ok(!/^server answered/.test(toasts[0]), `the server's own message: ${toasts[0]}`);
    assert.equal(page.data.user.avatarUrl, before);
    const loading = client.sim.ui.map((u) => u.api).filter((a) => /Loading/.test(a));
    assert.deepEqual(loading, ['showLoading', 'hideLoading'], 'the spinner is hidden again');

    await page.onChooseAvatar(event('chooseavatar', { avatarUrl: await writeTempFile(ctx, 'huge.png', png({ size: MAX_BYTES + 1 })) }));
    assert.deepEqual(client.sim.exchanges().slice(-1), ['POST /api/me/avatar 413']);
    assert.equal(client.sim.toasts().length, 2);
  });
});
