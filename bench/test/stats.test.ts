import { describe, expect, it } from 'vitest';
import { interleaved, ratio, ratioOf } from '../stats.mjs';

describe('bench rounds: interleaved', () => {
  it('measures each contestant once per round, starting one further along each round', async () => {
    const order: string[] = [];
    const samples = await interleaved(['a', 'b', 'c'], 3, (name: string, round: number) => {
      order.push(`${name}${round}`);
      return Promise.resolve(`${name}:${round}`);
    });
    expect(order).toEqual(['a0', 'b0', 'c0', 'b1', 'c1', 'a1', 'c2', 'a2', 'b2']);
    expect(samples).toEqual([
      ['a:0', 'a:1', 'a:2'],
      ['b:0', 'b:1', 'b:2'],
      ['c:0', 'c:1', 'c:2'],
    ]);
  });

  it('keeps a failed round in its place, with the message, and goes on', async () => {
    const samples = await interleaved(['a', 'b'], 2, (name: string, round: number) =>
      name === 'b' && round === 0 ? Promise.reject(new Error('server died')) : Promise.resolve(1),
    );
    expect(samples).toEqual([
      [1, 1],
      [{ failed: 'server died' }, 1],
    ]);
  });
});

describe('bench rounds: ratioOf', () => {
  it('pairs the rounds when both rows have them, so drift between rounds cancels', () => {
    // The machine ran at half speed in round 1: every contestant's figure halved.
    const mine = { per_sec: 90, by_round: { per_sec: [90, 45, 90] } };
    const base = { per_sec: 100, by_round: { per_sec: [100, 50, 50] } };
    // Round 2 alone was slow for the base: the paired median is 0.9, not 90 / 50.
    expect(ratioOf(mine, base, 'per_sec')).toBeCloseTo(0.9, 6);
    expect(ratio(mine, base, 'per_sec')).toBe('0.90×');
  });

  it('leaves out the rounds either side lacks (failed: null, or a hole)', () => {
    const mine = { per_sec: 80, by_round: { per_sec: [80, null, 60] } };
    const base = { per_sec: 100, by_round: { per_sec: [100, 100] } };
    expect(ratioOf(mine, base, 'per_sec')).toBeCloseTo(0.8, 6);
  });

  it('falls back to the ratio of the medians without figures by round', () => {
    expect(ratioOf({ per_sec: 50 }, { per_sec: 100 }, 'per_sec')).toBe(0.5);
    expect(ratioOf({ per_sec: 50 }, undefined, 'per_sec')).toBeNaN();
    expect(ratioOf({ per_sec: 0 }, { per_sec: 100 }, 'per_sec')).toBeNaN();
    expect(ratio({ per_sec: 50 }, { per_sec: 0 }, 'per_sec')).toBe('–');
  });
});
