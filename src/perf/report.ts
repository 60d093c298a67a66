// Human-readable progress lines and final summary.

import type { LatencySummary } from './histogram';
import type { PerfSummary, ProgressSample } from './runner';

const int = (v: number): string => Math.round(v).toLocaleString('en-US');

/** Microseconds → "123 µs" / "1.23 ms" / "1.23 s". */
export function fmtUs(us: number): string {
  if (us < 1000) return `${us < 10 ? us.toFixed(1) : Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

function latencyText(l: LatencySummary): string {
  if (l.samples === 0) return 'latency -';
  return `latency p50 ${fmtUs(l.p50)} p95 ${fmtUs(l.p95)} p99 ${fmtUs(l.p99)} max ${fmtUs(l.max)}`;
}

export function progressLine(s: ProgressSample, confirms: boolean): string {
  const parts = [`time ${s.t.toFixed(1)} s`, `sent ${int(s.sentRate)} msg/s`];
  if (confirms) parts.push(`confirmed ${int(s.confirmRate)} msg/s`);
  parts.push(`received ${int(s.recvRate)} msg/s`, latencyText(s.latency));
  if (s.blocked) parts.push('BLOCKED by broker');
  return parts.join(', ');
}

export function summaryText(s: PerfSummary): string {
  const lines: string[] = [];
  const server = s.server.product ? ` (${s.server.product} ${s.server.version})`.trimEnd() : '';
  lines.push(
    `warren-perf summary${server}: ${s.elapsed_s.toFixed(2)} s, ${s.producers} producer(s), ${s.consumers} consumer(s), ` +
      `${s.queues} queue(s), ${s.size} B${s.persistent ? ' persistent' : ''}${s.confirm ? `, confirms ${s.confirm}` : ''}`,
  );
  lines.push(`  sent      ${int(s.sent_rate).padStart(12)} msg/s  (${int(s.sent)} messages)`);
  if (s.confirm) lines.push(`  confirmed ${int(s.confirm_rate).padStart(12)} msg/s  (${int(s.confirmed)}${s.nacked ? `, ${int(s.nacked)} nacked` : ''})`);
  lines.push(`  received  ${int(s.recv_rate).padStart(12)} msg/s  (${int(s.received)} messages, ${s.recv_mb_s.toFixed(2)} MB/s)`);
  const l = s.latency_us;
  if (l.samples > 0) {
    lines.push(
      `  latency   min ${fmtUs(l.min)}, p50 ${fmtUs(l.p50)}, p75 ${fmtUs(l.p75)}, p95 ${fmtUs(l.p95)}, p99 ${fmtUs(l.p99)}, ` +
        `p99.9 ${fmtUs(l.p999)}, max ${fmtUs(l.max)} (${int(l.samples)} samples)`,
    );
  }
  lines.push(`  client    ${s.client_cpu_pct.toFixed(0)} % CPU, ${s.client_cpu_us_per_msg.toFixed(3)} µs per message sent or received`);
  if (s.broker) {
    const b = s.broker;
    lines.push(
      `  broker    pid ${b.pid}: ${b.cpu_pct.toFixed(0)} % CPU, ${b.cpu_us_per_msg.toFixed(3)} µs/msg, ` +
        `RSS ${(b.rss_start_kb / 1024).toFixed(0)} → max ${(b.rss_max_kb / 1024).toFixed(0)} MB`,
    );
  }
  if (s.queue_depth >= 0) lines.push(`  queues    ${int(s.queue_depth)} messages left (--keep)`);
  if (s.blocked) lines.push('  the broker blocked publishers (connection.blocked) during the run');
  if (s.errors) lines.push(`  errors    ${s.errors}; first: ${s.first_error}`);
  if (s.cleanup_failed) lines.push(`  cleanup   ${s.cleanup_failed} queue/exchange deletions failed (prefix ${s.queue_prefix})`);
  if (s.timed_out) lines.push('  TIMED OUT: clients were terminated by the watchdog');
  return lines.join('\n');
}
