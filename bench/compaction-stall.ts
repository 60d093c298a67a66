// Event-loop stalls caused by the message store's compaction (not part of npm run bench):
// publish a backlog of persistent messages, ack 90% of them while a timer keeps ticking, and
// report the longest gap the loop could not serve timers (perf_hooks.monitorEventLoopDelay)
// while the store rewrote its sparse segments.
//   node dist/bench/compaction-stall.js [messages=300000] [bytes=1024] [rounds=3]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { SegmentStore } from '../src/store/segment-store';

const Q = '/\u0000delayed';

function synced(s: SegmentStore): Promise<void> {
  return new Promise((resolve, reject) => s.afterSync((e) => (e === null ? resolve() : reject(e))));
}
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function round(count: number, size: number): Promise<{ maxMs: number; p99Ms: number; reclaimedMb: number; seconds: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-stall-'));
  try {
    const s = SegmentStore.open({ dir, segmentSize: 16 * 1024 * 1024, compactBelow: Number(process.env.STALL_COMPACT_BELOW ?? 0.5) });
    const body = Buffer.alloc(size, 97);
    const msg = { exchange: 'delayed', routingKey: 'k', properties: Buffer.from([0x10, 0x00, 0x02]), body };
    const ids: number[] = [];
    for (let i = 0; i < count; i++) {
      ids.push(s.publish(msg, [Q]));
      if (i % 2000 === 1999) await synced(s);
    }
    await synced(s);
    const full = s.stats().diskBytes;
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const started = Date.now();
    // Acks trickle in like deliveries of due delayed messages: 1 in 10 stays (not yet due).
    for (let i = 0; i < ids.length; i++) {
      if (i % 10 !== 0) s.ack(Q, ids[i]!);
      if (i % 1000 === 999) await turn();
    }
    await synced(s);
    // Until the disk use stops shrinking for a second: compaction has nothing left to do.
    let last = s.stats().diskBytes;
    for (let quiet = 0; quiet < 10; ) {
      await sleep(100);
      const now = s.stats().diskBytes;
      quiet = now === last ? quiet + 1 : 0;
      last = now;
    }
    h.disable();
    const seconds = (Date.now() - started) / 1000;
    await s.close();
    return { maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, reclaimedMb: (full - last) / 1048576, seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const [count = 300_000, size = 1024, rounds = 3] = process.argv.slice(2).map(Number);
  const results = [];
  for (let r = 0; r < rounds; r++) {
    const res = await round(count, size);
    results.push(res);
    console.log(`round ${r + 1}: max stall ${res.maxMs.toFixed(1)} ms, p99 ${res.p99Ms.toFixed(2)} ms, reclaimed ${res.reclaimedMb.toFixed(0)} MiB in ${res.seconds.toFixed(1)} s`);
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`median of ${rounds}: max stall ${med(results.map((r) => r.maxMs)).toFixed(1)} ms, p99 ${med(results.map((r) => r.p99Ms)).toFixed(2)} ms`);
}

void main();
