const PAGE_SIZE = 4096;
const FIELDS = 3; // offset, length, refs

class Page {
  readonly slots = new Uint32Array(PAGE_SIZE * FIELDS);
  live = 0;
}

/**
 * Where each live message's record is: id → (offset in its segment, record length, number of
 * queues still holding it). Ids are dense, so the index is pages of 4096 slots in typed arrays,
 * 12 bytes per message and no object per message; a page is freed when its last message dies.
 * Which segment holds an id follows from the segments' first ids (ids grow with the file).
 */
export class MessageIndex {
  private readonly pages = new Map<number, Page>();
  private lastNo = -1;
  private last: Page | undefined;
  /**
   * The page new ids land in. It is kept when it empties: a queue consumed as fast as it is
   * fed (auto-ack, or delayed messages as they are released) would otherwise free and
   * allocate a 48 KB page for nearly every message.
   */
  private newestNo = -1;
  /** Live messages. */
  count = 0;

  set(id: number, offset: number, length: number, refs: number): void {
    const no = Math.floor(id / PAGE_SIZE);
    let page = this.page(no);
    if (page === undefined) {
      page = new Page();
      if (no > this.newestNo) {
        const previous = this.pages.get(this.newestNo);
        if (previous !== undefined && previous.live === 0) this.pages.delete(this.newestNo);
        this.newestNo = no;
      }
      this.pages.set(no, page);
      this.lastNo = no;
      this.last = page;
    }
    const i = (id - no * PAGE_SIZE) * FIELDS;
    if (page.slots[i + 2] === 0) {
      page.live++;
      this.count++;
    }
    page.slots[i] = offset;
    page.slots[i + 1] = length;
    page.slots[i + 2] = refs;
  }

  /** Queues holding id; 0 when it is dead or unknown. */
  refs(id: number): number {
    const no = Math.floor(id / PAGE_SIZE);
    const page = this.page(no);
    return page === undefined ? 0 : page.slots[(id - no * PAGE_SIZE) * FIELDS + 2]!;
  }

  offset(id: number): number {
    const no = Math.floor(id / PAGE_SIZE);
    return this.page(no)?.slots[(id - no * PAGE_SIZE) * FIELDS] ?? 0;
  }

  length(id: number): number {
    const no = Math.floor(id / PAGE_SIZE);
    return this.page(no)?.slots[(id - no * PAGE_SIZE) * FIELDS + 1] ?? 0;
  }

  setOffset(id: number, offset: number): void {
    const no = Math.floor(id / PAGE_SIZE);
    const page = this.page(no);
    if (page !== undefined) page.slots[(id - no * PAGE_SIZE) * FIELDS] = offset;
  }

  /** Drops one queue's reference; true when it was the last (the message is now dead). */
  release(id: number): boolean {
    const no = Math.floor(id / PAGE_SIZE);
    const page = this.page(no);
    if (page === undefined) return false;
    const i = (id - no * PAGE_SIZE) * FIELDS + 2;
    const refs = page.slots[i]!;
    if (refs === 0) return false;
    page.slots[i] = refs - 1;
    if (refs !== 1) return false;
    this.count--;
    if (--page.live === 0 && no !== this.newestNo) {
      this.pages.delete(no);
      if (this.lastNo === no) {
        this.lastNo = -1;
        this.last = undefined;
      }
    }
    return true;
  }

  /** Bytes held by the pages (for memory accounting). */
  get byteSize(): number {
    return this.pages.size * PAGE_SIZE * FIELDS * 4;
  }

  private page(no: number): Page | undefined {
    if (no === this.lastNo) return this.last;
    const page = this.pages.get(no);
    if (page !== undefined) {
      this.lastNo = no;
      this.last = page;
    }
    return page;
  }
}
