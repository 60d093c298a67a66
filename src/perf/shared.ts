// What the main thread and the workers share: the clock, the per-client counter slots in a
// SharedArrayBuffer (one writer each, read by the main thread whenever it likes), and the
// messages they exchange.

import type { PerfOptions } from './options';
import type { Topology } from './topology';

/** CLOCK_MONOTONIC in nanoseconds, the same clock in every thread (and amqpperf's). */
export function nowNs(): number {
  return Number(process.hrtime.bigint());
}

/** Counter slot layout: SLOT doubles per client. */
export const SLOT = 8;
export const S_SENT = 0;
export const S_CONFIRMED = 1;
export const S_NACKED = 2;
export const S_RECEIVED = 3;
/** 1 when the client finished (-C/-D reached, all confirmed) or failed. */
export const S_DONE = 4;
export const S_FAILED = 5;
export const S_BLOCKED = 6;

export type Role = 'producer' | 'consumer';

export interface ClientSpec {
  /** Producer or consumer number within its role. */
  id: number;
  /** Index of this client's counter slot. */
  slot: number;
  queueIdx: number;
}

export interface WorkerInput {
  role: Role;
  index: number;
  options: PerfOptions;
  topology: Topology;
  clients: ClientSpec[];
  stats: SharedArrayBuffer;
  /** Consumers' latency histogram (HIST_BUCKETS counts, then the sum of latencies in ns). */
  hist: SharedArrayBuffer | null;
}

export type ToWorker = { type: 'start'; t0: number } | { type: 'stop' };

export type FromWorker =
  | { type: 'ready'; server: { product: string; version: string } }
  | { type: 'error'; who: string; message: string; setup: boolean }
  | { type: 'closed' };
