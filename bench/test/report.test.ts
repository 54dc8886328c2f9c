import { describe, expect, it } from 'vitest';
import { renderReport } from '../report.mjs';
import { pairedOverhead } from '../stats.mjs';

const meta = { mode: 'quick', date: 'd', node: 'v20', cpus: '2', rounds: 1, duration_s: 1 };

/** One echo row: msgs/s and msgs per server CPU-second. */
function row(workload: string, contestant: string, msgs: number, perCpu = msgs) {
  return {
    workload,
    contestant,
    msgs_per_sec: msgs,
    min: msgs,
    max: msgs,
    msgs_per_server_cpu_s: perCpu,
    p99_us: 1,
    server_rss_kb: 1024,
    errors: 0,
    failures: 0,
  };
}

/** The targets table's line for `target`. */
function targetLine(rows: ReturnType<typeof row>[], target: string, idle: unknown[] = []): string {
  const { markdown } = renderReport(meta, rows, [], idle, [], {});
  const targets = markdown.slice(markdown.indexOf('## Targets'));
  const line = targets.split('\n').find((l) => l.startsWith(`| ${target}`));
  if (line === undefined) throw new Error(`no targets line for ${target}`);
  return line;
}

describe('bench report: the targets table', () => {
  const x50 = 'echo 64 B x50';
  const pipelined4k = 'pipelined 4 KiB x1000 d16';

  it('judges a ratio target on epoll and io_uring, listing the other iomux rows', () => {
    const rows = [
      row(x50, 'iomux-epoll', 95),
      row(x50, 'iomux-io_uring', 91),
      row(x50, 'iomux-select', 50),
      row(x50, 'c-epoll', 100),
    ];
    expect(targetLine(rows, 'echo 64 B ping-pong ×50')).toContain(
      'epoll 0.95 (0.95), io_uring 0.91 (0.91), select 0.50 (0.50): met',
    );
    rows[1] = row(x50, 'iomux-io_uring', 89);
    expect(targetLine(rows, 'echo 64 B ping-pong ×50')).toMatch(/: not met \|$/);
  });

  it('needs the per CPU-second ratio as well where the target says so', () => {
    const rows = [
      row(pipelined4k, 'iomux-epoll', 90, 70),
      row(pipelined4k, 'iomux-io_uring', 90, 90),
      row(pipelined4k, 'c-epoll', 100, 100),
    ];
    expect(targetLine(rows, 'pipelined 4 KiB')).toContain('epoll 0.90 (0.70)');
    expect(targetLine(rows, 'pipelined 4 KiB')).toMatch(/: not met \|$/);
  });

  it('says "not run" without the C reference or a backend, never "met"', () => {
    expect(targetLine([row(x50, 'iomux-epoll', 95)], 'echo 64 B ping-pong ×50')).toContain(
      'not run',
    );
    const onlyEpoll = [row(x50, 'iomux-epoll', 95), row(x50, 'c-epoll', 100)];
    expect(targetLine(onlyEpoll, 'echo 64 B ping-pong ×50')).toMatch(/: not met \|$/);
  });

  it('compares io_uring with epoll per server CPU-second at 1000 connections', () => {
    const rows = ['echo 64 B x1000', 'pipelined 64 B x1000 d16', pipelined4k].flatMap((w) => [
      row(w, 'iomux-epoll', 100, 100),
      row(w, 'iomux-io_uring', 100, 120),
    ]);
    expect(targetLine(rows, 'iomux-io_uring ÷ iomux-epoll')).toContain(
      'ping-pong 1.20, pipelined 64 B 1.20, pipelined 4 KiB 1.20: met',
    );
  });

  it('checks memory per idle connection against 1 KiB', () => {
    const idle = [
      { contestant: 'iomux-epoll', bytes_per_connection: 700, rss_before_kb: 1, rss_after_kb: 2 },
      {
        contestant: 'iomux-io_uring',
        bytes_per_connection: 1100,
        rss_before_kb: 1,
        rss_after_kb: 2,
      },
      { contestant: 'node-net', bytes_per_connection: 6000, rss_before_kb: 1, rss_after_kb: 2 },
    ];
    expect(targetLine([], 'RSS per idle connection', idle)).toContain(
      'epoll 700 B, io_uring 1100 B: not met',
    );
  });
});

describe('bench report: the cost of metrics', () => {
  it('takes the overhead from each round’s own pair, not from two medians', () => {
    // Round 2 ran on a slower machine for both modes: the medians' ratio would say 0 %, every
    // round's own pair says 2 %.
    const paired = pairedOverhead([98, 49, 98], [100, 50, 100]);
    expect(paired.overhead_pct).toBeCloseTo(2, 6);
    expect(paired.overhead_min).toBeCloseTo(2, 6);
    expect(paired.overhead_max).toBeCloseTo(2, 6);
    const skewed = pairedOverhead([100, 96, 90], [100, 100, 100]);
    expect(skewed.overhead_pct).toBeCloseTo(4, 6);
    expect([skewed.overhead_min, skewed.overhead_max]).toEqual([0, 10]);
  });

  it('shows the overhead, its range over rounds and the verdict', () => {
    const metrics = [
      { workload: 'echo 64 B x1000', on: 97, off: 100, ...pairedOverhead([97, 99], [100, 100]) },
    ];
    const { markdown } = renderReport(meta, [], [], [], metrics, {});
    expect(markdown).toContain('| echo 64 B x1000 | 97 | 100 | 2.0% | 1.0% to 3.0% |');
    expect(markdown).toMatch(/\| metrics on vs off[^\n]*echo 64 B x1000 2\.0%: met \|/);
  });
});

describe('bench report: paired ratios', () => {
  it('judges a target on each round’s own ratio to c-epoll', () => {
    const x50 = 'echo 64 B x50';
    const paired = (name: string, byRound: number[]) => ({
      ...row(x50, name, [...byRound].sort((a, b) => a - b)[1]!),
      by_round: { msgs_per_sec: byRound, msgs_per_server_cpu_s: byRound },
    });
    // Round by round iomux is at 0.95, 0.95 and 0.85 of c-epoll: the paired median is 0.95,
    // where the ratio of the medians (68 / 80) would say 0.85.
    const rows = [
      paired('iomux-epoll', [95, 57, 68]),
      paired('iomux-io_uring', [95, 57, 68]),
      paired('c-epoll', [100, 60, 80]),
    ];
    expect(targetLine(rows, 'echo 64 B ping-pong ×50')).toContain(
      'epoll 0.95 (0.95), io_uring 0.95 (0.95): met',
    );
  });
});

describe('bench report: a metrics figure within the noise', () => {
  const line = (metrics: unknown[]) => {
    const { markdown } = renderReport(meta, [], [], [], metrics, {});
    return markdown.split('\n').find((l) => l.startsWith('| metrics on vs off'));
  };

  it('says the run did not resolve it when its rounds fall on both sides of the goal', () => {
    const noisy = [
      { workload: 'w', on: 1, off: 1, ...pairedOverhead([110, 80, 90], [100, 100, 100]) },
    ];
    expect(line(noisy)).toContain('w 10.0%: not resolved by this run');
  });

  it('says not met when every round is over the goal', () => {
    const slow = [
      { workload: 'w', on: 1, off: 1, ...pairedOverhead([95, 90, 94], [100, 100, 100]) },
    ];
    expect(line(slow)).toMatch(/w 6\.0%: not met \|$/);
  });

  it('says not met when one workload has every round over the goal, whatever the other does', () => {
    const metrics = [
      { workload: 'a', on: 1, off: 1, ...pairedOverhead([110, 80, 90], [100, 100, 100]) },
      { workload: 'b', on: 1, off: 1, ...pairedOverhead([95, 90, 94], [100, 100, 100]) },
    ];
    expect(line(metrics)).toMatch(/a 10\.0%, b 6\.0%: not met \|$/);
  });

  it('says not run, not 0 %, when no round measured both modes', () => {
    const failed = [{ workload: 'w', on: 0, off: 0, ...pairedOverhead([{ failed: 'x' }], [100]) }];
    expect(line(failed)).toContain('not run');
    const { markdown } = renderReport(meta, [], [], [], failed, {});
    expect(markdown).toContain('| w | 0 | 0 | – | – |');
  });
});
