// What the mirrored-queue tests share: the leadership record in etcd (the source of truth),
// policies set through the management API, and a durable queue declared by a short client.
import assert from 'node:assert/strict';
import * as amqp from 'amqplib';
import { Etcd3 } from 'etcd3';
import type { EtcdCluster, WarrenNode } from './harness';

export interface HaRecord {
  epoch: number;
  leader: string;
  members: string[];
  isr: string[];
}

/** Polls etcd until the queue's mirror record satisfies `ok`; etcd unreachable counts as not yet. */
export async function waitForRecord(etcd: EtcdCluster, queue: string, ok: (r: HaRecord) => boolean, timeoutMs = 20_000): Promise<HaRecord> {
  const client = new Etcd3({ hosts: etcd.endpoints });
  const deadline = Date.now() + timeoutMs;
  let last: HaRecord | null = null;
  try {
    while (Date.now() < deadline) {
      const v = await client
        .get(`/warren/ha/${encodeURIComponent('/')}/${encodeURIComponent(queue)}`)
        .string()
        .catch(() => null);
      if (v !== null) last = JSON.parse(v) as HaRecord;
      if (last !== null && ok(last)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client.close();
  }
  throw new Error(`mirror record of ${queue} never matched; last: ${JSON.stringify(last)}`);
}

export const GUEST_AUTH = `Basic ${Buffer.from('guest:guest').toString('base64')}`;

export async function setPolicy(node: WarrenNode, name: string, pattern: string, definition: Record<string, unknown>): Promise<void> {
  const res = await fetch(`http://${node.host}:${node.managementPort}/api/policies/%2F/${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: GUEST_AUTH },
    body: JSON.stringify({ pattern, definition, 'apply-to': 'queues', priority: 0 }),
  });
  assert.ok(res.status === 201 || res.status === 204, `policy PUT answered ${res.status}`);
}

export async function declareDurable(url: string, queue: string): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true });
  } finally {
    await conn.close();
  }
}

/**
 * Polls a queue's message count until it equals `expected` (a promoted leader fills its queue
 * from its copy right after the election) and returns the last count seen.
 */
export async function waitForCount(ch: amqp.Channel, queue: string, expected: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = -1;
  while (Date.now() < deadline) {
    count = await ch.checkQueue(queue).then((ok) => ok.messageCount);
    if (count === expected) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return count;
}
