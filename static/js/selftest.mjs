/* ?selftest=1: segments a generated 128×64 gray tile through the real API (one POST /segment;
 * the page composes the overlay and the counts) and sets <body data-selftest="ok"> (or "fail:
 * reason"); tests/dashboard.sh waits for it. Loaded by main.mjs with import() only then. */
import { $ } from './dom.mjs';
import { store } from './store.mjs';
import { rgbCss } from './format.mjs';
import { toast } from './toasts.mjs';
import { segmentBlob } from './segment.mjs';

function makeTestTile(w = 128, h = 64) {
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  const ctx = c.getContext('2d');
  const g = ctx.createLinearGradient(0, 0, w, h);
  g.addColorStop(0, '#555'); g.addColorStop(1, '#9a9a9a');
  ctx.fillStyle = g; ctx.fillRect(0, 0, w, h);
  const blobs = [[24, 20, 14, 9, '#dcdcdc'], [70, 40, 22, 12, '#2a2a2a'], [104, 18, 10, 10, '#f4f4f4'], [46, 52, 16, 6, '#c4c4c4']];
  for (const [x, y, rx, ry, col] of blobs) { ctx.fillStyle = col; ctx.beginPath(); ctx.ellipse(x, y, rx, ry, 0.3, 0, Math.PI * 2); ctx.fill(); }
  // Deterministic grain so that the tile is not flat.
  const img = ctx.getImageData(0, 0, w, h);
  let s = 12345;
  for (let i = 0; i < w * h; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const v = Math.max(0, Math.min(255, img.data[4 * i] + ((s >>> 16) % 21) - 10));
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
  }
  ctx.putImageData(img, 0, 0);
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('canvas.toBlob failed'))), 'image/png'));
}

async function check() {
  const r = await segmentBlob(await makeTestTile(), 'selftest.png');
  const classes = store.schema.classes, mask = $('#seg-mask');
  if (mask.naturalWidth !== 128 || mask.naturalHeight !== 64) throw new Error(`mask is ${mask.naturalWidth}×${mask.naturalHeight}, expected 128×64`);
  if (r.width !== 128 || r.height !== 64) throw new Error(`the result is ${r.width}×${r.height}, expected 128×64`);
  if (!$('#seg-overlay').naturalWidth) throw new Error('no overlay image');
  if (r.offPalette) throw new Error(`${r.offPalette} mask pixels are not /schema class colours (e.g. ${r.offExample})`);
  if (!r.model) throw new Error('POST /segment sent no X-Model header');
  const pix = r.counts.reduce((a, c) => a + c, 0);
  if (pix !== 128 * 64) throw new Error(`class pixel counts sum to ${pix}, not ${128 * 64}`);
  const swatches = [...document.querySelectorAll('#seg-legend li[data-class] .swatch-box')].map((el) => el.style.background);
  if (swatches.length !== classes.length) throw new Error(`the legend has ${swatches.length} classes, /schema ${classes.length}`);
  swatches.forEach((bg, i) => {
    if (bg !== rgbCss(classes[i].rgb).replace(/,/g, ', ')) throw new Error(`legend colour ${i} is ${bg}, /schema says ${rgbCss(classes[i].rgb)}`);
  });
}

export async function selftest() {
  document.body.dataset.selftest = 'running';
  try {
    await check();
    document.body.dataset.selftest = 'ok';
    toast('Self-test passed: segmentation round trip works.', 'ok');
  } catch (e) {
    document.body.dataset.selftest = `fail: ${e?.message || e}`;
  }
}
