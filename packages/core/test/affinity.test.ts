// CPU affinity of the calling thread (setThreadAffinity / getThreadAffinity), of the process's
// other threads (setOtherThreadsAffinity) and of WorkerPool threads (the `affinity` option), read
// back from the kernel's own view of each thread.
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { getThreadAffinity, setOtherThreadsAffinity, setThreadAffinity } from '../src/index.js';
import { WorkerPool } from '../src/worker-pool.js';
import { outcome, pool, WORKER } from './pool-helpers.js';
import { thrown } from './helpers.js';

const linux = process.platform === 'linux';

/** A thread's CPUs as the kernel lists them in its /proc status file (`0-1`, `1`). */
function allowedList(statusFile: string): string | undefined {
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(statusFile, 'utf8'))?.[1];
}

/** This thread's CPUs as the kernel lists them. */
function kernelList(): string | undefined {
  return allowedList('/proc/thread-self/status');
}

describe.runIf(linux)('setThreadAffinity (Linux)', () => {
  // The test thread's mask before each test, put back after it: other tests run on this thread.
  const start = linux ? getThreadAffinity() : [];
  afterEach(() => {
    setThreadAffinity(start);
  });

  it('pins the calling thread to the CPUs given, as the kernel reports them', () => {
    expect(start.length).toBeGreaterThan(0);
    const last = start[start.length - 1]!;
    setThreadAffinity([last]);
    expect(getThreadAffinity()).toEqual([last]);
    expect(kernelList()).toBe(String(last));
    setThreadAffinity(start);
    expect(getThreadAffinity()).toEqual(start);
  });

  it('rejects an empty list, non-integers and numbers outside the CPU range, naming them', () => {
    const cases: [unknown, RegExp][] = [
      [[], /needs at least one CPU, got \[\]/],
      [[0.5], /integers from 0 to 1023, got 0\.5/],
      [['1'], /integers from 0 to 1023, got 1/],
      [[-1], /got -1/],
      [[1024], /got 1024/],
      [[Number.NaN], /got NaN/],
      [1, /must be an array of CPU numbers, got 1/],
    ];
    for (const [cpus, message] of cases) {
      const failure = thrown(() => {
        setThreadAffinity(cpus as number[]);
      });
      expect(failure).toMatchObject({ code: 'IOMUX_INVALID_ARGUMENT', typed: true });
      expect(failure.message).toMatch(message);
    }
    expect(getThreadAffinity()).toEqual(start);
  });

  it('refuses a CPU the process may not run on, naming it, and keeps the previous mask', () => {
    // 1023 is beyond this machine's CPUs (the kernel would keep only the real ones of [0, 1023]
    // silently: the call must not).
    const failure = thrown(() => {
      setThreadAffinity([start[0]!, 1023]);
    });
    expect(failure).toMatchObject({ code: 'IOMUX_INVALID_ARGUMENT', typed: true });
    expect(failure.message).toMatch(/setThreadAffinity: CPU 1023 not among the CPUs this process/);
    expect(getThreadAffinity()).toEqual(start);
    // Only CPUs that do not exist: the kernel itself refuses (EINVAL), reported the same way.
    expect(
      thrown(() => {
        setThreadAffinity([1000, 1001, 1002]);
      }).message,
    ).toMatch(/CPUs 1000-1002 not among/);
    expect(kernelList()).toBe(linuxList(start));
  });
});

/** `[0, 1, 3]` as /proc writes it: `0-1,3`. */
function linuxList(cpus: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length;) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j]! + 1) j++;
    parts.push(i === j ? `${cpus[i]}` : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

describe.runIf(linux)('WorkerPool: affinity (Linux)', () => {
  it('pins every worker thread to the CPUs given, and leaves pools without it alone', async () => {
    const all = getThreadAffinity();
    const last = all[all.length - 1]!;
    const pinned = pool({ size: 2, affinity: [last], scheduling: 'idle' });
    const both = await Promise.all([pinned.run('affinity'), pinned.run('affinity')]);
    expect(both).toEqual([String(last), String(last)]);
    // The policy is still applied beside it (one preload does both).
    expect(await pinned.run('scheduling')).toMatchObject({ policy: 5 });
    const free = pool({ size: 1 });
    expect(await free.run('affinity')).toBe(linuxList(all));
  });

  it('pins workers away from a creating thread that is pinned itself', async () => {
    const all = getThreadAffinity();
    if (all.length < 2) return; // one CPU: nothing to move away from
    setThreadAffinity([all[0]!]);
    try {
      const p = pool({ size: 1, affinity: all.slice(1) });
      expect(await p.run('affinity')).toBe(linuxList(all.slice(1)));
    } finally {
      setThreadAffinity(all);
    }
  });

  it('rejects a bad list at construction with IOMUX_INVALID_ARGUMENT naming the value', () => {
    const cases: [unknown, RegExp][] = [
      [[], /affinity needs at least one CPU/],
      [[1.5], /affinity: CPU numbers are integers from 0 to 1023, got 1\.5/],
      [[1023], /affinity: CPU 1023 not among the CPUs this process may run on/],
    ];
    for (const [affinity, message] of cases) {
      const failure = thrown(
        () => new WorkerPool({ filename: WORKER, affinity: affinity as number[] }),
      );
      expect(failure).toMatchObject({ code: 'IOMUX_INVALID_ARGUMENT', typed: true });
      expect(failure.message).toMatch(message);
    }
  });
});

describe.runIf(!linux)('setThreadAffinity (not Linux)', () => {
  it('reports ENOSYS, and pool workers keep running with a warning', async () => {
    expect(
      thrown(() => {
        setThreadAffinity([0]);
      }),
    ).toMatchObject({ code: 'ENOSYS' });
    expect(thrown(() => setOtherThreadsAffinity([0]))).toMatchObject({ code: 'ENOSYS' });
    const p = pool({ size: 1, affinity: [0] });
    expect(await outcome(p.run('whoami', { ms: 1 }))).toHaveProperty('value');
  });
});

/** Each thread of this process (tid) with its CPUs as /proc lists them. */
function threadLists(): Map<number, string> {
  const lists = new Map<number, string>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const list = allowedList(`/proc/self/task/${tid}/status`);
      if (list !== undefined) lists.set(Number(tid), list);
    } catch {
      // exited since the listing
    }
  }
  return lists;
}

/** The calling thread's id (/proc/thread-self links to <pid>/task/<tid>). */
function ownTid(): number {
  return Number(readlinkSync('/proc/thread-self').split('/').pop());
}

describe.runIf(linux)('setOtherThreadsAffinity (Linux)', () => {
  const all = linux ? getThreadAffinity() : [];
  afterEach(() => {
    setOtherThreadsAffinity(all);
  });

  it("moves every other thread (V8's, libuv's, a Worker) and leaves the caller's mask", async () => {
    const last = all[all.length - 1]!;
    // A Worker started before the call reports its own tid and, when asked, its CPUs.
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       const fs = require('node:fs');
       const list = () => /^Cpus_allowed_list:\\s*(\\S+)/m.exec(fs.readFileSync('/proc/thread-self/status', 'utf8'))[1];
       parentPort.postMessage(Number(fs.readlinkSync('/proc/thread-self').split('/').pop()));
       parentPort.on('message', () => parentPort.postMessage(list()));`,
      { eval: true },
    );
    try {
      const workerTid = (await once(worker, 'message'))[0] as number;
      const others = [...threadLists().keys()].filter((tid) => tid !== ownTid());
      expect(others).toContain(workerTid);
      const pinned = setOtherThreadsAffinity([last]);
      const after = threadLists();
      // Threads may come and go meanwhile (V8 starts helpers on demand); those still here counted.
      const stayed = others.filter((tid) => after.has(tid));
      expect(pinned).toBeGreaterThanOrEqual(stayed.length);
      expect(after.get(ownTid())).toBe(linuxList(all));
      for (const tid of stayed) expect([tid, after.get(tid)]).toEqual([tid, String(last)]);
      worker.postMessage('cpus');
      expect((await once(worker, 'message'))[0]).toBe(String(last));
      expect(getThreadAffinity()).toEqual(all);
    } finally {
      await worker.terminate();
    }
  });

  it('refuses bad lists and CPUs the process may not run on before moving any thread', () => {
    const before = threadLists();
    const cases: [unknown, RegExp][] = [
      [[], /setOtherThreadsAffinity needs at least one CPU, got \[\]/],
      [[0.5], /integers from 0 to 1023, got 0\.5/],
      [[all[0]!, 1023], /setOtherThreadsAffinity: CPU 1023 not among the CPUs this process/],
      [[1000, 1001], /CPUs 1000-1001 not among/],
    ];
    for (const [cpus, message] of cases) {
      const failure = thrown(() => setOtherThreadsAffinity(cpus as number[]));
      expect(failure).toMatchObject({ code: 'IOMUX_INVALID_ARGUMENT', typed: true });
      expect(failure.message).toMatch(message);
    }
    const after = threadLists();
    for (const [tid, list] of after) if (before.has(tid)) expect(list).toBe(before.get(tid));
  });
});
