// Syscall fault injection: a child process runs an iomux echo server, iomux and node:net clients
// and a UDP echo under native/test/fault_shim.c (LD_PRELOAD; only the addons' own calls are
// faulted, and only the child runs under it). Seeded, so a failing run prints the command that
// replays it. Three kinds of run on every backend:
// - retryable faults (EINTR, EAGAIN, short counts): every stream and datagram stays byte-exact;
// - fatal faults (ENOMEM, ENOBUFS, ECONNRESET, ...): only the sockets that got one close, with an
//   error naming it, and the listener goes on serving;
// - an engine-level fault (the backend's poll call fails from the N-th call on): the runtime
//   fallback moves everything to the next backend with no byte lost.
// IOMUX_FAULT_SEEDS=1,2,3 (comma list) replaces the default seeds of the retryable runs.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, type TestContext } from 'vitest';
import type { BackendName } from '../../src/index.js';
import { useFaultShim } from './shim.js';
import { backends, backendTitle } from '../helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'fixtures/fault-child.mjs');

const CLIENTS = 6;
const BYTES_PER_CLIENT = 512 * 1024;
const retryableSeeds = (process.env.IOMUX_FAULT_SEEDS ?? '1,2,3').split(',').map(Number);

/** Where a runtime fallback goes from each backend in the engine-fault runs. */
const successor: Partial<Record<BackendName, BackendName>> = {
  epoll: 'select',
  io_uring: 'epoll',
  select: 'blocking_io',
};

interface ClientResult {
  kind: 'iomux' | 'net';
  seed: number;
  ok: boolean;
  received: number;
  error: string | null;
}

interface Report {
  timedOut?: boolean;
  initialBackend: string;
  backend: string;
  runtimeFallbacks: { backend: string; to: string; lost: number }[];
  clients: ClientResult[];
  after: ClientResult;
  acceptErrors: string[];
  udp: { sent: number; received: number; corrupt: number } | null;
}

interface Run {
  report: Report;
  /** Injected faults, one `call fd kind` line each. */
  faults: string[];
  /** The shell command that replays this run. */
  replay: string;
}

const scratch = useFaultShim('iomux-faults-');

/** Runs the child under the shim with `env` (IOMUX_FAULT_*) and parses its report. */
async function runChild(
  backend: BackendName,
  chain: BackendName[],
  env: Record<string, string>,
  udp: boolean,
): Promise<Run> {
  const tag = `${backend}-${Object.values(env)
    .join('-')
    .replace(/[^\w-]/g, '_')}`;
  const log = path.join(scratch.workDir, `${tag}.log`);
  const gate = path.join(scratch.workDir, `${tag}.gate`);
  const args = [child, backend, chain.join(','), String(CLIENTS), String(BYTES_PER_CLIENT)];
  args.push(udp ? 'udp' : 'no-udp');
  const faultEnv = { ...env, IOMUX_FAULT_LOG: log, IOMUX_FAULT_GATE: gate };
  const replay =
    Object.entries({ LD_PRELOAD: '<built fault_shim.so>', ...env })
      .map(([k, v]) => `${k}=${v}`)
      .join(' ') + ` node ${path.relative(process.cwd(), child)} ${args.slice(1).join(' ')}`;
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, ...faultEnv, LD_PRELOAD: scratch.shim },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  const faults = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
  const line = out.trim().split('\n').pop() ?? '';
  if (line === '') throw new Error(`child exited ${code} without a report; replay: ${replay}`);
  const report = JSON.parse(line) as Report;
  if (report.timedOut === true) {
    throw new Error(`child timed out (${line}); replay: ${replay}`);
  }
  return { report, faults, replay };
}

/** The clients that did not get every byte back intact, for a readable failure message. */
function broken(report: Report): ClientResult[] {
  return report.clients.filter((c) => !c.ok);
}

/** Errors a socket may close with when a fatal fault hit it or its peer. */
const FATAL_ERRORS = new Set(['ENOMEM', 'ENOBUFS', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE']);

describe.each(backends)('syscall fault injection: $name', (backend) => {
  const title = backendTitle(backend);

  it.for(retryableSeeds)(
    `EINTR, EAGAIN and short counts leave every stream and datagram byte-exact (seed %i): ${title}`,
    { timeout: 60_000 },
    async (seed: number, ctx: TestContext) => {
      if (!backend.available) ctx.skip();
      const { report, faults, replay } = await runChild(
        backend.name,
        [backend.name],
        { IOMUX_FAULT_SEED: String(seed), IOMUX_FAULT_RATE: '20' },
        true,
      );
      expect(report.backend, replay).toBe(backend.name);
      expect(broken(report), replay).toEqual([]);
      expect(report.after.ok, replay).toBe(true);
      expect(report.udp, replay).toEqual({ sent: 200, received: 200, corrupt: 0 });
      // The run proves something only if faults were injected, of every retryable kind.
      expect(faults.length, replay).toBeGreaterThan(20);
      for (const kind of ['eintr', 'eagain', 'short']) {
        expect(
          faults.some((f) => f.endsWith(` ${kind}`)),
          `${kind} injected; ${replay}`,
        ).toBe(true);
      }
    },
  );

  it.for([1, 2])(
    `a fatal fault closes only the socket it hit, with its error (seed %i): ${title}`,
    { timeout: 60_000 },
    async (seed: number, ctx: TestContext) => {
      if (!backend.available) ctx.skip();
      const { report, faults, replay } = await runChild(
        backend.name,
        [backend.name],
        {
          IOMUX_FAULT_SEED: String(seed),
          IOMUX_FAULT_RATE: '10',
          IOMUX_FAULT_KINDS: 'eintr,eagain,short,enomem,enobufs,econnreset',
          IOMUX_FAULT_FATAL_MAX: '3',
        },
        false,
      );
      const fatal = faults.filter((f) => /(enomem|enobufs|econnreset)$/.test(f));
      // Accept faults leave the pending connection in the backlog: they cost no client.
      const socketFatal = fatal.filter((f) => !f.startsWith('accept '));
      expect(fatal.length, replay).toBeGreaterThan(0);
      const failed = broken(report);
      expect(failed.length, `${JSON.stringify(fatal)}; ${replay}`).toBeLessThanOrEqual(
        socketFatal.length,
      );
      // Every client that lost bytes was told: a socket closed by a local failure resets its
      // peer (select, seed 2 once ended a node:net client cleanly with 193169 of 524288 bytes,
      // when a write's ENOBUFS closed the server's socket with a FIN).
      for (const c of failed) {
        expect(FATAL_ERRORS.has(c.error ?? ''), `${JSON.stringify(c)}; ${replay}`).toBe(true);
      }
      for (const code of report.acceptErrors) {
        expect(['ENOMEM', 'ENOBUFS'], replay).toContain(code);
      }
      expect(report.clients.length - failed.length, replay).toBeGreaterThan(0);
      expect(report.after.ok, `the listener serves after the faults; ${replay}`).toBe(true);
    },
  );

  const to = successor[backend.name];
  const toAvailable = backends.find((b) => b.name === to)?.available === true;
  const engineSkip =
    to === undefined
      ? ' (skipped: no poll call of its own to fail: its threads block in accept/recv)'
      : !toAvailable
        ? ` (skipped: successor ${to} unavailable)`
        : '';
  it.for([3, 4])(
    `an engine-level fault moves everything to the next backend with no byte lost (seed %i): ${title}${engineSkip}`,
    { timeout: 60_000 },
    async (seed: number, ctx: TestContext) => {
      if (!backend.available || to === undefined || !toAvailable) ctx.skip();
      const { report, faults, replay } = await runChild(
        backend.name,
        [backend.name, to],
        // io_uring: a DEFER_TASKRUN ring, which the engine otherwise gives up on kernels whose
        // eventfd ignores deferred work (6.18 here): only there is an operation left in flight by
        // a dead ring proven never to run, which is what moving every socket exactly needs. On a
        // COOP_TASKRUN ring a socket with a receive in flight stays and closes with the engine.
        {
          IOMUX_FAULT_SEED: String(seed),
          IOMUX_FAULT_RATE: '10',
          IOMUX_FAULT_ENGINE: 'ENOMEM@8',
          IOMUX_IOURING_SETUP: 'defer',
        },
        true,
      );
      expect(
        faults.some((f) => f.endsWith(' engine')),
        replay,
      ).toBe(true);
      expect(report.runtimeFallbacks, replay).toEqual([{ backend: backend.name, to, lost: 0 }]);
      expect(report.backend, replay).toBe(to);
      expect(broken(report), replay).toEqual([]);
      expect(report.after.ok, replay).toBe(true);
      expect(report.udp, replay).toEqual({ sent: 200, received: 200, corrupt: 0 });
    },
  );
});
