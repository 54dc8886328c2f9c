// Real-time scheduling of the calling thread (setThreadScheduling('fifo' | 'rr', priority)), read
// back from the kernel's own view of each thread: the policy and priority it runs with, that a
// thread started afterwards does not inherit them, the way back to 'normal', and the typed errors.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { setThreadScheduling } from '../src/index.js';
import { thrown } from './helpers.js';

const linux = process.platform === 'linux';
const root = typeof process.getuid === 'function' && process.getuid() === 0;

/** Linux policy numbers in /proc/<tid>/sched. */
const SCHED = { other: 0, fifo: 1, rr: 2 } as const;

/** The calling thread's policy and real-time priority, as the kernel reports them. */
function ownScheduling(): { policy: number; rtPriority: number } {
  const sched = readFileSync('/proc/thread-self/sched', 'utf8');
  const policy = Number(/^policy\s*:\s*(\d+)/m.exec(sched)?.[1]);
  // /proc/<tid>/stat: the command is in parentheses and may hold spaces; rt_priority is field 40.
  const stat = readFileSync('/proc/thread-self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { policy, rtPriority: Number(fields[40 - 3]) };
}

/** The scheduling policy number of a Worker started now, as it reads its own. */
async function workerPolicy(): Promise<number> {
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     const sched = require('node:fs').readFileSync('/proc/thread-self/sched', 'utf8');
     parentPort.postMessage(Number(/^policy\\s*:\\s*(\\d+)/m.exec(sched)[1]));`,
    { eval: true },
  );
  try {
    return (await once(worker, 'message'))[0] as number;
  } finally {
    await worker.terminate();
  }
}

describe.runIf(linux)('setThreadScheduling: real-time policies (Linux)', () => {
  // The privilege a real-time policy needs: root here and in CI; elsewhere the EPERM case below.
  const privileged = root ? it : it.skip;

  privileged(
    "'fifo' and 'rr' run this thread at the priority given; a Worker started after keeps the normal policy; 'normal' moves back (as root)",
    async () => {
      try {
        setThreadScheduling('fifo', 7);
        expect(ownScheduling()).toEqual({ policy: SCHED.fifo, rtPriority: 7 });
        expect(await workerPolicy()).toBe(SCHED.other);
        setThreadScheduling('rr', 3);
        expect(ownScheduling()).toEqual({ policy: SCHED.rr, rtPriority: 3 });
      } finally {
        setThreadScheduling('normal');
      }
      expect(ownScheduling()).toEqual({ policy: SCHED.other, rtPriority: 0 });
    },
  );

  // util-linux's setpriv drops CAP_SYS_NICE for the child (RLIMIT_RTPRIO is 0 by default), with
  // no change of user that could leave the checkout unreadable to it.
  const setpriv = spawnSync('setpriv', ['--version']).status === 0;
  const unprivileged = root && setpriv ? it : it.skip;
  unprivileged(
    'an unprivileged process gets EPERM naming the policy and priority (as root, with setpriv: a child without CAP_SYS_NICE)',
    () => {
      const index = fileURLToPath(new URL('../dist/index.js', import.meta.url));
      const script = `import(${JSON.stringify(index)}).then(({ setThreadScheduling }) => {
        try { setThreadScheduling('fifo', 10); console.log('{}'); }
        catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }
      });`;
      const drop = ['--bounding-set=-sys_nice', '--inh-caps=-sys_nice'];
      const result = spawnSync('setpriv', [...drop, process.execPath, '-e', script], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(result.status, result.stderr).toBe(0);
      const failure = JSON.parse(result.stdout.trim()) as { code?: string; message?: string };
      expect(failure.code).toBe('EPERM');
      expect(failure.message).toMatch(/sched_setscheduler.*policy fifo, priority 10/);
    },
  );

  it('rejects a missing or out-of-range priority, and a priority for a normal policy, before any syscall', () => {
    const cases: [string, number | undefined, RegExp][] = [
      ['fifo', undefined, /fifo priority must be an integer from 1 to 99, got undefined/],
      ['fifo', 0, /from 1 to 99, got 0/],
      ['rr', 100, /rr priority must be an integer from 1 to 99, got 100/],
      ['fifo', 1.5, /got 1\.5/],
      ['idle', 5, /only the real-time policies take a priority; idle got 5/],
      ['deadline', 5, /scheduling must be one of normal, batch, idle, fifo, rr, got deadline/],
    ];
    for (const [policy, priority, message] of cases) {
      const failure = thrown(() => {
        setThreadScheduling(policy as 'fifo', priority);
      });
      expect(failure).toMatchObject({ code: 'IOMUX_INVALID_ARGUMENT', typed: true });
      expect(failure.message).toMatch(message);
    }
    expect(ownScheduling().policy).toBe(SCHED.other);
  });
});

describe.runIf(!linux)('setThreadScheduling: real-time policies (not Linux)', () => {
  it('reports ENOSYS', () => {
    const failure = thrown(() => {
      setThreadScheduling('fifo', 10);
    });
    expect(failure).toMatchObject({ code: 'ENOSYS' });
  });
});
