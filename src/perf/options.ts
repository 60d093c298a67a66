// warren-perf's command line. Short flags follow RabbitMQ PerfTest and the reference amqpperf
// (-x -y -s -z -C -D -c -f persistent -a -q -A -t -r -R -u -p), each with a long form.

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { FieldTable } from './wire';

export type ExchangeType = '' | 'direct' | 'fanout' | 'topic';

export interface PerfOptions {
  uri: string;
  producers: number;
  consumers: number;
  /** Number of queues when no --queue-pattern is given. */
  queues: number;
  /** Queue and exchange name prefix: queues are <prefix>-q<i>, the exchange <prefix>-x. */
  queuePrefix: string;
  queuePattern: string;
  queuePatternFrom: number;
  queuePatternTo: number;
  size: number;
  /** Seconds; the run always stops after this. */
  duration: number;
  pmessages: number;
  cmessages: number;
  /** Max unconfirmed messages per producer; 0 = no publisher confirms. */
  confirm: number;
  persistent: boolean;
  durable: boolean;
  autoack: boolean;
  prefetch: number;
  multiAck: number;
  exchangeType: ExchangeType;
  exchange: string;
  routingKey: string | null;
  topicBindings: number;
  rate: number;
  consumerRate: number;
  predeclared: boolean;
  keep: boolean;
  cleanupOnly: boolean;
  queueArgs: FieldTable;
  /** Max worker threads per role (producers, consumers); 0 = automatic. */
  workers: number;
  batchBytes: number;
  watchPid: number;
  grace: number;
  id: string;
  json: boolean;
  quiet: boolean;
  interval: number;
  setupTimeout: number;
}

export function defaultOptions(): PerfOptions {
  return {
    uri: 'amqp://guest:guest@127.0.0.1:5672',
    producers: 1,
    consumers: 1,
    queues: 1,
    queuePrefix: '',
    queuePattern: '',
    queuePatternFrom: 1,
    queuePatternTo: 0,
    size: 16,
    duration: 10,
    pmessages: 0,
    cmessages: 0,
    confirm: 0,
    persistent: false,
    durable: false,
    autoack: false,
    prefetch: 0,
    multiAck: 1,
    exchangeType: '',
    exchange: '',
    routingKey: null,
    topicBindings: 0,
    rate: 0,
    consumerRate: 0,
    predeclared: false,
    keep: false,
    cleanupOnly: false,
    queueArgs: {},
    workers: 0,
    batchBytes: 32768,
    watchPid: 0,
    grace: 15,
    id: '',
    json: false,
    quiet: false,
    interval: 1,
    setupTimeout: 30,
  };
}

export class UsageError extends Error {}

const int =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (v: string): number => {
    if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`expected an integer, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}], got ${n}`);
    return n;
  };
const num =
  (min: number, max = Number.MAX_VALUE) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got "${v}"`);
    if (n < min || n > max) throw new InvalidArgumentError(`expected a number in [${min}, ${max}], got ${n}`);
    return n;
  };

/** "x-max-length=10,x-queue-type=quorum" → field table (integers, booleans, else strings). */
export function parseQueueArgs(spec: string, prev: FieldTable = {}): FieldTable {
  const out: FieldTable = { ...prev };
  for (const part of spec.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`expected key=value, got "${part}"`);
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    out[k] = /^-?\d+$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
  }
  return out;
}

function buildCommand(): Command {
  const d = defaultOptions();
  return new Command()
    .name('warren-perf')
    .description(
      'AMQP 0-9-1 load generator: producers and consumers on worker threads, throughput and\n' +
        'end-to-end latency. Flags follow RabbitMQ PerfTest. Every run is bounded (-z, then a\n' +
        'watchdog); queues get a unique prefix and are deleted at the end unless --keep or -p.',
    )
    .helpOption('--help', 'show this help')
    .addOption(new Option('-h, --uri <uri>', 'broker URI amqp://user:pass@host:port/vhost').default(d.uri))
    .addOption(new Option('-x, --producers <n>', 'producers (one connection each)').argParser(int(0, 100000)).default(d.producers))
    .addOption(new Option('-y, --consumers <n>', 'consumers (one connection each)').argParser(int(0, 100000)).default(d.consumers))
    .addOption(new Option('--queues <n>', 'number of queues; producer i publishes to queue i mod n, consumer j consumes queue j mod n').argParser(int(1, 1000000)).default(d.queues))
    .addOption(new Option('-u, --queue <prefix>', 'queue name prefix: queues are <prefix>-q<i> (default warren-perf-<pid>-<time>)'))
    .addOption(new Option('--queue-pattern <pattern>', "queue names from a pattern with %d, e.g. 'perf-%d' (PerfTest style)"))
    .addOption(new Option('--queue-pattern-from <n>', 'first %d value').argParser(int(0)).default(d.queuePatternFrom))
    .addOption(new Option('--queue-pattern-to <n>', 'last %d value (inclusive)').argParser(int(0)))
    .addOption(new Option('-s, --size <bytes>', 'message body size; >= 16 carries the latency stamp').argParser(int(0, 128 * 1024 * 1024)).default(d.size))
    .addOption(new Option('-z, --time <seconds>', 'run duration (default 10; 300 when -C/-D is given)').argParser(num(0.001, 86400)))
    .addOption(new Option('-C, --pmessages <n>', 'each producer stops after n messages (and waits for their confirms)').argParser(int(0)).default(0))
    .addOption(new Option('-D, --cmessages <n>', 'each consumer stops after n messages').argParser(int(0)).default(0))
    .addOption(new Option('-c, --confirm <n>', 'publisher confirms with at most n unconfirmed messages per producer (0 = off)').argParser(int(0, 10000000)).default(0))
    .addOption(new Option('-f, --flag <flag>', 'message flag: persistent or transient (repeatable)').argParser((v: string, prev: string[] = []) => [...prev, v]))
    .addOption(new Option('--persistent', 'same as -f persistent'))
    .addOption(new Option('--durable', 'declare durable queues (and exchange)'))
    .addOption(new Option('-a, --autoack', 'consumers use automatic acknowledgement (no-ack)'))
    .addOption(new Option('-q, --qos <n>', 'consumer prefetch count (basic.qos), 0 = unlimited').argParser(int(0, 65535)).default(0))
    .addOption(new Option('-A, --multi-ack-every <n>', 'manual ack with multiple=true every n deliveries').argParser(int(1, 65535)).default(1))
    .addOption(new Option('-t, --type <type>', 'declare an exchange of this type and bind the queues to it').choices(['direct', 'fanout', 'topic']))
    .addOption(new Option('-e, --exchange <name>', 'exchange name (default <prefix>-x with -t; the default exchange without)'))
    .addOption(new Option('-k, --routing-key <key>', 'routing key (and binding key); default: the queue name'))
    .addOption(new Option('--topic-bindings <n>', 'with -t topic: n bindings of mixed * / # patterns spread over the queues; producers cycle over n routing keys, each matching one binding').argParser(int(1, 1000000)))
    .addOption(new Option('-r, --rate <msgs>', 'per-producer rate limit, msg/s (latency is measured from the scheduled send time)').argParser(num(0)).default(0))
    .addOption(new Option('-R, --consumer-rate <msgs>', 'per-consumer rate limit, msg/s').argParser(num(0)).default(0))
    .addOption(new Option('-p, --predeclared', 'use existing queues (and exchange): declare nothing, delete nothing'))
    .addOption(new Option('--keep', 'do not delete the queues and exchange at the end; report the queue depth'))
    .addOption(new Option('--cleanup', 'only delete the queues and exchange of -u <prefix> --queues n, then exit'))
    .addOption(new Option('--queue-args <k=v,...>', 'queue declare arguments, e.g. x-queue-type=quorum').argParser((v: string, prev?: FieldTable) => parseQueueArgs(v, prev)))
    .addOption(new Option('--workers <n>', 'max worker threads per role (producers / consumers); 0 = min(clients, max(2, CPUs))').argParser(int(0, 1024)).default(0))
    .addOption(new Option('--batch-bytes <n>', 'producer write batch size').argParser(int(1024, 16 * 1024 * 1024)).default(d.batchBytes))
    .addOption(new Option('--watch-pid <pid>', 'sample CPU and RSS of this process (the broker) during the run').argParser(int(1)))
    .addOption(new Option('--grace <seconds>', 'watchdog: how long clients may take to stop after the run').argParser(num(1, 3600)).default(d.grace))
    .addOption(new Option('--id <label>', 'label copied into the JSON summary').default(''))
    .addOption(new Option('-i, --interval <seconds>', 'progress line interval').argParser(num(0.1, 3600)).default(d.interval))
    .addOption(new Option('--json', 'print the final summary as one JSON line on stdout (progress goes to stderr)'))
    .addOption(new Option('--quiet', 'no progress lines'))
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} });
}

export type ParseResult = { kind: 'run'; options: PerfOptions } | { kind: 'help'; text: string };

/** argv: the user's arguments only. Throws UsageError with a one-line message. */
export function parseArgs(argv: string[]): ParseResult {
  const cmd = buildCommand();
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') return { kind: 'help', text: cmd.helpInformation() };
      throw new UsageError(err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  const v = cmd.opts<Record<string, unknown>>();
  const o = defaultOptions();
  o.uri = String(v.uri);
  o.producers = v.producers as number;
  o.consumers = v.consumers as number;
  o.queues = v.queues as number;
  o.queuePrefix = (v.queue as string | undefined) ?? '';
  o.queuePattern = (v.queuePattern as string | undefined) ?? '';
  o.queuePatternFrom = v.queuePatternFrom as number;
  o.queuePatternTo = (v.queuePatternTo as number | undefined) ?? 0;
  o.size = v.size as number;
  o.pmessages = v.pmessages as number;
  o.cmessages = v.cmessages as number;
  o.duration = (v.time as number | undefined) ?? (o.pmessages || o.cmessages ? 300 : 10);
  o.confirm = v.confirm as number;
  for (const f of (v.flag as string[] | undefined) ?? []) {
    if (f === 'persistent') o.persistent = true;
    else if (f === 'transient') o.persistent = false;
    else throw new UsageError(`unknown message flag "${f}" (expected persistent or transient)`);
  }
  if (v.persistent) o.persistent = true;
  o.durable = Boolean(v.durable);
  o.autoack = Boolean(v.autoack);
  o.prefetch = v.qos as number;
  o.multiAck = v.multiAckEvery as number;
  o.exchangeType = ((v.type as string | undefined) ?? '') as ExchangeType;
  o.exchange = (v.exchange as string | undefined) ?? '';
  o.routingKey = (v.routingKey as string | undefined) ?? null;
  o.topicBindings = (v.topicBindings as number | undefined) ?? 0;
  o.rate = v.rate as number;
  o.consumerRate = v.consumerRate as number;
  o.predeclared = Boolean(v.predeclared);
  o.keep = Boolean(v.keep);
  o.cleanupOnly = Boolean(v.cleanup);
  o.queueArgs = (v.queueArgs as FieldTable | undefined) ?? {};
  o.workers = v.workers as number;
  o.batchBytes = v.batchBytes as number;
  o.watchPid = (v.watchPid as number | undefined) ?? 0;
  o.grace = v.grace as number;
  o.id = String(v.id ?? '');
  o.interval = v.interval as number;
  o.json = Boolean(v.json);
  o.quiet = Boolean(v.quiet);
  validate(o);
  return { kind: 'run', options: o };
}

/** Cross-field checks; also used by programmatic callers (tests, bench). */
export function validate(o: PerfOptions): void {
  if (o.queuePattern) {
    if (!o.queuePattern.includes('%d')) throw new UsageError('--queue-pattern must contain %d');
    if (o.queuePatternTo < o.queuePatternFrom) throw new UsageError('--queue-pattern-to must be given and >= --queue-pattern-from');
  }
  if (o.topicBindings > 0 && o.exchangeType !== 'topic') throw new UsageError('--topic-bindings needs -t topic');
  if (!o.autoack && o.prefetch > 0 && o.multiAck > o.prefetch) {
    throw new UsageError(`-A (${o.multiAck}) larger than -q (${o.prefetch}) would deadlock`);
  }
  if (o.cleanupOnly && !o.queuePrefix && !o.queuePattern) throw new UsageError('--cleanup needs -u <prefix> or --queue-pattern');
  if (o.predeclared && o.topicBindings > 0) throw new UsageError('--topic-bindings declares bindings; it cannot be used with -p');
  if (o.producers + o.consumers === 0 && !o.cleanupOnly) throw new UsageError('nothing to do: -x 0 and -y 0');
}
