// warrenctl: operate a running Warren through its management HTTP API. The verbs follow
// rabbitmqctl (list_queues, add_user, set_policy, ...), so operators' habits carry over; every
// command is one or two API calls, and --json prints the API's own objects.
import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { ManagementClient, ManagementError, seg, table } from './management-client';

/** Exit statuses, as the sysexits rabbitmqctl uses: unavailable 69, no permission 77. */
export const ExitCode = { OK: 0, FAILURE: 1, USAGE: 2, UNAVAILABLE: 69, NOPERM: 77 } as const;

export interface Io {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** All of standard input (publish without a payload, import from '-'). */
  readStdin(): Promise<string>;
}

interface Globals {
  url: string;
  user: string;
  password: string;
  vhost: string;
  json: boolean;
}

type Row = Record<string, unknown>;

const LISTS: Record<string, { path: (vhost: string) => string; columns: string[]; help: string; more?: string }> = {
  list_queues: {
    path: (v) => `/api/queues/${seg(v)}`,
    columns: ['name', 'messages_ready', 'messages_unacknowledged', 'consumers'],
    help: 'queues of the vhost',
    more: 'in a cluster, node (the leader), slave_nodes (mirrors) and synchronised_slave_nodes say where each queue lives',
  },
  list_exchanges: { path: (v) => `/api/exchanges/${seg(v)}`, columns: ['name', 'type', 'durable', 'auto_delete'], help: 'exchanges of the vhost' },
  list_bindings: { path: (v) => `/api/bindings/${seg(v)}`, columns: ['source', 'destination', 'destination_type', 'routing_key', 'properties_key'], help: 'bindings of the vhost' },
  list_connections: { path: () => '/api/connections', columns: ['name', 'user', 'vhost', 'channels', 'state'], help: 'client connections' },
  list_channels: { path: () => '/api/channels', columns: ['name', 'user', 'consumer_count', 'messages_unacknowledged'], help: 'channels' },
  list_consumers: { path: (v) => `/api/consumers/${seg(v)}`, columns: ['queue.name', 'consumer_tag', 'ack_required', 'prefetch_count', 'channel_details.name'], help: 'consumers in the vhost' },
  list_users: { path: () => '/api/users', columns: ['name', 'tags'], help: 'users' },
  list_vhosts: { path: () => '/api/vhosts', columns: ['name', 'messages', 'description'], help: 'virtual hosts' },
  list_policies: { path: (v) => `/api/policies/${seg(v)}`, columns: ['name', 'pattern', 'apply-to', 'definition', 'priority'], help: 'policies of the vhost' },
  list_operator_policies: { path: (v) => `/api/operator-policies/${seg(v)}`, columns: ['name', 'pattern', 'apply-to', 'definition', 'priority'], help: 'operator policies of the vhost' },
  list_permissions: { path: (v) => `/api/vhosts/${seg(v)}/permissions`, columns: ['user', 'configure', 'write', 'read'], help: 'user permissions in the vhost' },
};

function parseJsonArg(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UsageError(`${what} is not valid JSON: ${text}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

class UsageError extends Error {
  override readonly name = 'UsageError';
}

function buildProgram(io: Io, env: NodeJS.ProcessEnv, run: (action: (g: Globals, c: ManagementClient) => Promise<void>) => void): Command {
  const program = new Command('warrenctl')
    .description("Operate a running Warren broker through its management HTTP API (rabbitmqctl's verbs)")
    .exitOverride()
    .showHelpAfterError(false)
    .addOption(new Option('--url <url>', 'management API base URL').default(env.WARREN_URL ?? 'http://localhost:15672', 'WARREN_URL or http://localhost:15672'))
    .addOption(new Option('-u, --user <name>', 'user name').default(env.WARREN_USER ?? 'guest', 'WARREN_USER or guest'))
    .addOption(new Option('--password <password>', 'password').default(env.WARREN_PASSWORD ?? 'guest', 'WARREN_PASSWORD or guest'))
    .option('-p, --vhost <vhost>', 'virtual host', '/')
    .option('--json', 'print JSON instead of tables', false);
  program.configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s), getOutHelpWidth: () => 100, getErrHelpWidth: () => 100 });

  const out = (g: Globals, json: unknown, text: () => string): void => {
    io.stdout.write(g.json ? `${JSON.stringify(json, null, 2)}\n` : text());
  };

  program
    .command('status')
    .description('broker version, listeners, object and message totals, memory and disk')
    .action(() =>
      run(async (g, c) => {
        const overview = await c.get<Row>('/api/overview');
        let node: Row | undefined;
        try {
          // In a cluster the list holds every member; status is about the node we asked.
          const nodes = await c.get<Row[]>('/api/nodes');
          node = nodes.find((n) => n.name === overview.node) ?? nodes[0];
        } catch (err) {
          if (!(err instanceof ManagementError) || err.kind !== 'refused') throw err;
        }
        out(g, { overview, node }, () => statusText(overview, node));
      }),
    );

  program
    .command('cluster_status')
    .description('the cluster name and its running nodes, with their AMQP addresses and uptime')
    .action(() =>
      run(async (g, c) => {
        const overview = await c.get<Row>('/api/overview');
        const nodes = await c.get<Row[]>('/api/nodes');
        const json = { node: overview.node, cluster_name: overview.cluster_name, running_nodes: nodes.filter((n) => n.running === true).map((n) => n.name), nodes };
        out(g, json, () => clusterStatusText(overview, nodes));
      }),
    );

  for (const [name, spec] of Object.entries(LISTS)) {
    program
      .command(`${name} [columns...]`)
      .description(`list ${spec.help}; columns (any field of the API's objects) default to ${spec.columns.join(', ')}${spec.more !== undefined ? `; ${spec.more}` : ''}`)
      .action((columns: string[]) =>
        run(async (g, c) => {
          const rows = await c.get<Row[]>(spec.path(g.vhost));
          const cols = columns.length !== 0 ? columns : spec.columns;
          out(g, rows, () => table(rows, cols));
        }),
      );
  }

  // ---- queues and exchanges ----
  program
    .command('declare_queue <name>')
    .description('declare a queue')
    .option('--durable', 'survive a broker restart', false)
    .option('--auto-delete', 'delete when the last consumer goes', false)
    .option('--arguments <json>', 'queue arguments, e.g. \'{"x-max-length": 1000}\'', '{}')
    .action((name: string, o: { durable: boolean; autoDelete: boolean; arguments: string }) =>
      run(async (g, c) => {
        await c.put(`/api/queues/${seg(g.vhost)}/${seg(name)}`, { durable: o.durable, auto_delete: o.autoDelete, arguments: parseJsonArg(o.arguments, '--arguments') });
        done(g, `queue '${name}' declared`);
      }),
    );
  program
    .command('delete_queue <name>')
    .description('delete a queue')
    .option('--if-empty', 'only if it has no messages', false)
    .option('--if-unused', 'only if it has no consumers', false)
    .action((name: string, o: { ifEmpty: boolean; ifUnused: boolean }) =>
      run(async (g, c) => {
        const q = new URLSearchParams();
        if (o.ifEmpty) q.set('if-empty', 'true');
        if (o.ifUnused) q.set('if-unused', 'true');
        await c.delete(`/api/queues/${seg(g.vhost)}/${seg(name)}${q.size !== 0 ? `?${q}` : ''}`);
        done(g, `queue '${name}' deleted`);
      }),
    );
  program
    .command('purge_queue <name>')
    .description('remove every ready message from a queue')
    .action((name: string) =>
      run(async (g, c) => {
        await c.delete(`/api/queues/${seg(g.vhost)}/${seg(name)}/contents`);
        done(g, `queue '${name}' purged`);
      }),
    );
  for (const [command, action, what] of [
    ['sync_queue', 'sync', 'start catching up the mirrors of a mirrored queue that are not in sync (run against its leader)'],
    ['cancel_sync_queue', 'cancel_sync', 'stop the catch-up of a mirrored queue (its mirrors stay out of sync)'],
  ] as const) {
    program
      .command(`${command} <name>`)
      .description(what)
      .action((name: string) =>
        run(async (g, c) => {
          await c.post(`/api/queues/${seg(g.vhost)}/${seg(name)}/actions`, { action });
          done(g, `queue '${name}': ${action} requested`);
        }),
      );
  }
  program
    .command('declare_exchange <name> <type>')
    .description('declare an exchange (direct, fanout, topic, headers, x-delayed-message)')
    .option('--durable', 'survive a broker restart', false)
    .option('--auto-delete', 'delete when the last binding goes', false)
    .option('--internal', 'no direct publishing', false)
    .option('--arguments <json>', 'exchange arguments', '{}')
    .action((name: string, type: string, o: { durable: boolean; autoDelete: boolean; internal: boolean; arguments: string }) =>
      run(async (g, c) => {
        await c.put(`/api/exchanges/${seg(g.vhost)}/${seg(name)}`, { type, durable: o.durable, auto_delete: o.autoDelete, internal: o.internal, arguments: parseJsonArg(o.arguments, '--arguments') });
        done(g, `exchange '${name}' declared`);
      }),
    );
  program
    .command('delete_exchange <name>')
    .description('delete an exchange')
    .option('--if-unused', 'only if it has no bindings', false)
    .action((name: string, o: { ifUnused: boolean }) =>
      run(async (g, c) => {
        await c.delete(`/api/exchanges/${seg(g.vhost)}/${seg(name)}${o.ifUnused ? '?if-unused=true' : ''}`);
        done(g, `exchange '${name}' deleted`);
      }),
    );
  program
    .command('bind <source> <destination>')
    .description('bind a queue (or, with --destination-type exchange, an exchange) to an exchange')
    .option('-k, --routing-key <key>', 'routing key', '')
    .option('--destination-type <type>', 'queue or exchange', 'queue')
    .option('--arguments <json>', 'binding arguments', '{}')
    .action((source: string, destination: string, o: { routingKey: string; destinationType: string; arguments: string }) =>
      run(async (g, c) => {
        const d = destinationLetter(o.destinationType);
        await c.post(`/api/bindings/${seg(g.vhost)}/e/${seg(source)}/${d}/${seg(destination)}`, { routing_key: o.routingKey, arguments: parseJsonArg(o.arguments, '--arguments') });
        done(g, `bound '${destination}' to '${source}'`);
      }),
    );
  program
    .command('unbind <source> <destination>')
    .description('remove a binding (matched by routing key and arguments)')
    .option('-k, --routing-key <key>', 'routing key', '')
    .option('--destination-type <type>', 'queue or exchange', 'queue')
    .option('--arguments <json>', 'binding arguments', '{}')
    .action((source: string, destination: string, o: { routingKey: string; destinationType: string; arguments: string }) =>
      run(async (g, c) => {
        const d = destinationLetter(o.destinationType);
        const base = `/api/bindings/${seg(g.vhost)}/e/${seg(source)}/${d}/${seg(destination)}`;
        const args = JSON.stringify(parseJsonArg(o.arguments, '--arguments'));
        const rows = await c.get<Row[]>(base);
        const row = rows.find((r) => r.routing_key === o.routingKey && JSON.stringify(r.arguments) === args);
        if (row === undefined) throw new ManagementError('not-found', `no binding from '${source}' to '${destination}' with routing key '${o.routingKey}'`);
        await c.delete(`${base}/${seg(String(row.properties_key))}`);
        done(g, `unbound '${destination}' from '${source}'`);
      }),
    );
  program
    .command('publish <exchange> <routing_key> [payload]')
    .description("publish one message ('' or amq.default for the default exchange); without a payload, standard input is sent")
    .option('--properties <json>', 'message properties, e.g. \'{"delivery_mode": 2}\'', '{}')
    .action((exchange: string, routingKey: string, payload: string | undefined, o: { properties: string }) =>
      run(async (g, c) => {
        const properties = parseJsonArg(o.properties, '--properties');
        const body = payload !== undefined ? { payload, payload_encoding: 'string' } : { payload: Buffer.from(await io.readStdin()).toString('base64'), payload_encoding: 'base64' };
        const r = await c.post<{ routed: boolean }>(`/api/exchanges/${seg(g.vhost)}/${seg(exchange === '' ? 'amq.default' : exchange)}/publish`, { routing_key: routingKey, properties, ...body });
        out(g, r, () => (r.routed ? 'message published\n' : 'message published but not routed\n'));
      }),
    );
  program
    .command('get <queue>')
    .description('fetch messages; by default they are requeued (ackmode ack_requeue_true)')
    .option('-c, --count <n>', 'how many', '1')
    .option('--ackmode <mode>', 'ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false', 'ack_requeue_true')
    .option('--encoding <encoding>', 'auto or base64', 'auto')
    .action((queue: string, o: { count: string; ackmode: string; encoding: string }) =>
      run(async (g, c) => {
        const rows = await c.post<Row[]>(`/api/queues/${seg(g.vhost)}/${seg(queue)}/get`, { count: Number(o.count), ackmode: o.ackmode, encoding: o.encoding });
        out(g, rows, () => table(rows, ['routing_key', 'exchange', 'redelivered', 'payload_bytes', 'payload']));
      }),
    );

  // ---- users, permissions, vhosts ----
  program
    .command('add_user <name> <password>')
    .description('create a user')
    .option('--tags <tags>', 'comma-separated tags: administrator, monitoring, policymaker, management', '')
    .action((name: string, password: string, o: { tags: string }) =>
      run(async (g, c) => {
        await c.put(`/api/users/${seg(name)}`, { password, tags: o.tags });
        done(g, `user '${name}' added`);
      }),
    );
  program
    .command('delete_user <name>')
    .description('delete a user and their permissions')
    .action((name: string) =>
      run(async (g, c) => {
        await c.delete(`/api/users/${seg(name)}`);
        done(g, `user '${name}' deleted`);
      }),
    );
  program
    .command('change_password <name> <password>')
    .description("set a user's password, keeping their tags")
    .action((name: string, password: string) =>
      run(async (g, c) => {
        const u = await c.get<{ tags: string[] }>(`/api/users/${seg(name)}`);
        await c.put(`/api/users/${seg(name)}`, { password, tags: u.tags });
        done(g, `password of '${name}' changed`);
      }),
    );
  program
    .command('set_user_tags <name> [tags...]')
    .description("replace a user's tags, keeping their password")
    .action((name: string, tags: string[]) =>
      run(async (g, c) => {
        // PUT replaces the whole user, so the stored hash goes back with the new tags.
        const u = await c.get<{ password_hash: string; hashing_algorithm: string }>(`/api/users/${seg(name)}`);
        await c.put(`/api/users/${seg(name)}`, { password_hash: u.password_hash, hashing_algorithm: u.hashing_algorithm, tags: tags.flatMap((t) => t.split(',')).filter((t) => t !== '') });
        done(g, `tags of '${name}' set`);
      }),
    );
  program
    .command('set_permissions <user> <configure> <write> <read>')
    .description('set the user\'s permission regexes in the vhost (-p)')
    .action((user: string, configure: string, write: string, read: string) =>
      run(async (g, c) => {
        await c.put(`/api/permissions/${seg(g.vhost)}/${seg(user)}`, { configure, write, read });
        done(g, `permissions of '${user}' in vhost '${g.vhost}' set`);
      }),
    );
  program
    .command('clear_permissions <user>')
    .description("remove the user's permissions in the vhost (-p)")
    .action((user: string) =>
      run(async (g, c) => {
        await c.delete(`/api/permissions/${seg(g.vhost)}/${seg(user)}`);
        done(g, `permissions of '${user}' in vhost '${g.vhost}' cleared`);
      }),
    );
  program
    .command('add_vhost <name>')
    .description('create a virtual host')
    .option('--description <text>', 'description', '')
    .action((name: string, o: { description: string }) =>
      run(async (g, c) => {
        await c.put(`/api/vhosts/${seg(name)}`, { description: o.description });
        done(g, `vhost '${name}' added`);
      }),
    );
  program
    .command('delete_vhost <name>')
    .description('delete a virtual host with everything in it')
    .action((name: string) =>
      run(async (g, c) => {
        await c.delete(`/api/vhosts/${seg(name)}`);
        done(g, `vhost '${name}' deleted`);
      }),
    );

  // ---- policies ----
  program
    .command('set_policy <name> <pattern> <definition>')
    .description('set a policy in the vhost (-p); definition is JSON, e.g. \'{"max-length": 1000}\'')
    .option('--priority <n>', 'priority; the highest matching policy applies', '0')
    .option('--apply-to <what>', 'queues, exchanges or all', 'all')
    .option('--operator', 'set an operator policy instead', false)
    .action((name: string, pattern: string, definition: string, o: { priority: string; applyTo: string; operator: boolean }) =>
      run(async (g, c) => {
        const kind = o.operator ? 'operator-policies' : 'policies';
        await c.put(`/api/${kind}/${seg(g.vhost)}/${seg(name)}`, { pattern, definition: parseJsonArg(definition, 'definition'), priority: Number(o.priority), 'apply-to': o.applyTo });
        done(g, `policy '${name}' set`);
      }),
    );
  program
    .command('clear_policy <name>')
    .description('remove a policy from the vhost (-p)')
    .option('--operator', 'clear an operator policy instead', false)
    .action((name: string, o: { operator: boolean }) =>
      run(async (g, c) => {
        await c.delete(`/api/${o.operator ? 'operator-policies' : 'policies'}/${seg(g.vhost)}/${seg(name)}`);
        done(g, `policy '${name}' cleared`);
      }),
    );

  // ---- limits ----
  program
    .command('set_vhost_limits <definition>')
    .description('replace the limits of the vhost (-p); definition is JSON, e.g. \'{"max-connections": 100, "max-queues": 10}\' (-1 = no limit)')
    .action((definition: string) =>
      run(async (g, c) => {
        const limits = parseJsonArg(definition, 'definition');
        const base = `/api/vhost-limits/${seg(g.vhost)}`;
        // rabbitmqctl replaces the vhost's limits as a whole; limits left out are cleared.
        const current = (await c.get<Array<{ value: Record<string, number> }>>(base))[0]?.value ?? {};
        for (const [name, value] of Object.entries(limits)) await c.put(`${base}/${seg(name)}`, { value });
        for (const name of Object.keys(current)) if (!(name in limits)) await c.delete(`${base}/${seg(name)}`);
        done(g, `limits of vhost '${g.vhost}' set`);
      }),
    );
  program
    .command('clear_vhost_limits')
    .description('remove all limits of the vhost (-p)')
    .action(() =>
      run(async (g, c) => {
        const base = `/api/vhost-limits/${seg(g.vhost)}`;
        const current = (await c.get<Array<{ value: Record<string, number> }>>(base))[0]?.value ?? {};
        for (const name of Object.keys(current)) await c.delete(`${base}/${seg(name)}`);
        done(g, `limits of vhost '${g.vhost}' cleared`);
      }),
    );
  program
    .command('list_vhost_limits')
    .description('limits of the vhost (-p), or of every vhost with --global')
    .option('--global', 'list the limits of every vhost', false)
    .action((o: { global: boolean }) =>
      run(async (g, c) => {
        const rows = await c.get<Row[]>(o.global ? '/api/vhost-limits' : `/api/vhost-limits/${seg(g.vhost)}`);
        out(g, rows, () => table(rows, ['vhost', 'value']));
      }),
    );
  program
    .command('set_user_limits <user> <definition>')
    .description('set limits of a user; definition is JSON, e.g. \'{"max-connections": 10, "max-channels": 100}\' (-1 = no limit)')
    .action((user: string, definition: string) =>
      run(async (g, c) => {
        // As rabbitmqctl: the given limits are set, the user's other limits stay.
        for (const [name, value] of Object.entries(parseJsonArg(definition, 'definition'))) await c.put(`/api/user-limits/${seg(user)}/${seg(name)}`, { value });
        done(g, `limits of user '${user}' set`);
      }),
    );
  program
    .command('clear_user_limits <user> <limit>')
    .description("remove one limit of a user (max-connections, max-channels), or 'all'")
    .action((user: string, limit: string) =>
      run(async (g, c) => {
        const names = limit === 'all' ? Object.keys((await c.get<Array<{ value: Record<string, number> }>>(`/api/user-limits/${seg(user)}`))[0]?.value ?? {}) : [limit];
        for (const name of names) await c.delete(`/api/user-limits/${seg(user)}/${seg(name)}`);
        done(g, `limits of user '${user}' cleared`);
      }),
    );
  program
    .command('list_user_limits [user]')
    .description('limits of one user, or of every user')
    .action((user: string | undefined) =>
      run(async (g, c) => {
        const rows = await c.get<Row[]>(user === undefined ? '/api/user-limits' : `/api/user-limits/${seg(user)}`);
        out(g, rows, () => table(rows, ['user', 'value']));
      }),
    );

  // ---- definitions and connections ----
  program
    .command('export_definitions <file>')
    .description("write all definitions (RabbitMQ's format) to a file, or '-' for standard output")
    .action((file: string) =>
      run(async (g, c) => {
        const defs = await c.get('/api/definitions');
        const text = `${JSON.stringify(defs, null, 2)}\n`;
        if (file === '-') io.stdout.write(text);
        else {
          await writeFile(resolve(file), text);
          done(g, `definitions exported to ${file}`);
        }
      }),
    );
  program
    .command('import_definitions <file>')
    .description("load definitions (RabbitMQ's format) from a file, or '-' for standard input")
    .action((file: string) =>
      run(async (g, c) => {
        const text = file === '-' ? await io.readStdin() : await readFile(resolve(file), 'utf8');
        parseJsonArg(text, file === '-' ? 'standard input' : file);
        await c.post('/api/definitions', text);
        done(g, `definitions imported from ${file}`);
      }),
    );
  program
    .command('close_connection <name> [reason]')
    .description('close a client connection (320 CONNECTION_FORCED)')
    .action((name: string, reason: string | undefined) =>
      run(async (g, c) => {
        await c.delete(`/api/connections/${seg(name)}`, reason !== undefined ? { 'x-reason': reason } : {});
        done(g, `connection '${name}' closed`);
      }),
    );

  const done = (g: Globals, message: string): void => {
    out(g, { ok: true, message }, () => `${message}\n`);
  };
  return program;
}

function destinationLetter(type: string): 'q' | 'e' {
  if (type === 'queue') return 'q';
  if (type === 'exchange') return 'e';
  throw new UsageError(`--destination-type must be queue or exchange, not '${type}'`);
}

function clusterStatusText(o: Row, nodes: Row[]): string {
  const running = nodes
    .filter((n) => n.running === true)
    .map((n) => ({ name: n.name, amqp_address: n.amqp_address ?? '', uptime: `${Math.round(Number(n.uptime) / 1000)} s` }));
  return `Cluster status of node ${String(o.node)} ...\nCluster name: ${String(o.cluster_name)}\n\nRunning Nodes\n\n${table(running, ['name', 'amqp_address', 'uptime'])}`;
}

function statusText(o: Row, node: Row | undefined): string {
  const lines: string[] = [];
  const get = (r: Row | undefined, path: string): unknown => path.split('.').reduce<unknown>((v, k) => (typeof v === 'object' && v !== null ? (v as Row)[k] : undefined), r);
  lines.push(`${String(o.product_name)} ${String(o.product_version)} (RabbitMQ API ${String(o.rabbitmq_version)})`);
  lines.push(`node: ${String(o.node)}  cluster: ${String(o.cluster_name)}`);
  const listeners = (o.listeners as Row[] | undefined) ?? [];
  if (listeners.length !== 0) lines.push(`listeners: ${listeners.map((l) => `${String(l.protocol)} ${String(l.ip_address)}:${String(l.port)}`).join(', ')}`);
  const t = (o.object_totals as Row | undefined) ?? {};
  lines.push(`connections: ${String(t.connections)}  channels: ${String(t.channels)}  queues: ${String(t.queues)}  exchanges: ${String(t.exchanges)}  consumers: ${String(t.consumers)}`);
  lines.push(`messages: ${String(get(o, 'queue_totals.messages'))} (ready ${String(get(o, 'queue_totals.messages_ready'))}, unacked ${String(get(o, 'queue_totals.messages_unacknowledged'))})`);
  const rate = (k: string): string => String(get(o, `message_stats.${k}_details.rate`) ?? 0);
  lines.push(`rates/s: publish ${rate('publish')}  deliver ${rate('deliver_get')}  ack ${rate('ack')}`);
  if (node !== undefined) {
    const mb = (n: unknown): string => `${Math.round(Number(n) / 1048576)} MiB`;
    lines.push(`memory: ${mb(node.mem_used)} of ${mb(node.mem_limit)}${node.mem_alarm === true ? '  ALARM' : ''}`);
    lines.push(`disk free: ${mb(node.disk_free)} (limit ${mb(node.disk_free_limit)})${node.disk_free_alarm === true ? '  ALARM' : ''}`);
    lines.push(`uptime: ${Math.round(Number(node.uptime) / 1000)} s`);
  }
  return `${lines.join('\n')}\n`;
}

/** Runs one command line; resolves with the exit status. argv holds the user's arguments only. */
export async function main(argv: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let pending: Promise<void> | undefined;
  let program: Command | undefined;
  const run = (action: (g: Globals, c: ManagementClient) => Promise<void>): void => {
    const g = program!.opts<Globals>();
    pending = action(g, new ManagementClient({ url: g.url, user: g.user, password: g.password }));
  };
  program = buildProgram(io, env, run);
  if (argv.length === 0) {
    io.stderr.write(program.helpInformation());
    return ExitCode.USAGE;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    if (pending === undefined) {
      io.stderr.write(program.helpInformation());
      return ExitCode.USAGE;
    }
    await pending;
    return ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return ExitCode.OK;
      return ExitCode.USAGE;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`warrenctl: ${err.message}\n`);
      return ExitCode.USAGE;
    }
    if (err instanceof ManagementError) {
      io.stderr.write(`warrenctl: ${err.message}\n`);
      if (err.kind === 'unreachable') return ExitCode.UNAVAILABLE;
      if (err.kind === 'refused') return ExitCode.NOPERM;
      return ExitCode.FAILURE;
    }
    io.stderr.write(`warrenctl: ${err instanceof Error ? err.message : String(err)}\n`);
    return ExitCode.FAILURE;
  }
}

function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolveText, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer | string) => chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c)));
    stream.on('end', () => resolveText(Buffer.concat(chunks).toString('utf8')));
    stream.on('error', reject);
  });
}

// Run when this file is the entry point, directly or through bin/warrenctl.js.
const entry = require.main;
if (entry === module || entry?.filename === resolve(__dirname, '..', '..', '..', 'bin', 'warrenctl.js')) {
  main(process.argv.slice(2), process.env, { stdout: process.stdout, stderr: process.stderr, readStdin: () => readAll(process.stdin) }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`warrenctl: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = ExitCode.FAILURE;
    },
  );
}
