// node --test: static/js/evalmath.mjs — the confusion heatmap's cells and the IoU pairs
// (run by build/tests/test_web_units in `make test`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { heatColor, heatRows, iouRows, progressText } from '../../static/js/evalmath.mjs';

const CLASSES = ['background', 'soil', 'bedrock'].map((name, id) => ({ id, name, rgb: [id * 80, 40, 40] }));
const REPORT = {
  confusion: [[8, 2, 0], [1, 3, 0], [0, 0, 0]],
  normalized: [[0.8, 0.2, 0], [0.25, 0.75, 0], [null, null, null]],
  iou: [0.727, 0.6, null],
};

test('heatmap: rows are the truth, cells the row-normalised share with the count in the hover text', () => {
  const rows = heatRows(REPORT, CLASSES);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[0].cells.map((c) => c.v), [0.8, 0.2, 0]);
  assert.deepEqual(rows[1].cells.map((c) => c.count), [1, 3, 0]);
  assert.equal(rows[1].cells[0].title, 'truth soil → predicted background: 1 pixels (25.0% of soil)');
  assert.match(rows[2].cells[2].title, /no such pixel in the truth/);
});

test('heatmap colour: transparent for no share, stronger for more', () => {
  assert.equal(heatColor(null), 'rgba(232, 118, 58, 0)');
  assert.ok(heatColor(0.9) > heatColor(0.1));
});

test('IoU pairs: model A and B per class; B absent is null', () => {
  const b = { iou: [0.5, 0.7, null] };
  assert.deepEqual(iouRows(REPORT, b, CLASSES).map((r) => [r.name, r.a, r.b]), [['background', 0.727, 0.5], ['soil', 0.6, 0.7], ['bedrock', null, null]]);
  assert.deepEqual(iouRows(REPORT, null, CLASSES).map((r) => r.b), [null, null, null]);
});

test('progress in words', () => {
  assert.equal(progressText({ done: 3, total: 10 }), '3 of 10 tiles');
  assert.equal(progressText(null), 'queued');
});
