// The rate machinery behind message_stats, without a broker: snapshots in, rates out.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CounterSeries, History, RetiringTotals } from '../../src/observability/rates';

describe('CounterSeries', () => {
  it('is 0 until there are two snapshots, then the change per second over the window', () => {
    const s = new CounterSeries(2);
    assert.equal(s.rate(0), 0);
    s.record(1000, [0, 10]);
    assert.equal(s.rate(0), 0);
    s.record(2000, [5, 10]);
    assert.equal(s.rate(0), 5);
    assert.equal(s.rate(1), 0);
    s.record(3000, [20, 13]);
    assert.equal(s.rate(0), 10, '20 over 2 seconds');
    assert.equal(s.rate(1), 1.5);
    assert.equal(s.latest(0), 20);
  });

  it('forgets snapshots older than its window', () => {
    const s = new CounterSeries(1);
    s.record(0, [1000]);
    for (let t = 1; t <= 10; t++) s.record(t * 1000, [1000]);
    assert.equal(s.rate(0), 0, 'the early jump has left the window');
  });
});

describe('RetiringTotals', () => {
  it('keeps counts of entities that went away', () => {
    const totals = new RetiringTotals<{ n: number }>(1);
    const a = { n: 5 };
    const b = { n: 7 };
    const read = (k: { n: number }, out: Float64Array): void => {
      out[0] = k.n;
    };
    totals.sample([a, b], read);
    assert.equal(totals.totals([a, b], read)[0], 12);
    b.n = 9;
    totals.sample([a, b], read);
    // b closes: its last sampled 9 is retired; a carries on counting.
    a.n = 6;
    totals.sample([a], read);
    assert.equal(totals.totals([a], read)[0], 15);
  });
});

describe('History', () => {
  it('returns samples newest first, one per increment, within the age', () => {
    const h = new History(1, 100);
    for (let t = 0; t <= 20; t++) h.record(t * 1000, [t]);
    const samples = h.samples(0, 10, 5, 20_000);
    assert.deepEqual(
      samples.map((s) => s.sample),
      [20, 15, 10],
    );
    assert.deepEqual(samples[0], { sample: 20, timestamp: 20_000 });
  });
});
