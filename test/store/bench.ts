// Storage benchmarks (not a test: does nothing unless given --run, so that `node --test`, which
// loads every file under test/, skips it). Meant to move to bench/ when the store is wired in.
//
//   node dist/test/store/bench.js --run [append] [recover] [memory] [--dir /path] [--count N]
//
// append   persistent 1 KiB messages with confirms through group commit: 1 and 4 publishers,
//          each with a window of 1000 unconfirmed messages, publishing in 64-message bursts
//          (what one socket read delivers), confirms only after fsync
// recover  1M × 1 KiB messages over 10 queues, then a fresh process opens the store and reads
//          the first message: time to serving, and RSS
// memory   10M small messages in one queue, then a fresh process recovers them: RSS and
//          index bytes per million (the index does not depend on body size)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentStore } from '../../src/store/segment-store';
import { message } from './helpers';

const args = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const at = args.indexOf(name);
  return at < 0 ? undefined : args[at + 1];
};

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

async function appendBench(dir: string, publishers: number, total: number): Promise<void> {
  const store = SegmentStore.open({ dir });
  const queues = Array.from({ length: publishers }, (_, i) => `/\u0000bench${i}`);
  const body = message(1, 1024);
  const window = 1000;
  const burst = 64;
  const outstanding = new Array<number>(publishers).fill(0);
  let published = 0;
  let confirmed = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    // One turn = one socket read per publisher; a publisher at its window waits for confirms.
    let scheduled = false;
    const schedule = (): void => {
      if (scheduled || published >= total) return;
      scheduled = true;
      setImmediate(turn);
    };
    const turn = (): void => {
      scheduled = false;
      let blocked = 0;
      for (let p = 0; p < publishers; p++) {
        const n = Math.min(burst, window - outstanding[p]!, total - published);
        if (n <= 0) {
          blocked++;
          continue;
        }
        for (let i = 0; i < n; i++) store.publish(body, [queues[p]!]);
        published += n;
        outstanding[p]! += n;
        store.afterSync(() => {
          outstanding[p]! -= n;
          confirmed += n;
          if (confirmed === total) resolve();
          schedule();
        });
      }
      if (blocked < publishers) schedule();
    };
    turn();
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const syncs = store.stats().syncs;
  await store.close();
  console.log(
    `append: ${publishers} publisher(s), ${total} × 1 KiB persistent, confirms after fsync: ` +
      `${Math.round(total / secs).toLocaleString('en')} msg/s (${((total * 1024) / secs / 1e6).toFixed(0)} MB/s), ` +
      `${syncs} fsync rounds (${Math.round(total / syncs)} msgs each), ` +
      `CPU ${((cpu.user + cpu.system) / total).toFixed(2)} µs/msg (user ${(cpu.user / total).toFixed(2)}, sys ${(cpu.system / total).toFixed(2)})`,
  );
}

async function fill(dir: string, count: number, size: number, queueCount: number): Promise<void> {
  const store = SegmentStore.open({ dir });
  const queues = Array.from({ length: queueCount }, (_, i) => `/\u0000q${i}`);
  const body = message(1, size);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    store.publish(body, [queues[i % queueCount]!]);
    if (i % 4096 === 4095) await new Promise((r) => setImmediate(r));
  }
  await new Promise<void>((r) => store.afterSync(() => r()));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`fill: ${count} × ${size} B over ${queueCount} queue(s) in ${secs.toFixed(1)} s (${Math.round(count / secs).toLocaleString('en')} msg/s, disk ${mb(store.stats().diskBytes)})`);
  await store.close();
}

/** In a fresh process: open, recover, read the first message; print timings and memory. */
/** Recovers and reads the first message; the snapshot dies with this frame. */
function openAndServe(dir: string): { store: SegmentStore; messages: number; openNs: bigint; firstNs: bigint; withSnapshot: number } {
  const t0 = process.hrtime.bigint();
  const store = SegmentStore.open({ dir });
  const recovered = store.recover();
  const t1 = process.hrtime.bigint();
  let messages = 0;
  let firstId = -1;
  for (const q of recovered.values()) {
    messages += q.ids.length;
    if (firstId < 0 && q.ids.length !== 0) firstId = q.ids[0]!;
  }
  store.read(firstId);
  const t2 = process.hrtime.bigint();
  gcHard();
  return { store, messages, openNs: t1 - t0, firstNs: t2 - t0, withSnapshot: process.memoryUsage().rss };
}

/** Several passes: the recovery read buffer and replaced index arrays go in later ones. */
function gcHard(): void {
  for (let i = 0; i < 4; i++) global.gc?.();
}

/** In a fresh process: open, recover, read the first message; print timings and memory. */
function childRecover(dir: string): void {
  const rss0 = process.memoryUsage().rss;
  const served = openAndServe(dir);
  gcHard();
  const mem = process.memoryUsage();
  const result = {
    messages: served.messages,
    openMs: Number(served.openNs) / 1e6,
    firstMessageMs: Number(served.firstNs) / 1e6,
    rssBefore: rss0,
    rssWithSnapshot: served.withSnapshot,
    rssAfter: mem.rss,
    heapUsed: mem.heapUsed,
    arrayBuffers: mem.arrayBuffers,
    indexBytes: served.store.indexBytes(),
  };
  process.stdout.write(JSON.stringify(result));
}

function recoverInChild(dir: string): {
  messages: number;
  openMs: number;
  firstMessageMs: number;
  rssBefore: number;
  rssWithSnapshot: number;
  rssAfter: number;
  heapUsed: number;
  arrayBuffers: number;
  indexBytes: number;
} {
  const r = spawnSync(process.execPath, ['--expose-gc', __filename, '--child-recover', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`recovery child failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function main(): Promise<void> {
  const child = option('--child-recover');
  if (child !== undefined) return childRecover(child);
  if (!args.includes('--run')) return;
  const base = option('--dir') ?? tmpdir();
  const all = !['append', 'recover', 'memory'].some((k) => args.includes(k));
  const fresh = (label: string): string => mkdtempSync(join(base, `warren-bench-${label}-`));

  if (all || args.includes('append')) {
    const total = Number(option('--count') ?? 500_000);
    for (const publishers of [1, 4]) {
      const dir = fresh('append');
      await appendBench(dir, publishers, total);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (all || args.includes('recover')) {
    const dir = fresh('recover');
    await fill(dir, 1_000_000, 1024, 10);
    const r = recoverInChild(dir);
    console.log(
      `recover: ${r.messages} × 1 KiB over 10 queues: store open + recover ${r.openMs.toFixed(0)} ms, ` +
        `first message read at ${r.firstMessageMs.toFixed(0)} ms; RSS ${mb(r.rssBefore)} → ${mb(r.rssAfter)}, index ${mb(r.indexBytes)}`,
    );
    rmSync(dir, { recursive: true, force: true });
  }
  if (all || args.includes('memory')) {
    const count = Number(option('--count') ?? 10_000_000);
    const dir = fresh('memory');
    await fill(dir, count, 16, 1);
    const r = recoverInChild(dir);
    const perMillion = ((r.rssAfter - r.rssBefore) / r.messages) * 1e6;
    console.log(
      `memory: ${r.messages} messages recovered in ${(r.openMs / 1000).toFixed(1)} s; RSS ${mb(r.rssBefore)} → ` +
        `${mb(r.rssWithSnapshot)} holding the recover() snapshot → ${mb(r.rssAfter)} without it ` +
        `= ${mb(perMillion)} per million; index ${mb(r.indexBytes)} (${(r.indexBytes / r.messages).toFixed(1)} B/msg), ` +
        `heap ${mb(r.heapUsed)}, array buffers ${mb(r.arrayBuffers)}`,
    );
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
