// Runs the mini-program's own files (miniprogram/) the way the WeChat client does, enough to
// drive them from tests: each launch gets a fresh `vm` context whose only globals are the
// mini-program ones (wx, App, Page, getApp, getCurrentPages, console, timers), so a file that
// used a Node API (process, Buffer, require('fs')) would fail here as it would in WeChat.
// Modules are CommonJS with relative paths, as in a mini-program.
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { MINIPROGRAM_ROOT } from './servers.mjs';

function clone(value) {
  // setData sends data to the view layer as JSON: functions vanish, dates become strings.
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** Sets `data[path] = value` for setData paths such as 'user.nickName' or 'list[0].name'. */
function setPath(data, keyPath, value) {
  const keys = keyPath.replace(/\[(\d+)\]/g, '.$1').split('.');
  let target = data;
  for (const key of keys.slice(0, -1)) {
    if (target[key] === null || typeof target[key] !== 'object') {
      target[key] = {};
    }
    target = target[key];
  }
  target[keys[keys.length - 1]] = value;
}

/**
 * Launches the mini-program: loads app.js (which calls App()), then runs onLaunch and onShow.
 * `baseUrl` replaces config.js's value, as a developer would edit it.
 * Returns {app, openPage(route, query), logs}; `logs` is what the code wrote to console.
 */
export function launch({ wx, baseUrl, root = MINIPROGRAM_ROOT }) {
  const modules = new Map();
  const pageStack = [];
  const logs = [];
  let appOptions = null;
  let definingPage = null;
  const pageDefinitions = new Map();

  const consoleFor = (level) => (...args) => logs.push({ level, text: args.map(String).join(' ') });
  const sandbox = vm.createContext({
    wx,
    console: {
      log: consoleFor('log'),
      info: consoleFor('info'),
      warn: consoleFor('warn'),
      error: consoleFor('error'),
      debug: consoleFor('debug')
    },
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    App(options) {
      if (appOptions) {
        throw new Error('App() called twice');
      }
      appOptions = options;
    },
    Page(options) {
      if (!definingPage) {
        throw new Error('Page() called outside a page file');
      }
      pageDefinitions.set(definingPage, options);
    },
    getApp() {
      return appOptions;
    },
    getCurrentPages() {
      return pageStack.slice();
    }
  });

  function resolve(fromFile, spec) {
    if (!spec.startsWith('./') && !spec.startsWith('../') && !spec.startsWith('/')) {
      throw new Error(`module "${spec}" is not defined (mini-programs require relative paths; npm packages need "构建 npm")`);
    }
    let file = spec.startsWith('/')
      ? path.join(root, spec)
      : path.resolve(path.dirname(fromFile), spec);
    if (!file.endsWith('.js')) {
      file += '.js';
    }
    if (!file.startsWith(root + path.sep) || !existsSync(file)) {
      throw new Error(`module "${path.relative(root, file)}" is not defined (required from ${path.relative(root, fromFile)})`);
    }
    return file;
  }

  function load(file) {
    if (modules.has(file)) {
      return modules.get(file).exports;
    }
    const module = { exports: {} };
    modules.set(file, module);
    const source = readFileSync(file, 'utf8');
    const wrapper = new vm.Script(`(function (require, module, exports) {${source}\n})`, {
      filename: file
    });
    const fn = wrapper.runInContext(sandbox);
    fn((spec) => load(resolve(file, spec)), module, module.exports);
    if (path.relative(root, file) === 'config.js' && baseUrl !== undefined) {
      module.exports.baseUrl = baseUrl;
    }
    return module.exports;
  }

  load(path.join(root, 'app.js'));
  if (!appOptions) {
    throw new Error('app.js did not call App()');
  }
  const app = appOptions;
  const launchOptions = { path: 'pages/index/index', query: {}, scene: 1001 };
  app.onLaunch?.(launchOptions);
  app.onShow?.(launchOptions);

  /**
   * Opens a page like navigateTo: loads its file, makes the instance (data, setData, the
   * methods bound to it), runs onLoad(query), onShow, onReady. `page.loaded` is onLoad's result.
   */
  function openPage(route = JSON.parse(readFileSync(path.join(root, 'app.json'), 'utf8')).pages[0], query = {}) {
    const file = path.join(root, `${route}.js`);
    if (!pageDefinitions.has(route)) {
      definingPage = route;
      try {
        load(file);
      } finally {
        definingPage = null;
      }
    }
    const definition = pageDefinitions.get(route);
    if (!definition) {
      throw new Error(`${route}.js did not call Page()`);
    }
    const page = { route, options: query, data: clone(definition.data || {}), warnings: [] };
    for (const [key, value] of Object.entries(definition)) {
      if (key !== 'data') {
        page[key] = typeof value === 'function' ? value.bind(page) : clone(value);
      }
    }
    page.setData = (changes, callback) => {
      for (const [key, value] of Object.entries(changes)) {
        if (value === undefined) {
          page.warnings.push(`Setting data field "${key}" to undefined is invalid.`);
          continue;
        }
        setPath(page.data, key, clone(value));
      }
      if (typeof callback === 'function') {
        setImmediate(callback);
      }
    };
    pageStack.push(page);
    page.loaded = Promise.resolve(page.onLoad?.(query));
    page.onShow?.();
    page.onReady?.();
    return page;
  }

  return { app, openPage, logs };
}

/** An event object as WeChat passes it to a handler. */
export function event(type, detail) {
  return { type, timeStamp: Date.now(), target: { dataset: {} }, currentTarget: { dataset: {} }, detail };
}
