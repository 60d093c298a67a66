import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AmqpError } from '../../src/protocol/errors';
import { FieldTable, FieldValue } from '../../src/protocol/field-table';
import {
  BasicProperties,
  decodeProperties,
  encodeContentHeaderFrame,
  encodeProperties,
  readDeliveryMode,
  readExpiration,
  readHeaders,
  readPriority,
} from '../../src/protocol/properties';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const decode = (b: Buffer): BasicProperties => decodeProperties(b, 0, b.length);
const isSyntaxError = (e: unknown): boolean => e instanceof AmqpError && e.replyName === 'SYNTAX_ERROR';

describe('content properties: golden bytes', () => {
  it('content-type, headers and delivery-mode', () => {
    const p: BasicProperties = { contentType: 'text/plain', headers: [['a', { type: 'I', value: 1 }]], deliveryMode: 2 };
    // flags 0x8000 | 0x2000 | 0x1000, then the values in flag order
    const bytes = hex('b000 0a 746578742f706c61696e 00000007 01 61 49 00000001 02');
    assert.deepEqual(encodeProperties(p), bytes);
    assert.deepEqual(decode(bytes), p);
  });

  it('every property, in flag order from bit 15 down to bit 2', () => {
    const p: BasicProperties = {
      contentType: 'a', contentEncoding: 'b', headers: [], deliveryMode: 1, priority: 9, correlationId: 'c', replyTo: 'd',
      expiration: '60000', messageId: 'e', timestamp: 1700000000, type: 'f', userId: 'g', appId: 'h', clusterId: 'i',
    };
    const bytes = hex(
      'fffc 0161 0162 00000000 01 09 0163 0164 05 3630303030 0165 000000006553f100 0166 0167 0168 0169',
    );
    assert.deepEqual(encodeProperties(p), bytes);
    assert.deepEqual(decode(bytes), p);
  });

  it('no properties at all', () => {
    assert.deepEqual(encodeProperties({}), hex('0000'));
    assert.deepEqual(decode(hex('0000')), {});
  });

  it('content header frame', () => {
    const frame = encodeContentHeaderFrame(1, 60, 5, encodeProperties({ deliveryMode: 2 }));
    // type 2, channel 1, size 15, class 60, weight 0, body size 5, flags 0x1000, mode 2, frame-end
    assert.deepEqual(frame, hex('02 0001 0000000f 003c 0000 0000000000000005 1000 02 ce'));
  });

  it('timestamps beyond 2^53 come back as bigint and re-encode exactly', () => {
    const bytes = hex('0040 ffffffffffffffff');
    const p = decode(bytes);
    assert.equal(p.timestamp, 2n ** 64n - 1n);
    assert.deepEqual(encodeProperties(p), bytes);
    assert.equal(decode(hex('0040 001fffffffffffff')).timestamp, Number.MAX_SAFE_INTEGER);
  });
});

describe('content properties: flags RabbitMQ ignores and malformed lists', () => {
  it('ignores bits 1 and 0 (continuation) when nothing follows', () => {
    assert.deepEqual(decode(hex('1003 02')), { deliveryMode: 2 });
  });

  it('refuses a real second flag word (trailing bytes)', () => {
    assert.throws(() => decode(hex('1001 02 0000')), isSyntaxError);
  });

  const bad: Array<[string, string]> = [
    ['missing flags', '00'],
    ['truncated shortstr', '8000 05 6162'],
    ['missing octet', '1000'],
    ['truncated timestamp', '0040 00000000'],
    ['table past the end', '2000 000000ff 00'],
    ['trailing bytes', '0000 00'],
  ];
  for (const [what, bytes] of bad) {
    it(`rejects ${what}`, () => assert.throws(() => decode(hex(bytes)), isSyntaxError));
  }
});

describe('content properties: single-property readers', () => {
  const bytes = encodeProperties({
    contentType: 'application/json', contentEncoding: 'gzip', headers: [['k', { type: 'S', value: Buffer.from('v') }]],
    deliveryMode: 2, priority: 7, correlationId: 'c', replyTo: 'r', expiration: '1500',
  });

  it('find their property behind the variable-length ones', () => {
    assert.equal(readDeliveryMode(bytes, 0, bytes.length), 2);
    assert.equal(readPriority(bytes, 0, bytes.length), 7);
    assert.equal(readExpiration(bytes, 0, bytes.length), '1500');
    assert.deepEqual(readHeaders(bytes, 0, bytes.length), [['k', { type: 'S', value: Buffer.from('v') }]]);
  });

  it('report absence', () => {
    const none = encodeProperties({ messageId: 'm' });
    assert.equal(readDeliveryMode(none, 0, none.length), 0);
    assert.equal(readPriority(none, 0, none.length), undefined);
    assert.equal(readExpiration(none, 0, none.length), undefined);
    assert.equal(readHeaders(none, 0, none.length), undefined);
  });

  it('work at an offset inside a larger buffer', () => {
    const framed = Buffer.concat([hex('aabbcc'), bytes, hex('ce')]);
    assert.equal(readDeliveryMode(framed, 3, 3 + bytes.length), 2);
    assert.equal(readExpiration(framed, 3, 3 + bytes.length), '1500');
  });

  it('refuse a property list cut short before their property', () => {
    assert.throws(() => readDeliveryMode(bytes, 0, 10), isSyntaxError);
    assert.throws(() => readExpiration(bytes, 0, bytes.length - 2), isSyntaxError);
  });
});

// ---- property tests -------------------------------------------------------------------------

const str = fc.string({ unit: 'binary', maxLength: 60 });
const value: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v): FieldValue => ({ type: 'I', value: v })),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v): FieldValue => ({ type: 'l', value: v })),
  fc.uint8Array({ maxLength: 20 }).map((v): FieldValue => ({ type: 'S', value: Buffer.from(v) })),
  fc.constant<FieldValue>({ type: 'V' }),
);
const headers: fc.Arbitrary<FieldTable> = fc.array(fc.tuple(fc.string({ maxLength: 10 }), value), { maxLength: 4 });

const props: fc.Arbitrary<BasicProperties> = fc.record(
  {
    contentType: str, contentEncoding: str, headers, deliveryMode: fc.integer({ min: 0, max: 255 }),
    priority: fc.integer({ min: 0, max: 255 }), correlationId: str, replyTo: str, expiration: str, messageId: str,
    timestamp: fc.oneof(fc.maxSafeNat(), fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n })),
    type: str, userId: str, appId: str, clusterId: str,
  },
  { requiredKeys: [] },
).map((r) => ({ ...r })); // fc.record builds null-prototype objects

describe('content properties: properties', () => {
  it('round-trip byte-exactly', () => {
    fc.assert(
      fc.property(props, (p) => {
        const bytes = encodeProperties(p);
        const back = decode(bytes);
        assert.deepEqual(back, p);
        assert.deepEqual(encodeProperties(back), bytes);
      }),
      { numRuns: 1000 },
    );
  });

  it('the fast readers agree with the full decode', () => {
    fc.assert(
      fc.property(props, (p) => {
        const b = encodeProperties(p);
        assert.equal(readDeliveryMode(b, 0, b.length), p.deliveryMode ?? 0);
        assert.equal(readPriority(b, 0, b.length), p.priority);
        assert.equal(readExpiration(b, 0, b.length), p.expiration);
        assert.deepEqual(readHeaders(b, 0, b.length), p.headers);
      }),
      { numRuns: 500 },
    );
  });

  it('arbitrary and mutated bytes only ever raise AmqpError', () => {
    const safely = (f: () => unknown): void => {
      try {
        f();
      } catch (e) {
        if (!(e instanceof AmqpError)) throw e;
      }
    };
    const mutated = fc.tuple(props, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat())
      .map(([p, edits, cut]) => {
        const b = Buffer.from(encodeProperties(p));
        for (const [at, v] of edits) b[at % b.length] = v;
        return b.subarray(0, b.length - (cut % 3 === 0 ? cut % (b.length + 1) : 0));
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), mutated), (b) => {
        safely(() => decode(b));
        safely(() => readDeliveryMode(b, 0, b.length));
        safely(() => readPriority(b, 0, b.length));
        safely(() => readExpiration(b, 0, b.length));
        safely(() => readHeaders(b, 0, b.length));
      }),
      { numRuns: 2000 },
    );
  });
});
