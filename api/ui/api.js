// The console's only way to the server: GraphQL over fetch, and the session endpoints.
//
// The access token lives in this module's memory only. The refresh token is an HttpOnly
// cookie this script never sees; `/ui/session/refresh` rotates it and hands back a new
// access token (on page load, before the token expires, and when a request finds it expired).

export class ApiError extends Error {
  constructor(code, message, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

export function errorOf(e) {
  const ext = (e && e.extensions) || {};
  return new ApiError(ext.code || 'INTERNAL', (e && e.message) || 'request failed', ext);
}

let token = null;
let refreshTimer = null;
let refreshing = null;
const onEnd = new Set();

/** Called (once per end) when the session is gone: signed out, expired or revoked. */
export function onSessionEnd(fn) {
  onEnd.add(fn);
  return () => onEnd.delete(fn);
}

export function accessToken() {
  return token;
}

export function signedIn() {
  return token !== null;
}

function ended() {
  const had = token !== null;
  token = null;
  clearTimeout(refreshTimer);
  if (had) for (const fn of onEnd) fn();
}

async function readJson(resp) {
  try {
    return await resp.json();
  } catch {
    throw new ApiError(resp.status >= 500 ? 'UNAVAILABLE' : 'INTERNAL', `HTTP ${resp.status}`);
  }
}

async function sessionCall(path, body) {
  let resp;
  try {
    resp = await fetch(`/ui/session${path}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-tms-console': '1' },
      body: JSON.stringify(body || {}),
    });
  } catch (e) {
    throw new ApiError('UNAVAILABLE', `the api cannot be reached (${e.message})`);
  }
  const json = await readJson(resp);
  if (json.errors && json.errors.length) throw errorOf(json.errors[0]);
  return json;
}

function adopt(json) {
  token = json.accessToken;
  clearTimeout(refreshTimer);
  // Renew at 80 % of the lifetime. A refusal ends the session; an outage is retried.
  const ms = Math.max(1000, (json.expiresIn || 60) * 800);
  const renew = () => refresh().catch((e) => {
    if (e.code === 'UNAUTHENTICATED') ended();
    else refreshTimer = setTimeout(renew, 3000);
  });
  refreshTimer = setTimeout(renew, ms);
}

export async function signIn(email, password) {
  adopt(await sessionCall('', { email, password }));
}

/** Redeems the one-time code single sign-on lands with. */
export async function signInWithCode(code) {
  adopt(await sessionCall('/sso', { code }));
}

/** A new access token from the refresh cookie; concurrent callers share one request. */
export function refresh() {
  if (!refreshing) {
    refreshing = sessionCall('/refresh')
      .then(adopt)
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

/** On page load: resumes the session the cookie holds, if any. */
export async function restore() {
  try {
    await refresh();
    return true;
  } catch (e) {
    if (e.code !== 'UNAUTHENTICATED') throw e;
    if (e.message === 'no console session') return false;
    // Another tab may have rotated the cookie at this very moment: one more try.
    await new Promise((r) => setTimeout(r, 300));
    try {
      await refresh();
      return true;
    } catch {
      return false;
    }
  }
}

export async function signOut() {
  try {
    await sessionCall('/logout');
  } finally {
    ended();
  }
}

/** Runs a GraphQL operation; rejects with an ApiError carrying `extensions.code`. */
export async function gql(query, variables = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    let resp;
    try {
      resp = await fetch('/graphql', {
        method: 'POST',
        credentials: 'same-origin',
        headers,
        body: JSON.stringify({ query, variables }),
      });
    } catch (e) {
      throw new ApiError('UNAVAILABLE', `the api cannot be reached (${e.message})`);
    }
    const json = await readJson(resp);
    const err = json.errors && json.errors[0];
    if (err && err.extensions && err.extensions.code === 'UNAUTHENTICATED' && attempt === 0 && token) {
      // The access token expired (or the session was revoked): renew once, then give up.
      try {
        await refresh();
        continue;
      } catch (e) {
        if (e.code !== 'UNAUTHENTICATED') throw e;
        ended();
        throw errorOf(err);
      }
    }
    if (err) throw errorOf(err);
    return json.data;
  }
}

/** The session ended elsewhere (a WebSocket closed with 4401 and renewing was refused). */
export function sessionLost() {
  ended();
}
