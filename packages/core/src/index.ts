/**
 * iomux: a pluggable async I/O runtime for Node.js. Start with {@link createReactor}.
 * @module
 */
export { createReactor, Reactor, Listener } from './reactor.js';
export type {
  BroadcastResult,
  ConnectionHandler,
  ConnectOptions,
  FallbackRecord,
  FaultInjection,
  ListenerEvents,
  MigrationSummary,
  ListenOptions,
  Logger,
  ReactorEvents,
  ReactorOptions,
  ReactorStats,
  UdpOptions,
} from './reactor.js';
export { REACTOR_OPTION_LIMITS, resolveReactorOptions } from './reactor-options.js';
export type {
  NumericReactorOption,
  ReadBuffers,
  ReactorOptionLimit,
  ResolvedReactorOptions,
} from './reactor-options.js';
export { TUNING_VARIABLES, resolveTuning } from './tuning.js';
export type { TuningKnob } from './tuning.js';
export { Connection } from './connection.js';
export { UdpSocket } from './udp.js';
export type { OutgoingDatagram, RemoteInfo, UdpAddress, UdpSocketEvents } from './udp.js';
export type { ConnectionEvents, QueueLimitPolicy } from './connection.js';
export { ConnectionDuplex, toDuplex } from './duplex.js';
export type { DuplexOptions, SocketAddress } from './duplex.js';
export { toNetSocket } from './adopt.js';
export type { AdoptOptions, AdoptSource } from './adopt.js';
export { discardTicket, isConnectionTicket } from './transfer.js';
export type { ConnectionTicket } from './transfer.js';
export {
  BACKEND_NAMES,
  CONFIG_DEFAULTS,
  CONFIG_LIMITS,
  IO_MODELS,
  isResolvedConfig,
  loadConfigFile,
  parseConfigDocument,
  resolveConfig,
} from './config.js';
export type {
  BackendName,
  IoModel,
  ReactorConfig,
  ResolvedConfig,
  IntegerRange,
  ResolvedRetryConfig,
  RetryConfig,
  SnakeCaseConfig,
  SnakeCaseRetryConfig,
} from './config.js';
export { AUTO_ORDER, getBackend, listBackends } from './backend.js';
// The backend contract (NativeAddon, NativeBackendHandle, ...) is for backend authors and lives in
// the `@iomux/core/backend-api` entry (backend-api.ts), not here.
export type { BackendCounters, BackendStatus } from './backend.js';
export { channels } from './metrics.js';
export type { HistogramSummary, MetricsSnapshot, PollMessage, PollObserver } from './metrics.js';
export { ConfigError, IomuxError, backendHint, errnoName } from './errors.js';
export type { IomuxErrorCode } from './errors.js';
export { startCluster } from './cluster.js';
export type { Cluster, ClusterMetrics, ClusterOptions } from './cluster.js';
export { runTicks } from './tick-loop.js';
export type { TimerSource } from './timers.js';
export type {
  OverrunPolicy,
  TickFn,
  TickInfo,
  TickLoop,
  TickLoopOptions,
  TickPump,
  TickStats,
} from './tick-loop.js';
export { WorkerPool } from './worker-pool.js';
export {
  getThreadAffinity,
  setOtherThreadsAffinity,
  setThreadAffinity,
  setThreadScheduling,
} from './scheduling.js';
export type { RealtimeScheduling, ThreadScheduling } from './scheduling.js';
export type {
  TransferItem,
  WorkerPoolEvents,
  WorkerPoolOptions,
  WorkerPoolSize,
  WorkerPoolStats,
  WorkerTaskOptions,
} from './worker-pool.js';
