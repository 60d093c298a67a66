/**
 * Topic patterns compiled into a word trie at bind time. Matching walks the routing key's
 * words once per distinct key; `*` is one child per node and `#` another, so a publish never
 * runs a regular expression or scans every binding.
 */
interface TrieNode<T> {
  words: Map<string, TrieNode<T>> | null;
  star: TrieNode<T> | null;
  hash: TrieNode<T> | null;
  /** Values whose pattern ends exactly at this node. */
  values: T[];
}

function node<T>(): TrieNode<T> {
  return { words: null, star: null, hash: null, values: [] };
}

export class TopicTrie<T> {
  private readonly root: TrieNode<T> = node();
  size = 0;

  add(pattern: string, value: T): void {
    let n = this.root;
    for (const word of words(pattern)) n = this.child(n, word);
    n.values.push(value);
    this.size++;
  }

  remove(pattern: string, value: T): boolean {
    const path: TrieNode<T>[] = [this.root];
    const ws = words(pattern);
    let n: TrieNode<T> | null = this.root;
    for (const word of ws) {
      n = word === '*' ? n.star : word === '#' ? n.hash : (n.words?.get(word) ?? null);
      if (n === null) return false;
      path.push(n);
    }
    const at = n.values.indexOf(value);
    if (at < 0) return false;
    n.values.splice(at, 1);
    this.size--;
    // Prune empty branches so a churn of bindings does not leave a growing trie.
    for (let i = ws.length; i > 0; i--) {
      const cur = path[i]!;
      if (cur.values.length !== 0 || cur.star || cur.hash || (cur.words && cur.words.size)) break;
      const parent = path[i - 1]!;
      const word = ws[i - 1]!;
      if (word === '*') parent.star = null;
      else if (word === '#') parent.hash = null;
      else parent.words!.delete(word);
    }
    return true;
  }

  /** Appends every value whose pattern matches; a value may appear more than once. */
  match(routingKey: string, out: T[]): void {
    this.walk(this.root, words(routingKey), 0, out);
  }

  private walk(n: TrieNode<T>, words: string[], i: number, out: T[]): void {
    if (n.hash !== null) {
      // '#' swallows zero or more words: try resuming after it at every position.
      for (let j = i; j <= words.length; j++) this.walk(n.hash, words, j, out);
    }
    if (i === words.length) {
      for (const v of n.values) out.push(v);
      return;
    }
    const word = words[i]!;
    const exact = n.words?.get(word);
    if (exact !== undefined) this.walk(exact, words, i + 1, out);
    if (n.star !== null) this.walk(n.star, words, i + 1, out);
  }

  private child(n: TrieNode<T>, word: string): TrieNode<T> {
    if (word === '*') return (n.star ??= node());
    if (word === '#') return (n.hash ??= node());
    n.words ??= new Map();
    let c = n.words.get(word);
    if (c === undefined) {
      c = node();
      n.words.set(word, c);
    }
    return c;
  }
}

/** RabbitMQ splits "" into no words at all, and "." into two empty words. */
function words(key: string): string[] {
  return key === '' ? [] : key.split('.');
}
