// Another backend verifying our access tokens with `jose` (a JWT library that is not ours) and
// nothing but the published key set: what docs/verify.md tells app developers to do.
import assert from 'node:assert/strict';
import { generateKeyPair, SignJWT, createLocalJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';
import { test } from 'node:test';
import { APPID } from './support/servers.mjs';
import { forEachBackend, http, loginDirect, uniqueUser } from './support/harness.mjs';

forEachBackend('tokens verified by jose with the JWKS', (ctx) => {
  const keySet = async () => {
    const res = await http(`${ctx.stack.server.url}/.well-known/jwks.json`);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('cache-control') ?? '', /max-age=\d+/, 'the key set is cacheable');
    for (const key of res.json.keys) {
      assert.equal(key.d, undefined, 'no private part is published');
    }
    return createLocalJWKSet(res.json);
  };
  const options = () => ({
    issuer: ctx.stack.server.url,
    audience: APPID,
    algorithms: ['ES256']
  });

  test('a login token verifies with the published keys, issuer and audience', async () => {
    const bearer = await loginDirect(ctx.stack, uniqueUser('jose'));
    const token = bearer.replace(/^Bearer /, '');
    const { payload, protectedHeader } = await jwtVerify(token, await keySet(), options());
    assert.equal(protectedHeader.alg, 'ES256');
    assert.ok(protectedHeader.kid, 'the header names its key');
    assert.match(payload.sub, /^[0-9a-f]{32}$/, 'sub is the stable user id');
    assert.ok(payload.sid && payload.openid, JSON.stringify(payload));
    assert.ok(payload.exp > payload.iat, 'the token expires');
  });

  test('a tampered token, a foreign key and the wrong audience are refused', async () => {
    const bearer = await loginDirect(ctx.stack, uniqueUser('jose'));
    const token = bearer.replace(/^Bearer /, '');
    const jwks = await keySet();

    const [head, body, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
    const forgedBody = Buffer.from(JSON.stringify({ ...claims, sub: '0'.repeat(32) })).toString('base64url');
    await assert.rejects(jwtVerify(`${head}.${forgedBody}.${signature}`, jwks, options()), 'tampered claims');

    const { privateKey } = await generateKeyPair('ES256');
    const foreign = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: decodeProtectedHeader(token).kid })
      .sign(privateKey);
    await assert.rejects(jwtVerify(foreign, jwks, options()), 'signed by a key that is not ours');

    await assert.rejects(jwtVerify(token, jwks, { ...options(), audience: 'wx-some-other-app' }), 'audience');
  });
});
