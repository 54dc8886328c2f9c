// The fault shim (native/test/fault_shim.c), compiled once per test file into a scratch folder
// that is removed after the file's tests.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const shimSource = path.resolve(here, '../../../../native/test/fault_shim.c');

/** Where the built shim and the file's scratch files are; filled in by `beforeAll`. */
export interface FaultShim {
  /** The scratch folder (logs, gates). */
  workDir: string;
  /** The built fault_shim.so, for LD_PRELOAD. */
  shim: string;
}

/** Builds the shim before the file's tests (gcc) and removes its folder after them. */
export function useFaultShim(prefix: string): FaultShim {
  const built: FaultShim = { workDir: '', shim: '' };
  beforeAll(() => {
    built.workDir = mkdtempSync(path.join(tmpdir(), prefix));
    built.shim = path.join(built.workDir, 'fault_shim.so');
    const flags = ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-fPIC', '-shared'];
    const cc = spawnSync('gcc', [...flags, '-o', built.shim, shimSource], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`building the fault shim failed:\n${cc.stderr}`);
  });
  afterAll(() => {
    rmSync(built.workDir, { recursive: true, force: true });
  });
  return built;
}
