import { HttpError, notFound } from './errors';

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

interface Route<H> {
  method: Method;
  /** Literal segments, or ':name' for a parameter. */
  segments: string[];
  handler: H;
}

export interface Match<H> {
  handler: H;
  params: Record<string, string>;
}

/**
 * A small path router. Segments are matched after percent-decoding, one by one, so a vhost
 * named "/" travels as %2F and a routing key with '/' inside a properties key survives.
 */
export class Router<H> {
  private readonly routes: Route<H>[] = [];

  add(method: Method, pattern: string, handler: H): this {
    this.routes.push({ method, segments: pattern.split('/').filter((s) => s !== ''), handler });
    return this;
  }

  get(pattern: string, handler: H): this {
    return this.add('GET', pattern, handler);
  }

  put(pattern: string, handler: H): this {
    return this.add('PUT', pattern, handler);
  }

  post(pattern: string, handler: H): this {
    return this.add('POST', pattern, handler);
  }

  delete(pattern: string, handler: H): this {
    return this.add('DELETE', pattern, handler);
  }

  /**
   * The route for a raw path (no query). Throws 404 when nothing matches the path and 405
   * (with Allow, as RabbitMQ) when the path exists for other methods only.
   */
  match(method: string, rawPath: string): Match<H> {
    const segments = splitPath(rawPath);
    const allowed = new Set<string>();
    for (const r of this.routes) {
      const params = matchSegments(r.segments, segments);
      if (params === undefined) continue;
      if (r.method === method || (method === 'HEAD' && r.method === 'GET')) return { handler: r.handler, params };
      allowed.add(r.method);
    }
    if (allowed.size !== 0) {
      if (allowed.has('GET')) allowed.add('HEAD');
      throw new HttpError(405, 'method_not_allowed', 'Method Not Allowed', { allow: [...allowed].join(', ') });
    }
    throw notFound();
  }
}

function splitPath(rawPath: string): string[] {
  const parts = rawPath.split('/');
  // A leading '/' gives one empty part; a trailing '/' is tolerated.
  const out: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (p === '' && (i === 0 || i === parts.length - 1)) continue;
    try {
      out.push(decodeURIComponent(p));
    } catch {
      throw notFound();
    }
  }
  return out;
}

function matchSegments(pattern: string[], segments: string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segments[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = s;
    else if (p !== s) return undefined;
  }
  return params;
}
