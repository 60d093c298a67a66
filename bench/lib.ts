// Helpers for the benchmark scripts: the machine, a Warren child process, a RabbitMQ to compare
// with, and medians.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, createWriteStream } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { join, resolve } from 'node:path';
import { PerfConnection, parseAmqpUrl } from '../src/perf/connection';

export const ROOT = resolve(__dirname, '..', '..');

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function envNumber(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${v}"`);
  return n;
}

function run(cmd: string, args: string[], timeoutMs = 30000): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      done({ code, out: `${stdout}${stderr}` });
    });
  });
}

export interface Machine {
  cpu: string;
  cores: number;
  ramGb: number;
  os: string;
  kernel: string;
  node: string;
  warren: string;
}

export async function machine(): Promise<Machine> {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1]!.trim();
  } catch {
    // not Linux
  }
  let osName = `${os.type()} ${os.release()}`;
  try {
    const m = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (m) osName = m[1]!;
  } catch {
    // keep uname
  }
  let warren = 'unknown';
  try {
    warren = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const rev = await run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], 5000);
    if (rev.code === 0) {
      const dirty = await run('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], 5000);
      warren += ` (${rev.out.trim()}${dirty.out.trim() ? ', uncommitted changes' : ''})`;
    }
  } catch {
    // no git
  }
  return {
    cpu,
    cores: typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length,
    ramGb: Math.round(os.totalmem() / 2 ** 30),
    os: osName,
    kernel: os.release(),
    node: process.version,
    warren,
  };
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = net.createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => done(port));
    });
  });
}

/** Waits until an AMQP handshake succeeds; resolves with the server's product and version. */
export async function waitForAmqp(url: string, timeoutMs: number, alive: () => boolean = () => true, pollMs = 200): Promise<{ product: string; version: string }> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until && alive()) {
    try {
      const c = await PerfConnection.open(parseAmqpUrl(url), { timeoutMs: 3000 });
      const info = c.server;
      await c.close();
      return info;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(pollMs);
  }
  throw new Error(`no AMQP broker at ${url.replace(/\/\/[^@]*@/, '//')} after ${timeoutMs} ms: ${last}`);
}

/** Warren as a child process with a fresh data directory, so its CPU and memory are its own. */
export class WarrenProcess {
  child: ChildProcess | null = null;
  url = '';
  pid = 0;
  exitInfo: string | null = null;
  readonly dir: string;
  private logPath = '';
  private starts = 0;
  private dataDir = '';

  constructor() {
    this.dir = mkdtempSync(join(os.tmpdir(), 'warren-bench-'));
  }

  get alive(): boolean {
    return this.child !== null && this.exitInfo === null;
  }

  /**
   * Starts Warren with a fresh data directory, or (reuseData) with the last one, as after a
   * crash. Resolves once it answers an AMQP handshake (polled every pollMs, for at most timeoutMs).
   */
  async start(o: { reuseData?: boolean; timeoutMs?: number; pollMs?: number } = {}): Promise<void> {
    if (!o.reuseData || this.dataDir === '') this.dataDir = join(this.dir, `data-${this.starts + 1}`);
    this.starts++;
    const port = await freePort();
    const dataDir = this.dataDir;
    this.logPath = join(this.dir, `warren-${this.starts}.log`);
    const out = createWriteStream(this.logPath);
    const child = spawn(
      process.execPath,
      [join(ROOT, 'dist', 'src', 'cli', 'warren.js'), '--port', String(port), '--bind', '127.0.0.1', '--management-port', '0', '--data-dir', dataDir, '--log-level', 'warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    this.exitInfo = null;
    child.on('exit', (code, signal) => {
      this.exitInfo = signal ? `killed by ${signal}` : `exited with status ${code}`;
    });
    this.child = child;
    this.pid = child.pid ?? 0;
    this.url = `amqp://guest:guest@127.0.0.1:${port}`;
    try {
      await waitForAmqp(this.url, o.timeoutMs ?? 20000, () => this.exitInfo === null, o.pollMs ?? 200);
    } catch (err) {
      await sleep(200);
      throw new Error(`Warren did not start (${this.exitInfo ?? 'no AMQP answer'}): ${err instanceof Error ? err.message : String(err)}\n${this.logTail(10)}`);
    }
  }

  /** The last lines of the broker's log (for reporting a failure). */
  logTail(lines = 15): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  get logFile(): string {
    return this.logPath;
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (c === null || this.exitInfo !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }

  /** kill -9, and wait until the process is gone. */
  async kill9(): Promise<void> {
    const c = this.child;
    if (c === null || this.exitInfo !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await exited;
  }

  async dispose(keepLogs: boolean): Promise<void> {
    await this.stop();
    if (!keepLogs) rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Rabbit {
  url: string;
  pid: number;
  version: string;
  startedByUs: boolean;
}

function findExecutable(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

/**
 * A RabbitMQ to compare with: the one at BENCH_RABBITMQ_URL (default guest@127.0.0.1:5672) if it
 * answers, else one started with `rabbitmq-server -detached`. null (with a reason) if there is
 * none.
 */
export async function ensureRabbit(): Promise<Rabbit | string> {
  if (process.env.BENCH_RABBITMQ === '0') return 'skipped (BENCH_RABBITMQ=0)';
  const url = process.env.BENCH_RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672';
  const ctl = findExecutable('rabbitmqctl');
  const server = findExecutable('rabbitmq-server');
  let startedByUs = false;
  let info: { product: string; version: string } | null = null;
  try {
    info = await waitForAmqp(url, 1500);
  } catch {
    if (!server || !ctl) return 'RabbitMQ is not installed (no rabbitmq-server on PATH); install it with `apt-get install rabbitmq-server`';
    log('starting RabbitMQ (rabbitmq-server -detached)');
    const r = await run(server, ['-detached'], 30000);
    if (r.code !== 0) return `rabbitmq-server -detached failed: ${r.out.trim().slice(0, 300)}`;
    startedByUs = true;
    await run(ctl, ['await_startup', '--timeout', '120'], 130000);
    try {
      info = await waitForAmqp(url, 60000);
    } catch (err) {
      return `RabbitMQ did not come up: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  let pid = 0;
  if (ctl) {
    const r = await run(ctl, ['eval', 'os:getpid().'], 20000);
    const m = /"(\d+)"/.exec(r.out);
    if (m) pid = Number(m[1]);
  }
  if (pid === 0) pid = pidListeningOn(Number(new URL(url).port || 5672));
  return { url, pid, version: info.version, startedByUs };
}

/** The pid of the process listening on a TCP port, from /proc (0 if not found). */
export function pidListeningOn(port: number): number {
  try {
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    const inodes = new Set<string>();
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') inodes.add(cols[9]!);
      }
    }
    const { readdirSync, readlinkSync } = require('node:fs') as typeof import('node:fs');
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      try {
        for (const fd of readdirSync(`/proc/${p}/fd`)) {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
          if (m && inodes.has(m[1]!)) return Number(p);
        }
      } catch {
        // not ours to read
      }
    }
  } catch {
    // not Linux
  }
  return 0;
}

export async function stopRabbit(r: Rabbit): Promise<void> {
  const ctl = findExecutable('rabbitmqctl');
  if (ctl && r.startedByUs) {
    log('stopping the RabbitMQ we started (rabbitmqctl stop)');
    await run(ctl, ['stop'], 60000);
  }
}
