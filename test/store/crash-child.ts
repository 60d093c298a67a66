// A process for crash.test.ts to kill with SIGKILL at a random moment. It reports on stdout,
// one line per fact, only what the store has made durable:
//   READY             store opened (recovery done)
//   C <q> <id>        message id was published to queue q and its afterSync fired (confirmed)
//   a <q> <id>        the ack of id in q was issued (it may or may not survive a crash)
//   A <q> <id>        the ack of id in q was followed by a completed afterSync
//   D <q> <id>        the delivered mark of id in q was followed by a completed afterSync
//   S <n>             definitions version n was saved (defs mode)
// Usage: node crash-child.js messages|defs <dir> <seed> [compaction step to die at]. Without arguments (as when the test
// runner loads every file under test/) it does nothing.
import { writeSync } from 'node:fs';
import { DefinitionsStore, emptyDefinitions } from '../../src/store/definitions-store';
import { SegmentStore } from '../../src/store/segment-store';
import { message, prng } from './helpers';

export const CRASH_QUEUES = ['/\u0000a', '/\u0000b', '/\u0000c', '/\u0000keep'];
/** In the "keep" queue every id divisible by this is never acked: it pins old segments, so
 *  they get compacted while the process may be killed. */
export const KEEP_EVERY = 20;

function out(text: string): void {
  writeSync(1, text);
}

function runMessages(dir: string, seed: number, dieAt: string | undefined): void {
  const rnd = prng(seed);
  // Dying inside compaction: at the given step of a random one of the first few.
  let countdown = 1 + Math.floor(rnd() * 3);
  const onCompactionStep = (step: string): void => {
    if (step === dieAt && --countdown === 0) process.kill(process.pid, 'SIGKILL');
  };
  const store = SegmentStore.open({ dir, segmentSize: 256 * 1024, onCompactionStep });
  const backlog = CRASH_QUEUES.map((q) => {
    const r = store.recover().get(q);
    return r === undefined ? [] : Array.from(r.ids);
  });
  out('READY\n');
  let n = (seed % 4000) * 1_000_000;
  const turn = (): void => {
    let lines = '';
    let issued = '';
    backlog.forEach((ids, qi) => {
      const q = CRASH_QUEUES[qi]!;
      let acks = Math.floor(rnd() * 70);
      let i = 0;
      while (acks > 0 && i < ids.length) {
        const id = ids[i]!;
        if (qi === 3 && id % KEEP_EVERY === 0) {
          i++;
          continue;
        }
        ids.splice(i, 1);
        store.ack(q, id);
        issued += `a ${qi} ${id}\n`;
        lines += `A ${qi} ${id}\n`;
        acks--;
      }
      for (let d = i; d < Math.min(ids.length, i + 10); d++) {
        store.delivered(q, ids[d]!);
        lines += `D ${qi} ${ids[d]}\n`;
      }
    });
    // Before the store can write the acks: the parent must know they may have happened.
    if (issued !== '') out(issued);
    const published: number[] = [];
    const count = 20 + Math.floor(rnd() * 80);
    for (let k = 0; k < count; k++) {
      const targets = CRASH_QUEUES.map((_, qi) => qi).filter(() => rnd() < 0.35);
      if (targets.length === 0) targets.push(Math.floor(rnd() * CRASH_QUEUES.length));
      const id = store.publish(message(n++, 100 + Math.floor(rnd() * 3000)), targets.map((qi) => CRASH_QUEUES[qi]!));
      for (const qi of targets) published.push(qi, id);
    }
    store.afterSync((err) => {
      if (err !== null) process.exit(3);
      for (let k = 0; k < published.length; k += 2) {
        lines += `C ${published[k]} ${published[k + 1]}\n`;
        backlog[published[k]!]!.push(published[k + 1]!);
      }
      out(lines);
    });
    setImmediate(turn);
  };
  turn();
}

function runDefinitions(dir: string): void {
  const store = new DefinitionsStore(dir);
  const start = store.load()?.queues.length ?? 0;
  out('READY\n');
  for (let v = start + 1; ; v++) {
    const defs = emptyDefinitions();
    for (let i = 0; i < v; i++) {
      defs.queues.push({ name: `q${i}`, vhost: '/', durable: true, auto_delete: false, arguments: { 'x-max-length': i } });
    }
    store.save(defs);
    out(`S ${v}\n`);
  }
}

const [mode, dir, seed, dieAt] = process.argv.slice(2);
if (mode === 'messages' && dir !== undefined) runMessages(dir, Number(seed ?? 1), dieAt);
else if (mode === 'defs' && dir !== undefined) runDefinitions(dir);
