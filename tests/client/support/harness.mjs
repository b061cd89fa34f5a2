// What the client test files share: one stack per backend, a simulated user, direct API calls.
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launch } from './miniprogram.mjs';
import { backends, cleanupOnAbort, fetchWithTimeout, startStack } from './servers.mjs';
import { createWx } from './wx.mjs';

// Bounds on top of the per-call timeouts, so that nothing can hang a run.
const SUITE_TIMEOUT_MS = 120_000;
const HOOK_TIMEOUT_MS = 60_000;

/** A user name mock-wechat accepts (1–32 of A-Z a-z 0-9 _), new for every call. */
export function uniqueUser(prefix = 'u') {
  return `${prefix}_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`.slice(0, 32);
}

/**
 * Defines `describe(title [backend])` once per backend, each with its own database,
 * mock-wechat and wxlogin (started in `before`, stopped in `after`), and a temporary
 * directory for files. `body(ctx)` defines the tests; `ctx.stack` and `ctx.dir` are set
 * once `before` has run.
 */
export async function forEachBackend(title, body) {
  for (const backend of await backends()) {
    describe(`${title} [${backend.name}]`, { skip: backend.skip || false, timeout: SUITE_TIMEOUT_MS }, () => {
      const ctx = { backend: backend.name, stack: null, dir: null };
      let cancelCleanup = () => {};
      before(async () => {
        ctx.dir = await mkdtemp(path.join(os.tmpdir(), 'wxlogin-client-'));
        const dir = ctx.dir;
        cancelCleanup = cleanupOnAbort(() => rmSync(dir, { recursive: true, force: true }));
        ctx.stack = await startStack(backend);
      }, { timeout: HOOK_TIMEOUT_MS });
      after(async () => {
        await ctx.stack?.stop();
        if (ctx.dir) {
          cancelCleanup();
          await rm(ctx.dir, { recursive: true, force: true });
        }
      }, { timeout: HOOK_TIMEOUT_MS });
      body(ctx);
    });
  }
}

/** Writes `bytes` to a file named `name` in the test's directory; returns its path. */
export async function writeTempFile(ctx, name, bytes) {
  const file = path.join(ctx.dir, name);
  await writeFile(file, bytes);
  return file;
}

/**
 * A user opening the mini-program: a simulated wx for `user`, then app launch (the silent login
 * runs). `launchApp: false` only prepares wx, for tests that seed storage first.
 */
export function startClient(stack, user, { launchApp = true } = {}) {
  const { wx, sim } = createWx({ mockBase: stack.mock.base, user });
  const client = { wx, sim, user, app: null, openPage: null, logs: null };
  client.launch = () => {
    const run = launch({ wx, baseUrl: stack.server.url });
    Object.assign(client, run);
    return run.app;
  };
  if (launchApp) {
    client.launch();
  }
  return client;
}

/** A plain HTTP call; answers {status, headers, text, json, bytes}. */
export async function http(url, { method = 'GET', headers = {}, body } = {}) {
  const res = await fetchWithTimeout(url, { method, headers, body });
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json, bytes };
}

/** Asserts an HTTP status, showing the answer and the server's recent log when it differs. */
export function expectStatus(res, status, stack, what = '') {
  if (res.status !== status) {
    assert.fail(
      `${what} expected HTTP ${status}, got ${res.status}: ${res.text?.slice(0, 500)}\n` +
        `--- wxlogin log ---\n${stack.server.logs(30)}`
    );
  }
}

/**
 * GETs an uploaded avatar. The server stores every upload re-encoded (JPEG, or PNG when some
 * pixel is transparent), so the URL must name the SHA-256 of the bytes served, not of the
 * bytes uploaded, with the extension and Content-Type of their type.
 */
export async function fetchAvatar(stack, url) {
  const served = await http(url);
  expectStatus(served, 200, stack, `GET ${url}`);
  const ext = url.split('.').pop();
  const hash = createHash('sha256').update(served.bytes).digest('hex');
  assert.equal(url, `${stack.server.url}/avatars/${hash}.${ext}`, 'named by the bytes served');
  assert.equal(served.headers.get('content-type'), { jpg: 'image/jpeg', png: 'image/png' }[ext]);
  return served;
}

/** GET /api/me with `token` ("Bearer …"), straight to the server. */
export async function getMe(stack, token) {
  const res = await http(`${stack.server.url}/api/me`, { headers: { Authorization: token } });
  expectStatus(res, 200, stack, 'GET /api/me');
  return res.json.user;
}

/** A fresh one-time phone code from mock-wechat (what the getPhoneNumber button hands over). */
export async function phoneCode(stack, user, phone) {
  const res = await http(
    `${stack.mock.base}/mock/phone_code?user=${encodeURIComponent(user)}&phone=${encodeURIComponent(phone)}`
  );
  assert.equal(res.status, 200, `mock-wechat /mock/phone_code: ${res.text}`);
  return res.text.trim();
}

/** Logs `user` in straight at the server (no mini-program); answers the "Bearer …" token. */
export async function loginDirect(stack, user) {
  const code = (await http(`${stack.mock.base}/mock/code?user=${encodeURIComponent(user)}`)).text.trim();
  const res = await http(`${stack.server.url}/api/wxuser`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code })
  });
  expectStatus(res, 200, stack, 'POST /api/wxuser');
  return res.json.token;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * Re-signs the claims of `token` ("Bearer …") with `changes` applied, with `secret` (HS256,
 * as wxlogin signs). With the server's JWT_SECRET and an `exp` in the past, this is exactly
 * what an expired token looks like.
 */
export function resignToken(token, secret, changes) {
  const [header, payload] = token.replace(/^Bearer /, '').split('.');
  const claims = { ...JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')), ...changes };
  const signingInput = `${header}.${b64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', Buffer.from(secret, 'utf8')).update(signingInput).digest();
  return `Bearer ${signingInput}.${b64url(signature)}`;
}

export { test };
