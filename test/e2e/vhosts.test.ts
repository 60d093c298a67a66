import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as amqp from 'amqplib';
import { e2eSuite, connect, rejectsWithClose, RawClient } from './fixture';

const suite = e2eSuite();

/** Handshakes up to connection.open for `vhost` and returns the server's answer. */
async function openVhost(vhost: string): Promise<{ ok: true } | { ok: false; code: number; text: string; cls: number; method: number }> {
  const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
  try {
    await raw.greet();
    await raw.login();
    raw.sendOpen(vhost);
    const m = await raw.readMethod();
    if (m.classId === 10 && m.methodId === 41) return { ok: true };
    assert.deepEqual([m.channel, m.classId, m.methodId], [0, 10, 50], 'expected connection.open-ok or connection.close');
    const textLen = m.args.readUInt8(2);
    return {
      ok: false,
      code: m.args.readUInt16BE(0),
      text: m.args.subarray(3, 3 + textLen).toString('utf8'),
      cls: m.args.readUInt16BE(3 + textLen),
      method: m.args.readUInt16BE(5 + textLen),
    };
  } finally {
    raw.destroy();
  }
}

describe('the default vhost', () => {
  it("opens vhost '/'", async () => {
    assert.deepEqual(await openVhost('/'), { ok: true });
  });

  it("is what amqplib uses for a URL without a path, with '/' and with '/%2F'", async (t) => {
    const c = await suite.context(t);
    const base = c.url.replace(/\/+$/, '');
    for (const url of [base, `${base}/`, `${base}/%2F`]) {
      const conn = await amqp.connect(url);
      try {
        const ch = await conn.createChannel();
        await ch.checkExchange('amq.direct');
      } finally {
        await conn.close();
      }
    }
  });

  it("names the vhost as '/' in error texts", async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const q = c.queueName('missing');
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.text, `NOT_FOUND - no queue '${q}' in vhost '/'`);
  });
});

describe('unknown vhosts', () => {
  for (const vhost of ['no-such-vhost', '', '%2F', '//', 'a b']) {
    it(`refuses connection.open to ${JSON.stringify(vhost)} with 530 NOT_ALLOWED`, async () => {
      assert.deepEqual(await openVhost(vhost), {
        ok: false,
        code: 530,
        text: `NOT_ALLOWED - vhost ${vhost} not found`,
        cls: 10,
        method: 40,
      });
    });
  }

  it('makes amqplib connect() reject for an unknown vhost', async () => {
    await assert.rejects(connect(suite.broker.url, { vhost: 'no-such-vhost' }), /Expected ConnectionOpenOk; got <ConnectionClose channel:0>/);
  });
});
