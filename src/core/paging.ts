import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Message } from './message';
import { SegmentStore } from '../store/segment-store';

const KEY = 'transient';

/**
 * Pages transient messages of long queues to disk under memory pressure (RabbitMQ pages at
 * half the memory watermark), instead of letting them fill RAM until publishers are blocked.
 * The paging files are scratch space: wiped when first used, never recovered.
 */
export class TransientPager {
  private store: SegmentStore | null = null;

  constructor(
    private readonly dir: string,
    /** True while memory use is past the paging threshold. */
    private readonly pressure: () => boolean,
  ) {}

  static forDataDir(dataDir: string | null, pressure: () => boolean): TransientPager {
    return new TransientPager(dataDir === null ? join(tmpdir(), `warren-paging-${process.pid}`) : join(dataDir, 'paging'), pressure);
  }

  get active(): boolean {
    return this.pressure();
  }

  /** Writes the message's bytes out and drops them from memory. */
  page(msg: Message): void {
    if (this.store === null) {
      rmSync(this.dir, { recursive: true, force: true });
      this.store = SegmentStore.open({ dir: this.dir, segmentSize: 16 * 1024 * 1024 });
    }
    const id = this.store.publish({ exchange: msg.exchange, routingKey: msg.routingKey, properties: msg.rawProperties, body: msg.body }, [KEY]);
    msg.pageOutTo(this.store, id);
  }

  /** The last queue holding the message let it go. */
  release(msg: Message): void {
    this.store?.ack(KEY, msg.pageId);
  }

  async close(): Promise<void> {
    const store = this.store;
    this.store = null;
    if (store === null) return;
    await store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
