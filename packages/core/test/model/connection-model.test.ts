// Model-based test (fast-check): random operation sequences (model.ts) on every backend.
// IOMUX_MODEL_RUNS (default 12) and IOMUX_MODEL_SEED replay or lengthen a run; a failure prints
// fast-check's seed and the shrunk sequence, which then joins regressions.test.ts.
import fc from 'fast-check';
import { describe, it, type TestContext } from 'vitest';
import { backends, backendTitle } from '../helpers.js';
import { MAX_OPS, op, runSequence } from './model.js';

const runs = Number(process.env.IOMUX_MODEL_RUNS ?? 12);
const seed =
  process.env.IOMUX_MODEL_SEED === undefined ? undefined : Number(process.env.IOMUX_MODEL_SEED);

describe.each(backends)('connection model: $name', (backend) => {
  it(`random operation sequences match the model: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip(`${backend.name} unavailable: ${backend.cause}`);
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 1, maxLength: MAX_OPS }),
        fc.integer({ min: 1, max: 1 << 20 }),
        (ops, s) => runSequence(backend.name, ops, s),
      ),
      {
        numRuns: runs,
        // Shrinking replays sequences; bounded so a failure is reported within the test's time.
        interruptAfterTimeLimit: 150_000,
        markInterruptAsFailure: true,
        endOnFailure: process.env.IOMUX_MODEL_NO_SHRINK === '1',
        ...(seed === undefined ? {} : { seed }),
      },
    );
  }, 240_000);
});
