// Small helpers the http and resp sections share: median, range and ratio of rounds.

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

/** row[key] ÷ base[key] as "0.00×", or "–" when there is no base or it measured nothing. */
export const ratio = (row, base, key) =>
  base !== undefined && base[key] > 0 && row[key] > 0
    ? `${(row[key] / base[key]).toFixed(2)}×`
    : '–';

export const fmt = (n) =>
  n >= 1e6
    ? `${(n / 1e6).toFixed(2)} M`
    : n >= 1e3
      ? `${(n / 1e3).toFixed(1)} k`
      : `${Math.round(n)}`;
