import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TopicTrie } from '../../src/core/exchanges/topic-trie';

/** A slow reference matcher straight from the AMQP topic rules, for comparison only. */
function referenceMatch(pattern: string, key: string): boolean {
  const p = pattern === '' ? [] : pattern.split('.');
  const k = key === '' ? [] : key.split('.');
  const go = (i: number, j: number): boolean => {
    if (i === p.length) return j === k.length;
    if (p[i] === '#') {
      for (let jj = j; jj <= k.length; jj++) if (go(i + 1, jj)) return true;
      return false;
    }
    if (j === k.length) return false;
    return (p[i] === '*' || p[i] === k[j]) && go(i + 1, j + 1);
  };
  return go(0, 0);
}

function matches(patterns: string[], key: string): string[] {
  const trie = new TopicTrie<string>();
  for (const p of patterns) trie.add(p, p);
  const out: string[] = [];
  trie.match(key, out);
  return [...new Set(out)].sort();
}

describe('topic trie', () => {
  it('matches *, # (zero or more words) and empty words as RabbitMQ does', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a.b.c', 'a.b.c', true],
      ['a.*.c', 'a.b.c', true],
      ['a.*.c', 'a.c', false],
      ['a.#', 'a', true],
      ['a.#', 'a.b.c', true],
      ['#.a', 'a', true],
      ['#', '', true],
      ['*', '', false],
      ['*', 'a', true],
      ['*.*', '.', true],
      ['a.#.b', 'a.b', true],
      ['a.#.b', 'a.x.y.b', true],
      ['', '', true],
      ['', 'a', false],
      ['a#', 'a#', true],
      ['a#', 'ab', false],
    ];
    for (const [pattern, key, expected] of cases) {
      assert.equal(matches([pattern], key).length === 1, expected, `${pattern} vs ${key}`);
    }
  });

  it('agrees with a reference matcher on random patterns and keys', () => {
    const word = fc.constantFrom('a', 'b', 'c', '');
    const patternWord = fc.constantFrom('a', 'b', '*', '#', '');
    const join = (ws: string[]): string => ws.join('.');
    fc.assert(
      fc.property(fc.array(fc.array(patternWord, { maxLength: 5 }).map(join), { minLength: 1, maxLength: 6 }), fc.array(word, { maxLength: 6 }).map(join), (patterns, key) => {
        const expected = [...new Set(patterns.filter((p) => referenceMatch(p, key)))].sort();
        assert.deepEqual(matches(patterns, key), expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('forgets removed patterns and prunes them', () => {
    const trie = new TopicTrie<string>();
    trie.add('a.*', 'x');
    trie.add('a.#', 'y');
    assert.equal(trie.remove('a.*', 'x'), true);
    assert.equal(trie.remove('a.*', 'x'), false);
    const out: string[] = [];
    trie.match('a.b', out);
    assert.deepEqual(out, ['y']);
    assert.equal(trie.size, 1);
  });
});
