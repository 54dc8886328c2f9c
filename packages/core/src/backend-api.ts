/**
 * `@iomux/core/backend-api`: the contract between the reactor and a native backend, for authors
 * of backend packages and for tests that drive an addon without a reactor. An application never
 * needs it: `@iomux/core` answers which backends run here ({@link index!getBackend},
 * {@link index!listBackends}) and the {@link index!Reactor} is the whole API over them.
 *
 * What a backend package's loader returns is a {@link NativeAddon}; its {@link NativeBackendHandle}
 * instances deliver batches of events through a {@link NativeEventsCallback}. The C++ side of the
 * same contract is `native/include/iomux/engine.h` (see the "Writing a backend" guide). This entry
 * follows the native packages, not the application API: it changes when they change.
 * @example
 * ```ts
 * import { getBackendModule, type NativeBackendHandle } from '@iomux/core/backend-api';
 *
 * const { NativeBackend, events } = getBackendModule('select').addon();
 * const engine: NativeBackendHandle = new NativeBackend(
 *   { maxEvents: 64, readChunk: 65536, slabBytes: 1 << 20 },
 *   (count) => {
 *     for (let i = 0; i < count; i++) {
 *       const [type, id, a] = engine.events.subarray(i * events.EVENT_INTS);
 *       if (type === events.ACCEPT) console.log(`connection ${id} on listener ${a}`);
 *     }
 *   },
 * );
 * const listenerId = engine.listen('127.0.0.1', 0, 128, false, false); // an id, or -errno
 * engine.start(); // batches now arrive from Node's event loop
 * ```
 * @module
 */
export { getBackendModule } from './backend.js';
export type {
  BackendModule,
  DetachedSocket,
  NativeAddon,
  NativeBackendConstructor,
  NativeBackendHandle,
  NativeBackendOptions,
  NativeEventCodes,
  NativeEventsCallback,
  PreciseTimerConstructor,
  PreciseTimerHandle,
} from './backend.js';
