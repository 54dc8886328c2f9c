// pnpm check:docs: opens the built typedoc site (docs/api, from `pnpm run docs`) in headless
// Chromium, page by page, following every internal link from index.html. Fails on
//   - a broken internal link (a page or file that is not there) or a missing anchor (#id with no
//     element of that id or name on the target page, after its scripts ran),
//   - a page that does not render (its main content empty),
//   - a console error, an uncaught exception, or a failed same-origin request on any page.
// External links (other origins) are listed by count, not fetched: the site must not depend on
// them to render. The site is served by a small static server on 127.0.0.1 (as GitHub Pages
// would serve it: the directory's files, 404 for the rest).
//
// Chromium: the system's (Debian package `chromium`; .ci/run installs it when missing), or the
// executable named by CHROMIUM_PATH. Driven with puppeteer-core (no browser download).
// Bounded: CHECK_DOCS_TIMEOUT_MS for the whole check (default 300000), 30 s per page.
/* global document -- page.evaluate() callbacks run in the browser */
import { createServer } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const root = resolve(fileURLToPath(new URL('../docs/api', import.meta.url)));
const totalTimeoutMs = Number(process.env.CHECK_DOCS_TIMEOUT_MS ?? 300_000);
const pageTimeoutMs = 30_000;
const started = performance.now();

function die(message) {
  console.error(`check:docs: ${message}`);
  process.exit(1);
}

if (!existsSync(join(root, 'index.html'))) die(`${root}/index.html is missing: run pnpm run docs`);

function findChromium() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    } catch {
      // not this one
    }
  }
  return die('no Chromium found: apt-get install chromium, or set CHROMIUM_PATH');
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.md': 'text/markdown; charset=utf-8',
};

/** The file a URL path names under root (directories: their index.html), or undefined. */
function fileFor(pathname) {
  let path;
  try {
    path = normalize(join(root, decodeURIComponent(pathname)));
  } catch {
    return undefined;
  }
  if (path !== root && !path.startsWith(root + sep)) return undefined;
  if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'index.html');
  return existsSync(path) && statSync(path).isFile() ? path : undefined;
}

const server = createServer((req, res) => {
  const file = fileFor(new URL(req.url ?? '/', 'http://localhost').pathname);
  if (file === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
  res.end(readFileSync(file));
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${server.address().port}`;

const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

const browser = await puppeteer.launch({
  executablePath: findChromium(),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
const deadline = setTimeout(() => {
  console.error(`check:docs: not done after ${totalTimeoutMs} ms`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}, totalTimeoutMs);

/** page path → ids and names of its elements, after its scripts ran. */
const anchors = new Map();
/** [from page, href, target path, fragment] of every internal link seen. */
const links = [];
const external = new Set();
const queue = ['/index.html'];
const seen = new Set(queue);
let files = 0;

const page = await browser.newPage();
let current = '';
page.on('console', (msg) => {
  // Chromium's own request for /favicon.ico (the site links none) logs a 404; nothing else may.
  if (msg.location().url === `${origin}/favicon.ico`) return;
  if (msg.type() === 'error') problem(current, `console error: ${msg.text()}`);
});
page.on('pageerror', (err) => problem(current, `uncaught exception: ${err.message}`));
page.on('requestfailed', (req) => {
  if (req.url().startsWith(origin))
    problem(current, `request failed: ${req.url()} (${req.failure()?.errorText})`);
});
page.on('response', (res) => {
  // Chromium asks every origin for /favicon.ico by itself; the site links none.
  if (res.url() === `${origin}/favicon.ico`) return;
  if (res.url().startsWith(origin) && res.status() >= 400)
    problem(current, `HTTP ${res.status()} for ${res.url()}`);
});

const isPage = (path) => path.endsWith('.html') || path.endsWith('/');

while (queue.length > 0) {
  const path = queue.shift();
  if (!isPage(path)) {
    // A linked file that is not a page (an image, a source file): it must exist.
    if (fileFor(path) === undefined) problem(path, 'linked file is missing');
    files++;
    continue;
  }
  current = path;
  const response = await page
    .goto(origin + path, { waitUntil: 'networkidle0', timeout: pageTimeoutMs })
    .catch((err) => {
      problem(path, `did not load: ${err.message}`);
      return null;
    });
  if (response === null) continue;
  if (response.status() !== 200) {
    anchors.set(path, null);
    continue; // the 'response' handler reported it
  }
  const info = await page.evaluate(() => {
    const main = document.querySelector('.col-content') ?? document.querySelector('main');
    return {
      mainText: main?.textContent?.trim().length ?? 0,
      ids: [...document.querySelectorAll('[id], a[name]')].map(
        (e) => e.id || e.getAttribute('name'),
      ),
      hrefs: [...document.querySelectorAll('a[href]')].map((a) => a.href),
      title: document.title,
    };
  });
  if (info.mainText === 0) problem(path, 'page did not render (main content empty)');
  anchors.set(path, new Set(info.ids));
  for (const href of info.hrefs) {
    const url = new URL(href);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') continue; // mailto:, javascript:
    if (url.origin !== origin) {
      external.add(url.href);
      continue;
    }
    let target = url.pathname;
    if (target.endsWith('/')) target += 'index.html';
    links.push([path, href.replace(origin, ''), target, decodeURIComponent(url.hash.slice(1))]);
    if (!seen.has(target)) {
      seen.add(target);
      queue.push(target);
    }
  }
}

let anchorCount = 0;
for (const [from, href, target, fragment] of links) {
  const ids = anchors.get(target);
  if (ids === null || (ids === undefined && isPage(target))) {
    problem(from, `broken link ${href}`);
    continue;
  }
  if (fragment === '' || ids === undefined) continue;
  anchorCount++;
  if (!ids.has(fragment)) problem(from, `broken anchor ${href} (no element #${fragment} there)`);
}

clearTimeout(deadline);
await browser.close();
server.close();

const pages = [...anchors.values()].filter((a) => a !== null).length;
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `check:docs: ${pages} pages rendered, ${files} other files, ${links.length} internal links ` +
    `(${anchorCount} with an anchor) checked, ${external.size} external links not followed, ` +
    `in ${seconds} s`,
);
if (problems.length > 0) {
  console.error(`check:docs: ${problems.length} problems`);
  for (const p of [...new Set(problems)]) console.error(`  ${p}`);
  process.exit(1);
}
