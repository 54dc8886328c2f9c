// Small helpers the bench sections share: interleaved rounds, median, range and ratio of rounds.

/** Median of the samples (mean of the middle two for an even count); 0 for none. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** `{ <key>_min, <key>_max }` of the samples (0 for none). */
export const spreadOf = (key, xs) => ({
  [`${key}_min`]: xs.length ? Math.min(...xs) : 0,
  [`${key}_max`]: xs.length ? Math.max(...xs) : 0,
});

/**
 * Measures every contestant `rounds` times, interleaved: each round measures each contestant once,
 * starting one further along the list every round. This machine's speed moves from one minute to
 * the next (two full runs hours apart, with only a small change between them, differed by ±0.2
 * in their ratios when each contestant's rounds ran back to back), so interleaving lets that
 * drift reach every contestant alike, and the figures of one round can be compared with one
 * another ({@link ratioOf}).
 * `measure(contestant, round)` may throw: that round's sample is `{ failed: message }`.
 * @returns {Promise<unknown[][]>} per contestant (in the given order), its samples by round
 */
export async function interleaved(contestants, rounds, measure) {
  const samples = contestants.map(() => []);
  for (let round = 0; round < rounds; round += 1) {
    for (let k = 0; k < contestants.length; k += 1) {
      const i = (k + round) % contestants.length;
      try {
        samples[i][round] = await measure(contestants[i], round);
      } catch (err) {
        samples[i][round] = { failed: String(err?.message ?? err) };
      }
    }
  }
  return samples;
}

/**
 * The rounds both `a` and `b` measured, as `[a[r], b[r]]`: both numbers, and `b[r]` above 0 (a
 * failed round is a hole, null or a `{ failed }` sample).
 */
function roundPairs(a, b) {
  const pairs = [];
  for (let r = 0; r < Math.min(a.length, b.length); r += 1)
    if (typeof a[r] === 'number' && typeof b[r] === 'number' && b[r] > 0) pairs.push([a[r], b[r]]);
  return pairs;
}

/**
 * row[key] ÷ base[key]: when both rows carry their figures by round (`by_round[key]`, a hole or
 * undefined where a round failed), the median of each round's own ratio over the rounds both
 * measured; else the ratio of the medians. NaN when there is no base or either measured nothing.
 */
export function ratioOf(row, base, key) {
  if (base === undefined) return NaN;
  const mine = row.by_round?.[key];
  const theirs = base.by_round?.[key];
  if (mine !== undefined && theirs !== undefined) {
    const paired = roundPairs(mine, theirs)
      .filter(([x]) => x > 0)
      .map(([x, y]) => x / y);
    return paired.length === 0 ? NaN : median(paired);
  }
  return base[key] > 0 && row[key] > 0 ? row[key] / base[key] : NaN;
}

/** {@link ratioOf} as "0.00×", or "–" when it is not a number. */
export const ratio = (row, base, key) => {
  const x = ratioOf(row, base, key);
  return Number.isFinite(x) ? `${x.toFixed(2)}×` : '–';
};

export const fmt = (n) =>
  n >= 1e6
    ? `${(n / 1e6).toFixed(2)} M`
    : n >= 1e3
      ? `${(n / 1e3).toFixed(1)} k`
      : `${Math.round(n)}`;

/**
 * What `with` costs against `without`, in percent of `without`, from rounds measured in pairs
 * (index i of both arrays is one round; a round either failed, not a number, is left out): the
 * median of each round's own overhead, and its range; NaN throughout when no round measured both.
 * Pairing keeps the machine's drift between rounds out of the figure.
 */
export function pairedOverhead(withIt, without) {
  const perRound = roundPairs(withIt, without).map(([x, base]) => ((base - x) / base) * 100);
  // No round measured both: no figure (NaN), which the report shows as not run, never as 0 %.
  if (perRound.length === 0)
    return { overhead_pct: NaN, overhead_min: NaN, overhead_max: NaN, per_round_pct: [] };
  return {
    overhead_pct: median(perRound),
    ...spreadOf('overhead', perRound),
    per_round_pct: perRound,
  };
}
