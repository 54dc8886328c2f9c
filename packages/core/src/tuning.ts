/**
 * Which backend tuning knobs does the environment set, and are their values allowed? The
 * variables keep their historical names (`IOMUX_IOURING_*`, `IOMUX_BLOCKING_*`) but are parsed
 * here, so a bad value is a {@link ConfigError} at start-up instead of a silent native default;
 * engines receive the result as `EngineConfig::tuning` (name → integer).
 */
import { ConfigError } from './errors.js';

/** One tuning variable: the key it becomes and the values it takes. */
export interface TuningKnob {
  /** The tuning key the engines read. */
  readonly key: string;
  /** Parses the variable's text; undefined when it is not allowed. */
  parse(text: string): number | undefined;
  /** The allowed values, for the error message. */
  readonly allowed: string;
}

function integer(text: string): number | undefined {
  if (!/^\d+$/.test(text.trim())) return undefined;
  const value = Number(text.trim());
  return Number.isSafeInteger(value) ? value : undefined;
}

function range(key: string, min: number, max: number, powerOfTwo = false): TuningKnob {
  return {
    key,
    allowed: powerOfTwo
      ? `a power of two from ${min} to ${max}`
      : `an integer from ${min} to ${max}`,
    parse(text) {
      const value = integer(text);
      if (value === undefined || value < min || value > max) return undefined;
      if (powerOfTwo && (value & (value - 1)) !== 0) return undefined;
      return value;
    },
  };
}

function choice(key: string, names: readonly string[]): TuningKnob {
  return {
    key,
    allowed: `one of ${names.join(', ')}`,
    parse(text) {
      const index = names.indexOf(text.trim());
      return index < 0 ? undefined : index;
    },
  };
}

/** Every tuning variable, with the key it becomes and the values it takes. */
export const TUNING_VARIABLES: Readonly<Record<string, TuningKnob>> = {
  IOMUX_IOURING_SINGLESHOT: choice('iouringSingleshot', ['0', '1']),
  IOMUX_IOURING_NO_EVENTFD_TOGGLE: choice('iouringNoEventfdToggle', ['0', '1']),
  IOMUX_IOURING_DIRECT_RECV: choice('iouringDirectRecv', ['off', 'auto', 'always']),
  IOMUX_IOURING_SETUP: choice('iouringSetup', ['default', 'coop', 'basic', 'none', 'defer']),
  IOMUX_IOURING_BUF_SIZE: range('iouringBufSize', 1024, 1048576),
  IOMUX_IOURING_BUF_COUNT: range('iouringBufCount', 64, 32768, true),
  IOMUX_IOURING_SQ_ENTRIES: range('iouringSqEntries', 2, 32768),
  IOMUX_IOURING_CQ_ENTRIES: range('iouringCqEntries', 4, 65536),
  IOMUX_BLOCKING_MAX_THREADS: range('blockingMaxThreads', 1, 1048576),
  IOMUX_BLOCKING_STACK_KB: range('blockingStackKb', 16, 1048576),
};

/**
 * The tuning map for `NativeBackendOptions.tuning` from the variables set in `env` (unset or
 * empty variables are left out, so the engine keeps its default).
 * @throws {@link ConfigError} naming the variable, its value and the allowed values.
 */
export function resolveTuning(env: NodeJS.ProcessEnv): Record<string, number> {
  const tuning: Record<string, number> = {};
  for (const [variable, knob] of Object.entries(TUNING_VARIABLES)) {
    const text = env[variable];
    if (text === undefined || text === '') continue;
    const value = knob.parse(text);
    if (value === undefined) throw new ConfigError(variable, text, knob.allowed);
    tuning[knob.key] = value;
  }
  return tuning;
}
