// Incremental compaction: publishes, acks, deletes and reads interleaved with its steps, a
// crash (a copy of the directory taken at each step) or a close at any point, and the bound
// on the work of one step. Small segments and tiny steps make every run take many turns.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import fc from 'fast-check';
import type { CompactionStep } from '../../src/store/compaction';
import { SegmentStore, type SegmentStoreOptions } from '../../src/store/segment-store';
import { CapturingLogger, checkBody, message, nextTurn, prng, synced, tempDir } from './helpers';

const QUEUES = ['/\u0000a', '/\u0000b', '/\u0000c'];

/** What the store must hold: per queue, live id → delivered. */
type Model = Map<string, Map<number, boolean>>;

function emptyModel(): Model {
  return new Map(QUEUES.map((q) => [q, new Map<number, boolean>()]));
}

/** The recovered contents must equal the model exactly (a clean close loses nothing). */
function assertEqualsModel(store: SegmentStore, model: Model, where: string): void {
  assert.deepEqual(store.checkInvariants(), [], where);
  const recovered = store.recover();
  for (const q of QUEUES) {
    const r = recovered.get(q);
    const got = r === undefined ? [] : Array.from(r.ids, (id, i) => [id, r.redelivered[i] === 1] as const);
    const want = [...model.get(q)!].sort((x, y) => x[0] - y[0]);
    assert.deepEqual(got, want, `${where}: queue ${JSON.stringify(q)}`);
    for (const [id] of want) checkBody(store.read(id).body);
  }
}

/** Messages whose body says which message they are: n is the id they were published as. */
function publishMany(store: SegmentStore, model: Model, count: number, rnd: () => number, maxSize = 1500): number[] {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    const targets = QUEUES.filter(() => rnd() < 0.5);
    if (targets.length === 0) targets.push(QUEUES[Math.floor(rnd() * QUEUES.length)]!);
    const id = store.publish(message(i, 20 + Math.floor(rnd() * maxSize)), targets);
    for (const q of targets) model.get(q)!.set(id, false);
    ids.push(id);
  }
  return ids;
}

function liveIds(model: Model, q: string): number[] {
  return [...model.get(q)!.keys()].sort((a, b) => a - b);
}

/** Acks all but every keepEvery-th live message of every queue. */
function ackMost(store: SegmentStore, model: Model, keepEvery: number): void {
  for (const q of QUEUES) {
    for (const id of liveIds(model, q)) {
      if (id % keepEvery === 0) continue;
      store.ack(q, id);
      model.get(q)!.delete(id);
    }
  }
}

/** Compaction starts after the group commit that made the acks durable, however long the fsync takes. */
async function untilCompacting(store: SegmentStore): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!store.compactionRunning() && Date.now() < deadline) await nextTurn();
  assert.ok(store.compactionRunning(), 'no compaction started');
}

const SMALL: Partial<SegmentStoreOptions> = { segmentSize: 32 * 1024, compactionStep: { bytes: 2048, ids: 8 } };

describe('incremental compaction', () => {
  it('keeps every message readable and every ack while publishes and acks interleave with its steps', async (t) => {
    const dir = tempDir(t, 'interleave');
    const seed = Number(process.env.STORE_SEED ?? Date.now() % 100_000);
    const rnd = prng(seed);
    const model = emptyModel();
    let store = SegmentStore.open({ dir, ...SMALL });
    publishMany(store, model, 600, rnd);
    await synced(store);
    ackMost(store, model, 7);
    await untilCompacting(store);
    let turns = 0;
    while (store.compactionRunning() || turns < 20) {
      // A bit of everything on every turn, including messages already copied and not yet.
      for (const q of QUEUES) {
        const ids = liveIds(model, q);
        for (let k = 0; k < 3 && ids.length !== 0; k++) {
          const id = ids.splice(Math.floor(rnd() * ids.length), 1)[0]!;
          if (rnd() < 0.5) {
            store.ack(q, id);
            model.get(q)!.delete(id);
          } else {
            store.delivered(q, id);
            model.get(q)!.set(id, true);
          }
        }
        for (const id of liveIds(model, q)) checkBody(store.read(id).body);
      }
      if (turns % 5 === 0) publishMany(store, model, 5, rnd);
      if (turns === 30) {
        store.deleteQueue(QUEUES[2]!);
        model.get(QUEUES[2]!)!.clear();
      }
      await nextTurn();
      if (++turns > 20_000) assert.fail('compaction never finished');
    }
    await store.compactionSettled();
    assert.deepEqual(store.checkInvariants(), [], `seed ${seed}`);
    const stats = store.compactionStats();
    assert.ok(stats.finished >= 1 && stats.failed === 0, JSON.stringify(stats));
    await store.close();
    store = SegmentStore.open({ dir, ...SMALL });
    assertEqualsModel(store, model, `seed ${seed}`);
    await store.close();
  });

  it('bounds the work of each step: ids looked at, records and bytes copied', async (t) => {
    const dir = tempDir(t, 'bounded');
    const rnd = prng(7);
    const model = emptyModel();
    const limits = { bytes: 4096, ids: 16 };
    const store = SegmentStore.open({ dir, segmentSize: 64 * 1024, compactionStep: limits });
    publishMany(store, model, 1500, rnd, 1000);
    await synced(store);
    ackMost(store, model, 5);
    await synced(store);
    await store.compactionSettled();
    const c = store.compactionStats();
    assert.ok(c.finished >= 2, JSON.stringify(c));
    assert.ok(c.steps > 50, JSON.stringify(c));
    assert.ok(c.maxIds <= limits.ids, JSON.stringify(c));
    assert.ok(c.maxRecords <= limits.ids, JSON.stringify(c));
    assert.ok(c.maxBytes <= limits.bytes, JSON.stringify(c));
    await store.close();
  });

  it('copies a record bigger than the step size in a step of its own', async (t) => {
    const dir = tempDir(t, 'big');
    const model = emptyModel();
    const store = SegmentStore.open({ dir, segmentSize: 64 * 1024, compactionStep: { bytes: 1024, ids: 64 } });
    const ids = publishMany(store, model, 300, () => 0.3, 1);
    const big = ids.map((_, i) => store.publish(message(i, 3000), [QUEUES[1]!]));
    for (const id of big) model.get(QUEUES[1]!)!.set(id, false);
    await synced(store);
    for (const q of QUEUES) for (const id of liveIds(model, q)) if (id % 4 !== 0) (store.ack(q, id), model.get(q)!.delete(id));
    await store.compactionSettled();
    const c = store.compactionStats();
    assert.ok(c.finished >= 1, JSON.stringify(c));
    assert.ok(c.maxBytes < 3200 && c.maxBytes > 3000, `one big record alone: ${JSON.stringify(c)}`);
    await store.close();
    const again = SegmentStore.open({ dir });
    assertEqualsModel(again, model, 'big records');
    await again.close();
  });

  it('recovers a crash at every step of a compaction to a consistent state (directory copies)', async (t) => {
    const dir = tempDir(t, 'snapshots');
    const snapRoot = tempDir(t, 'snapshots-copies');
    const seed = Number(process.env.STORE_SEED ?? Date.now() % 100_000);
    const rnd = prng(seed);
    const model = emptyModel();
    // What was durable when each copy was taken.
    const confirmed = new Set<string>(); // "q id": publish synced, no ack issued yet
    const ackedSynced = new Set<string>();
    const published = new Set<string>();
    const snaps: { path: string; step: CompactionStep; must: string[]; mustNot: string[]; may: Set<string> }[] = [];
    const stepsSeen = new Map<CompactionStep, number>();
    const onCompactionStep = (step: CompactionStep): void => {
      const n = (stepsSeen.get(step) ?? 0) + 1;
      stepsSeen.set(step, n);
      // Every durable step, and a sample of the many copy steps.
      if (step === 'copy-step' && n % 10 !== 1) return;
      if (snaps.length >= 60) return;
      const path = `${snapRoot}/${snaps.length}`;
      cpSync(dir, path, { recursive: true });
      snaps.push({ path, step, must: [...confirmed], mustNot: [...ackedSynced], may: new Set(published) });
    };
    const store = SegmentStore.open({ dir, ...SMALL, onCompactionStep });
    const publishSynced = (count: number): void => {
      const before = new Set(published);
      const ids = publishMany(store, model, count, rnd);
      const keys: string[] = [];
      for (const id of ids) for (const q of QUEUES) if (model.get(q)!.has(id)) keys.push(`${q} ${id}`);
      for (const k of keys) if (!before.has(k)) published.add(k);
      store.afterSync((err) => {
        if (err !== null) return;
        for (const k of keys) if (published.has(k) && !ackedSynced.has(k) && isLive(k)) confirmed.add(k);
      });
    };
    const isLive = (k: string): boolean => {
      const [q, id] = k.split(' ');
      return model.get(q!)!.has(Number(id));
    };
    const ack = (q: string, id: number): void => {
      const k = `${q} ${id}`;
      store.ack(q, id);
      model.get(q)!.delete(id);
      confirmed.delete(k);
      store.afterSync((err) => {
        if (err === null) ackedSynced.add(k);
      });
    };
    publishSynced(800);
    await synced(store);
    for (const q of QUEUES) for (const id of liveIds(model, q)) if (id % 9 !== 0) ack(q, id);
    await untilCompacting(store);
    const deadline = Date.now() + 60_000;
    for (let turn = 0; store.compactionRunning() || turn < 10; turn++) {
      for (const q of QUEUES) {
        const ids = liveIds(model, q);
        if (ids.length !== 0 && rnd() < 0.7) ack(q, ids[Math.floor(rnd() * ids.length)]!);
      }
      if (turn % 4 === 0) publishSynced(3);
      await nextTurn();
      assert.ok(Date.now() < deadline, 'compaction never finished');
    }
    await store.compactionSettled();
    await store.close();
    for (const step of ['copy-step', 'files-written', 'segment-replaced', 'acks-replaced', 'member-removed'] as const) {
      assert.ok(snaps.some((s) => s.step === step), `no copy taken at ${step}: ${JSON.stringify([...stepsSeen])}`);
    }
    for (const snap of snaps) {
      const where = `copy at ${snap.step} (${snap.path}), seed ${seed}`;
      // Twice: recovery finishes what the crash interrupted, and doing so again changes nothing.
      let first: string | undefined;
      for (let open = 0; open < 2; open++) {
        const s = SegmentStore.open({ dir: snap.path, ...SMALL, logger: new CapturingLogger() });
        assert.deepEqual(s.checkInvariants(), [], where);
        const present = new Set<string>();
        for (const [q, r] of s.recover()) {
          assert.equal(new Set(r.ids).size, r.ids.length, `duplicates, ${where}`);
          for (const id of r.ids) {
            present.add(`${q} ${id}`);
            checkBody(s.read(id).body);
          }
        }
        for (const k of snap.must) assert.ok(present.has(k), `confirmed ${k} lost, ${where}`);
        for (const k of snap.mustNot) assert.ok(!present.has(k), `synced ack of ${k} undone, ${where}`);
        for (const k of present) assert.ok(snap.may.has(k), `${k} was never published, ${where}`);
        const text = [...present].sort().join(',');
        if (first === undefined) first = text;
        else assert.equal(text, first, `second recovery differs, ${where}`);
        await s.close();
      }
      assert.deepEqual(readdirSync(snap.path).filter((f) => f.endsWith('.compact')), [], where);
      rmSync(snap.path, { recursive: true });
    }
    t.diagnostic(`seed ${seed}: ${snaps.length} crash copies checked`);
  });

  for (const at of ['copy-step', 'files-written', 'segment-replaced', 'acks-replaced', 'member-removed'] as const) {
    it(`closes cleanly when close() comes at ${at}`, async (t) => {
      const dir = tempDir(t, `close-${at}`);
      const rnd = prng(11);
      const model = emptyModel();
      let closing: Promise<void> | undefined;
      let store: SegmentStore;
      const onCompactionStep = (step: CompactionStep): void => {
        if (step === at && closing === undefined) closing = store.close();
      };
      store = SegmentStore.open({ dir, ...SMALL, onCompactionStep });
      publishMany(store, model, 600, rnd);
      await synced(store);
      ackMost(store, model, 6);
      // Steps wait on the thread pool: bound the wait in time, not in event-loop turns.
      const deadline = Date.now() + 20_000;
      while (closing === undefined && Date.now() < deadline) await nextTurn();
      assert.ok(closing !== undefined, `never reached ${at}`);
      await closing;
      assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.compact')), []);
      const again = SegmentStore.open({ dir, ...SMALL });
      assertEqualsModel(again, model, `closed at ${at}`);
      await again.close();
    });
  }

  it('matches a model under random publish / ack / deliver / delete / step / restart sequences', async (t) => {
    const root = tempDir(t, 'model');
    let run = 0;
    type Cmd =
      | { kind: 'publish'; count: number; size: number; mask: number }
      | { kind: 'ack'; q: number; pick: number; n: number }
      | { kind: 'deliver'; q: number; pick: number }
      | { kind: 'delete'; q: number }
      | { kind: 'turns'; n: number }
      | { kind: 'restart' };
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      fc.record({ kind: fc.constant('publish' as const), count: fc.integer({ min: 1, max: 40 }), size: fc.integer({ min: 8, max: 2500 }), mask: fc.integer({ min: 1, max: 7 }) }),
      fc.record({ kind: fc.constant('ack' as const), q: fc.nat(2), pick: fc.nat(), n: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant('deliver' as const), q: fc.nat(2), pick: fc.nat() }),
      fc.record({ kind: fc.constant('delete' as const), q: fc.nat(2) }),
      fc.record({ kind: fc.constant('turns' as const), n: fc.integer({ min: 1, max: 30 }) }),
      fc.constant({ kind: 'restart' as const }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 40 }), async (cmds) => {
        const dir = `${root}/${run++}`;
        const options: SegmentStoreOptions = { dir, segmentSize: 8 * 1024, compactionStep: { bytes: 1024, ids: 4 } };
        const model = emptyModel();
        let store = SegmentStore.open(options);
        try {
          for (const c of cmds) {
            if (c.kind === 'publish') {
              const targets = QUEUES.filter((_, i) => (c.mask >> i) & 1);
              for (let i = 0; i < c.count; i++) {
                const id = store.publish(message(i, c.size), targets);
                for (const q of targets) model.get(q)!.set(id, false);
              }
            } else if (c.kind === 'ack' || c.kind === 'deliver') {
              const q = QUEUES[c.q]!;
              const ids = liveIds(model, q);
              for (let k = 0; k < (c.kind === 'ack' ? c.n : 1) && ids.length !== 0; k++) {
                const id = ids.splice((c.pick + k * 7) % ids.length, 1)[0]!;
                if (c.kind === 'ack') {
                  store.ack(q, id);
                  model.get(q)!.delete(id);
                } else {
                  store.delivered(q, id);
                  model.get(q)!.set(id, true);
                }
              }
            } else if (c.kind === 'delete') {
              store.deleteQueue(QUEUES[c.q]!);
              model.get(QUEUES[c.q]!)!.clear();
            } else if (c.kind === 'turns') {
              for (let i = 0; i < c.n; i++) await nextTurn();
            } else {
              await store.close();
              store = SegmentStore.open(options);
              assertEqualsModel(store, model, 'after restart');
            }
            for (const q of QUEUES) for (const id of liveIds(model, q)) checkBody(store.read(id).body);
          }
          await store.compactionSettled();
          assert.deepEqual(store.checkInvariants(), []);
          await store.close();
          store = SegmentStore.open(options);
          assertEqualsModel(store, model, 'at the end');
        } finally {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: Number(process.env.STORE_RUNS ?? 40), seed: process.env.STORE_SEED === undefined ? undefined : Number(process.env.STORE_SEED) },
    );
  });
});
