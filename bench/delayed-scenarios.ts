// The delayed-message group (BENCH_SCENARIOS=delayed, issue 4 "Delayed delivery"): schedule many
// messages through an x-delayed-message exchange, each with an x-delay spread uniformly over a
// window, and measure the scheduling rate, the broker's memory with all of them pending, and how
// late each is delivered. warren-perf cannot set headers, so this has its own small publisher and
// consumer on warren-perf's connection (src/perf/connection.ts). Warren only: Debian's RabbitMQ
// has no rabbitmq_delayed_message_exchange plugin.

import { performance } from 'node:perf_hooks';
import { PerfConnection, parseAmqpUrl } from '../src/perf/connection';
import { readRssKb } from '../src/perf/proc-stats';
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEADER_SIZE, M, MethodEncoder } from '../src/perf/wire';
import { settledRss, sleep } from './extra-scenarios';
import type { CustomResult, Scenario } from './scenarios';

/** Wall-clock milliseconds with sub-millisecond resolution (publisher and consumer share it). */
const nowMs = (): number => performance.timeOrigin + performance.now();

/**
 * One message: basic.publish + a content header with headers {x-delay: I32} and delivery-mode,
 * + one body frame whose first 8 bytes are the due time (float64 LE, ms). Returns the template
 * and where to patch the delay and the due time.
 */
function delayedTemplate(channel: number, exchange: string, routingKey: string, size: number, persistentMsg: boolean): { bytes: Buffer; delayAt: number; dueAt: number } {
  const method = new MethodEncoder(channel, M.basicPublish).u16(0).shortstr(exchange).shortstr(routingKey).bit(false).bit(false).frame();
  const key = Buffer.from('x-delay');
  const tableLen = 1 + key.length + 1 + 4;
  const payload = 2 + 2 + 8 + 2 + 4 + tableLen + 1;
  const header = Buffer.alloc(FRAME_HEADER_SIZE + payload + 1);
  let p = 0;
  header[p++] = FRAME_HEADER;
  header.writeUInt16BE(channel, p);
  header.writeUInt32BE(payload, p + 2);
  p += 6;
  header.writeUInt16BE(60, p); // class basic
  header.writeUInt16BE(0, p + 2); // weight
  header.writeUInt32BE(0, p + 4);
  header.writeUInt32BE(size, p + 8);
  header.writeUInt16BE(0x2000 | 0x1000, p + 12); // headers, delivery-mode
  p += 14;
  header.writeUInt32BE(tableLen, p);
  p += 4;
  header[p++] = key.length;
  p += key.copy(header, p);
  header[p++] = 0x49; // 'I': signed 32-bit
  const delayInHeader = p;
  p += 4;
  header[p++] = persistentMsg ? 2 : 1;
  header[p++] = FRAME_END;
  const body = Buffer.alloc(FRAME_HEADER_SIZE + size + 1, 97);
  body[0] = FRAME_BODY;
  body.writeUInt16BE(channel, 1);
  body.writeUInt32BE(size, 3);
  body[FRAME_HEADER_SIZE + size] = FRAME_END;
  const bytes = Buffer.concat([method, header, body]);
  return { bytes, delayAt: method.length + delayInHeader, dueAt: method.length + header.length + FRAME_HEADER_SIZE };
}

function exchangeDeclareDelayed(ch: number, name: string, innerType: string): Buffer {
  return new MethodEncoder(ch, M.exchangeDeclare)
    .u16(0)
    .shortstr(name)
    .shortstr('x-delayed-message')
    .bit(false) // passive
    .bit(true) // durable
    .bit(false) // auto-delete
    .bit(false) // internal
    .bit(false) // no-wait
    .table({ 'x-delayed-type': innerType })
    .frame();
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function delayedScenarios(count: number, minMs: number, maxMs: number): Scenario[] {
  const n = count.toLocaleString('en-US');
  const size = 1024;
  const window = 2000; // unconfirmed messages in flight
  return [
    {
      id: 'X1',
      group: 'delayed',
      title: `${n} persistent 1 KB messages through a durable x-delayed-message exchange (x-delayed-type direct) → 1 durable queue, x-delay uniform in ${minMs / 1000}–${maxMs / 1000} s, confirms (${window.toLocaleString('en-US')} outstanding), 1 auto-ack consumer; broker restarted first`,
      freshWarren: true,
      rabbitSkip: "not measured: Debian's RabbitMQ has no delayed-message plugin",
      howto: 'bench/delayed-scenarios.ts (warren-perf cannot set headers): one publisher connection with confirms, one consumer connection; the due time (send time + x-delay) is in the body',
      metrics: [
        { name: 'scheduling (confirmed publishes)', unit: 'msg/s', lowerIsBetter: false },
        { name: `RSS with all pending`, unit: 'MB', lowerIsBetter: true },
        { name: 'RSS per pending message', unit: 'bytes', lowerIsBetter: true },
        { name: 'lateness p50', unit: 'ms', lowerIsBetter: true },
        { name: 'lateness p99', unit: 'ms', lowerIsBetter: true },
        { name: 'lateness max', unit: 'ms', lowerIsBetter: true },
      ],
      custom: async (ctx) => {
        const out: CustomResult = { values: [NaN, NaN, NaN, NaN, NaN, NaN], brokerUsPerMsg: NaN, rssMaxMb: NaN, failure: null };
        if (!ctx.pid) return { ...out, failure: 'broker pid unknown: cannot read its memory' };
        const url = parseAmqpUrl(ctx.url);
        const exchange = `${ctx.prefix}-dx`;
        const queue = `${ctx.prefix}-q0`;
        let setup: PerfConnection | null = null;
        let pubConn: PerfConnection | null = null;
        let conConn: PerfConnection | null = null;
        let peakKb = 0;
        const sampler = setInterval(() => {
          peakKb = Math.max(peakKb, readRssKb(ctx.pid));
        }, 250);
        try {
          setup = await PerfConnection.open(url, { timeoutMs: 30000, name: 'bench delayed setup' });
          await setup.openChannel(1);
          await setup.rpc(exchangeDeclareDelayed(1, exchange, 'direct'), 1, M.exchangeDeclareOk, 'exchange.declare-ok (x-delayed-message)');
          await setup.queueDeclare(1, queue, { durable: true });
          await setup.queueBind(1, queue, exchange, 'k');
          const rss0 = await settledRss(ctx.pid);

          // Consumer: records receive time − due time per message.
          const lateness = new Float64Array(count);
          let received = 0;
          let early = 0;
          conConn = await PerfConnection.open(url, { timeoutMs: 30000, name: 'bench delayed consumer' });
          await conConn.openChannel(1);
          const stamp = Buffer.alloc(8);
          let bodyPos = -1; // bytes of the current body seen; -1 outside a body
          let chunkNow = -1;
          conConn.fast = {
            method: (id) => {
              if (id !== M.basicDeliver) return false;
              bodyPos = 0;
              return true;
            },
            header: () => {},
            body: (buf, start, len) => {
              if (bodyPos < 0) return;
              if (bodyPos < 8) {
                const k = Math.min(8 - bodyPos, len);
                buf.copy(stamp, bodyPos, start, start + k);
                if (bodyPos + k === 8) {
                  if (chunkNow < 0) chunkNow = nowMs();
                  const late = chunkNow - stamp.readDoubleLE(0);
                  if (late < 0) early++;
                  if (received < count) lateness[received] = late;
                  received++;
                }
              }
              bodyPos += len;
              if (bodyPos >= size) bodyPos = -1;
            },
            chunkDone: () => {
              chunkNow = -1;
            },
          };
          await conConn.consume(1, queue, true);

          // Publisher with a window of unconfirmed messages.
          pubConn = await PerfConnection.open(url, { timeoutMs: 30000, name: 'bench delayed publisher' });
          await pubConn.openChannel(1);
          await pubConn.confirmSelect(1);
          let confirmed = 0;
          let nacked = 0;
          let wake: (() => void) | null = null;
          pubConn.fast = {
            method: (id, buf, start) => {
              if (id !== M.basicAck && id !== M.basicNack) return false;
              const tag = buf.readUInt32BE(start + 4) * 4294967296 + buf.readUInt32BE(start + 8);
              const multiple = (buf[start + 12]! & 1) === 1;
              const n = multiple ? tag - confirmed - nacked : 1;
              if (id === M.basicNack) nacked += n;
              else confirmed += n;
              if (wake) {
                const w = wake;
                wake = null;
                w();
              }
              return true;
            },
            header: () => {},
            body: () => {},
            chunkDone: () => {},
          };
          const t = delayedTemplate(1, exchange, 'k', size, true);
          const per = t.bytes.length;
          const batch = 64;
          const started = performance.now();
          let sent = 0;
          while (sent < count) {
            if (pubConn.error) throw pubConn.error;
            if (sent - confirmed - nacked >= window) {
              await new Promise<void>((r) => {
                wake = r;
              });
              continue;
            }
            const k = Math.min(batch, count - sent, window - (sent - confirmed - nacked));
            const buf = Buffer.allocUnsafe(per * k);
            const now = nowMs();
            for (let i = 0; i < k; i++) {
              const off = i * per;
              t.bytes.copy(buf, off);
              const delay = Math.round(minMs + Math.random() * (maxMs - minMs));
              buf.writeInt32BE(delay, off + t.delayAt);
              buf.writeDoubleLE(now + delay, off + t.dueAt);
            }
            sent += k;
            if (!pubConn.write(buf)) await new Promise<void>((r) => pubConn!.socket.once('drain', () => r()));
          }
          while (confirmed + nacked < sent && !pubConn.error) {
            await new Promise<void>((r) => {
              wake = r;
            });
          }
          const schedSeconds = (performance.now() - started) / 1000;
          const rssPending = readRssKb(ctx.pid);
          const pending = count - received;
          ctx.warn(`${confirmed} scheduled in ${schedSeconds.toFixed(1)} s (${nacked} nacked); RSS ${Math.round(rssPending / 1024)} MB with ${pending} pending (${Math.round(rss0 / 1024)} MB before)`);
          if (received > 0) out.note = `${received.toLocaleString('en-US')} messages were already delivered when scheduling finished: RSS is with ${pending.toLocaleString('en-US')} pending`;

          // Wait for every delivery: the last is due maxMs after its publication.
          const until = Date.now() + maxMs + 60_000;
          let last = received;
          let lastChange = Date.now();
          let lastLog = Date.now();
          while (received < confirmed && Date.now() < until && !conConn.error) {
            await sleep(250);
            if (Date.now() - lastLog >= 10_000) {
              lastLog = Date.now();
              ctx.warn(`${received} of ${confirmed} delivered (${((performance.now() - started) / 1000).toFixed(0)} s after scheduling began), broker RSS ${Math.round(readRssKb(ctx.pid) / 1024)} MB`);
            }
            if (received !== last) {
              last = received;
              lastChange = Date.now();
            } else if (Date.now() - lastChange > 30_000 && performance.now() - started > maxMs + 5000) break;
          }
          const got = Math.min(received, count);
          const sorted = lateness.subarray(0, got).sort();
          out.values = [confirmed / schedSeconds, rssPending / 1024, ((rssPending - rss0) * 1024) / Math.max(1, pending), percentile(sorted, 50), percentile(sorted, 99), sorted[got - 1] ?? NaN];
          if (nacked > 0) out.failure = `${nacked} publishes nacked`;
          if (received < confirmed) out.failure ??= `received ${received} of ${confirmed} scheduled messages`;
          if (received > confirmed) out.failure ??= `received ${received} messages, ${received - confirmed} more than the ${confirmed} scheduled`;
          if (early > 0) out.note = `${out.note ? `${out.note}; ` : ''}${early} message(s) arrived before their due time (the earliest by ${(-sorted[0]!).toFixed(2)} ms)`;
        } catch (err) {
          out.failure = err instanceof Error ? err.message : String(err);
        } finally {
          clearInterval(sampler);
          await pubConn?.close();
          await conConn?.close();
          if (setup !== null && setup.error === null) {
            await setup.queueDelete(1, queue).catch(() => undefined);
            await setup.exchangeDelete(1, exchange).catch(() => undefined);
          }
          await setup?.close();
        }
        out.rssMaxMb = peakKb / 1024;
        return out;
      },
    },
  ];
}
