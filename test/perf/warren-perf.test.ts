// warren-perf against an embedded Warren: messages flow, confirms arrive, counts are exact
// with -C/-D, the JSON summary parses, queues are deleted afterwards. Plus the histogram and
// topic-key arithmetic. Each run is ~1 s or less.

import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { startBroker } from '../../src/index';
import type { BrokerHandle } from '../../src/broker';
import { PerfConnection, parseAmqpUrl } from '../../src/perf/connection';
import { HIST_BUCKETS, bucketOf, bucketValue, summarize } from '../../src/perf/histogram';
import { defaultOptions, parseArgs, type PerfOptions } from '../../src/perf/options';
import { runPerf } from '../../src/perf/runner';
import { topicBindingKey, topicRoutingKey } from '../../src/perf/topology';

const BIN = resolve(__dirname, '..', '..', '..', 'bin', 'warren-perf.js');

function opts(url: string, o: Partial<PerfOptions>): PerfOptions {
  return { ...defaultOptions(), uri: url, quiet: true, grace: 5, setupTimeout: 5, ...o };
}

/** Whether a queue exists (passive declare on a fresh connection). */
async function queueExists(url: string, name: string): Promise<boolean> {
  const c = await PerfConnection.open(parseAmqpUrl(url), { timeoutMs: 3000 });
  try {
    await c.openChannel(1);
    await c.queueDeclare(1, name, { passive: true });
    return true;
  } catch {
    return false;
  } finally {
    await c.close();
  }
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 15000);
    p.on('error', fail);
    p.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe('warren-perf against an embedded broker', () => {
  let broker: BrokerHandle;
  before(async () => {
    broker = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent' });
  });
  after(async () => {
    await broker?.close();
  });

  it('moves an exact number of messages with confirms and multi-acks', async () => {
    const s = await runPerf(
      opts(broker.url, { producers: 1, consumers: 1, pmessages: 5000, cmessages: 5000, confirm: 200, prefetch: 100, multiAck: 10, duration: 8 }),
    );
    assert.equal(s.errors, 0, s.first_error);
    assert.equal(s.sent, 5000);
    assert.equal(s.confirmed, 5000);
    assert.equal(s.nacked, 0);
    assert.equal(s.received, 5000);
    assert.ok(s.latency_us.samples >= 5000, `latency samples ${s.latency_us.samples}`);
    assert.ok(s.latency_us.p50 > 0 && s.latency_us.p50 <= s.latency_us.p99 && s.latency_us.p99 <= s.latency_us.max);
    assert.equal(s.timed_out, false);
    assert.equal(s.cleanup_failed, 0);
    assert.equal(await queueExists(broker.url, `${s.queue_prefix}-q0`), false, 'queue deleted after the run');
  });

  it('routes topic messages through mixed */# bindings, one queue per message', async () => {
    // 40 bindings over 4 queues; the producer cycles over the 40 keys, so each queue gets a quarter.
    const s = await runPerf(
      opts(broker.url, {
        producers: 1,
        consumers: 4,
        queues: 4,
        exchangeType: 'topic',
        topicBindings: 40,
        pmessages: 400,
        cmessages: 100,
        confirm: 100,
        autoack: true,
        duration: 8,
      }),
    );
    assert.equal(s.errors, 0, s.first_error);
    assert.equal(s.confirmed, 400);
    assert.equal(s.received, 400);
  });

  it('prints a JSON summary that parses (CLI, fan-out, time-bounded)', async () => {
    const r = await runCli(['-h', broker.url, '-x1', '-y2', '--queues', '2', '-t', 'fanout', '-a', '-z', '1.5', '-r', '2000', '--json', '--id', 'test']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'one JSON line on stdout');
    const s = JSON.parse(lines[0]!) as Record<string, unknown> & { latency_us: Record<string, number> };
    assert.equal(s.tool, 'warren-perf');
    assert.equal(s.id, 'test');
    assert.equal(s.exchange_type, 'fanout');
    assert.ok((s.sent as number) > 1000, `sent ${String(s.sent)}`);
    // fan-out: every message reaches both queues
    assert.ok((s.received as number) >= 1.8 * (s.sent as number), `received ${String(s.received)} of ${String(s.sent)} x 2`);
    assert.ok((s.latency_us.samples ?? 0) > 0);
    for (const k of ['elapsed_s', 'sent_rate', 'recv_rate', 'client_cpu_s', 'errors', 'timed_out']) assert.ok(k in s, k);
    assert.match(r.stderr, /^time 1\.0 s, sent [\d,]+ msg\/s/m, 'progress lines go to stderr with --json');
  });
});

describe('warren-perf options', () => {
  it('accepts PerfTest-style flags', () => {
    const r = parseArgs(['-h', 'amqp://u:p@localhost:5673/v', '-x2', '-y', '3', '-s', '1024', '-z', '5', '-c', '100', '-f', 'persistent', '-q', '50', '-A', '10', '-t', 'topic', '-r', '100', '-R', '50']);
    assert.equal(r.kind, 'run');
    if (r.kind !== 'run') return;
    const o = r.options;
    assert.deepEqual(
      [o.uri, o.producers, o.consumers, o.size, o.duration, o.confirm, o.persistent, o.prefetch, o.multiAck, o.exchangeType, o.rate, o.consumerRate],
      ['amqp://u:p@localhost:5673/v', 2, 3, 1024, 5, 100, true, 50, 10, 'topic', 100, 50],
    );
    assert.deepEqual(parseAmqpUrl(o.uri), { host: 'localhost', port: 5673, user: 'u', pass: 'p', vhost: 'v' });
  });

  it('refuses -A larger than -q and unknown flags', () => {
    assert.throws(() => parseArgs(['-q', '10', '-A', '20']), /deadlock/);
    assert.throws(() => parseArgs(['--bogus']), /unknown option/);
    assert.throws(() => parseArgs(['-f', 'sticky']), /persistent or transient/);
  });
});

describe('latency histogram', () => {
  it('keeps every value within 1.6 % of its bucket', () => {
    for (const v of [0, 1, 127, 128, 129, 1000, 65_432, 1e6, 4294967295, 4294967296, 5e9, 3.6e12]) {
      const b = bucketOf(v);
      assert.ok(b >= 0 && b < HIST_BUCKETS);
      const mid = bucketValue(b);
      assert.ok(Math.abs(mid - v) <= Math.max(1, v * 0.016), `${v} -> bucket ${b} (${mid})`);
    }
    for (let v = 1; v < 1e13; v *= 1.37) assert.ok(bucketOf(v * 1.01) >= bucketOf(v), 'monotonic');
  });

  it('summarizes percentiles in microseconds', () => {
    const h = new Float64Array(HIST_BUCKETS);
    for (let i = 1; i <= 100; i++) h[bucketOf(i * 1000)]!++;
    const s = summarize(h, 5050 * 1000);
    assert.equal(s.samples, 100);
    assert.ok(Math.abs(s.p50 - 50) < 1, `p50 ${s.p50}`);
    assert.ok(Math.abs(s.p99 - 99) < 1.6, `p99 ${s.p99}`);
    assert.equal(s.mean, 50.5);
  });
});

describe('topic bindings', () => {
  // A reference matcher for AMQP topic patterns.
  const matches = (pattern: string, key: string): boolean => {
    const p = pattern.split('.');
    const k = key.split('.');
    const m = (i: number, j: number): boolean => {
      if (i === p.length) return j === k.length;
      if (p[i] === '#') return m(i + 1, j) || (j < k.length && m(i, j + 1));
      return j < k.length && (p[i] === '*' || p[i] === k[j]) && m(i + 1, j + 1);
    };
    return m(0, 0);
  };

  it('each routing key matches exactly its own binding, with a mix of * and # patterns', () => {
    const n = 1000;
    const patterns = Array.from({ length: n }, (_, j) => topicBindingKey(j, n));
    assert.ok(patterns.some((p) => p.includes('*')) && patterns.some((p) => p.includes('#')));
    for (const j of [0, 1, 2, 3, 17, 998, 999]) {
      const key = topicRoutingKey(j, n);
      const hits = patterns.flatMap((p, i) => (matches(p, key) ? [i] : []));
      assert.deepEqual(hits, [j], `${key}`);
    }
  });
});
