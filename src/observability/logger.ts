// Structured JSON logs on stdout. Other modules import Logger from here, not from pino, so the
// library stays a detail of this file. Connection context is a child logger:
//   logger.child({ conn: '127.0.0.1:5555 -> 127.0.0.1:5672' })
import pino from 'pino';
import type { LogLevel } from '../config';

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** Where lines go; stdout when absent. Tests pass a stream to read the lines back. */
  destination?: pino.DestinationStream;
  /** Fields added to every line (default: pid). */
  base?: Record<string, unknown>;
}

export function createLogger(level: LogLevel, opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: opts.base ?? { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // "level":"info" rather than pino's numeric 30: easier to grep and to read in a terminal.
    formatters: { level: (label) => ({ level: label }) },
  };
  // pino's default stdout destination flushes itself on process exit.
  return opts.destination !== undefined ? pino(options, opts.destination) : pino(options);
}
