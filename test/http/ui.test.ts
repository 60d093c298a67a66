// The web UI in a real browser: Debian's chromium driven by playwright-core. Logs in,
// declares a queue, publishes through the exchange page, reads the message back (browse,
// then get), and keeps a screenshot of each main page under test-artifacts/ui/.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import type { Browser, Page } from 'playwright-core';
import { startManagement } from '../../src/http';
import { FakeCluster, withCluster } from './fake-cluster';
import { managementSuite } from './fixture';

// Only inside page.waitForFunction callbacks, which run in the browser.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(__dirname, '..', '..', '..', 'test-artifacts', 'ui');
const mgmt = managementSuite();

function loadPlaywright(): typeof import('playwright-core') | undefined {
  try {
    return require('playwright-core') as typeof import('playwright-core');
  } catch {
    return undefined;
  }
}

const playwright = loadPlaywright();
const skip = !existsSync(CHROMIUM) ? 'chromium is not installed (apt-get install chromium)' : playwright === undefined ? 'playwright-core is not installed' : false;

describe('web UI', { skip }, () => {
  let browser: Browser;
  let page: Page;
  let conn: amqp.ChannelModel;
  const errors: string[] = [];

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    // Something to look at: a topic exchange feeding two queues, a consumer, some traffic.
    conn = await amqp.connect(mgmt.amqpUrl, { clientProperties: { connection_name: 'ui-test-client' } });
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange('orders', 'topic', { durable: true });
    await ch.assertExchange('orders.audit', 'fanout', { durable: true });
    await ch.assertQueue('orders.eu', { durable: true });
    await ch.assertQueue('orders.us', { durable: true, arguments: { 'x-max-length': 1000 } });
    await ch.assertQueue('audit-log', { durable: true });
    await ch.bindQueue('orders.eu', 'orders', 'eu.#');
    await ch.bindQueue('orders.us', 'orders', 'us.#');
    await ch.bindExchange('orders.audit', 'orders', '#');
    await ch.bindQueue('audit-log', 'orders.audit', '');
    for (let i = 0; i < 30; i++) ch.publish('orders', i % 2 === 0 ? 'eu.new' : 'us.new', Buffer.from(JSON.stringify({ order: i })), { contentType: 'application/json' });
    await ch.waitForConfirms();
    await ch.consume('audit-log', () => {}, { noAck: true });

    browser = await playwright!.chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      // The wrong-password test makes the browser log its 401 on purpose.
      if (msg.type() === 'error' && !msg.text().includes('status of 401')) errors.push(msg.text());
    });
  });

  after(async () => {
    await browser?.close();
    await conn?.close().catch(() => {});
  });

  async function shot(name: string): Promise<void> {
    // The header is sticky; from the top, a full-page capture shows it where it belongs.
    await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  it('refuses a wrong password with a message on the form', async () => {
    await page.goto(`${mgmt.base}/`);
    await page.fill('input[name=username]', 'guest');
    await page.fill('input[name=password]', 'wrong');
    await page.click('button[type=submit]');
    await page.waitForSelector('#login-error:not([hidden])');
    assert.match((await page.textContent('#login-error')) ?? '', /Login failed/);
    await shot('login');
  });

  it('logs in and shows the overview with totals and charts', async () => {
    await page.fill('input[name=password]', 'guest');
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-stat="queues"]');
    assert.equal((await page.textContent('#whoami'))?.startsWith('guest'), true);
    assert.equal(await page.textContent('[data-stat="queues"] .value'), '3');
    assert.equal(await page.textContent('[data-stat="connections"] .value'), '1');
    await page.waitForSelector('.chart svg');
    // Give the once-a-second sampler a few samples of the traffic, so the charts have lines.
    await new Promise((r) => setTimeout(r, 2500));
    await page.reload();
    await page.waitForFunction(() => [...document.querySelectorAll('.chart .legend b')].some((b: any) => b.textContent === '30'));
    await shot('overview');
  });

  it('declares a queue from the queues page', async () => {
    await page.goto(`${mgmt.base}/#/queues`);
    await page.waitForSelector('#add-queue');
    await page.fill('#add-queue input[name=name]', 'ui-queue');
    await page.click('#add-queue button[type=submit]');
    await page.waitForSelector('table.list a:text-is("ui-queue")');
    assert.equal(await page.locator('th:text-is("Node")').count(), 0, 'a stand-alone broker needs no node column');
    const q = await mgmt.api('/api/queues/%2F/ui-queue');
    assert.equal(q.status, 200);
    assert.equal(q.json.durable, true);
    await page.fill('.list-view input[type=search]', 'orders');
    await page.waitForFunction(() => document.querySelectorAll('.list-view tbody tr').length === 2);
    await page.fill('.list-view input[type=search]', '');
    await page.waitForSelector('table.list a:text-is("ui-queue")');
    await shot('queues');
  });

  it('publishes from the exchange page', async () => {
    await page.goto(`${mgmt.base}/#/exchanges/%2F/amq.default`);
    await page.waitForSelector('#publish-form');
    await page.fill('#publish-form input[name=routing_key]', 'ui-queue');
    await page.fill('#publish-form input[name=properties]', '{"content_type": "text/plain", "message_id": "m-1"}');
    await page.fill('#publish-form textarea[name=payload]', 'hello from the browser');
    await page.click('#publish-form button[type=submit]');
    await page.waitForFunction(() => /routed/.test(document.getElementById('publish-result').textContent));
    assert.equal((await mgmt.api('/api/queues/%2F/ui-queue')).json.messages_ready, 1);
    await page.goto(`${mgmt.base}/#/exchanges/%2F/orders`);
    await page.waitForSelector('text=Bindings from this exchange');
    await shot('exchange');
  });

  it('browses the message without consuming it, then gets it', async () => {
    await page.goto(`${mgmt.base}/#/queues/%2F/ui-queue`);
    await page.waitForSelector('#browse');
    await page.click('#browse');
    await page.waitForSelector('#messages-out pre.payload');
    assert.equal(await page.textContent('#messages-out pre.payload'), 'hello from the browser');
    assert.equal((await mgmt.api('/api/queues/%2F/ui-queue')).json.messages_ready, 1, 'browsing consumed nothing');
    await page.selectOption('#get-form select[name=ackmode]', 'ack_requeue_false');
    await page.click('#get-form button[type=submit]');
    await page.waitForFunction(() => (document.querySelector('#messages-out .message')?.textContent ?? '').includes('m-1'));
    assert.equal(await page.textContent('#messages-out pre.payload'), 'hello from the browser');
    assert.equal((await mgmt.api('/api/queues/%2F/ui-queue')).json.messages_ready, 0);
    await shot('queue');
  });

  it('draws the topology graph', async () => {
    await page.goto(`${mgmt.base}/#/topology`);
    await page.waitForSelector('#topology svg .node');
    const nodes = await page.$$eval('#topology .node', (els) => els.map((e) => e.getAttribute('data-id')));
    for (const id of ['x:orders', 'x:orders.audit', 'q:orders.eu', 'q:orders.us', 'q:audit-log']) assert.ok(nodes.includes(id), id);
    const edges = await page.$$eval('#topology .edge-group', (els) => els.map((e) => `${e.getAttribute('data-from')}->${e.getAttribute('data-to')}`));
    assert.ok(edges.includes('x:orders->x:orders.audit'));
    assert.ok(edges.includes('x:orders.audit->q:audit-log'));
    await shot('topology');
  });

  it('lists connections and channels, and shows the admin pages', async () => {
    await page.goto(`${mgmt.base}/#/connections`);
    await page.waitForSelector('text=ui-test-client');
    await shot('connections');
    await page.goto(`${mgmt.base}/#/channels`);
    await page.waitForSelector('.list-view tbody td span.mono');
    await shot('channels');
    await page.goto(`${mgmt.base}/#/exchanges`);
    await page.waitForSelector('table.list a:text-is("orders")');
    await shot('exchanges');
    for (const tab of ['users', 'vhosts', 'policies', 'definitions']) {
      await page.goto(`${mgmt.base}/#/admin/${tab}`);
      await page.waitForSelector(tab === 'definitions' ? '#export-definitions' : 'table.list');
      await shot(`admin-${tab}`);
    }
  });

  it('adds a user and a virtual host from the admin pages', async () => {
    await page.goto(`${mgmt.base}/#/admin/vhosts`);
    await page.waitForSelector('#add-vhost');
    await page.fill('#add-vhost input[name=name]', 'ui-vhost');
    await page.click('#add-vhost button[type=submit]');
    await page.waitForSelector('td:text-is("ui-vhost")');
    await page.goto(`${mgmt.base}/#/admin/users`);
    await page.waitForSelector('#add-user');
    await page.fill('#add-user input[name=name]', 'ui-user');
    await page.fill('#add-user input[name=password]', 'secret');
    await page.fill('#add-user input[name=tags]', 'management');
    await page.click('#add-user button[type=submit]');
    await page.waitForSelector('td:text-is("ui-user")');
    assert.deepEqual((await mgmt.api('/api/whoami', { auth: ['ui-user', 'secret'] })).json, { name: 'ui-user', tags: ['management'] });
    assert.equal((await mgmt.api('/api/vhosts/ui-vhost')).status, 200);
  });

  it('shows cluster nodes on the overview and where queues live', async () => {
    const cluster = new FakeCluster();
    cluster.placements.set('//orders.eu', { node: 'warren@b', mirrors: ['warren@a', 'warren@c'], inSync: ['warren@a'], epoch: 4 });
    const clustered = await startManagement(withCluster(mgmt.handle.broker, cluster), { port: 0, bind: '127.0.0.1' });
    try {
      const base = `http://127.0.0.1:${clustered.port}`;
      await page.goto(`${base}/`);
      await page.fill('input[name=username]', 'guest');
      await page.fill('input[name=password]', 'guest');
      await page.click('button[type=submit]');
      await page.waitForSelector('#cluster-nodes:not([hidden]) td:text-is("10.0.0.2:5672")');
      assert.equal(await page.locator('#cluster-nodes tbody tr').count(), 2);
      await shot('overview-cluster');
      await page.goto(`${base}/#/queues`);
      await page.waitForSelector('th:text-is("Node")');
      await page.waitForSelector('td:has-text("warren@b") .tag.warn:text-is("+2")');
      await shot('queues-cluster');
      await page.goto(`${base}/#/queues/%2F/orders.eu`);
      await page.waitForSelector('#queue-mirrors');
      assert.equal(await page.textContent('#queue-node'), 'warren@b');
      assert.equal(await page.textContent('#queue-mirrors'), 'warren@awarren@c epoch 4');
    } finally {
      await clustered.close();
    }
  });

  it('ran without script errors', () => {
    assert.deepEqual(errors, []);
  });
});
