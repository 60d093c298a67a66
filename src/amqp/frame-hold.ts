/** Bytes of frames a channel holds during a cluster round trip before the socket stops being read. */
const HOLD_LIMIT = 4 * 1024 * 1024;

/** Where held frames go back to once the round trip settles (the channel). */
export interface FrameSink {
  onFrame(type: number, buf: Buffer, start: number, end: number): void;
}

/**
 * A channel's frames that arrived while a cluster round trip (etcd or another node) was out.
 * They are copied, because the reader's chunk is reused once onFrame returns, and replayed in
 * order afterwards, so replies keep the order of the methods, as AMQP requires.
 */
export class FrameHold {
  private frames: Array<[number, Buffer]> | null = null;
  private bytes = 0;
  private paused = false;

  constructor(private readonly conn: { holdBackpressure(on: boolean): void }) {}

  get holding(): boolean {
    return this.frames !== null;
  }

  /** Later frames are held until release(); holding again while held changes nothing. */
  start(): void {
    this.frames ??= [];
  }

  add(type: number, buf: Buffer, start: number, end: number): void {
    this.frames!.push([type, Buffer.from(buf.subarray(start, end))]);
    this.bytes += end - start;
    // A client pipelining behind a slow round trip must not fill our memory.
    if (this.bytes > HOLD_LIMIT && !this.paused) {
      this.paused = true;
      this.conn.holdBackpressure(true);
    }
  }

  /**
   * Replays the held frames into `sink` in order. A replayed method may start a new hold: the
   * rest then waits again, still ahead of newer frames. Errors propagate to the caller.
   */
  release(sink: FrameSink): void {
    const frames = this.frames ?? [];
    this.frames = null;
    this.bytes = 0;
    if (this.paused) {
      this.paused = false;
      this.conn.holdBackpressure(false);
    }
    for (let i = 0; i < frames.length; i++) {
      if (this.frames !== null) {
        (this.frames as Array<[number, Buffer]>).push(...frames.slice(i));
        break;
      }
      const [type, frame] = frames[i]!;
      sink.onFrame(type, frame, 0, frame.length);
    }
  }
}
