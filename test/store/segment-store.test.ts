import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs = require('node:fs');
import { closeSync, openSync, readdirSync, readSync, statSync, truncateSync, writeFileSync, writeSync, cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { MessageStore } from '../../src/store/message-store';
import { SegmentStore, type SegmentStoreOptions } from '../../src/store/segment-store';
import { messageStoreContract } from './contract';
import { CapturingLogger, checkBody, message, nextTurn, prng, recoveredIds, synced, tempDir } from './helpers';

const Q = '/\u0000q';

messageStoreContract('SegmentStore', (t) => {
  const dir = tempDir(t, 'contract');
  // Small segments so that the contract also runs across rollovers, deletions and compactions.
  const options: SegmentStoreOptions = { dir, segmentSize: 64 * 1024 };
  return {
    open: () => SegmentStore.open(options),
    restart: async (store) => {
      await store.close();
      return SegmentStore.open(options);
    },
  };
});

function segFiles(dir: string, ext = '.seg'): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(ext))
    .sort()
    .map((f) => join(dir, f));
}

/** Publishes n messages of varied sizes, closes, and returns their ids. */
async function fill(dir: string, n: number, opts: Partial<SegmentStoreOptions> = {}): Promise<number[]> {
  const s = SegmentStore.open({ dir, ...opts });
  const rnd = prng(n);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(s.publish(message(i, 8 + Math.floor(rnd() * 2000)), [Q]));
  await synced(s);
  await s.close();
  return ids;
}

function open(dir: string, logger: CapturingLogger, opts: Partial<SegmentStoreOptions> = {}): SegmentStore {
  return SegmentStore.open({ dir, logger, ...opts });
}

describe('SegmentStore: damaged files', () => {
  it('truncates a torn tail at any offset and keeps every record before it', async (t) => {
    const pristine = tempDir(t, 'torn-src');
    const ids = await fill(pristine, 300);
    const [file] = segFiles(pristine);
    const size = statSync(file!).size;
    // Record ends, from a clean open: the boundaries a cut can fall on or between.
    const s0 = open(pristine, new CapturingLogger());
    const ends = ids.map((id) => (s0 as unknown as { table: { index: { offset(i: number): number; length(i: number): number } } }).table.index)
      .map((index, i) => index.offset(ids[i]!) + index.length(ids[i]!));
    await s0.close();
    const seed = Date.now() % 100_000;
    const rnd = prng(seed);
    const cuts = [size - 1, 17, ends[0]!, ends[100]! + 3, ...Array.from({ length: 12 }, () => 16 + Math.floor(rnd() * (size - 16)))];
    for (const cut of cuts) {
      const dir = tempDir(t, 'torn');
      rmSync(dir, { recursive: true });
      cpSync(pristine, dir, { recursive: true });
      truncateSync(segFiles(dir)[0]!, cut);
      const logger = new CapturingLogger();
      const s = open(dir, logger);
      const kept = ends.filter((e) => e <= cut).length;
      assert.deepEqual(recoveredIds(s, Q), ids.slice(0, kept), `cut at ${cut} (seed ${seed})`);
      for (const id of ids.slice(0, kept)) checkBody(s.read(id).body);
      if (!ends.includes(cut)) assert.match(logger.text(), /0000000001\.seg/, `cut ${cut}: the log names the file`);
      // The store goes on from the cut: new messages survive the next restart, with no complaint.
      const more = s.publish(message(9999), [Q]);
      await synced(s);
      await s.close();
      const again = new CapturingLogger();
      const s2 = open(dir, again);
      assert.deepEqual(recoveredIds(s2, Q), [...ids.slice(0, kept), more]);
      assert.equal(again.lines.length, 0, again.text());
      await s2.close();
    }
  });

  it('skips a record with a flipped byte in its body, logs the file, and keeps the rest', async (t) => {
    const dir = tempDir(t, 'flip');
    const ids = await fill(dir, 200);
    const s0 = open(dir, new CapturingLogger());
    const victim = ids[77]!;
    const index = (s0 as unknown as { table: { index: { offset(i: number): number; length(i: number): number } } }).table.index;
    const at = index.offset(victim) + index.length(victim) - 10;
    await s0.close();
    flipByte(segFiles(dir)[0]!, at);
    const logger = new CapturingLogger();
    const s = open(dir, logger);
    assert.deepEqual(recoveredIds(s, Q), ids.filter((id) => id !== victim));
    assert.match(logger.text(), /skipped a corrupt record in .*0000000001\.seg at offset \d+/);
    await s.close();
  });

  it('resynchronises after a flipped length field', async (t) => {
    const dir = tempDir(t, 'flip-len');
    const ids = await fill(dir, 200);
    const s0 = open(dir, new CapturingLogger());
    const victim = ids[120]!;
    const at = (s0 as unknown as { table: { index: { offset(i: number): number } } }).table.index.offset(victim) + 6;
    await s0.close();
    flipByte(segFiles(dir)[0]!, at); // high byte of the u32 length: now far too long
    const logger = new CapturingLogger();
    const s = open(dir, logger);
    assert.deepEqual(recoveredIds(s, Q), ids.filter((id) => id !== victim));
    assert.match(logger.text(), /corrupt record in .*0000000001\.seg/);
    await s.close();
  });

  it('survives a torn ack file: acks after the tear come back as redeliveries, nothing is lost', async (t) => {
    const dir = tempDir(t, 'torn-ack');
    const s = open(dir, new CapturingLogger());
    const ids = Array.from({ length: 100 }, (_, i) => s.publish(message(i, 100), [Q]));
    await synced(s);
    for (const id of ids.slice(0, 50)) {
      s.ack(Q, id);
      await synced(s); // one ack record per write round
    }
    await synced(s);
    await s.close();
    const ack = segFiles(dir, '.ack')[0]!;
    truncateSync(ack, statSync(ack).size - 5);
    const logger = new CapturingLogger();
    const s2 = open(dir, logger);
    assert.deepEqual(recoveredIds(s2, Q), ids.slice(49));
    assert.match(logger.text(), /0000000001\.ack/);
    await s2.close();
  });

  it('detects a byte damaged after recovery when the message is read', async (t) => {
    const dir = tempDir(t, 'rot');
    const ids = await fill(dir, 10);
    const s = open(dir, new CapturingLogger());
    const index = (s as unknown as { table: { index: { offset(i: number): number } } }).table.index;
    flipByte(segFiles(dir)[0]!, index.offset(ids[3]!) + 40);
    assert.throws(() => s.read(ids[3]!), /0000000001\.seg: record of message \d+ at offset \d+ is corrupt/);
    checkBody(s.read(ids[4]!).body);
    await s.close();
  });

  it('removes leftovers of an interrupted compaction and ack files without a segment', async (t) => {
    const dir = tempDir(t, 'leftovers');
    const ids = await fill(dir, 20);
    writeFileSync(join(dir, '0000000001.seg.compact'), 'half-written');
    writeFileSync(join(dir, '0000000001.ack.compact'), 'half-written');
    writeFileSync(join(dir, '0000000000.ack'), 'orphan');
    const s = open(dir, new CapturingLogger());
    assert.deepEqual(recoveredIds(s, Q), ids);
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('compact') || f.startsWith('0000000000')), []);
    await s.close();
  });

  it('refuses a directory locked by another running process', async (t) => {
    const dir = tempDir(t, 'lock');
    writeFileSync(join(dir, 'LOCK'), '1\n'); // pid 1 always runs
    assert.throws(() => SegmentStore.open({ dir }), /in use by process 1/);
    writeFileSync(join(dir, 'LOCK'), '999999999\n'); // no such process: a stale lock
    await SegmentStore.open({ dir }).close();
  });
});

describe('SegmentStore: disk use follows the live backlog', () => {
  it('deletes segments once all their messages are acked', async (t) => {
    const dir = tempDir(t, 'gc');
    const s = SegmentStore.open({ dir, segmentSize: 64 * 1024 });
    const ids = Array.from({ length: 600 }, (_, i) => s.publish(message(i), [Q, '/\u0000other']));
    await synced(s);
    assert.ok(segFiles(dir).length >= 9);
    for (const id of ids) s.ack(Q, id);
    await synced(s);
    assert.ok(segFiles(dir).length >= 9, 'still held by the other queue');
    for (const id of ids) s.ack('/\u0000other', id);
    await synced(s);
    await nextTurn();
    assert.deepEqual(segFiles(dir).length, 1, 'only the active segment is left');
    assert.ok(segFiles(dir, '.ack').length <= 1, 'at most the active segment\'s ack file');
    assert.ok(s.stats().diskBytes < 64 * 1024);
    await s.close();
  });

  it('compacts segments pinned by a few long-lived messages', async (t) => {
    const dir = tempDir(t, 'compact');
    const s = SegmentStore.open({ dir, segmentSize: 64 * 1024 });
    const ids = Array.from({ length: 2000 }, (_, i) => s.publish(message(i), [Q]));
    const pinned = ids.filter((_, i) => i % 100 === 0);
    for (const id of pinned) s.delivered(Q, id);
    await synced(s);
    const full = s.stats().diskBytes;
    for (const id of ids) if (!pinned.includes(id)) s.ack(Q, id);
    // Compaction runs in steps over many turns.
    await synced(s);
    await s.compactionSettled();
    await synced(s);
    const after = s.stats().diskBytes;
    assert.ok(after < full / 10, `disk ${after} after acking 99% of ${full}`);
    await s.close();
    const s2 = SegmentStore.open({ dir, segmentSize: 64 * 1024 });
    const q = s2.recover().get(Q)!;
    assert.deepEqual(Array.from(q.ids), pinned);
    assert.ok(q.redelivered.every((r) => r === 1));
    for (const id of pinned) checkBody(s2.read(id).body);
    await s2.close();
  });
});

describe('SegmentStore: group commit', () => {
  it('covers many appends and callbacks with one fsync round', async (t) => {
    const s = SegmentStore.open({ dir: tempDir(t, 'gc1') });
    await synced(s);
    const before = s.stats().syncs;
    const called: number[] = [];
    for (let c = 0; c < 10; c++) {
      for (let i = 0; i < 100; i++) s.publish(message(i), [Q]);
      s.afterSync(() => called.push(c));
    }
    await synced(s);
    assert.deepEqual(called, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(s.stats().syncs - before, 1);
    await s.close();
  });

  it('batches appends made while a sync is running into the next round', async (t) => {
    const s = SegmentStore.open({ dir: tempDir(t, 'gc2') });
    await synced(s);
    const before = s.stats().syncs;
    const done: Promise<void>[] = [];
    for (let turn = 0; turn < 200; turn++) {
      for (let i = 0; i < 20; i++) s.publish(message(i), [Q]);
      done.push(synced(s));
      await nextTurn();
    }
    await Promise.all(done);
    const rounds = s.stats().syncs - before;
    assert.ok(rounds < 200, `${rounds} rounds for 200 turns`);
    await s.close();
  });

  it('confirms a record only after an fdatasync that started once it was in the file', async (t) => {
    // Spy on fdatasync: remember, per fd, the file size when each call started, and count
    // only calls that have completed. A confirm is legal when such a size covers the record.
    const synced = new Map<number, number>();
    const original = fs.fdatasync;
    const spy = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void => {
      const size = fs.fstatSync(fd).size;
      original(fd, (err) => {
        if (err === null) synced.set(fd, Math.max(synced.get(fd) ?? 0, size));
        cb(err);
      });
    };
    (fs as { fdatasync: unknown }).fdatasync = spy;
    t.after(() => {
      (fs as { fdatasync: unknown }).fdatasync = original;
    });
    const s = SegmentStore.open({ dir: tempDir(t, 'gc3'), segmentSize: 32 * 1024 });
    type Internals = { table: { segmentOf(id: number): { seg: { fd: number } }; index: { offset(id: number): number; length(id: number): number } } };
    const table = (s as unknown as Internals).table;
    let checked = 0;
    const early: number[] = [];
    const pending: Promise<void>[] = [];
    for (let turn = 0; turn < 100; turn++) {
      const ids = Array.from({ length: 7 }, (_, i) => s.publish(message(i, 900), [Q]));
      pending.push(
        new Promise<void>((resolve) =>
          s.afterSync(() => {
            for (const id of ids) {
              const fd = table.segmentOf(id).seg.fd;
              const end = table.index.offset(id) + table.index.length(id);
              if ((synced.get(fd) ?? 0) < end) early.push(id);
              checked++;
            }
            resolve();
          }),
        ),
      );
      if (turn % 3 === 0) await nextTurn();
    }
    await Promise.all(pending);
    assert.deepEqual(early, [], 'messages confirmed before their bytes were synced');
    assert.equal(checked, 700);
    await s.close();
  });
});

describe('SegmentStore: a full disk', () => {
  it('holds confirms while writes fail, loses nothing, and recovers when space returns', async (t) => {
    const original = fs.write;
    let failing = true;
    let partialDone = false;
    // The first write lands half its bytes, then every write fails with ENOSPC until space returns.
    const faulty = (fd: number, buf: Buffer, off: number, len: number, pos: number, cb: (e: NodeJS.ErrnoException | null, n: number) => void): void => {
      if (!failing) return original(fd, buf, off, len, pos, cb);
      if (!partialDone && len > 100) {
        partialDone = true;
        return original(fd, buf, off, len >> 1, pos, cb);
      }
      const err: NodeJS.ErrnoException = new Error('ENOSPC: no space left on device, write');
      err.code = 'ENOSPC';
      setImmediate(() => cb(err, 0));
    };
    const dir = tempDir(t, 'enospc');
    const logger = new CapturingLogger();
    const s = SegmentStore.open({ dir, logger, writeRetryMs: 20 });
    await synced(s);
    (fs as { write: unknown }).write = faulty;
    t.after(() => {
      (fs as { write: unknown }).write = original;
    });
    const ids = Array.from({ length: 50 }, (_, i) => s.publish(message(i, 2000), [Q]));
    let confirmed = false;
    const confirm = synced(s).then(() => {
      confirmed = true;
    });
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(confirmed, false, 'no confirm while the disk is full');
    assert.match(s.stats().lastError ?? '', /ENOSPC/);
    assert.match(logger.text(), /message store write failed; keeping records in memory and retrying/);
    assert.equal(checkBody(s.read(ids[49]!).body), 49, 'unwritten messages are still readable');
    failing = false;
    await confirm;
    assert.equal(s.stats().lastError, null);
    await s.close();
    const s2 = SegmentStore.open({ dir, logger: new CapturingLogger() });
    assert.deepEqual(recoveredIds(s2, Q), ids);
    for (const id of ids) checkBody(s2.read(id).body);
    await s2.close();
  });
});

describe('SegmentStore: recovery speed', () => {
  it('recovers 100k messages across 10 queues in well under the restart budget', async (t) => {
    const dir = tempDir(t, 'speed');
    const s = SegmentStore.open({ dir });
    const body = message(1, 1024);
    const queues = Array.from({ length: 10 }, (_, i) => `/\u0000q${i}`);
    for (let i = 0; i < 100_000; i++) {
      s.publish(body, [queues[i % 10]!]);
      if (i % 5000 === 4999) await nextTurn();
    }
    await synced(s);
    await s.close();
    const started = process.hrtime.bigint();
    const s2 = SegmentStore.open({ dir });
    const recovered = s2.recover();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    let n = 0;
    for (const q of recovered.values()) n += q.ids.length;
    assert.equal(n, 100_000);
    assert.ok(ms < 3000, `recovery took ${ms.toFixed(0)} ms`);
    t.diagnostic(`recovered 100k × 1 KiB in ${ms.toFixed(0)} ms`);
    await s2.close();
  });
});

function flipByte(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] = b[0]! ^ 0x5a;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

export type { MessageStore };
