// What the `@iomux/core` entry shows an application, read with the TypeScript checker from the
// entry's source (what tsup bundles into dist/index.d.ts): the backend contract (the addon, the
// engine handle and their option, event and timer types) lives in `@iomux/core/backend-api` and
// must not come back into the main entry, either as an export or through the signature of
// something exported there (as `getBackend()` once returned the module with its `addon()`).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import * as backendApi from '../src/backend-api.js';
import * as core from '../src/index.js';

const src = (file: string): string => fileURLToPath(new URL(`../src/${file}`, import.meta.url));
const MAIN = src('index.ts');
const BACKEND_API = src('backend-api.ts');

/** The backend contract: exported by backend-api, never by the main entry. */
const CONTRACT = [
  'BackendModule',
  'DetachedSocket',
  'NativeAddon',
  'NativeBackendConstructor',
  'NativeBackendHandle',
  'NativeBackendOptions',
  'NativeEventCodes',
  'NativeEventsCallback',
  'PreciseTimerConstructor',
  'PreciseTimerHandle',
];
/** Internal, and not exported anywhere: the former name of BackendCounters, the reactor's metric state. */
const INTERNAL = ['NativeCounters', 'ReactorMetrics'];
/**
 * Types the main entry's public signatures may name without exporting them: the hosts a
 * Connection, Listener or UdpSocket is constructed with (typedoc.json `intentionallyNotExported`;
 * users get these objects from the reactor, never construct them).
 */
const NOT_EXPORTED_ON_PURPOSE = new Set(['ConnectionHost', 'ListenerHost', 'UdpHost']);

const program = ts.createProgram([MAIN, BACKEND_API], {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  skipLibCheck: true,
  types: ['node'],
});
const checker = program.getTypeChecker();

function exportsOf(file: string): Map<string, ts.Symbol> {
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(file)!);
  const symbols = checker.getExportsOfModule(moduleSymbol!);
  return new Map(symbols.map((s) => [s.name, s]));
}

/** `symbol` itself when it is not an alias (an `export { x } from`), else what it stands for. */
function target(symbol: ts.Symbol): ts.Symbol {
  return symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
}

function isHidden(node: ts.Node): boolean {
  const flags = ts.getCombinedModifierFlags(node as ts.Declaration);
  if (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) return true;
  const name = (node as ts.NamedDeclaration).name;
  if (name !== undefined && ts.isPrivateIdentifier(name)) return true;
  return ts.getJSDocTags(node).some((tag) => tag.tagName.text === 'internal');
}

/**
 * Names of declarations under packages/core/src that the public signatures of `declaration`
 * refer to: types in parameters, return types, property types, heritage clauses. Function bodies,
 * initializers and private or @internal members are not part of the surface and are skipped.
 */
function referencedTypes(declaration: ts.Node, found: Map<string, string>): void {
  const visit = (node: ts.Node): void => {
    if (ts.isBlock(node) || isHidden(node)) return;
    if (
      (ts.isPropertyDeclaration(node) || ts.isVariableDeclaration(node)) &&
      node.type === undefined
    )
      return;
    if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node)) {
      const at = ts.isTypeReferenceNode(node) ? node.typeName : node.expression;
      const symbol = checker.getSymbolAtLocation(at);
      const decl = symbol === undefined ? undefined : target(symbol).declarations?.[0];
      if (
        decl !== undefined &&
        !ts.isTypeParameterDeclaration(decl) &&
        decl.getSourceFile().fileName.includes('/packages/core/src/')
      )
        found.set(target(symbol!).name, declaration.getSourceFile().fileName.split('/').pop()!);
    }
    ts.forEachChild(node, (child) => {
      if (
        (ts.isPropertyDeclaration(node) || ts.isVariableDeclaration(node)) &&
        child === node.initializer
      )
        return;
      visit(child);
    });
  };
  visit(declaration);
}

describe('public surface', () => {
  const main = exportsOf(MAIN);
  const api = exportsOf(BACKEND_API);

  it('the main entry exports none of the backend contract', () => {
    const leaked = [...CONTRACT, ...INTERNAL, 'getBackendModule'].filter((n) => main.has(n));
    expect(leaked).toEqual([]);
    expect(Object.keys(core)).not.toContain('getBackendModule');
  });

  it('backend-api exports the whole contract and getBackendModule, and nothing internal', () => {
    expect(CONTRACT.filter((n) => !api.has(n))).toEqual([]);
    expect(INTERNAL.filter((n) => api.has(n))).toEqual([]);
    expect(typeof backendApi.getBackendModule).toBe('function');
  });

  it('no public signature of the main entry names a type the main entry does not export', () => {
    const exported = new Set([...main.values()].map((s) => target(s)));
    const exportedNames = new Set([...exported].map((s) => s.name));
    const referenced = new Map<string, string>();
    for (const symbol of exported)
      for (const declaration of symbol.declarations ?? []) referencedTypes(declaration, referenced);
    const missing = [...referenced]
      .filter(([name]) => !exportedNames.has(name) && !NOT_EXPORTED_ON_PURPOSE.has(name))
      .map(([name, file]) => `${name} (referenced from ${file})`);
    expect(missing).toEqual([]);
  });

  it('the package serves backend-api through its exports map (built by pnpm build)', async () => {
    // Resolved as a consumer resolves it: the package's own name, through "exports".
    const require = createRequire(import.meta.url);
    const cjs = require.resolve('@iomux/core/backend-api');
    expect(cjs).toMatch(/dist\/backend-api\.cjs$/);
    for (const built of ['.js', '.d.ts', '.d.cts'])
      expect(existsSync(cjs.replace(/\.cjs$/, built)), `dist/backend-api${built}`).toBe(true);
    const esm = (await import(cjs.replace(/\.cjs$/, '.js'))) as Record<string, unknown>;
    expect(Object.keys(esm)).toEqual(['getBackendModule']);
  });

  it('getBackend() and listBackends() answer with plain status data', () => {
    const status = core.getBackend('select');
    expect(Object.keys(status).sort()).toEqual(
      status.emulation === undefined
        ? ['available', 'cause', 'name']
        : ['available', 'cause', 'emulation', 'name'],
    );
    expect(core.listBackends().map((b) => b.name)).toEqual([...core.BACKEND_NAMES]);
    expect(() => core.getBackend('nope' as core.BackendName)).toThrow(
      expect.objectContaining({
        code: 'IOMUX_INVALID_ARGUMENT',
        message: expect.stringMatching(/^backend must be one of epoll, .*, got nope$/) as string,
      }) as Error,
    );
  });
});
