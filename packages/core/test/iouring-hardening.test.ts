// io_uring hardening: tuning knobs reach the engine through EngineConfig::tuning, detach is
// bounded and exact, a late kernel failure keeps the batch it built, and a ring or eventfd closed
// by other code is reported, not spun on.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { getBackend, type NativeBackendHandle, type NativeBackendOptions } from '../src/index.js';
import { backendTitle, backends } from './helpers.js';

const iouring = backends.find((b) => b.name === 'io_uring')!;

/** fd numbers of this process whose link names `kind` (e.g. `anon_inode:[io_uring]`). */
function fdsOf(kind: string): Set<number> {
  const out = new Set<number>();
  for (const entry of readdirSync('/proc/self/fd')) {
    let link: string;
    try {
      link = readlinkSync(`/proc/self/fd/${entry}`);
    } catch {
      continue; // the directory's own fd, closed by now
    }
    if (link === kind) out.add(Number(entry));
  }
  return out;
}

/** Opens a raw io_uring engine and returns it with the ring fd it created. */
function openEngine(tuning: Record<string, number>): { handle: NativeBackendHandle; ring: number } {
  const addon = getBackend('io_uring').addon();
  const before = fdsOf('anon_inode:[io_uring]');
  const options: NativeBackendOptions = {
    maxEvents: 256,
    readChunk: 64 * 1024,
    slabBytes: 1 << 20,
    tuning,
  };
  const handle = new addon.NativeBackend(options, () => {});
  const created = [...fdsOf('anon_inode:[io_uring]')].filter((fd) => !before.has(fd));
  if (created.length !== 1) throw new Error(`expected one new ring fd, got ${created.length}`);
  return { handle, ring: created[0]! };
}

/** The kernel's ring masks for an io_uring fd (fdinfo: SqMask/CqMask). */
function ringMasks(fd: number): { sq: number; cq: number } {
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s*(0x[0-9a-f]+)`, 'm').exec(info);
    if (m === null) throw new Error(`fdinfo has no ${name}`);
    return Number(m[1]);
  };
  return { sq: field('SqMask'), cq: field('CqMask') };
}

describe.skipIf(!iouring.available)(backendTitle(iouring), () => {
  describe('tuning from EngineConfig', () => {
    it('sizes the rings from iouringSqEntries / iouringCqEntries', () => {
      const { handle, ring } = openEngine({ iouringSqEntries: 4, iouringCqEntries: 8 });
      try {
        expect(ringMasks(ring)).toEqual({ sq: 3, cq: 7 });
      } finally {
        handle.close();
      }
    });

    it('takes the defaults when no knob is given, and for a value out of range', () => {
      for (const tuning of [{}, { iouringSqEntries: 1 << 20, iouringCqEntries: 1 }]) {
        const { handle, ring } = openEngine(tuning);
        try {
          expect(ringMasks(ring)).toEqual({ sq: 4095, cq: 16383 });
        } finally {
          handle.close();
        }
      }
    });
  });
});
