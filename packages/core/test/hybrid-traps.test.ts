// Traps of mixing a tick loop with ordinary I/O, on every backend that can run here: when a
// runTicks loop ends, a reactor left in manual dispatch goes back to automatic dispatch.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Reactor } from '../src/index.js';
import { backendTitle, backends, fdCount, reactorOn, until } from './helpers.js';

describe.each(backends)('hybrid traps: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  let reactor: Reactor;
  let fdsBefore = 0;

  beforeEach(() => {
    if (!backend.available) return;
    fdsBefore = fdCount();
    reactor = reactorOn(backend.name);
  });

  afterEach(async () => {
    if (!backend.available) return;
    await reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
  });

  it(`runs here: ${backendTitle(backend)}`, () => {
    if (!backend.available) expect(backend.cause).not.toBe('');
    else expect(reactor.backend).toBe(backend.name);
  });

  run('after a runTicks loop ends, dispatch resumes: a later connect() completes', async () => {
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
    reactor.stop(); // manual dispatch: the loop pumps I/O between ticks
    let ticks = 0;
    const loop = reactor.runTicks(
      () => {
        ticks += 1;
      },
      { hz: 100, maxTicks: 3 },
    );
    await loop.done;
    expect(ticks).toBe(3);
    expect(reactor.isRunning).toBe(true);
    // Nothing pumps by hand now: the connect completes only because dispatch resumed.
    const conn = await reactor.connect({ port: listener.port, timeoutMs: 5000 });
    expect(conn.closed).toBe(false);
    conn.destroy();
  });

  run('a loop ended while another runs leaves manual dispatch to the newer one', async () => {
    reactor.stop();
    const first = reactor.runTicks(() => undefined, { hz: 100 });
    const second = reactor.runTicks(() => undefined, { hz: 100 });
    first.stop();
    await first.done;
    expect(reactor.isRunning).toBe(false); // the second loop still pumps
    second.stop();
    await second.done;
    expect(reactor.isRunning).toBe(true);
  });
});
