import { describe, expect, it } from 'vitest';
import { packName } from '../commands.mjs';
import { RespParser, splitInline } from '../resp-parser.mjs';
import { Store } from '../store.mjs';

const multibulk = (...args: string[]): string =>
  `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

const strings = (commands: Buffer[][]): string[][] =>
  commands.map((c) => c.map((b) => b.toString('latin1')));

/** Bytes in an ArrayBuffer of their own (not Node's shared pool), so tests can tell who holds them. */
function unpooled(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  bytes.write(text);
  return bytes;
}

function errorOf(input: string | Buffer, parser = new RespParser()): string | undefined {
  parser.execute(typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
  return parser.error?.message;
}

describe('RespParser', () => {
  it('parses multibulk commands, several per read', () => {
    const parser = new RespParser();
    const commands = parser.execute(
      Buffer.from(multibulk('SET', 'k', 'v') + multibulk('GET', 'k') + multibulk('PING')),
    );
    expect(strings(commands)).toEqual([['SET', 'k', 'v'], ['GET', 'k'], ['PING']]);
    expect(parser.bufferedBytes).toBe(0);
  });

  it('resumes commands split byte by byte', () => {
    const input = Buffer.from(
      multibulk('SET', 'key', 'a value\r\nwith CRLF') + 'PING\r\n' + multibulk('GET', 'key'),
    );
    const parser = new RespParser();
    const commands: Buffer[][] = [];
    for (let i = 0; i < input.length; i += 1)
      commands.push(...parser.execute(input.subarray(i, i + 1)));
    expect(strings(commands)).toEqual([
      ['SET', 'key', 'a value\r\nwith CRLF'],
      ['PING'],
      ['GET', 'key'],
    ]);
    expect(parser.error).toBeUndefined();
  });

  it('gathers a big bulk string across reads and joins it once', () => {
    const value = Buffer.alloc(300_000, 'x');
    const input = Buffer.concat([
      Buffer.from(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${value.length}\r\n`),
      value,
      Buffer.from(`\r\n${multibulk('GET', 'k')}`),
    ]);
    const parser = new RespParser();
    const commands: Buffer[][] = [];
    for (let i = 0; i < input.length; i += 65_536)
      commands.push(...parser.execute(input.subarray(i, i + 65_536)));
    expect(commands).toHaveLength(2);
    expect(commands[0]?.[2]?.equals(value)).toBe(true);
    expect(strings([commands[1] ?? []])).toEqual([['GET', 'k']]);
  });

  it('reads arguments in place: keys, copies that share nothing, views, and releases the read', () => {
    const chunk = unpooled(multibulk('SET', 'k\xff', 'value') + multibulk('GET', 'k') + '*2\r\n');
    const parser = new RespParser();
    expect(parser.parse(chunk)).toBe(2);
    const set = parser.command(0);
    expect(set.length).toBe(3);
    expect(set.key(1)).toBe('k\xc3\xbf'); // one char per byte of the UTF-8 'ÿ'
    const copy = set.copy(2);
    expect(set.view(2).buffer).toBe(chunk.buffer);
    chunk.fill(0); // the runtime may reuse a read's memory: the copy must not change with it
    expect(copy.toString()).toBe('value');
    chunk.set(Buffer.from(multibulk('SET', 'k\xff', 'value') + multibulk('GET', 'k') + '*2\r\n'));
    const get = parser.command(1);
    expect(get.toArray().map(String)).toEqual(['GET', 'k']);
    parser.release();
    // Only the unfinished command's bytes stay referenced (here none: its header is parsed).
    expect(parser.sources.some((source) => source.buffer === chunk.buffer)).toBe(false);
    expect(parser.parse(Buffer.from('$4\r\nPING\r\n$2\r\nhi\r\n'))).toBe(1);
    expect(parser.command(0).toArray().map(String)).toEqual(['PING', 'hi']);
  });

  it('keeps the finished arguments of an unfinished command across reads, and only those', () => {
    const parser = new RespParser();
    const first = unpooled(multibulk('PING') + '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva');
    expect(parser.parse(first)).toBe(1);
    parser.release();
    expect(parser.argCount).toBe(2); // SET and k, still views of `first`
    expect(parser.sources.some((source) => source.buffer === first.buffer)).toBe(true);
    expect(parser.parse(Buffer.from('lue\r\n'))).toBe(1);
    expect(parser.command(0).toArray().map(String)).toEqual(['SET', 'k', 'value']);
    parser.release();
    expect(parser.argCount).toBe(0);
    expect(parser.sources.some((source) => source.buffer === first.buffer)).toBe(false);
  });

  it('hands a joined big argument over without another copy, exactly its bytes', () => {
    const value = Buffer.alloc(100_000, 'y');
    const parser = new RespParser();
    parser.parse(
      Buffer.concat([
        Buffer.from(`*2\r\n$4\r\nECHO\r\n$${value.length}\r\n`),
        value.subarray(0, 10),
      ]),
    );
    expect(parser.parse(Buffer.concat([value.subarray(10), Buffer.from('\r\n')]))).toBe(1);
    const args = parser.command(0);
    const kept = args.copy(1);
    expect(kept.length).toBe(value.length);
    expect(kept.equals(value)).toBe(true);
    expect(kept.buffer).toBe(args.bytesOf(1).buffer); // the joined Buffer itself
  });

  it('packs command names case-insensitively and refuses non-letters and long names', () => {
    const pack = (name: string): number => packName(Buffer.from(name, 'latin1'), 0, name.length);
    expect(pack('GET')).toBe(pack('get'));
    expect(pack('GeT')).toBe(pack('get'));
    expect(pack('get')).not.toBe(pack('set'));
    expect(pack('ab')).not.toBe(pack('ba'));
    expect(pack('flushall')).toBeGreaterThan(0);
    // '@' | 0x20 is '`', not a letter; digits and a NUL are refused too, as is an empty name.
    for (const name of ['G@T', 'GE1', 'GE\0', '', 'a'.repeat(11)]) expect(pack(name)).toBe(-1);
    expect(pack('a'.repeat(10))).toBeLessThan(2 ** 53);
  });

  it('parses inline commands with quotes and escapes', () => {
    const parser = new RespParser();
    const commands = parser.execute(
      Buffer.from("PING\r\nSET k \"a b\\x41\\n\" \r\n\r\n  ECHO 'it\\'s'\nget k\r\n"),
    );
    expect(strings(commands)).toEqual([
      ['PING'],
      ['SET', 'k', 'a bA\n'],
      ['ECHO', "it's"],
      ['get', 'k'],
    ]);
    expect(splitInline('"unterminated')).toBeUndefined();
    expect(splitInline('"a"b')).toBeUndefined();
    expect(splitInline('  ')).toEqual([]);
  });

  it('reads the words of an inline command without quotes in place, split at any whitespace', () => {
    const chunk = unpooled('SET  k\tv\x0b\x0cw \r\n \t\r\nPING\n' + `ECHO ${'x'.repeat(100)}\r\n`);
    const parser = new RespParser();
    expect(parser.parse(chunk)).toBe(3);
    const set = parser.command(0);
    expect(set.toArray().map(String)).toEqual(['SET', 'k', 'v', 'w']);
    expect(set.view(2).buffer).toBe(chunk.buffer);
    const copy = set.copy(3);
    chunk.fill(0); // as for multibulk arguments, a copy shares nothing with the read
    expect(copy.toString()).toBe('w');
    chunk.set(Buffer.from('SET  k\tv\x0b\x0cw \r\n \t\r\nPING\n' + `ECHO ${'x'.repeat(100)}\r\n`));
    expect(parser.command(1).toArray().map(String)).toEqual(['PING']);
    expect(parser.command(2).toArray().map(String)).toEqual(['ECHO', 'x'.repeat(100)]);
  });

  it('finds a header line end past a lone CR and past 32 bytes as indexOf does', () => {
    // A CR that no LF follows is part of the line: the count is then not a number.
    expect(errorOf('*3\rX\r\n')).toBe('Protocol error: invalid multibulk length');
    expect(errorOf('*1\r\n$3\r7\r\nGET\r\n')).toBe('Protocol error: invalid bulk length');
    // A header line longer than the short scan: still found, still checked.
    expect(errorOf(`*${'1'.repeat(40)}\r\n`)).toBe('Protocol error: invalid multibulk length');
    const parser = new RespParser();
    expect(strings(parser.execute(Buffer.from(`*01\r\n`, 'latin1')))).toEqual([]);
    expect(parser.error?.message).toBe('Protocol error: invalid multibulk length');
    // A CR at the end of one read, its LF at the start of the next.
    const split = new RespParser();
    expect(split.execute(Buffer.from('*1\r', 'latin1'))).toEqual([]);
    expect(strings(split.execute(Buffer.from('\n$4\r\nPING\r\n', 'latin1')))).toEqual([['PING']]);
  });

  it('skips empty multibulk requests', () => {
    expect(
      strings(new RespParser().execute(Buffer.from(`*0\r\n*-1\r\n${multibulk('PING')}`))),
    ).toEqual([['PING']]);
  });

  it('keeps commands completed before a protocol error', () => {
    const parser = new RespParser();
    const commands = parser.execute(
      Buffer.from(`${multibulk('PING')}*1\r\n+PING\r\n${multibulk('PING')}`),
    );
    expect(commands).toHaveLength(1);
    expect(parser.error?.message).toBe("Protocol error: expected '$', got '+'");
    expect(parser.execute(Buffer.from(multibulk('PING')))).toHaveLength(0);
  });

  it.each([
    ['*x\r\n', 'Protocol error: invalid multibulk length'],
    ['*01\r\n', 'Protocol error: invalid multibulk length'],
    [`*${1024 * 1024 + 1}\r\n`, 'Protocol error: invalid multibulk length'],
    ['*1\r\n$-1\r\n', 'Protocol error: invalid bulk length'],
    ['*1\r\n$abc\r\n', 'Protocol error: invalid bulk length'],
    [`*1\r\n$${512 * 1024 * 1024 + 1}\r\n`, 'Protocol error: invalid bulk length'],
    ['*1\r\n$3\r\nabcd\r\n', 'Protocol error: expected CRLF after bulk data'],
    ['*1\r\n:1\r\n', "Protocol error: expected '$', got ':'"],
    ['SET "a\r\n', 'Protocol error: unbalanced quotes in request'],
  ])('refuses %j', (input, message) => {
    expect(errorOf(input)).toBe(message);
  });

  it('accepts a bulk string of exactly 512 MiB by its header', () => {
    const parser = new RespParser();
    parser.execute(Buffer.from(`*2\r\n$3\r\nSET\r\n$${512 * 1024 * 1024}\r\n`));
    expect(parser.error).toBeUndefined();
  });

  it('bounds inline requests and length lines at 64 KiB', () => {
    expect(errorOf('A'.repeat(70_000))).toBe('Protocol error: too big inline request');
    expect(errorOf(`*${'1'.repeat(70_000)}`)).toBe('Protocol error: too big mbulk count string');
    expect(errorOf(`*1\r\n$${'1'.repeat(70_000)}`)).toBe(
      'Protocol error: too big bulk count string',
    );
  });

  it('bounds the bytes one connection may hold', () => {
    const parser = new RespParser({ maxQueryBufferBytes: 100_000 });
    // A bulk string longer than the limit is refused by its header...
    expect(errorOf(`*2\r\n$3\r\nSET\r\n$200000\r\n`, parser)).toMatch(/query buffer limit/);
    // ...and many small arguments of one unfinished command are refused as they pile up.
    const piling = new RespParser({ maxQueryBufferBytes: 100_000 });
    piling.execute(Buffer.from('*100000\r\n'));
    for (let i = 0; i < 200 && piling.error === undefined; i += 1)
      piling.execute(Buffer.from(`$1000\r\n${'v'.repeat(1000)}\r\n`));
    expect(piling.error?.message).toMatch(/query buffer limit of 100000 bytes exceeded/);
  });
});

describe('Store', () => {
  it('expires lazily and by sweep, in deadline order', () => {
    const store = new Store();
    const now = 1_000_000;
    const deadlines: number[] = [];
    for (let i = 0; i < 5000; i += 1) {
      const at = now + ((i * 7919) % 1000) + 1;
      deadlines.push(at);
      store.set(`k${i}`, Buffer.from('v'), at);
    }
    store.set('forever', Buffer.from('v'), 0);
    store.set('k0', Buffer.from('v'), 0); // overwritten without expiry: its old deadline is stale
    expect(store.lookup('k1', now + 2000)).toBeUndefined(); // lazy
    const dropped = store.sweep(now + 500, 1000);
    expect(dropped).toBe(deadlines.filter((d, i) => i > 1 && d <= now + 500).length);
    store.sweep(now + 1001, 1000);
    expect(store.size).toBe(2);
    expect(store.volatile).toBe(0);
    expect(store.lookup('k0', now + 5000)).toBeDefined();
  });
});
