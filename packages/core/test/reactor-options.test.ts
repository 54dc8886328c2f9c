// The reactor options' one validator and the backend tuning variables: every bad value is a
// ConfigError naming the field, the value and the allowed range (issue 18, defect 5).
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  REACTOR_OPTION_LIMITS,
  createReactor,
  resolveReactorOptions,
  resolveTuning,
} from '../src/index.js';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('reactor options', () => {
  it('fills in the defaults', () => {
    expect(resolveReactorOptions({})).toEqual({
      highWaterMark: 64 * 1024,
      allowHalfOpen: false,
      maxQueuedBytes: Infinity,
      queueLimitPolicy: 'destroy',
      readChunk: 64 * 1024,
      slabBytes: 1024 * 1024,
      closeTimeoutMs: 2000,
      readBuffers: 'owned',
    });
    // The slab is never smaller than one read.
    expect(resolveReactorOptions({ readChunk: 4 * 1024 * 1024 }).slabBytes).toBe(4 * 1024 * 1024);
  });

  it.each([
    ['readChunk', 512, 'an integer from 1024 to 16777216'],
    ['readChunk', 16 * 1024 * 1024 + 1, 'an integer from 1024 to 16777216'],
    ['readChunk', 2 ** 31, 'an integer from 1024 to 16777216'],
    ['slabBytes', 256 * 1024 * 1024 + 1, 'an integer from 65536 to 268435456'],
    ['slabBytes', 1024, 'an integer from 65536 to 268435456'],
    ['highWaterMark', 0, `an integer from 1 to ${Number.MAX_SAFE_INTEGER}`],
    ['closeTimeoutMs', -1, 'an integer from 0 to 2147483647'],
    ['closeTimeoutMs', 1.5, 'an integer from 0 to 2147483647'],
  ] as const)('rejects %s = %d naming the field, value and range', (field, value, allowed) => {
    const err = configError(() => resolveReactorOptions({ [field]: value }));
    expect(err).toMatchObject({ code: 'IOMUX_CONFIG_INVALID', field, value, allowed });
    expect(err.message).toBe(`invalid config: ${field} = ${value}; expected ${allowed}`);
  });

  it('takes a reactor-wide maxQueuedBytes and policy, and rejects bad ones by name', () => {
    expect(
      resolveReactorOptions({ maxQueuedBytes: 4096, queueLimitPolicy: 'refuse' }),
    ).toMatchObject({ maxQueuedBytes: 4096, queueLimitPolicy: 'refuse' });
    expect(configError(() => resolveReactorOptions({ maxQueuedBytes: 0 })).message).toBe(
      `invalid config: maxQueuedBytes = 0; expected an integer from 1 to ${Number.MAX_SAFE_INTEGER}`,
    );
    expect(
      configError(() => resolveReactorOptions({ queueLimitPolicy: 'drop' as 'refuse' })).message,
    ).toBe(`invalid config: queueLimitPolicy = "drop"; expected 'destroy' or 'refuse'`);
  });

  it('rejects a huge slab before any backend opens (no bad_alloc in the addon)', () => {
    const err = configError(() =>
      createReactor({ ioModel: 'auto' }, { env: {}, slabBytes: 2 ** 40 }),
    );
    expect(err.field).toBe('slabBytes');
    expect(REACTOR_OPTION_LIMITS.slabBytes.max).toBe(256 * 1024 * 1024);
  });
});

describe('backend tuning variables', () => {
  it('maps the variables to tuning keys', () => {
    expect(
      resolveTuning({
        IOMUX_IOURING_SINGLESHOT: '1',
        IOMUX_IOURING_SETUP: 'basic',
        IOMUX_IOURING_BUF_COUNT: '256',
        IOMUX_IOURING_SQ_ENTRIES: '8',
        IOMUX_BLOCKING_MAX_THREADS: '12',
        IOMUX_BLOCKING_STACK_KB: '',
      }),
    ).toEqual({
      iouringSingleshot: 1,
      iouringSetup: 2,
      iouringBufCount: 256,
      iouringSqEntries: 8,
      blockingMaxThreads: 12,
    });
    expect(resolveTuning({})).toEqual({});
  });

  it.each([
    ['IOMUX_IOURING_SINGLESHOT', 'yes', 'one of 0, 1'],
    ['IOMUX_IOURING_SETUP', 'fast', 'one of default, coop, basic, none, defer'],
    ['IOMUX_IOURING_BUF_SIZE', '512', 'an integer from 1024 to 1048576'],
    ['IOMUX_IOURING_BUF_COUNT', '100', 'a power of two from 64 to 32768'],
    ['IOMUX_IOURING_SQ_ENTRIES', '1', 'an integer from 2 to 32768'],
    ['IOMUX_IOURING_CQ_ENTRIES', '65537', 'an integer from 4 to 65536'],
    ['IOMUX_BLOCKING_MAX_THREADS', '0', 'an integer from 1 to 1048576'],
    ['IOMUX_BLOCKING_MAX_THREADS', '8x', 'an integer from 1 to 1048576'],
    ['IOMUX_BLOCKING_STACK_KB', '8', 'an integer from 16 to 1048576'],
  ])('rejects %s=%s naming the variable, value and range', (variable, value, allowed) => {
    const err = configError(() => resolveTuning({ [variable]: value }));
    expect(err).toMatchObject({ field: variable, value, allowed });
    expect(err.message).toBe(`invalid config: ${variable} = "${value}"; expected ${allowed}`);
  });

  it('a bad tuning variable stops createReactor with a ConfigError', () => {
    const err = configError(() =>
      createReactor({ ioModel: 'auto' }, { env: { IOMUX_BLOCKING_MAX_THREADS: '-3' } }),
    );
    expect(err.field).toBe('IOMUX_BLOCKING_MAX_THREADS');
  });
});
