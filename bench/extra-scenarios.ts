// Scenarios 8 and 10 of the performance issue, which are not one warren-perf run each:
// a backlog published and then drained, and the memory cost of idle connections and queues.
// Opt-in (BENCH_SCENARIOS=8,10 or all): they take minutes on RabbitMQ.

import { readFileSync } from 'node:fs';
import { PerfConnection, parseAmqpUrl } from '../src/perf/connection';
import { defaultOptions, type PerfOptions } from '../src/perf/options';
import { readRssKb } from '../src/perf/proc-stats';
import { runCleanup, runPerf, type PerfSummary } from '../src/perf/runner';
import type { CustomContext, CustomResult, Scenario } from './scenarios';

export function baseOptions(ctx: CustomContext): PerfOptions {
  return { ...defaultOptions(), uri: ctx.url, quiet: true, watchPid: ctx.pid, grace: 15, setupTimeout: 30, queuePrefix: ctx.prefix };
}

export function failureOf(s: PerfSummary): string | null {
  if (s.timed_out) return `clients terminated by the watchdog; first error: ${s.first_error || 'none'}`;
  return s.errors > 0 ? `${s.errors} client error(s); first: ${s.first_error}` : null;
}

/** 8: `count` 1 KB messages published (confirmed) with no consumer, then drained by one consumer. */
export function backlogScenario(count: number): Scenario {
  return {
    id: 'S8',
    title: `backlog: ${count.toLocaleString('en-US')} × 1 KB published with confirms (1,000 outstanding) and no consumer, then drained by 1 consumer (prefetch 1,000, multi-ack 100)`,
    howto: `\`warren-perf -x 1 -y 0 -s 1024 -C ${count} -c 1000 -u P --keep\`, then \`warren-perf -x 0 -y 1 -s 1024 -p -u P -D <depth> -q 1000 -A 100\`, then \`warren-perf --cleanup -u P\``,
    metrics: [
      { name: 'publish', unit: 'msg/s', lowerIsBetter: false },
      { name: 'drain', unit: 'msg/s', lowerIsBetter: false },
      { name: 'peak RSS', unit: 'MB', lowerIsBetter: true },
    ],
    custom: async (ctx) => {
      const base = baseOptions(ctx);
      const out: CustomResult = { values: [NaN, NaN, NaN], brokerUsPerMsg: NaN, rssMaxMb: NaN, failure: null };
      try {
        const pub = await runPerf(
          { ...base, producers: 1, consumers: 0, size: 1024, pmessages: count, confirm: 1000, keep: true, duration: 600, id: `${ctx.prefix}-pub` },
          { warn: ctx.warn },
        );
        out.failure = failureOf(pub);
        const depth = pub.queue_depth > 0 ? pub.queue_depth : count;
        if (pub.queue_depth >= 0 && pub.queue_depth < count) ctx.warn(`S8: queue holds ${pub.queue_depth} of ${count} published messages`);
        const drain = await runPerf(
          { ...base, producers: 0, consumers: 1, predeclared: true, cmessages: depth, prefetch: 1000, multiAck: 100, size: 1024, duration: 600, id: `${ctx.prefix}-drain` },
          { warn: ctx.warn },
        );
        out.failure ??= failureOf(drain);
        if (drain.received < depth) out.failure ??= `drained ${drain.received} of ${depth} messages`;
        out.values = [pub.confirmed / pub.elapsed_s, drain.recv_rate, Math.max(pub.broker?.rss_max_kb ?? NaN, drain.broker?.rss_max_kb ?? NaN) / 1024];
        out.rssMaxMb = out.values[2]!;
        if (pub.broker && drain.broker) out.brokerUsPerMsg = ((pub.broker.cpu_s + drain.broker.cpu_s) * 1e6) / (pub.sent + drain.received);
      } catch (err) {
        out.failure = err instanceof Error ? err.message : String(err);
      } finally {
        await runCleanup({ ...base, queues: 1 }).catch(() => 0);
      }
      return out;
    },
  };
}

async function pipelined<T>(items: T[], f: (item: T) => Promise<unknown>, width = 64): Promise<number> {
  let failed = 0;
  for (let i = 0; i < items.length; i += width) {
    const r = await Promise.allSettled(items.slice(i, i + width).map(f));
    failed += r.filter((x) => x.status === 'rejected').length;
  }
  return failed;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * RSS (KB) once it has settled: sampled every 250 ms until four samples in a row move by less
 * than 1 MB (a broker keeps freeing memory for a while after a big run), at most maxMs.
 */
export async function settledRss(pid: number, maxMs = 15000): Promise<number> {
  const until = Date.now() + maxMs;
  let prev = readRssKb(pid);
  let calm = 0;
  while (Date.now() < until && calm < 4) {
    await sleep(250);
    const r = readRssKb(pid);
    calm = Math.abs(r - prev) < 1024 ? calm + 1 : 0;
    prev = r;
  }
  return prev;
}

/** The soft open-files limit of a process (from /proc), or Infinity if unknown. */
function openFilesLimit(pid: number): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/** 10: resident memory per idle connection (with one open channel) and per empty queue. */
export function idleScenario(wantConnections: number, queues: number): Scenario {
  return {
    id: 'S10',
    title: `idle cost: ${wantConnections.toLocaleString('en-US')} idle connections (one channel each); ${queues.toLocaleString('en-US')} empty queues (Warren restarted first)`,
    freshWarren: true,
    howto: 'broker RSS (settled) before and after opening the connections, then before and after declaring the queues; see bench/extra-scenarios.ts',
    metrics: [
      { name: 'RSS per idle connection', unit: 'KB', lowerIsBetter: true },
      { name: 'RSS per empty queue', unit: 'KB', lowerIsBetter: true },
    ],
    custom: async (ctx) => {
      let connections = wantConnections;
      const out: CustomResult = { values: [NaN, NaN], brokerUsPerMsg: NaN, rssMaxMb: NaN, failure: null };
      if (!ctx.pid) return { ...out, failure: 'broker pid unknown: cannot read its memory' };
      const url = parseAmqpUrl(ctx.url);
      // Never run a broker out of file descriptors: RabbitMQ started with the usual soft limit
      // of 1024 allows ~830 sockets, and when they ran out in a trial its Mnesia tables failed
      // and the node had to be restarted. Stay 400 below the limit.
      const fdLimit = openFilesLimit(ctx.pid);
      if (connections > fdLimit - 400) {
        const capped = Math.max(10, fdLimit - 400);
        const note = `the broker may open ${fdLimit} files: measured with ${capped} idle connections instead of ${connections}`;
        ctx.warn(note);
        out.note = note;
        connections = capped;
      }
      const conns: PerfConnection[] = [];
      let setup: PerfConnection | null = null;
      const names = Array.from({ length: queues }, (_, i) => `${ctx.prefix}-q${i}`);
      let peak = 0;
      const rss = async (): Promise<number> => {
        const r = await settledRss(ctx.pid);
        peak = Math.max(peak, r);
        return r;
      };
      try {
        const r0 = await rss();
        const ids = Array.from({ length: connections }, (_, i) => i);
        const failed = await pipelined(ids, async () => {
          const c = await PerfConnection.open(url, { timeoutMs: 30000, name: 'bench idle' });
          conns.push(c);
          await c.openChannel(1);
        }, 50);
        if (failed) out.failure = `${failed} of ${connections} connections failed`;
        const r1 = await rss();
        out.values[0] = (r1 - r0) / connections;
        await Promise.all(conns.map((c) => c.close(5000)));
        conns.length = 0;
        await sleep(1000);

        setup = await PerfConnection.open(url, { timeoutMs: 30000, name: 'bench queues' });
        await setup.openChannel(1);
        const r2 = await rss();
        const qf = await pipelined(names, (q) => setup!.queueDeclare(1, q, {}));
        if (qf) out.failure ??= `${qf} of ${queues} queue declarations failed`;
        const r3 = await rss();
        out.values[1] = (r3 - r2) / queues;
      } catch (err) {
        out.failure = err instanceof Error ? err.message : String(err);
      } finally {
        await Promise.all(conns.map((c) => c.close(2000)));
        if (setup !== null && setup.error === null) await pipelined(names, (q) => setup!.queueDelete(1, q));
        await setup?.close();
      }
      out.rssMaxMb = peak / 1024;
      return out;
    },
  };
}
