// AMQPS and HTTPS with certificates made at test time by openssl: a CA, a server certificate
// for localhost / 127.0.0.1, and a client certificate for peer verification.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import type { BrokerHandle } from '../../src/broker';

let dir: string;
const pem = (name: string): Buffer => readFileSync(join(dir, name));

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, then a certificate signed by it with the given subject and (for servers) names. */
function makeCertificates(): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=Warren Test CA');
  for (const [name, subject, ext] of [
    ['server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    ['client', '/CN=test-client', 'extendedKeyUsage=clientAuth'],
  ]) {
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject!);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`);
  }
}

function getJson(port: number, path: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path, ca: pem('ca.pem'), servername: 'localhost', headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'warren-tls-'));
  makeCertificates();
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('AMQPS and HTTPS', () => {
  let broker: BrokerHandle;

  before(async () => {
    const { startBroker } = await import('../../src/index');
    broker = await startBroker({
      port: 0,
      bind: '127.0.0.1',
      logLevel: 'silent',
      managementPort: 0,
      tlsPort: 0,
      tlsCertFile: join(dir, 'server.pem'),
      tlsKeyFile: join(dir, 'server.key'),
      managementTls: true,
    });
  });

  after(async () => {
    await broker?.close();
  });

  it('speaks AMQP over TLS on the TLS port', async () => {
    assert.equal(typeof broker.tlsPort, 'number');
    const conn = await amqp.connect(`amqps://guest:guest@localhost:${broker.tlsPort}`, { ca: [pem('ca.pem')] });
    try {
      const ch = await conn.createChannel();
      const { queue } = await ch.assertQueue('', { exclusive: true });
      ch.sendToQueue(queue, Buffer.from('over tls'));
      await new Promise((r) => setTimeout(r, 50));
      const msg = await ch.get(queue, { noAck: true });
      assert.ok(msg !== false);
      assert.equal(msg.content.toString(), 'over tls');

      const r = await getJson(broker.managementPort!, '/api/connections');
      assert.equal(r.status, 200);
      assert.equal(r.json.length, 1);
      assert.equal(r.json[0].ssl, true);
      assert.match(r.json[0].ssl_protocol, /^TLSv1\.[23]$/);
      assert.equal(r.json[0].port, broker.tlsPort);
    } finally {
      await conn.close();
    }
  });

  it('serves the management API over HTTPS and lists the amqps listener', async () => {
    const r = await getJson(broker.managementPort!, '/api/overview');
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.json.listeners.map((l: { protocol: string }) => l.protocol),
      ['amqp', 'amqps', 'https'],
    );
    const health = await getJson(broker.managementPort!, '/api/health/checks/protocol-listener/amqps');
    assert.equal(health.status, 200);
  });

  it('still accepts plain AMQP on the plain port', async () => {
    const conn = await amqp.connect(broker.url);
    await conn.close();
  });
});

describe('client certificate verification (tlsCaFile)', () => {
  let broker: BrokerHandle;

  before(async () => {
    const { startBroker } = await import('../../src/index');
    broker = await startBroker({
      port: 0,
      bind: '127.0.0.1',
      logLevel: 'silent',
      tlsPort: 0,
      tlsCertFile: join(dir, 'server.pem'),
      tlsKeyFile: join(dir, 'server.key'),
      tlsCaFile: join(dir, 'ca.pem'),
    });
  });

  after(async () => {
    await broker?.close();
  });

  it('refuses a client without a certificate', async () => {
    await assert.rejects(amqp.connect(`amqps://guest:guest@localhost:${broker.tlsPort}`, { ca: [pem('ca.pem')] }));
  });

  it('accepts a client with a certificate signed by the CA', async () => {
    const conn = await amqp.connect(`amqps://guest:guest@localhost:${broker.tlsPort}`, { ca: [pem('ca.pem')], cert: pem('client.pem'), key: pem('client.key') });
    await conn.close();
  });
});

describe('TLS settings', () => {
  it('refuses to start a TLS listener without a certificate and key', async () => {
    const { startBroker } = await import('../../src/index');
    await assert.rejects(startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', tlsPort: 0 }), /TLS needs both tlsCertFile/);
  });
});
