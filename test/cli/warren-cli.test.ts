// The warren executable, as an operator meets it: exit statuses and what lands on stdout/stderr.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';

// Compiled, this file is dist/test/cli/warren-cli.test.js.
const ROOT = resolve(__dirname, '..', '..', '..');
const BIN = join(ROOT, 'bin', 'warren.js');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment without WARREN_* variables, so the caller's shell cannot change the outcome. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WARREN_')) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Runs bin/warren.js to completion. onStdout may act on output as it arrives (e.g. send a
 * signal once the broker says it listens); a run past timeoutMs is killed and fails the test.
 */
function runWarren(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number; onStdout?: (soFar: string, pid: number) => void } = {},
): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: cleanEnv(options.env) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (child.pid !== undefined) options.onStdout?.(stdout, child.pid);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`warren ${args.join(' ')} still running after ${options.timeoutMs ?? 10_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, options.timeoutMs ?? 10_000);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
  });
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') fail(new Error('no TCP address'));
      else done(address.port);
    });
  });
}

describe('warren --help and --version', () => {
  it('--help prints the usage with every flag, its variable and default, and exits 0', async () => {
    const run = await runWarren(['--help']);
    assert.equal(run.code, 0);
    assert.equal(run.stderr, '');
    const flat = run.stdout.replace(/\s+/g, ' '); // help wraps at 80 columns
    assert.match(flat, /^Usage: warren \[options\]/);
    assert.match(flat, /--port <port> .*WARREN_PORT, default: 5672\)/);
    assert.match(flat, /--data-dir <dir> .*WARREN_DATA_DIR, default: "\.\/data"\)/);
    assert.match(flat, /--in-memory /);
  });

  it('--help exits 0 even next to other flags', async () => {
    const run = await runWarren(['--port', '1', '--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^Usage: warren/);
  });

  it('--version prints the package version and exits 0', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const run = await runWarren(['--version']);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, `${pkg.version}\n`);
  });
});

describe('warren with a bad configuration', () => {
  it('a bad flag value exits 2 with one line on stderr', async () => {
    const run = await runWarren(['--port', 'abc']);
    assert.equal(run.code, 2);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, 'warren: invalid value for --port: "abc" (expected an integer 0-65535)\n');
  });

  it('an unknown flag exits 2 and names the flag', async () => {
    const run = await runWarren(['--bogus']);
    assert.equal(run.code, 2);
    assert.equal(run.stderr, "warren: unknown option '--bogus'\n");
  });

  it('a bad environment variable exits 2 and names the variable', async () => {
    const run = await runWarren([], { env: { WARREN_FRAME_MAX: '1024' } });
    assert.equal(run.code, 2);
    assert.equal(run.stderr, 'warren: invalid value for WARREN_FRAME_MAX: "1024" (expected an integer 4096-2147483647)\n');
  });

  it('a missing config file exits 2', async () => {
    const run = await runWarren(['--config', '/nonexistent/warren.json']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^warren: cannot read config file \/nonexistent\/warren\.json \(from --config\): ENOENT.*\n$/);
  });
});

// These two need a working startBroker.
describe('warren running a broker', () => {
  it('a port in use exits 1 with one clear line', async () => {
    const blocker = createServer();
    const port = await listen(blocker, 0, '127.0.0.1');
    try {
      const run = await runWarren(['--port', String(port), '--bind', '127.0.0.1', '--in-memory', '--management-port', '0', '--log-level', 'silent']);
      assert.equal(run.stderr, `warren: port ${port} on 127.0.0.1 is already in use\n`);
      assert.equal(run.code, 1);
    } finally {
      blocker.close();
    }
  });

  it('logs where it listens, and SIGTERM closes it with exit 0', async () => {
    let signalled = false;
    const run = await runWarren(['--port', '0', '--bind', '127.0.0.1', '--in-memory', '--management-port', '0'], {
      onStdout: (soFar, pid) => {
        if (!signalled && /listening for AMQP on amqp:\/\/127\.0\.0\.1:\d+/.test(soFar)) {
          signalled = true;
          process.kill(pid, 'SIGTERM');
        }
      },
    });
    assert.equal(run.stderr, '');
    assert.ok(signalled, `never logged a listening line; stdout: ${run.stdout}`);
    assert.equal(run.code, 0);
    const lines = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { level: string; msg: string });
    assert.ok(lines.some((l) => l.level === 'info' && l.msg.startsWith('listening for AMQP')));
  });
});
