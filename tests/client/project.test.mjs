// The mini-program project as WeChat DevTools will open it: the JSON files parse, every page
// listed in app.json has its files, every require() is a relative path that exists, the WXML is
// balanced, and every event handler the WXML names is a function of its page.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { createWx } from './support/wx.mjs';
import { launch } from './support/miniprogram.mjs';
import { MINIPROGRAM_ROOT } from './support/servers.mjs';

const root = MINIPROGRAM_ROOT;
const read = (rel) => readFileSync(path.join(root, rel), 'utf8');
const readJson = (rel) => JSON.parse(read(rel));

function filesUnder(dir) {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    return statSync(file).isDirectory() ? filesUnder(file) : [file];
  });
}

test('project.config.json, app.json, sitemap.json and page JSON parse', () => {
  const project = readJson('project.config.json');
  assert.equal(project.compileType, 'miniprogram');
  assert.match(project.appid, /^(touristappid|wx[0-9a-f]{16})$/);
  const app = readJson('app.json');
  assert.ok(Array.isArray(app.pages) && app.pages.length > 0);
  if (app.sitemapLocation) {
    readJson(app.sitemapLocation);
  }
  for (const page of app.pages) {
    for (const ext of ['js', 'wxml', 'json']) {
      assert.ok(existsSync(path.join(root, `${page}.${ext}`)), `${page}.${ext} exists`);
    }
    readJson(`${page}.json`);
  }
  for (const file of ['app.js', 'app.wxss', 'config.js', 'utils/api.js']) {
    assert.ok(existsSync(path.join(root, file)), `${file} exists`);
  }
});

test('config.js is the one place the server URL is written', () => {
  assert.match(read('config.js'), /baseUrl:\s*'http:\/\/127\.0\.0\.1:8888'/);
  for (const file of filesUnder(root).filter((f) => f.endsWith('.js') && !f.endsWith('config.js'))) {
    assert.doesNotMatch(readFileSync(file, 'utf8'), /https?:\/\//, `${path.relative(root, file)} names no URL`);
  }
});

test('every require() is relative and resolves inside miniprogram/', () => {
  for (const file of filesUnder(root).filter((f) => f.endsWith('.js'))) {
    const source = readFileSync(file, 'utf8');
    for (const [, spec] of source.matchAll(/require\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      assert.match(spec, /^\.\.?\//, `${path.relative(root, file)}: require('${spec}') must be relative`);
      const target = path.resolve(path.dirname(file), spec.endsWith('.js') ? spec : `${spec}.js`);
      assert.ok(target.startsWith(root + path.sep) && existsSync(target), `${path.relative(root, file)}: ${spec} exists`);
    }
  }
});

/** Checks that the tags of a WXML file nest properly; returns its opening tags. */
function wxmlTags(source, name) {
  const stack = [];
  const tags = [];
  const text = source.replace(/<!--[\s\S]*?-->/g, '');
  for (const [whole, closing, tag, attributes, selfClosing] of text.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g)) {
    if (closing) {
      assert.equal(stack.pop(), tag, `${name}: </${tag}> closes the innermost open tag`);
    } else {
      tags.push({ tag, attributes, whole });
      if (!selfClosing) {
        stack.push(tag);
      }
    }
  }
  assert.deepEqual(stack, [], `${name}: every tag is closed`);
  return tags;
}

test('WXML is balanced and its event handlers exist on the page', () => {
  const app = readJson('app.json');
  const { wx } = createWx({ mockBase: 'http://127.0.0.1:9', user: 'static' });
  // Loading the files needs no server: the silent login fails in the background, harmlessly.
  const run = launch({ wx, baseUrl: 'http://127.0.0.1:9' });
  for (const route of app.pages) {
    const tags = wxmlTags(read(`${route}.wxml`), `${route}.wxml`);
    const page = run.openPage(route);
    const handlers = tags.flatMap(({ attributes }) =>
      [...attributes.matchAll(/\s(?:bind|catch)(?::)?([a-z]+)="([^"{}]+)"/g)].map(([, evt, fn]) => ({ evt, fn })));
    assert.ok(handlers.length > 0);
    for (const { evt, fn } of handlers) {
      assert.equal(typeof page[fn], 'function', `${route}.wxml binds ${evt} to ${fn}, a method of the page`);
    }
  }
});

test('the index page has the three WeChat widgets and the logout buttons wired as documented', () => {
  const tags = wxmlTags(read('pages/index/index.wxml'), 'index.wxml');
  const find = (pattern) => tags.find(({ attributes }) => pattern.test(attributes));
  assert.match(find(/open-type="chooseAvatar"/)?.attributes ?? '', /bind:chooseavatar="onChooseAvatar"/);
  const nickname = find(/type="nickname"/)?.attributes ?? '';
  assert.match(nickname, /bindblur="onNickname"/);
  assert.match(nickname, /bindconfirm="onNickname"/);
  assert.match(find(/open-type="getPhoneNumber"/)?.attributes ?? '', /bindgetphonenumber="onGetPhoneNumber"/);
  assert.ok(find(/bindtap="onLogout"/), 'a logout button');
  assert.ok(find(/bindtap="onLogoutAll"/), 'a "log out everywhere" button');
});

test('the index page has the login history, account deletion and disabled-account retry wired', () => {
  const tags = wxmlTags(read('pages/index/index.wxml'), 'index.wxml');
  const find = (pattern) => tags.find(({ attributes }) => pattern.test(attributes));
  assert.ok(find(/bindtap="onShowHistory"/), 'a "登录记录" entry');
  assert.ok(find(/bindtap="onDeleteAccount"/), 'a "注销账号" button');
  assert.ok(find(/bindtap="onCancelDeletion"/), 'a "撤销注销" button for a scheduled deletion');
  assert.ok(find(/bindtap="onRetry"/), 'the retry button goes through onRetry (a disabled account)');
  for (const fn of ['deleteAccount', 'cancelDeletion', 'deletionStatus', 'pendingDeletion', 'loginHistory']) {
    assert.match(read('utils/api.js'), new RegExp(`\\b${fn}\\b`), `api.${fn} exists`);
  }
});

test('the login history page is registered and lists its entries', () => {
  const app = readJson('app.json');
  assert.equal(app.pages[0], 'pages/index/index', 'the profile page stays the first page (the launch page)');
  assert.ok(app.pages.includes('pages/history/history'), 'app.json lists pages/history/history');
  const tags = wxmlTags(read('pages/history/history.wxml'), 'history.wxml');
  const list = tags.find(({ attributes }) => /wx:for="\{\{logins\}\}"/.test(attributes));
  assert.ok(list, 'a wx:for over logins');
  assert.match(list.attributes, /wx:key="key"/);
  const text = read('pages/history/history.wxml');
  for (const field of ['item.time', 'item.kindLabel', 'item.ip', 'item.device']) {
    assert.ok(text.includes(`{{${field}}}`), `shows ${field}`);
  }
});

test('the index page shows a pending avatar marked 审核中, and a refused one as refused', () => {
  const source = read('pages/index/index.wxml');
  const tags = wxmlTags(source, 'index.wxml');
  const button = tags.findIndex(({ attributes }) => /open-type="chooseAvatar"/.test(attributes));
  // Inside the avatar button: the chosen file while it is checked, and the badge over it.
  const inButton = tags.slice(button + 1, button + 5).map(({ whole }) => whole).join('\n');
  assert.match(inButton, /<image wx:if="\{\{avatarPreview\}\}"[^>]*src="\{\{avatarPreview\}\}"/, 'the pending image is shown');
  assert.match(inButton, /src="\{\{user\.avatarUrl\}\}"/, 'else the profile avatar');
  const text = source.replace(/<!--[\s\S]*?-->/g, '');
  assert.match(text, /wx:if="\{\{avatarStatus === 'pending'\}\}" class="avatar-badge">审核中</, 'the 审核中 badge');
  assert.match(text, /avatarStatus === 'rejected'\}\}"[^>]*>[^<]*未通过审核/, 'a refusal says so');
  const css = read('pages/index/index.wxss');
  for (const cls of ['avatar-badge', 'avatar-note']) {
    assert.match(css, new RegExp(`\\.${cls}\\s*\\{`), `.${cls} is styled`);
  }

  const { wx } = createWx({ mockBase: 'http://127.0.0.1:9', user: 'static' });
  const page = launch({ wx, baseUrl: 'http://127.0.0.1:9' }).openPage('pages/index/index');
  page.onUnload();
  assert.equal(page.data.avatarStatus, '');
  assert.equal(page.data.avatarPreview, '');
  for (const fn of ['watchAvatar', 'showAvatarState', 'onShow', 'onUnload']) {
    assert.equal(typeof page[fn], 'function', `page.${fn}`);
  }
  // Polling for the verdict is bounded: a few delays, growing, well under WeChat's 30 minutes.
  const delays = page.avatarPollDelays;
  assert.ok(Array.isArray(delays) && delays.length > 0 && delays.length <= 10, `${delays}`);
  assert.ok(delays.every((d, i) => d > 0 && (i === 0 || d >= delays[i - 1])), 'positive, never shorter');
  assert.ok(delays.reduce((a, b) => a + b, 0) <= 60_000, 'at most a minute in all');
});
