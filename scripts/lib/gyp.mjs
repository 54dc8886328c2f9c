// Reading binding.gyp / common.gypi outside gyp, for the builds that drive a compiler directly
// (pnpm check:kqueue, pnpm build:prebuilds): source lists and settings come from the gyp files, never
// a copy.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Parses a .gyp / .gypi file: a Python literal with # comments. */
export function readGyp(path) {
  const text = readFileSync(path, 'utf8');
  const program = `import ast, json, sys, io, tokenize
src = sys.stdin.read()
toks = [t for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type != tokenize.COMMENT]
print(json.dumps(ast.literal_eval(tokenize.untokenize(toks))))`;
  const result = spawnSync('python3', ['-c', program], { input: text, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`cannot parse ${path}: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

/** A target's settings with the `conditions` that hold for gyp's OS name applied. */
export function settingsFor(target, os) {
  const out = {
    sources: [...(target.sources ?? [])],
    include_dirs: [...(target.include_dirs ?? [])],
  };
  for (const [condition, then, otherwise] of target.conditions ?? []) {
    const match = /^OS=='(\w+)'( or OS=='(\w+)')*$/.test(condition.trim())
      ? [...condition.matchAll(/OS=='(\w+)'/g)].some((m) => m[1] === os)
      : undefined;
    if (match === undefined) continue; // not an OS condition (e.g. IOMUX_SANITIZE): not ours
    const branch = match ? then : otherwise;
    if (branch === undefined) continue;
    out.sources.push(...(branch.sources ?? []));
    out.include_dirs.push(...(branch.include_dirs ?? []));
  }
  return out;
}

/** The addons of a package for `os`: sources of each loadable target plus its static libraries. */
export function addonsOf(packageDir, os) {
  const gyp = readGyp(join(packageDir, 'binding.gyp'));
  const byName = new Map(gyp.targets.map((t) => [t.target_name, t]));
  const addons = [];
  for (const target of gyp.targets) {
    if (target.type === 'static_library') continue;
    const own = settingsFor(target, os);
    const sources = [];
    const includes = [];
    for (const dep of target.dependencies ?? []) {
      const lib = settingsFor(byName.get(dep), os);
      sources.push(...lib.sources);
      includes.push(...lib.include_dirs);
    }
    sources.push(...own.sources);
    includes.push(...own.include_dirs);
    addons.push({
      name: target.target_name,
      sources: sources.map((s) => resolve(packageDir, s)),
      includes: includes.map((s) => resolve(packageDir, s)),
    });
  }
  return addons;
}
