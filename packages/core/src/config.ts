import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { ConfigError } from './errors.js';

/** Kernel I/O mechanisms a reactor can be configured with. `auto` picks the best available. */
export const IO_MODELS = ['epoll', 'io_uring', 'kqueue', 'iocp', 'select', 'auto'] as const;
/** Every backend iomux knows, including `blocking_io`, which serves as the last fallback. */
export const BACKEND_NAMES = [
  'epoll',
  'io_uring',
  'kqueue',
  'iocp',
  'select',
  'blocking_io',
] as const;

/** A configurable I/O model (spec field `io_model`). */
export type IoModel = (typeof IO_MODELS)[number];
/** A concrete backend name. */
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Retry and fallback policy (spec field `retry_config`). */
export interface RetryConfig {
  /** Attempts at creating the configured backend before falling back. Integer 1..10, default 1. */
  maxAttempts?: number;
  /** Backend (or ordered chain of backends) to use when the configured one fails. Default `blocking_io`. */
  fallback?: BackendName | readonly BackendName[];
}

/**
 * Reactor configuration in camelCase. A document in the spec's snake_case (`io_model`,
 * `max_events`, `timeout_ms`, `retry_config: { max_attempts, fallback }`) is accepted as well.
 */
export interface ReactorConfig {
  /** Kernel mechanism: `epoll`, `io_uring`, `kqueue`, `iocp`, `select` or `auto`. Required. */
  ioModel: IoModel;
  /** Events drained per poll. Integer 64..10000, default 1024. */
  maxEvents?: number;
  /** Poll timeout and tick period in ms. Integer 0..1000, default 16 (≈ 60 Hz). */
  timeoutMs?: number;
  /** What happens when the backend cannot be created. */
  retry?: RetryConfig;
}

/** The spec's snake_case spelling of {@link ReactorConfig}, as found in JSON or YAML documents. */
export interface SnakeCaseConfig {
  /** See {@link ReactorConfig.ioModel}. */
  io_model: IoModel;
  /** See {@link ReactorConfig.maxEvents}. */
  max_events?: number;
  /** See {@link ReactorConfig.timeoutMs}. */
  timeout_ms?: number;
  /** See {@link ReactorConfig.retry}. */
  retry_config?: SnakeCaseRetryConfig;
}

/** The spec's snake_case spelling of {@link RetryConfig}. */
export interface SnakeCaseRetryConfig {
  /** See {@link RetryConfig.maxAttempts}. */
  max_attempts?: number;
  /** See {@link RetryConfig.fallback}. */
  fallback?: BackendName | readonly BackendName[];
}

/** A validated configuration with every default filled in. */
export interface ResolvedConfig {
  /** The I/O model in use; `blocking_io` only when forced through `IOMUX_BACKEND`. */
  readonly ioModel: IoModel | 'blocking_io';
  /** Events drained per poll. */
  readonly maxEvents: number;
  /** Poll timeout and tick period in ms. */
  readonly timeoutMs: number;
  /** Retry policy with the fallback always as a list. */
  readonly retry: ResolvedRetryConfig;
  /** Set when `IOMUX_BACKEND` replaced the configured `io_model`. */
  readonly overriddenBy?: 'IOMUX_BACKEND';
}

/** {@link RetryConfig} with defaults filled in. */
export interface ResolvedRetryConfig {
  /** Attempts at the configured backend. */
  readonly maxAttempts: number;
  /** Fallback chain, in order. */
  readonly fallback: readonly BackendName[];
}

/** Defaults of every optional field. */
export const CONFIG_DEFAULTS: Omit<ResolvedConfig, 'ioModel' | 'overriddenBy'> = {
  maxEvents: 1024,
  timeoutMs: 16,
  retry: { maxAttempts: 1, fallback: ['blocking_io'] },
};

/** An inclusive integer range. */
export interface IntegerRange {
  /** Smallest allowed value. */
  readonly min: number;
  /** Largest allowed value. */
  readonly max: number;
}

/** Allowed ranges, used both for validation and in the messages. */
export const CONFIG_LIMITS: {
  /** Range of `max_events`. */
  readonly maxEvents: IntegerRange;
  /** Range of `timeout_ms`. */
  readonly timeoutMs: IntegerRange;
  /** Range of `retry_config.max_attempts`. */
  readonly maxAttempts: IntegerRange;
} = {
  maxEvents: { min: 64, max: 10000 },
  timeoutMs: { min: 0, max: 1000 },
  maxAttempts: { min: 1, max: 10 },
};

type Spelling = 'camel' | 'snake';
const KEYS = {
  camel: {
    ioModel: 'ioModel',
    maxEvents: 'maxEvents',
    timeoutMs: 'timeoutMs',
    retry: 'retry',
    maxAttempts: 'maxAttempts',
    fallback: 'fallback',
  },
  snake: {
    ioModel: 'io_model',
    maxEvents: 'max_events',
    timeoutMs: 'timeout_ms',
    retry: 'retry_config',
    maxAttempts: 'max_attempts',
    fallback: 'fallback',
  },
} as const;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(
        `${where}${key}`,
        obj[key],
        `no such field (allowed: ${allowed.join(', ')})`,
      );
    }
  }
}

function integerIn(
  field: string,
  value: unknown,
  limits: { min: number; max: number },
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < limits.min ||
    value > limits.max
  ) {
    throw new ConfigError(field, value, `an integer from ${limits.min} to ${limits.max}`);
  }
  return value;
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(field, value, `one of ${allowed.map((v) => `'${v}'`).join(', ')}`);
  }
  return value as T;
}

function detectSpelling(input: Record<string, unknown>): Spelling {
  const hasSnake = ['io_model', 'max_events', 'timeout_ms', 'retry_config'].some((k) => k in input);
  const hasCamel = ['ioModel', 'maxEvents', 'timeoutMs', 'retry'].some((k) => k in input);
  if (hasSnake && hasCamel) {
    throw new ConfigError(
      'config',
      Object.keys(input),
      "either the spec's snake_case keys or camelCase keys, not both",
    );
  }
  return hasSnake ? 'snake' : 'camel';
}

/**
 * Validates a configuration (camelCase or snake_case) and fills in defaults. Every invalid value
 * is rejected with a {@link ConfigError} that names the field, the value and what is allowed,
 * before anything is opened. `IOMUX_BACKEND` in `env` replaces `io_model` (and may also name
 * `blocking_io`, to force the last-resort backend).
 * @example
 * ```ts
 * import { ConfigError, createReactor, resolveConfig } from '@iomux/core';
 *
 * const config = resolveConfig({ io_model: 'epoll', max_events: 512 });
 * config.retry.fallback; // ['blocking_io'], the default
 * const reactor = createReactor(config); // not validated again
 *
 * try {
 *   resolveConfig({ io_model: 'epoll', max_events: 63 });
 * } catch (err) {
 *   if (!(err instanceof ConfigError)) throw err;
 *   err.message; // 'invalid config: max_events = 63; expected an integer from 64 to 10000'
 *   err.field; // 'max_events'
 * }
 * ```
 */
export function resolveConfig(
  input: unknown,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedConfig {
  if (!isRecord(input)) throw new ConfigError('config', input, 'an object');
  const spelling = detectSpelling(input);
  const k = KEYS[spelling];
  checkKeys(input, [k.ioModel, k.maxEvents, k.timeoutMs, k.retry], '');

  const override = env.IOMUX_BACKEND;
  let ioModel: IoModel | 'blocking_io';
  if (override !== undefined && override !== '') {
    ioModel = oneOf('IOMUX_BACKEND', override, [...IO_MODELS, 'blocking_io']);
  } else {
    if (input[k.ioModel] === undefined)
      throw new ConfigError(
        k.ioModel,
        undefined,
        `one of ${IO_MODELS.map((v) => `'${v}'`).join(', ')} (the field is required)`,
      );
    ioModel = oneOf(k.ioModel, input[k.ioModel], IO_MODELS);
  }
  if (input[k.ioModel] !== undefined) oneOf(k.ioModel, input[k.ioModel], IO_MODELS);

  const maxEvents = integerIn(
    k.maxEvents,
    input[k.maxEvents],
    CONFIG_LIMITS.maxEvents,
    CONFIG_DEFAULTS.maxEvents,
  );
  const timeoutMs = integerIn(
    k.timeoutMs,
    input[k.timeoutMs],
    CONFIG_LIMITS.timeoutMs,
    CONFIG_DEFAULTS.timeoutMs,
  );

  const retryInput = input[k.retry];
  let maxAttempts = CONFIG_DEFAULTS.retry.maxAttempts;
  let fallback = CONFIG_DEFAULTS.retry.fallback;
  if (retryInput !== undefined) {
    if (!isRecord(retryInput)) throw new ConfigError(k.retry, retryInput, 'an object');
    checkKeys(retryInput, [k.maxAttempts, k.fallback], `${k.retry}.`);
    maxAttempts = integerIn(
      `${k.retry}.${k.maxAttempts}`,
      retryInput[k.maxAttempts],
      CONFIG_LIMITS.maxAttempts,
      maxAttempts,
    );
    const rawFallback = retryInput[k.fallback];
    if (rawFallback !== undefined) {
      const field = `${k.retry}.${k.fallback}`;
      const list = Array.isArray(rawFallback) ? (rawFallback as unknown[]) : [rawFallback];
      if (list.length === 0)
        throw new ConfigError(
          field,
          rawFallback,
          'a backend name or a non-empty list of backend names',
        );
      fallback = list.map((entry, i) =>
        oneOf(Array.isArray(rawFallback) ? `${field}[${i}]` : field, entry, BACKEND_NAMES),
      );
      if (new Set(fallback).size !== fallback.length)
        throw new ConfigError(field, rawFallback, 'a list without repeated backends');
    }
  }

  const resolved: ResolvedConfig = {
    ioModel,
    maxEvents,
    timeoutMs,
    retry: { maxAttempts, fallback },
    ...(override !== undefined && override !== ''
      ? { overriddenBy: 'IOMUX_BACKEND' as const }
      : {}),
  };
  resolvedConfigs.add(resolved);
  return resolved;
}

const resolvedConfigs = new WeakSet();

/**
 * True for a configuration returned by {@link resolveConfig} (or the loaders built on it): an
 * object of the same shape built by hand is not, so it is validated when used.
 * @example
 * ```ts
 * isResolvedConfig(resolveConfig({ ioModel: 'auto' })); // true
 * isResolvedConfig({ ...resolveConfig({ ioModel: 'auto' }) }); // false: a copy, not checked
 * ```
 */
export function isResolvedConfig(value: unknown): value is ResolvedConfig {
  return typeof value === 'object' && value !== null && resolvedConfigs.has(value);
}

/**
 * Parses a JSON or YAML configuration document (the spec's snake_case) and validates it.
 * @throws {@link ConfigError} for a document that does not parse, or an invalid value.
 * @example
 * ```ts
 * import { createReactor, parseConfigDocument } from '@iomux/core';
 *
 * const config = parseConfigDocument(`
 * io_model: io_uring
 * max_events: 2048
 * retry_config:
 *   max_attempts: 2
 *   fallback: [epoll, blocking_io]
 * `);
 * const reactor = createReactor(config);
 * ```
 */
export function parseConfigDocument(
  text: string,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedConfig {
  // YAML 1.2 is a superset of JSON. A warning (an unresolved tag, an unknown directive) means the
  // document does not say what its author meant, so it is rejected like an error; yaml's parse()
  // would print it through process.emitWarning and go on.
  const doc = parseDocument(text);
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem !== undefined) {
    throw new ConfigError('document', text.slice(0, 40), `valid JSON or YAML (${problem.message})`);
  }
  let parsed: unknown;
  try {
    parsed = doc.toJS();
  } catch (err) {
    // toJS() throws on what only shows when values are built, e.g. an alias to nothing.
    throw new ConfigError(
      'document',
      text.slice(0, 40),
      `valid JSON or YAML (${(err as Error).message})`,
    );
  }
  return resolveConfig(parsed, env);
}

/**
 * Reads and validates a JSON or YAML configuration file.
 * @throws {@link ConfigError} as {@link parseConfigDocument}; the `fs` error when it cannot be read.
 * @example
 * ```ts
 * import { createReactor, loadConfigFile } from '@iomux/core';
 *
 * // IOMUX_BACKEND=select node server.js overrides the file's io_model for one run.
 * const reactor = createReactor(loadConfigFile(process.env.IOMUX_CONFIG ?? 'iomux.yaml'));
 * ```
 */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  return parseConfigDocument(readFileSync(path, 'utf8'), env);
}
