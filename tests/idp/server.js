// A real OpenID Connect provider (npm `oidc-provider`) on loopback for the TMS SSO tests.
//
// Usage: node server.js <port>   (or IDP_PORT). Settings from the environment:
//   IDP_ISSUER         issuer URL (default http://127.0.0.1:<port>)
//   IDP_CLIENT_ID      the one static confidential client (default tms)
//   IDP_CLIENT_SECRET  its secret (client_secret_basic)
//   IDP_REDIRECT_URI   its only redirect URI (TMS's /auth/callback)
//   IDP_USERS_FILE     JSON {"<login>": {"email", "email_verified", "name", "groups": []}},
//                      read on every sign-in so a test can change a user's groups between logins
//   IDP_TAMPER_FILE    optional: a file holding a tampering mode; when it names one, the
//                      id_token in the token endpoint's answer is rewritten (see `tamper`)
//
// Non-interactive login for tests: the interaction page signs in the account named by the
// authorization request's `login_hint` and consents to what was asked, using oidc-provider's
// interaction API (interactionDetails / interactionFinished / Grant). `login_hint=deny` makes the
// user refuse (error=access_denied). Prints `IDP READY <issuer>` once listening.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] || process.env.IDP_PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.js <port>');
  process.exit(2);
}
const issuer = process.env.IDP_ISSUER || `http://127.0.0.1:${port}`;
const clientId = process.env.IDP_CLIENT_ID || 'tms';
const clientSecret = process.env.IDP_CLIENT_SECRET || 'tms-test-client-secret';
const redirectUri = process.env.IDP_REDIRECT_URI;
const usersFile = process.env.IDP_USERS_FILE;
const tamperFile = process.env.IDP_TAMPER_FILE;
if (!redirectUri || !usersFile) {
  console.error('IDP_REDIRECT_URI and IDP_USERS_FILE are required');
  process.exit(2);
}

// The signing key: generated per start, kept here so the tampering hook can re-sign with it.
const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const kid = `test-${crypto.randomBytes(6).toString('hex')}`;
const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

function users() {
  return JSON.parse(fs.readFileSync(usersFile, 'utf8'));
}

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [privateJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Put the scope-granted claims (email, groups) in the ID token itself, as TMS reads them there.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const user = users()[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...user };
      },
    };
  },
});
// Loopback only; the tests speak plain http.
provider.proxy = false;

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function sign(header, payload, signer) {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${signer(input)}`;
}

const rs256 = (key) => (input) => crypto.sign('sha256', Buffer.from(input), key).toString('base64url');

// Rewrites a genuine ID token as the attack named by `mode` would.
function tamper(idToken, mode) {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'resign': // control: same claims, re-signed with the real key; must still be accepted
      return sign(header, payload, rs256(privateKey));
    case 'aud':
      return sign(header, { ...payload, aud: 'some-other-client' }, rs256(privateKey));
    case 'iss':
      return sign(header, { ...payload, iss: 'http://127.0.0.1:9/evil' }, rs256(privateKey));
    case 'nonce':
      return sign(header, { ...payload, nonce: 'forged-nonce' }, rs256(privateKey));
    case 'expired':
      return sign(header, { ...payload, iat: now - 7200, exp: now - 3600 }, rs256(privateKey));
    case 'none':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
    case 'hs256': { // HS/RS confusion: HMAC keyed with the provider's *public* key
      const pem = publicKey.export({ type: 'spki', format: 'pem' });
      return sign({ ...header, alg: 'HS256' }, payload,
        (input) => crypto.createHmac('sha256', pem).update(input).digest('base64url'));
    }
    case 'kid': { // a key the provider never published
      const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      return sign({ ...header, kid: 'unknown-kid' }, payload, rs256(other));
    }
    default:
      throw new Error(`unknown tamper mode ${mode}`);
  }
}

// Post-middleware on the real token endpoint (oidc-provider's documented `provider.use`).
provider.use(async (ctx, next) => {
  await next();
  if (!tamperFile || ctx.path !== '/token' || ctx.status !== 200 || !ctx.body?.id_token) return;
  const mode = fs.existsSync(tamperFile) ? fs.readFileSync(tamperFile, 'utf8').trim() : '';
  if (mode) ctx.body = { ...ctx.body, id_token: tamper(ctx.body.id_token, mode) };
});

// The interaction "page": log in the `login_hint` account and consent, without a browser.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  ctx.respond = false; // interactionFinished writes the 303 itself
  if (prompt.name === 'login') {
    const login = params.login_hint;
    if (login === 'deny') {
      return provider.interactionFinished(ctx.req, ctx.res, {
        error: 'access_denied', error_description: 'the user refused',
      }, { mergeWithLastSubmission: false });
    }
    if (!login || !users()[login]) {
      return provider.interactionFinished(ctx.req, ctx.res, {
        error: 'access_denied', error_description: 'unknown test user',
      }, { mergeWithLastSubmission: false });
    }
    return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login } });
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } });
  }
  ctx.respond = true;
  ctx.status = 400;
  ctx.body = { error: `unexpected prompt ${prompt.name}` };
  return undefined;
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`IDP READY ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
