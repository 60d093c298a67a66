// RabbitMQ's resource limits over AMQP: vhost max-connections and max-queues, user
// max-connections and max-channels. Runs against the embedded Warren (limits set through its
// handle) and against a local RabbitMQ (WARREN_TEST_URL, limits set with rabbitmqctl). Each
// test works in its own vhost with its own user, removed afterwards, so limits never touch
// other tests sharing the broker.
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeQuietly, connect, e2eSuite, methodFrame, openChannel, RawClient, rejectsWithClose, shortstr, uniq, withTimeout } from './fixture';
import type { RawClose } from './fixture';

const suite = e2eSuite();
const PASSWORD = 'limits-pw';

function rabbitmqctl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('rabbitmqctl', args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message} ${stderr}`));
      else resolve();
    });
  });
}

function warren(): import('../../src/broker').Broker | undefined {
  return suite.broker.warren?.broker;
}

/** A vhost and a user with full permissions on it, both removed after the test. */
async function sandbox(t: TestContext): Promise<{ vhost: string; user: string }> {
  const vhost = uniq('limits-vhost');
  const user = uniq('limits-user');
  const b = warren();
  if (b !== undefined) {
    b.addVhost(vhost);
    b.users.addUser(user, PASSWORD);
    b.users.setPermission(vhost, user, '.*', '.*', '.*');
    t.after(() => {
      b.users.deleteUser(user);
    });
    return { vhost, user };
  }
  t.after(async () => {
    await rabbitmqctl(['delete_user', user]).catch(() => {});
    await rabbitmqctl(['delete_vhost', vhost]).catch(() => {});
  });
  await rabbitmqctl(['add_vhost', vhost]);
  await rabbitmqctl(['add_user', user, PASSWORD]);
  await rabbitmqctl(['set_permissions', '-p', vhost, user, '.*', '.*', '.*']);
  return { vhost, user };
}

/** rabbitmqctl set_vhost_limits: replaces the vhost's limits. */
async function setVhostLimits(vhost: string, limits: Record<string, number>): Promise<void> {
  const b = warren();
  if (b !== undefined) {
    assert.ok(b.limits.setVhostLimits(vhost, limits));
    return;
  }
  await rabbitmqctl(['set_vhost_limits', '-p', vhost, JSON.stringify(limits)]);
}

/** rabbitmqctl set_user_limits: sets the given limits, keeps the user's others. */
async function setUserLimits(user: string, limits: Record<string, number>): Promise<void> {
  const b = warren();
  if (b !== undefined) {
    for (const [name, value] of Object.entries(limits)) assert.ok(b.users.setLimit(user, name, value));
    return;
  }
  await rabbitmqctl(['set_user_limits', user, JSON.stringify(limits)]);
}

/** Opens a connection that the server must refuse at connection.open; returns its close. */
async function refusedOpen(o: { user: string; password: string; vhost: string }): Promise<RawClose> {
  const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
  try {
    await raw.greet();
    await raw.login({ user: o.user, password: o.password });
    raw.sendOpen(o.vhost);
    const close = await raw.expectClose();
    raw.sendCloseOk();
    return close;
  } finally {
    raw.destroy();
  }
}

/** A raw connection opened up to open-ok as the user. */
async function rawOpen(t: TestContext, o: { user: string; vhost: string }): Promise<RawClient> {
  const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
  t.after(() => raw.destroy());
  await raw.handshake({ user: o.user, password: PASSWORD, vhost: o.vhost });
  return raw;
}

/** RabbitMQ tracks connections asynchronously: retries until a connection is accepted again. */
async function openEventually(t: TestContext, o: { user: string; vhost: string }): Promise<RawClient> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      return await rawOpen(t, o);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe('vhost max-connections', () => {
  it('refuses connection.open over the limit with 530 and RabbitMQ text', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setVhostLimits(vhost, { 'max-connections': 1 });
    await rawOpen(t, { user, vhost });
    const close = await refusedOpen({ user, password: PASSWORD, vhost });
    assert.deepEqual(close, {
      channel: 0,
      classId: 10,
      methodId: 50,
      replyCode: 530,
      replyText: `NOT_ALLOWED - access to vhost '${vhost}' refused for user '${user}': connection limit (1) is reached`,
      failingClassId: 10,
      failingMethodId: 40,
    });
    // Other vhosts are not affected.
    const other = await connect(suite.broker.url);
    await closeQuietly(other);
  });

  it('0 allows no connection, -1 lifts the limit', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setVhostLimits(vhost, { 'max-connections': 0 });
    const close = await refusedOpen({ user, password: PASSWORD, vhost });
    assert.equal(close.replyText, `NOT_ALLOWED - access to vhost '${vhost}' refused for user '${user}': connection limit (0) is reached`);
    await setVhostLimits(vhost, { 'max-connections': -1 });
    await openEventually(t, { user, vhost });
    await rawOpen(t, { user, vhost });
  });

  it('is checked before the permission: a user without access hears about the limit', async (t) => {
    const { vhost } = await sandbox(t);
    await setVhostLimits(vhost, { 'max-connections': 0 });
    const close = await refusedOpen({ user: 'guest', password: 'guest', vhost });
    assert.equal(close.replyText, `NOT_ALLOWED - access to vhost '${vhost}' refused for user 'guest': connection limit (0) is reached`);
  });

  it('frees a slot when a connection closes', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setVhostLimits(vhost, { 'max-connections': 1 });
    const first = await rawOpen(t, { user, vhost });
    first.destroy();
    await openEventually(t, { user, vhost });
  });
});

describe('vhost max-queues', () => {
  it('refuses queue.declare creating a queue over the limit with 406 and RabbitMQ text', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setVhostLimits(vhost, { 'max-queues': 1 });
    const conn = await connect(suite.broker.url, { user, password: PASSWORD, vhost });
    t.after(() => closeQuietly(conn));
    const ch = await openChannel(conn);
    await ch.assertQueue('q1', { durable: false });
    // Redeclaring an existing queue is not creating one.
    await ch.assertQueue('q1', { durable: false });
    const err = await rejectsWithClose(ch.assertQueue('q2', { durable: false }));
    assert.equal(err.code, 406);
    assert.equal(err.text, `PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost '${vhost}' (1) is reached`);
    assert.deepEqual([err.classId, err.methodId], [50, 10]);

    // A server-named queue is named in the refusal.
    const ch2 = await openChannel(conn);
    const gen = await rejectsWithClose(ch2.assertQueue('', { exclusive: true }));
    assert.match(gen.text, new RegExp(`^PRECONDITION_FAILED - cannot declare queue 'amq\\.gen-[A-Za-z0-9_-]+': queue limit in vhost '${vhost}' \\(1\\) is reached$`));

    // A passive declare of a missing queue is still 404.
    const ch3 = await openChannel(conn);
    const missing = await rejectsWithClose(ch3.checkQueue('nope'));
    assert.equal(missing.text, `NOT_FOUND - no queue 'nope' in vhost '${vhost}'`);

    // Deleting a queue makes room.
    const ch4 = await openChannel(conn);
    await ch4.deleteQueue('q1');
    await ch4.assertQueue('q2', { durable: false });
    await ch4.deleteQueue('q2');
  });

  it('0 allows no queue and is checked before the queue arguments; clearing lifts it', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setVhostLimits(vhost, { 'max-queues': 0 });
    const conn = await connect(suite.broker.url, { user, password: PASSWORD, vhost });
    t.after(() => closeQuietly(conn));
    const ch = await openChannel(conn);
    const err = await rejectsWithClose(ch.assertQueue('qa', { durable: false, arguments: { 'x-max-length': 'abc' } }));
    assert.equal(err.text, `PRECONDITION_FAILED - cannot declare queue 'qa': queue limit in vhost '${vhost}' (0) is reached`);
    await setVhostLimits(vhost, { 'max-queues': -1 });
    const ch2 = await openChannel(conn);
    await ch2.assertQueue('qa', { durable: false });
    await ch2.deleteQueue('qa');
  });
});

describe('user max-connections', () => {
  it('refuses connection.open over the limit with 530 and RabbitMQ text, before the permission check', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setUserLimits(user, { 'max-connections': 1 });
    await rawOpen(t, { user, vhost });
    const expected = {
      channel: 0,
      classId: 10,
      methodId: 50,
      replyCode: 530,
      replyText: `NOT_ALLOWED - connection refused for user '${user}': user connection limit (1) is reached`,
      failingClassId: 10,
      failingMethodId: 40,
    };
    assert.deepEqual(await refusedOpen({ user, password: PASSWORD, vhost }), expected);
    // The user has no permission on '/': the limit is reported first.
    assert.deepEqual(await refusedOpen({ user, password: PASSWORD, vhost: '/' }), expected);
    // A missing vhost is reported before any limit.
    const missing = await refusedOpen({ user, password: PASSWORD, vhost: 'no-such-vhost-limits' });
    assert.equal(missing.replyText, 'NOT_ALLOWED - vhost no-such-vhost-limits not found');
  });

  it("the vhost's limit is reported before the user's", async (t) => {
    const { vhost, user } = await sandbox(t);
    await setVhostLimits(vhost, { 'max-connections': 0 });
    await setUserLimits(user, { 'max-connections': 0 });
    const close = await refusedOpen({ user, password: PASSWORD, vhost });
    assert.equal(close.replyText, `NOT_ALLOWED - access to vhost '${vhost}' refused for user '${user}': connection limit (0) is reached`);
  });
});

describe('user max-channels', () => {
  it('counts channels over all the user’s connections; channel.open over the limit closes the connection with 530', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setUserLimits(user, { 'max-channels': 2 });
    const a = await rawOpen(t, { user, vhost });
    const b = await rawOpen(t, { user, vhost });
    await a.openChannel(1);
    await b.openChannel(1);
    b.write(methodFrame(2, 20, 10, shortstr('')));
    const close = await withTimeout(b.expectClose(), 5000, 'connection.close');
    assert.deepEqual(close, {
      channel: 0,
      classId: 10,
      methodId: 50,
      replyCode: 530,
      replyText: `NOT_ALLOWED - number of channels opened for user '${user}' has reached the maximum allowed user limit of (2)`,
      failingClassId: 0,
      failingMethodId: 0,
    });
    b.sendCloseOk();
  });

  it('0 allows no channel', async (t) => {
    const { vhost, user } = await sandbox(t);
    await setUserLimits(user, { 'max-channels': 0 });
    const a = await rawOpen(t, { user, vhost });
    a.write(methodFrame(1, 20, 10, shortstr('')));
    const close = await a.expectClose();
    assert.equal(close.replyText, `NOT_ALLOWED - number of channels opened for user '${user}' has reached the maximum allowed user limit of (0)`);
    a.sendCloseOk();
  });
});
