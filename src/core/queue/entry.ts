import type { Message } from '../message';

export const enum EntryState {
  Ready = 0,
  Unacked = 1,
  /** Left the queue (acked, expired, dropped) while still referenced by the ring or the heap. */
  Gone = 2,
}

export interface QueueEntry {
  readonly msg: Message;
  /** Position in the queue's history; requeued messages go back in this order. */
  readonly seq: number;
  redelivered: boolean;
  state: EntryState;
  /** Absolute ms timestamp after which the message is dead; 0 = never. */
  expiresAt: number;
  /** Priority level inside a priority queue (0 in a plain queue). */
  level: number;
  /** Whether the expiry heap currently holds this entry. */
  inHeap: boolean;
}
