// Fuzzing the configuration documents (fast-check, property-based; bounded by IOMUX_FUZZ_RUNS,
// default 2000 per property): whatever text or structure arrives, parseConfigDocument either
// returns a configuration inside the schema's ranges or throws a ConfigError naming the field;
// never another exception. Longer runs: IOMUX_FUZZ_RUNS=200000.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONFIG_LIMITS, IO_MODELS, parseConfigDocument } from '../../src/index.js';
import { ConfigError } from '../../src/errors.js';

const runs = Number(process.env.IOMUX_FUZZ_RUNS ?? 2000);

/** Parses `text`; true when the outcome is one the contract allows. */
function parsesOrRejects(text: string): boolean {
  try {
    const config = parseConfigDocument(text, {});
    const { maxEvents, timeoutMs } = config;
    return (
      (IO_MODELS as readonly string[]).includes(config.ioModel) &&
      Number.isInteger(maxEvents) &&
      maxEvents >= CONFIG_LIMITS.maxEvents.min &&
      maxEvents <= CONFIG_LIMITS.maxEvents.max &&
      Number.isInteger(timeoutMs) &&
      timeoutMs >= CONFIG_LIMITS.timeoutMs.min &&
      timeoutMs <= CONFIG_LIMITS.timeoutMs.max
    );
  } catch (err) {
    if (err instanceof ConfigError) return err.code === 'IOMUX_CONFIG_INVALID';
    throw err;
  }
}

const value = fc.oneof(
  fc.integer({ min: -20_000, max: 20_000 }),
  fc.double(),
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(...IO_MODELS, 'blocking_io', 'EPOLL', ''),
  fc.array(fc.constantFrom('epoll', 'select', 'blocking_io', 'io_uring', 'nope', 1)),
);
const document = fc.record(
  {
    io_model: value,
    max_events: value,
    timeout_ms: value,
    retry_config: fc.oneof(
      value,
      fc.record({ max_attempts: value, fallback: value }, { requiredKeys: [] }),
    ),
    extra: value,
  },
  { requiredKeys: [] },
);

describe('config documents under fuzzing', () => {
  it('arbitrary text: a valid config or a ConfigError', () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), parsesOrRejects), { numRuns: runs });
  });

  it('JSON documents with every field and wrong types: a valid config or a ConfigError', () => {
    fc.assert(
      fc.property(document, (doc) => parsesOrRejects(JSON.stringify(doc))),
      { numRuns: runs },
    );
  });

  it('YAML documents built from the same fields: a valid config or a ConfigError', () => {
    const yaml = (doc: Record<string, unknown>): string =>
      Object.entries(doc)
        .map(([k, v]) => `${k}: ${v === undefined ? 'null' : JSON.stringify(v)}`)
        .join('\n');
    fc.assert(
      fc.property(document, (doc) => parsesOrRejects(yaml(doc))),
      { numRuns: runs },
    );
  });

  it('mutated valid documents (bytes flipped, cut, repeated): a valid config or a ConfigError', () => {
    const valid =
      'io_model: epoll\nmax_events: 1024\ntimeout_ms: 16\nretry_config:\n  max_attempts: 2\n  fallback: [select, blocking_io]\n';
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length), fc.integer({ min: 0, max: 255 })), {
          maxLength: 8,
        }),
        fc.nat(valid.length),
        (flips, cut) => {
          const bytes = Buffer.from(valid.repeat(1 + (cut % 2)), 'latin1');
          for (const [at, byte] of flips) bytes[at % bytes.length] = byte;
          return parsesOrRejects(bytes.subarray(0, bytes.length - (cut % 7)).toString('latin1'));
        },
      ),
      { numRuns: runs },
    );
  });

  it('documents that are not mappings: a ConfigError', () => {
    for (const text of ['', '---', '[]', '42', '"epoll"', 'null', '~', '- io_model: epoll']) {
      expect(parsesOrRejects(text), text).toBe(true);
    }
  });
});
