// warrenctl's side of the management API: requests with Basic auth, errors turned into one
// line an operator can act on, and plain-text tables.

/** Why a request failed, so the executable can pick an exit status. */
export type FailureKind = 'unreachable' | 'refused' | 'not-found' | 'rejected';

export class ManagementError extends Error {
  override readonly name = 'ManagementError';
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface ClientOptions {
  url: string;
  user: string;
  password: string;
  /** Milliseconds before giving up on a request. */
  timeoutMs?: number;
}

export class ManagementClient {
  private readonly base: string;
  private readonly auth: string;

  constructor(private readonly options: ClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.auth = `Basic ${Buffer.from(`${options.user}:${options.password}`).toString('base64')}`;
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request('GET', path) as Promise<T>;
  }

  put(path: string, body: unknown): Promise<unknown> {
    return this.request('PUT', path, body);
  }

  post<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request('POST', path, body) as Promise<T>;
  }

  delete(path: string, headers: Record<string, string> = {}): Promise<unknown> {
    return this.request('DELETE', path, undefined, headers);
  }

  async request(method: string, path: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<unknown> {
    const headers: Record<string, string> = { authorization: this.auth, accept: 'application/json', ...extraHeaders };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(this.options.timeoutMs ?? 15_000) });
    } catch (err) {
      throw new ManagementError('unreachable', `cannot reach ${this.base}: ${describeFetchError(err)}`);
    }
    const text = await res.text();
    let json: unknown;
    if (text !== '') {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (res.ok) return json;
    const reason = reasonOf(json) ?? (text || res.statusText);
    if (res.status === 401 || res.status === 403) throw new ManagementError('refused', `refused: ${reason}`, res.status);
    if (res.status === 404) throw new ManagementError('not-found', `not found: ${method} ${path}`, res.status);
    throw new ManagementError('rejected', `${res.status}: ${reason}`, res.status);
  }
}

function reasonOf(json: unknown): string | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const reason = (json as { reason?: unknown }).reason;
  if (reason === undefined) return undefined;
  return (typeof reason === 'string' ? reason : JSON.stringify(reason)).trim();
}

function describeFetchError(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  if (cause?.code !== undefined) return cause.code;
  if (err instanceof Error && err.name === 'TimeoutError') return 'timed out';
  return cause?.message ?? (err instanceof Error ? err.message : String(err));
}

/** A path segment, as the API expects names ('/' → %2F). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

// ---- output --------------------------------------------------------------------------------

/** A dotted path into a row: 'message_stats.publish'. */
export function cell(row: Record<string, unknown>, column: string): string {
  let v: unknown = row;
  for (const part of column.split('.')) {
    if (typeof v !== 'object' || v === null) return '';
    v = (v as Record<string, unknown>)[part];
  }
  if (v === undefined || v === null) return '';
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object')) return v.join(',');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Left-aligned columns separated by two spaces, header first (rabbitmqctl's list layout). */
export function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  const cells = rows.map((r) => columns.map((c) => cell(r, c)));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]): string => values.map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(columns), ...cells.map(line)].join('\n') + '\n';
}
