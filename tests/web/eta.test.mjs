// node --test: static/js/eta.mjs — "estimating…" until a few batches ran, then the page's own
// rate, smoothed (run by build/tests/test_web_units in `make test`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { etaBook, etaTracker } from '../../static/js/eta.mjs';

/** A run of `epochs` x `batches` whose first batch takes `first` s and the rest `step` s each;
 * the server's naive ETA extrapolates from the mean so far (as the issue saw: 2x at batch 1).
 * Polled every `poll` s; returns [{ t, done, real, shown }]. */
function simulate({ epochs = 2, batches = 100, first = 4, step = 1, poll = 1, tracker = etaTracker() } = {}) {
  const total = epochs * batches, end = first + (total - 1) * step, out = [];
  for (let t = 0.5; t < end; t += poll) {
    const done = t < first ? 0 : Math.min(total, 1 + Math.floor((t - first) / step));
    if (done === 0) { out.push({ t, done, real: end - t, shown: tracker.update(null, null, t) }); continue; }
    const p = { epoch: Math.min(epochs, 1 + Math.floor((done - 1) / batches)), epochs, batches, batch: ((done - 1) % batches) + 1 };
    const server = (t / done) * (total - done);
    out.push({ t, done, real: end - t, server, shown: tracker.update(p, server, t) });
  }
  return out;
}

test('estimating until a few batches have run, never the warm-up extrapolation', () => {
  const run = simulate();
  for (const r of run.filter((x) => x.done < 4)) assert.equal(r.shown.estimating, true, `at batch ${r.done}`);
  // the server's figure at batch 1 is ~2x the real time left (the 7 min 41 s vs ~3.6 min)
  const b1 = run.find((x) => x.done === 1);
  assert.ok(b1.server / b1.real > 1.5, 'fixture: the server overestimates at batch 1');
});

test('once shown, the ETA is within 25% of the real time left and only counts down smoothly', () => {
  const run = simulate().filter((x) => !x.shown.estimating);
  assert.ok(run.length > 100);
  const settled = run.filter((x) => x.done >= 12 && x.real > 10);
  for (const r of settled) assert.ok(Math.abs(r.shown.eta - r.real) / r.real < 0.25, `t=${r.t}: shows ${r.shown.eta.toFixed(1)} s, real ${r.real.toFixed(1)} s`);
  for (let i = 1; i < run.length; i++) assert.ok(run[i].shown.eta <= run[i - 1].shown.eta + 1.5, `jumps up at t=${run[i].t}`);
});

test('a page opened mid-run takes the server\'s figure until it has its own', () => {
  const tr = etaTracker();
  const p = { epoch: 2, epochs: 3, batches: 50, batch: 10 };
  const r = tr.update(p, 90, 100);
  assert.deepEqual(r, { eta: 90, estimating: false });
  assert.equal(tr.at(105).eta, 85); // counts down between answers
  assert.equal(tr.update(p, 80, 106).eta, 84); // the same batch again: nothing new
});

test('stale or missing progress changes nothing; a book forgets runs that stop', () => {
  const tr = etaTracker();
  assert.deepEqual(tr.update(null, null, 0), { eta: null, estimating: true });
  assert.deepEqual(tr.update({ epoch: 1, epochs: 0, batch: 1, batches: 0 }, 5, 1), { eta: null, estimating: true });
  const book = etaBook();
  const p = { epoch: 3, epochs: 4, batches: 10, batch: 5 };
  assert.equal(book.get('j1', 'running', p, 30, 0).eta, 30);
  assert.equal(book.get('j1', 'cancelled', p, 30, 1), null);
  // resumed: a fresh tracker (the first answer counts again)
  assert.equal(book.get('j1', 'running', { ...p, batch: 6 }, 50, 2).eta, 50);
});

test('a run resumed between two answers (the page never saw it stop) is estimating again', () => {
  const tr = etaTracker();
  for (let b = 1; b <= 60; b++) tr.update({ epoch: 1, epochs: 2, batches: 100, batch: b }, 200, b);
  assert.equal(tr.at(60).estimating, false);
  // cancelled at batch 60, resumed from the start of epoch 1 before the next poll
  assert.deepEqual(tr.update({ epoch: 1, epochs: 2, batches: 100, batch: 1 }, 500, 70), { eta: null, estimating: true });
  assert.equal(tr.update({ epoch: 1, epochs: 2, batches: 100, batch: 3 }, 480, 72).estimating, true);
  // an older answer arriving late (batch 58 after 60) still changes nothing
  const tr2 = etaTracker();
  for (let b = 1; b <= 60; b++) tr2.update({ epoch: 1, epochs: 2, batches: 100, batch: b }, 200, b);
  assert.equal(tr2.update({ epoch: 1, epochs: 2, batches: 100, batch: 58 }, 200, 61).estimating, false);
});
