// REST client and session handling.
//
// The access token lives in this page's memory only; it is sent only in the
// Authorization header, never in a URL. The refresh token is an HttpOnly
// cookie (Path=/api/v1/auth) that no script can read: the server sets it at
// sign-in and rotates it on every refresh. Every page — a new tab, a reload,
// a browser restart — starts by trading that cookie for an access token, so
// people stay signed in across tabs and restarts. The access token is
// refreshed shortly before it expires and once more on a 401.
//
// Requests that send the cookie carry the CSRF header the server requires.
// Refreshes of all tabs of this browser take turns (a Web Lock): two tabs
// presenting the same cookie at once would look like a stolen token being
// replayed, and the server would end the session.

/** Header (and value) the server requires on every request that uses the refresh cookie. */
const CSRF_HEADER = 'X-Watchparty-CSRF';
/** Web Lock that serializes refreshes across this browser's tabs. */
const REFRESH_LOCK = 'watchparty.refresh';
/** Refresh this many seconds before the access token expires. */
const REFRESH_MARGIN_S = 60;
/** Shortest delay between two scheduled refreshes (ms). */
const MIN_REFRESH_DELAY_MS = 5_000;

/** An API failure with the server's stable error code. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || 'http_' + status;
  }
}

/** Human wording for the server's error codes. */
export function describeError(err) {
  if (!(err instanceof ApiError)) {
    return err && err.message ? err.message : String(err);
  }
  switch (err.code) {
    case 'invalid_credentials': return 'Wrong username or password.';
    case 'registration_closed': return 'Registration is closed on this server; ask the admin for an account.';
    case 'invalid_room_password': return 'Wrong room password.';
    case 'room_full': return 'The room is full.';
    case 'room_ended': return 'The room has ended.';
    case 'not_found': return 'Not found, or you have no access to it.';
    case 'forbidden': return err.message || 'You are not allowed to do that.';
    case 'rate_limited': return 'Too many attempts; wait a moment and try again.';
    case 'busy': return 'The server is busy; try again in a few seconds.';
    case 'unauthorized': return 'Your session has expired; please sign in again.';
    case 'network': return 'Cannot reach the server (connection lost). Retrying may help.';
    default: return err.message || err.code;
  }
}

let session = null; // {access_token, expires_at_ms}; memory only
let refreshTimer = null;
let refreshing = null;
const listeners = new Set();

function setTokens(t) {
  session = {
    access_token: t.access_token,
    expires_at_ms: Date.now() + t.expires_in * 1000,
  };
  schedule();
  for (const fn of listeners) fn(session.access_token);
}

function schedule() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const delay = Math.max(MIN_REFRESH_DELAY_MS, session.expires_at_ms - Date.now() - REFRESH_MARGIN_S * 1000);
  refreshTimer = setTimeout(() => { refresh().catch(() => {}); }, delay);
}

/** Calls `fn(accessToken|null)` whenever the token changes. */
export function onToken(fn) { listeners.add(fn); return () => listeners.delete(fn); }

export function accessToken() { return session ? session.access_token : null; }
export function signedIn() { return !!session; }

/** Forgets this page's access token (the cookie stays; see `logout`). */
export function clearSession() {
  session = null;
  clearTimeout(refreshTimer);
  for (const fn of listeners) fn(null);
}

/** Runs `fn` while no other tab of this browser refreshes. */
function oneTabAtATime(fn) {
  if (navigator.locks && navigator.locks.request) return navigator.locks.request(REFRESH_LOCK, fn);
  return fn();
}

/** Trades the refresh cookie for a new access token (and a rotated cookie);
 * clears the session when the server refuses. */
export function refresh() {
  if (refreshing) return refreshing;
  refreshing = oneTabAtATime(() => raw('POST', '/api/v1/auth/refresh', null, null, true))
    .then((t) => { setTokens(t); return t.access_token; })
    .catch((e) => {
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) clearSession();
      throw e;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

// `withCookie`: send and accept the refresh cookie (the auth routes only).
async function raw(method, path, body, token, withCookie) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined && body !== null) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = 'Bearer ' + token;
  if (withCookie) headers[CSRF_HEADER] = '1';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body !== undefined && body !== null ? JSON.stringify(body) : undefined,
      credentials: withCookie ? 'same-origin' : 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'connection lost');
  }
  if (resp.status === 204) return null;
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = null; }
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, data && data.error, data && data.message);
  }
  return data;
}

/** Authenticated request; refreshes once on 401. */
export async function api(method, path, body) {
  if (!session) throw new ApiError(401, 'unauthorized');
  try {
    return await raw(method, path, body, session.access_token);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && session) {
      const token = await refresh();
      return raw(method, path, body, token);
    }
    throw e;
  }
}

export async function login(username, password) {
  const t = await raw('POST', '/api/v1/auth/login', { username, password, refresh_cookie: true }, null, true);
  setTokens(t);
}

export async function register(username, password, displayName) {
  await raw('POST', '/api/v1/auth/register', { username, password, display_name: displayName }, null);
  await login(username, password);
}

/** Ends the session on the server (it revokes it and deletes the cookie). */
export async function logout() {
  try { await raw('POST', '/api/v1/auth/logout', null, accessToken(), true); } catch (_) { /* gone anyway */ }
  clearSession();
}

/** Settles once this page knows whether the browser is signed in (true/false). */
export const ready = refresh().then(() => true, () => false);
