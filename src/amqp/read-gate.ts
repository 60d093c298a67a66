import type { Socket } from 'node:net';

/** Why a connection's socket is not being read; it is read again when no reason is left. */
export const enum ReadPause {
  /** A resource alarm blocks this publishing connection (connection.blocked). */
  Alarm = 1,
  /** Internal flow control: a queue it feeds is backlogged. */
  Flow = 2,
  /** Fairness: it read its share this turn. */
  Yield = 4,
}

/**
 * The one place that pauses and resumes a connection's socket. Several independent reasons
 * (alarms, flow control, fairness, channels holding frames during a cluster round trip) each
 * set or clear their own bit, so clearing one never resumes reading another still wants paused.
 */
export class ReadGate {
  private reasons = 0;
  /** Channels holding too many frames while waiting on another node. */
  private holding = 0;

  constructor(private readonly socket: Socket) {}

  has(reason: ReadPause): boolean {
    return (this.reasons & reason) !== 0;
  }

  pause(reason: ReadPause): void {
    this.reasons |= reason;
    this.socket.pause();
  }

  resume(reason: ReadPause): void {
    this.reasons &= ~reason;
    this.resumeIfClear();
  }

  hold(on: boolean): void {
    this.holding += on ? 1 : -1;
    if (on) this.socket.pause();
    else this.resumeIfClear();
  }

  private resumeIfClear(): void {
    if (this.reasons === 0 && this.holding === 0 && !this.socket.destroyed) this.socket.resume();
  }
}
