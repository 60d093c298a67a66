import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { e2eSuite } from './fixture';

const suite = e2eSuite();

/** The first python3 on this machine that can import pika (pyenv shims may shadow the system one). */
function findPythonWithPika(): string | undefined {
  for (const py of ['python3', '/usr/bin/python3', '/usr/local/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import pika'], { stdio: 'ignore', timeout: 10_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

const SCRIPT = String.raw`
import json, sys
import pika
from pika.exceptions import ChannelClosedByBroker

url, q = sys.argv[1], sys.argv[2]
out = lambda **kw: print(json.dumps(kw, sort_keys=True), flush=True)

conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.confirm_delivery()
ok = ch.queue_declare(queue=q, durable=False)
out(step="declared", queue=ok.method.queue, messages=ok.method.message_count)

for i in range(3):
    ch.basic_publish("", q, ("msg-%d" % i).encode(),
                     pika.BasicProperties(content_type="text/plain", headers={"n": i}, correlation_id="c%d" % i),
                     mandatory=True)
out(step="published", count=3)

got = []
for method, props, body in ch.consume(q, inactivity_timeout=5):
    if method is None:
        break
    got.append(dict(body=body.decode(), tag=method.delivery_tag, redelivered=method.redelivered,
                    n=props.headers["n"], corr=props.correlation_id, ct=props.content_type))
    ch.basic_ack(method.delivery_tag)
    if len(got) == 3:
        break
ch.cancel()
ok = ch.queue_declare(queue=q, passive=True)
out(step="consumed", got=got, remaining=ok.method.message_count)

ch.queue_delete(q)
try:
    ch.queue_declare(queue=q, passive=True)
    out(step="passive", error=None)
except ChannelClosedByBroker as e:
    out(step="passive", code=e.reply_code, text=e.reply_text)
conn.close()
out(step="closed")
`;

describe('interoperability with a Python client (pika)', () => {
  it('declares, publishes with confirms, consumes, acks and deletes with pika', async (t) => {
    const python = findPythonWithPika();
    if (!python) {
      t.skip('python3 with the pika module is not installed (apt-get install python3-pika)');
      return;
    }
    const c = await suite.context(t);
    const q = c.queueName('pika');
    const { stdout, stderr, code } = await new Promise<{ stdout: string; stderr: string; code: number | null }>((resolve, reject) => {
      const p = spawn(python, ['-c', SCRIPT, suite.broker.url, q], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => p.kill(), 20_000);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ stdout, stderr, code });
      });
    });
    assert.equal(code, 0, `pika script failed:\n${stderr}`);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines, [
      { step: 'declared', queue: q, messages: 0 },
      { step: 'published', count: 3 },
      {
        step: 'consumed',
        remaining: 0,
        got: [0, 1, 2].map((i) => ({
          body: `msg-${i}`,
          tag: i + 1,
          redelivered: false,
          n: i,
          corr: `c${i}`,
          ct: 'text/plain',
        })),
      },
      { step: 'passive', code: 404, text: `NOT_FOUND - no queue '${q}' in vhost '/'` },
      { step: 'closed' },
    ]);
  });
});
