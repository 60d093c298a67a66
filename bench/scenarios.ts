// The benchmark scenarios of issue 6 as warren-perf option sets, with the equivalent amqpperf
// flags (../shared/perf) for the client cross-check.

import type { PerfOptions } from '../src/perf/options';
import type { PerfSummary } from '../src/perf/runner';
import { delayedScenarios } from './delayed-scenarios';
import { durabilityScenarios } from './durability-scenarios';
import { backlogScenario, idleScenario } from './extra-scenarios';
import type { WarrenProcess } from './lib';

export interface Metric {
  name: string;
  unit: string;
  lowerIsBetter: boolean;
}

/** What a scenario that is not one warren-perf run (8, 10) gets and gives back. */
export interface CustomContext {
  url: string;
  /** The broker's pid (for /proc), 0 if unknown. */
  pid: number;
  /** A unique queue name prefix for this run. */
  prefix: string;
  duration: number;
  warn(line: string): void;
  /** The Warren child process when the broker is Warren (to kill and restart it), else null. */
  warren: WarrenProcess | null;
}
export interface CustomResult {
  /** One value per metric. */
  values: number[];
  brokerUsPerMsg: number;
  rssMaxMb: number;
  failure: string | null;
  /** Something the reader of the report should know about this run. */
  note?: string;
}

export interface Scenario {
  id: string;
  title: string;
  metrics: Metric[];
  /** A single warren-perf run with these options ... */
  opts?: Partial<PerfOptions>;
  /** ... whose summary gives the metrics' values; */
  values?: (s: PerfSummary) => number[];
  /** or a routine of its own. */
  custom?: (ctx: CustomContext) => Promise<CustomResult>;
  /** amqpperf flags for the same load (besides -z), where amqpperf can express it. */
  amqpperf?: string[];
  /** How to reproduce it by hand, for scenarios that are not one warren-perf run. */
  howto?: string;
  /** Restart Warren before this scenario (a garbage-collected heap left by earlier runs would
   * hide what the scenario costs). RabbitMQ is measured as it is. */
  freshWarren?: boolean;
  /** A named group (BENCH_SCENARIOS=<group>) reported in a section of its own. */
  group?: 'durability' | 'delayed';
  /** Not run on RabbitMQ, for this reason (shown in the RabbitMQ column). */
  rabbitSkip?: string;
}

/** The scenario groups, in report order, with their section titles. */
export const GROUPS = [
  { name: 'durability', title: 'Durability: persistent messages, backlogs, recovery, memory per queued message' },
  { name: 'delayed', title: 'Delayed messages (x-delayed-message exchange)' },
  // No scenarios of this list: run.ts hands it to bench/cluster-scenarios.ts. Listed so that a
  // run of other groups keeps its section of the report.
  { name: 'cluster', title: 'Cluster (Warren only)' },
] as const;

const recv = { metrics: [{ name: 'received', unit: 'msg/s', lowerIsBetter: false }], values: (s: PerfSummary) => [s.recv_rate] };
const p99 = {
  metrics: [
    { name: 'p99 latency', unit: 'ms', lowerIsBetter: true },
    { name: 'p50 latency', unit: 'ms', lowerIsBetter: true },
  ],
  values: (s: PerfSummary) => [s.latency_us.p99 / 1000, s.latency_us.p50 / 1000],
};
const mbs = { metrics: [{ name: 'received', unit: 'MB/s', lowerIsBetter: false }], values: (s: PerfSummary) => [s.recv_mb_s] };

export interface ExtraSettings {
  s8Count?: number;
  s10Connections?: number;
  s10Queues?: number;
  /** Messages in the durability group's backlog/memory and recovery scenarios. */
  durCount?: number;
  /** Delayed messages scheduled, and the range of their x-delay (ms). */
  delayedCount?: number;
  delayedMinMs?: number;
  delayedMaxMs?: number;
}

export function scenarios(s6Rate: number, extra: ExtraSettings = {}): Scenario[] {
  return [
    {
      id: 'S1',
      title: '1 producer → 1 queue → 1 consumer, 16 B transient, auto-ack',
      opts: { producers: 1, consumers: 1, size: 16, autoack: true },
      ...recv,
      amqpperf: ['-x1', '-y1', '-s16', '-a'],
    },
    {
      id: 'S2',
      title: 'as S1 with confirms (1,000 outstanding), manual ack, prefetch 1,000, multi-ack every 100',
      opts: { producers: 1, consumers: 1, size: 16, confirm: 1000, prefetch: 1000, multiAck: 100 },
      ...recv,
      amqpperf: ['-x1', '-y1', '-s16', '-q1000', '-A100', '-c1000'],
    },
    {
      id: 'S3',
      title: 'persistent 1 KB to a durable queue, confirms 1,000, manual ack q1,000/A100',
      opts: { producers: 1, consumers: 1, size: 1024, persistent: true, durable: true, confirm: 1000, prefetch: 1000, multiAck: 100 },
      ...recv,
      amqpperf: ['-x1', '-y1', '-s1024', '-f', 'persistent', '--durable', '-q1000', '-A100', '-c1000'],
    },
    {
      id: 'S4',
      title: 'fan-out: 1 producer → fanout exchange → 10 queues, 10 auto-ack consumers (all copies counted)',
      opts: { producers: 1, consumers: 10, queues: 10, exchangeType: 'fanout', size: 16, autoack: true },
      ...recv,
      amqpperf: ['-x1', '-y10', '--queues', '10', '-t', 'fanout', '-s16', '-a'],
    },
    {
      id: 'S5',
      title: 'topic: 1 producer → topic exchange with 1,000 bindings (mixed */# patterns) → 10 queues, 10 auto-ack consumers',
      opts: { producers: 1, consumers: 10, queues: 10, exchangeType: 'topic', topicBindings: 1000, size: 16, autoack: true },
      ...recv,
    },
    {
      id: 'S6',
      title: `100 producers, 100 consumers, 100 queues (200 connections), ${s6Rate} msg/s per producer, auto-ack`,
      opts: { producers: 100, consumers: 100, queues: 100, rate: s6Rate, size: 16, autoack: true },
      ...p99,
      amqpperf: ['-x100', '-y100', '--queues', '100', '-r', String(s6Rate), '-s16', '-a'],
    },
    {
      id: 'S7a',
      title: 'latency at a fixed 1,000 msg/s, 1 producer, 1 consumer, 16 B, auto-ack',
      opts: { producers: 1, consumers: 1, size: 16, autoack: true, rate: 1000 },
      ...p99,
      amqpperf: ['-x1', '-y1', '-s16', '-a', '-r', '1000'],
    },
    {
      id: 'S7b',
      title: 'latency at a fixed 10,000 msg/s, 1 producer, 1 consumer, 16 B, auto-ack',
      opts: { producers: 1, consumers: 1, size: 16, autoack: true, rate: 10000 },
      ...p99,
      amqpperf: ['-x1', '-y1', '-s16', '-a', '-r', '10000'],
    },
    backlogScenario(extra.s8Count ?? 1_000_000),
    {
      id: 'S9',
      title: '1 MB messages, 1 producer, 1 consumer, confirms 10, manual ack prefetch 10',
      opts: { producers: 1, consumers: 1, size: 1048576, confirm: 10, prefetch: 10, multiAck: 1 },
      ...mbs,
      amqpperf: ['-x1', '-y1', '-s1048576', '-q10', '-A1', '-c10'],
    },
    idleScenario(extra.s10Connections ?? 1000, extra.s10Queues ?? 10_000),
    ...durabilityScenarios(extra.durCount ?? 1_000_000),
    ...delayedScenarios(extra.delayedCount ?? 1_000_000, extra.delayedMinMs ?? 30_000, extra.delayedMaxMs ?? 60_000),
  ];
}

/** "1-6", "1,2,7", "all", "durability", "delayed", "1-6,D2" → scenario ids (7 = S7a + S7b). */
export function selectScenarios(all: Scenario[], spec: string): Scenario[] {
  if (spec.trim() === 'all') return all;
  const want = new Set<string>();
  for (const part of spec.split(',')) {
    const name = part.trim().toLowerCase();
    const group = all.filter((s) => s.group === name);
    if (group.length) {
      for (const s of group) want.add(s.id.toUpperCase());
      continue;
    }
    if (all.some((s) => s.id.toUpperCase() === name.toUpperCase() && !/^S\d/i.test(s.id))) {
      want.add(name.toUpperCase());
      continue;
    }
    const p = part.trim().toUpperCase().replace(/^S/, '');
    if (p === '') continue;
    const range = /^(\d+)-(\d+)$/.exec(p);
    const nums = range ? Array.from({ length: Number(range[2]) - Number(range[1]) + 1 }, (_, i) => String(Number(range[1]) + i)) : [p];
    for (const n of nums) {
      if (n === '7') {
        want.add('S7A');
        want.add('S7B');
      } else want.add(`S${n}`);
    }
  }
  const picked = all.filter((s) => want.has(s.id.toUpperCase()));
  const known = new Set(all.map((s) => s.id.toUpperCase()));
  const unknown = [...want].filter((w) => !known.has(w));
  if (unknown.length) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; known: ${all.map((s) => s.id).join(', ')}, and the groups ${GROUPS.map((g) => g.name).join(', ')}`);
  return picked;
}
