// Typed settings. Embedders pass a Partial<Config> to startBroker (defaults: defaultConfig());
// the warren executable builds one with parseCommandLine from, lowest to highest priority:
// defaults, a JSON config file, WARREN_* environment variables and command-line flags.
// Nothing here is global: every parse builds its own commander program and returns a value.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { Command, CommanderError, Option } from 'commander';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Config {
  /** AMQP listener port; 0 picks a free one. */
  port: number;
  /** Interface to listen on; '' means all interfaces. */
  bind: string;
  /** Where durable state lives; null keeps everything in memory. */
  dataDir: string | null;
  /** Management HTTP API, UI and /metrics port; 0 picks a free one, -1 disables management. */
  managementPort: number;
  logLevel: LogLevel;
  /** Seconds proposed in connection.tune. */
  heartbeat: number;
  frameMax: number;
  channelMax: number;
  handshakeTimeoutMs: number;
  defaultUser: string;
  defaultPass: string;
  defaultVhost: string;
  /** Users that may only log in from loopback, as RabbitMQ's loopback_users. */
  loopbackUsers: string[];
  /** Announced in connection.start's cluster_name, as RabbitMQ does (rabbit@host). */
  clusterName: string;
  /** RabbitMQ's consumer_timeout: ms a delivery may stay unacknowledged; 0 disables. */
  consumerTimeout: number;
  /**
   * What a consumer timeout does: 'cancel-consumer' (Warren's default) cancels only the stuck
   * consumer and requeues its messages; 'close-channel' closes the channel with 406 as RabbitMQ.
   */
  consumerTimeoutAction: ConsumerTimeoutAction;
  /** Memory alarm threshold: a fraction of RAM (<= 1) or absolute bytes (RabbitMQ's default 0.4). */
  memoryHighWatermark: number;
  /** Disk alarm: bytes of free space under which publishers are blocked (RabbitMQ's 50 MB). */
  diskFreeLimit: number;
  /** AMQPS (AMQP over TLS) listener port, RabbitMQ's 5671 by convention; -1 disables it. */
  tlsPort: number;
  /** PEM certificate chain and private key for AMQPS and, with managementTls, HTTPS. */
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** PEM CA bundle; when set, TLS clients must present a certificate it signed (verify_peer + fail_if_no_peer_cert). */
  tlsCaFile: string | null;
  /** Serve the management API, UI and metrics over HTTPS with the TLS certificate. */
  managementTls: boolean;
  /** etcd client URLs; empty runs stand-alone, otherwise the node joins or forms a cluster. */
  clusterEtcd: string[];
  /** This node's name in the cluster (unique among its members). */
  nodeName: string;
  /** Port of the node-to-node link listener (AMQP, cluster credentials only); 0 picks a free one. */
  clusterPort: number;
  /** Address other nodes reach this node's link and AMQP listeners at; '' uses --bind or 127.0.0.1. */
  clusterAdvertise: string;
  /** etcd key prefix, so several clusters can share one etcd. */
  clusterPrefix: string;
  /** Seconds of the node's etcd lease: a dead node's queues fail over after about this long. */
  clusterLeaseSeconds: number;
}

export type ConsumerTimeoutAction = 'cancel-consumer' | 'close-channel';

export function defaultConfig(): Config {
  return {
    port: 5672,
    bind: '',
    dataDir: null,
    // Embedded brokers (tests, applications) run without the management listener unless asked.
    managementPort: -1,
    logLevel: 'info',
    heartbeat: 60,
    frameMax: 131072,
    channelMax: 2047,
    handshakeTimeoutMs: 10_000,
    defaultUser: 'guest',
    defaultPass: 'guest',
    defaultVhost: '/',
    loopbackUsers: ['guest'],
    clusterName: `warren@${hostname()}`,
    consumerTimeout: 1_800_000,
    consumerTimeoutAction: 'cancel-consumer',
    memoryHighWatermark: 0.4,
    diskFreeLimit: 50_000_000,
    tlsPort: -1,
    tlsCertFile: null,
    tlsKeyFile: null,
    tlsCaFile: null,
    managementTls: false,
    clusterEtcd: [],
    nodeName: `warren@${hostname()}`,
    clusterPort: 25672,
    clusterAdvertise: '',
    clusterPrefix: '/warren',
    clusterLeaseSeconds: 3,
  };
}

/** The executable's defaults: as embedded, except that state is kept on disk under ./data. */
export function cliDefaultConfig(): Config {
  return { ...defaultConfig(), dataDir: './data', managementPort: 15672 };
}

/** A setting that cannot be used. The message is one line naming its source and value. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** What the command line asks for: run with a config, or print help / the version and exit 0. */
export type CommandLine =
  | { readonly kind: 'run'; readonly config: Config }
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'version'; readonly text: string };

/** Thrown by parseConfig when the command line asks for help or the version instead of a run. */
export class UsageRequested extends Error {
  override readonly name = 'UsageRequested';
  constructor(
    readonly kind: 'help' | 'version',
    readonly text: string,
  ) {
    super(`${kind} requested`);
  }
}

/**
 * Builds the executable's Config. argv holds the user's arguments only (process.argv.slice(2)).
 * Throws ConfigError for bad values, unknown flags or a bad config file, and UsageRequested for
 * --help / --version; parseCommandLine returns those as values instead.
 */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const parsed = parseCommandLine(argv, env);
  if (parsed.kind !== 'run') throw new UsageRequested(parsed.kind, parsed.text);
  return parsed.config;
}

/** Like parseConfig, with help and version requests as values. Throws ConfigError. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv, version = packageVersion()): CommandLine {
  const program = buildProgram(version);
  let printed = '';
  program.configureOutput({
    writeOut: (text) => {
      printed += text;
    },
    writeErr: () => {},
    outputError: () => {},
    // The same text whatever terminal (or none) the caller has.
    getOutHelpWidth: () => 80,
  });
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') return { kind: 'help', text: printed };
    if (err.code === 'commander.version') return { kind: 'version', text: printed };
    // Commander's messages start with "error: " and may put a "(Did you mean ...?)" on a new line.
    throw new ConfigError(err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim());
  }

  const config = cliDefaultConfig();

  const configFile = optionValue(program, '--config') ?? envValue(env, 'WARREN_CONFIG');
  if (configFile !== undefined) Object.assign(config, readConfigFile(configFile.value, configFile.source));

  for (const setting of SETTINGS) {
    if (setting.env === undefined) continue;
    const raw = env[setting.env];
    if (raw !== undefined) assign(config, setting, raw, setting.env);
  }
  for (const setting of SETTINGS) {
    if (setting.flag === undefined) continue;
    const raw = program.getOptionValue(attributeOf(setting.flag)) as string | undefined;
    if (raw !== undefined) assign(config, setting, raw, setting.flag);
  }
  if (program.getOptionValue('inMemory') === true) config.dataDir = null;
  // Several cluster nodes started from one directory must not share the default data dir.
  const dataDirGiven = configFile !== undefined || env.WARREN_DATA_DIR !== undefined || program.getOptionValue('dataDir') !== undefined;
  if (config.clusterEtcd.length !== 0 && config.dataDir !== null && !dataDirGiven) config.dataDir = join(config.dataDir, config.nodeName);

  return { kind: 'run', config };
}

/** The --help text, as parseCommandLine(['--help'], ...) returns it. */
export function usage(): string {
  const parsed = parseCommandLine(['--help'], {});
  return parsed.kind === 'help' ? parsed.text : '';
}

/**
 * Reads a JSON config file: one object whose keys are Config field names. Unknown keys are an
 * error, so a typo does not silently fall back to a default.
 */
export function readConfigFile(path: string, source = '--config'): Partial<Config> {
  if (path === '') throw new ConfigError(`invalid value for ${source}: "" (expected a file path)`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path} (from ${source}): ${oneLine(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${oneLine(err)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError(`config file ${path} must contain a JSON object`);
  }
  const out: Partial<Config> = {};
  for (const [key, value] of Object.entries(json)) {
    const setting = SETTINGS.find((s) => s.key === key);
    if (setting === undefined) {
      throw new ConfigError(
        `unknown key ${JSON.stringify(key)} in config file ${path} (known keys: ${SETTINGS.map((s) => s.key).join(', ')})`,
      );
    }
    const result = setting.type.fromJson(value);
    if ('expected' in result) {
      throw new ConfigError(
        `invalid value for ${JSON.stringify(key)} in config file ${path}: ${show(value)} (expected ${result.expected})`,
      );
    }
    (out as Record<string, unknown>)[key] = result.value;
  }
  return out;
}

// ---- the settings table: one row per Config field, with its flag, variable and value type ----

type Checked<T> = { value: T } | { expected: string };

interface ValueType<T> {
  /** From a flag or environment variable. */
  fromText(raw: string): Checked<T>;
  /** From the config file. */
  fromJson(value: unknown): Checked<T>;
}

interface Setting<K extends keyof Config = keyof Config> {
  key: K;
  flag?: string;
  /** Placeholder shown in --help, e.g. '<port>'. */
  arg?: string;
  env?: string;
  description: string;
  type: ValueType<Config[K]>;
}

function integer(min: number, max: number): ValueType<number> {
  const expected = `an integer ${min}-${max}`;
  const inRange = (n: number): Checked<number> =>
    Number.isSafeInteger(n) && n >= min && n <= max ? { value: n } : { expected };
  return {
    // Digits only: no signs, exponents, hex or surrounding spaces, which Number() would accept.
    fromText: (raw) => (/^[0-9]{1,16}$/.test(raw) ? inRange(Number(raw)) : { expected }),
    fromJson: (value) => (typeof value === 'number' ? inRange(value) : { expected }),
  };
}

/** A port, or -1 for "off". */
const optionalPort: ValueType<number> = {
  fromText: (raw) => (raw === '-1' ? { value: -1 } : integer(0, 65535).fromText(raw)),
  fromJson: (value) => (value === -1 ? { value: -1 } : integer(0, 65535).fromJson(value)),
};

/** A file path, or null (in the file) for none. */
const optionalFile: ValueType<string | null> = {
  fromText: (raw) => (raw !== '' ? { value: raw } : { expected: 'a file path' }),
  fromJson: (value) => (value === null || (typeof value === 'string' && value !== '') ? { value } : { expected: 'a file path or null' }),
};

const booleanValue: ValueType<boolean> = {
  fromText: (raw) => (raw === 'true' ? { value: true } : raw === 'false' ? { value: false } : { expected: 'true or false' }),
  fromJson: (value) => (typeof value === 'boolean' ? { value } : { expected: 'true or false' }),
};

const positiveNumber: ValueType<number> = {
  fromText: (raw) => (/^[0-9]+(\.[0-9]+)?$/.test(raw) && Number(raw) > 0 ? { value: Number(raw) } : { expected: 'a positive number' }),
  fromJson: (v) => (typeof v === 'number' && v > 0 && Number.isFinite(v) ? { value: v } : { expected: 'a positive number' }),
};

function oneOfText<T extends string>(values: readonly T[]): ValueType<T> {
  const expected = `one of ${values.join(', ')}`;
  const check = (v: unknown): Checked<T> => (values.includes(v as T) ? { value: v as T } : { expected });
  return { fromText: check, fromJson: check };
}

function text(options: { allowEmpty: boolean }): ValueType<string> {
  const expected = options.allowEmpty ? 'a string' : 'a non-empty string';
  const check = (s: string): Checked<string> => (s !== '' || options.allowEmpty ? { value: s } : { expected });
  return {
    fromText: check,
    fromJson: (value) => (typeof value === 'string' ? check(value) : { expected }),
  };
}

const logLevel: ValueType<LogLevel> = {
  fromText: (raw) => pickLevel(raw),
  fromJson: (value) => (typeof value === 'string' ? pickLevel(value) : pickLevel('')),
};

function pickLevel(raw: string): Checked<LogLevel> {
  const level = LOG_LEVELS.find((l) => l === raw);
  return level !== undefined ? { value: level } : { expected: `one of ${LOG_LEVELS.join(', ')}` };
}

/** A directory path; null (in the file) or --in-memory means no persistence. */
const dataDir: ValueType<string | null> = {
  fromText: (raw) => (raw !== '' ? { value: raw } : { expected: 'a directory path; use --in-memory to keep state in memory' }),
  fromJson: (value) =>
    value === null || (typeof value === 'string' && value !== '')
      ? { value }
      : { expected: 'a directory path, or null to keep state in memory' },
};

const userList: ValueType<string[]> = {
  fromText: (raw) => ({ value: raw.split(',').filter((u) => u !== '') }),
  fromJson: (value) =>
    Array.isArray(value) && value.every((u) => typeof u === 'string')
      ? { value: [...(value as string[])] }
      : { expected: 'an array of user names' },
};

const PORT = integer(0, 65535);

const urlList: ValueType<string[]> = {
  fromText: (raw) => ({ value: raw.split(',').map((u) => u.trim()).filter((u) => u !== '') }),
  fromJson: (value) =>
    Array.isArray(value) && value.every((u) => typeof u === 'string')
      ? { value: [...(value as string[])] }
      : typeof value === 'string'
        ? { value: value.split(',').filter((u) => u !== '') }
        : { expected: 'an array of URLs' },
};

// The AMQP 0-9-1 spec sets the minimum frame size to 4096 octets (section 4.2.3, frame-min-size);
// frame-max is a long, and we keep it to a signed 32-bit value as RabbitMQ does.
const SETTINGS: readonly Setting[] = [
  { key: 'port', flag: '--port', arg: '<port>', env: 'WARREN_PORT', description: 'AMQP listener port; 0 picks a free one', type: PORT },
  { key: 'bind', flag: '--bind', arg: '<address>', env: 'WARREN_BIND', description: 'interface to listen on; empty means all interfaces', type: text({ allowEmpty: true }) },
  { key: 'dataDir', flag: '--data-dir', arg: '<dir>', env: 'WARREN_DATA_DIR', description: 'directory for durable state', type: dataDir },
  { key: 'managementPort', flag: '--management-port', arg: '<port>', env: 'WARREN_MANAGEMENT_PORT', description: 'management HTTP port', type: PORT },
  { key: 'logLevel', flag: '--log-level', arg: '<level>', env: 'WARREN_LOG_LEVEL', description: `log level: ${LOG_LEVELS.join(', ')}`, type: logLevel },
  { key: 'heartbeat', flag: '--heartbeat', arg: '<seconds>', env: 'WARREN_HEARTBEAT', description: 'heartbeat interval proposed in connection.tune; 0 disables', type: integer(0, 65535) },
  { key: 'frameMax', flag: '--frame-max', arg: '<bytes>', env: 'WARREN_FRAME_MAX', description: 'largest frame proposed in connection.tune', type: integer(4096, 2 ** 31 - 1) },
  { key: 'channelMax', flag: '--channel-max', arg: '<count>', env: 'WARREN_CHANNEL_MAX', description: 'most channels per connection proposed in connection.tune', type: integer(1, 65535) },
  { key: 'handshakeTimeoutMs', flag: '--handshake-timeout', arg: '<ms>', env: 'WARREN_HANDSHAKE_TIMEOUT', description: 'milliseconds a client has to finish the handshake', type: integer(1, 2 ** 31 - 1) },
  { key: 'defaultUser', flag: '--default-user', arg: '<name>', env: 'WARREN_DEFAULT_USER', description: "default user's name", type: text({ allowEmpty: false }) },
  { key: 'defaultPass', flag: '--default-pass', arg: '<password>', env: 'WARREN_DEFAULT_PASS', description: "default user's password", type: text({ allowEmpty: false }) },
  // File-only settings.
  { key: 'defaultVhost', description: 'default virtual host', type: text({ allowEmpty: false }) },
  { key: 'loopbackUsers', description: 'users that may only log in from loopback', type: userList },
  { key: 'clusterName', description: 'cluster name announced to clients', type: text({ allowEmpty: false }) },
  { key: 'memoryHighWatermark', flag: '--memory-high-watermark', arg: '<n>', env: 'WARREN_MEMORY_HIGH_WATERMARK', description: 'block publishers above this memory use: a fraction of RAM (e.g. 0.4) or bytes', type: positiveNumber },
  { key: 'diskFreeLimit', flag: '--disk-free-limit', arg: '<bytes>', env: 'WARREN_DISK_FREE_LIMIT', description: 'block publishers when free disk falls below this many bytes; 0 disables', type: integer(0, Number.MAX_SAFE_INTEGER) },
  { key: 'consumerTimeout', flag: '--consumer-timeout', arg: '<ms>', env: 'WARREN_CONSUMER_TIMEOUT', description: 'ms a delivery may stay unacknowledged before the consumer timeout acts; 0 disables', type: integer(0, 2 ** 31 - 1) },
  { key: 'consumerTimeoutAction', flag: '--consumer-timeout-action', arg: '<action>', env: 'WARREN_CONSUMER_TIMEOUT_ACTION', description: "cancel-consumer (cancel only the stuck consumer, requeue its messages) or close-channel (RabbitMQ's 406)", type: oneOfText(['cancel-consumer', 'close-channel'] as const) },
  { key: 'tlsPort', flag: '--tls-port', arg: '<port>', env: 'WARREN_TLS_PORT', description: 'AMQPS listener port (usually 5671); -1 disables', type: optionalPort },
  { key: 'tlsCertFile', flag: '--tls-cert', arg: '<file>', env: 'WARREN_TLS_CERT', description: 'PEM certificate (chain) for AMQPS and HTTPS', type: optionalFile },
  { key: 'tlsKeyFile', flag: '--tls-key', arg: '<file>', env: 'WARREN_TLS_KEY', description: 'PEM private key for the certificate', type: optionalFile },
  { key: 'tlsCaFile', flag: '--tls-ca', arg: '<file>', env: 'WARREN_TLS_CA', description: 'PEM CA bundle; clients must then present a certificate it signed', type: optionalFile },
  { key: 'managementTls', flag: '--management-tls', arg: '<true|false>', env: 'WARREN_MANAGEMENT_TLS', description: 'serve the management API over HTTPS', type: booleanValue },
  { key: 'clusterEtcd', flag: '--cluster-etcd', arg: '<urls>', env: 'WARREN_CLUSTER_ETCD', description: 'comma-separated etcd client URLs; joins or forms a cluster (empty: stand-alone)', type: urlList },
  { key: 'nodeName', flag: '--node-name', arg: '<name>', env: 'WARREN_NODE_NAME', description: "this node's unique name in the cluster", type: text({ allowEmpty: false }) },
  { key: 'clusterPort', flag: '--cluster-port', arg: '<port>', env: 'WARREN_CLUSTER_PORT', description: 'node-to-node link port', type: PORT },
  { key: 'clusterAdvertise', flag: '--cluster-advertise', arg: '<host>', env: 'WARREN_CLUSTER_ADVERTISE', description: 'address other nodes use to reach this one (empty: --bind, or 127.0.0.1)', type: text({ allowEmpty: true }) },
  { key: 'clusterPrefix', flag: '--cluster-prefix', arg: '<prefix>', env: 'WARREN_CLUSTER_PREFIX', description: 'etcd key prefix of the cluster', type: text({ allowEmpty: false }) },
  { key: 'clusterLeaseSeconds', flag: '--cluster-lease', arg: '<seconds>', env: 'WARREN_CLUSTER_LEASE', description: "seconds of the node's etcd lease (failure detection)", type: integer(2, 60) },
] satisfies { [K in keyof Config]: Setting<K> }[keyof Config][];

function buildProgram(version: string): Command {
  const defaults = cliDefaultConfig();
  const program = new Command('warren')
    .description("Warren: an AMQP 0-9-1 message broker with RabbitMQ's semantics")
    .exitOverride()
    .allowExcessArguments(false)
    .version(version, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit')
    .option('--config <file>', 'JSON config file (env WARREN_CONFIG)');
  for (const setting of SETTINGS) {
    if (setting.flag === undefined) continue;
    const shown = setting.key === 'bind' && defaults.bind === '' ? 'all interfaces' : JSON.stringify(defaults[setting.key]);
    const env = setting.env !== undefined ? `env ${setting.env}, ` : '';
    const option = new Option(`${setting.flag} ${setting.arg ?? '<value>'}`, `${setting.description} (${env}default: ${shown})`);
    if (setting.key === 'dataDir') option.conflicts('inMemory');
    program.addOption(option);
  }
  program.option('--in-memory', 'keep all state in memory (data dir null)');
  program.addHelpText(
    'after',
    [
      '',
      'Precedence, lowest to highest: defaults, config file, environment, flags.',
      'The config file (--config or WARREN_CONFIG) is a JSON object with any of:',
      ...wrap(SETTINGS.map((s) => s.key).join(', '), 76).map((line) => `  ${line}`),
      '',
    ].join('\n'),
  );
  return program;
}

function assign(config: Config, setting: Setting, raw: string, source: string): void {
  const result = setting.type.fromText(raw);
  if ('expected' in result) {
    throw new ConfigError(`invalid value for ${source}: ${JSON.stringify(raw)} (expected ${result.expected})`);
  }
  (config as unknown as Record<string, unknown>)[setting.key] = result.value;
}

function attributeOf(flag: string): string {
  return new Option(`${flag} <value>`).attributeName();
}

function optionValue(program: Command, flag: string): { value: string; source: string } | undefined {
  const value = program.getOptionValue(attributeOf(flag)) as string | undefined;
  return value === undefined ? undefined : { value, source: flag };
}

function envValue(env: NodeJS.ProcessEnv, name: string): { value: string; source: string } | undefined {
  const value = env[name];
  return value === undefined ? undefined : { value, source: name };
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ').trim();
}

function packageVersion(): string {
  // Compiled, this file is dist/src/config.js: two levels below the package root.
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
