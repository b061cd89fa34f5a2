// What the client test files share: one stack per backend, a simulated user, direct API calls.
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launch } from './miniprogram.mjs';
import { REPO_ROOT, backends, cleanupOnAbort, fetchWithTimeout, startStack } from './servers.mjs';
import { startStubServer } from './stub.mjs';
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
 * once `before` has run. `moderation: true` starts the stack with moderation on and the mock
 * pushing its verdicts to wxlogin (see startStack); `env` and `mockEnv` add to wxlogin's and the
 * mock's environment.
 */
export async function forEachBackend(title, body, { env, moderation, mockEnv } = {}) {
  for (const backend of await backends()) {
    describe(`${title} [${backend.name}]`, { skip: backend.skip || false, timeout: SUITE_TIMEOUT_MS }, () => {
      const ctx = { backend: backend.name, stack: null, dir: null };
      let cancelCleanup = () => {};
      before(async () => {
        ctx.dir = await mkdtemp(path.join(os.tmpdir(), 'wxlogin-client-'));
        const dir = ctx.dir;
        cancelCleanup = cleanupOnAbort(() => rmSync(dir, { recursive: true, force: true }));
        ctx.stack = await startStack(backend, { env, moderation, mockEnv });
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

/**
 * Whether the wxlogin in this tree serves sessions (issue 11: refresh tokens, logout): its router
 * names /api/token/refresh. Asked of the source, not of the running server, so that a server
 * that should have them and answers wrong fails the session tests instead of skipping them.
 */
export function serverHasSessions() {
  return serverSourceHas('http', '"/api/token/refresh"');
}

/** Whether a `.rs` file under src/`dir` of this tree contains `literal`. */
function serverSourceHas(dir, literal) {
  const root = path.join(REPO_ROOT, 'src', dir);
  return readdirSync(root, { recursive: true })
    .filter((f) => String(f).endsWith('.rs'))
    .some((f) => readFileSync(path.join(root, String(f)), 'utf8').includes(literal));
}

/**
 * What of issue 12 this tree's server has, asked of the source like serverHasSessions():
 * `deletion` (POST/GET/DELETE /api/me/deletion), `logins` (GET /api/me/logins), `admin` (the
 * `wxlogin admin user disable` command the disabled-account test needs).
 */
export function serverAccountFeatures() {
  return {
    deletion: serverSourceHas('http', '"/api/me/deletion"'),
    logins: serverSourceHas('http', '"/api/me/logins"'),
    admin: existsSync(path.join(REPO_ROOT, 'src', 'admin.rs')) &&
      readFileSync(path.join(REPO_ROOT, 'src', 'admin.rs'), 'utf8').includes('"disable"')
  };
}

/**
 * The stub (support/stub.mjs) dressed as a stack: it plays both mock-wechat (login codes) and
 * wxlogin (the session endpoints), so startClient() and the helpers take it as they take the
 * real one.
 */
async function startStubStack(options) {
  const stub = await startStubServer(options);
  return {
    backend: 'stub',
    stub,
    mock: { base: stub.url },
    server: { url: stub.url, jwtSecret: null, logs: () => `(stub) exchanges: ${stub.log()}` },
    stop: () => stub.stop()
  };
}

/**
 * Defines the session suites: `describe(title [stub])`, always run, against the stub server; then
 * `describe(title [sqlite|mariadb])` against the real wxlogin, run when this tree's server has
 * sessions (serverHasSessions()) and skipped, saying so, until then. `ctx.real` tells which;
 * a test that only the stub can drive (it needs a switch the real server does not have) skips
 * itself with `stubOnly(ctx)`.
 */
export async function forEachSessionTarget(title, body) {
  await forEachContractTarget(title, {
    present: serverHasSessions(),
    missing: 'session endpoints (issue 11): src/http has no /api/token/refresh route yet'
  }, body);
}

/**
 * Defines `describe(title [stub])`, always run, against the stub server (started with `stub`
 * options); then `describe(title [sqlite|mariadb])` against the real wxlogin (with `env` added
 * to its environment) when `present`, and a loud skip naming what is `missing` otherwise.
 */
export async function forEachContractTarget(title, { present, missing, stub = {}, env = {} }, body) {
  describe(`${title} [stub]`, { timeout: SUITE_TIMEOUT_MS }, () => {
    const ctx = { backend: 'stub', real: false, stack: null };
    before(async () => {
      ctx.stack = await startStubStack(stub);
    }, { timeout: HOOK_TIMEOUT_MS });
    after(async () => {
      await ctx.stack?.stop();
    }, { timeout: HOOK_TIMEOUT_MS });
    body(ctx);
  });
  if (present) {
    await forEachBackend(title, (ctx) => {
      ctx.real = true;
      body(ctx);
    }, { env });
  } else {
    // Loudly, as for MariaDB: a skipped real-server run must not pass for a run.
    process.stderr.write(
      `\n!!!!!!!! SKIPPED: "${title}" against the real wxlogin: this tree's server has no ` +
        `${missing}; the stub runs it. !!!!!!!!\n\n`
    );
    describe(`${title} [real wxlogin]`, { skip: `SKIPPED: needs the server's ${missing}` }, () => {});
  }
}

/** The skip reason of a test only the stub can drive, for `test(name, { skip: stubOnly(ctx) }, …)`. */
export function stubOnly(ctx) {
  return ctx.real ? 'stub only: needs a switch the real server does not have' : false;
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
