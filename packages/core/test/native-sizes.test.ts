// The addon's own bounds on NativeBackend sizes, below the TypeScript validation: a size that would
// make the constructor allocate without limit (std::bad_alloc aborted the process) or overflow the
// int32 fields of event records is a RangeError naming the option, its value and the range, and
// nothing is allocated.
import { describe, expect, it } from 'vitest';
import { getBackendModule } from '../src/backend-api.js';
import { backendTitle, backends } from './helpers.js';

const MiB = 1024 * 1024;
const valid = { maxEvents: 64, readChunk: 64 * 1024, slabBytes: MiB };

/** onEvents for a handle that is closed before it could poll. */
function ignoreEvents(): void {
  // never called
}

describe.each(backends)('NativeBackend size bounds: $name', (backend) => {
  const run = backend.available ? it : it.skip;

  function construct(options: Record<string, unknown>): () => void {
    const { NativeBackend } = getBackendModule(backend.name).addon();
    return () => {
      const handle = new NativeBackend(options as never, ignoreEvents);
      handle.close();
    };
  }

  run(`accepts the largest sizes: ${backendTitle(backend)}`, () => {
    expect(construct({ ...valid, readChunk: 16 * MiB, slabBytes: 16 * MiB })).not.toThrow();
  });

  run(`rejects readChunk past 16 MiB and slabBytes past 256 MiB: ${backendTitle(backend)}`, () => {
    expect(construct({ ...valid, readChunk: 16 * MiB + 1, slabBytes: 32 * MiB })).toThrow(
      new RangeError('NativeBackend: readChunk must be an integer in 1024..16777216, got 16777217'),
    );
    expect(construct({ ...valid, slabBytes: 2 ** 40 })).toThrow(
      new RangeError(
        'NativeBackend: slabBytes must be an integer in 65536..268435456, got 1099511627776',
      ),
    );
    // Past 2^31: would overflow the int32 offsets of event records.
    expect(construct({ ...valid, readChunk: 2 ** 31, slabBytes: 2 ** 32 })).toThrow(
      /readChunk must be an integer in 1024\.\.16777216, got 2147483648/,
    );
  });

  run(`rejects fractions, NaN and non-numbers: ${backendTitle(backend)}`, () => {
    expect(construct({ ...valid, readChunk: 2048.5 })).toThrow(RangeError);
    expect(construct({ ...valid, slabBytes: Number.NaN })).toThrow(/slabBytes/);
    expect(construct({ ...valid, maxEvents: '64' })).toThrow(/maxEvents .*got a non-number/);
    expect(construct({ ...valid, maxEvents: 0 })).toThrow(/maxEvents must be an integer in 1\.\./);
  });
});
