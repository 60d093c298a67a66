// Log-linear latency histogram over nanoseconds, the same layout as amqpperf's: exact below
// 128 ns, then 64 sub-buckets per power of two (relative error under 1.6 %). Counts live in a
// Float64Array so that a consumer can record into a slice of shared memory, one writer per
// slice, and the main thread can read it without messages or locks.

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS;
/** Number of buckets: covers every value up to 2^64 ns. */
export const HIST_BUCKETS = (64 - SUB_BITS + 1) * SUB;
const TWO32 = 4294967296;

/** Bucket index of a latency in nanoseconds (a non-negative integer-valued number). */
export function bucketOf(ns: number): number {
  if (ns < 2 * SUB) return ns < 0 ? 0 : Math.floor(ns);
  let msb: number;
  let shifted: number; // (ns >> shift) & (SUB - 1), computed without 32-bit overflow
  if (ns < TWO32) {
    const v = ns >>> 0;
    msb = 31 - Math.clz32(v);
    shifted = (v >>> (msb - SUB_BITS)) & (SUB - 1);
  } else {
    const hi = Math.floor(ns / TWO32);
    msb = 63 - Math.clz32(hi);
    shifted = Math.floor(ns / 2 ** (msb - SUB_BITS)) & (SUB - 1);
  }
  return (msb - SUB_BITS + 1) * SUB + shifted;
}

/** The midpoint of a bucket, in nanoseconds. */
export function bucketValue(idx: number): number {
  if (idx < 2 * SUB) return idx;
  const shift = Math.floor(idx / SUB) - 1;
  const sub = idx % SUB;
  return (sub + SUB) * 2 ** shift + 2 ** shift / 2;
}

export interface LatencySummary {
  samples: number;
  min: number;
  mean: number;
  p50: number;
  p75: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

/** Percentiles in microseconds (like amqpperf's latency_us); sumNs gives the exact mean. */
export function summarize(counts: ArrayLike<number>, sumNs: number): LatencySummary {
  let n = 0;
  let first = -1;
  let last = -1;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (c > 0) {
      n += c;
      if (first < 0) first = i;
      last = i;
    }
  }
  const out: LatencySummary = { samples: n, min: 0, mean: 0, p50: 0, p75: 0, p95: 0, p99: 0, p999: 0, max: 0 };
  if (n === 0) return out;
  const pct = (p: number): number => {
    const target = Math.max(1, Math.ceil((p / 100) * n));
    let acc = 0;
    for (let i = first; i <= last; i++) {
      acc += counts[i]!;
      if (acc >= target) return bucketValue(i) / 1e3;
    }
    return bucketValue(last) / 1e3;
  };
  out.min = bucketValue(first) / 1e3;
  out.max = bucketValue(last) / 1e3;
  out.mean = sumNs / n / 1e3;
  out.p50 = pct(50);
  out.p75 = pct(75);
  out.p95 = pct(95);
  out.p99 = pct(99);
  out.p999 = pct(99.9);
  return out;
}
