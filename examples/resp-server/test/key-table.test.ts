// The byte-keyed table of the key space against a Map: random operation sequences over a small key
// alphabet (so probe runs collide, wrap around the table and get shifted back by deletions), keys
// looked up both as strings and as bytes, and the move to a Map when a probe run is too long.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyTable } from '../key-table.mjs';
import { Store } from '../store.mjs';

const runs = Number(process.env.IOMUX_FUZZ_RUNS ?? 1000);

type Op = ['set', string, number] | ['delete', string] | ['get', string];
const key = fc.stringMatching(/^[ab\xff]{0,4}$/);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.tuple(fc.constant('set' as const), key, fc.nat(1000)),
  fc.tuple(fc.constant('delete' as const), key),
  fc.tuple(fc.constant('get' as const), key),
);

/** The key's latin1 bytes inside a larger Buffer, as a request holds them. */
function inPlace(k: string): [Buffer, number, number] {
  const buf = Buffer.from(`**${k}**`, 'latin1');
  return [buf, 2, 2 + k.length];
}

function check(table: KeyTable<number>, model: Map<string, number>): void {
  expect(table.size).toBe(model.size);
  expect(new Map(table.entries())).toEqual(model);
  for (const [k, v] of model) {
    expect(table.get(k)).toBe(v);
    expect(table.getBytes(...inPlace(k))).toBe(v);
  }
}

describe('KeyTable', () => {
  it.each([
    ['open addressing', {}],
    ['moved to a Map by a short probe limit', { maxProbe: 1 }],
  ])('answers as a Map does over random operations (%s)', (_, options) => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), fc.integer(), (ops, seed) => {
        const table = new KeyTable<number>({ ...options, seed });
        const model = new Map<string, number>();
        for (const [kind, k, v] of ops) {
          if (kind === 'set') {
            table.set(k, v);
            model.set(k, v);
          } else if (kind === 'delete') {
            expect(table.delete(k)).toBe(model.delete(k));
          } else {
            expect(table.getBytes(...inPlace(k))).toBe(model.get(k));
            expect(table.has(k)).toBe(model.has(k));
          }
        }
        check(table, model);
      }),
      { numRuns: runs },
    );
  });

  it('grows past its first capacity and keeps every key through deletions', () => {
    const table = new KeyTable<number>();
    const model = new Map<string, number>();
    for (let i = 0; i < 5000; i += 1) {
      table.set(`key:${i}`, i);
      model.set(`key:${i}`, i);
    }
    for (let i = 0; i < 5000; i += 3) {
      expect(table.delete(`key:${i}`)).toBe(true);
      model.delete(`key:${i}`);
    }
    expect(table.delete('key:0')).toBe(false);
    check(table, model);
    expect(table.map).toBeUndefined(); // ordinary keys never made a long probe run
  });

  it('moves to a Map, for good, when one probe run is too long', () => {
    const table = new KeyTable<number>({ maxProbe: 0, seed: 1 });
    for (let i = 0; i < 64; i += 1) table.set(`k${i}`, i);
    expect(table.map).toBeInstanceOf(Map);
    table.clear(); // a flush starts a table again
    expect(table.map).toBeUndefined();
    expect(table.size).toBe(0);
  });
});

describe('Store by bytes', () => {
  it('finds, overwrites and expires keys given as bytes in place, like the string calls', () => {
    const store = new Store();
    const now = 1_000_000;
    store.setBytes(...inPlace('k\xff'), Buffer.from('one'), 0);
    const entry = store.lookup('k\xff', now);
    expect(entry?.value.toString()).toBe('one');
    store.setBytes(...inPlace('k\xff'), Buffer.from('two'), now + 100);
    expect(store.lookup('k\xff', now)).toBe(entry); // overwritten in place
    expect(store.lookupBytes(...inPlace('k\xff'), now)?.value.toString()).toBe('two');
    expect(store.volatile).toBe(1);
    expect(store.lookupBytes(...inPlace('k\xff'), now + 100)).toBeUndefined(); // lazily expired
    expect(store.size).toBe(0);
    expect(store.volatile).toBe(0);
    expect(store.expiredKeys).toBe(1);
  });
});
