import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, truncateSync, unlinkSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DefinitionsCorruptError, DefinitionsStore, emptyDefinitions, type Definitions } from '../../src/store/definitions-store';
import { CapturingLogger, tempDir } from './helpers';

function sample(version: number): Definitions {
  const defs = emptyDefinitions();
  defs.rabbit_version = '3.13.0';
  defs.vhosts.push({ name: '/' }, { name: 'prod', description: 'production' });
  defs.users.push({ name: 'guest', password_hash: 'abc=', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: ['administrator'] });
  defs.permissions.push({ user: 'guest', vhost: '/', configure: '.*', write: '.*', read: '.*' });
  defs.policies.push({ vhost: '/', name: 'ttl', pattern: '^t\\.', 'apply-to': 'queues', definition: { 'message-ttl': 1000 }, priority: 0 });
  defs.exchanges.push({ name: 'ëx', vhost: '/', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} });
  for (let i = 0; i < version; i++) {
    defs.queues.push({ name: `q${i}`, vhost: '/', durable: true, auto_delete: false, arguments: { 'x-queue-type': 'classic' } });
  }
  defs.bindings.push({ source: 'ëx', vhost: '/', destination: 'q0', destination_type: 'queue', routing_key: '#', arguments: {} });
  return defs;
}

describe('DefinitionsStore', () => {
  it('returns null on a first start', (t) => {
    assert.equal(new DefinitionsStore(tempDir(t, 'defs')).load(), null);
  });

  it('loads what was saved, in RabbitMQ definitions shape', (t) => {
    const dir = tempDir(t, 'defs');
    new DefinitionsStore(dir).save(sample(3));
    assert.deepEqual(new DefinitionsStore(dir).load(), sample(3));
    const file = JSON.parse(readFileSync(join(dir, 'definitions.json'), 'utf8')) as { definitions: Definitions };
    assert.equal(file.definitions.queues.length, 3, 'the file is plain JSON');
  });

  it('falls back to the previous copy when the current file is damaged, and says so', (t) => {
    const dir = tempDir(t, 'defs');
    const store = new DefinitionsStore(dir);
    store.save(sample(1));
    store.save(sample(2));
    const path = join(dir, 'definitions.json');
    const bytes = readFileSync(path);
    bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0x01; // still valid JSON, wrong content
    writeFileSync(path, bytes);
    const logger = new CapturingLogger();
    const reopened = new DefinitionsStore(dir, logger);
    assert.deepEqual(reopened.load(), sample(1));
    assert.match(logger.text(), /definitions\.json is checksum mismatch; using the previous copy .*definitions\.json\.bak/);
    assert.ok(existsSync(path + '.corrupt'));
    // Saving again works and keeps a good backup.
    reopened.save(sample(4));
    assert.deepEqual(new DefinitionsStore(dir).load(), sample(4));
  });

  it('detects a truncated file', (t) => {
    const dir = tempDir(t, 'defs');
    const store = new DefinitionsStore(dir);
    store.save(sample(1));
    store.save(sample(2));
    const path = join(dir, 'definitions.json');
    truncateSync(path, statSync(path).size - 30);
    const logger = new CapturingLogger();
    assert.deepEqual(new DefinitionsStore(dir, logger).load(), sample(1));
    assert.match(logger.text(), /truncated/);
  });

  it('refuses to start empty when both copies are unusable', (t) => {
    const dir = tempDir(t, 'defs');
    const store = new DefinitionsStore(dir);
    store.save(sample(1));
    store.save(sample(2));
    writeFileSync(join(dir, 'definitions.json'), '{"checksum":"crc32:00000000","definitions":{}}\n');
    writeFileSync(join(dir, 'definitions.json.bak'), 'garbage');
    assert.throws(() => new DefinitionsStore(dir).load(), DefinitionsCorruptError);
  });

  it('uses the backup when the current file is missing, and ignores an unfinished save', (t) => {
    const dir = tempDir(t, 'defs');
    const store = new DefinitionsStore(dir);
    store.save(sample(1));
    store.save(sample(2));
    unlinkSync(join(dir, 'definitions.json'));
    writeFileSync(join(dir, 'definitions.json.tmp'), '{"checksum":"crc32:');
    assert.deepEqual(new DefinitionsStore(dir).load(), sample(1));
    assert.equal(existsSync(join(dir, 'definitions.json.tmp')), false);
  });

  it('accepts a plain definitions export dropped in by an operator', (t) => {
    const dir = tempDir(t, 'defs');
    writeFileSync(join(dir, 'definitions.json'), JSON.stringify({ vhosts: [{ name: '/' }], queues: [] }));
    const defs = new DefinitionsStore(dir).load();
    assert.deepEqual(defs?.vhosts, [{ name: '/' }]);
    assert.deepEqual(defs?.bindings, []);
  });

  it('coalesces saveSoon calls in one turn into one write of the latest state', async (t) => {
    const dir = tempDir(t, 'defs');
    const store = new DefinitionsStore(dir);
    let snapshots = 0;
    let durable = 0;
    for (let i = 1; i <= 100; i++) {
      store.saveSoon(
        () => {
          snapshots++;
          return sample(i);
        },
        (err) => {
          assert.equal(err, null);
          durable++;
        },
      );
    }
    assert.equal(durable, 0);
    await new Promise((r) => setImmediate(r));
    assert.equal(snapshots, 1);
    assert.equal(durable, 100);
    assert.deepEqual(store.load(), sample(100));
  });
});
