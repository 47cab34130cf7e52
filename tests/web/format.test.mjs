// node --test: static/js/format.mjs (run by build/tests/test_web_units in `make test`).
import test from 'node:test';
import assert from 'node:assert/strict';
import * as f from '../../static/js/format.mjs';

test('num: finite numbers only', () => {
  assert.equal(f.num(3), 3);
  assert.equal(f.num('2.5'), 2.5);
  for (const v of [null, undefined, '', NaN, Infinity, 'x']) assert.equal(f.num(v), null);
});

test('esc: HTML special characters', () => {
  assert.equal(f.esc(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  assert.equal(f.esc(null), '');
});

test('colours: #rrggbb to [r,g,b] to css', () => {
  assert.deepEqual(f.parseHexColor('#28a0Ff'), [40, 160, 255]);
  for (const bad of ['28a0ff', '#28a0f', '#28a0fff', 'red', '']) assert.equal(f.parseHexColor(bad), null);
  assert.equal(f.rgbCss([40, 160, 255]), 'rgb(40,160,255)');
});

test('fmtAgo: relative to now', () => {
  const now = Date.UTC(2024, 0, 15);
  const ago = (s) => f.fmtAgo(new Date(now - s * 1000), now);
  assert.equal(ago(10), 'just now');
  assert.equal(ago(600), '10 min ago');
  assert.equal(ago(7200), '2 h ago');
  assert.equal(ago(3 * 86400), '3 d ago');
  assert.equal(f.fmtAgo(null, now), '');
});

test('fmtDuration: s, min s, h min', () => {
  assert.equal(f.fmtDuration(null), '—');
  assert.equal(f.fmtDuration(-1), '—');
  assert.equal(f.fmtDuration(42.4), '42 s');
  assert.equal(f.fmtDuration(187), '3 min 07 s');
  assert.equal(f.fmtDuration(7500), '2 h 05 min');
});

test('fmtPct, fmtNum, fmtLr, fmtBytes', () => {
  assert.equal(f.fmtPct(0.4567), '45.7%');
  assert.equal(f.fmtPct(0.5, 0), '50%');
  assert.equal(f.fmtPct(null), '—');
  assert.equal(f.fmtNum(0.123456), '0.123');
  assert.equal(f.fmtNum(12345.6), (12346).toLocaleString());
  assert.equal(f.fmtLr(0.001), '1e-3');
  assert.equal(f.fmtLr(0.00025), '2.5e-4');
  assert.equal(f.fmtLr(0.05), '0.05');
  assert.equal(f.fmtLr(0), '0');
  assert.equal(f.fmtBytes(512), '512 B');
  assert.equal(f.fmtBytes(1536), '1.5 KB');
  assert.equal(f.fmtBytes(50 * 1024 * 1024), '50 MB');
  assert.equal(f.fmtBytes(null), '');
});

test('shortId and badge', () => {
  assert.equal(f.shortId('j000001'), 'j000001');
  assert.equal(f.shortId('abcdefghijklmnop'), 'abcdefghijkl…');
  assert.match(f.badge('running'), /data-state="running".*running<\/span>$/);
});
