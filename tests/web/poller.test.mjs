// node --test: static/js/poller.mjs (real timers, short delays).
import test from 'node:test';
import assert from 'node:assert/strict';
import { poller } from '../../static/js/poller.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const visible = () => false;

test('repeats after the delay the step returns; null ends it', async () => {
  let runs = 0;
  const p = poller(async () => (++runs < 3 ? 5 : null), { hidden: visible });
  await p.now();
  await sleep(60);
  assert.equal(runs, 3);
  await sleep(30);
  assert.equal(runs, 3);
});

test('errors back off from min, doubling up to max; a success resets', async () => {
  const seen = [];
  let fail = 4;
  const p = poller(async () => { if (fail-- > 0) throw new Error('down'); return null; }, {
    min: 2, max: 8, hidden: visible, onError: (e, retryMs) => { seen.push(retryMs); return retryMs; },
  });
  await p.now();
  await sleep(80);
  assert.deepEqual(seen, [2, 4, 8, 8]);
  assert.equal(p.backoff, 0);
});

test('onError may stop the polling', async () => {
  let runs = 0;
  const p = poller(async () => { runs++; throw Object.assign(new Error('gone'), { status: 404 }); }, {
    min: 1, hidden: visible, onError: () => null,
  });
  await p.now();
  await sleep(20);
  assert.equal(runs, 1);
});

test('now() while a step runs: shares it and runs once more after', async () => {
  let runs = 0, concurrent = 0, most = 0;
  const p = poller(async () => { concurrent++; most = Math.max(most, concurrent); runs++; await sleep(10); concurrent--; return null; }, { hidden: visible });
  const a = p.now(), b = p.now(), c = p.now();
  assert.equal(a, b);
  assert.equal(p.busy, true);
  await Promise.all([a, b, c]);
  await sleep(30);
  assert.equal(runs, 2);
  assert.equal(most, 1);
  assert.equal(p.busy, false);
});

test('stop(): no more runs, and the step in flight sees live() === false', async () => {
  let runs = 0, lastLive = null;
  const p = poller(async (live) => { runs++; await sleep(10); lastLive = live(); return 1; }, { hidden: visible });
  p.now();
  p.stop();
  await sleep(40);
  assert.equal(runs, 1);
  assert.equal(lastLive, false);
});

test('hidden: nothing runs or is scheduled until now() when visible', async () => {
  let hidden = true, runs = 0;
  const p = poller(async () => { runs++; return 1; }, { hidden: () => hidden });
  await p.now();
  assert.equal(runs, 0);
  hidden = false;
  p.now();
  await sleep(5);
  hidden = true;
  const seen = runs;
  await sleep(20);
  assert.ok(seen >= 1 && runs <= seen + 1, `runs ${runs} after ${seen}`);
  p.stop();
});
