// Durable metadata as one JSON document in the shape of RabbitMQ's definitions export
// (GET /api/definitions), so that what Warren keeps is what an operator already knows how to
// read, diff and import. Written whole on every change: metadata changes are rare and small.
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { StoreLogger } from './message-store';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface UserDefinition {
  name: string;
  password_hash: string;
  hashing_algorithm: string;
  /** RabbitMQ 3.x exports a comma-separated string, 4.x an array; both are accepted. */
  tags: string[] | string;
  limits?: JsonObject;
}

export interface VhostDefinition {
  name: string;
  description?: string;
  tags?: string[];
  default_queue_type?: string;
  limits?: JsonObject;
  metadata?: JsonObject;
}

export interface PermissionDefinition {
  user: string;
  vhost: string;
  configure: string;
  write: string;
  read: string;
}

export interface TopicPermissionDefinition {
  user: string;
  vhost: string;
  exchange: string;
  write: string;
  read: string;
}

export interface ParameterDefinition {
  vhost: string;
  component: string;
  name: string;
  value: JsonValue;
}

export interface GlobalParameterDefinition {
  name: string;
  value: JsonValue;
}

export interface PolicyDefinition {
  vhost: string;
  name: string;
  pattern: string;
  'apply-to': string;
  definition: JsonObject;
  priority: number;
}

export interface QueueDefinition {
  name: string;
  vhost: string;
  durable: boolean;
  auto_delete: boolean;
  arguments: JsonObject;
  type?: string;
}

export interface ExchangeDefinition {
  name: string;
  vhost: string;
  type: string;
  durable: boolean;
  auto_delete: boolean;
  internal: boolean;
  arguments: JsonObject;
}

export interface BindingDefinition {
  source: string;
  vhost: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments: JsonObject;
}

export interface Definitions {
  rabbit_version?: string;
  rabbitmq_version?: string;
  product_name?: string;
  product_version?: string;
  users: UserDefinition[];
  vhosts: VhostDefinition[];
  permissions: PermissionDefinition[];
  topic_permissions: TopicPermissionDefinition[];
  parameters: ParameterDefinition[];
  global_parameters: GlobalParameterDefinition[];
  policies: PolicyDefinition[];
  queues: QueueDefinition[];
  exchanges: ExchangeDefinition[];
  bindings: BindingDefinition[];
}

export function emptyDefinitions(): Definitions {
  return {
    users: [],
    vhosts: [],
    permissions: [],
    topic_permissions: [],
    parameters: [],
    global_parameters: [],
    policies: [],
    queues: [],
    exchanges: [],
    bindings: [],
  };
}

const LIST_KEYS = [
  'users',
  'vhosts',
  'permissions',
  'topic_permissions',
  'parameters',
  'global_parameters',
  'policies',
  'queues',
  'exchanges',
  'bindings',
] as const;

/** Neither the file nor its previous copy can be used: starting empty would drop every message. */
export class DefinitionsCorruptError extends Error {
  override readonly name = 'DefinitionsCorruptError';
}

// The file is still plain JSON: {"checksum":"crc32:xxxxxxxx","definitions":{...}}. The CRC is
// over the exact bytes of the definitions text, found between a fixed prefix and suffix, so
// no re-serialisation is needed to check it.
const PREFIX = '{"checksum":"crc32:';
const MIDDLE = '","definitions":';
const SUFFIX = '}\n';

export function encodeDefinitionsFile(defs: Definitions): Buffer {
  const json = Buffer.from(JSON.stringify(defs), 'utf8');
  const head = Buffer.from(`${PREFIX}${crc32(json).toString(16).padStart(8, '0')}${MIDDLE}`, 'utf8');
  return Buffer.concat([head, json, Buffer.from(SUFFIX, 'utf8')]);
}

/** The definitions in a file's bytes, or a sentence saying what is wrong with them. */
export function decodeDefinitionsFile(bytes: Buffer): Definitions | string {
  const text = bytes.toString('utf8');
  let json: string;
  if (text.startsWith(PREFIX)) {
    const crcEnd = PREFIX.length + 8;
    if (!text.startsWith(MIDDLE, crcEnd) || !text.endsWith(SUFFIX)) return 'truncated or malformed (envelope incomplete)';
    const expected = Number.parseInt(text.slice(PREFIX.length, crcEnd), 16);
    const start = Buffer.byteLength(text.slice(0, crcEnd + MIDDLE.length), 'utf8');
    const body = bytes.subarray(start, bytes.length - SUFFIX.length);
    if (crc32(body) !== expected) return 'checksum mismatch';
    json = body.toString('utf8');
  } else {
    // A plain definitions export (e.g. from RabbitMQ) placed here by an operator.
    json = text;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    return `not valid JSON (${(err as Error).message})`;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'not a definitions object';
  const defs = parsed as Record<string, unknown>;
  for (const key of LIST_KEYS) {
    if (defs[key] === undefined) defs[key] = [];
    else if (!Array.isArray(defs[key])) return `"${key}" is not a list`;
  }
  return defs as unknown as Definitions;
}

/**
 * definitions.json in a directory, replaced atomically: written to a temporary file, fsynced,
 * the current file hard-linked as definitions.json.bak, the temporary renamed over it, the
 * directory fsynced. A crash at any point leaves the old or the new document, never a mix,
 * and the previous good copy stays as .bak in case the current one is later found damaged.
 */
export class DefinitionsStore {
  readonly path: string;
  readonly backupPath: string;
  private readonly tmpPath: string;
  private pending: (() => Definitions) | null = null;
  private waiting: ((err: Error | null) => void)[] = [];

  constructor(
    private readonly dir: string,
    private readonly logger: StoreLogger = { warn() {}, error() {} },
  ) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, 'definitions.json');
    this.backupPath = this.path + '.bak';
    this.tmpPath = this.path + '.tmp';
  }

  /** The saved definitions; null on a first start. Throws DefinitionsCorruptError when unusable. */
  load(): Definitions | null {
    if (existsSync(this.tmpPath)) unlinkSync(this.tmpPath); // a save that never completed
    const main = this.tryRead(this.path);
    if (typeof main === 'object') return main;
    const backup = this.tryRead(this.backupPath);
    if (main === undefined && backup === undefined) return null;
    if (typeof backup !== 'object') {
      throw new DefinitionsCorruptError(
        `cannot load definitions: ${this.path} is ${main ?? 'missing'} and ${this.backupPath} is ${backup ?? 'missing'}`,
      );
    }
    if (main === undefined) {
      this.logger.warn({ file: this.path, backup: this.backupPath }, `${this.path} is missing; using ${this.backupPath}`);
      linkSync(this.backupPath, this.path);
    } else {
      const aside = `${this.path}.corrupt`;
      this.logger.error(
        { file: this.path, problem: main, backup: this.backupPath, movedTo: aside },
        `definitions file ${this.path} is ${main}; using the previous copy ${this.backupPath} (changes after it are lost)`,
      );
      renameSync(this.path, aside);
      linkSync(this.backupPath, this.path);
    }
    this.syncDir();
    return backup;
  }

  /** Replaces the saved definitions; durable when it returns. */
  save(defs: Definitions): void {
    this.pending = null;
    const bytes = encodeDefinitionsFile(defs);
    const fd = openSync(this.tmpPath, 'w');
    try {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (existsSync(this.path)) {
      try {
        unlinkSync(this.backupPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      linkSync(this.path, this.backupPath);
    }
    renameSync(this.tmpPath, this.path);
    this.syncDir();
  }

  /**
   * Saves at the end of this I/O turn, once for any number of calls (a client declaring a
   * thousand queues costs one write per turn, not a thousand). snapshot is called then, and
   * done (if given) once the file is durable, e.g. to send queue.declare-ok for a durable queue.
   */
  saveSoon(snapshot: () => Definitions, done?: (err: Error | null) => void): void {
    const first = this.pending === null;
    this.pending = snapshot;
    if (done !== undefined) this.waiting.push(done);
    if (first) setImmediate(() => this.flush());
  }

  /** Performs a pending saveSoon now (before shutdown). */
  flush(): void {
    const snapshot = this.pending;
    const waiting = this.waiting;
    this.waiting = [];
    let error: Error | null = null;
    try {
      if (snapshot !== null) this.save(snapshot());
    } catch (err) {
      error = err as Error;
      this.logger.error({ file: this.path, err: String(err) }, `could not save definitions to ${this.path}`);
    }
    for (const done of waiting) done(error);
  }

  /** Definitions, undefined when the file does not exist, or what is wrong with it. */
  private tryRead(path: string): Definitions | string | undefined {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return `unreadable (${(err as Error).message})`;
    }
    return decodeDefinitionsFile(bytes);
  }

  private syncDir(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
