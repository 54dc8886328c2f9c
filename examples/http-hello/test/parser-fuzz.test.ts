// Fuzzing the HTTP/1.1 parser (fast-check; IOMUX_FUZZ_RUNS, default 1000 per property): valid
// pipelined requests, mutated ones and random bytes, fed whole and in random pieces. The parser
// never throws, and the pieces give the same requests and the same error as the whole input.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HttpParser, type HttpRequest } from '../parser.mjs';

const runs = Number(process.env.IOMUX_FUZZ_RUNS ?? 1000);

interface Outcome {
  requests: string[];
  error: string | undefined;
}

function summary(req: HttpRequest): string {
  return JSON.stringify(req, (key, v: unknown) =>
    Buffer.isBuffer(v) ? v.toString('latin1') : key === 'raw' ? undefined : v,
  );
}

function feed(input: Buffer, cuts: number[]): Outcome {
  const parser = new HttpParser({ maxHeaderBytes: 4096, maxBodyBytes: 8192 });
  const requests: HttpRequest[] = [];
  let at = 0;
  for (const cut of [...cuts.map((c) => c % (input.length + 1))].sort((a, b) => a - b)) {
    requests.push(...parser.execute(input.subarray(at, Math.max(at, cut))));
    at = Math.max(at, cut);
  }
  requests.push(...parser.execute(input.subarray(at)));
  const error = parser.error as { status: number } | undefined;
  return { requests: requests.map(summary), error: error ? String(error.status) : undefined };
}

const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,12}$/);
const request = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'DELETE'),
    path: fc.stringMatching(/^\/[a-z0-9/?=&]{0,20}$/),
    headers: fc.array(fc.tuple(token, fc.stringMatching(/^[ -~]{0,30}$/)), { maxLength: 6 }),
    body: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: undefined }),
    chunked: fc.boolean(),
  })
  .map(({ method, path, headers, body, chunked }) => {
    const lines = [
      `${method} ${path} HTTP/1.1`,
      'Host: fuzz',
      ...headers.map(([k, v]) => `${k}: ${v}`),
    ];
    let payload = Buffer.alloc(0);
    if (body !== undefined && chunked) {
      lines.push('Transfer-Encoding: chunked');
      const b = Buffer.from(body);
      payload = Buffer.concat([
        Buffer.from(b.length > 0 ? `${b.length.toString(16)}\r\n` : '', 'latin1'),
        b,
        Buffer.from(b.length > 0 ? '\r\n0\r\n\r\n' : '0\r\n\r\n', 'latin1'),
      ]);
    } else if (body !== undefined) {
      lines.push(`Content-Length: ${body.length}`);
      payload = Buffer.from(body);
    }
    return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
  });

const cuts = fc.array(fc.nat(), { maxLength: 12 });

describe('HttpParser under fuzzing', () => {
  it('pipelined valid requests: all parsed, the same in any pieces', () => {
    fc.assert(
      fc.property(fc.array(request, { minLength: 1, maxLength: 5 }), cuts, (reqs, pieces) => {
        const input = Buffer.concat(reqs);
        const whole = feed(input, []);
        expect(whole.error).toBeUndefined();
        expect(whole.requests.length).toBe(reqs.length);
        expect(feed(input, pieces)).toEqual(whole);
      }),
      { numRuns: runs },
    );
  });

  it('mutated requests: never a throw, and the same outcome in any pieces', () => {
    fc.assert(
      fc.property(
        fc.array(request, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        cuts,
        (reqs, flips, pieces) => {
          const input = Buffer.concat(reqs);
          for (const [at, byte] of flips) input[at % input.length] = byte;
          expect(feed(input, pieces)).toEqual(feed(input, []));
        },
      ),
      { numRuns: runs },
    );
  });

  it('random bytes: never a throw, and the same outcome in any pieces', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), cuts, (bytes, pieces) => {
        const input = Buffer.from(bytes);
        expect(feed(input, pieces)).toEqual(feed(input, []));
      }),
      { numRuns: runs },
    );
  });
});
