/* The Segment a tile card: a PNG (dropped, picked or pasted) goes to POST /segment three times
 * (the palette mask, ?format=overlay and ?format=json); the page shows the three images, the
 * pixels per class and, under the pointer, the class read back from the mask's colours. Class
 * names and colours come from /schema only. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { esc, fmtNum, fmtPct, rgbCss } from './format.mjs';
import { toast, dropToast, reportError } from './toasts.mjs';

const seg = { urls: [], labels: null, gray: null, w: 0, h: 0, busy: false };
const classes = () => store.schema.classes;

async function isPng(blob) {
  const head = new Uint8Array(await blob.slice(0, 8).arrayBuffer());
  return [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => head[i] === b);
}

function loadImg(img, blob) {
  const url = URL.createObjectURL(blob);
  seg.urls.push(url);
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${img.alt}: the browser could not decode the image`));
    img.src = url;
  });
}

function pixelsOf(img) {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height).data;
}

/** Mask colours → class ids (the nearest /schema colour; offPalette counts the pixels that are
 * not one of them exactly, give or take rounding). */
function labelsFromMask(img) {
  const px = pixelsOf(img), n = px.length / 4, labels = new Uint8Array(n);
  let offPalette = 0, offExample = null;
  for (let i = 0; i < n; i++) {
    const r = px[4 * i], g = px[4 * i + 1], b = px[4 * i + 2];
    let best = 0, bd = Infinity;
    for (const k of classes()) {
      const d = (r - k.rgb[0]) ** 2 + (g - k.rgb[1]) ** 2 + (b - k.rgb[2]) ** 2;
      if (d < bd) { bd = d; best = k.id; }
    }
    labels[i] = best;
    if (bd > 12) { offPalette++; offExample = offExample || `rgb(${r},${g},${b})`; }
  }
  return { labels, offPalette, offExample };
}

function renderLegend(counts, fromServer) {
  $('#seg-legend').innerHTML = classes().map((k) => {
    const c = counts[k.id];
    return `<li data-class="${k.id}">
      <span class="swatch-box" style="background:${rgbCss(k.rgb)}" aria-hidden="true"></span>
      <span class="cl-name">${esc(k.name)}</span>
      <span class="cl-bar" aria-hidden="true"><span style="width:${(c.fraction * 100).toFixed(2)}%;background:${rgbCss(k.rgb)}"></span></span>
      <span class="cl-pct">${fmtPct(c.fraction)}</span>
      <span class="cl-px muted">${c.pixels.toLocaleString()} px</span>
    </li>`;
  }).join('') + (fromServer ? '' : '<li class="muted small-text">counted in the browser from the mask</li>');
}

/** Segments blob; resolves to { counts, fromServer, offPalette, offExample, info, model } (the
 * self-test checks them) and shows the result, or shows the error and rejects. */
export async function segmentBlob(blob, name = 'image') {
  const err = $('#seg-error'), dz = $('#dropzone');
  showError(err, '');
  if (!(await isPng(blob))) {
    const msg = `${name} is not a PNG file: the service segments PNG images only.`;
    showError(err, msg);
    toast(msg, 'error', 'seg-err');
    throw new Error(msg);
  }
  if (seg.busy) throw new Error('a segmentation is already running');
  seg.busy = true;
  dz.classList.add('busy'); dz.setAttribute('aria-busy', 'true');
  $('.dz-title').textContent = `Segmenting ${name}…`;
  toast(`Segmenting ${name}…`, 'info', 'seg');
  const t0 = performance.now();
  try {
    for (const u of seg.urls) URL.revokeObjectURL(u);
    seg.urls = [];
    const [maskRes, overlayRes, infoRes] = await Promise.allSettled([
      api.segmentMask(blob), api.segmentOverlay(blob), api.segmentInfo(blob, classes().length),
    ]);
    if (maskRes.status === 'rejected') throw maskRes.reason;
    const model = maskRes.value.headers.get('X-Model');
    $('#seg-result').hidden = false;
    const imgs = [loadImg($('#seg-input'), blob), loadImg($('#seg-mask'), await maskRes.value.blob())];
    if (overlayRes.status === 'fulfilled') imgs.push(loadImg($('#seg-overlay'), overlayRes.value));
    else { $('#seg-overlay').removeAttribute('src'); reportError(overlayRes.reason, 'Overlay'); }
    await Promise.all(imgs);
    const input = $('#seg-input'), mask = $('#seg-mask');
    seg.w = input.naturalWidth; seg.h = input.naturalHeight;
    for (const img of document.querySelectorAll('.seg-images img')) {
      img.width = seg.w; img.height = seg.h;
      img.classList.toggle('pixelated', seg.w < 512);
    }
    if (mask.naturalWidth !== seg.w || mask.naturalHeight !== seg.h)
      throw new Error(`the mask is ${mask.naturalWidth}×${mask.naturalHeight} but the input is ${seg.w}×${seg.h}`);
    const lm = labelsFromMask(mask);
    seg.labels = lm.labels;
    const px = pixelsOf(input);
    seg.gray = new Uint8Array(seg.w * seg.h);
    for (let i = 0; i < seg.gray.length; i++) seg.gray[i] = Math.round(0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2]);
    const info = infoRes.status === 'fulfilled' ? infoRes.value : null;
    let counts;
    if (info) counts = info.classes.map((c) => ({ pixels: c.pixels, fraction: c.fraction }));
    else {
      reportError(infoRes.reason, 'Class statistics (counted in the browser instead)');
      const pixels = new Array(classes().length).fill(0);
      for (const l of seg.labels) pixels[l]++;
      counts = pixels.map((p) => ({ pixels: p, fraction: p / seg.labels.length }));
    }
    renderLegend(counts, !!info);
    $('#seg-meta').textContent = [`${seg.w}×${seg.h} px`, model || info ? `model ${model || info.model}` : '',
      info ? `${fmtNum(info.timing.inference_ms, 3)} ms inference` : '', `${Math.round(performance.now() - t0)} ms round trip`].filter(Boolean).join(' · ');
    dropToast('seg');
    const top = classes().filter((k) => k.id !== 0 && counts[k.id].fraction > 0).sort((a, b) => counts[b.id].fraction - counts[a.id].fraction);
    toast(`Segmented ${name}: ${top.slice(0, 2).map((k) => `${fmtPct(counts[k.id].fraction, 0)} ${k.name}`).join(', ') || 'mostly background'}.`, 'ok', 'seg-done');
    return { counts, fromServer: !!info, offPalette: lm.offPalette, offExample: lm.offExample, info, model };
  } catch (e) {
    dropToast('seg');
    showError(err, reportError(e, `Segmenting ${name}`, 'seg-err'));
    throw e;
  } finally {
    seg.busy = false;
    dz.classList.remove('busy'); dz.removeAttribute('aria-busy');
    $('.dz-title').innerHTML = 'Drop a PNG here, or <span class="linkish">choose a file</span>';
  }
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
      probe.innerHTML = `x ${x}, y ${y} · <span class="swatch-box inline" style="background:${rgbCss(k.rgb)}"></span> <strong>${esc(k.name)}</strong> · gray ${seg.gray[y * seg.w + x]}`;
      for (const li of document.querySelectorAll('#seg-legend li[data-class]')) li.classList.toggle('hot', Number(li.dataset.class) === k.id);
    });
    img.addEventListener('pointerleave', () => {
      for (const li of document.querySelectorAll('#seg-legend li.hot')) li.classList.remove('hot');
    });
  }
}

export function initSegment() {
  const dz = $('#dropzone'), input = $('#file-input');
  const open = () => { if (!seg.busy) input.click(); };
  const take = (file) => {
    if (!file) return;
    segmentBlob(file, file.name || 'pasted image').catch(() => { /* shown in the card and as a toast */ });
  };
  dz.addEventListener('click', open);
  dz.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); }
  });
  input.addEventListener('change', () => { take(input.files[0]); input.value = ''; });
  dz.addEventListener('dragenter', (e) => { e.preventDefault(); dz.classList.add('over'); });
  dz.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; dz.classList.add('over'); });
  dz.addEventListener('dragleave', (e) => { if (!dz.contains(e.relatedTarget)) dz.classList.remove('over'); });
  dz.addEventListener('drop', (e) => {
    e.preventDefault(); dz.classList.remove('over');
    const f = [...(e.dataTransfer?.files ?? [])][0];
    if (!f) { showError($('#seg-error'), 'Nothing to segment: drop a PNG file.'); return; }
    take(f);
  });
  // A drop that misses the zone must not navigate away from the dashboard.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => { if (!dz.contains(e.target)) e.preventDefault(); });
  document.addEventListener('paste', (e) => {
    if (e.target.closest?.('input, textarea, select')) return;
    const f = [...(e.clipboardData?.files ?? [])].find((x) => x.type === 'image/png');
    if (f) take(f);
  });
  initProbe();
}
