/* The Segment a tile card. A PNG (dropped, picked, pasted or one of the bundled samples) is
 * checked first (type, size and pixel count from its header, against GET /schema's limits: a
 * file the server would refuse is never sent), then sent ONCE to POST /segment?format=json&maps=1,
 * whose answer carries the class ids, each pixel's uncertainty and the tile's confidence (with
 * "Whole frame" ticked, &frame=1: the image is segmented at the model's scale and answered at its
 * own size, and the frame limits of /schema apply instead of the tile limits). The
 * mask, the overlay, the uncertainty overlay (the toggle), the pixels per class and the class
 * under the pointer are composed here from it (segmath.mjs): one model run per drop. A file that arrives while
 * one is being segmented waits its turn (the card says so). A failure leaves the previous
 * result greyed out under a "previous result" label. Class names and colours come from /schema. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { esc, fmtBytes, fmtNum, fmtPct, rgbCss } from './format.mjs';
import { reportError } from './toasts.mjs';
import { uploadProblem } from './errors.mjs';
import { b64ToBytes, fractions, grayFromRgba, labelCounts, maskRgba, overlayRgba, summary, uncertaintyRgba } from './segmath.mjs';

const seg = { urls: [], labels: null, unc: null, gray: null, w: 0, h: 0, busy: false, queue: [], shown: '', overlayUrl: '', uncUrl: '' };
const classes = () => store.schema.classes;
const wholeFrame = () => $('#seg-frame').checked;
/** The limits a file is checked against: a tile's, or a whole frame's (pixels before resizing, and its body cap). */
function limits() {
  const l = store.schema.limits;
  return wholeFrame() ? { ...l, max_pixels: l.max_frame_pixels, max_body: l.max_frame_body } : l;
}
function showLimits() {
  const l = limits();
  $('#seg-limits').textContent = `up to ${l.max_pixels.toLocaleString('en-US')} pixels and ${fmtBytes(l.max_body)}${wholeFrame() ? ' per frame' : ''}`;
}

function setStatus(text) { $('#seg-status').textContent = text; }

/** RGBA pixels of a PNG blob, exactly as stored (no colour management: the mask's palette
 * colours must come back as /schema's). */
async function rgbaOf(blob) {
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const c = document.createElement('canvas');
  c.width = bmp.width; c.height = bmp.height;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  bmp.close();
  return { w: c.width, h: c.height, rgba: ctx.getImageData(0, 0, c.width, c.height).data };
}

function rgbaToBlob(rgba, w, h) {
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  c.getContext('2d').putImageData(new ImageData(rgba, w, h), 0, 0);
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('canvas.toBlob failed'))), 'image/png'));
}

function showImg(img, blob) {
  const url = URL.createObjectURL(blob);
  seg.urls.push(url);
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${img.alt}: the browser could not show the image`));
    img.src = url;
  });
}

function renderLegend(counts) {
  const f = fractions(counts);
  $('#seg-legend').innerHTML = classes().map((k) => `<li data-class="${k.id}">
      <span class="swatch-box" style="background:${rgbCss(k.rgb)}" aria-hidden="true"></span>
      <span class="cl-name">${esc(k.name)}</span>
      <span class="cl-bar" aria-hidden="true"><span style="width:${(f[k.id].fraction * 100).toFixed(2)}%;background:${rgbCss(k.rgb)}"></span></span>
      <span class="cl-pct">${fmtPct(f[k.id].fraction)}</span>
      <span class="cl-px muted">${f[k.id].pixels.toLocaleString()} px</span>
    </li>`).join('');
}

/** The previous result stays visible but greyed out and labelled, or goes when there is none. */
function markStale(name) {
  const result = $('#seg-result');
  if (result.hidden) return;
  result.classList.add('stale');
  const note = $('#seg-stale');
  note.hidden = false;
  note.textContent = `Previous result (${seg.shown}), not ${name}.`;
}

function failed(name, msg) {
  showError($('#seg-error'), msg);
  setStatus('');
  markStale(name);
}

/** Segments blob; resolves to { counts, offPalette, offExample, model, width, height } (the
 * self-test checks them) and shows the result, or shows the error and rejects. A call while
 * another runs waits for it. */
export async function segmentBlob(blob, name = 'image') {
  const head = new Uint8Array(await blob.slice(0, 24).arrayBuffer());
  const frame = wholeFrame(), lim = limits(); // as the file was dropped: a toggle meanwhile does not change it
  const problem = uploadProblem({ name, size: blob.size, head }, lim);
  if (problem) {
    failed(name, problem);
    throw new Error(problem);
  }
  if (seg.busy) {
    const turn = new Promise((resolve) => seg.queue.push(resolve));
    setStatus(`Busy with ${seg.busyName}: ${name} is next${seg.queue.length > 1 ? ` (${seg.queue.length} waiting)` : ''}.`);
    await turn;
  }
  seg.busy = true;
  seg.busyName = name;
  const dz = $('#dropzone');
  dz.classList.add('busy'); dz.setAttribute('aria-busy', 'true');
  setStatus(`Segmenting ${name}…`);
  const t0 = performance.now();
  try {
    const res = await api.segment(blob, { frame });
    const input = await rgbaOf(blob);
    if (res.width !== input.w || res.height !== input.h) throw new Error(`the answer is ${res.width}×${res.height} but the input is ${input.w}×${input.h}`);
    const labels = b64ToBytes(res.labels), unc = b64ToBytes(res.uncertainty);
    if (labels.length !== input.w * input.h || unc.length !== labels.length) throw new Error(`the answer's maps hold ${labels.length} and ${unc.length} pixels, not ${input.w * input.h}`);
    const lm = labelCounts(labels, classes());
    const gray = grayFromRgba(input.rgba);
    const [maskBlob, overlay, uncBlob] = await Promise.all([rgbaToBlob(maskRgba(labels, classes()), input.w, input.h),
      rgbaToBlob(overlayRgba(gray, labels, classes()), input.w, input.h), rgbaToBlob(uncertaintyRgba(gray, unc), input.w, input.h)]);
    for (const u of seg.urls) URL.revokeObjectURL(u);
    seg.urls = [];
    await Promise.all([showImg($('#seg-input'), blob), showImg($('#seg-mask'), maskBlob)]);
    seg.overlayUrl = URL.createObjectURL(overlay);
    seg.uncUrl = URL.createObjectURL(uncBlob);
    seg.urls.push(seg.overlayUrl, seg.uncUrl);
    await showOverlay();
    Object.assign(seg, { labels, unc, gray, w: input.w, h: input.h, shown: name });
    for (const img of document.querySelectorAll('.seg-images img')) {
      img.width = seg.w; img.height = seg.h;
      img.classList.toggle('pixelated', seg.w < 512);
    }
    renderLegend(lm.counts);
    const result = $('#seg-result');
    result.hidden = false;
    result.classList.remove('stale');
    $('#seg-stale').hidden = true;
    showError($('#seg-error'), '');
    const inferMs = res.timing.inference_ms;
    $('#seg-meta').textContent = [`${seg.w}×${seg.h} px`, res.frame ? `whole frame, segmented at ${res.frame.width}×${res.frame.height}` : '', `model ${res.model}`,
      inferMs > 0 ? `${fmtNum(inferMs, 3)} ms inference` : '', `${Math.round(performance.now() - t0)} ms round trip`].filter(Boolean).join(' · ');
    const conf = $('#seg-confidence');
    conf.textContent = `Confidence ${fmtPct(res.confidence)}`;
    conf.title = `mean top class probability ${res.confidence.toFixed(4)}; mean normalised entropy ${res.entropy.toFixed(4)} (0 certain, 1 all classes equally likely)`;
    conf.dataset.confidence = String(res.confidence);
    $('#seg-name').textContent = name;
    setStatus(`Segmented ${name}: ${summary(lm.counts, classes())}.`);
    return { counts: lm.counts, offPalette: lm.offPalette, offExample: lm.offExample, model: res.model, width: seg.w, height: seg.h, confidence: res.confidence };
  } catch (e) {
    failed(name, reportError(e, '', { inline: true, ctx: { name, size: blob.size, limits: lim } }));
    throw e;
  } finally {
    seg.busy = false;
    dz.classList.remove('busy'); dz.removeAttribute('aria-busy');
    seg.queue.shift()?.();
  }
}

/** The third image: the class overlay, or the uncertainty overlay when the toggle is on. */
function showOverlay() {
  const on = $('#seg-unc-toggle').checked, img = $('#seg-overlay');
  $('#seg-overlay-cap').textContent = on ? 'Uncertainty (pink: unsure)' : 'Overlay';
  img.alt = on ? 'Uncertainty of each pixel over the input: the pinker, the less sure' : 'Mask overlaid on the input';
  const url = on ? seg.uncUrl : seg.overlayUrl;
  if (!url || img.src === url) return Promise.resolve();
  return new Promise((resolve) => { img.onload = img.onerror = () => resolve(); img.src = url; });
}

/** The class under the pointer, read from the mask. */
function initProbe() {
  const probe = $('#seg-probe');
  for (const img of document.querySelectorAll('.seg-images img')) {
    img.addEventListener('pointermove', (e) => {
      if (!seg.labels || !seg.w) return;
      const r = img.getBoundingClientRect();
      const x = Math.min(seg.w - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * seg.w)));
      const y = Math.min(seg.h - 1, Math.max(0, Math.floor(((e.clientY - r.top) / r.height) * seg.h)));
      const k = classes()[seg.labels[y * seg.w + x]];
      probe.innerHTML = `x ${x}, y ${y} · <span class="swatch-box inline" style="background:${rgbCss(k.rgb)}"></span> <strong>${esc(k.name)}</strong> · gray ${seg.gray[y * seg.w + x]} · uncertainty ${fmtPct(seg.unc[y * seg.w + x] / 255)}`;
      for (const li of document.querySelectorAll('#seg-legend li[data-class]')) li.classList.toggle('hot', Number(li.dataset.class) === k.id);
    });
    img.addEventListener('pointerleave', () => {
      for (const li of document.querySelectorAll('#seg-legend li.hot')) li.classList.remove('hot');
    });
  }
}

export function initSegment() {
  const dz = $('#dropzone'), input = $('#file-input');
  showLimits();
  $('#seg-frame').addEventListener('change', showLimits);
  const take = (file, name = file?.name || 'pasted image') => {
    if (!file) return;
    showError($('#seg-error'), '');
    segmentBlob(file, name).catch(() => { /* shown in the card */ });
  };
  dz.addEventListener('click', () => input.click());
  dz.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); }
  });
  input.addEventListener('change', () => { for (const f of input.files) take(f); input.value = ''; });
  dz.addEventListener('dragenter', (e) => { e.preventDefault(); dz.classList.add('over'); });
  dz.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; dz.classList.add('over'); });
  dz.addEventListener('dragleave', (e) => { if (!dz.contains(e.relatedTarget)) dz.classList.remove('over'); });
  dz.addEventListener('drop', (e) => {
    e.preventDefault(); dz.classList.remove('over');
    const files = [...(e.dataTransfer?.files ?? [])];
    if (!files.length) { showError($('#seg-error'), 'Nothing to segment: drop a PNG file.'); return; }
    for (const f of files) take(f);
  });
  // A drop that misses the zone must not navigate away from the dashboard.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => { if (!dz.contains(e.target)) e.preventDefault(); });
  document.addEventListener('paste', (e) => {
    if (e.target.closest?.('input, textarea, select')) return;
    const f = [...(e.clipboardData?.files ?? [])].find((x) => x.type === 'image/png');
    if (f) take(f);
  });
  // the bundled samples (copies of examples/, tests/web/samples.test.mjs keeps them equal)
  $('#seg-samples').addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-sample]');
    if (!b) return;
    try {
      const r = await fetch(b.dataset.sample, { cache: 'force-cache' });
      if (!r.ok) throw new Error(`the sample ${b.dataset.sample} is missing (HTTP ${r.status})`);
      take(await r.blob(), b.dataset.name);
    } catch (ex) {
      showError($('#seg-error'), reportError(ex, 'Loading the sample', { inline: true }));
    }
  });
  $('#seg-unc-toggle').addEventListener('change', () => { showOverlay(); });
  initProbe();
}
