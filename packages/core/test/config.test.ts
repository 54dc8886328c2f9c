import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  createReactor,
  loadConfigFile,
  parseConfigDocument,
  resolveConfig,
} from '../src/index.js';

const noEnv = {};

describe('config', () => {
  it('fills in the spec defaults', () => {
    const config = resolveConfig({ ioModel: 'epoll' }, noEnv);
    expect(config).toMatchObject({
      ioModel: 'epoll',
      maxEvents: 1024,
      timeoutMs: 16,
      retry: { maxAttempts: 1, fallback: ['blocking_io'] },
    });
  });

  it('accepts the spec snake_case document as-is', () => {
    const config = resolveConfig(
      {
        io_model: 'io_uring',
        max_events: 64,
        timeout_ms: 0,
        retry_config: { max_attempts: 3, fallback: ['epoll', 'select', 'blocking_io'] },
      },
      noEnv,
    );
    expect(config).toMatchObject({
      ioModel: 'io_uring',
      maxEvents: 64,
      timeoutMs: 0,
      retry: { maxAttempts: 3, fallback: ['epoll', 'select', 'blocking_io'] },
    });
  });

  it('parses YAML and JSON documents and files', () => {
    const yaml =
      'io_model: select\nmax_events: 10000\ntimeout_ms: 1000\nretry_config:\n  max_attempts: 1\n  fallback: blocking_io\n';
    expect(parseConfigDocument(yaml, noEnv)).toMatchObject({
      ioModel: 'select',
      maxEvents: 10000,
      timeoutMs: 1000,
      retry: { fallback: ['blocking_io'] },
    });
    const dir = mkdtempSync(join(tmpdir(), 'iomux-config-'));
    const file = join(dir, 'iomux.json');
    writeFileSync(file, JSON.stringify({ io_model: 'auto', max_events: 512 }));
    expect(loadConfigFile(file, noEnv)).toMatchObject({ ioModel: 'auto', maxEvents: 512 });
  });

  it.each([
    [
      { ioModel: 'epol' },
      /ioModel = "epol"; expected one of 'epoll', 'io_uring', 'kqueue', 'iocp', 'select', 'auto'/,
    ],
    [{}, /ioModel = undefined; expected .*required/],
    [
      { io_model: 'epoll', max_events: 63 },
      /max_events = 63; expected an integer from 64 to 10000/,
    ],
    [
      { io_model: 'epoll', max_events: 10001 },
      /max_events = 10001; expected an integer from 64 to 10000/,
    ],
    [
      { ioModel: 'epoll', maxEvents: 100.5 },
      /maxEvents = 100.5; expected an integer from 64 to 10000/,
    ],
    [{ ioModel: 'epoll', maxEvents: '1024' }, /maxEvents = "1024"; expected an integer/],
    [{ io_model: 'epoll', timeout_ms: -1 }, /timeout_ms = -1; expected an integer from 0 to 1000/],
    [
      { io_model: 'epoll', timeout_ms: 1001 },
      /timeout_ms = 1001; expected an integer from 0 to 1000/,
    ],
    [
      { io_model: 'epoll', retry_config: { max_attempts: 0 } },
      /retry_config.max_attempts = 0; expected an integer from 1 to 10/,
    ],
    [
      { io_model: 'epoll', retry_config: { fallback: 'blocking' } },
      /retry_config.fallback = "blocking"; expected one of .*'blocking_io'/,
    ],
    [
      { io_model: 'epoll', retry_config: { fallback: ['epoll', 'nope'] } },
      /retry_config.fallback\[1\] = "nope"/,
    ],
    [
      { io_model: 'epoll', retry_config: { fallback: [] } },
      /retry_config.fallback = \[\]; expected a backend name or a non-empty list/,
    ],
    [{ io_model: 'epoll', retry_config: 5 }, /retry_config = 5; expected an object/],
    [{ io_model: 'epoll', maxevents: 5 }, /maxevents = 5; expected no such field/],
    [
      { io_model: 'epoll', maxEvents: 128 },
      /expected either the spec's snake_case keys or camelCase keys, not both/,
    ],
    [null, /config = null; expected an object/],
  ])('rejects %j with a message naming field, value and range', (input, message) => {
    expect(() => resolveConfig(input, noEnv)).toThrow(message);
    try {
      resolveConfig(input, noEnv);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('IOMUX_CONFIG_INVALID');
    }
  });

  it('rejects invalid YAML with a config error', () => {
    expect(() => parseConfigDocument('io_model: [epoll', noEnv)).toThrow(
      /expected valid JSON or YAML/,
    );
  });

  it.each([
    [
      'io_model: epoll\nretry_config:\n  fallback: [!elect, blocking_io]\n',
      /Unresolved tag: !elect/,
    ],
    ['%FOO bar\n---\nio_model: epoll\n', /Unknown directive %FOO/],
  ])(
    'rejects a YAML warning (%j) with a config error, and prints nothing',
    async (text, message) => {
      const warnings: Error[] = [];
      const onWarning = (w: Error): void => {
        warnings.push(w);
      };
      process.on('warning', onWarning);
      try {
        expect(() => parseConfigDocument(text, noEnv)).toThrow(ConfigError);
        expect(() => parseConfigDocument(text, noEnv)).toThrow(message);
        await new Promise((resolve) => setImmediate(resolve)); // process warnings arrive on a later tick
      } finally {
        process.off('warning', onWarning);
      }
      expect(warnings).toEqual([]);
    },
  );

  it('lets IOMUX_BACKEND override io_model, but still validates the document', () => {
    expect(resolveConfig({ io_model: 'epoll' }, { IOMUX_BACKEND: 'select' })).toMatchObject({
      ioModel: 'select',
      overriddenBy: 'IOMUX_BACKEND',
    });
    expect(resolveConfig({}, { IOMUX_BACKEND: 'blocking_io' }).ioModel).toBe('blocking_io');
    expect(() => resolveConfig({ io_model: 'epoll' }, { IOMUX_BACKEND: 'poll' })).toThrow(
      /IOMUX_BACKEND = "poll"/,
    );
    expect(() => resolveConfig({ io_model: 'bad' }, { IOMUX_BACKEND: 'epoll' })).toThrow(
      /io_model = "bad"/,
    );
  });

  it('opens nothing when the config is invalid', () => {
    expect(() => createReactor({ ioModel: 'epoll', maxEvents: 1 })).toThrow(ConfigError);
  });
});
