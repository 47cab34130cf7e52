/* One poller: run a step, wait, run it again; back off on errors; stop on request.
 *
 *   const p = poller(async (live) => { ...; return delayMs or null (do not repeat) },
 *                    { onError: (e, retryMs, live) => delay or null });
 *   p.now();   // run the step now (a call while one runs asks for one more run after it)
 *   p.stop();  // no more runs; a step still in flight sees live() === false
 *
 * The step's `live()` says whether the poller has been stopped since the step began: a step
 * that awaited an answer checks it before touching shared state. Errors double the retry
 * delay from `min` up to `max`; a success resets it. While `hidden()` (the page is in the
 * background) nothing runs and nothing is scheduled: call now() when the page is visible again.
 * Pure (timers only); unit-tested by tests/web/poller.test.mjs. */
export function poller(step, {
  onError = (e, retryMs) => retryMs, min = 2000, max = 30000,
  hidden = () => typeof document !== 'undefined' && document.hidden,
} = {}) {
  let timer = 0, backoff = 0, inFlight = null, again = false, gen = 0;

  async function cycle(myGen) {
    const live = () => myGen === gen;
    let delay;
    try {
      delay = await step(live);
      if (live()) backoff = 0;
    } catch (e) {
      if (!live()) return null;
      backoff = Math.min(Math.max(min, backoff * 2), max);
      delay = onError(e, backoff, live);
    }
    return delay;
  }

  function now() {
    clearTimeout(timer);
    if (inFlight) { again = true; return inFlight; }
    if (hidden()) return Promise.resolve();
    const myGen = gen;
    const p = cycle(myGen).then((delay) => {
      if (inFlight === p) inFlight = null;
      if (myGen !== gen) return undefined;
      if (again) { again = false; return now(); }
      if (delay !== null && delay !== undefined && !hidden()) timer = setTimeout(now, delay);
      return undefined;
    });
    inFlight = p;
    return p;
  }

  function stop() {
    gen++;
    clearTimeout(timer);
    inFlight = null;
    again = false;
    backoff = 0;
  }

  return {
    now,
    stop,
    /** Clears a scheduled run without stopping (the page went to the background). */
    pause: () => clearTimeout(timer),
    get backoff() { return backoff; },
    get busy() { return inFlight !== null; },
  };
}
