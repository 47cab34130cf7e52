/* The Training runs card: GET /jobs polled (fast while a job is queued or running), the list,
 * toasts when a job changes state, and the Cancel/Resume buttons (also used by the run view). */
import { $ } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { ACTIVE_STATES } from './schema.mjs';
import { badge, esc, fmtAgo, fmtDuration, fmtPct, shortId } from './format.mjs';
import { toast, dropToast, reportError } from './toasts.mjs';
import { poller } from './poller.mjs';
import { refreshModels } from './models.mjs';
import { etaBook } from './eta.mjs';

const ACTIVE_MS = 2000;  // while any job is queued or running
const IDLE_MS = 20000;   // otherwise (notices jobs started elsewhere, e.g. with curl)

// Wired by main.mjs: what the run view does when the list changes or a job is picked or touched.
let hooks = { onList() {}, onSelect() {}, onTouched() {} };
const cancelRequested = new Set();

/** The page's ETA of each running job (eta.mjs), shared by the list and the run view. */
const etas = etaBook();
export const etaOf = (id, state, progress, serverEta) => etas.get(id, state, progress, serverEta, performance.now() / 1000);
/** "ETA 3 min 07 s", "ETA estimating…", or '' when there is none. */
export function etaText(e) {
  if (!e) return '';
  return e.estimating ? 'ETA estimating…' : `ETA ${fmtDuration(e.eta)}`;
}

const jobsPoller = poller(async () => {
  const { jobs } = await api.jobs();
  const before = new Map(store.jobs.map((j) => [j.id, j.state]));
  store.jobs = jobs.sort((a, b) => b.created - a.created);
  const first = !store.jobsLoaded;
  store.jobsLoaded = true;
  dropToast('jobs');
  if (!first) announceTransitions(before);
  renderJobs();
  hooks.onList();
  return store.jobs.some((j) => ACTIVE_STATES.has(j.state)) ? ACTIVE_MS : IDLE_MS;
}, {
  onError(e, retryMs) {
    reportError(e, `Loading the runs (retrying in ${Math.round(retryMs / 1000)} s)`, { key: 'jobs', transient: true });
    if (!store.jobsLoaded) $('#jobs-empty').textContent = 'Could not load the runs yet; retrying.';
    return retryMs;
  },
});

/** Loads the list now; concurrent callers share the request in flight and get one more load
 * after it, so that "create, then refresh" always sees the new job. */
export const refreshJobs = () => jobsPoller.now();
export const pauseJobs = () => jobsPoller.pause();

function announceTransitions(before) {
  let modelsChanged = false;
  for (const j of store.jobs) {
    const was = before.get(j.id);
    if (!was || was === j.state) continue;
    if (j.state === 'succeeded') {
      toast(`Run ${j.id} succeeded${j.best !== null ? ` — best val mIoU ${fmtPct(j.best)}` : ''}.`, 'ok');
      modelsChanged = true;
    } else if (j.state === 'failed') {
      toast(`Run ${j.id} failed: ${j.error || 'no reason given'}`, 'error');
    } else if (j.state === 'running') {
      toast(`Run ${j.id} started training.`, 'info');
    } else if (j.state === 'cancelled' && cancelRequested.has(j.id)) {
      cancelRequested.delete(j.id);
    } else if (j.state === 'cancelled' || j.state === 'interrupted') {
      toast(`Run ${j.id} ${j.state}.`, 'info');
    }
  }
  if (modelsChanged) refreshModels();
}

/** Fraction of a run done: finished epochs plus the share of batches of the current one. */
export function runFraction(state, p, finished, epochs) {
  if (!epochs) return 0;
  let done = finished;
  if (state === 'running' && p) done = Math.max(0, p.epoch - 1) + (p.batches ? p.batch / p.batches : 0);
  return Math.max(0, Math.min(1, done / epochs));
}

function progressText(j) {
  if (j.state === 'running') {
    const bits = [];
    const cur = j.progress?.epoch ?? j.epoch + 1;
    if (j.epochs) bits.push(`epoch ${Math.min(cur, j.epochs)}/${j.epochs}`);
    const eta = etaText(etaOf(j.id, j.state, j.progress, j.eta));
    if (eta) bits.push(eta);
    return bits.join(' · ') || 'training…';
  }
  if (j.state === 'queued') return 'waiting in the queue';
  if (j.state === 'failed') return j.error || 'failed';
  const bits = [`${j.epoch}/${j.epochs} epochs`];
  if (j.best !== null) bits.push(`best mIoU ${fmtPct(j.best)}`);
  return bits.join(' · ');
}

/** The config line of the list: what the summary view tells (dataset and epochs). */
const summary = (j) => [j.dataset, j.epochs ? `${j.epochs} epochs` : ''].filter(Boolean).join(' · ');

function actionButton(j) {
  const attrs = (action) => `data-action="${action}" data-id="${esc(j.id)}" data-focus-key="${action}:${esc(j.id)}"`;
  if (ACTIVE_STATES.has(j.state)) return `<button type="button" class="btn danger small" ${attrs('cancel')} aria-label="Cancel run ${esc(j.id)}">Cancel</button>`;
  if (j.state === 'interrupted' || j.state === 'cancelled') return `<button type="button" class="btn small" ${attrs('resume')} aria-label="Resume run ${esc(j.id)}">Resume</button>`;
  return '';
}

export function renderJobs() {
  const list = $('#job-list'), empty = $('#jobs-empty');
  const focusKey = document.activeElement?.closest?.('#job-list') ? document.activeElement.dataset.focusKey : null;
  empty.hidden = store.jobs.length > 0;
  if (!store.jobs.length) empty.textContent = 'No training runs yet. Start one with the form below.';
  list.innerHTML = store.jobs.map((j) => {
    const sel = j.id === store.selected;
    const frac = runFraction(j.state, j.progress, j.epoch, j.epochs);
    return `<li class="job${sel ? ' is-selected' : ''}" data-state="${esc(j.state)}">
      <button type="button" class="job-main" data-action="select" data-id="${esc(j.id)}" data-focus-key="select:${esc(j.id)}" aria-pressed="${sel}">
        <span class="job-top"><span class="mono job-id" title="${esc(j.id)}">${esc(shortId(j.id))}</span>${badge(j.state)}</span>
        <span class="job-meta">${esc(summary(j))}</span>
        <span class="job-prog"><span>${esc(progressText(j))}</span><span class="job-when">${esc(fmtAgo(j.created))}</span></span>
        ${j.state === 'running' ? `<span class="mini-bar" aria-hidden="true"><span style="width:${(frac * 100).toFixed(1)}%"></span></span>` : ''}
      </button>
      ${actionButton(j)}
    </li>`;
  }).join('');
  if (focusKey) list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
}

/** A button's request on job id (`doing` names it: "Cancelling"), then a fresh list. */
async function act(id, btn, doing, call, done) {
  if (btn) { btn.disabled = true; btn.textContent = `${doing}…`; }
  try {
    await call(id);
    done();
  } catch (e) {
    reportError(e, `${doing} run ${id}`, { key: `act:${id}` });
  }
  await refreshJobs();
  hooks.onTouched(id);
}

export function cancelJob(id, btn) {
  const running = store.jobs.find((j) => j.id === id)?.state === 'running';
  return act(id, btn, 'Cancelling', api.cancelJob, () => {
    cancelRequested.add(id);
    toast(running ? `Cancel requested for run ${id}: it stops after the current batch and keeps its last checkpoint.`
      : `Run ${id} cancelled.`, 'info');
  });
}

export function resumeJob(id, btn) {
  return act(id, btn, 'Resuming', api.resumeJob, () => toast(`Run ${id} resumed.`, 'ok'));
}

/** hooks: onList() after every load of the list, onSelect(id) when a run is clicked,
 * onTouched(id) after a cancel or resume. */
export function initJobs(h) {
  hooks = h;
  $('#job-list').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    const id = b.dataset.id;
    if (b.dataset.action === 'select') {
      hooks.onSelect(id);
      // One-column layouts: the run is below the list, bring it into view.
      if (window.matchMedia('(max-width: 1099px)').matches) {
        const reduce = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
        $('.area-run').scrollIntoView({ behavior: reduce ? 'auto' : 'smooth', block: 'start' });
      }
    } else if (b.dataset.action === 'cancel') cancelJob(id, b);
    else if (b.dataset.action === 'resume') resumeJob(id, b);
  });
}
