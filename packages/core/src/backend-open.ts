/**
 * Which backends does a reactor try, in what order, and how is one opened? {@link candidates}
 * builds the start-up chain from the configuration; {@link openBackend} walks a chain (start-up
 * or runtime) and returns the first backend that opens, with a record of every one that did not.
 */
import { constants as osConstants } from 'node:os';
import {
  AUTO_ORDER,
  getBackendModule,
  type NativeAddon,
  type NativeBackendHandle,
  type NativeBackendOptions,
} from './backend.js';
import type { BackendName, ResolvedConfig } from './config.js';
import { IomuxError } from './errors.js';
import type { FaultInjection } from './reactor-options.js';

/** One entry of {@link Reactor.fallbackHistory}: a backend that could not be used, and why. */
export interface FallbackRecord {
  /** The backend that failed. */
  backend: BackendName;
  /** Attempt number for that backend (1-based). */
  attempt: number;
  /** Why it failed. */
  cause: string;
  /** When (ms since epoch). */
  at: number;
  /** At start-up, or while serving. */
  phase: 'startup' | 'runtime';
  /** For a runtime fallback: where the sockets went, how many, and how long the move took. */
  migration?: MigrationSummary;
}

/** What a runtime fallback moved. */
export interface MigrationSummary {
  /** The backend that took over. */
  to: BackendName;
  /** Listeners, connections and pending connects moved. */
  sockets: number;
  /** Sockets that could not move (closed with the adopt error). */
  lost: number;
  /** Time the move took, in ms. */
  ms: number;
}

/** A backend that opened. */
export interface OpenedBackend {
  name: BackendName;
  addon: NativeAddon;
  handle: NativeBackendHandle;
  history: FallbackRecord[];
}

/** What every backend of a reactor is opened with: sizes and the validated tuning map. */
export type OpenSettings = Pick<
  NativeBackendOptions,
  'maxEvents' | 'readChunk' | 'slabBytes' | 'readBuffers'
> & {
  tuning: Record<string, number>;
  faults: FaultInjection;
};

/** One step of a chain: a backend and how many times to try it. */
export interface Candidate {
  name: BackendName;
  attempts: number;
}

/** The errno of a fault-injection value (a name like `'EPERM'` or a number). */
export function errnoOf(value: string | number): number {
  if (typeof value === 'number') return value;
  const errno = (osConstants.errno as Record<string, number | undefined>)[value];
  if (errno === undefined)
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `unknown errno name in fault injection: ${value}`,
    );
  return errno;
}

/** The start-up chain: the configured backend (or the platform's auto order), then the fallbacks. */
export function candidates(config: ResolvedConfig): Candidate[] {
  const primary: BackendName[] =
    config.ioModel === 'auto'
      ? [...(AUTO_ORDER[process.platform] ?? ['select', 'blocking_io'])]
      : [config.ioModel];
  const list = primary.map((name) => ({ name, attempts: config.retry.maxAttempts }));
  for (const name of config.retry.fallback) {
    if (!list.some((c) => c.name === name)) list.push({ name, attempts: 1 });
  }
  return list;
}

function nativeOptionsFor(name: BackendName, settings: OpenSettings): NativeBackendOptions {
  const { faults, tuning, ...sizes } = settings;
  const nativeOptions: NativeBackendOptions = { ...sizes, tuning: { ...tuning } };
  const setupFault = faults.setup?.[name];
  if (setupFault !== undefined) nativeOptions.faultSetupErrno = errnoOf(setupFault);
  const pollAfter = faults.pollAfter?.[name];
  const afterBytes = faults.afterBytes?.[name];
  if (pollAfter !== undefined) nativeOptions.faultPollAfter = pollAfter;
  if (afterBytes !== undefined) nativeOptions.faultAfterBytes = afterBytes;
  if (pollAfter !== undefined || afterBytes !== undefined)
    nativeOptions.faultPollErrno = errnoOf(faults.pollErrno ?? 'EIO');
  const kernelAfter = faults.kernelAfter?.[name];
  if (kernelAfter !== undefined) {
    nativeOptions.tuning = {
      ...nativeOptions.tuning,
      faultKernelAfter: kernelAfter,
      faultKernelErrno: errnoOf(faults.pollErrno ?? 'EIO'),
    };
  }
  if (faults.handOverTimeout === true && name === 'io_uring')
    nativeOptions.tuning = { ...nativeOptions.tuning, faultHandOverTimeout: 1 };
  return nativeOptions;
}

/**
 * Opens the first backend of `chain` that works.
 * @throws {@link IomuxError} `IOMUX_BACKEND_UNAVAILABLE` naming every cause when none does.
 */
export function openBackend(
  chain: readonly Candidate[],
  settings: OpenSettings,
  onEvents: (count: number, slab: Buffer | undefined) => void,
  phase: FallbackRecord['phase'] = 'startup',
): OpenedBackend {
  const history: FallbackRecord[] = [];
  for (const { name, attempts } of chain) {
    const backend = getBackendModule(name);
    if (!backend.isAvailable()) {
      history.push({
        backend: name,
        attempt: 1,
        cause: backend.unavailabilityCause() ?? 'unavailable',
        at: Date.now(),
        phase,
      });
      continue;
    }
    const addon = backend.addon();
    const nativeOptions = nativeOptionsFor(name, settings);
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      try {
        return { name, addon, handle: new addon.NativeBackend(nativeOptions, onEvents), history };
      } catch (err) {
        const errno = (err as { errno?: number }).errno;
        const cause =
          errno === undefined
            ? (err as Error).message
            : addon.probe(errno) || (err as Error).message;
        history.push({ backend: name, attempt, cause, at: Date.now(), phase });
      }
    }
  }
  const causes = history.map((r) => `${r.backend}: ${r.cause}`).join('; ');
  throw new IomuxError('IOMUX_BACKEND_UNAVAILABLE', `no usable backend (${causes})`);
}
