import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  cliDefaultConfig,
  ConfigError,
  defaultConfig,
  parseCommandLine,
  parseConfig,
  UsageRequested,
} from '../../src/config';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'warren-config-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function configFile(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** Asserts parseConfig throws a ConfigError with exactly this one-line message. */
function rejects(argv: string[], env: NodeJS.ProcessEnv, message: string | RegExp): void {
  assert.throws(
    () => parseConfig(argv, env),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.equal(err.name, 'ConfigError');
      assert.doesNotMatch(err.message, /\n/);
      if (typeof message === 'string') assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

describe('defaults', () => {
  it('embedded defaults keep state in memory', () => {
    assert.equal(defaultConfig().dataDir, null);
  });

  it('the command line with no flags, variables or file gives the CLI defaults, with data under ./data', () => {
    const config = parseConfig([], {});
    // The executable also turns management on (embedded brokers leave it off: managementPort -1).
    assert.deepEqual(config, { ...defaultConfig(), dataDir: './data', managementPort: 15672 });
    assert.deepEqual(config, cliDefaultConfig());
    assert.equal(config.port, 5672);
    assert.equal(config.bind, '');
    assert.equal(config.defaultUser, 'guest');
    assert.deepEqual(config.loopbackUsers, ['guest']);
  });

  it('ignores environment variables that are not Warren settings', () => {
    assert.deepEqual(parseConfig([], { PORT: '1', WARREN_SOMETHING_ELSE: 'x' }), cliDefaultConfig());
  });
});

describe('flags', () => {
  it('set every field they name', () => {
    const config = parseConfig(
      [
        '--port', '5673',
        '--bind', '127.0.0.1',
        '--data-dir', '/var/lib/warren',
        '--management-port', '15673',
        '--log-level', 'debug',
        '--heartbeat', '0',
        '--frame-max', '4096',
        '--channel-max', '65535',
        '--handshake-timeout', '2500',
        '--default-user', 'admin',
        '--default-pass', 's3cret',
      ],
      {},
    );
    assert.deepEqual(config, {
      ...cliDefaultConfig(),
      port: 5673,
      bind: '127.0.0.1',
      dataDir: '/var/lib/warren',
      managementPort: 15673,
      logLevel: 'debug',
      heartbeat: 0,
      frameMax: 4096,
      channelMax: 65535,
      handshakeTimeoutMs: 2500,
      defaultUser: 'admin',
      defaultPass: 's3cret',
    });
  });

  it('accept --flag=value', () => {
    assert.equal(parseConfig(['--port=0'], {}).port, 0);
  });

  it('let the last of a repeated flag win', () => {
    assert.equal(parseConfig(['--port', '1', '--port', '2'], {}).port, 2);
  });

  it('--in-memory sets dataDir to null', () => {
    assert.equal(parseConfig(['--in-memory'], {}).dataDir, null);
  });

  it('--bind "" means all interfaces', () => {
    assert.equal(parseConfig(['--bind', ''], {}).bind, '');
  });

  it('accept the range limits', () => {
    const config = parseConfig(['--port', '65535', '--frame-max', String(2 ** 31 - 1), '--channel-max', '1', '--heartbeat', '65535'], {});
    assert.equal(config.port, 65535);
    assert.equal(config.frameMax, 2147483647);
    assert.equal(config.channelMax, 1);
    assert.equal(config.heartbeat, 65535);
  });
});

describe('environment variables', () => {
  it('set every field they name', () => {
    const config = parseConfig([], {
      WARREN_PORT: '5680',
      WARREN_BIND: '::1',
      WARREN_DATA_DIR: 'state',
      WARREN_MANAGEMENT_PORT: '0',
      WARREN_LOG_LEVEL: 'silent',
      WARREN_HEARTBEAT: '30',
      WARREN_FRAME_MAX: '8192',
      WARREN_CHANNEL_MAX: '16',
      WARREN_HANDSHAKE_TIMEOUT: '500',
      WARREN_DEFAULT_USER: 'u',
      WARREN_DEFAULT_PASS: 'p',
    });
    assert.deepEqual(config, {
      ...cliDefaultConfig(),
      port: 5680,
      bind: '::1',
      dataDir: 'state',
      managementPort: 0,
      logLevel: 'silent',
      heartbeat: 30,
      frameMax: 8192,
      channelMax: 16,
      handshakeTimeoutMs: 500,
      defaultUser: 'u',
      defaultPass: 'p',
    });
  });

  it('WARREN_BIND="" means all interfaces', () => {
    assert.equal(parseConfig(['--bind', '127.0.0.1'], {}).bind, '127.0.0.1');
    assert.equal(parseConfig([], { WARREN_BIND: '' }).bind, '');
  });
});

describe('config file', () => {
  it('sets the fields it names, including file-only ones', () => {
    const path = configFile('full.json', {
      port: 6000,
      dataDir: null,
      logLevel: 'warn',
      defaultVhost: 'prod',
      loopbackUsers: ['guest', 'local'],
    });
    assert.deepEqual(parseConfig(['--config', path], {}), {
      ...cliDefaultConfig(),
      port: 6000,
      dataDir: null,
      logLevel: 'warn',
      defaultVhost: 'prod',
      loopbackUsers: ['guest', 'local'],
    });
  });

  it('is found through WARREN_CONFIG', () => {
    const path = configFile('env.json', { heartbeat: 5 });
    assert.equal(parseConfig([], { WARREN_CONFIG: path }).heartbeat, 5);
  });

  it('named by --config wins over WARREN_CONFIG', () => {
    const fromFlag = configFile('flag.json', { heartbeat: 1 });
    const fromEnv = configFile('other.json', { heartbeat: 2 });
    assert.equal(parseConfig(['--config', fromFlag], { WARREN_CONFIG: fromEnv }).heartbeat, 1);
  });

  it('rejects unknown keys', () => {
    const path = configFile('typo.json', { prot: 1 });
    rejects(['--config', path], {}, /^unknown key "prot" in config file .*typo\.json \(known keys: port, bind, /);
  });

  it('rejects values of the wrong type or out of range', () => {
    const path = configFile('bad-port.json', { port: '5672' });
    rejects(['--config', path], {}, `invalid value for "port" in config file ${path}: "5672" (expected an integer 0-65535)`);
    const big = configFile('big-frame.json', { frameMax: 100 });
    rejects(['--config', big], {}, `invalid value for "frameMax" in config file ${big}: 100 (expected an integer 4096-2147483647)`);
    const users = configFile('users.json', { loopbackUsers: 'guest' });
    rejects(['--config', users], {}, `invalid value for "loopbackUsers" in config file ${users}: "guest" (expected an array of user names)`);
  });

  it('must be readable JSON holding an object', () => {
    rejects(['--config', join(dir, 'missing.json')], {}, /^cannot read config file .*missing\.json \(from --config\): ENOENT/);
    rejects([], { WARREN_CONFIG: join(dir, 'missing.json') }, /^cannot read config file .*missing\.json \(from WARREN_CONFIG\): ENOENT/);
    rejects(['--config', configFile('broken.json', '{"port": ')], {}, /^config file .*broken\.json is not valid JSON: /);
    rejects(['--config', configFile('array.json', [1])], {}, /^config file .*array\.json must contain a JSON object$/);
    rejects([], { WARREN_CONFIG: '' }, 'invalid value for WARREN_CONFIG: "" (expected a file path)');
  });
});

describe('precedence', () => {
  it('is defaults < file < environment < flags', () => {
    const path = configFile('layers.json', { port: 1001, heartbeat: 11, channelMax: 111 });
    const env = { WARREN_CONFIG: path, WARREN_HEARTBEAT: '22', WARREN_CHANNEL_MAX: '222' };
    const config = parseConfig(['--channel-max', '333'], env);
    assert.equal(config.port, 1001, 'file over default');
    assert.equal(config.heartbeat, 22, 'environment over file');
    assert.equal(config.channelMax, 333, 'flag over environment');
    assert.equal(config.frameMax, defaultConfig().frameMax, 'default where nothing is set');
  });

  it('--in-memory wins over WARREN_DATA_DIR and the file', () => {
    const path = configFile('dir.json', { dataDir: '/from/file' });
    assert.equal(parseConfig(['--config', path, '--in-memory'], { WARREN_DATA_DIR: '/from/env' }).dataDir, null);
    assert.equal(parseConfig(['--config', path], { WARREN_DATA_DIR: '/from/env' }).dataDir, '/from/env');
  });
});

describe('validation', () => {
  const cases: [flag: string, env: string, value: string, expected: string][] = [
    ['--port', 'WARREN_PORT', 'abc', 'an integer 0-65535'],
    ['--port', 'WARREN_PORT', '65536', 'an integer 0-65535'],
    ['--port', 'WARREN_PORT', '-1', 'an integer 0-65535'],
    ['--port', 'WARREN_PORT', '1.5', 'an integer 0-65535'],
    ['--port', 'WARREN_PORT', '0x10', 'an integer 0-65535'],
    ['--port', 'WARREN_PORT', '', 'an integer 0-65535'],
    ['--management-port', 'WARREN_MANAGEMENT_PORT', '70000', 'an integer 0-65535'],
    ['--frame-max', 'WARREN_FRAME_MAX', '4095', 'an integer 4096-2147483647'],
    ['--frame-max', 'WARREN_FRAME_MAX', '2147483648', 'an integer 4096-2147483647'],
    ['--channel-max', 'WARREN_CHANNEL_MAX', '0', 'an integer 1-65535'],
    ['--channel-max', 'WARREN_CHANNEL_MAX', '65536', 'an integer 1-65535'],
    ['--heartbeat', 'WARREN_HEARTBEAT', '65536', 'an integer 0-65535'],
    ['--heartbeat', 'WARREN_HEARTBEAT', 'often', 'an integer 0-65535'],
    ['--handshake-timeout', 'WARREN_HANDSHAKE_TIMEOUT', '0', 'an integer 1-2147483647'],
    ['--log-level', 'WARREN_LOG_LEVEL', 'verbose', 'one of fatal, error, warn, info, debug, trace, silent'],
    ['--default-user', 'WARREN_DEFAULT_USER', '', 'a non-empty string'],
    ['--default-pass', 'WARREN_DEFAULT_PASS', '', 'a non-empty string'],
    ['--data-dir', 'WARREN_DATA_DIR', '', 'a directory path; use --in-memory to keep state in memory'],
  ];
  for (const [flag, env, value, expected] of cases) {
    it(`rejects ${flag} ${JSON.stringify(value)}, naming the flag and the value`, () => {
      rejects([flag, value], {}, `invalid value for ${flag}: ${JSON.stringify(value)} (expected ${expected})`);
    });
    it(`rejects ${env}=${JSON.stringify(value)}, naming the variable and the value`, () => {
      rejects([], { [env]: value }, `invalid value for ${env}: ${JSON.stringify(value)} (expected ${expected})`);
    });
  }

  it('matches the documented example message', () => {
    rejects(['--port', 'abc'], {}, 'invalid value for --port: "abc" (expected an integer 0-65535)');
  });

  it('a bad environment variable is an error even when a flag overrides it', () => {
    // Environment is read before flags; a typo in the environment should not lie dormant.
    rejects(['--port', '1'], { WARREN_PORT: 'x' }, 'invalid value for WARREN_PORT: "x" (expected an integer 0-65535)');
  });
});

describe('command-line errors', () => {
  it('an unknown flag names the flag', () => {
    rejects(['--bogus'], {}, "unknown option '--bogus'");
  });

  it('a near-miss flag suggests the right one, on the same line', () => {
    rejects(['--prot', '1'], {}, "unknown option '--prot' (Did you mean --port?)");
  });

  it('a flag without its value is an error', () => {
    rejects(['--port'], {}, "option '--port <port>' argument missing");
  });

  it('positional arguments are an error', () => {
    rejects(['5672'], {}, /^too many arguments/);
  });

  it('--data-dir and --in-memory conflict', () => {
    rejects(['--data-dir', 'x', '--in-memory'], {}, /cannot be used with/);
  });
});

describe('help and version', () => {
  it('--help is reported back with the usage text, listing flags with their variables and defaults', () => {
    const parsed = parseCommandLine(['--help'], {});
    assert.equal(parsed.kind, 'help');
    assert.ok(parsed.kind === 'help');
    assert.match(parsed.text, /^Usage: warren/);
    for (const flag of ['--port', '--bind', '--data-dir', '--management-port', '--log-level', '--config', '--heartbeat',
      '--frame-max', '--channel-max', '--handshake-timeout', '--default-user', '--default-pass', '--in-memory']) {
      assert.ok(parsed.text.includes(flag), `help lists ${flag}`);
    }
    const flat = parsed.text.replace(/\s+/g, ' '); // help wraps at 80 columns
    assert.match(flat, /WARREN_PORT, default: 5672\)/);
    assert.match(flat, /WARREN_CONFIG/);
    assert.ok(parsed.text.split('\n').every((line) => line.length <= 80), 'help fits 80 columns');
  });

  it('-h is help too, and parseConfig throws UsageRequested for it', () => {
    assert.equal(parseCommandLine(['-h'], {}).kind, 'help');
    assert.throws(() => parseConfig(['--help'], {}), (err: unknown) => err instanceof UsageRequested && err.kind === 'help');
  });

  it('--version is reported back with the version', () => {
    const parsed = parseCommandLine(['--version'], {}, '1.2.3');
    assert.deepEqual(parsed, { kind: 'version', text: '1.2.3\n' });
  });

  it('parsing prints nothing itself; the caller decides', () => {
    const writes: string[] = [];
    const out = process.stdout.write;
    const err = process.stderr.write;
    process.stdout.write = ((chunk: string) => writes.push(chunk) > 0) as typeof process.stdout.write;
    process.stderr.write = ((chunk: string) => writes.push(chunk) > 0) as typeof process.stderr.write;
    try {
      parseCommandLine(['--help'], {});
      parseCommandLine(['--version'], {});
      assert.throws(() => parseCommandLine(['--bogus'], {}), ConfigError);
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
    }
    assert.deepEqual(writes, []);
  });
});

describe('cluster settings', () => {
  it('parse etcd URLs, node name, link port and lease', () => {
    const c = parseConfig(['--cluster-etcd', 'http://127.0.0.1:2379, http://127.0.0.1:2380', '--node-name', 'n1', '--cluster-port', '25673', '--cluster-lease', '5'], {});
    assert.deepEqual(c.clusterEtcd, ['http://127.0.0.1:2379', 'http://127.0.0.1:2380']);
    assert.equal(c.nodeName, 'n1');
    assert.equal(c.clusterPort, 25673);
    assert.equal(c.clusterLeaseSeconds, 5);
  });

  it('give each clustered node its own default data dir, but keep an explicit one', () => {
    assert.equal(parseConfig(['--cluster-etcd', 'http://e:2379', '--node-name', 'n2'], {}).dataDir, join('data', 'n2'));
    assert.equal(parseConfig(['--cluster-etcd', 'http://e:2379', '--node-name', 'n2', '--data-dir', '/tmp/x'], {}).dataDir, '/tmp/x');
    assert.equal(parseConfig([], {}).dataDir, './data');
  });

  it('refuse a lease below two seconds', () => {
    assert.throws(() => parseConfig(['--cluster-lease', '1'], {}), /--cluster-lease/);
  });
});
