// The durability group (BENCH_SCENARIOS=durability, issue 3 "Benchmarks"): persistent confirmed
// publishing into a durable queue with 1 and 4 publishers; a persistent backlog (its memory per
// queued message, then its drain rate); recovery of a persistent backlog after kill -9 (Warren
// only: the RabbitMQ we compare with is shared and must not be stopped).

import { performance } from 'node:perf_hooks';
import { PerfConnection, parseAmqpUrl } from '../src/perf/connection';
import { readRssKb } from '../src/perf/proc-stats';
import { runCleanup, runPerf } from '../src/perf/runner';
import { MethodEncoder } from '../src/perf/wire';
import { baseOptions, failureOf, settledRss, sleep } from './extra-scenarios';
import type { CustomResult, Scenario } from './scenarios';

const BASIC_GET = (60 << 16) | 70;
const BASIC_GET_OK = (60 << 16) | 71;

/** basic.get with no-ack: true if a message came back, false on get-empty. */
async function basicGet(c: PerfConnection, ch: number, queue: string): Promise<boolean> {
  try {
    await c.rpc(new MethodEncoder(ch, BASIC_GET).u16(0).shortstr(queue).bit(true).frame(), ch, BASIC_GET_OK, `basic.get-ok (${queue})`);
    return true;
  } catch (err) {
    if (err instanceof Error && /got method 60\.72\b/.test(err.message)) return false; // get-empty
    throw err;
  }
}

const persistent = { size: 1024, persistent: true, durable: true, confirm: 1000 } as const;
const confirmedRate = {
  metrics: [{ name: 'confirmed publishes', unit: 'msg/s', lowerIsBetter: false }],
  values: (s: { confirm_rate: number }) => [s.confirm_rate],
};

export function durabilityScenarios(count: number): Scenario[] {
  const n = count.toLocaleString('en-US');
  return [
    {
      id: 'D1',
      group: 'durability',
      title: 'persistent 1 KB, confirms (1,000 outstanding), durable queue, 1 publisher, no consumer',
      opts: { producers: 1, consumers: 0, ...persistent },
      ...confirmedRate,
    },
    {
      id: 'D2',
      group: 'durability',
      title: 'as D1 with 4 publishers (one connection each) into the same queue',
      opts: { producers: 4, consumers: 0, ...persistent },
      ...confirmedRate,
    },
    {
      id: 'D3',
      group: 'durability',
      title: `persistent backlog: ${n} × 1 KB published with confirms into a durable queue with no consumer (RSS measured with all queued), then drained by 1 consumer (prefetch 1,000, multi-ack 100); broker restarted first`,
      freshWarren: true,
      howto: `settled RSS; \`warren-perf -x 1 -y 0 -s 1024 -f persistent --durable -C ${count} -c 1000 -u P --keep\`; settled RSS; \`warren-perf -x 0 -y 1 -s 1024 -p -u P -D <depth> -q 1000 -A 100\`; \`warren-perf --cleanup -u P\``,
      metrics: [
        { name: 'publish', unit: 'msg/s', lowerIsBetter: false },
        { name: 'drain', unit: 'msg/s', lowerIsBetter: false },
        { name: `RSS with ${n} queued`, unit: 'MB', lowerIsBetter: true },
        { name: 'RSS per queued message', unit: 'bytes', lowerIsBetter: true },
      ],
      custom: async (ctx) => {
        const base = baseOptions(ctx);
        const out: CustomResult = { values: [NaN, NaN, NaN, NaN], brokerUsPerMsg: NaN, rssMaxMb: NaN, failure: null };
        if (!ctx.pid) return { ...out, failure: 'broker pid unknown: cannot read its memory' };
        try {
          const rss0 = await settledRss(ctx.pid);
          const pub = await runPerf(
            { ...base, producers: 1, consumers: 0, ...persistent, pmessages: count, keep: true, duration: 900, id: `${ctx.prefix}-pub` },
            { warn: ctx.warn },
          );
          out.failure = failureOf(pub);
          const depth = pub.queue_depth > 0 ? pub.queue_depth : count;
          if (pub.queue_depth >= 0 && pub.queue_depth < count) ctx.warn(`queue holds ${pub.queue_depth} of ${count} published messages`);
          const rss1 = await settledRss(ctx.pid, 20000);
          ctx.warn(`RSS ${Math.round(rss0 / 1024)} MB before, ${Math.round(rss1 / 1024)} MB with ${depth} queued`);
          const drain = await runPerf(
            { ...base, producers: 0, consumers: 1, predeclared: true, cmessages: depth, prefetch: 1000, multiAck: 100, size: 1024, duration: 900, id: `${ctx.prefix}-drain` },
            { warn: ctx.warn },
          );
          out.failure ??= failureOf(drain);
          if (drain.received < depth) out.failure ??= `drained ${drain.received} of ${depth} messages`;
          out.values = [pub.confirmed / pub.elapsed_s, drain.recv_rate, rss1 / 1024, ((rss1 - rss0) * 1024) / depth];
          out.rssMaxMb = Math.max(pub.broker?.rss_max_kb ?? NaN, drain.broker?.rss_max_kb ?? NaN, rss1) / 1024;
          if (pub.broker && drain.broker) out.brokerUsPerMsg = ((pub.broker.cpu_s + drain.broker.cpu_s) * 1e6) / (pub.sent + drain.received);
        } catch (err) {
          out.failure = err instanceof Error ? err.message : String(err);
        } finally {
          await runCleanup({ ...base, queues: 1 }).catch(() => 0);
        }
        return out;
      },
    },
    {
      id: 'D4',
      group: 'durability',
      title: `recovery: ${n} persistent 1 KB messages confirmed into 10 durable queues (10 publishers), broker killed with SIGKILL and restarted on the same data directory; broker restarted first`,
      freshWarren: true,
      rabbitSkip: 'not measured (shared instance)',
      howto: `\`warren-perf -x 10 -y 0 --queues 10 -s 1024 -f persistent --durable -C ${count / 10} -c 1000 -u P --keep\`; \`kill -9\`; restart with the same --data-dir; time until an AMQP handshake succeeds, until basic.get on P-q0 returns a message, and until the 10 queues' message counts add up to the confirmed messages (polled every 10 ms)`,
      metrics: [
        { name: 'restart → first message from basic.get', unit: 's', lowerIsBetter: true },
        { name: 'restart → AMQP handshake accepted', unit: 's', lowerIsBetter: true },
        { name: 'restart → all messages counted', unit: 's', lowerIsBetter: true },
        { name: 'confirmed messages missing after recovery', unit: 'count', lowerIsBetter: true },
        { name: 'RSS after recovery (settled)', unit: 'MB', lowerIsBetter: true },
      ],
      custom: async (ctx) => {
        const out: CustomResult = { values: [NaN, NaN, NaN, NaN, NaN], brokerUsPerMsg: NaN, rssMaxMb: NaN, failure: null };
        const w = ctx.warren;
        if (w === null) return { ...out, failure: 'needs a Warren child process to kill' };
        const base = baseOptions(ctx);
        const queues = Array.from({ length: 10 }, (_, i) => `${ctx.prefix}-q${i}`);
        let conn: PerfConnection | null = null;
        try {
          const pub = await runPerf(
            { ...base, producers: 10, consumers: 0, queues: 10, ...persistent, pmessages: Math.ceil(count / 10), keep: true, duration: 900, id: `${ctx.prefix}-pub` },
            { warn: ctx.warn },
          );
          out.failure = failureOf(pub);
          const confirmed = pub.confirmed;
          const rssBefore = readRssKb(w.pid);
          ctx.warn(`${confirmed} confirmed, RSS ${Math.round(rssBefore / 1024)} MB; kill -9 ${w.pid}`);
          await w.kill9();
          const t0 = performance.now();
          await w.start({ reuseData: true, timeoutMs: 300_000, pollMs: 10 });
          const tAmqp = performance.now() - t0;
          conn = await PerfConnection.open(parseAmqpUrl(w.url), { timeoutMs: 30000, name: 'bench recovery' });
          let ch = 1;
          await conn.openChannel(ch);
          const until = Date.now() + 300_000;
          let tFirst = NaN;
          while (Date.now() < until) {
            try {
              if (await basicGet(conn, ch, queues[0]!)) {
                tFirst = performance.now() - t0;
                break;
              }
            } catch (err) {
              if (conn.error) throw err;
              await conn.openChannel(++ch); // e.g. 404 while the queue is not yet recovered
            }
            await sleep(10);
          }
          if (!Number.isFinite(tFirst)) throw new Error('basic.get returned no message within 300 s of the restart');
          let tAll = NaN;
          let counted = 0;
          while (Date.now() < until) {
            counted = 1; // the message basic.get took
            for (const q of queues) counted += await conn.queueDeclare(ch, q, { passive: true });
            if (counted >= confirmed) {
              tAll = performance.now() - t0;
              break;
            }
            await sleep(10);
          }
          const rssAfter = await settledRss(w.pid);
          out.values = [tFirst / 1000, tAmqp / 1000, tAll / 1000, Math.max(0, confirmed - counted), rssAfter / 1024];
          out.rssMaxMb = Math.max(pub.broker?.rss_max_kb ?? NaN, rssAfter) / 1024;
          if (counted < confirmed) out.failure ??= `${confirmed - counted} of ${confirmed} confirmed messages missing after the restart`;
          out.note = `${confirmed.toLocaleString('en-US')} messages confirmed before kill -9 (RSS then ${Math.round(rssBefore / 1024)} MB); ${counted.toLocaleString('en-US')} counted after the restart`;
        } catch (err) {
          out.failure = err instanceof Error ? err.message : String(err);
        } finally {
          await conn?.close();
          if (w.alive) await runCleanup({ ...base, uri: w.url, queues: 10 }).catch(() => 0);
        }
        return out;
      },
    },
  ];
}
