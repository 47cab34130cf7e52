// node --test: the chart geometry and markup of static/js/chart.mjs.
import test from 'node:test';
import assert from 'node:assert/strict';
import * as c from '../../static/js/chart.mjs';

const opt = (over = {}) => ({
  xMax: 4, n: 3, empty: 'nothing', label: 'Loss', fmt: (v) => v.toFixed(2), y: 'auto',
  series: [{ name: 'train', color: '#f0a04b', data: [[1, 0.9], [2, null], [3, 0.5]] }], ...over,
});

test('niceStep: 1, 2, 2.5, 5 × 10^k', () => {
  assert.equal(c.niceStep(10, 4), 2.5);
  assert.equal(c.niceStep(1, 4), 0.25);
  assert.equal(c.niceStep(7, 4), 2);
  assert.equal(c.niceStep(100, 3), 50);
  assert.equal(c.niceStep(3, 10), 0.5);
});

test('yAxis: unit, auto (from 0, nice ticks above the top value), empty', () => {
  assert.deepEqual(c.yAxis('unit', [0.3]), { y0: 0, y1: 1, ticks: [0, 0.25, 0.5, 0.75, 1], logY: false });
  const a = c.yAxis('auto', [0.2, 1.3]);
  assert.equal(a.y0, 0);
  assert.ok(a.y1 >= 1.3 * 1.04 && a.y1 < 2, `y1 ${a.y1}`);
  assert.deepEqual(a.ticks, [0, 0.5, 1, 1.5]);
  assert.deepEqual(c.yAxis('auto', []), { y0: 0, y1: 1, ticks: [], logY: false });
});

test('yAxis: log only across more than about a decade', () => {
  const lin = c.yAxis('log', [1e-3, 5e-4]);
  assert.equal(lin.logY, false);
  const log = c.yAxis('log', [1e-3, 1e-6]);
  assert.equal(log.logY, true);
  assert.deepEqual([log.y0, log.y1], [-6, -3]);
  assert.deepEqual(log.ticks.map((t) => Math.round(Math.log10(t))), [-6, -5, -4, -3]);
});

test('xTicks: whole epochs, about one per 55 px', () => {
  assert.deepEqual(c.xTicks(4, 400), [0, 1, 2, 3, 4]);
  assert.deepEqual(c.xTicks(100, 220), [0, 25, 50, 75, 100]);
  assert.deepEqual(c.xTicks(1, 300), [0, 1]);
});

test('geometry: margins, heights and scales', () => {
  const g = c.geometry(opt(), 400);
  assert.equal(g.H, 180);
  assert.equal(c.geometry(opt(), 600).H, 200);
  assert.equal(g.iw, 400 - c.MARGIN.l - c.MARGIN.r);
  assert.equal(g.sx(0), c.MARGIN.l);
  assert.equal(g.sx(4), c.MARGIN.l + g.iw);
  assert.equal(g.sy(0), c.MARGIN.t + g.ih);
  assert.equal(g.sy(g.y1), c.MARGIN.t);
});

test('seriesPath: a gap at null, stairs for step series', () => {
  const g = { sx: (x) => x * 10, sy: (v) => v * 100, logY: false };
  assert.deepEqual(c.seriesPath({ data: [[1, 0.9], [2, null], [3, 0.5]] }, g), { d: 'M10.0 90.0M30.0 50.0', last: ['30.0', '50.0'] });
  assert.equal(c.seriesPath({ data: [[1, 0.9], [2, 0.5]] }, g).d, 'M10.0 90.0L20.0 50.0');
  assert.equal(c.seriesPath({ step: true, data: [[1, 0.9], [2, 0.5]] }, g).d, 'M10.0 90.0H20.0V50.0');
  assert.equal(c.seriesPath({ data: [[1, 0], [2, 0.5]] }, { ...g, logY: true }).d, 'M20.0 50.0');
  assert.deepEqual(c.seriesPath({ data: [] }, g), { d: '', last: null });
});

test('chartSvg: lines, markers, live point, empty note, summary', () => {
  const { svg } = c.chartSvg(opt(), 400);
  assert.equal((svg.match(/<path class="line" d="M[0-9.]+ [0-9.]+/g) || []).length, 1);
  assert.equal((svg.match(/<circle class="dot"/g) || []).length, 2);
  assert.match(svg, /aria-label="Loss over 3 epochs; latest: train 0.50"/);
  const live = c.chartSvg(opt({ series: [{ name: 'train', color: '#fff', data: [[1, 0.9]], live: [1.5, 0.7] }] }), 400).svg;
  assert.match(live, /<line class="live-line"/);
  assert.match(live, /<circle class="live-dot"/);
  const empty = c.chartSvg(opt({ n: 0, series: [{ name: 'train', color: '#fff', data: [] }] }), 400).svg;
  assert.match(empty, /<text class="empty-note"[^>]*>nothing<\/text>/);
  assert.doesNotMatch(empty, /class="line"/);
  assert.equal(c.chartSummary(opt({ n: 0 })), 'Loss: nothing');
  const many = c.chartSvg(opt({ n: 41 }), 400).svg;
  assert.doesNotMatch(many, /class="dot"/);
});

test('legendHtml: names, latest values, escaped', () => {
  const html = c.legendHtml(opt({ series: [{ name: 'a<b', color: '#fff', dash: '2 3', data: [[1, 0.25], [2, null]] }] }));
  assert.equal(html, '<li><span class="swatch dashed" style="--c:#fff" aria-hidden="true"></span>a&lt;b <span class="legend-val">0.25</span></li>');
});

test('nearestEpoch: the epoch under the pointer', () => {
  const g = c.geometry(opt(), 400);
  assert.equal(c.nearestEpoch([1, 2, 3], g.sx(2.4), g, 4), 2);
  assert.equal(c.nearestEpoch([1, 2, 3], g.sx(3.9), g, 4), 3);
  assert.equal(c.nearestEpoch([1, 2, 3], 0, g, 4), 1);
});

test('lineColor: dark class colours lightened for the dark card, bright ones kept', () => {
  assert.equal(c.lineColor([214, 160, 84]), '#d6a054');
  assert.equal(c.lineColor([250, 220, 120]), '#fadc78');
  const luma = (hex) => { const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); return 0.299 * r + 0.587 * g + 0.114 * b; };
  for (const rgb of [[40, 40, 40], [160, 70, 60], [70, 130, 230], [0, 0, 0]]) {
    const out = c.lineColor(rgb);
    assert.ok(luma(out) >= 149.5, `${out} from ${rgb}`);
  }
  assert.equal(c.lineColor([40, 40, 40]), '#969696'); // a gray stays gray
});
