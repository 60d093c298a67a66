import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AmqpError } from '../../src/protocol/errors';
import { FieldTable, FieldValue } from '../../src/protocol/field-table';
import { FieldKind, METHOD_DEFS, MethodName } from '../../src/protocol/method-table';
import {
  M,
  Method,
  decodeMethod,
  encodeMethodFrame,
  methodHasContent,
  methodKey,
  methodName,
} from '../../src/protocol/spec';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The method payload of a frame built by encodeMethodFrame. */
function payload(frame: Buffer): Buffer {
  return frame.subarray(7, frame.length - 1);
}

function decodeFrame(frame: Buffer): Method {
  const p = payload(frame);
  return decodeMethod(p, 0, p.length);
}

function isDecodeError(e: unknown): boolean {
  return e instanceof AmqpError && e.replyName === 'FRAME_ERROR';
}

describe('method keys and names', () => {
  it('keys are (class << 16) | method', () => {
    assert.equal(M.BasicPublish, methodKey(60, 40));
    assert.equal(M.ConnectionStart, methodKey(10, 10));
    assert.equal(M.ConnectionUpdateSecretOk, methodKey(10, 71));
    assert.equal(M.ExchangeUnbind, methodKey(40, 40));
    assert.equal(M.ExchangeUnbindOk, methodKey(40, 51));
    assert.equal(M.QueueUnbindOk, methodKey(50, 51));
    assert.equal(M.BasicNack, methodKey(60, 120));
    assert.equal(M.ConfirmSelectOk, methodKey(85, 11));
    assert.equal(M.TxRollbackOk, methodKey(90, 31));
    assert.equal(new Set(Object.values(M)).size, Object.keys(M).length);
  });

  it('names and content flags', () => {
    assert.equal(methodName(M.BasicPublish), 'basic.publish');
    assert.equal(methodName(M.ConnectionStartOk), 'connection.start-ok');
    assert.equal(methodName(methodKey(60, 999)), 'unknown 60/999');
    const withContent = Object.values(M).filter(methodHasContent).map(methodName).sort();
    assert.deepEqual(withContent, ['basic.deliver', 'basic.get-ok', 'basic.publish', 'basic.return']);
  });
});

describe('golden frames', () => {
  it('basic.publish', () => {
    const frame = encodeMethodFrame(1, { key: M.BasicPublish, exchange: 'ex', routingKey: 'rk', mandatory: true, immediate: false });
    // type, channel, size 13, class 60 method 40, ticket 0, "ex", "rk", bits, frame-end
    assert.deepEqual(frame, hex('01 0001 0000000d 003c0028 0000 02 6578 02 726b 01 ce'));
    assert.deepEqual(decodeFrame(frame), { key: M.BasicPublish, exchange: 'ex', routingKey: 'rk', mandatory: true, immediate: false });
  });

  it('basic.ack', () => {
    const frame = encodeMethodFrame(2, { key: M.BasicAck, deliveryTag: 5, multiple: true });
    assert.deepEqual(frame, hex('01 0002 0000000d 003c0050 0000000000000005 01 ce'));
  });

  it('basic.nack packs multiple and requeue into one octet', () => {
    const frame = encodeMethodFrame(1, { key: M.BasicNack, deliveryTag: 2 ** 40 + 7, multiple: false, requeue: true });
    assert.deepEqual(frame, hex('01 0001 0000000d 003c0078 0000010000000007 02 ce'));
    assert.deepEqual(decodeFrame(frame), { key: M.BasicNack, deliveryTag: 2 ** 40 + 7, multiple: false, requeue: true });
  });

  it('connection.tune', () => {
    const frame = encodeMethodFrame(0, { key: M.ConnectionTune, channelMax: 2047, frameMax: 131072, heartbeat: 60 });
    assert.deepEqual(frame, hex('01 0000 0000000c 000a001e 07ff 00020000 003c ce'));
  });

  it('queue.declare: five bits share an octet, reserved ticket written as 0', () => {
    const m: Method = { key: M.QueueDeclare, queue: 'q', passive: false, durable: true, exclusive: false, autoDelete: true, noWait: false, arguments: [] };
    const frame = encodeMethodFrame(1, m);
    assert.deepEqual(frame, hex('01 0001 0000000d 0032000a 0000 01 71 0a 00000000 ce'));
    assert.deepEqual(decodeFrame(frame), m);
  });

  it('connection.open drops its reserved shortstr and bit', () => {
    const frame = encodeMethodFrame(0, { key: M.ConnectionOpen, virtualHost: '/' });
    assert.deepEqual(frame, hex('01 0000 00000008 000a0028 01 2f 00 00 ce'));
    // A client's non-empty capabilities and insist=true are accepted and dropped.
    const fromClient = hex('000a0028 01 2f 03 616263 01');
    assert.deepEqual(decodeMethod(fromClient, 0, fromClient.length), { key: M.ConnectionOpen, virtualHost: '/' });
  });

  it('connection.start-ok keeps the response as bytes', () => {
    const response = Buffer.from('\0guest\0guest');
    const m: Method = { key: M.ConnectionStartOk, clientProperties: [['product', { type: 'S', value: Buffer.from('x') }]], mechanism: 'PLAIN', response, locale: 'en_US' };
    const decoded = decodeFrame(encodeMethodFrame(0, m));
    assert.deepEqual(decoded, m);
    assert.ok(decoded.key === M.ConnectionStartOk && Buffer.isBuffer(decoded.response));
  });

  it('narrows on key', () => {
    const m = decodeFrame(encodeMethodFrame(1, { key: M.BasicReject, deliveryTag: 9, requeue: true }));
    if (m.key !== M.BasicReject) assert.fail('wrong method');
    assert.equal(m.deliveryTag, 9);
    assert.equal(m.requeue, true);
  });
});

describe('decode errors', () => {
  it('unknown class or method is COMMAND_INVALID naming the ids', () => {
    for (const [c, m] of [[60, 999], [99, 10], [30, 12], [60, 200]] as const) {
      const buf = Buffer.alloc(4);
      buf.writeUInt16BE(c, 0);
      buf.writeUInt16BE(m, 2);
      assert.throws(() => decodeMethod(buf, 0, 4), (e: unknown) =>
        e instanceof AmqpError && e.replyName === 'COMMAND_INVALID' && e.classId === c && e.methodId === m && e.isConnectionError);
    }
  });

  it('payload shorter than the ids is FRAME_ERROR in rabbit_reader\'s words', () => {
    assert.throws(() => decodeMethod(hex('003c'), 0, 2), (e: unknown) =>
      isDecodeError(e) && (e as AmqpError).replyText === 'FRAME_ERROR - type 1, all octets = <<0,60>>: unknown_frame');
  });

  it('undecodable arguments are FRAME_ERROR "cannot decode <<bytes>>" naming the method, as RabbitMQ', () => {
    const p = hex('0032000a 0000');
    assert.throws(() => decodeMethod(p, 0, p.length), (e: unknown) =>
      e instanceof AmqpError && e.code === 501 && e.replyText === 'FRAME_ERROR - cannot decode <<0,0>>' && e.classId === 50 && e.methodId === 10);
    const ack = hex('003c0050 00000000000000ff 0100');
    assert.throws(() => decodeMethod(ack, 0, ack.length), (e: unknown) =>
      e instanceof AmqpError && e.replyText === 'FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,255,1,0>>' && e.classId === 60 && e.methodId === 80);
  });

  it('a huge undecodable payload renders only what fits in a reply text', () => {
    const p = Buffer.concat([hex('003c0028'), Buffer.alloc(100000, 7)]);
    assert.throws(() => decodeMethod(p, 0, p.length), (e: unknown) =>
      e instanceof AmqpError && e.replyText.length > 255 && e.replyText.length < 400 && e.replyText.endsWith(',7,...>>'));
  });

  it('truncated and over-long arguments name the method', () => {
    const full = payload(encodeMethodFrame(1, { key: M.QueueBind, queue: 'q', exchange: 'x', routingKey: 'k', noWait: false, arguments: [] }));
    for (let n = 4; n < full.length; n++) {
      assert.throws(() => decodeMethod(full, 0, n), (e: unknown) => isDecodeError(e) && (e as AmqpError).classId === 50 && (e as AmqpError).methodId === 20);
    }
    const longer = Buffer.concat([full, hex('00')]);
    assert.throws(() => decodeMethod(longer, 0, longer.length), isDecodeError);
  });

  it('hand-decoded methods reject truncation and trailing bytes too', () => {
    for (const m of [
      { key: M.BasicPublish, exchange: 'e', routingKey: 'r', mandatory: false, immediate: false },
      { key: M.BasicAck, deliveryTag: 1, multiple: false },
      { key: M.BasicNack, deliveryTag: 1, multiple: false, requeue: false },
      { key: M.BasicReject, deliveryTag: 1, requeue: false },
    ] as Method[]) {
      const full = payload(encodeMethodFrame(1, m));
      for (let n = 4; n < full.length; n++) assert.throws(() => decodeMethod(full, 0, n), isDecodeError);
      const longer = Buffer.concat([full, hex('00')]);
      assert.throws(() => decodeMethod(longer, 0, longer.length), isDecodeError);
    }
  });

  it('malformed table arguments are reported like any undecodable arguments', () => {
    const p = hex('0032000a 0000 01 71 00 00000003 01 61 51');
    assert.throws(() => decodeMethod(p, 0, p.length), (e: unknown) =>
      isDecodeError(e) && (e as AmqpError).replyText === 'FRAME_ERROR - cannot decode <<0,0,1,113,0,0,0,0,3,1,97,81>>'
      && (e as AmqpError).classId === 50 && (e as AmqpError).methodId === 10);
  });

  it('invalid UTF-8 in shortstrs: refused for queue.declare, tolerated in basic.publish (as RabbitMQ)', () => {
    const declare = hex('0032000a 0000 02 c328 00 00000000');
    assert.throws(() => decodeMethod(declare, 0, declare.length), (e: unknown) =>
      isDecodeError(e) && (e as AmqpError).replyText === 'FRAME_ERROR - Malformed UTF-8 in shortstr' && (e as AmqpError).classId === 0);
    const okUtf8 = hex('0032000a 0000 02 c3a9 00 00000000');
    assert.deepEqual(decodeMethod(okUtf8, 0, okUtf8.length), {
      key: M.QueueDeclare, queue: 'é', passive: false, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: [],
    });
    const publish = hex('003c0028 0000 00 02 c328 00');
    assert.equal((decodeMethod(publish, 0, publish.length) as { routingKey: string }).routingKey.length, 2);
  });

  it('reusing the last exchange name never changes what a publish decodes to', () => {
    const publish = (exchange: string): Buffer => hex(`003c0028 0000 ${exchange} 00 00`);
    const exchangeOf = (b: Buffer): string => (decodeMethod(b, 0, b.length) as { exchange: string }).exchange;
    assert.equal(exchangeOf(publish('02 6578')), 'ex');
    assert.equal(exchangeOf(publish('02 6578')), 'ex');
    assert.equal(exchangeOf(publish('02 6579')), 'ey');
    assert.equal(exchangeOf(publish('02 c3a9')), 'é');
    // One byte 0xE9 has the char code of the cached 'é' but is not valid UTF-8 on its own.
    assert.equal(exchangeOf(publish('01 e9')), '\ufffd');
  });

  it('decodes within the given window of a larger buffer', () => {
    const frame = encodeMethodFrame(3, { key: M.BasicAck, deliveryTag: 77, multiple: false });
    assert.deepEqual(decodeMethod(frame, 7, frame.length - 1), { key: M.BasicAck, deliveryTag: 77, multiple: false });
  });
});

// ---- property tests -------------------------------------------------------------------------

const value: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.boolean().map((v): FieldValue => ({ type: 't', value: v })),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v): FieldValue => ({ type: 'I', value: v })),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v): FieldValue => ({ type: 'l', value: v })),
  fc.string().map((v): FieldValue => ({ type: 'S', value: Buffer.from(v) })),
  fc.constant<FieldValue>({ type: 'V' }),
);
const table: fc.Arbitrary<FieldTable> = fc.array(fc.tuple(fc.string({ maxLength: 20 }), value), { maxLength: 4 });

const ARB: Record<FieldKind, fc.Arbitrary<unknown>> = {
  octet: fc.integer({ min: 0, max: 255 }),
  short: fc.integer({ min: 0, max: 65535 }),
  long: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  longlong: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.maxSafeNat()),
  shortstr: fc.string({ unit: 'binary', maxLength: 60 }),
  longstr: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  bit: fc.boolean(),
  table,
};

function methodArb(name: MethodName): fc.Arbitrary<Method> {
  const d = METHOD_DEFS[name];
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [f, kind] of d.fields as readonly (readonly [string, FieldKind])[]) if (f !== '') fields[f] = ARB[kind];
  return fc.record(fields).map((r) => ({ key: d.key, ...r }) as unknown as Method);
}

const anyMethod = fc.oneof(...(Object.keys(METHOD_DEFS) as MethodName[]).map(methodArb));

describe('method properties', () => {
  it('every method round-trips through its frame', () => {
    for (const name of Object.keys(METHOD_DEFS) as MethodName[]) {
      fc.assert(
        fc.property(methodArb(name), fc.integer({ min: 0, max: 65535 }), (m, ch) => {
          const frame = encodeMethodFrame(ch, m);
          assert.equal(frame[0], 1);
          assert.equal(frame.readUInt16BE(1), ch);
          assert.equal(frame.readUInt32BE(3), frame.length - 8);
          assert.equal(frame[frame.length - 1], 0xce);
          const back = decodeFrame(frame);
          assert.deepEqual(back, m);
          assert.deepEqual(encodeMethodFrame(ch, back), frame);
        }),
        { numRuns: 60 },
      );
    }
  });

  it('random arguments after a known method id only ever raise AmqpError', () => {
    const keys = Object.values(M);
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.uint8Array({ maxLength: 48 }), (key, args) => {
        const buf = Buffer.alloc(4 + args.length);
        buf.writeUInt32BE(key);
        buf.set(args, 4);
        try {
          decodeMethod(buf, 0, buf.length);
        } catch (e) {
          if (!(e instanceof AmqpError)) throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated valid payloads decode or raise AmqpError', () => {
    fc.assert(
      fc.property(anyMethod, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), fc.nat(), (m, edits, cut) => {
        const p = Buffer.from(payload(encodeMethodFrame(1, m)));
        for (const [at, byte] of edits) {
          const i = 4 + (at % Math.max(1, p.length - 4));
          if (i < p.length) p[i] = byte;
        }
        const end = cut % 3 === 0 ? p.length - (cut % p.length) : p.length;
        try {
          decodeMethod(p, 0, end);
        } catch (e) {
          if (!(e instanceof AmqpError)) throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
