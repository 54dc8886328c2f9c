/**
 * A task {@link WorkerPool} runs on one of its own threads when a task name is not an export of
 * the worker module: lists the module's function exports for the `IOMUX_UNKNOWN_TASK` message.
 * It runs in a worker, not on the reactor's thread, because loading the module runs its top-level
 * code, and there it is already loaded (piscina loads the pool's module when a thread starts).
 * @module
 * @internal
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/** The names of `filename`'s exports that are functions, sorted. */
export default async function exportsOf(filename: string): Promise<string[]> {
  // The same order as piscina's worker: require() first (CommonJS, or a require hook such as
  // tsx/cjs), then import() for ES modules.
  let namespace: unknown;
  try {
    namespace = createRequire(filename)(filename);
  } catch {
    namespace = await import(pathToFileURL(filename).href);
  }
  if (namespace === null || typeof namespace !== 'object') return [];
  const record = namespace as Record<string, unknown>;
  return Object.keys(record)
    .filter((name) => typeof record[name] === 'function')
    .sort();
}
