/**
 * Preloaded (`--require`) into {@link WorkerPool} threads when its `scheduling` option is set:
 * moves the thread to that policy before any task runs. A failure is a process warning, not a
 * crash: the tasks still run, at normal priority.
 * @module
 * @internal
 */
import { isMainThread } from 'node:worker_threads';
import { setThreadScheduling, type ThreadScheduling } from './scheduling.js';

/** The environment variable a pool uses to pass its `scheduling` option to its threads. */
const VARIABLE = 'IOMUX_WORKER_SCHEDULING';
const policy = process.env[VARIABLE];
if (!isMainThread && policy !== undefined && policy !== '') {
  try {
    setThreadScheduling(policy as ThreadScheduling);
  } catch (err) {
    process.emitWarning(
      `iomux worker thread keeps normal scheduling: ${(err as Error).message}`,
      'IomuxWarning',
    );
  }
}
