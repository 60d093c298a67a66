import type { IncomingMessage } from 'node:http';
import { badRequest, HttpError } from './errors';

/** RabbitMQ's default http.max_body_size is 20 MiB (definitions files can be large). */
export const MAX_BODY_BYTES = 20 * 1024 * 1024;

export async function readRaw(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'bad_request', `request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The request's JSON object. An empty body is {} (RabbitMQ allows PUT without a body). */
export function parseJsonObject(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw badRequest('not_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badRequest('not_json');
  return value as Record<string, unknown>;
}

/**
 * Typed access to a JSON request body with RabbitMQ's coercions and error reasons: booleans
 * may be true/false or "true"/"false" (rabbitmqadmin sends strings), integers may be numbers
 * or digit strings, and missing mandatory keys are reported together as [{key_missing,k}].
 */
export class Body {
  constructor(readonly raw: Record<string, unknown>) {}

  has(key: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.raw, key) && this.raw[key] !== undefined;
  }

  require(...keys: string[]): this {
    const missing = keys.filter((k) => !this.has(k));
    if (missing.length !== 0) throw badRequest(`[${missing.map((k) => `{key_missing,${k}}`).join(',')}]`);
    return this;
  }

  bool(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const v = this.raw[key];
    if (v === true || v === 'true') return true;
    if (v === false || v === 'false') return false;
    throw badRequest(['not_boolean', v]);
  }

  int(key: string): number | undefined;
  int(key: string, fallback: number): number;
  int(key: string, fallback?: number): number | undefined {
    if (!this.has(key)) return fallback;
    const v = this.raw[key];
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
    if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return Number(v);
    throw badRequest(['not_int', key]);
  }

  str(key: string): string | undefined;
  str(key: string, fallback: string): string;
  str(key: string, fallback?: string): string | undefined {
    if (!this.has(key)) return fallback;
    const v = this.raw[key];
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw badRequest(['not_string', key]);
  }

  /** A JSON object (arguments, definition); null counts as absent. */
  object(key: string): Record<string, unknown> | undefined {
    if (!this.has(key) || this.raw[key] === null) return undefined;
    const v = this.raw[key];
    if (typeof v !== 'object' || Array.isArray(v)) throw badRequest(['not_object', key]);
    return v as Record<string, unknown>;
  }

  /** Tags as RabbitMQ accepts them: "a,b" or ["a", "b"]. */
  tags(key: string): string[] {
    if (!this.has(key)) return [];
    return parseTags(this.raw[key], key);
  }
}

export function parseTags(v: unknown, key = 'tags'): string[] {
  if (typeof v === 'string') return v.split(',').map((t) => t.trim()).filter((t) => t !== '');
  if (Array.isArray(v) && v.every((t) => typeof t === 'string')) return (v as string[]).map((t) => t.trim()).filter((t) => t !== '');
  throw badRequest(['not_tags', key]);
}
