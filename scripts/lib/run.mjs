// One child process of the scripts that drive compilers directly (pnpm check:kqueue,
// pnpm build:prebuilds): output collected, never streamed, so parallel jobs do not interleave.
import { spawn } from 'node:child_process';

/** Runs `command` in `cwd`; resolves with its exit code (127 when it cannot start) and output. */
export function runIn(command, args, cwd) {
  return new Promise((done) => {
    const child = spawn(command, args, { cwd });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (err) => done({ code: 127, output: String(err) }));
    child.on('close', (code) => done({ code, output }));
  });
}
