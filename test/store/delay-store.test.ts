import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { DelayStore, type DelaySchedule, type DelayStoreOptions, type Released } from '../../src/store/delay-store';
import { CapturingLogger, tempDir } from './helpers';

const KEY = '/\u0000dx\u0000x-delayed';
const T0 = 1_000_000;

function record(i: number, size = 16): { exchange: string; routingKey: string; properties: Buffer; body: Buffer; bcc: string[] | null; publishedAt: number } {
  const body = Buffer.alloc(size, 0x61);
  body.writeUInt32LE(i, 0);
  return { exchange: 'dx', routingKey: `k${i}`, properties: Buffer.from([0x10, 0x00, 0x02]), body, bcc: i % 7 === 0 ? ['b1', 'b2'] : null, publishedAt: T0 };
}

const idOf = (r: Released): number => r.body.readUInt32LE(0);

function synced(store: DelayStore): Promise<void> {
  return new Promise((resolve, reject) => store.afterSync((err) => (err === null ? resolve() : reject(err))));
}

/**
 * Releases everything due by `now` the way the exchange does: take while the head is due and
 * no unread bucket could hold anything earlier, else wait for the loader.
 */
async function releaseUntil(s: DelaySchedule, now: number): Promise<Released[]> {
  const out: Released[] = [];
  for (;;) {
    s.pump(now);
    const head = s.headDue();
    if (head <= now && head < s.frontier) {
      const r = s.take();
      if (r !== null) out.push(r);
      continue;
    }
    if (s.frontier <= now) {
      await new Promise<void>((resolve) => {
        s.onReady = resolve;
      });
      continue;
    }
    break;
  }
  s.settle();
  return out;
}

/** Lets settle()'s callbacks (routed copies durable, then watermark and unlinks) run. */
async function settled(store: DelayStore): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    await synced(store);
  }
}

function isOrdered(rs: readonly Released[]): boolean {
  for (let i = 1; i < rs.length; i++) {
    const a = rs[i - 1]!;
    const b = rs[i]!;
    if (a.due > b.due || (a.due === b.due && a.seq >= b.seq)) return false;
  }
  return true;
}

function open(dir: string, extra: Partial<DelayStoreOptions> = {}): DelayStore {
  return DelayStore.open({ dir, durable: true, bucketMs: 10, lookaheadMs: 20, ...extra });
}

describe('delay store', () => {
  it('releases in due order and equal due times in append order, across bucket boundaries', async (t) => {
    const store = open(tempDir(t, 'delay'));
    const s = store.schedule(KEY);
    // Dues on and either side of bucket edges (10 ms buckets), several per millisecond.
    const dues: number[] = [];
    for (let i = 0; i < 3000; i++) dues.push(T0 + ((i * 7919) % 200) + (i % 3 === 0 ? 0 : i % 2));
    dues.forEach((d, i) => s.append(record(i), d, i));
    assert.equal(s.pending, 3000);
    const got = await releaseUntil(s, T0 + 1000);
    assert.equal(got.length, 3000);
    assert.ok(isOrdered(got));
    for (const r of got) assert.equal(r.due, dues[idOf(r)]);
    assert.equal(got[0]!.routingKey, `k${idOf(got[0]!)}`);
    const withBcc = got.find((r) => idOf(r) === 7)!;
    assert.deepEqual(withBcc.bcc, ['b1', 'b2']);
    assert.equal(s.pending, 0);
    await settled(store);
    assert.ok(readdirSync(store.dir).filter((f) => f.endsWith('.log')).length <= 1, 'emptied segments are deleted');
    await store.close();
  });

  it('reads only the buckets within the lookahead, in bounded chunks', async (t) => {
    const store = open(tempDir(t, 'delay'), { bucketMs: 100, lookaheadMs: 100 });
    const s = store.schedule(KEY);
    for (let i = 0; i < 5000; i++) s.append(record(i, 512), T0 + (i % 50) * 100 + (i % 100), i);
    assert.equal(s.bucketCount, 50);
    await synced(store);
    const none = await releaseUntil(s, T0 - 500);
    assert.equal(none.length, 0);
    assert.equal(s.counters.bucketsLoaded, 0, 'nothing is read before its lookahead');
    const first = await releaseUntil(s, T0 + 99);
    assert.equal(first.length, 100);
    assert.ok(s.counters.bucketsLoaded <= 2, `read ${s.counters.bucketsLoaded} buckets for the first 100 ms`);
    // 100 messages of 560 B per bucket: a bucket is one chunk.
    assert.ok(s.counters.chunksRead <= 2);
    assert.ok(s.residentBytes() < 50 * (200 + 128 * 32) + 2 * 100 * 32 + 1000, `resident ${s.residentBytes()} B`);
    const rest = await releaseUntil(s, T0 + 10_000);
    assert.equal(rest.length, 4900);
    assert.ok(isOrdered([...first, ...rest]));
    await store.close();
  });

  it('merges messages appended to a bucket already read (short delays)', async (t) => {
    const store = open(tempDir(t, 'delay'), { durable: false });
    const s = store.schedule(KEY);
    for (let i = 0; i < 100; i++) s.append(record(i), T0 + 5 + (i % 5), i);
    const early = await releaseUntil(s, T0 + 6);
    assert.deepEqual(early.map(idOf), [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 1, 6, 11, 16, 21, 26, 31, 36, 41, 46, 51, 56, 61, 66, 71, 76, 81, 86, 91, 96]);
    // The bucket is in memory now: these go to the late heap and must interleave.
    for (let i = 100; i < 200; i++) s.append(record(i), T0 + 7 + (i % 3), i);
    assert.ok(s.counters.lateAppends >= 100);
    const rest = await releaseUntil(s, T0 + 100);
    assert.equal(rest.length, 160);
    assert.ok(isOrdered([...early, ...rest]));
    await store.close();
  });

  it('peeks pending messages in release order across the window, spilled buckets and tails, changing nothing', async (t) => {
    const store = open(tempDir(t, 'delay'), { segmentSize: 64 * 1024 });
    const s = store.schedule(KEY);
    // 4 buckets of 10 ms with 1500 entries each: every bucket spills (512 per batch) and
    // keeps a tail; equal due times many times over, around bucket edges.
    const dues: number[] = [];
    for (let i = 0; i < 6000; i++) dues.push(T0 + ((i * 7919) % 40));
    dues.forEach((d, i) => s.append(record(i), d, i));
    assert.ok(s.counters.spills >= 8, `spills ${s.counters.spills}`);
    // The first bucket is released in part; the next one is in the window (lookahead 20 ms).
    const early = await releaseUntil(s, T0 + 4);
    assert.ok(early.length > 0);
    // Short delays into buckets already read: the late heap.
    for (let i = 6000; i < 6050; i++) {
      dues.push(T0 + 5 + (i % 20));
      s.append(record(i), dues[i]!, i);
    }
    assert.ok(s.counters.lateAppends > 0);
    await synced(store);
    const released = new Set(early.map(idOf));
    const expected = dues
      .map((due, seq) => ({ due, seq }))
      .filter((e) => !released.has(e.seq))
      .sort((a, b) => a.due - b.due || a.seq - b.seq);
    const before = { ...s.counters, pending: s.pending, resident: s.residentBytes() };
    // Small counts stop inside the window or the first unread bucket; the large one reads all.
    for (const count of [1, 7, 1000, 2500, 10_000]) {
      const got = await s.peek(count);
      const want = expected.slice(0, count);
      assert.equal(got.length, want.length, `count ${count}`);
      got.forEach((g, i) => {
        assert.equal(g.seq, want[i]!.seq, `count ${count} at ${i}`);
        assert.equal(g.due, want[i]!.due);
        assert.equal(g.record.body.readUInt32LE(0), g.seq);
        assert.equal(g.record.routingKey, `k${g.seq}`);
      });
    }
    assert.deepEqual({ ...s.counters, pending: s.pending, resident: s.residentBytes() }, before, 'peek loads, releases and spills nothing');
    // Releasing afterwards gives exactly the order peek showed.
    const rest = await releaseUntil(s, T0 + 1000);
    assert.deepEqual(rest.map(idOf), expected.map((e) => e.seq));
    assert.deepEqual(await s.peek(10), []);
    await store.close();
  });

  it('never releases a message before the last release, even if the clock stepped back', async (t) => {
    const store = open(tempDir(t, 'delay'));
    const s = store.schedule(KEY);
    s.append(record(0), T0 + 50, 0);
    const first = await releaseUntil(s, T0 + 60);
    assert.equal(first.length, 1);
    s.append(record(1), T0 + 10, 1);
    const [late] = await releaseUntil(s, T0 + 60);
    assert.equal(late!.due, T0 + 50);
    await store.close();
  });

  it('recovers pending messages after a restart, without releasing any twice', async (t) => {
    const dir = tempDir(t, 'delay');
    let store = open(dir);
    let s = store.schedule(KEY);
    for (let i = 0; i < 2000; i++) s.append(record(i), T0 + (i % 400), i);
    await synced(store);
    const before = await releaseUntil(s, T0 + 149);
    assert.equal(before.length, 750);
    await store.close();

    store = open(dir);
    s = store.schedule(KEY);
    assert.equal(s.pending, 1250);
    assert.equal(s.maxSeq, 1999);
    const after = await releaseUntil(s, T0 + 10_000);
    assert.equal(after.length, 1250);
    assert.ok(isOrdered([...before, ...after]));
    const seen = new Set([...before, ...after].map(idOf));
    assert.equal(seen.size, 2000);
    await settled(store);
    await store.close();
    store = open(dir);
    assert.equal(store.schedule(KEY).pending, 0);
    await store.close();
  });

  it('keeps every synced message through a crash (reopen without close) and cuts a torn tail', async (t) => {
    const dir = tempDir(t, 'delay');
    const crashed = open(dir);
    const s = crashed.schedule(KEY);
    for (let i = 0; i < 500; i++) s.append(record(i, 200), T0 + 100 + (i % 30), i);
    await synced(crashed);
    // Appended but never written: lost in the crash, and never confirmed.
    for (let i = 500; i < 600; i++) s.append(record(i, 200), T0 + 100 + (i % 30), i);
    // A torn write at the end of one bucket.
    const bucket = readdirSync(dir).find((f) => f.endsWith('.log'))!;
    const size = statSync(join(dir, bucket)).size;
    appendFileSync(join(dir, bucket), Buffer.alloc(57, 0xee));
    const logger = new CapturingLogger();
    const store = open(dir, { logger });
    assert.equal(statSync(join(dir, bucket)).size, size, 'the torn record is cut off');
    assert.match(logger.text(), /torn or corrupt tail/);
    const r = store.schedule(KEY);
    assert.equal(r.pending, 500);
    const got = await releaseUntil(r, T0 + 1000);
    assert.deepEqual(new Set(got.map(idOf)), new Set(Array.from({ length: 500 }, (_, i) => i)));
    assert.ok(isOrdered(got));
    await store.close();
  });

  it('cuts a record torn in the middle of a bucket file', async (t) => {
    const dir = tempDir(t, 'delay');
    let store = open(dir);
    const s = store.schedule(KEY);
    for (let i = 0; i < 10; i++) s.append(record(i, 100), T0 + 1, i);
    await store.close();
    const bucket = join(dir, readdirSync(dir).find((f) => f.endsWith('.log'))!);
    truncateSync(bucket, statSync(bucket).size - 50);
    store = open(dir);
    assert.equal(store.schedule(KEY).pending, 9);
    await store.close();
  });

  it('drops a schedule with all its files', async (t) => {
    const dir = tempDir(t, 'delay');
    const store = open(dir);
    const s = store.schedule(KEY);
    for (let i = 0; i < 100; i++) s.append(record(i), T0 + i * 3, i);
    await releaseUntil(s, T0 + 30);
    await settled(store);
    assert.ok(readdirSync(dir).some((f) => f.endsWith('.wm')));
    s.drop();
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(store.pending, 0);
    await store.close();
  });

  it('rolls log segments and deletes each once all its messages are released', async (t) => {
    const dir = tempDir(t, 'delay');
    const store = open(dir, { segmentSize: 8 * 1024 });
    const s = store.schedule(KEY);
    // Published in order, due in reverse order of publication by segment.
    for (let i = 0; i < 400; i++) s.append(record(i, 200), T0 + 1000 - Math.floor(i / 40) * 50, i);
    const logs = (): number => readdirSync(dir).filter((f) => f.endsWith('.log')).length;
    assert.ok(s.segmentCount >= 10, `${s.segmentCount} segments`);
    const first = await releaseUntil(s, T0 + 650);
    assert.equal(first.length, 40 * 3);
    await settled(store);
    assert.ok(s.counters.segmentsDeleted >= 2, `${s.counters.segmentsDeleted} deleted`);
    const rest = await releaseUntil(s, T0 + 5000);
    assert.equal(rest.length, 280);
    await settled(store);
    assert.ok(logs() <= 1, `${logs()} log files left`);
    await store.close();
  });

  it('spills the index of far buckets to disk and keeps little of it in memory', async (t) => {
    const dir = tempDir(t, 'delay');
    const store = open(dir, { bucketMs: 1000, lookaheadMs: 1000 });
    const s = store.schedule(KEY);
    for (let i = 0; i < 20_000; i++) s.append(record(i, 8), T0 + 5000 + (i % 10) * 1000 + (i % 997), i);
    assert.ok(s.counters.spills >= 30, `${s.counters.spills} spills`);
    assert.ok(s.residentBytes() < 10 * (200 + 512 * 32) + 2000, `resident ${s.residentBytes()} B for 20,000 pending`);
    const idxFiles = (): number => readdirSync(dir).filter((f) => f.endsWith('.idx')).length;
    // Spills and their removal run on the thread pool: wait for the files, not for a time.
    while (idxFiles() < 10) await new Promise((r) => setTimeout(r, 10));
    const got = await releaseUntil(s, T0 + 100_000);
    assert.equal(got.length, 20_000);
    assert.ok(isOrdered(got));
    await store.close();
    while (idxFiles() !== 0) await new Promise((r) => setTimeout(r, 10));
  });

  it('matches a sorted-list model under random appends, releases and restarts (property)', async (t) => {
    const root = tempDir(t, 'delay-prop');
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('append' as const), delay: fc.integer({ min: 1, max: 120 }), n: fc.integer({ min: 1, max: 20 }) }),
            fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 60 }) }),
            fc.record({ op: fc.constant('restart' as const), settle: fc.boolean() }),
          ),
          { maxLength: 40 },
        ),
        async (ops) => {
          const dir = join(root, String(run++));
          let store = open(dir, { bucketMs: 8, lookaheadMs: 8, segmentSize: 4096 });
          let s = store.schedule(KEY);
          let now = T0;
          let seq = 0;
          const model: Array<{ due: number; seq: number }> = [];
          const released: Released[] = [];
          const check = async (): Promise<void> => {
            const got = await releaseUntil(s, now);
            const expected = model.filter((m) => m.due <= now).sort((a, b) => a.due - b.due || a.seq - b.seq);
            assert.deepEqual(got.map((r) => [r.due, r.seq]), expected.map((m) => [m.due, m.seq]));
            for (const e of expected) model.splice(model.indexOf(e), 1);
            released.push(...got);
          };
          for (const o of ops) {
            if (o.op === 'append') {
              for (let i = 0; i < o.n; i++) {
                const due = now + o.delay;
                model.push({ due, seq });
                s.append(record(seq), due, seq);
                seq++;
              }
            } else if (o.op === 'advance') {
              now += o.ms;
              await check();
            } else {
              // Without settling, close() itself records the last release.
              if (o.settle) await settled(store);
              await store.close();
              store = open(dir, { bucketMs: 8, lookaheadMs: 8, segmentSize: 4096 });
              s = store.schedule(KEY);
              assert.equal(s.pending, model.length);
            }
          }
          now += 1000;
          await check();
          assert.equal(model.length, 0);
          assert.ok(isOrdered(released));
          await store.close();
        },
      ),
      { numRuns: 40 },
    );
  });
});
