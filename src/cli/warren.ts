// The warren executable: config from flags, environment and file; start the broker; stop it
// cleanly on SIGINT/SIGTERM. bin/warren.js and `npm start` both land here.
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { startBroker, type BrokerHandle } from '../broker';
import { ConfigError, parseCommandLine, type Config } from '../config';
import { createLogger, type Logger } from '../observability/logger';

/** Exit statuses: 2 for a usage error, as getopt-style tools do; 1 for a failure to run. */
export const ExitCode = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/**
 * Runs the server. argv holds the user's arguments only (process.argv.slice(2)). Resolves with
 * the exit status once the broker has stopped (after a signal) or failed to start; help,
 * version and config errors resolve at once without starting anything.
 */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let config: Config;
  try {
    const parsed = parseCommandLine(argv, env);
    if (parsed.kind !== 'run') {
      await print(process.stdout, parsed.text);
      return ExitCode.OK;
    }
    config = parsed.config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    await print(process.stderr, `warren: ${err.message}\n`);
    return ExitCode.USAGE;
  }

  const logger = createLogger(config.logLevel);
  let handle: BrokerHandle;
  try {
    handle = await startBroker(config);
  } catch (err) {
    await print(process.stderr, `warren: ${describeStartupError(err, config)}\n`);
    if ((config.logLevel === 'debug' || config.logLevel === 'trace') && err instanceof Error && err.stack) {
      await print(process.stderr, `${err.stack}\n`);
    }
    return ExitCode.FAILURE;
  }

  // Signal handlers first: whoever waits for the "listening" line may signal at once.
  const exit = waitForShutdown(handle, logger);
  logger.info(
    { host: handle.host, port: handle.port, dataDir: config.dataDir },
    `listening for AMQP on ${amqpAddress(handle.host, handle.port)}`,
  );
  return exit;
}

/**
 * The first SIGINT/SIGTERM closes the broker (clients get connection.close 320
 * CONNECTION_FORCED) and resolves 0; a second one exits at once, for a close that hangs.
 */
function waitForShutdown(handle: BrokerHandle, logger: Logger): Promise<number> {
  return new Promise((resolveExit) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without finishing the shutdown');
        process.exit(128 + (osConstants.signals[signal] ?? 0));
      }
      stopping = true;
      logger.info({ signal }, 'shutting down');
      handle.close().then(
        () => {
          logger.info('stopped');
          finish(ExitCode.OK);
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          finish(ExitCode.FAILURE);
        },
      );
    };
    const finish = (code: number): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolveExit(code);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** One line for the operator; the usual listen failures get a plain-words sentence. */
export function describeStartupError(err: unknown, config: Pick<Config, 'port' | 'bind'>): string {
  const sys = findSystemError(err);
  if (sys !== undefined) {
    const port = sys.port ?? config.port;
    const allInterfaces = config.bind === '' && (sys.address === undefined || sys.address === '::' || sys.address === '0.0.0.0');
    const where = allInterfaces ? 'all interfaces' : (sys.address ?? config.bind);
    switch (sys.code) {
      case 'EADDRINUSE':
        return `port ${port} on ${where} is already in use`;
      case 'EACCES':
        return `permission denied to listen on port ${port} on ${where}`;
      case 'EADDRNOTAVAIL':
        return `cannot listen on ${where}: the address is not available on this host`;
      default:
        break;
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return `cannot start: ${message.replace(/\s*\n\s*/g, ' ')}`;
}

interface ListenError {
  code: string;
  port?: number;
  address?: string;
}

/** The errno-style error from listen(), possibly wrapped by the broker as an Error's cause. */
function findSystemError(err: unknown): ListenError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const candidate = e as Error & Partial<ListenError>;
    if (typeof candidate.code === 'string') {
      return {
        code: candidate.code,
        port: typeof candidate.port === 'number' ? candidate.port : undefined,
        address: typeof candidate.address === 'string' ? candidate.address : undefined,
      };
    }
  }
  return undefined;
}

/** amqp://host:port without credentials, so the log never carries the default password. */
function amqpAddress(host: string, port: number): string {
  return `amqp://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function print(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((done) => {
    stream.write(text, () => done());
  });
}

// Run when this file is the entry point: `node dist/src/cli/warren.js` (npm start), or through
// bin/warren.js, which only requires this module.
const entry = require.main;
if (entry === module || entry?.filename === resolve(__dirname, '..', '..', '..', 'bin', 'warren.js')) {
  main(process.argv.slice(2), process.env).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`warren: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(ExitCode.FAILURE);
    },
  );
}
