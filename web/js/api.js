// REST client and session handling.
//
// Tokens live in memory, mirrored to sessionStorage (this tab only) so a page
// reload keeps the session. They are sent only in the Authorization header or
// a JSON body — never in a URL. The access token is refreshed shortly before it
// expires and once more on a 401.

const STORE_KEY = 'watchparty.session';
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

let session = null; // {access_token, refresh_token, expires_at_ms}
let refreshTimer = null;
let refreshing = null;
const listeners = new Set();

function load() {
  try {
    const raw = sessionStorage.getItem(STORE_KEY);
    if (raw) session = JSON.parse(raw);
  } catch (_) {
    session = null;
  }
}

function save() {
  try {
    if (session) sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(STORE_KEY);
  } catch (_) { /* storage unavailable: memory only */ }
}

function setTokens(t) {
  session = {
    access_token: t.access_token,
    refresh_token: t.refresh_token,
    expires_at_ms: Date.now() + t.expires_in * 1000,
  };
  save();
  schedule();
  for (const fn of listeners) fn(session ? session.access_token : null);
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

export function clearSession() {
  session = null;
  clearTimeout(refreshTimer);
  save();
  for (const fn of listeners) fn(null);
}

/** Rotates the refresh token; clears the session when it is refused. */
export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, 'unauthorized'));
  if (refreshing) return refreshing;
  const rt = session.refresh_token;
  refreshing = raw('POST', '/api/v1/auth/refresh', { refresh_token: rt }, null)
    .then((t) => { setTokens(t); return t.access_token; })
    .catch((e) => {
      if (e instanceof ApiError && (e.status === 401 || e.status === 400)) clearSession();
      throw e;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

async function raw(method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined && body !== null) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = 'Bearer ' + token;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body !== undefined && body !== null ? JSON.stringify(body) : undefined,
      credentials: 'omit',
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
  const t = await raw('POST', '/api/v1/auth/login', { username, password }, null);
  setTokens(t);
}

export async function register(username, password, displayName) {
  await raw('POST', '/api/v1/auth/register', { username, password, display_name: displayName }, null);
  await login(username, password);
}

export async function logout() {
  try { if (session) await raw('POST', '/api/v1/auth/logout', null, session.access_token); } catch (_) { /* gone anyway */ }
  clearSession();
}

load();
if (session) {
  if (session.expires_at_ms - Date.now() < REFRESH_MARGIN_S * 1000) {
    refresh().catch(() => {});
  } else {
    schedule();
  }
}
