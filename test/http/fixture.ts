// Shared helpers for the management API tests: one embedded broker per test file, with the
// management listener on a free port, and a small fetch wrapper that speaks Basic auth.
//
//   const mgmt = managementSuite();
//   it('...', async () => {
//     const r = await mgmt.api('/api/overview');
//     assert.equal(r.status, 200);
//   });

import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import type { BrokerHandle } from '../../src/broker';

export interface ApiResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON, or undefined for an empty body. */
  json: any;
  text: string;
}

export interface ApiOptions {
  method?: string;
  /** Sent as JSON unless it is a string (sent as is). */
  body?: unknown;
  /** [user, password]; guest/guest by default, null for no Authorization header. */
  auth?: [string, string] | null;
  headers?: Record<string, string>;
}

export interface ManagementSuite {
  readonly handle: BrokerHandle;
  readonly base: string;
  readonly amqpUrl: string;
  api(path: string, options?: ApiOptions): Promise<ApiResponse>;
  /** amqp URL for another user and vhost. */
  amqpUrlFor(user: string, password: string, vhost?: string): string;
}

export function managementSuite(): ManagementSuite {
  let handle: BrokerHandle | undefined;
  before(async () => {
    const { startBroker } = await import('../../src/index');
    handle = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', managementPort: 0 });
  });
  after(async () => {
    await handle?.close();
  });
  const suite: ManagementSuite = {
    get handle(): BrokerHandle {
      if (handle === undefined) throw new Error('broker not started');
      return handle;
    },
    get base(): string {
      return `http://127.0.0.1:${suite.handle.managementPort}`;
    },
    get amqpUrl(): string {
      return suite.handle.url;
    },
    amqpUrlFor(user: string, password: string, vhost = '/'): string {
      return `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${suite.handle.port}/${encodeURIComponent(vhost)}`;
    },
    api: (path, options = {}) => request(suite.base, path, options),
  };
  return suite;
}

export async function request(base: string, path: string, options: ApiOptions = {}): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  const auth = options.auth === undefined ? ['guest', 'guest'] : options.auth;
  if (auth !== null) headers.authorization = `Basic ${Buffer.from(`${auth[0]}:${auth[1]}`).toString('base64')}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${base}${path}`, { method: options.method ?? 'GET', headers, body });
  const text = await res.text();
  let json: unknown;
  if (text !== '' && (res.headers.get('content-type') ?? '').includes('json')) json = JSON.parse(text);
  return { status: res.status, headers: res.headers, json, text };
}

/** A name unique to this run, so tests never collide. */
export function uniq(prefix = 't'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The vhost in a path segment, as RabbitMQ's clients encode it ('/' → %2F). */
export function enc(s: string): string {
  return encodeURIComponent(s);
}

/** Creates a user with tags and (optionally) full permissions on a vhost; returns its credentials. */
export async function addUser(
  suite: ManagementSuite,
  tags: string,
  permissions: { vhost: string; configure?: string; write?: string; read?: string } | null = { vhost: '/' },
): Promise<[string, string]> {
  const name = uniq(`u-${tags.replace(/,/g, '-') || 'none'}`);
  const password = uniq('pw');
  const r = await suite.api(`/api/users/${enc(name)}`, { method: 'PUT', body: { password, tags } });
  if (r.status !== 201) throw new Error(`could not create user: ${r.status} ${r.text}`);
  if (permissions !== null) {
    const p = await suite.api(`/api/permissions/${enc(permissions.vhost)}/${enc(name)}`, {
      method: 'PUT',
      body: { configure: permissions.configure ?? '.*', write: permissions.write ?? '.*', read: permissions.read ?? '.*' },
    });
    if (p.status !== 201) throw new Error(`could not set permissions: ${p.status} ${p.text}`);
  }
  return [name, password];
}

export async function waitFor(cond: () => Promise<boolean> | boolean, ms = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}
