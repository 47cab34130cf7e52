// The dashboard as a person meets it (issue 20): puppeteer-core drives Debian's chromium against
// real marsseg servers on loopback and ACTS — drops files, types into the form, starts, cancels
// and resumes a tiny job, switches models, uses a token server, loses the server, tabs through
// the page at 1280x900 and 390x844 — and checks each of the issue's 13 points plus what must
// stay. Screenshots go to tests/out/ux-*.png for a person to look at.
//
//   node tests/web/dashboard_ux.mjs build/marsseg      (from the source tree; tests/test_dashboard_ux.c runs it)
//
// Prints one line per check and "ux: N passed, N failed"; exits 0, 1 (a check failed) or 77
// (no chromium, or puppeteer-core not installed: a skip). Env: CHROMIUM (the browser binary).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { deflateSync } from 'node:zlib';

const bin = resolve(process.argv[2] || 'build/marsseg');
const root = resolve(new URL('../..', import.meta.url).pathname);
const out = join(root, 'tests/out');
mkdirSync(out, { recursive: true });
const chromium = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && existsSync(p));
if (!chromium) { console.log('SKIP ux: no chromium (apt-get install chromium)'); process.exit(77); }
let puppeteer;
try { puppeteer = (await import('puppeteer-core')).default; } catch (e) {
  console.log(`SKIP ux: puppeteer-core is not installed (npm ci --prefix tests/web): ${e.message}`);
  process.exit(77);
}
if (!existsSync(bin)) { console.log(`ux: FAIL no server binary at ${bin}`); process.exit(1); }

// ───────────────────────────── checks
let passed = 0, failed = 0;
const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1);
function check(point, what, ok, detail = '') {
  if (ok) passed++; else failed++;
  console.log(`ux: ${ok ? 'ok  ' : 'FAIL'} [${point}] ${what}${detail ? ` — ${detail}` : ''}`);
  return ok;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ───────────────────────────── servers
const work = mkdtempSync(join(tmpdir(), 'marsseg-ux-'));
const servers = [];
async function startServer(name, { token = null, port = 0, dataDir = join(work, name) } = {}) {
  mkdirSync(dataDir, { recursive: true });
  const portFile = join(work, `${name}.port`);
  rmSync(portFile, { force: true });
  const env = { ...process.env, OMP_NUM_THREADS: '1' };
  delete env.MARSSEG_TOKEN;
  if (token) env.MARSSEG_TOKEN = token;
  const log = openSync(join(out, `ux-server-${name}.log`), 'a');
  const child = spawn(bin, ['serve', '--port', String(port), '--port-file', portFile, '--data-dir', dataDir], { cwd: root, env, stdio: ['ignore', log, log] });
  const s = { name, child, dataDir, token, port: 0, url: '' };
  servers.push(s);
  for (let i = 0; i < 300 && !s.port; i++) {
    if (existsSync(portFile)) s.port = Number(readFileSync(portFile, 'utf8')) || 0;
    if (!s.port) await sleep(100);
  }
  if (!s.port) throw new Error(`server ${name} did not start (see tests/out/ux-server-${name}.log)`);
  s.url = `http://127.0.0.1:${s.port}`;
  return s;
}
function stopServer(s, signal = 'SIGTERM') {
  return new Promise((res) => {
    if (s.child.exitCode !== null || s.child.signalCode) { res(); return; }
    s.child.once('exit', () => res());
    s.child.kill(signal);
  });
}
async function http(s, method, path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (s.token) headers.Authorization = `Bearer ${s.token}`;
  const r = await fetch(s.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: await r.json().catch(() => null) };
}
async function waitJob(s, id, states, ms = 60000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const j = (await http(s, 'GET', `/jobs/${id}`)).json;
    if (states.includes(j?.state)) return j;
    await sleep(250);
  }
  throw new Error(`job ${id} did not reach ${states.join('/')} in ${ms / 1000} s`);
}

// ───────────────────────────── page helpers
const TINY = { model: { depth: 2, base: 4, dropout: 0 }, epochs: 2, batch: 32, early_stop: 0 };
const consoleLines = [];
async function newPage(browser, { width, height, mobile = false }) {
  const ctx = await browser.createBrowserContext(); // its own localStorage (the token)
  const page = await ctx.newPage();
  await page.setViewport({ width, height, deviceScaleFactor: 1, isMobile: mobile, hasTouch: mobile });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  page.requests = [];
  page.on('request', (r) => page.requests.push({ method: r.method(), url: r.url(), t: Date.now() }));
  return page;
}
const count = (page, re, method) => page.requests.filter((r) => re.test(new URL(r.url).pathname + new URL(r.url).search) && (!method || r.method === method)).length;
const shot = async (page, name, fullPage = false) => { await page.screenshot({ path: join(out, `ux-${name}.png`), fullPage }); };
const text = (page, sel) => page.$eval(sel, (el) => el.textContent.trim()).catch(() => '');
const visible = (page, sel) => page.$eval(sel, (el) => !el.hidden && !!(el.offsetWidth || el.offsetHeight)).catch(() => false);
async function waitFor(page, fn, arg, ms, what) {
  try { await page.waitForFunction(fn, { timeout: ms, polling: 100 }, arg); return true; } catch { console.log(`ux: (timed out after ${ms / 1000} s waiting for ${what})`); return false; }
}
/** Drops files on the drop zone as a drag-and-drop would (a DataTransfer on the drop event). */
async function drop(page, files) {
  await page.evaluate((fs) => {
    const dt = new DataTransfer();
    for (const f of fs) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    const dz = document.querySelector('#dropzone');
    for (const type of ['dragenter', 'dragover', 'drop']) dz.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
  }, files.map((f) => ({ name: f.name, type: f.type ?? 'image/png', b64: Buffer.from(f.bytes).toString('base64') })));
}
/** Picks files through the hidden file input (the file picker's path). */
async function pick(page, paths) { await (await page.$('#file-input')).uploadFile(...paths); }
/** The result of the last segmentation, or of a failure. */
async function segDone(page, name, ms = 20000) {
  return waitFor(page, (n) => document.querySelector('#seg-status').textContent.includes(`Segmented ${n}`) || (!document.querySelector('#seg-error').hidden), name, ms, `the segmentation of ${name}`);
}

/** Tab from the top of the page through every stop; → [{ key, card, x, y, w, h, outline }]. */
/** Puts the sequential focus starting point at the very top of the page (before the skip links),
 * as on a fresh load. */
async function focusTop(page) {
  await page.evaluate(() => {
    document.activeElement?.blur();
    window.scrollTo(0, 0);
    const s = document.createElement('span');
    s.tabIndex = -1; s.id = 'ux-start';
    document.body.prepend(s);
    s.focus();
    s.addEventListener('blur', () => s.remove(), { once: true });
  });
}

async function tabStops(page, max = 90) {
  await focusTop(page);
  const stops = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const s = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
      const card = el.closest('section.card');
      const where = card ? card.className.match(/area-(\w+)/)[1] : el.closest('.skips') ? 'skip' : el.closest('header') ? 'header'
        : el.closest('.banner') ? 'banner' : el.closest('footer') ? 'footer' : el.closest('.toasts') ? 'toast' : 'other';
      return { key: el.id || `${el.tagName.toLowerCase()}:${(el.getAttribute('aria-label') || el.textContent || el.value || '').trim().slice(0, 30)}`,
        card: where, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height,
        outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2 };
    });
    if (!s || (stops.length && s.key === stops[0].key)) break;
    stops.push(s);
  }
  return stops;
}
const CARDS = ['segment', 'run', 'jobs', 'newjob', 'models'];
/** The cards in the order a person reads them: by column (left edge), then top to bottom. */
async function visualCardOrder(page) {
  const rects = await page.evaluate((cards) => cards.map((c) => {
    const r = document.querySelector(`.area-${c}`).getBoundingClientRect();
    return { c, x: r.left + scrollX, y: r.top + scrollY };
  }), CARDS);
  const cols = [...new Set(rects.map((r) => Math.round(r.x / 50)))].sort((a, b) => a - b);
  return rects.sort((a, b) => cols.indexOf(Math.round(a.x / 50)) - cols.indexOf(Math.round(b.x / 50)) || a.y - b.y).map((r) => r.c);
}
function checkTabOrder(point, label, stops, order) {
  const seq = stops.map((s) => s.card).filter((c) => CARDS.includes(c));
  const idx = seq.map((c) => order.indexOf(c));
  const bad = idx.findIndex((v, i) => i && v < idx[i - 1]);
  check(point, `${label}: Tab visits the cards in visual order (${order.join(' → ')})`, bad < 0,
    bad < 0 ? `${stops.length} stops` : `stop ${bad}: ${seq[bad - 1]} then ${seq[bad]}`);
  // inside a card, each stop is level with or below the previous one
  const within = stops.findIndex((s, i) => i && s.card === stops[i - 1].card && CARDS.includes(s.card) && s.y < stops[i - 1].y - 8);
  check(point, `${label}: inside each card, Tab moves down the page`, within < 0, within < 0 ? '' : `${stops[within - 1].key} (y ${Math.round(stops[within - 1].y)}) then ${stops[within].key} (y ${Math.round(stops[within].y)})`);
  const noRing = stops.filter((s) => !s.outline).map((s) => s.key);
  check('keep', `${label}: every Tab stop has a visible focus ring`, noRing.length === 0, noRing.slice(0, 5).join(', '));
  const dz = stops.findIndex((s) => s.key === 'dropzone');
  check(point, `${label}: the drop zone is an early Tab stop`, dz >= 0 && dz < 8, `stop ${dz + 1}`);
}

// ───────────────────────────── files
const tile1 = readFileSync(join(root, 'examples/tile1.png'));
const tile2 = readFileSync(join(root, 'examples/tile2.png'));
const pngHead = (w, h) => { const b = Buffer.alloc(33); tile1.copy(b, 0, 0, 33); b.writeUInt32BE(w, 16); b.writeUInt32BE(h, 20); return b; };
const bigPath = join(work, 'huge.png');
writeFileSync(bigPath, Buffer.concat([pngHead(128, 64), Buffer.alloc(9 * 1048576 - 33)])); // 9 MB: over max_body (8 MB)
const framePath = join(work, 'frame.png');
writeFileSync(framePath, Buffer.concat([pngHead(3000, 3000), Buffer.alloc(64)])); // 9,000,000 pixels by its header
/** An 8-bit gray PNG of w x h, pixel (x, y) = f(x, y) (stored deflate, CRCs computed here). */
function grayPng(w, h, f) {
  const crcTable = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (b) => { let c = 0xffffffff; for (const v of b) c = crcTable[(c ^ v) & 255] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const b = Buffer.alloc(12 + data.length);
    b.writeUInt32BE(data.length, 0); b.write(type, 4, 'latin1'); data.copy(b, 8);
    b.writeUInt32BE(crc(b.subarray(4, 8 + data.length)), 8 + data.length);
    return b;
  };
  const raw = Buffer.alloc((w + 1) * h); // filter byte 0 on each row
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw[y * (w + 1) + 1 + x] = f(x, y);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; // 8-bit gray, no interlace
  return Buffer.concat([tile1.subarray(0, 8), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
const wholePath = join(work, 'whole.png'); // a real 1200x1000 frame: over the tile limit (1 MP), within the frame limits
writeFileSync(wholePath, grayPng(1200, 1000, (x, y) => Math.round(120 + 60 * Math.sin(x / 41) * Math.cos(y / 29) + ((x >> 6) + (y >> 5)) % 3 * 20)));
const txtPath = join(work, 'notes.txt');
writeFileSync(txtPath, 'not an image\n');
const brokenPath = join(work, 'broken.png');
writeFileSync(brokenPath, tile1.subarray(0, Math.floor(tile1.length / 2))); // a PNG cut in half: the server refuses it

// ───────────────────────────── the run
const profile = mkdtempSync(join(tmpdir(), 'marsseg-ux-chromium-'));
let browser;
try {
  browser = await puppeteer.launch({
    executablePath: chromium, headless: true, userDataDir: profile, protocolTimeout: 60000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--hide-scrollbars'],
  });
} catch (e) {
  console.log(`SKIP ux: chromium does not start under puppeteer-core: ${e.message.split('\n')[0]}`);
  rmSync(profile, { recursive: true, force: true });
  process.exit(77);
}

try {
  const s1 = await startServer('open');
  console.log(`ux: server ${s1.url} (${secs()} s)`);

  // ─── first screen, desktop
  const page = await newPage(browser, { width: 1280, height: 900 });
  await page.goto(s1.url + '/', { waitUntil: 'load' });
  await waitFor(page, () => document.querySelector('#health').dataset.state === 'ok' && document.querySelector('#model-list .model'), null, 15000, 'the page to load');
  await sleep(300);
  check('keep', 'no console errors on load', consoleLines.length === 0, consoleLines.slice(0, 3).join(' | '));
  const first = await page.evaluate(() => {
    const dz = document.querySelector('#dropzone').getBoundingClientRect();
    const charts = document.querySelector('.charts');
    return { dzBottom: dz.bottom, chartsHidden: charts.hidden || !charts.offsetHeight, intro: document.querySelector('.seg-intro').textContent,
      samples: [...document.querySelectorAll('#seg-samples button[data-sample]')].length };
  });
  check(10, 'the drop zone is on the first screen (above the fold)', first.dzBottom < 900, `bottom at ${Math.round(first.dzBottom)} px`);
  check(10, 'no empty charts fill the first screen', first.chartsHidden);
  check(10, 'the expected input is stated next to the drop zone', /64×128 grayscale PNG/.test(first.intro) && /1,048,576 pixels/.test(first.intro), first.intro.replace(/\s+/g, ' ').slice(0, 90));
  check(10, 'one-click samples are offered', first.samples === 2);
  const cut = await page.evaluate(() => [...document.querySelectorAll('select')].flatMap((sel) => {
    const cs = getComputedStyle(sel), ctx = document.createElement('canvas').getContext('2d');
    ctx.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const room = sel.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - 20; // the arrow
    return [...sel.options].filter((o) => ctx.measureText(o.text).width > room).map((o) => `${sel.id}: "${o.text}" (${Math.round(ctx.measureText(o.text).width)} > ${Math.round(room)} px)`);
  }));
  check(10, 'no dropdown option is cut off', cut.length === 0, cut.join('; '));
  await shot(page, 'first-screen');

  // ─── the token: the open server says none is needed
  check(7, 'open server: the Token button does not ask for a token', (await text(page, '#token-state')) === 'Token' && !(await visible(page, '#token-note')));

  // ─── keyboard, desktop
  const order = await visualCardOrder(page);
  checkTabOrder(8, '1280x900', await tabStops(page), order);
  await focusTop(page);
  await page.keyboard.press('Tab');
  const skip = await page.evaluate(() => document.activeElement.textContent.trim());
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  const afterSkip = await page.evaluate(() => document.activeElement.id);
  check(8, 'the first skip link leads to the drop zone', /Segment a tile/.test(skip) && afterSkip === 'dropzone', `"${skip}" then ${afterSkip}`);

  // ─── segmentation: one request per drop, checked before upload, plain errors
  const segs = () => count(page, /^\/segment/, 'POST');
  let n0 = segs();
  await drop(page, [{ name: 'tile1.png', bytes: tile1 }]);
  await segDone(page, 'tile1.png');
  const good = await page.evaluate(() => ({
    result: !document.querySelector('#seg-result').hidden, overlay: document.querySelector('#seg-overlay').naturalWidth,
    mask: document.querySelector('#seg-mask').naturalWidth,
    pct: [...document.querySelectorAll('#seg-legend .cl-pct')].reduce((a, el) => a + parseFloat(el.textContent), 0),
    status: document.querySelector('#seg-status').textContent,
  }));
  check(3, 'a dropped tile is segmented with ONE request', segs() - n0 === 1 && good.result, `${segs() - n0} POST /segment`);
  check(3, 'the one request is the JSON answer with the maps; mask, overlay and percentages are composed in the page',
    count(page, /^\/segment\?format=json&maps=1$/, 'POST') === 1 && count(page, /format=(?!json&maps=1$)/) === 0 && good.overlay === 128 && good.mask === 128 && Math.abs(good.pct - 100) < 0.6,
    `overlay ${good.overlay}px, percentages sum to ${good.pct.toFixed(1)}`);
  // issue 14: the uncertainty overlay and the tile's confidence, from the same answer
  const before = await page.evaluate(() => ({ src: document.querySelector('#seg-overlay').src, conf: document.querySelector('#seg-confidence').textContent,
    value: Number(document.querySelector('#seg-confidence').dataset.confidence) }));
  n0 = segs();
  // every request to the server but the pollers' GETs of state (jobs, health, models), which may land
  // in any window; blob: images are the page's own
  const polled = /^\/(healthz|readyz|jobs|models|datasets|evaluations|predictions)(\/|\?|$)/;
  const httpCount = () => page.requests.filter((r) => r.url.startsWith('http') && !(r.method === 'GET' && polled.test(new URL(r.url).pathname))).length;
  const allBefore = httpCount();
  await page.click('#seg-unc-toggle');
  await waitFor(page, (src) => document.querySelector('#seg-overlay').src !== src && document.querySelector('#seg-overlay').complete, before.src, 5000, 'the uncertainty overlay');
  const unc = await page.evaluate(() => {
    const img = document.querySelector('#seg-overlay'), c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let tinted = 0; // pixels pushed towards the uncertainty colour (red and blue above green)
    for (let i = 0; i < d.length; i += 4) if (d[i] - d[i + 1] > 20 && d[i + 2] - d[i + 1] > 20) tinted++;
    return { cap: document.querySelector('#seg-overlay-cap').textContent, w: img.naturalWidth, tinted };
  });
  check('14', 'the uncertainty toggle shows the uncertainty overlay, with no new request', segs() === n0 && httpCount() === allBefore &&
    /Uncertainty/.test(unc.cap) && unc.w === 128 && unc.tinted > 0, `${unc.cap}; ${unc.tinted} tinted pixels; ${httpCount() - allBefore} requests`);
  check('14', 'the tile\'s confidence is shown', /^Confidence \d+\.\d%$/.test(before.conf) && before.value > 0.2 && before.value <= 1, before.conf);
  await shot(page, 'uncertainty');
  await page.click('#seg-unc-toggle');
  check(11, 'a result shows in the card, not as a toast', /Segmented tile1\.png: /.test(good.status) && !(await page.$$eval('.toast', (ts) => ts.some((t) => /Segment/.test(t.textContent)))), good.status);
  const overlap = await page.evaluate(() => {
    const l = document.querySelector('#seg-legend').getBoundingClientRect();
    return [...document.querySelectorAll('.toast')].some((t) => { const r = t.getBoundingClientRect(); return r.left < l.right && r.right > l.left && r.top < l.bottom && r.bottom > l.top; });
  });
  check(11, 'no toast covers the legend percentages', !overlap);
  await shot(page, 'segmented');

  n0 = segs();
  await pick(page, [bigPath]);
  await waitFor(page, () => !document.querySelector('#seg-error').hidden, null, 5000, 'the size error');
  const bigMsg = await text(page, '#seg-error');
  check(3, 'a 9 MB file is refused before upload (limits.max_body)', segs() === n0, bigMsg);
  check(5, 'the size error is one plain sentence, each number once, with a remedy',
    /^huge\.png is 9\.0 MB; the server takes images up to 8\.0 MB: use a smaller PNG\.$/.test(bigMsg) && !/HTTP|body_too_large|\(/.test(bigMsg), bigMsg);
  const stale = await page.evaluate(() => ({ cls: document.querySelector('#seg-result').classList.contains('stale'), note: document.querySelector('#seg-stale').hidden ? '' : document.querySelector('#seg-stale').textContent }));
  check(4, 'after a refusal the previous result is greyed out and labelled', stale.cls && /Previous result \(tile1\.png\)/.test(stale.note), stale.note);
  await shot(page, 'refused-too-large');

  n0 = segs();
  await pick(page, [txtPath]);
  await waitFor(page, () => /notes\.txt/.test(document.querySelector('#seg-error').textContent), null, 5000, 'the type error');
  const txtMsg = await text(page, '#seg-error');
  check(3, 'a non-PNG is refused before upload', segs() === n0 && /^notes\.txt is not a PNG image/.test(txtMsg), txtMsg);
  n0 = segs();
  await pick(page, [framePath]);
  await waitFor(page, () => /frame\.png/.test(document.querySelector('#seg-error').textContent), null, 5000, 'the pixel error');
  const pxMsg = await text(page, '#seg-error');
  check(5, 'too many pixels (from the PNG header): refused before upload, the numbers once',
    segs() === n0 && /^frame\.png has too many pixels \(3000×3000\): the server segments at most 1,048,576 pixels/.test(pxMsg) && (pxMsg.match(/1,048,576/g) || []).length === 1, pxMsg);
  // issue 19: "Whole frame" — a frame over the tile limit is sent ONCE, with frame=1, and comes back at its own size
  await page.click('#seg-frame');
  const frameLim = await text(page, '#seg-limits');
  n0 = segs();
  await pick(page, [wholePath]);
  await segDone(page, 'whole.png', 60000);
  const whole = await page.evaluate(() => ({ w: document.querySelector('#seg-mask').naturalWidth, h: document.querySelector('#seg-mask').naturalHeight,
    meta: document.querySelector('#seg-meta').textContent, status: document.querySelector('#seg-status').textContent }));
  check(19, 'Whole frame: a 1200×1000 frame (over the tile limit) is segmented with ONE request, frame=1, at its own size',
    segs() - n0 === 1 && count(page, /^\/segment\?format=json&maps=1&frame=1$/, 'POST') === 1 && whole.w === 1200 && whole.h === 1000 && /^Segmented whole\.png/.test(whole.status),
    `${segs() - n0} POST /segment; mask ${whole.w}×${whole.h}; ${whole.status}`);
  check(19, 'Whole frame: the frame limits are shown, and the size it was segmented at', /16,777,216 pixels and 32 MB per frame/.test(frameLim) && /segmented at 128×107/.test(whole.meta),
    `"${frameLim}"; ${whole.meta}`);
  await shot(page, 'whole-frame');
  await page.click('#seg-frame');
  check(19, 'Whole frame off: the tile limits are back', /1,048,576 pixels and 8\.0 MB$/.test(await text(page, '#seg-limits')), await text(page, '#seg-limits'));
  n0 = segs();
  await pick(page, [brokenPath]);
  await waitFor(page, () => /broken\.png/.test(document.querySelector('#seg-error').textContent), null, 10000, 'the server\'s refusal');
  const brokenMsg = await text(page, '#seg-error');
  check(5, 'the server\'s 400 reads as one plain sentence', segs() - n0 === 1 && /^broken\.png could not be decoded as a PNG/.test(brokenMsg) && !/HTTP|bad_png/.test(brokenMsg), brokenMsg);
  check(4, 'after a server error the previous result is still marked as previous', await page.$eval('#seg-result', (el) => el.classList.contains('stale')));

  // a second file while one is processing waits its turn
  await page.evaluate(() => {
    window.__status = [];
    new MutationObserver(() => window.__status.push(document.querySelector('#seg-status').textContent)).observe(document.querySelector('#seg-status'), { childList: true, characterData: true, subtree: true });
  });
  n0 = segs();
  await drop(page, [{ name: 'tile1.png', bytes: tile1 }, { name: 'tile2.png', bytes: tile2 }]);
  await waitFor(page, () => document.querySelector('#seg-status').textContent.startsWith('Segmented tile2.png'), null, 20000, 'the queued file');
  const statuses = await page.evaluate(() => window.__status);
  check(6, 'a second file dropped while one is processing is queued, said, and segmented', segs() - n0 === 2 && statuses.some((s) => /tile2\.png is next/.test(s)),
    `${segs() - n0} requests; "${statuses.find((s) => /next/.test(s)) || statuses.join(' | ')}"`);
  check(4, 'a good result clears the "previous result" marking', !(await page.$eval('#seg-result', (el) => el.classList.contains('stale'))) && !(await visible(page, '#seg-stale')) && !(await visible(page, '#seg-error')));
  n0 = segs();
  await page.click('#seg-samples button[data-sample$="tile1.png"]');
  await segDone(page, 'sample tile1.png');
  check(10, 'a sample segments with one click (one request)', segs() - n0 === 1 && (await text(page, '#seg-name')) === 'sample tile1.png');
  check(11, 'different results never merge into one toast', !(await page.$$eval('.toast', (ts) => ts.some((t) => /×\d/.test(t.textContent)))));

  // ─── the form: limits from /schema, integers on their text, refusals marked
  const jobsPosted = () => count(page, /^\/jobs$/, 'POST');
  const setField = async (sel, v) => {
    await page.focus(sel);
    await page.keyboard.down('Control'); await page.keyboard.press('KeyA'); await page.keyboard.up('Control');
    await page.keyboard.press('Backspace');
    if (v !== '') await page.keyboard.type(v);
  };
  let p0 = jobsPosted();
  await setField('#f-epochs', '1e3');
  await page.click('#job-submit');
  await sleep(300);
  const e1 = await page.evaluate(() => ({ inv: document.querySelector('#f-epochs').getAttribute('aria-invalid'), msg: document.querySelector('#form-error').textContent, field: document.querySelector('#f-epochs-err').textContent, focus: document.activeElement.id }));
  check(9, '"1e3" epochs is refused in the page, the field marked and focused, nothing sent', jobsPosted() === p0 && e1.inv === 'true' && /1e3/.test(e1.msg) && e1.focus === 'f-epochs', JSON.stringify(e1));
  await setField('#f-epochs', '2');
  await setField('#f-depth', '6');
  await setField('#f-base', '128');
  p0 = jobsPosted();
  await page.click('#job-submit');
  await waitFor(page, () => /refused/.test(document.querySelector('#form-error').textContent), null, 8000, 'the server\'s refusal of depth 6 base 128');
  const e2 = await page.evaluate(() => ({ d: document.querySelector('#f-depth').getAttribute('aria-invalid'), b: document.querySelector('#f-base').getAttribute('aria-invalid'), msg: document.querySelector('#form-error').textContent }));
  check(9, 'depth 6 + base 128: the server\'s refusal marks both fields', jobsPosted() - p0 === 1 && e2.d === 'true' && e2.b === 'true' && /4,096/.test(e2.msg) && !/HTTP|invalid_config/.test(e2.msg), e2.msg);
  check(11, 'the form\'s error is not repeated as a toast', !(await page.$$eval('.toast', (ts) => ts.some((t) => /refused|4096|4,096/.test(t.textContent)))));
  await shot(page, 'form-refused');

  // ─── a tiny job: Enter on Start training, live progress and ETA, cancel, resume
  await setField('#f-depth', '2');
  await setField('#f-base', '4');
  await setField('#f-epochs', '12');
  await setField('#f-batch', '1');
  await setField('#f-dropout', '0');
  await page.$eval('#f-activate', (el) => { el.value = String([...el.options].findIndex((o) => /Keep the serving model/.test(o.text))); el.dispatchEvent(new Event('change')); });
  const hint = await text(page, '#activate-hint');
  check('14', 'the job form says what happens to the serving model', /only listed under Models/.test(hint) && (await page.$eval('#f-activate', (el) => el.options.length)) === 3, hint);
  await page.evaluate(() => {
    window.__progress = [];
    new MutationObserver(() => window.__progress.push(document.querySelector('#run-progress-text').textContent))
      .observe(document.querySelector('#run-progress-text'), { childList: true, characterData: true, subtree: true });
  });
  await page.focus('#job-submit');
  await page.keyboard.press('Enter');
  await waitFor(page, () => /^j\d+/.test(document.querySelector('#run-id').textContent), null, 10000, 'the new run');
  await sleep(200);
  const jobA = await page.$eval('#run-id', (el) => el.title);
  const focusA = await page.evaluate(() => ({ id: document.activeElement.id, inRun: !!document.activeElement.closest('.area-run') }));
  check(8, 'after Enter on "Start training" the focus is on the new run', focusA.inRun && focusA.id === 'run-h', `focus on #${focusA.id}`);
  await waitFor(page, () => /batch \d+\/\d+/.test(document.querySelector('#run-progress-text').textContent), null, 20000, 'live progress');
  await sleep(1500);
  const live = await page.evaluate(() => ({ prog: document.querySelector('#run-progress-text').textContent, charts: !document.querySelector('.charts').hidden, bar: document.querySelector('#run-progressbar').getAttribute('aria-valuenow') }));
  check('keep', 'live progress with an ETA and the charts while training', /ETA/.test(live.prog) && live.charts, live.prog);
  await shot(page, 'training');
  await page.$eval('#run-actions button[data-action="cancel"]', (b) => b.click());
  await waitFor(page, () => document.querySelector('#run-badge .badge')?.dataset.state === 'cancelled', null, 20000, 'the cancel');
  check('keep', 'cancel: the run shows cancelled', (await page.$eval('#run-badge .badge', (b) => b.dataset.state).catch(() => '')) === 'cancelled');
  await page.$eval('#run-actions button[data-action="resume"]', (b) => b.click());
  await waitFor(page, () => ['running', 'succeeded'].includes(document.querySelector('#run-badge .badge')?.dataset.state), null, 20000, 'the resume');
  await waitFor(page, () => document.querySelector('#run-badge .badge')?.dataset.state === 'succeeded', null, 90000, 'the resumed run to succeed');
  check('keep', 'resume: the cancelled run continues and succeeds', (await page.$eval('#run-badge .badge', (b) => b.dataset.state).catch(() => '')) === 'succeeded');
  const progress = await page.evaluate(() => window.__progress);
  const early = progress.filter((t) => /epoch 1 of/.test(t) && /batch [1-3]\//.test(t));
  const numeric = progress.filter((t) => /ETA \d/.test(t));
  check(13, 'the ETA says "estimating…" until a few batches ran, then a figure', early.every((t) => /estimating/.test(t)) && numeric.length > 0,
    `${early.length} texts at batches 1-3 (${early.filter((t) => /estimating/.test(t)).length} estimating), ${numeric.length} with a figure`);
  const table = await page.evaluate(() => ({ shown: !document.querySelector('#run-table').hidden, rows: document.querySelectorAll('#run-table tbody tr').length,
    points: Number(document.querySelector('#chart-loss').dataset.points) }));
  check(8, 'the chart values are in a table (keyboard access), one row per epoch', table.shown && table.rows > 0 && table.rows === table.points, `${table.rows} rows, ${table.points} points`);
  await page.focus('#run-table summary');
  await page.keyboard.press('Enter');
  await sleep(150);
  await shot(page, 'run-table');

  // ─── models: a pick, then an automatic switch by a job; selection and serving agree
  await waitFor(page, (id) => !!document.querySelector(`#model-list input[value="${id}"]`), jobA, 10000, 'the new model in the list');
  await page.click(`#model-list input[value="${jobA}"]`);
  const picked = await page.evaluate(() => ({ btn: document.querySelector('#model-submit').textContent, disabled: document.querySelector('#model-submit').disabled, sel: document.querySelector('.model.is-pending input')?.value }));
  check(2, 'picking a model marks it "selected" while another serves', picked.sel === jobA && !picked.disabled && picked.btn.includes(jobA.slice(0, 6)), picked.btn);
  const listed = (await http(s1, 'GET', '/models')).json;
  const defEntry = (listed.models || listed).find((e) => e.id === 'default');
  const defPct = (100 * defEntry.metrics.val_miou).toFixed(1).replace('.', '\\.'); // the bundled model's figure, as the banner prints it
  const jobB = (await http(s1, 'POST', '/jobs', { ...TINY, activate: true })).json.id;
  await waitJob(s1, jobB, ['succeeded', 'failed']);
  const bannerUp = await waitFor(page, () => !document.querySelector('#serve-banner').hidden, null, 8000, 'the serving banner');
  const banner = await text(page, '#serve-banner-msg');
  check(1, 'an automatic switch is announced: a banner naming the new model with both figures', bannerUp && banner.includes(jobB) && new RegExp(`trained by run ${jobB}`).test(banner) && new RegExp(`replaced default \\(validation mIoU ${defPct}%\\)`).test(banner) && (banner.match(/\d+\.\d%/g) || []).length === 2, banner);
  check(1, 'the banner warns when the new model scores lower', /scores lower/.test(banner) && (await page.$eval('#serve-banner', (b) => b.dataset.worse)) === 'true');
  await sleep(300);
  const agree = await page.evaluate(() => ({
    checked: document.querySelector('#model-list input:checked')?.value, serving: document.querySelector('.model.is-active input')?.value,
    pending: !!document.querySelector('.model.is-pending'), disabled: document.querySelector('#model-submit').disabled, pill: document.querySelector('#active-model-name').textContent,
  }));
  check(2, 'after the automatic switch the checked row is the serving one, no stale "Serve" button', agree.checked === jobB && agree.serving === jobB && !agree.pending && agree.disabled && agree.pill === jobB, JSON.stringify(agree));
  await shot(page, 'auto-switch-banner');
  await page.click('#serve-banner-back');
  await waitFor(page, () => document.querySelector('#active-model-name').textContent === 'default', null, 8000, 'the switch back');
  await sleep(2500); // a health poll or two: a switch asked for here raises no banner
  check(1, 'a switch asked for on this page raises no banner', (await text(page, '#active-model-name')) === 'default' && !(await visible(page, '#serve-banner')));
  await page.click(`#model-list input[value="${jobA}"]`);
  await page.click('#model-submit');
  await waitFor(page, (id) => document.querySelector('#active-model-name').textContent === id, jobA, 8000, 'the hand switch');
  const hand = await page.evaluate(() => ({ checked: document.querySelector('#model-list input:checked')?.value, serving: document.querySelector('.model.is-active input')?.value }));
  check(2, 'switching by hand: the pill, the checked row and the SERVING badge agree', hand.checked === jobA && hand.serving === jobA && (await text(page, '#active-model-name')) === jobA, JSON.stringify(hand));
  const small = await page.evaluate(() => [...document.querySelectorAll('input[type=checkbox], input[type=radio]')].filter((el) => el.offsetWidth).map((el) => {
    const r = el.getBoundingClientRect(); return `${el.id || el.name} ${Math.round(r.width)}x${Math.round(r.height)}`;
  }).filter((s) => { const [w, h] = s.split(' ')[1].split('x').map(Number); return w < 24 || h < 24; }));
  check(8, 'checkboxes and radios are at least 24x24 px', small.length === 0, small.join(', '));
  await shot(page, 'desktop-full', true);

  // ─── issue 14: evaluation you can see — heatmap, IoU bars of two models, worst tiles
  const evalPosts = () => count(page, /^\/evaluations$/, 'POST');
  const e0 = evalPosts();
  await page.evaluate((b) => {
    for (const [id, v] of [['#eval-a', 'default'], ['#eval-b', b], ['#eval-data', 'sample']]) document.querySelector(id).value = v;
  }, jobA);
  await page.click('#eval-submit');
  await waitFor(page, () => !document.querySelector('#eval-result').hidden || !document.querySelector('#eval-error').hidden, null, 120000, 'the evaluation');
  const ev = await page.evaluate(() => {
    const rows = [...document.querySelectorAll('#eval-heatmap tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => ({
      share: td.dataset.share === '' ? null : Number(td.dataset.share), count: Number(td.dataset.count), title: td.title })));
    const imgs = [...document.querySelectorAll('#eval-gallery figure.tile')].map((f) => [...f.querySelectorAll('img')].map((i) => i.naturalWidth));
    return { rows, error: document.querySelector('#eval-error').textContent,
      bars: [...document.querySelectorAll('#eval-iou .iou-row')].map((r) => [r.querySelectorAll('.iou-bar.a').length, r.querySelectorAll('.iou-bar.b').length]),
      imgs, status: document.querySelector('#eval-status').textContent };
  });
  const cells = ev.rows.flat();
  const rowSums = ev.rows.map((r) => r.reduce((a, c) => a + (c.share ?? 0), 0));
  check('14', 'the confusion heatmap: 5x5 cells, each row\'s shares sum to 1, counts on hover', ev.rows.length === 5 && cells.length === 25 &&
    rowSums.every((x) => Math.abs(x - 1) < 1e-6 || x === 0) && cells.reduce((a, c) => a + c.count, 0) === 256 * 64 * 128 &&
    cells.every((c) => /pixels/.test(c.title) && c.title.includes(c.count.toLocaleString('en-US'))), ev.error || `${cells.length} cells, row sums ${rowSums.map((x) => x.toFixed(3)).join(' ')}`);
  check('14', 'per-class IoU bars of two models side by side', ev.bars.length === 5 && ev.bars.every(([a, b]) => a === 1 && b === 1) && evalPosts() - e0 === 2, JSON.stringify(ev.bars));
  await waitFor(page, () => [...document.querySelectorAll('#eval-gallery img')].every((i) => i.complete), null, 10000, 'the gallery images');
  const gal = await page.evaluate(() => [...document.querySelectorAll('#eval-gallery figure.tile')].map((f) => [...f.querySelectorAll('img')].map((i) => i.naturalWidth)));
  check('14', 'a gallery of the worst tiles: image, truth, prediction, uncertainty', gal.length === 4 && gal.every((t) => t.length === 4 && t.every((w) => w === 128)), JSON.stringify(gal));
  await page.$eval('#evaluate', (el) => el.scrollIntoView());
  await shot(page, 'evaluation');

  // ─── phone
  const phone = await newPage(browser, { width: 390, height: 844, mobile: true });
  await phone.goto(`${s1.url}/#job=${jobA}`, { waitUntil: 'load' });
  await waitFor(phone, () => document.querySelector('#health').dataset.state === 'ok' && document.querySelector('#chart-loss:not([data-points="0"])'), null, 15000, 'the phone page');
  const phoneFirst = await phone.evaluate(() => ({ dz: document.querySelector('#dropzone').getBoundingClientRect().bottom, over: document.documentElement.scrollWidth - innerWidth }));
  check(10, 'phone: the drop zone is on the first screen', phoneFirst.dz < 844, `bottom at ${Math.round(phoneFirst.dz)} px`);
  check('keep', 'phone: no horizontal overflow', phoneFirst.over <= 0, `${phoneFirst.over} px too wide`);
  checkTabOrder(8, '390x844', await tabStops(phone, 120), await visualCardOrder(phone));
  await phone.evaluate(() => window.scrollTo(0, 0));
  await shot(phone, 'phone-first-screen');
  await shot(phone, 'phone-full', true);
  await phone.browserContext().close();
  await page.browserContext().close();

  // ─── a token server
  const s2 = await startServer('token', { token: 's3cret' });
  const jobT = (await http(s2, 'POST', '/jobs', { ...TINY, activate: false })).json.id;
  await waitJob(s2, jobT, ['succeeded', 'failed']);
  s2.token = null; // the page's requests only
  const tp = await newPage(browser, { width: 1280, height: 900 });
  const statuses401 = [];
  tp.on('response', (r) => { if (r.status() === 401) statuses401.push(r.url()); });
  await tp.goto(s2.url + '/', { waitUntil: 'load' });
  await waitFor(tp, (id) => !!document.querySelector(`#model-list input[value="${id}"]`), jobT, 15000, 'the token page');
  check(7, 'a token server: "Token needed" and a note before any 401', statuses401.length === 0 && (await text(tp, '#token-state')) === 'Token needed' && await visible(tp, '#token-note'), await text(tp, '#token-note'));
  await shot(tp, 'token-needed');
  await tp.click(`#model-list input[value="${jobT}"]`);
  await tp.click('#model-submit');
  await waitFor(tp, () => !document.querySelector('#model-error').hidden, null, 8000, 'the 401 on the switch');
  await sleep(4500); // health polls and a list refresh happen meanwhile
  const err401 = await text(tp, '#model-error');
  check(7, 'a 401 on a model switch stays in the Models panel through the refreshes', statuses401.length >= 1 && /needs an access token/.test(err401) && await visible(tp, '#model-error'), err401);
  await tp.click('#token-toggle');
  await tp.type('#token-input', 'wrong-token');
  await tp.keyboard.press('Enter');
  await tp.click(`#model-list input[value="${jobT}"]`);
  await tp.click('#model-submit');
  await waitFor(tp, () => /rejected/.test(document.querySelector('#model-error').textContent), null, 8000, 'the rejected token');
  const rej = { msg: await text(tp, '#model-error'), btn: await text(tp, '#token-state') };
  check(7, 'a wrong token is called rejected, and the button says so', /rejected the access token/.test(rej.msg) && rej.btn === 'Token rejected', `${rej.msg} / button "${rej.btn}"`);
  await shot(tp, 'token-rejected');
  await tp.click('#token-toggle');
  await tp.$eval('#token-input', (el) => el.select());
  await tp.keyboard.type('s3cret');
  await tp.keyboard.press('Enter');
  await tp.click(`#model-list input[value="${jobT}"]`);
  await tp.click('#model-submit');
  await waitFor(tp, (id) => document.querySelector('#active-model-name').textContent === id, jobT, 8000, 'the switch with the token');
  check(7, 'the right token switches the model; the error and the warning go', (await text(tp, '#active-model-name')) === jobT && !(await visible(tp, '#model-error')) && (await text(tp, '#token-state')) === 'Token set');

  // ─── losing the server, and getting it back
  await stopServer(s2, 'SIGKILL');
  const lost = Date.now();
  await waitFor(tp, () => document.querySelector('#health').dataset.state === 'bad', null, 6000, 'the pill to say offline');
  const lostMs = Date.now() - lost;
  check(12, 'the pill says offline within ~2 s of the server stopping', (await tp.$eval('#health', (el) => el.dataset.state)) === 'bad' && lostMs <= 3000, `${lostMs} ms`);
  await sleep(2500);
  await shot(tp, 'offline');
  const s2b = await startServer('token', { token: 's3cret', port: s2.port, dataDir: s2.dataDir });
  const back = Date.now();
  await waitFor(tp, () => document.querySelector('#health').dataset.state === 'ok', null, 8000, 'the pill to say ready again');
  const backMs = Date.now() - back;
  await sleep(500);
  const errToasts = await tp.$$eval('.toast[data-kind="error"]', (ts) => ts.map((t) => t.textContent));
  check(12, 'back: the pill says ready within ~2 s and no stale error toast stays', (await tp.$eval('#health', (el) => el.dataset.state)) === 'ok' && backMs <= 3500 && errToasts.length === 0,
    `${backMs} ms; ${errToasts.join(' | ') || 'no error toast'}`);
  await shot(tp, 'reconnected');
  await tp.browserContext().close();
  await stopServer(s2b);

  const unexpected = consoleLines.filter((l) => !/Failed to load resource|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|net::ERR/.test(l));
  check('keep', 'no console errors besides the refused requests the test provoked', unexpected.length === 0, unexpected.slice(0, 3).join(' | '));
} catch (e) {
  check('run', 'the test ran to its end', false, e.stack || String(e));
} finally {
  await browser.close().catch(() => {});
  for (const s of servers) await stopServer(s).catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
console.log(`ux: screenshots in tests/out/ux-*.png (${secs()} s)`);
console.log(`ux: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
