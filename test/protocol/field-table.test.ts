import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AmqpError } from '../../src/protocol/errors';
import {
  FieldTable,
  FieldValue,
  decodeArray,
  decodeTable,
  encodeArray,
  encodeTable,
  fieldInt,
  fieldString,
  fromPlain,
  tableByteLength,
  tableGet,
  tablePlain,
  toPlain,
} from '../../src/protocol/field-table';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decodesOrAmqpError(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof AmqpError)) throw e;
    assert.equal(e.replyName, 'SYNTAX_ERROR');
  }
}

// One entry of every type, with its encoding worked out by hand from the type octets.
const EVERY_TYPE: Array<[string, FieldValue, string]> = [
  ['t', { type: 't', value: true }, '01 74 74 01'],
  ['b', { type: 'b', value: -2 }, '01 62 62 fe'],
  ['B', { type: 'B', value: 200 }, '01 42 42 c8'],
  ['s', { type: 's', value: -300 }, '01 73 73 fed4'],
  ['u', { type: 'u', value: 65000 }, '01 75 75 fde8'],
  ['I', { type: 'I', value: -100000 }, '01 49 49 fffe7960'],
  ['i', { type: 'i', value: 4000000000 }, '01 69 69 ee6b2800'],
  ['l', { type: 'l', value: -1n }, '01 6c 6c ffffffffffffffff'],
  ['L', { type: 'L', value: 2n ** 40n }, '01 4c 4c 0000010000000000'],
  ['f', { type: 'f', value: 1.5 }, '01 66 66 3fc00000'],
  ['d', { type: 'd', value: -2.5 }, '01 64 64 c004000000000000'],
  ['D', { type: 'D', scale: 2, value: 12345 }, '01 44 44 02 00003039'],
  ['S', { type: 'S', value: Buffer.from('hi') }, '01 53 53 00000002 6869'],
  ['x', { type: 'x', value: Buffer.from([0, 255]) }, '01 78 78 00000002 00ff'],
  ['A', { type: 'A', value: [{ type: 'I', value: 1 }, { type: 'S', value: Buffer.from('a') }] }, '01 41 41 0000000b 49 00000001 53 00000001 61'],
  ['T', { type: 'T', value: 1700000000n }, '01 54 54 000000006553f100'],
  ['F', { type: 'F', value: [['k', { type: 'V' }]] }, '01 46 46 00000003 01 6b 56'],
  ['V', { type: 'V' }, '01 56 56'],
];

const everyTable: FieldTable = EVERY_TYPE.map(([n, v]) => [n, v]);
const everyBody = hex(EVERY_TYPE.map(([, , h]) => h).join(''));
const everyBytes = Buffer.concat([hex((everyBody.length >>> 0).toString(16).padStart(8, '0')), everyBody]);

// ---- arbitraries ----------------------------------------------------------------------------

const name = fc.string({ unit: 'binary', maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));

const { value: fieldValue } = fc.letrec<{ value: FieldValue; table: FieldTable }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.boolean().map((value): FieldValue => ({ type: 't', value })),
    fc.integer({ min: -128, max: 127 }).map((value): FieldValue => ({ type: 'b', value })),
    fc.integer({ min: 0, max: 255 }).map((value): FieldValue => ({ type: 'B', value })),
    fc.integer({ min: -32768, max: 32767 }).map((value): FieldValue => ({ type: 's', value })),
    fc.integer({ min: 0, max: 65535 }).map((value): FieldValue => ({ type: 'u', value })),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((value): FieldValue => ({ type: 'I', value })),
    fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((value): FieldValue => ({ type: 'i', value })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((value): FieldValue => ({ type: 'l', value })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((value): FieldValue => ({ type: 'L', value })),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((value): FieldValue => ({ type: 'T', value })),
    fc.float({ noNaN: true, noDefaultInfinity: true }).map((value): FieldValue => ({ type: 'f', value })),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((value): FieldValue => ({ type: 'd', value })),
    fc.record({ scale: fc.integer({ min: 0, max: 255 }), value: fc.integer({ min: 0, max: 2 ** 32 - 1 }) })
      .map(({ scale, value }): FieldValue => ({ type: 'D', scale, value })),
    bytes.map((value): FieldValue => ({ type: 'S', value })),
    bytes.map((value): FieldValue => ({ type: 'x', value })),
    fc.constant<FieldValue>({ type: 'V' }),
    fc.array(tie('value'), { maxLength: 4 }).map((value): FieldValue => ({ type: 'A', value })),
    tie('table').map((value): FieldValue => ({ type: 'F', value })),
  ),
  table: fc.array(fc.tuple(name, tie('value')), { maxLength: 5 }),
}));

const fieldTable: fc.Arbitrary<FieldTable> = fc.array(fc.tuple(name, fieldValue), { maxLength: 6 });

// ---- tests ----------------------------------------------------------------------------------

describe('field tables: golden bytes', () => {
  it('encodes one field of every type as derived from the spec', () => {
    assert.deepEqual(encodeTable(everyTable), everyBytes);
    assert.equal(tableByteLength(everyTable), everyBytes.length);
  });

  it('decodes it back to the same tagged values', () => {
    const { table, end } = decodeTable(everyBytes, 0);
    assert.equal(end, everyBytes.length);
    assert.deepEqual(table, everyTable);
  });

  it('honours the offset and reports the end', () => {
    const buf = Buffer.concat([hex('aabbcc'), everyBytes, hex('dd')]);
    const { table, end } = decodeTable(buf, 3);
    assert.equal(end, 3 + everyBytes.length);
    assert.deepEqual(table, everyTable);
  });

  it('encodes and decodes arrays', () => {
    const items: FieldValue[] = [{ type: 'b', value: 1 }, { type: 'V' }];
    const buf = encodeArray(items);
    assert.deepEqual(buf, hex('00000003 6201 56'));
    assert.deepEqual(decodeArray(buf, 0), { array: items, end: 7 });
  });

  it('decodes the empty table', () => {
    assert.deepEqual(decodeTable(hex('00000000'), 0), { table: [], end: 4 });
    assert.deepEqual(encodeTable([]), hex('00000000'));
  });

  it('reads any non-zero bool octet as true, like RabbitMQ', () => {
    const { table } = decodeTable(hex('00000004 01 62 74 07'), 0);
    assert.deepEqual(table, [['b', { type: 't', value: true }]]);
  });

  it('keeps duplicate names in order; lookups take the first', () => {
    const buf = hex('0000000c 01 61 62 01 01 61 62 02 01 62 62 03');
    const { table } = decodeTable(buf, 0);
    assert.equal(table.length, 3);
    assert.deepEqual(encodeTable(table), buf);
    assert.deepEqual(tableGet(table, 'a'), { type: 'b', value: 1 });
    assert.deepEqual(tablePlain(table), { a: 1, b: 3 });
  });
});

describe('field tables: malformed input', () => {
  const cases: Array<[string, string]> = [
    ['truncated length prefix', '000000'],
    ['length past the end', '00000010 01 61 56'],
    ['unknown type octet', '00000003 01 61 51'],
    ['name past the table end', '00000002 05 61'],
    ['value past the table end', '00000004 01 61 49 00'],
    ['longstr length past the end', '00000007 01 61 53 ffffffff'],
    ['nested table longer than its parent', '00000007 01 61 46 00000009'],
    ['NaN double', '0000000b 01 61 64 7ff8000000000000'],
    ['infinite float', '00000007 01 61 66 7f800000'],
  ];
  for (const [what, bytes] of cases) {
    it(`rejects ${what} with SYNTAX_ERROR`, () => {
      assert.throws(() => decodeTable(hex(bytes), 0), (e: unknown) => e instanceof AmqpError && e.replyName === 'SYNTAX_ERROR');
    });
  }

  it('refuses absurd nesting with an AmqpError rather than a stack overflow', () => {
    assert.throws(() => decodeTable(deepTable(20000), 0), (e: unknown) => e instanceof AmqpError && /nested/.test(e.message));
    assert.equal(decodeTable(deepTable(50), 0).table.length, 1);
  });
});

/** A table nested `depth` levels deep: {a: {a: ... {}}}. */
function deepTable(depth: number): Buffer {
  // Built back to front in one buffer so the test itself stays linear.
  const total = 4 + depth * 7;
  const buf = Buffer.alloc(total);
  for (let level = 0; level <= depth; level++) {
    const at = level * 7;
    buf.writeUInt32BE(total - at - 4, at);
    if (level < depth) buf.write('016146', at + 4, 'hex');
  }
  return buf;
}

describe('field tables: plain conversion', () => {
  it('converts tagged values to plain JS', () => {
    const plain = tablePlain(everyTable);
    assert.deepEqual(plain, {
      t: true, b: -2, B: 200, s: -300, u: 65000, I: -100000, i: 4000000000, l: -1, L: 2 ** 40,
      f: 1.5, d: -2.5, D: 123.45, S: 'hi', x: Buffer.from([0, 255]), A: [1, 'a'], T: 1700000000,
      F: { k: null }, V: null,
    });
  });

  it('keeps unsafe 64-bit integers as bigint', () => {
    assert.equal(toPlain({ type: 'l', value: 2n ** 60n }), 2n ** 60n);
    assert.equal(toPlain({ type: 'T', value: 2n ** 64n - 1n }), 2n ** 64n - 1n);
  });

  it('does not let a __proto__ name touch the prototype', () => {
    const plain = tablePlain([['__proto__', { type: 'S', value: Buffer.from('x') }]]);
    assert.equal(Object.getPrototypeOf(plain), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(plain, '__proto__')?.value, 'x');
  });

  it('infers wire types from plain values', () => {
    const when = new Date(1700000000123);
    assert.deepEqual(
      fromPlain({ s: 'v', b: false, n: 7, big: 2n ** 40n, r: 0.5, buf: Buffer.from([1]), a: [1, 'x'], o: { k: null }, u: undefined, w: when }),
      [
        ['s', { type: 'S', value: Buffer.from('v') }],
        ['b', { type: 't', value: false }],
        ['n', { type: 'l', value: 7n }],
        ['big', { type: 'l', value: 2n ** 40n }],
        ['r', { type: 'd', value: 0.5 }],
        ['buf', { type: 'x', value: Buffer.from([1]) }],
        ['a', { type: 'A', value: [{ type: 'l', value: 1n }, { type: 'S', value: Buffer.from('x') }] }],
        ['o', { type: 'F', value: [['k', { type: 'V' }]] }],
        ['u', { type: 'V' }],
        ['w', { type: 'T', value: 1700000000n }],
      ],
    );
    assert.deepEqual(fromPlain({ huge: 2 ** 60 }), [['huge', { type: 'd', value: 2 ** 60 }]]);
    assert.throws(() => fromPlain({ n: NaN }), RangeError);
    assert.throws(() => fromPlain({ f: () => 1 }), TypeError);
  });

  it('plain round trip for inferred types', () => {
    const obj = { a: 'x', b: true, c: 42, d: 1.25, e: [1, 2], f: { g: 'h' }, n: null };
    assert.deepEqual(tablePlain(fromPlain(obj)), obj);
  });

  it('typed accessors', () => {
    assert.equal(fieldString(tableGet(everyTable, 'S')), 'hi');
    assert.equal(fieldString(tableGet(everyTable, 'x')), undefined);
    assert.equal(fieldString(tableGet(everyTable, 'missing')), undefined);
    assert.equal(fieldInt(tableGet(everyTable, 'I')), -100000);
    assert.equal(fieldInt(tableGet(everyTable, 'L')), 2 ** 40);
    assert.equal(fieldInt(tableGet(everyTable, 'd')), undefined);
    assert.equal(fieldInt({ type: 'l', value: 2n ** 62n }), undefined);
  });
});

describe('field tables: properties', () => {
  it('encode → decode → encode is byte-identical and value-preserving', () => {
    fc.assert(
      fc.property(fieldTable, (t) => {
        const a = encodeTable(t);
        assert.equal(a.length, tableByteLength(t));
        const { table, end } = decodeTable(a, 0);
        assert.equal(end, a.length);
        assert.deepEqual(table, t);
        assert.deepEqual(encodeTable(table), a);
      }),
      { numRuns: 1000 },
    );
  });

  it('arbitrary bytes only ever raise AmqpError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (a) => {
        const buf = Buffer.from(a);
        decodesOrAmqpError(() => decodeTable(buf, 0));
        decodesOrAmqpError(() => decodeArray(buf, 0));
      }),
      { numRuns: 2000 },
    );
  });

  it('arbitrary bodies behind a correct length prefix only ever raise AmqpError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (a) => {
        const buf = Buffer.alloc(4 + a.length);
        buf.writeUInt32BE(a.length);
        buf.set(a, 4);
        decodesOrAmqpError(() => decodeTable(buf, 0));
        decodesOrAmqpError(() => decodeArray(buf, 0));
      }),
      { numRuns: 2000 },
    );
  });

  it('every truncation of a valid encoding is rejected', () => {
    fc.assert(
      fc.property(fieldTable, (t) => {
        const a = encodeTable(t);
        for (let n = 0; n < a.length; n++) {
          assert.throws(() => decodeTable(a.subarray(0, n), 0), AmqpError);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('mutated valid encodings decode or raise AmqpError, and what decodes re-encodes', () => {
    fc.assert(
      fc.property(fieldTable, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (t, edits) => {
        const a = Buffer.from(encodeTable(t));
        for (const [at, byte] of edits) a[at % a.length] = byte;
        try {
          const { table } = decodeTable(a, 0);
          encodeTable(table);
        } catch (e) {
          if (!(e instanceof AmqpError)) throw e;
        }
      }),
      { numRuns: 1000 },
    );
  });
});
