/* The time left of a training run as the page shows it.
 *
 * The server's eta_s extrapolates from the batches so far, and the first ones are slow (buffers
 * allocated, caches cold): at batch 1 it said 7 min 41 s for a run that took ~3.6 min. So the
 * page says "estimating…" until a few batches have run, then measures the rate itself over the
 * batches it saw (after the warm-up) and smooths the estimate between polls, counting it down
 * in between. A page opened in the middle of a run takes the server's figure until it has its
 * own. Pure (a clock is passed in); unit-tested by tests/web/eta.test.mjs. */

/** One run's estimate. opts: minBatches (before them: estimating), minSpanS (seconds of
 * observations before the page's own rate counts), weight (of a new estimate against the
 * running one). */
export function etaTracker({ minBatches = 4, minSpanS = 2, weight = 0.35 } = {}) {
  let first = null, last = null, smooth = null;
  const at = (t) => smooth ? { eta: Math.max(0, smooth.eta - (t - smooth.t)), estimating: false } : { eta: null, estimating: true };
  return {
    /** p: the job's progress {epoch (1-based), epochs, batch, batches} or null; serverEta in
     * seconds or null; t: now in seconds. → { eta (seconds or null), estimating } */
    update(p, serverEta, t) {
      if (!p || !p.batches || !p.epochs) return at(t);
      const done = (p.epoch - 1) * p.batches + p.batch, total = p.epochs * p.batches;
      // Back at the first batches of an epoch: the run was cancelled and resumed from its last
      // checkpoint between two answers, so the page never saw it stop; it starts over
      if (last && done < last.done && p.batch < minBatches) first = last = smooth = null;
      if (last && done <= last.done) return at(t); // nothing new (validation, the same answer, an older one)
      last = { t, done };
      if (done < minBatches && p.epoch <= 1) return at(t);
      if (!first) first = { t, done };
      let raw = null;
      const span = t - first.t, seen = done - first.done;
      if (span >= minSpanS && seen >= minBatches && seen > 0) raw = (total - done) * (span / seen);
      else if (serverEta !== null && (p.epoch > 1 || first.done >= 0.1 * p.batches)) raw = serverEta;
      if (raw === null) return at(t);
      if (!smooth) smooth = { t, eta: raw };
      else {
        const projected = Math.max(0, smooth.eta - (t - smooth.t));
        smooth = { t, eta: projected + weight * (raw - projected) };
      }
      return at(t);
    },
    at,
  };
}

/** Trackers by job id: a run's tracker lives while it is running (a resumed run starts over).
 * get(id, state, progress, serverEta, t) → { eta, estimating } or null when not running. */
export function etaBook(opts) {
  const runs = new Map();
  return {
    get(id, state, p, serverEta, t) {
      if (state !== 'running') { runs.delete(id); return null; }
      let r = runs.get(id);
      if (!r) runs.set(id, (r = etaTracker(opts)));
      return r.update(p, serverEta, t);
    },
  };
}
