// Starts the real binaries (mock-wechat and wxlogin) as child processes for a test file, on
// loopback ports of their own, against SQLite or MariaDB, and stops them again whatever happens.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const MINIPROGRAM_ROOT = path.join(REPO_ROOT, 'miniprogram');

export const APPID = 'wx1234567890abcdef';
const APPSECRET = '0123456789abcdef0123456789abcdef';

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
const HTTP_TIMEOUT_MS = 10_000;
const LOG_LIMIT = 256 * 1024;

function binary(name) {
  const file = path.join(REPO_ROOT, 'target', 'debug', name);
  if (!existsSync(file)) {
    throw new Error(
      `${file} is missing: build it first with \`cargo build --workspace\` ` +
        '(`make test-client` does that for you)'
    );
  }
  return file;
}

// Every child still running, killed when this process exits however it exits.
const live = new Set();
// Synchronous clean-ups (temporary directories, databases) still due, run on an abrupt exit.
const dueCleanups = new Set();

/** Registers `fn` to run (synchronously) if the process ends before `cancel()` is called. */
export function cleanupOnAbort(fn) {
  dueCleanups.add(fn);
  return () => dueCleanups.delete(fn);
}

function killAll() {
  for (const child of live) {
    child.kill('SIGKILL');
  }
  for (const fn of dueCleanups) {
    try {
      fn();
    } catch {
      // best effort: the process is going away
    }
  }
  dueCleanups.clear();
}
process.on('exit', killAll);
// A signal (Ctrl-C, the test runner cancelling this file) skips 'exit' handlers: handle it.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + os.constants.signals[signal]);
  });
}

/** A free loopback port: the OS picks one for a listener we close right away. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const TIMED_OUT = Symbol('timed out');

/** `promise`'s value, or TIMED_OUT after `ms`; the timer never outlives the answer. */
function within(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** fetch with a bound on the whole exchange. */
export async function fetchWithTimeout(url, options = {}) {
  return fetch(url, { ...options, signal: AbortSignal.timeout(options.timeout ?? HTTP_TIMEOUT_MS) });
}

/**
 * A child process whose output is kept (the last LOG_LIMIT characters) for error messages.
 * `ready` resolves with the first match of `readyPattern` in its output, and rejects if the
 * process exits first or nothing matches within STARTUP_TIMEOUT_MS.
 */
class Child {
  constructor(name, file, env, readyPattern) {
    this.name = name;
    this.output = '';
    this.exited = null;
    // A clean environment: nothing from the caller's shell (DATABASE_URL, WXLOGIN_*, …) leaks in.
    this.process = spawn(file, [], {
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    });
    live.add(this.process);
    this.exitedPromise = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        live.delete(this.process);
        this.exited = { code, signal };
        resolve(this.exited);
      });
      this.process.on('error', (err) => {
        live.delete(this.process);
        this.output += `\n[could not run ${file}: ${err.message}]\n`;
        this.exited = { code: null, signal: null, error: err };
        resolve(this.exited);
      });
    });
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${name} did not start within ${STARTUP_TIMEOUT_MS} ms:\n${this.tail()}`));
      }, STARTUP_TIMEOUT_MS);
      const onData = (chunk) => {
        this.output = (this.output + chunk.toString('utf8')).slice(-LOG_LIMIT);
        const match = readyPattern.exec(this.output);
        if (match) {
          clearTimeout(timer);
          resolve(match);
        }
      };
      this.process.stdout.on('data', onData);
      this.process.stderr.on('data', onData);
      this.exitedPromise.then((how) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited during start-up (${JSON.stringify(how)}):\n${this.tail()}`));
      });
    });
    this.ready.catch(() => {}); // observed by start(); avoid an unhandled rejection meanwhile
  }

  /** The last lines of the process's output, for failure messages. */
  tail(lines = 40) {
    return this.output.split('\n').slice(-lines).join('\n');
  }

  /** SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT_MS. */
  async stop() {
    if (this.exited) {
      return;
    }
    this.process.kill('SIGTERM');
    if ((await within(this.exitedPromise, STOP_TIMEOUT_MS)) === TIMED_OUT) {
      this.process.kill('SIGKILL');
      await within(this.exitedPromise, STOP_TIMEOUT_MS);
    }
  }
}

/** Polls GET `${base}/healthz` until it answers 200 (bounded). */
async function waitHealthy(base, child) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (child.exited) {
      throw new Error(`${child.name} exited: ${JSON.stringify(child.exited)}\n${child.tail()}`);
    }
    try {
      const res = await fetchWithTimeout(`${base}/healthz`, { timeout: 1000 });
      await res.arrayBuffer();
      if (res.status === 200) {
        return;
      }
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.message;
    }
    await delay(50);
  }
  throw new Error(`${child.name} at ${base} not healthy within ${STARTUP_TIMEOUT_MS} ms (${last}):\n${child.tail()}`);
}

/** mock-wechat on a port the OS picks (its log line tells us which), with `env` added. */
export async function startMock({ env: extraEnv = {} } = {}) {
  const child = new Child(
    'mock-wechat',
    binary('mock-wechat'),
    { MOCK_WECHAT_BIND: '127.0.0.1:0', RUST_LOG: 'info', ...extraEnv },
    /listening on 127\.0\.0\.1:(\d+)/
  );
  try {
    const match = await child.ready;
    const base = `http://127.0.0.1:${match[1]}`;
    await waitHealthy(base, child);
    return { base, child, stop: () => child.stop() };
  } catch (err) {
    await child.stop();
    throw err;
  }
}

/**
 * wxlogin against `mockBase` and `databaseUrl`. Its public URL (for avatar links) must name its
 * port, so the port is chosen first; if another process takes it meanwhile, try another. A
 * caller that already told someone the port (the mock's push URL) passes it as `port`: then
 * there is one attempt, and a port taken meanwhile is the error (`portInUse` set on it).
 */
export async function startWxlogin({ mockBase, databaseUrl, env: extraEnv = {}, port: fixedPort }) {
  const bin = binary('wxlogin');
  const jwtSecret = randomBytes(32).toString('hex');
  let lastError;
  for (let attempt = 0; attempt < (fixedPort ? 1 : 3); attempt++) {
    const port = fixedPort ?? await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env = {
      WXLOGIN_BIND: `127.0.0.1:${port}`,
      WXLOGIN_PUBLIC_URL: url,
      WXLOGIN_MAX_CONNECTIONS: '64',
      WECHAT_API_BASE: mockBase,
      WECHAT_APPID: APPID,
      WECHAT_SECRET: APPSECRET,
      JWT_SECRET: jwtSecret,
      DATABASE_URL: databaseUrl,
      // "listening on …" is an info line of the binary; the access log shows each request.
      RUST_LOG: 'warn,wxlogin=info',
      // Off unless the stack is started with `moderation: true` (startStack wires the push URL
      // and turns it on through `env`): with it on, every upload is 202 pending until WeChat's
      // verdict, which would change what the upload and journey suites test (a stored URL
      // at once, the same URL for the same image).
      WXLOGIN_MODERATION: 'off',
      ...extraEnv
    };
    const child = new Child(
      'wxlogin',
      bin,
      env,
      // The line proves that *our* process bound the port, not something else that took it.
      new RegExp(`listening on http://127\\.0\\.0\\.1:${port}\\b`)
    );
    try {
      await child.ready;
      await waitHealthy(url, child);
      return {
        url, jwtSecret, child, stop: () => child.stop(), logs: (n) => child.tail(n),
        admin: (args) => runAdmin(bin, env, args)
      };
    } catch (err) {
      await child.stop();
      lastError = err;
      err.portInUse = /in use/i.test(child.output);
      if (!err.portInUse) {
        break;
      }
    }
  }
  throw lastError;
}

const ADMIN_TIMEOUT_MS = 15_000;

/**
 * `wxlogin admin <args…>` with the server's own configuration (the same database), bounded in
 * time. Answers {code, stdout, stderr}; never rejects for a non-zero exit (exit codes mean things).
 */
function runAdmin(bin, env, args) {
  return new Promise((resolve, reject) => {
    execFile(bin, ['admin', ...args], { env: { PATH: process.env.PATH, ...env }, timeout: ADMIN_TIMEOUT_MS },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(new Error(`wxlogin admin ${args.join(' ')}: ${err.message}\n${stderr}`));
          return;
        }
        resolve({ code: err ? err.code : 0, stdout, stderr });
      });
  });
}

// ---------------------------------------------------------------------------------------------
// Databases

/** The MariaDB admin connection: WXLOGIN_TEST_MYSQL_URL, as the Rust suites use it. */
function mysqlAdmin() {
  const raw = process.env.WXLOGIN_TEST_MYSQL_URL || 'mysql://root@127.0.0.1:3306';
  const url = new URL(raw);
  return {
    url: `${url.protocol}//${url.username ? url.username + (url.password ? ':' + url.password : '') + '@' : ''}${url.hostname}:${url.port || 3306}`,
    host: url.hostname,
    port: url.port || '3306',
    user: decodeURIComponent(url.username || 'root'),
    password: decodeURIComponent(url.password || '')
  };
}

function mysqlCliArgs(sql) {
  const admin = mysqlAdmin();
  const args = [
    '--protocol=tcp', `-h${admin.host}`, `-P${admin.port}`, `-u${admin.user}`,
    '--connect-timeout=5', '--batch', '--skip-column-names', '-e', sql
  ];
  const env = { ...process.env };
  if (admin.password) {
    env.MYSQL_PWD = admin.password;
  }
  return { args, env };
}

/** Runs SQL with the `mariadb` command-line client (or `mysql`), bounded in time. */
function mysqlCli(sql) {
  const { args, env } = mysqlCliArgs(sql);
  const run = (cli) =>
    new Promise((resolve, reject) => {
      execFile(cli, args, { env, timeout: 15_000 }, (err, stdout, stderr) => {
        if (err) {
          err.cli = cli;
          err.detail = (stderr || err.message).trim();
          reject(err);
        } else {
          resolve(stdout);
        }
      });
    });
  return run('mariadb').catch((err) => (err.code === 'ENOENT' ? run('mysql') : Promise.reject(err)));
}

let mariadbStatus;

/** Whether MariaDB answers: {ok: true} or {ok: false, reason}. Asked once per test file. */
export function mariadbAvailable() {
  mariadbStatus ??= mysqlCli('SELECT 1').then(
    () => ({ ok: true }),
    (err) => ({
      ok: false,
      reason: err.code === 'ENOENT'
        ? 'neither the mariadb nor the mysql client is installed'
        : `${mysqlAdmin().host}:${mysqlAdmin().port} does not answer (${err.detail})`
    })
  );
  return mariadbStatus;
}

/**
 * The backends to run each suite against. MariaDB is left out, loudly, when it does not
 * answer; under CI=true it stays in with `unavailable` set, and the suite fails.
 */
export async function backends() {
  const list = [{ name: 'sqlite' }];
  const status = await mariadbAvailable();
  if (status.ok) {
    list.push({ name: 'mariadb' });
  } else if (process.env.CI === 'true') {
    list.push({ name: 'mariadb', unavailable: status.reason });
  } else {
    process.stderr.write(
      `\n!!!!!!!! SKIPPED: MariaDB client tests not run: ${status.reason}. ` +
        'Set WXLOGIN_TEST_MYSQL_URL. !!!!!!!!\n\n'
    );
    list.push({ name: 'mariadb', skip: `SKIPPED: MariaDB unreachable: ${status.reason}` });
  }
  return list;
}

async function createDatabase(backend) {
  if (backend.name === 'sqlite') {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'wxlogin-client-db-'));
    const cancel = cleanupOnAbort(() => rmSync(dir, { recursive: true, force: true }));
    return {
      url: `sqlite://${path.join(dir, 'wxlogin.db')}`,
      drop: () => {
        cancel();
        return rm(dir, { recursive: true, force: true });
      }
    };
  }
  if (backend.unavailable) {
    throw new Error(`CI=true requires the MariaDB client tests, but ${backend.unavailable}`);
  }
  const name = `wxlogin_client_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const dropSql = `DROP DATABASE IF EXISTS \`${name}\``;
  const cancel = cleanupOnAbort(() => {
    const { args, env } = mysqlCliArgs(dropSql);
    try {
      execFileSync('mariadb', args, { env, timeout: 5000, stdio: 'ignore' });
    } catch (err) {
      if (err.code !== 'ENOENT') {
        throw err;
      }
      execFileSync('mysql', args, { env, timeout: 5000, stdio: 'ignore' });
    }
  });
  await mysqlCli(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  return {
    url: `${mysqlAdmin().url}/${name}`,
    drop: () => {
      cancel();
      return mysqlCli(dropSql);
    }
  };
}

/**
 * mock-wechat and wxlogin with moderation on, wired as WeChat and a real deployment are: the mock
 * pushes image verdicts to wxlogin's `/wechat/push`, signed with a push token both share. The
 * push URL names wxlogin's port, so that port is chosen before the mock starts; if something
 * takes it before wxlogin binds it, both start again on another one. `mockEnv` and `env` add to
 * the mock's and wxlogin's environment. Answers {mock, server}.
 */
async function startModeratedPair({ databaseUrl, env = {}, mockEnv = {} }) {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // 3–32 letters and digits, as WeChat's console requires; new for every stack.
    const pushToken = randomBytes(12).toString('hex');
    const mock = await startMock({
      env: { MOCK_WECHAT_PUSH_URL: `${url}/wechat/push`, MOCK_WECHAT_PUSH_TOKEN: pushToken, ...mockEnv }
    });
    try {
      const server = await startWxlogin({
        mockBase: mock.base,
        databaseUrl,
        port,
        env: { WXLOGIN_MODERATION: 'on', WECHAT_PUSH_TOKEN: pushToken, WXLOGIN_PUBLIC_URL: url, ...env }
      });
      return { mock, server };
    } catch (err) {
      await mock.stop();
      lastError = err;
      if (!err.portInUse) {
        break;
      }
    }
  }
  throw lastError;
}

/**
 * A database, mock-wechat and wxlogin wired together. `stop()` undoes all of it, including
 * whatever part was started when start-up fails half-way. With `moderation: true`, wxlogin checks
 * nicknames and avatars at the mock, which pushes its verdicts back (startModeratedPair);
 * `mockEnv` then adds to the mock's environment.
 */
export async function startStack(backend, { env, moderation = false, mockEnv } = {}) {
  const undo = [];
  const stop = async () => {
    const errors = [];
    for (const step of undo.reverse()) {
      await step().catch((err) => errors.push(err));
    }
    undo.length = 0;
    if (errors.length) {
      throw errors[0];
    }
  };
  binary('wxlogin'); // both built? say so before creating anything
  binary('mock-wechat');
  try {
    const db = await createDatabase(backend);
    undo.push(db.drop);
    if (moderation) {
      const { mock, server } = await startModeratedPair({ databaseUrl: db.url, env, mockEnv });
      undo.push(mock.stop, server.stop);
      return { backend: backend.name, db, mock, server, stop };
    }
    const mock = await startMock();
    undo.push(mock.stop);
    const server = await startWxlogin({ mockBase: mock.base, databaseUrl: db.url, env });
    undo.push(server.stop);
    return { backend: backend.name, db, mock, server, stop };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
