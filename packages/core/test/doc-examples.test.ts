// Every ```ts block under an `@example` tag in packages/core/src is compiled against the real
// API (the sources, strict, as tsconfig.base.json), so an example that names a method, option or
// field that does not exist, or passes the wrong type, fails here instead of misleading a reader.
// An example may use a few names the reader is assumed to hold (`reactor`, `conn`, ...; see
// PRELUDE) and names of their own program (`encodeState(world)`): a name declared nowhere is not
// reported, everything typed is.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));
const HERE = fileURLToPath(new URL('./', import.meta.url));

/** The objects an example may use without creating them (it may also shadow them). */
const PRELUDE = `import type * as iomux from '../src/index.js';
declare const reactor: iomux.Reactor;
declare const conn: iomux.Connection;
declare const listener: iomux.Listener;
declare const socket: iomux.UdpSocket;
declare const pool: iomux.WorkerPool;
`;

/**
 * Diagnostics of a name no one declared (the example's own program, not the API): cannot find
 * name, shorthand property with no value in scope.
 */
const UNDECLARED = new Set([2304, 2552, 2582, 18004]);

interface Example {
  where: string;
  code: string;
}

function examples(): Example[] {
  const found: Example[] = [];
  for (const file of readdirSync(SRC).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(SRC + file, 'utf8');
    const tag = /^\s*\* @example\n\s*\* ```ts\n([\s\S]*?)^\s*\* ```$/gm;
    for (let m = tag.exec(text); m !== null; m = tag.exec(text)) {
      const line = text.slice(0, m.index).split('\n').length + 1;
      const code = m[1]!.replace(/^\s*\* ?/gm, '');
      found.push({ where: `${file}:${line}`, code });
    }
  }
  return found;
}

/** The example as a module: its imports (pointed at the sources) first, its body in a block. */
function asModule(code: string): string {
  const lines = code.split('\n');
  const imports: string[] = [];
  const body: string[] = [];
  let inImport = false;
  for (const line of lines) {
    if (line.startsWith('import ') || inImport) {
      imports.push(
        line
          .replace(/'@iomux\/core'/, "'../src/index.js'")
          .replace(/'@iomux\/core\/([a-z-]+)'/, "'../src/$1.js'"),
      );
      inImport = !/from '[^']+';$|^import '[^']+';$/.test(line);
    } else body.push(line);
  }
  // A module of its own (a worker file: top-level exports) stays as written, without the prelude.
  if (body.some((line) => line.startsWith('export ')))
    return `${imports.join('\n')}\n${body.join('\n')}\n`;
  return `${imports.join('\n')}\n${PRELUDE}\n{\n${body.join('\n')}\n}\nexport {};\n`;
}

describe('doc examples', () => {
  const all = examples();

  it('finds the examples', () => {
    expect(all.length).toBeGreaterThan(20);
  });

  it('every @example compiles against the API', () => {
    const files = new Map(all.map((e, i) => [`${HERE}doc-example-${i}.ts`, e]));
    const options: ts.CompilerOptions = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2022.d.ts'],
      types: ['node'],
      strict: true,
      // A callback passed to a name the example does not declare has untyped parameters.
      noImplicitAny: false,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      skipLibCheck: true,
      noEmit: true,
    };
    const host = ts.createCompilerHost(options);
    const readFile = host.readFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    const getSourceFile = host.getSourceFile.bind(host);
    host.readFile = (name) => {
      const e = files.get(name);
      return e === undefined ? readFile(name) : asModule(e.code);
    };
    host.fileExists = (name) => files.has(name) || fileExists(name);
    host.getSourceFile = (name, language, ...rest) => {
      const e = files.get(name);
      return e === undefined
        ? getSourceFile(name, language, ...rest)
        : ts.createSourceFile(name, asModule(e.code), language, true);
    };
    const program = ts.createProgram([...files.keys()], options, host);
    const problems: string[] = [];
    for (const [name, e] of files) {
      const source = program.getSourceFile(name)!;
      for (const d of [
        ...program.getSyntacticDiagnostics(source),
        ...program.getSemanticDiagnostics(source),
      ]) {
        if (UNDECLARED.has(d.code)) continue;
        problems.push(`${e.where}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      }
    }
    expect(problems).toEqual([]);
  });
});
