import { describe, expect, it } from 'vitest';
import { HttpParser, type HttpRequest } from '../parser.mjs';

const GET = 'GET / HTTP/1.1\r\nHost: example\r\n\r\n';

function parseAll(input: string | Buffer, parser = new HttpParser()): HttpRequest[] {
  return parser.execute(typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
}

function byteByByte(input: string, parser = new HttpParser()): HttpRequest[] {
  const bytes = Buffer.from(input, 'latin1');
  const out: HttpRequest[] = [];
  for (let i = 0; i < bytes.length; i += 1) out.push(...parser.execute(bytes.subarray(i, i + 1)));
  return out;
}

function errorOf(input: string): { status: number; message: string } | undefined {
  const parser = new HttpParser();
  parser.execute(Buffer.from(input, 'latin1'));
  return parser.error;
}

describe('HttpParser', () => {
  it('parses a request line and headers', () => {
    const [req] = parseAll(
      'GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Thing:  v 1 \r\nx-thing: v2\r\n\r\n',
    );
    expect(req).toMatchObject({
      method: 'GET',
      target: '/a/b?x=1',
      path: '/a/b',
      versionMinor: 1,
      keepAlive: true,
    });
    expect(req?.headers.host).toBe('h');
    expect(req?.headers['x-thing']).toBe('v 1, v2');
    expect(req?.body.length).toBe(0);
  });

  it('keeps fields named like Object.prototype members as plain fields', () => {
    const [req] = parseAll(
      'GET / HTTP/1.1\r\nHost: h\r\n__proto__: p\r\nConstructor: c\r\ntoString: t\r\n\r\n',
    );
    const headers = req!.headers;
    expect(headers.__proto__).toBe('p');
    expect(headers.constructor).toBe('c');
    expect(headers.tostring).toBe('t');
    expect(Object.keys(headers)).toEqual(['host', '__proto__', 'constructor', 'tostring']);
    expect(headers.connection).toBeUndefined();
    expect('hasOwnProperty' in headers).toBe(false);
  });

  it('gives each request its own field values when a connection changes them', () => {
    const parser = new HttpParser();
    const head = (host: string, agent: string) =>
      `GET / HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: ${agent}\r\nX-Other: ${host}\r\n\r\n`;
    const requests = [
      ...parseAll(head('a.example', 'one') + head('a.example', 'one'), parser),
      ...parseAll(head('b.example', 'one') + head('a.exampl', 'on'), parser),
      ...parseAll(head('a.examplf', 'One'), parser),
    ];
    expect(
      requests.map((r) => [r.headers.host, r.headers['user-agent'], r.headers['x-other']]),
    ).toEqual([
      ['a.example', 'one', 'a.example'],
      ['a.example', 'one', 'a.example'],
      ['b.example', 'one', 'b.example'],
      ['a.exampl', 'on', 'a.exampl'],
      ['a.examplf', 'One', 'a.examplf'],
    ]);
  });

  it('returns every request of a pipelined read, in order', () => {
    const input = Array.from(
      { length: 10 },
      (_, i) => `GET /${i} HTTP/1.1\r\nHost: h\r\n\r\n`,
    ).join('');
    const requests = parseAll(input);
    expect(requests.map((r) => r.path)).toEqual(Array.from({ length: 10 }, (_, i) => `/${i}`));
  });

  it('resumes a request split byte by byte, body included', () => {
    const input =
      'POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello' +
      GET +
      'POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n';
    const requests = byteByByte(input);
    expect(requests.map((r) => [r.method, r.body.toString()])).toEqual([
      ['POST', 'hello'],
      ['GET', ''],
      ['POST', 'abcde'],
    ]);
  });

  it('checks trailer lines as header lines, and refuses a bad one with its reason', () => {
    const chunked = (trailer: string) =>
      `POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n${trailer}\r\n\r\n`;
    expect(parseAll(chunked('X-Sum:  7 \t')).map((r) => r.body.toString())).toEqual(['a']);
    expect(errorOf(chunked('no colon'))).toMatchObject({ status: 400, message: 'bad header line' });
    expect(errorOf(chunked('X Sum: 7'))).toMatchObject({ status: 400, message: 'bad header name' });
    expect(errorOf(chunked('X-Sum: 7\x7f'))).toMatchObject({
      status: 400,
      message: 'bad value in header X-Sum',
    });
  });

  it('ignores empty lines before a request', () => {
    expect(parseAll(`\r\n\r\n${GET}`)).toHaveLength(1);
    const parser = new HttpParser();
    expect(parser.execute(Buffer.from('\r'))).toHaveLength(0);
    expect(parser.execute(Buffer.from(`\n${GET}`))).toHaveLength(1);
  });

  it('applies keep-alive rules of HTTP/1.1 and HTTP/1.0', () => {
    expect(parseAll(GET)[0]?.keepAlive).toBe(true);
    expect(parseAll('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')[0]?.keepAlive).toBe(
      false,
    );
    expect(parseAll('GET / HTTP/1.0\r\n\r\n')[0]?.keepAlive).toBe(false);
    const keep = parseAll('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n')[0];
    expect(keep?.keepAlive).toBe(true);
    expect(keep?.versionMinor).toBe(0);
  });

  it('stops after a request that closes the connection', () => {
    const parser = new HttpParser();
    const requests = parser.execute(
      Buffer.from(`GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n${GET}garbage\r\n\r\n`),
    );
    expect(requests).toHaveLength(1);
    expect(parser.error).toBeUndefined();
    expect(parser.execute(Buffer.from(GET))).toHaveLength(0);
  });

  it('keeps the requests completed before a malformed one', () => {
    const parser = new HttpParser();
    const requests = parser.execute(Buffer.from(`${GET}${GET}BROKEN\r\n\r\n${GET}`));
    expect(requests).toHaveLength(2);
    expect(parser.error?.status).toBe(400);
  });

  it.each([
    ['a bad request line', 'GET /\r\nHost: h\r\n\r\n'],
    ['two spaces in the request line', 'GET  / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['a bad method', 'G(T / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['a bad version', 'GET / HTTP/1.1x\r\nHost: h\r\n\r\n'],
    ['a control character in the target', 'GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['a missing Host in HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n'],
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['whitespace before the colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n'],
    ['obsolete line folding', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n'],
    ['a bare LF inside the head', 'GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n'],
    ['a non-numeric Content-Length', `GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n`],
    ['a negative Content-Length', `GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n`],
    [
      'conflicting Content-Length headers',
      'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
    ],
    [
      'Content-Length with Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
    ['chunked not last', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'],
    ['Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['a bad chunk size', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    [
      'chunk data without CRLF',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc',
    ],
  ])('refuses %s with 400', (_, input) => {
    expect(errorOf(input)?.status).toBe(400);
  });

  it('accepts repeated identical Content-Length values', () => {
    const [req] = parseAll(
      'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok',
    );
    expect(req?.body.toString()).toBe('ok');
  });

  it('refuses a head larger than 8 KiB, with or without its end in sight', () => {
    const big = `GET / HTTP/1.1\r\nHost: h\r\nX: ${'a'.repeat(8200)}`;
    expect(errorOf(big)?.message).toMatch(/larger than 8192/);
    expect(errorOf(`${big}\r\n\r\n`)?.status).toBe(400);
    const parser = new HttpParser();
    byteByByte(big.slice(0, 9000), parser);
    expect(parser.error?.status).toBe(400);
    // Just under the limit is fine.
    const fits = `GET / HTTP/1.1\r\nHost: h\r\nX: ${'a'.repeat(8100)}\r\n\r\n`;
    expect(Buffer.byteLength(fits)).toBeLessThanOrEqual(8192);
    expect(parseAll(fits)).toHaveLength(1);
  });

  it('answers 413 to a body over the limit, 501 to unknown codings, 505 to HTTP/2', () => {
    expect(
      errorOf(`POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n`)?.status,
    ).toBe(413);
    expect(
      errorOf('POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n')?.status,
    ).toBe(501);
    expect(errorOf('GET / HTTP/2.0\r\nHost: h\r\n\r\n')?.status).toBe(505);
    const parser = new HttpParser({ maxBodyBytes: 4 });
    parser.execute(
      Buffer.from(
        'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\n',
      ),
    );
    expect(parser.error?.status).toBe(413);
  });

  it('asks for 100 Continue once, while the body is awaited', () => {
    const parser = new HttpParser();
    parser.execute(
      Buffer.from(
        'POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n',
      ),
    );
    expect(parser.takeContinue()).toBe(true);
    expect(parser.takeContinue()).toBe(false);
    expect(parser.execute(Buffer.from('abc'))[0]?.body.toString()).toBe('abc');
  });

  it('derives the path of absolute-form and asterisk targets', () => {
    expect(parseAll('GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n')[0]?.path).toBe('/x');
    expect(parseAll('OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n')[0]?.path).toBe('*');
  });

  it('reports idle only between requests', () => {
    const parser = new HttpParser();
    expect(parser.idle).toBe(true);
    parser.execute(Buffer.from('GET / HT'));
    expect(parser.idle).toBe(false);
    parser.execute(Buffer.from('TP/1.1\r\nHost: h\r\n\r\n'));
    expect(parser.idle).toBe(true);
  });
});
