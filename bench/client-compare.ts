// Does warren-perf drive a broker as hard as the reference C load generator (amqpperf, in
// ../shared/perf)? Runs scenarios 1-4 against one broker (RabbitMQ by default), alternating
// amqpperf and warren-perf run by run, and prints medians as a Markdown table.
//
//   node dist/bench/client-compare.js
//
// Environment: COMPARE_URL (default BENCH_RABBITMQ_URL or amqp://guest:guest@127.0.0.1:5672),
// COMPARE_ROUNDS=5, COMPARE_DURATION=5, COMPARE_SCENARIOS=1-4, AMQPPERF (path of the binary;
// default ../shared/perf/amqpperf next to the repository, built with `make -C ../shared/perf`).

import { execFile } from 'node:child_process';
import { existsSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { defaultOptions } from '../src/perf/options';
import { runPerf, type PerfSummary } from '../src/perf/runner';
import { ROOT, envNumber, log, machine, median, pidListeningOn, sleep } from './lib';
import { scenarios, selectScenarios, type Scenario } from './scenarios';

type Tool = 'amqpperf' | 'warren-perf' | 'amqplib';

interface Row {
  tool: Tool;
  scenario: string;
  round: number;
  sent: number;
  recv: number;
  clientCpuPct: number;
  clientUsPerMsg: number;
  brokerUsPerMsg: number;
  error: string;
}

function runAmqpperf(bin: string, url: string, pid: number, s: Scenario, duration: number, prefix: string): Promise<PerfSummary | string> {
  const args = ['-h', url, '-z', String(duration), '-u', prefix, '--id', `amqpperf:${s.id}`, ...(pid ? ['--watch-pid', String(pid)] : []), ...(s.amqpperf ?? [])];
  return new Promise((done) => {
    execFile(bin, args, { timeout: (duration + 60) * 1000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        done(JSON.parse(line) as PerfSummary);
      } catch {
        done(`amqpperf failed: ${err?.message ?? ''} ${stderr.trim().slice(0, 300)}`);
      }
    });
  });
}

/**
 * The "naive amqplib client" of the issue, S1's shape only: one publisher channel calling
 * sendToQueue in a loop (yielding every 1,000 messages and on back-pressure), one auto-ack
 * consumer on its own connection, both in this process.
 */
async function runAmqplib(url: string, pid: number, duration: number, prefix: string): Promise<PerfSummary | string> {
  const amqp = await import('amqplib');
  const q = `${prefix}-q0`;
  const pc = await amqp.connect(url);
  const cc = await amqp.connect(url);
  try {
    const pch = await pc.createChannel();
    const cch = await cc.createChannel();
    await pch.assertQueue(q, { durable: false });
    let received = 0;
    await cch.consume(q, () => void received++, { noAck: true });
    const body = Buffer.alloc(16, 97);
    let sent = 0;
    let running = true;
    const pump = (): void => {
      while (running) {
        const ok = pch.sendToQueue(q, body);
        sent++;
        if (!ok) {
          pch.once('drain', pump);
          return;
        }
        if (sent % 1000 === 0) {
          setImmediate(pump);
          return;
        }
      }
    };
    const { ProcessSampler } = await import('../src/perf/proc-stats');
    const sampler = pid ? new ProcessSampler(pid) : null;
    sampler?.start();
    const cpu0 = process.cpuUsage();
    const t0 = Date.now();
    pump();
    await sleep(duration * 1000);
    running = false;
    const el = (Date.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const b = sampler?.stop();
    const s1 = sent;
    const r1 = received;
    const cpuS = (cpu.user + cpu.system) / 1e6;
    await pch.deleteQueue(q).catch(() => 0);
    return {
      sent_rate: s1 / el,
      recv_rate: r1 / el,
      client_cpu_pct: (100 * cpuS) / el,
      client_cpu_us_per_msg: (cpuS * 1e6) / (s1 + r1),
      broker: b ? { ...b, cpu_pct: (100 * b.cpu_s) / el, cpu_us_per_msg: (b.cpu_s * 1e6) / (s1 + r1) } : undefined,
      errors: 0,
      first_error: '',
    } as unknown as PerfSummary;
  } catch (err) {
    return `amqplib: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    await pc.close().catch(() => 0);
    await cc.close().catch(() => 0);
  }
}

async function main(): Promise<void> {
  const url = process.env.COMPARE_URL || process.env.BENCH_RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672';
  const rounds = Math.round(envNumber('COMPARE_ROUNDS', 5));
  const duration = envNumber('COMPARE_DURATION', 5);
  const bin = process.env.AMQPPERF || resolve(ROOT, '..', 'shared', 'perf', 'amqpperf');
  if (!existsSync(bin)) throw new Error(`no amqpperf at ${bin}: build it with \`apt-get install librabbitmq-dev && make -C ../shared/perf\` or set AMQPPERF`);
  const list = selectScenarios(scenarios(20), process.env.COMPARE_SCENARIOS || '1-4').filter((s) => s.amqpperf);
  const pid = pidListeningOn(Number(new URL(url).port || 5672));
  const m = await machine();
  const raw = join(tmpdir(), `warren-client-compare-${Date.now()}.jsonl`);
  log(`${m.cpu}, ${m.cores} cores; broker pid ${pid || 'unknown'}; ${rounds} rounds × ${list.length} scenarios × ${duration} s; raw → ${raw}`);
  let server = '';
  const rows: Row[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const s of list) {
      const order: Tool[] = round % 2 === 1 ? ['amqpperf', 'warren-perf'] : ['warren-perf', 'amqpperf'];
      if (s.id === 'S1' && process.env.COMPARE_AMQPLIB !== '0') order.push('amqplib');
      for (const tool of order) {
        const prefix = `compare-${process.pid}-${s.id}-r${round}-${tool}`;
        let r: PerfSummary | string;
        if (tool === 'amqpperf') {
          r = await runAmqpperf(bin, url, pid, s, duration, prefix);
        } else if (tool === 'amqplib') {
          r = await runAmqplib(url, pid, duration, prefix);
        } else {
          try {
            r = await runPerf({ ...defaultOptions(), uri: url, quiet: true, duration, watchPid: pid, queuePrefix: prefix, id: `warren-perf:${s.id}`, ...s.opts });
            if (!server) server = `${r.server.product} ${r.server.version}`;
          } catch (err) {
            r = err instanceof Error ? err.message : String(err);
          }
        }
        const row: Row =
          typeof r === 'string'
            ? { tool, scenario: s.id, round, sent: NaN, recv: NaN, clientCpuPct: NaN, clientUsPerMsg: NaN, brokerUsPerMsg: NaN, error: r }
            : {
                tool,
                scenario: s.id,
                round,
                sent: r.sent_rate,
                recv: r.recv_rate,
                clientCpuPct: r.client_cpu_pct,
                clientUsPerMsg: r.client_cpu_us_per_msg,
                brokerUsPerMsg: r.broker?.cpu_us_per_msg ?? NaN,
                error: r.errors ? r.first_error : '',
              };
        rows.push(row);
        appendFileSync(raw, `${JSON.stringify(row)}\n`);
        log(`round ${round} ${s.id} ${tool.padEnd(11)} sent ${Math.round(row.sent)}/s recv ${Math.round(row.recv)}/s client ${row.clientCpuPct}%${row.error ? ` ERROR ${row.error}` : ''}`);
        await sleep(1000);
      }
    }
  }
  const fmt = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '–');
  const out: string[] = [];
  out.push(`Broker: ${server || url} on ${m.cpu} (${m.cores} cores), Node ${m.node}; ${rounds} alternating rounds of ${duration} s, medians.`, '');
  out.push('| scenario | amqpperf sent/s | warren-perf sent/s | amqpperf recv/s | warren-perf recv/s | recv ratio of the medians | median of the per-round recv ratios (range) | client CPU % (C / wp) | client µs/msg (C / wp) | broker µs/msg (C / wp) |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of list) {
    const c = rows.filter((r) => r.scenario === s.id && r.tool === 'amqpperf' && !r.error);
    const w = rows.filter((r) => r.scenario === s.id && r.tool === 'warren-perf' && !r.error);
    const med = (xs: Row[], f: (r: Row) => number): number => median(xs.map(f));
    const ratio = med(w, (r) => r.recv) / med(c, (r) => r.recv);
    // Runs of one round are back to back, so their ratio cancels most of the machine's drift.
    const paired = w.flatMap((x) => c.filter((y) => y.round === x.round).map((y) => x.recv / y.recv));
    const pr = paired.length ? `${median(paired).toFixed(2)} (${Math.min(...paired).toFixed(2)}–${Math.max(...paired).toFixed(2)})` : '–';
    out.push(
      `| ${s.id} | ${fmt(med(c, (r) => r.sent))} | ${fmt(med(w, (r) => r.sent))} | ${fmt(med(c, (r) => r.recv))} | ${fmt(med(w, (r) => r.recv))} | ` +
        `${Number.isFinite(ratio) ? ratio.toFixed(2) : '–'} | ${pr} | ${fmt(med(c, (r) => r.clientCpuPct))} / ${fmt(med(w, (r) => r.clientCpuPct))} | ` +
        `${med(c, (r) => r.clientUsPerMsg).toFixed(2)} / ${med(w, (r) => r.clientUsPerMsg).toFixed(2)} | ${med(c, (r) => r.brokerUsPerMsg).toFixed(2)} / ${med(w, (r) => r.brokerUsPerMsg).toFixed(2)} |`,
    );
  }
  const nl = rows.filter((r) => r.tool === 'amqplib' && !r.error);
  if (nl.length) {
    const med = (f: (r: Row) => number): number => median(nl.map(f));
    out.push(
      '',
      `Naive amqplib client (S1 shape: sendToQueue loop + auto-ack consumer, one process), same rounds: sent ${fmt(med((r) => r.sent))}/s, ` +
        `received ${fmt(med((r) => r.recv))}/s, client CPU ${fmt(med((r) => r.clientCpuPct))} % (${med((r) => r.clientUsPerMsg).toFixed(2)} µs/msg), ` +
        `broker ${med((r) => r.brokerUsPerMsg).toFixed(2)} µs/msg.`,
    );
  }
  const errs = rows.filter((r) => r.error);
  if (errs.length) out.push('', ...errs.map((r) => `- ${r.tool} ${r.scenario}: ${r.error}`));
  process.stdout.write(`${out.join('\n')}\n`);
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`client-compare: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
