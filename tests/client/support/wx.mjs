// A simulated `wx`: the parts of the WeChat client API the mini-program uses, behaving as the
// real ones do where it matters to the code under test:
// - wx.login gets a real one-time code from mock-wechat (`/mock/code?user=…`);
// - wx.request and wx.uploadFile make real HTTP calls; both call `success` for EVERY HTTP status
//   (4xx/5xx included) and `fail` only when no answer came; wx.request parses a JSON body
//   (dataType 'json'), wx.uploadFile hands the body over as a string;
// - wx.uploadFile sends multipart/form-data as the client does: the file read from `filePath`
//   under the field `name`, its file name, a Content-Type guessed from the extension, and the
//   `formData` fields;
// - both send a User-Agent as the WeChat client does (the server records it in the login history);
// - storage is an in-memory map (getStorageSync answers '' for a missing key);
// - wx.showModal answers with the next of `sim.modalAnswers` ('confirm' or 'cancel'; 'cancel' when
//   none is queued, so a test that forgets to script the user deletes nothing);
// - UI calls (showToast, showLoading, showModal, navigateTo, …) are recorded.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const MIME_BY_EXTENSION = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp'
};

/**
 * multipart/form-data as wx.uploadFile (a Chromium-based client in DevTools) builds it.
 * `files`: [{name, filename, contentType, bytes}]; `fields`: {name: value}.
 */
export function buildMultipart({ fields = {}, files = [] }) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const boundary = '----WebKitFormBoundary' +
    Array.from(randomBytes(16), (b) => alphabet[b % alphabet.length]).join('');
  const chunks = [];
  for (const [name, value] of Object.entries(fields)) {
    chunks.push(Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`
    ));
  }
  for (const file of files) {
    chunks.push(Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${file.name}"; filename="${file.filename}"\r\n` +
        `Content-Type: ${file.contentType}\r\n\r\n`
    ));
    chunks.push(file.bytes);
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

function later(fn, ...args) {
  if (typeof fn === 'function') {
    setImmediate(() => fn(...args));
  }
}

/** Calls success/fail then complete, as the wx callback APIs do (always asynchronously). */
function settle(options, ok, result) {
  later(ok ? options.success : options.fail, result);
  later(options.complete, result);
}

/** What a WeChat client on an iPhone says it is (the simulated wx sends it with every request). */
export const WECHAT_USER_AGENT =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) ' +
  'Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN miniProgram/wx1234567890abcdef';

function formEncode(data) {
  return new URLSearchParams(Object.entries(data).map(([k, v]) => [k, String(v)])).toString();
}

/**
 * Creates a simulated `wx` for one mini-program run.
 * - `mockBase`: mock-wechat's base URL; `user`: whose codes wx.login hands out.
 * - `sim.loginCodes`: codes to hand out instead (first in, first out), e.g. 'fail.40029'.
 * - `sim.calls`: what the mini-program did: {login, request: [...], uploadFile: [...]}; each
 *   exchange keeps the answer's `statusCode` and body text (`response`).
 * - `sim.ui`: every UI call [{api, options}].
 */
export function createWx({ mockBase, user, timeoutMs = 15_000 }) {
  const storage = new Map();
  const sim = {
    user,
    storage,
    loginCodes: [],
    modalAnswers: [],
    calls: { login: 0, request: [], uploadFile: [] },
    ui: [],
    toasts() {
      return sim.ui.filter((u) => u.api === 'showToast').map((u) => u.options.title);
    },
    modals() {
      return sim.ui.filter((u) => u.api === 'showModal').map((u) => u.options);
    },
    /** The JSON body of the last answer to "METHOD /path" (e.g. 'PUT /api/me'), or undefined. */
    lastAnswer(what) {
      const [method, pathname] = what.split(' ');
      const hit = [...sim.calls.request, ...sim.calls.uploadFile]
        .filter((c) => c.method === method && c.response !== undefined && new URL(c.url).pathname === pathname)
        .sort((a, b) => b.seq - a.seq)[0];
      return hit ? JSON.parse(hit.response) : undefined;
    },
    /** The HTTP exchanges so far, as "METHOD /path status". */
    exchanges() {
      return [...sim.calls.request, ...sim.calls.uploadFile]
        .sort((a, b) => a.seq - b.seq)
        .map((c) => `${c.method} ${new URL(c.url).pathname} ${c.statusCode ?? c.error}`);
    }
  };
  let seq = 0;

  const headersOf = (given, defaults) => {
    const headers = { ...defaults };
    for (const [k, v] of Object.entries(given || {})) {
      headers[k.toLowerCase()] = String(v);
    }
    return headers;
  };

  const checkUrl = (url) => {
    const parsed = new URL(url); // throws for a relative or broken URL, as the client refuses it
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new Error(`invalid url "${url}"`);
    }
  };

  const ui = (api) => (options = {}) => {
    sim.ui.push({ api, options });
    settle(options, true, { errMsg: `${api}:ok` });
  };

  const wx = {
    login(options = {}) {
      sim.calls.login += 1;
      const run = async () => {
        if (sim.loginCodes.length) {
          return sim.loginCodes.shift();
        }
        const res = await fetch(`${mockBase}/mock/code?user=${encodeURIComponent(sim.user)}`, {
          signal: AbortSignal.timeout(timeoutMs)
        });
        const text = await res.text();
        if (res.status !== 200) {
          throw new Error(`mock-wechat /mock/code answered ${res.status}: ${text}`);
        }
        return text.trim();
      };
      const promise = run().then(
        (code) => ({ code, errMsg: 'login:ok' }),
        (err) => Promise.reject({ errMsg: `login:fail ${err.message}` })
      );
      if (!options.success && !options.fail && !options.complete) {
        return promise; // promise style, as wx.login supports it
      }
      promise.then((res) => settle(options, true, res), (res) => settle(options, false, res));
      return undefined;
    },

    request(options) {
      const method = (options.method || 'GET').toUpperCase();
      const record = { seq: seq++, method, url: options.url };
      sim.calls.request.push(record);
      const run = async () => {
        checkUrl(options.url);
        const headers = headersOf(options.header, {
          'content-type': 'application/json',
          'user-agent': WECHAT_USER_AGENT
        });
        let url = options.url;
        let body;
        const data = options.data;
        if (method === 'GET' || method === 'HEAD') {
          if (data && typeof data === 'object') {
            url += (url.includes('?') ? '&' : '?') + formEncode(data);
          }
        } else if (data !== undefined && data !== null) {
          if (typeof data === 'string' || data instanceof ArrayBuffer) {
            body = data;
          } else if (headers['content-type'].includes('application/x-www-form-urlencoded')) {
            body = formEncode(data);
          } else {
            body = JSON.stringify(data);
          }
        }
        record.headers = headers;
        record.body = body;
        const res = await fetch(url, {
          method,
          headers,
          body,
          signal: AbortSignal.timeout(options.timeout || timeoutMs)
        });
        const text = await res.text();
        record.response = text; // what the server said, for tests comparing it with the page
        let parsed = text;
        if ((options.dataType || 'json') === 'json') {
          try {
            parsed = JSON.parse(text);
          } catch {
            // the client hands over the text when it is not JSON
          }
        }
        record.statusCode = res.status;
        return {
          data: parsed,
          statusCode: res.status,
          header: Object.fromEntries(res.headers),
          cookies: [],
          errMsg: 'request:ok'
        };
      };
      run().then(
        (res) => settle(options, true, res),
        (err) => {
          record.error = err.message;
          settle(options, false, { errMsg: `request:fail ${err.message}` });
        }
      );
      return { abort() {} };
    },

    uploadFile(options) {
      const record = { seq: seq++, method: 'POST', url: options.url, filePath: options.filePath };
      sim.calls.uploadFile.push(record);
      const run = async () => {
        checkUrl(options.url);
        if (!options.name) {
          throw new Error('parameter.name should be String');
        }
        const bytes = await readFile(options.filePath);
        const ext = path.extname(options.filePath).toLowerCase();
        const multipart = buildMultipart({
          fields: options.formData || {},
          files: [{
            name: options.name,
            filename: path.basename(options.filePath),
            contentType: MIME_BY_EXTENSION[ext] || 'application/octet-stream',
            bytes
          }]
        });
        // The client sets Content-Type itself, whatever `header` says.
        const headers = headersOf(options.header, { 'user-agent': WECHAT_USER_AGENT });
        headers['content-type'] = multipart.contentType;
        record.headers = headers;
        const res = await fetch(options.url, {
          method: 'POST',
          headers,
          body: multipart.body,
          signal: AbortSignal.timeout(options.timeout || timeoutMs)
        });
        const text = await res.text();
        record.response = text;
        record.statusCode = res.status;
        return { data: text, statusCode: res.status, errMsg: 'uploadFile:ok' };
      };
      run().then(
        (res) => settle(options, true, res),
        (err) => {
          record.error = err.message;
          settle(options, false, { errMsg: `uploadFile:fail ${err.message}` });
        }
      );
      return { abort() {}, onProgressUpdate() {} };
    },

    setStorageSync(key, value) {
      storage.set(key, value);
    },
    getStorageSync(key) {
      return storage.has(key) ? storage.get(key) : '';
    },
    removeStorageSync(key) {
      storage.delete(key);
    },
    clearStorageSync() {
      storage.clear();
    },

    showToast: ui('showToast'),
    showLoading: ui('showLoading'),
    hideLoading: ui('hideLoading'),
    showModal(options = {}) {
      sim.ui.push({ api: 'showModal', options });
      const answer = sim.modalAnswers.length ? sim.modalAnswers.shift() : 'cancel';
      settle(options, true, { confirm: answer === 'confirm', cancel: answer !== 'confirm', errMsg: 'showModal:ok' });
    },
    navigateTo: ui('navigateTo'),
    stopPullDownRefresh: ui('stopPullDownRefresh')
  };

  return { wx, sim };
}
