// The management API as the UI uses it: Basic auth from the session, and an error that
// carries RabbitMQ's {"error","reason"} body.

const KEY = 'warren.credentials';

export class ApiError extends Error {
  constructor(status, body) {
    const reason = body && body.reason !== undefined ? (typeof body.reason === 'string' ? body.reason : JSON.stringify(body.reason)) : `HTTP ${status}`;
    super(reason);
    this.status = status;
    this.body = body;
  }
}

export function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

export function setCredentials(user, password) {
  if (user === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, JSON.stringify({ user, password }));
}

/** Called when a request comes back 401 because the login no longer works. */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** `explicit` credentials are a login attempt: a 401 then belongs to the form, not the session. */
export async function api(method, path, body, explicit) {
  const creds = explicit ?? credentials();
  const headers = { 'x-warren-ui': '1', accept: 'application/json' };
  if (creds) headers.authorization = `Basic ${btoa(unescape(encodeURIComponent(`${creds.user}:${creds.password}`)))}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let json;
  if (text !== '') {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, json);
    if (res.status === 401 && explicit === undefined && json && json.error === 'not_authorized') onUnauthorized();
    throw err;
  }
  return json;
}

export const get = (path) => api('GET', path);
export const put = (path, body) => api('PUT', path, body ?? {});
export const post = (path, body) => api('POST', path, body ?? {});
export const del = (path) => api('DELETE', path);

/** A path segment ('/' → %2F), as RabbitMQ's API expects names. */
export const seg = (s) => encodeURIComponent(s);
