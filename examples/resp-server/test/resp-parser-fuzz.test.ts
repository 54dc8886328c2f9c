// Fuzzing the RESP parser (fast-check; IOMUX_FUZZ_RUNS, default 1000 per property): valid
// multibulk and inline commands, mutated ones and random bytes, fed whole and in random pieces.
// The parser never throws, valid commands come back exactly, and the pieces give the same
// commands and the same error as the whole input.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RespParser, splitInline } from '../resp-parser.mjs';

const runs = Number(process.env.IOMUX_FUZZ_RUNS ?? 1000);

function feed(input: Buffer, cuts: number[]): { commands: string[][]; error: string | undefined } {
  const parser = new RespParser();
  const commands: Buffer[][] = [];
  let at = 0;
  for (const cut of cuts.map((c) => c % (input.length + 1)).sort((a, b) => a - b)) {
    commands.push(...parser.execute(input.subarray(at, Math.max(at, cut))));
    at = Math.max(at, cut);
  }
  commands.push(...parser.execute(input.subarray(at)));
  const error = parser.error as Error | undefined;
  return {
    commands: commands.map((c) => c.map((b) => b.toString('latin1'))),
    error: error?.message,
  };
}

const arg = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
const command = fc.array(arg, { minLength: 1, maxLength: 6 });
const encode = (args: Buffer[]): Buffer =>
  Buffer.concat([
    Buffer.from(`*${args.length}\r\n`, 'latin1'),
    ...args.flatMap((a) => [Buffer.from(`$${a.length}\r\n`, 'latin1'), a, Buffer.from('\r\n')]),
  ]);
const cuts = fc.array(fc.nat(), { maxLength: 12 });

describe('RespParser under fuzzing', () => {
  it('valid multibulk commands come back exactly, in any pieces', () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 5 }), cuts, (cmds, pieces) => {
        const out = feed(Buffer.concat(cmds.map(encode)), pieces);
        expect(out.error).toBeUndefined();
        expect(out.commands).toEqual(cmds.map((c) => c.map((b) => b.toString('latin1'))));
      }),
      { numRuns: runs },
    );
  });

  it('mutated commands: never a throw, and the same outcome in any pieces', () => {
    fc.assert(
      fc.property(
        fc.array(command, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        cuts,
        (cmds, flips, pieces) => {
          const input = Buffer.concat(cmds.map(encode));
          for (const [at, byte] of flips) input[at % input.length] = byte;
          expect(feed(input, pieces)).toEqual(feed(input, []));
        },
      ),
      { numRuns: runs },
    );
  });

  it('an inline line gives the words splitInline gives, quoted or not', () => {
    // Lines without a quote are split in place; splitInline, which decodes quotes, is the
    // reference for every line.
    const byte = fc.constantFrom(32, 9, 11, 12, 13, 0, 65, 66, 120, 0xff, 92, 34, 39);
    const lines = fc.array(fc.oneof(byte, fc.integer({ min: 0, max: 255 })), { maxLength: 60 });
    fc.assert(
      fc.property(lines, (bytes) => {
        const line = Buffer.from(bytes.filter((b) => b !== 10 && b !== 42));
        const words = splitInline(line.toString('latin1'));
        const out = feed(Buffer.concat([line, Buffer.from('\n')]), []);
        if (words === undefined) {
          expect(out.error).toBe('Protocol error: unbalanced quotes in request');
        } else {
          expect(out).toEqual({ commands: words.length > 0 ? [words] : [], error: undefined });
        }
      }),
      { numRuns: runs * 10 },
    );
  });

  it('random bytes and inline commands: never a throw, the same outcome in any pieces', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), cuts, (bytes, pieces) => {
        const input = Buffer.from(bytes);
        expect(feed(input, pieces)).toEqual(feed(input, []));
      }),
      { numRuns: runs },
    );
  });
});
