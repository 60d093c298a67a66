import type { IncomingMessage, ServerResponse } from 'node:http';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

/**
 * The UI's files are plain JS/CSS/HTML kept in src/http/ui; the compiled server reads them
 * from there (dist/src/http → ../../../src/http/ui), so `npm run build` needs no copy step.
 * A copy next to the compiled file (dist/src/http/ui) wins when present.
 */
function uiRoot(): string {
  const candidates = [join(__dirname, 'ui'), join(__dirname, '..', '..', '..', 'src', 'http', 'ui')];
  return candidates.find((c) => existsSync(join(c, 'index.html'))) ?? candidates[1]!;
}

const ROOT = uiRoot();

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export async function serveStatic(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-length': 0 });
    res.end();
    return;
  }
  const rel = path === '/' || path === '' ? 'index.html' : decodeSafe(path.slice(1));
  const file = rel === undefined ? undefined : normalize(join(ROOT, rel));
  const type = file === undefined ? undefined : TYPES[extname(file)];
  if (file === undefined || type === undefined || !file.startsWith(ROOT + sep)) {
    notFound(res);
    return;
  }
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch {
    notFound(res);
    return;
  }
  res.writeHead(200, { 'content-type': type, 'content-length': data.length, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
  res.end(req.method === 'HEAD' ? undefined : data);
}

function decodeSafe(s: string): string | undefined {
  try {
    const d = decodeURIComponent(s);
    return /^[A-Za-z0-9._/-]+$/.test(d) && !d.includes('..') ? d : undefined;
  } catch {
    return undefined;
  }
}

function notFound(res: ServerResponse): void {
  const body = JSON.stringify({ error: 'Object Not Found', reason: 'Not Found' });
  res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
