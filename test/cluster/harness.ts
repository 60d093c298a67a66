// Processes for the cluster tests: etcd members and Warren nodes, each on loopback ports
// with its own temp dir, each stopped by PID whatever happens to the test that started it.
//
//   after(cleanupAll);                       // or track(t) inside a test
//   const etcd = await startEtcd({ members: 3 });
//   const a = await startNode({ etcd: etcd.endpoints, name: 'a', host: '127.0.0.2' });
//   await a.kill(); await a.restart();       // same ports and data dir
//
// Logs go to files (node.logFile, member.logFile), never to the test's stdout; startup
// failures carry the log tail. KEEP_CLUSTER_TEST_DIRS=1 keeps temp dirs for post-mortems.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { connect as tcpConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import { Etcd3 } from 'etcd3';

const ETCD_BIN = '/usr/bin/etcd';
// Compiled, this file is dist/test/cluster/harness.js; package.json's bin/warren.js only
// requires this same file, so spawning it directly saves one indirection.
const WARREN_BIN = resolve(__dirname, '..', '..', 'src', 'cli', 'warren.js');
const REPO_ROOT = resolve(__dirname, '..', '..', '..');

/** Set to keep temp dirs (data and logs) after the run, for post-mortems. */
const KEEP_DIRS = process.env['KEEP_CLUSTER_TEST_DIRS'] === '1';

// ---------------------------------------------------------------------------------------
// Registry: whatever is started is stopped, even when the test that started it throws.

interface Stoppable {
  stop(): Promise<void>;
}

const liveChildren = new Map<number, ChildProcess>();
const owners = new Set<Stoppable>();
const tempDirs = new Set<string>();

function killLeftoversSync(): void {
  for (const pid of liveChildren.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
  for (const dir of tempDirs) {
    try {
      if (!KEEP_DIRS) rmSync(dir, { recursive: true, force: true });
    } catch {
      // A child killed a moment ago may still be writing; a stray temp dir beats a throw in 'exit'.
    }
  }
  tempDirs.clear();
}

// The last line of defence: 'exit' handlers must be synchronous, so SIGKILL rather than
// the polite stop. Signals would otherwise kill this process and orphan the children.
process.on('exit', killLeftoversSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killLeftoversSync();
    process.kill(process.pid, sig);
  });
}

/** Stops every cluster and node still running and removes their temp dirs. Safe to call twice. */
export async function cleanupAll(): Promise<void> {
  const all = [...owners];
  owners.clear();
  const results = await Promise.allSettled(all.map((o) => o.stop()));
  // A stop that failed must still not leave a process behind.
  killLeftoversSync();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** Registers cleanupAll() to run after test `t` (or suite), pass or fail. */
export function track(t: { after(fn: () => Promise<void>): void }): void {
  t.after(cleanupAll);
}

function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  if (!KEEP_DIRS) rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------
// Small helpers

/** A port that was free on `host` a moment ago (listen on 0, read it, close). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        fail(new Error(`no port from listen on ${host}`));
        return;
      }
      server.close(() => done(address.port));
    });
  });
}

/** Several distinct free ports: the kernel may hand the same one out again once closed. */
async function freePorts(host: string, count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort(host));
  return [...ports];
}

function delay(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** The last `lines` lines of a log file, for failure messages. */
export function logTail(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines - 1).join('\n');
  } catch (err) {
    return `(no log at ${file}: ${(err as Error).message})`;
  }
}

function tcpAccepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((done) => {
    const sock = tcpConnect({ host, port });
    const finish = (ok: boolean): void => {
      sock.destroy();
      done(ok);
    };
    sock.setTimeout(timeoutMs, () => finish(false));
    sock.once('connect', () => finish(true));
    sock.once('error', () => finish(false));
  });
}

/** The environment minus variables that would override the flags we pass. */
function childEnv(dropPrefix: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith(dropPrefix)) env[k] = v;
  return { ...env, ...extra };
}

// ---------------------------------------------------------------------------------------
// One OS process, restartable with the same command line

interface Incarnation {
  child: ChildProcess;
  pid: number;
  exited: Promise<number | null>;
  done: boolean;
}

/**
 * A child whose stdout and stderr go straight to a log file: no pipe for the harness to
 * drain, so a frozen harness or a chatty child never blocks the other.
 */
class ManagedProcess {
  private current: Incarnation | undefined;

  constructor(
    private readonly label: string,
    private readonly command: string,
    private readonly env: NodeJS.ProcessEnv,
    readonly logFile: string,
    private readonly termGraceMs: number,
  ) {}

  spawn(args: string[]): void {
    if (this.current !== undefined && !this.current.done) throw new Error(`${this.label} is still running`);
    const fd = openSync(this.logFile, 'a');
    writeSync(fd, `\n===== harness: starting ${this.label} at ${new Date().toISOString()}: ${this.command} ${args.join(' ')}\n`);
    let child: ChildProcess;
    try {
      child = spawn(this.command, args, { cwd: REPO_ROOT, env: this.env, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${this.label}: spawn ${this.command} failed`);
    liveChildren.set(pid, child);
    const inc: Incarnation = {
      child,
      pid,
      done: false,
      exited: new Promise((done) => {
        child.once('exit', (code) => {
          inc.done = true;
          liveChildren.delete(pid);
          done(code);
        });
      }),
    };
    // An 'error' event without a listener would crash the test process.
    child.on('error', () => undefined);
    this.current = inc;
  }

  private get inc(): Incarnation {
    if (this.current === undefined) throw new Error(`${this.label} was never started`);
    return this.current;
  }

  get pid(): number {
    return this.inc.pid;
  }

  get exited(): Promise<number | null> {
    return this.inc.exited;
  }

  get running(): boolean {
    return this.current !== undefined && !this.current.done;
  }

  signal(sig: NodeJS.Signals): void {
    const inc = this.inc;
    if (inc.done) return;
    try {
      process.kill(inc.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /** SIGTERM, SIGKILL after the grace period; resolves once the process has exited. */
  async stop(): Promise<void> {
    if (!this.running) return;
    const inc = this.inc;
    this.signal('SIGTERM');
    // A frozen process would hold the SIGTERM pending until thawed.
    this.signal('SIGCONT');
    let timer: NodeJS.Timeout | undefined;
    const escalate = new Promise<void>((done) => {
      timer = setTimeout(done, this.termGraceMs);
    });
    const first = await Promise.race([inc.exited.then(() => 'exited' as const), escalate.then(() => 'timeout' as const)]);
    clearTimeout(timer);
    if (first === 'timeout') {
      this.signal('SIGKILL');
      await inc.exited;
    }
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.signal('SIGKILL');
    await this.inc.exited;
  }

  tail(lines = 40): string {
    return logTail(this.logFile, lines);
  }
}

/** Polls `probe` until it returns true, the process exits, or the deadline passes. */
async function waitReady(
  proc: ManagedProcess,
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void proc.exited.then((code) => {
    exitCode = code;
  });
  let lastError = '';
  while (Date.now() < deadline) {
    if (exitCode !== undefined || !proc.running) {
      throw new Error(`${what} exited (code ${String(exitCode)}) before it was ready; log tail:\n${proc.tail()}`);
    }
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    // A retry interval between probes, not a stand-in for an event: readiness has none.
    await Promise.race([delay(100), proc.exited]);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms (last error: ${lastError}); log tail:\n${proc.tail()}`);
}

// ---------------------------------------------------------------------------------------
// etcd

export interface EtcdMember {
  readonly name: string;
  /** PID of the current incarnation (changes on restart). */
  readonly pid: number;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly running: boolean;
  /** SIGTERM, SIGKILL after 3 s; resolves once exited. */
  stop(): Promise<void>;
  /** SIGKILL; resolves once exited. */
  kill(): Promise<void>;
  freeze(): void;
  thaw(): void;
  /**
   * Starts the member again on the same data dir and ports (stopping it first if running).
   * Resolves when its client port accepts connections, not when it has quorum: with the
   * rest of the cluster down or frozen it never would.
   */
  restart(): Promise<void>;
}

export interface EtcdCluster {
  /** Client URLs of all members, e.g. for `new Etcd3({ hosts: endpoints })`. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** Retries a put/get until it succeeds or timeoutMs (default 15 s) passes. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stops all members and removes the temp dir. */
  stop(): Promise<void>;
}

/**
 * A fresh client per probe: etcd3's default per-host circuit breaker would otherwise keep
 * refusing a host for a while after the failures expected while a cluster comes up.
 */
export async function etcdPutGet(endpoints: string[], deadlineMs: number): Promise<void> {
  const client = new Etcd3({ hosts: endpoints, dialTimeout: deadlineMs });
  try {
    const key = `harness/probe/${randomBytes(6).toString('hex')}`;
    const value = String(Date.now());
    await client.put(key).value(value).options({ deadline: Date.now() + deadlineMs });
    const got = await client.get(key).options({ deadline: Date.now() + deadlineMs }).string();
    if (got !== value) throw new Error(`etcd get ${key}: ${String(got)}, expected ${value}`);
    await client.delete().key(key).options({ deadline: Date.now() + deadlineMs });
  } finally {
    client.close();
  }
}

class EtcdMemberImpl implements EtcdMember {
  readonly proc: ManagedProcess;

  constructor(
    readonly name: string,
    readonly clientUrl: string,
    readonly peerUrl: string,
    readonly dataDir: string,
    logFile: string,
    private readonly initialCluster: string,
    private readonly clusterToken: string,
  ) {
    this.proc = new ManagedProcess(`etcd member ${name}`, ETCD_BIN, childEnv('ETCD_'), logFile, 3000);
  }

  get pid(): number {
    return this.proc.pid;
  }

  get logFile(): string {
    return this.proc.logFile;
  }

  get running(): boolean {
    return this.proc.running;
  }

  args(state: 'new' | 'existing'): string[] {
    return [
      '--name', this.name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', this.clientUrl,
      '--advertise-client-urls', this.clientUrl,
      '--listen-peer-urls', this.peerUrl,
      '--initial-advertise-peer-urls', this.peerUrl,
      '--initial-cluster', this.initialCluster,
      '--initial-cluster-state', state,
      // Unique per cluster so members of two test clusters can never join each other.
      '--initial-cluster-token', this.clusterToken,
      // Fast failure detection: tests kill and freeze members and want a new leader quickly.
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      // In 3.4's default periodic mode a bare number is hours; keeps long soak runs small.
      '--auto-compaction-mode', 'periodic',
      '--auto-compaction-retention', '1',
      // zap avoids capnslog's deprecation noise; stderr keeps journald out of it.
      '--logger', 'zap',
      '--log-outputs', 'stderr',
    ];
  }

  start(state: 'new' | 'existing'): void {
    this.proc.spawn(this.args(state));
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }

  kill(): Promise<void> {
    return this.proc.kill();
  }

  freeze(): void {
    this.proc.signal('SIGSTOP');
  }

  thaw(): void {
    this.proc.signal('SIGCONT');
  }

  async restart(): Promise<void> {
    await this.proc.stop();
    this.start('existing');
    const url = new URL(this.clientUrl);
    await waitReady(this.proc, `etcd member ${this.name}`, 15_000, () => tcpAccepts(url.hostname, Number(url.port), 500));
  }
}

/** Attempts at a launch whose only failure was a port taken between freePort() and bind. */
const PORT_RACE_ATTEMPTS = 3;

class PortInUseError extends Error {}

async function retryPortRaces<T>(launch: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch();
    } catch (err) {
      // Other test files run in parallel and also pick free ports; losing that race is
      // not the failure the test is about.
      if (!(err instanceof PortInUseError) || attempt >= PORT_RACE_ATTEMPTS) throw err;
    }
  }
}

export function startEtcd(opts: { members?: 1 | 3 } = {}): Promise<EtcdCluster> {
  return retryPortRaces(() => launchEtcd(opts.members ?? 1));
}

async function launchEtcd(count: number): Promise<EtcdCluster> {
  const host = '127.0.0.1';
  const dir = makeTempDir('warren-etcd-');
  const ports = await freePorts(host, count * 2);
  const token = `warren-test-${randomBytes(6).toString('hex')}`;
  const specs = Array.from({ length: count }, (_, i) => ({
    name: `etcd${i}`,
    clientUrl: `http://${host}:${ports[2 * i]}`,
    peerUrl: `http://${host}:${ports[2 * i + 1]}`,
  }));
  const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(',');
  const members = specs.map((s) => {
    const memberDir = join(dir, s.name);
    mkdirSync(memberDir, { mode: 0o700 });
    return new EtcdMemberImpl(s.name, s.clientUrl, s.peerUrl, join(memberDir, 'data'), join(memberDir, 'etcd.log'), initialCluster, token);
  });
  const endpoints = members.map((m) => m.clientUrl);

  const tails = (): string =>
    members.map((m) => `--- ${m.name} (${m.proc.running ? 'running' : 'exited'}):\n${m.proc.tail(20)}`).join('\n');
  /** atStartup: any member exiting is fatal, as a cluster short of one would hide it. */
  const waitHealthy = async (timeoutMs: number, atStartup: boolean): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const dead = members.filter((m) => !m.proc.running);
      // Nothing will ever answer then; say so now rather than at the deadline.
      if (dead.length === members.length || (atStartup && dead.length > 0)) {
        const logs = tails();
        const msg = `etcd member(s) ${dead.map((m) => m.name).join(', ')} exited\n${logs}`;
        throw logs.includes('address already in use') ? new PortInUseError(msg) : new Error(msg);
      }
      try {
        await etcdPutGet(endpoints, 1000);
        return;
      } catch (err) {
        last = (err as Error).message;
      }
      // A retry interval: etcd has no readiness event to wait on.
      await delay(100);
    }
    throw new Error(`etcd not healthy after ${timeoutMs} ms (last error: ${last})\n${tails()}`);
  };

  let stopped = false;
  const cluster: EtcdCluster & Stoppable = {
    endpoints,
    members,
    waitHealthy(timeoutMs = 15_000): Promise<void> {
      return waitHealthy(timeoutMs, false);
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      owners.delete(cluster);
      await Promise.all(members.map((m) => m.stop()));
      removeTempDir(dir);
    },
  };
  owners.add(cluster);
  try {
    for (const m of members) m.start('new');
    await waitHealthy(15_000, true);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

// ---------------------------------------------------------------------------------------
// Warren nodes

export interface StartNodeOptions {
  /** etcd client URLs; required unless standalone. */
  etcd?: string[];
  name: string;
  /** Interface to bind; any 127.x.y.z works on Linux loopback. Default 127.0.0.1. */
  host?: string;
  /** Kept (not removed) when given; a fresh temp dir otherwise. */
  dataDir?: string;
  extraArgs?: string[];
  /** Added to the environment, which has every WARREN_* variable of ours removed. */
  env?: NodeJS.ProcessEnv;
  /** Omit --cluster-etcd/--node-name/--cluster-port: a plain single broker. */
  standalone?: boolean;
  /** How long to wait for the AMQP handshake; default 20 s. */
  readyTimeoutMs?: number;
}

export interface WarrenNode {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly clusterPort: number;
  readonly managementPort: number;
  readonly dataDir: string;
  /** PID of the current incarnation (changes on restart). */
  readonly pid: number;
  /** amqp://guest:guest@host:port */
  readonly url: string;
  readonly logFile: string;
  /** Exit code of the current incarnation (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  readonly running: boolean;
  /** SIGTERM, SIGKILL after 5 s; resolves once exited. */
  stop(): Promise<void>;
  /** SIGKILL; resolves once exited. */
  kill(): Promise<void>;
  freeze(): void;
  thaw(): void;
  /** Starts again on the same ports and data dir (stopping first if running); waits ready. */
  restart(): Promise<void>;
  /** The last lines of the node's log. */
  tail(lines?: number): string;
}

/** One real AMQP handshake: a port that merely accepts TCP is not yet a broker. */
async function amqpHandshake(url: string, timeoutMs: number): Promise<boolean> {
  const conn = await amqp.connect(url, { timeout: timeoutMs });
  // Errors after a successful open must not escape as unhandled 'error' events.
  conn.on('error', () => undefined);
  await conn.close();
  return true;
}

export function startNode(opts: StartNodeOptions): Promise<WarrenNode> {
  return retryPortRaces(() => launchNode(opts));
}

async function launchNode(opts: StartNodeOptions): Promise<WarrenNode> {
  const host = opts.host ?? '127.0.0.1';
  if (opts.standalone !== true && (opts.etcd === undefined || opts.etcd.length === 0)) {
    throw new Error('startNode: etcd endpoints are required unless standalone');
  }
  const dir = makeTempDir(`warren-node-${opts.name}-`);
  const dataDir = opts.dataDir ?? join(dir, 'data');
  const [port, clusterPort, managementPort] = (await freePorts(host, 3)) as [number, number, number];
  const url = `amqp://guest:guest@${host}:${port}`;
  const args = [
    WARREN_BIN,
    '--port', String(port),
    '--bind', host,
    '--data-dir', dataDir,
    '--management-port', String(managementPort),
    '--log-level', 'info',
  ];
  if (opts.standalone !== true) {
    args.push('--cluster-etcd', (opts.etcd ?? []).join(','), '--node-name', opts.name, '--cluster-port', String(clusterPort));
  }
  args.push(...(opts.extraArgs ?? []));
  const proc = new ManagedProcess(`warren node ${opts.name}`, process.execPath, childEnv('WARREN_', opts.env), join(dir, 'warren.log'), 5000);
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;

  const launch = async (): Promise<void> => {
    proc.spawn(args);
    await waitReady(proc, `warren node ${opts.name}`, readyTimeoutMs, () => amqpHandshake(url, 1000));
  };

  let removed = false;
  const node: WarrenNode = {
    name: opts.name,
    host,
    port,
    clusterPort,
    managementPort,
    dataDir,
    url,
    logFile: proc.logFile,
    get pid() {
      return proc.pid;
    },
    get exited() {
      return proc.exited;
    },
    get running() {
      return proc.running;
    },
    stop: async () => {
      // Only the registry's final stop removes the dir: a test's stop() may precede restart().
      await proc.stop();
    },
    kill: () => proc.kill(),
    freeze: () => proc.signal('SIGSTOP'),
    thaw: () => proc.signal('SIGCONT'),
    restart: async () => {
      if (removed) throw new Error(`warren node ${opts.name} was cleaned up`);
      await proc.stop();
      await launch();
    },
    tail: (lines?: number) => proc.tail(lines),
  };
  // The registry's handle: stops the process and then removes the temp dir for good.
  const finalStop: Stoppable = {
    async stop(): Promise<void> {
      await proc.stop();
      removed = true;
      removeTempDir(dir);
    },
  };
  owners.add(finalStop);
  try {
    await launch();
    // Warren carries on without its management API when that port is taken, so the
    // race shows only in the log; tests that use the API would fail obscurely later.
    if (proc.tail(200).includes(`management port ${managementPort} is already in use`)) {
      throw new Error(`management port ${managementPort} is already in use`);
    }
  } catch (err) {
    owners.delete(finalStop);
    await finalStop.stop();
    // Warren's wording for EADDRINUSE on any of its listeners.
    if (err instanceof Error && /is already in use|EADDRINUSE/.test(err.message)) throw new PortInUseError(err.message);
    throw err;
  }
  return node;
}
