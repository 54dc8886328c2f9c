// The external load tools `pnpm bench` drives: wrk (http section) and redis-benchmark plus a real
// redis-server (resp section). Found on PATH, or installed from the Debian packages when that can
// be done without asking anyone: running as root, no terminal on stdin, apt-get present. Otherwise
// the sections that need a missing tool are skipped, by name, with the command that installs it.
import { spawnSync } from 'node:child_process';

/** Each tool, the Debian package that ships it, and the bench sections that need it. */
export const TOOLS = {
  wrk: { pkg: 'wrk', sections: ['http'] },
  'redis-benchmark': { pkg: 'redis-tools', sections: ['resp'] },
  'redis-server': { pkg: 'redis-server', sections: ['resp'] },
};

const onPath = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

/** Runs an apt-get step with its output shown; returns whether it succeeded. */
function apt(args) {
  console.log(`bench tools: apt-get ${args.join(' ')}`);
  const run = spawnSync('apt-get', args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (run.error !== undefined) console.log(`bench tools: apt-get failed: ${run.error.message}`);
  return run.status === 0;
}

/**
 * Makes sure the tools of the wanted sections are there, installing them when allowed.
 * @param {string[]} sections bench sections about to run ('http', 'resp')
 * @returns {{ ready: Set<string>, skipped: Map<string, string> }} the sections whose tools are
 *   present, and for each other one the reason it is skipped
 */
export function ensureTools(sections) {
  const needed = Object.keys(TOOLS).filter((tool) =>
    TOOLS[tool].sections.some((s) => sections.includes(s)),
  );
  let missing = needed.filter((tool) => !onPath(tool));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((tool) => TOOLS[tool].pkg))];
    const root = process.getuid?.() === 0;
    const interactive = process.stdin.isTTY === true;
    if (root && !interactive && onPath('apt-get')) {
      // The update is needed on fresh images whose package lists are empty; the lock timeout
      // waits out another apt-get (an unattended upgrade, a parallel set-up) instead of failing.
      const wait = ['-o', 'DPkg::Lock::Timeout=600'];
      if (
        apt([...wait, 'update']) &&
        apt([...wait, 'install', '-y', '--no-install-recommends', ...packages])
      )
        missing = missing.filter((tool) => !onPath(tool));
    } else {
      const why = !root ? 'not root' : interactive ? 'interactive' : 'no apt-get';
      console.log(
        `bench tools: ${missing.join(', ')} not found and not installed here (${why}); ` +
          `install with: apt-get install -y ${packages.join(' ')}`,
      );
    }
  }
  const ready = new Set();
  const skipped = new Map();
  for (const section of sections) {
    const absent = missing.filter((tool) => TOOLS[tool].sections.includes(section));
    if (absent.length === 0) ready.add(section);
    else {
      const packages = [...new Set(absent.map((tool) => TOOLS[tool].pkg))].join(' ');
      skipped.set(section, `${absent.join(', ')} missing (apt-get install -y ${packages})`);
      console.log(`bench: skipping the ${section} section: ${skipped.get(section)}`);
    }
  }
  return { ready, skipped };
}
