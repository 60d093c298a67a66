// The warren-perf executable: an AMQP 0-9-1 load generator (see src/perf/). bin/warren-perf.js
// requires this module.

import { resolve } from 'node:path';
import { parseArgs, UsageError } from '../perf/options';
import { progressLine, summaryText } from '../perf/report';
import { PerfSetupError, runCleanup, runPerf } from '../perf/runner';

/** 0 ok; 1 errors during the run; 2 usage; 3 the watchdog had to step in. */
export const PerfExit = { OK: 0, ERRORS: 1, USAGE: 2, TIMED_OUT: 3 } as const;

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`warren-perf: ${err.message}\n(see warren-perf --help)\n`);
    return PerfExit.USAGE;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text);
    return PerfExit.OK;
  }
  const o = parsed.options;

  // Hard watchdog for the whole process: setup, run, stop and cleanup all have their own
  // bounds; this is the last resort if something still hangs.
  const hardLimitS = o.duration + o.grace + 2 * o.setupTimeout + 30;
  const hard = setTimeout(() => {
    process.stderr.write(`warren-perf: watchdog: still running ${hardLimitS.toFixed(0)} s after start, exiting\n`);
    process.exit(PerfExit.TIMED_OUT);
  }, hardLimitS * 1000);
  hard.unref();

  if (o.cleanupOnly) {
    try {
      const r = await runCleanup(o);
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return r.failed ? PerfExit.ERRORS : PerfExit.OK;
    } catch (err) {
      process.stderr.write(`warren-perf: cleanup failed: ${err instanceof Error ? err.message : String(err)}\n`);
      return PerfExit.ERRORS;
    }
  }

  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = (): void => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('warren-perf: stopping (again to exit at once)\n');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const progressOut = o.json ? process.stderr : process.stdout;
  try {
    const summary = await runPerf(o, {
      signal: abort.signal,
      warn: (line) => process.stderr.write(`${line}\n`),
      progress: o.quiet ? undefined : (s) => progressOut.write(`${progressLine(s, o.confirm > 0)}\n`),
    });
    process.stdout.write(o.json ? `${JSON.stringify(summary)}\n` : `${summaryText(summary)}\n`);
    if (summary.timed_out) return PerfExit.TIMED_OUT;
    return summary.errors > 0 ? PerfExit.ERRORS : PerfExit.OK;
  } catch (err) {
    if (err instanceof PerfSetupError) {
      process.stderr.write(`warren-perf: ${err.message}\n`);
      return PerfExit.ERRORS;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const entry = require.main;
if (entry === module || entry?.filename === resolve(__dirname, '..', '..', '..', 'bin', 'warren-perf.js')) {
  main(process.argv.slice(2)).then(
    (code) => {
      // stdout may be a pipe: let it drain before exiting.
      process.stdout.write('', () => process.exit(code));
    },
    (err: unknown) => {
      process.stderr.write(`warren-perf: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(PerfExit.ERRORS);
    },
  );
}
