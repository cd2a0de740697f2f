// The public GraphQL API over HTTP (POST /graphql), and the signed-in session.
//
// Tokens are kept in sessionStorage: a reload keeps the tab signed in, closing the tab
// forgets them (nothing in localStorage). The access token is refreshed a minute before
// it expires (refreshToken rotates both), and once more when the API says UNAUTHENTICATED.
import { ApiError } from './errors.js';
import { REFRESH_TOKEN, LOGOUT } from './ops.js';

export const GRAPHQL_URL = new URL('../graphql', document.baseURI).href;
const STORAGE_KEY = 'iotplatform.console.session';
const REFRESH_AHEAD_MS = 60_000;

let session = load();
let refreshing = null;
let refreshTimer = null;
const listeners = new Set();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY)) || null;
  } catch {
    return null;
  }
}

function save() {
  if (session) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(STORAGE_KEY);
}

function schedule() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const wait = Math.max(1000, session.expiresAt - Date.now() - REFRESH_AHEAD_MS);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), wait);
}

export const auth = {
  get user() {
    return session ? session.user : null;
  },
  get token() {
    return session ? session.accessToken : null;
  },
  get isAdmin() {
    return Boolean(session && session.user.role === 'ADMIN');
  },
  // From register, login or refreshToken (AuthPayload).
  start(payload) {
    session = {
      accessToken: payload.accessToken,
      refreshToken: payload.refreshToken,
      expiresAt: Date.now() + payload.expiresIn * 1000,
      user: payload.user,
    };
    save();
    schedule();
    for (const listener of listeners) listener('signed-in');
  },
  end() {
    const had = session !== null;
    session = null;
    save();
    clearTimeout(refreshTimer);
    if (had) for (const listener of listeners) listener('signed-out');
  },
  onChange(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
  resume() {
    if (session && session.expiresAt - Date.now() < REFRESH_AHEAD_MS) {
      return refresh().then(() => true, () => false);
    }
    schedule();
    return Promise.resolve(Boolean(session));
  },
};

// Rotate the tokens once, whoever asks (the timer, a request, the live socket).
export function refresh() {
  if (!session) return Promise.reject(new ApiError('UNAUTHENTICATED'));
  if (!refreshing) {
    const token = session.refreshToken;
    refreshing = post(REFRESH_TOKEN, { refreshToken: token }, null)
      .then((data) => {
        // Signed out meanwhile: stay signed out.
        if (session && session.refreshToken === token) auth.start(data.refreshToken);
      })
      .catch((error) => {
        if (error.code === 'UNAUTHENTICATED') auth.end();
        throw error;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

async function post(query, variables, token) {
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(GRAPHQL_URL, {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables }),
      credentials: 'omit',
    });
  } catch (error) {
    throw new ApiError('NETWORK', String(error));
  }
  return result(response);
}

async function result(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status === 429 ? 'RATE_LIMITED' : 'INTERNAL', `HTTP ${response.status}`);
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    throw new ApiError((first.extensions && first.extensions.code) || 'INTERNAL', first.message);
  }
  return body.data;
}

// One operation as the signed-in user; a token that expired is refreshed and the
// operation sent once more.
export async function gql(query, variables = {}) {
  if (session && session.expiresAt - Date.now() < 5000) await refresh().catch(() => {});
  try {
    return await post(query, variables, auth.token);
  } catch (error) {
    if (error.code === 'UNAUTHENTICATED' && session) {
      await refresh();
      return post(query, variables, auth.token);
    }
    throw error;
  }
}

// The GraphQL multipart request (firmware uploads): the CSRF guard wants the preflight header.
export async function upload(query, variables, path, file) {
  if (session && session.expiresAt - Date.now() < 5000) await refresh().catch(() => {});
  const form = new FormData();
  form.append('operations', JSON.stringify({ query, variables }));
  form.append('map', JSON.stringify({ 0: [path] }));
  form.append('0', file, file.name);
  let response;
  try {
    response = await fetch(GRAPHQL_URL, {
      method: 'POST',
      headers: { Authorization: `Bearer ${auth.token}`, 'GraphQL-Require-Preflight': '1' },
      body: form,
      credentials: 'omit',
    });
  } catch (error) {
    throw new ApiError('NETWORK', String(error));
  }
  return result(response);
}

export async function signOut() {
  try {
    if (session) await post(LOGOUT, {}, auth.token);
  } catch {
    // Signed out here either way; the refresh tokens expire on their own.
  }
  auth.end();
}
