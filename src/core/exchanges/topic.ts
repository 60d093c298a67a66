import type { Message } from '../message';
import { Binding, Destination, Exchange } from './exchange';
import { TopicTrie } from './topic-trie';

/** Publishers reuse a small set of routing keys, so each key's result is cached until the bindings change. */
const CACHE_LIMIT = 4096;

export class TopicExchange extends Exchange {
  readonly type = 'topic';
  private readonly trie = new TopicTrie<Destination>();
  private readonly cache = new Map<string, Destination[]>();

  route(_msg: Message, routingKey: string, out: Destination[]): void {
    let hit = this.cache.get(routingKey);
    if (hit === undefined) {
      hit = [];
      this.trie.match(routingKey, hit);
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(routingKey, hit);
    }
    for (let i = 0; i < hit.length; i++) out.push(hit[i]!);
  }

  protected indexBinding(b: Binding): void {
    this.trie.add(b.routingKey, b.destination);
    this.cache.clear();
  }

  protected unindexBinding(b: Binding): void {
    this.trie.remove(b.routingKey, b.destination);
    this.cache.clear();
  }
}
