// Traps of mixing a tick loop with ordinary I/O, on every backend that can run here: when a
// runTicks loop ends, a reactor left in manual dispatch goes back to automatic dispatch.
import { describe, expect, it } from 'vitest';
import type {} from '../src/index.js';
import { backends, useBackendFixture } from './helpers.js';

describe.each(backends)('hybrid traps: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const f = useBackendFixture(backend);

  run('after a runTicks loop ends, dispatch resumes: a later connect() completes', async () => {
    const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
    f.reactor.stop(); // manual dispatch: the loop pumps I/O between ticks
    let ticks = 0;
    const loop = f.reactor.runTicks(
      () => {
        ticks += 1;
      },
      { hz: 100, maxTicks: 3 },
    );
    await loop.done;
    expect(ticks).toBe(3);
    expect(f.reactor.isRunning).toBe(true);
    // Nothing pumps by hand now: the connect completes only because dispatch resumed.
    const conn = await f.reactor.connect({ port: listener.port, timeoutMs: 5000 });
    expect(conn.closed).toBe(false);
    conn.destroy();
  });

  run('a loop ended while another runs leaves manual dispatch to the newer one', async () => {
    f.reactor.stop();
    const first = f.reactor.runTicks(() => undefined, { hz: 100 });
    const second = f.reactor.runTicks(() => undefined, { hz: 100 });
    first.stop();
    await first.done;
    expect(f.reactor.isRunning).toBe(false); // the second loop still pumps
    second.stop();
    await second.done;
    expect(f.reactor.isRunning).toBe(true);
  });
});
