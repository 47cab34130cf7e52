// node --test: static/js/segmath.mjs — class ids back from the mask's palette colours, counts,
// and the overlay as the server draws it (run by build/tests/test_web_units in `make test`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { fractions, grayFromRgba, labelsFromRgba, overlayRgba, summary } from '../../static/js/segmath.mjs';

const CLASSES = [[40, 40, 40], [214, 160, 84], [160, 70, 60], [250, 220, 120], [70, 130, 230]]
  .map((rgb, id) => ({ id, rgb, name: ['background', 'soil', 'bedrock', 'sand', 'big rock'][id] }));
const rgba = (pixels) => new Uint8ClampedArray(pixels.flatMap(([r, g, b]) => [r, g, b, 255]));

test('labels and counts from exact palette colours', () => {
  const ids = [0, 1, 1, 2, 3, 3, 3, 4];
  const r = labelsFromRgba(rgba(ids.map((i) => CLASSES[i].rgb)), CLASSES);
  assert.deepEqual([...r.labels], ids);
  assert.deepEqual(r.counts, [1, 2, 1, 3, 1]);
  assert.equal(r.offPalette, 0);
});

test('near colours snap to the nearest class; far ones are counted as off-palette', () => {
  const r = labelsFromRgba(rgba([[41, 40, 39], [70, 131, 229], [255, 0, 255]]), CLASSES);
  assert.deepEqual([...r.labels.slice(0, 2)], [0, 4]);
  assert.equal(r.offPalette, 1);
  assert.equal(r.offExample, 'rgb(255,0,255)');
});

test('overlay: class colour at 0.45 over gray, the server\'s fixed-point rounding', () => {
  const gray = Uint8Array.from([0, 255, 128]), labels = Uint8Array.from([4, 0, 3]);
  const o = overlayRgba(gray, labels, CLASSES);
  // (g*141 + c*115 + 128) >> 8, as core/png.c ms_png_encode_overlay
  const px = (g, c) => c.map((v) => (g * 141 + v * 115 + 128) >> 8);
  assert.deepEqual([...o.slice(0, 3)], px(0, CLASSES[4].rgb));
  assert.deepEqual([...o.slice(4, 7)], px(255, CLASSES[0].rgb));
  assert.deepEqual([...o.slice(8, 11)], px(128, CLASSES[3].rgb));
  assert.equal(o[3], 255);
});

test('gray levels, fractions and the summary line', () => {
  assert.deepEqual([...grayFromRgba(rgba([[10, 10, 10], [255, 255, 255], [255, 0, 0]]))], [10, 255, 76]);
  assert.deepEqual(fractions([1, 3]), [{ pixels: 1, fraction: 0.25 }, { pixels: 3, fraction: 0.75 }]);
  assert.deepEqual(fractions([0, 0]), [{ pixels: 0, fraction: 0 }, { pixels: 0, fraction: 0 }]);
  assert.equal(summary([10, 0, 33, 41, 16], CLASSES), '41% sand, 33% bedrock');
  assert.equal(summary([100, 0, 0, 0, 0], CLASSES), 'mostly background');
});

test('the JSON answer\'s maps: base64 to bytes, counts, mask colours and the uncertainty tint', async () => {
  const { b64ToBytes, labelCounts, maskRgba, uncertaintyRgba, UNCERTAIN_RGB } = await import('../../static/js/segmath.mjs');
  const labels = b64ToBytes(Buffer.from([0, 1, 4, 4, 9]).toString('base64'));
  assert.deepEqual([...labels], [0, 1, 4, 4, 9]);
  const c = labelCounts(labels, CLASSES);
  assert.deepEqual(c.counts, [1, 1, 0, 0, 2]);
  assert.equal(c.offPalette, 1);
  const m = maskRgba(Uint8Array.from([2, 4]), CLASSES);
  assert.deepEqual([...m], [...CLASSES[2].rgb, 255, ...CLASSES[4].rgb, 255]);
  const u = uncertaintyRgba(Uint8Array.from([100, 100]), Uint8Array.from([0, 255]));
  assert.deepEqual([...u.slice(0, 4)], [100, 100, 100, 255]); // certain: the gray pixel
  const a = Math.round(218), g = 100 * (256 - a); // uncertain: 85% of the way to the tint
  assert.deepEqual([...u.slice(4, 7)], UNCERTAIN_RGB.map((t) => (g + t * a + 128) >> 8));
});
