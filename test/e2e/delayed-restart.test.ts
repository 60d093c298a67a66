// A clean restart of a broker with pending delayed messages: each is delivered exactly once,
// whether it was released before the restart or after (the delayed-message store's watermark).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import amqp from 'amqplib';

const external = process.env.WARREN_TEST_URL !== undefined;

describe('delayed messages across a clean restart', { skip: external ? 'uses an embedded broker with a data directory' : false }, () => {
  it('delivers every confirmed delayed message exactly once', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'warren-delayed-restart-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const { startBroker } = await import('../../src/index');
    let b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', dataDir: dir });
    const conn = await amqp.connect(b.url);
    conn.on('error', () => {});
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange('later', 'x-delayed-message', { durable: true, arguments: { 'x-delayed-type': 'direct' } });
    await ch.assertQueue('due', { durable: true });
    await ch.bindQueue('due', 'later', 'k');
    for (let i = 0; i < 300; i++) {
      const delay = i % 3 === 0 ? 50 : 4000;
      ch.publish('later', 'k', Buffer.from(String(i)), { persistent: true, headers: { 'x-delay': delay } });
    }
    await ch.waitForConfirms();
    // The short ones are released into the queue before the restart (on a very slow machine
    // the long ones may be too: exactly once must hold either way).
    while ((await ch.checkQueue('due')).messageCount < 100) await new Promise((r) => setTimeout(r, 20));
    await conn.close();
    await b.close();

    b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', dataDir: dir });
    try {
      const c2 = await amqp.connect(b.url);
      c2.on('error', () => {});
      const ch2 = await c2.createChannel();
      const seen = new Map<string, number>();
      await ch2.consume('due', (m) => {
        if (m !== null) seen.set(m.content.toString(), (seen.get(m.content.toString()) ?? 0) + 1);
      }, { noAck: true });
      while (seen.size < 300) await new Promise((r) => setTimeout(r, 50));
      // Anything released twice would follow within a few turns.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(seen.size, 300);
      for (const [body, count] of seen) assert.equal(count, 1, `message ${body} delivered ${count} times`);
      await c2.close();
    } finally {
      await b.close();
    }
  });
});
