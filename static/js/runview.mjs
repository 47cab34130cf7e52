/* The Run card: the selected run's curves (GET /jobs/{id}/curves?since=N, polled while it is
 * queued or running), its header, progress bar, latest numbers, actions and charts.
 * The selection lives in the URL (#job=ID) so that a reload shows the same run. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { ACTIVE_STATES } from './schema.mjs';
import { badge, esc, fmtAgo, fmtDuration, fmtLr, fmtNum, fmtPct, shortId } from './format.mjs';
import { dropToast, reportError } from './toasts.mjs';
import { poller } from './poller.mjs';
import { cancelJob, etaOf, etaText, refreshJobs, renderJobs, resumeJob, runFraction } from './jobs.mjs';
import { activateModel, refreshModels } from './models.mjs';
import { refreshHealth } from './health.mjs';
import { drawCharts, initCharts } from './charts.mjs';

const RUNNING_MS = 1000;  // while the selected job trains
const QUEUED_MS = 3000;   // while it waits in the queue

const fresh = (id) => ({ id, points: new Map(), since: 0, state: null, progress: null, epochs: null, detail: null, loaded: false, problem: '' });
let run = fresh(null);
let curves = poller(async () => null);

const selectedJob = () => store.jobs.find((j) => j.id === run.id) ?? null;
/** The run's state: the curves' answer once there is one, the list's before. */
const runState = () => run.state ?? selectedJob()?.state ?? null;
const runPoints = () => [...run.points.values()].sort((a, b) => a.epoch - b.epoch);

function curvesPoller(r) {
  return poller(async (live) => {
    const c = await api.curves(r.id, r.since, store.schema.classes.length);
    if (!live()) return null;
    for (const p of c.points) {
      r.points.set(p.epoch, p);
      r.since = Math.max(r.since, p.epoch);
    }
    const wasActive = ACTIVE_STATES.has(r.state), before = r.state;
    Object.assign(r, { progress: c.progress, epochs: c.epochs, state: c.state, loaded: true, problem: '' });
    if (before && before !== r.state) loadDetail(r);
    dropToast('curves');
    renderRun();
    if (wasActive && !ACTIVE_STATES.has(r.state)) { refreshJobs(); refreshModels(); refreshHealth(); }
    return r.state === 'running' ? RUNNING_MS : r.state === 'queued' ? QUEUED_MS : null;
  }, {
    onError(e, retryMs, live) {
      if (!live()) return null;
      r.loaded = true;
      if (e.status === 404) {
        r.problem = `Run ${r.id} is not known to the server (${e.message}).`;
        renderRun();
        return null;
      }
      reportError(e, `Live curves of run ${r.id} (retrying in ${Math.round(retryMs / 1000)} s)`, { key: 'curves', transient: true });
      renderRun();
      return retryMs;
    },
  });
}

/** GET /jobs/{id}: the config (the list leaves it out), the error text and the log. */
async function loadDetail(r) {
  try {
    const d = await api.job(r.id);
    if (r !== run) return;
    r.detail = d;
    renderHeader();
  } catch (e) {
    if (r !== run || e.status === 404) return; // the curves poll reports unknown runs
    reportError(e, `Details of run ${r.id}`, { key: 'detail', transient: true });
  }
}

export function selectJob(id) {
  const changed = id !== run.id;
  store.selected = id;
  if (changed) {
    curves.stop();
    run = fresh(id);
    curves = curvesPoller(run);
    try { history.replaceState(null, '', `${location.pathname}${location.search}#job=${encodeURIComponent(id)}`); } catch { /* file:// */ }
    dropToast('curves');
  }
  renderJobs();
  if (changed) { // keep the selected run visible inside the scrolling list (without moving the page)
    const list = $('#job-list'), li = list.querySelector('.is-selected');
    if (li && (li.offsetTop < list.scrollTop || li.offsetTop + li.offsetHeight > list.scrollTop + list.clientHeight))
      list.scrollTop = Math.max(0, li.offsetTop - 8);
  }
  renderRun();
  if (changed) { curves.now(); loadDetail(run); }
}

/** After each load of the job list: pick a run if none is shown (the URL's #job=, a running
 * one, a finished one, the newest), or follow a state change the list saw first. */
export function afterJobList() {
  if (!store.selected) {
    const m = /^#job=(.+)$/.exec(location.hash), want = m && decodeURIComponent(m[1]);
    const pick = (want && store.jobs.find((j) => j.id === want)) || store.jobs.find((j) => j.state === 'running')
      || store.jobs.find((j) => j.state === 'succeeded' || j.epoch > 0) || store.jobs[0];
    if (pick) selectJob(pick.id);
    else renderRun();
    return;
  }
  const j = selectedJob();
  if (!j) return;
  if (j.state !== run.state && !curves.busy) {
    if (ACTIVE_STATES.has(j.state) || ACTIVE_STATES.has(run.state)) curves.now();
    else { run.state = j.state; renderRun(); }
  } else {
    renderHeader();
  }
}

/** Moves the keyboard focus to the run shown (after "Start training"), and on one-column
 * layouts scrolls it into view. */
export function focusRun() {
  const card = $('.area-run');
  $('#run-h').focus({ preventScroll: true });
  const r = card.getBoundingClientRect();
  if (r.top < 0 || r.top > window.innerHeight * 0.6) {
    const reduce = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    card.scrollIntoView({ behavior: reduce ? 'auto' : 'smooth', block: 'start' });
  }
}

/** Polls the curves now if id is the run shown (after a cancel or resume). */
export function touchRun(id) { if (id === run.id) curves.now(); }

/** The page came back to the foreground (or left it). */
export function runVisible(visible) {
  if (!visible) { curves.pause(); return; }
  if (run.id && (ACTIVE_STATES.has(run.state) || !run.loaded || curves.backoff)) curves.now();
}

export function renderHeader() {
  const j = selectedJob(), state = runState();
  $('#run-id').textContent = run.id ? shortId(run.id) : '';
  $('#run-id').title = run.id || '';
  $('#run-badge').innerHTML = state ? badge(state) : '';
  const c = run.detail?.config;
  const bits = c ? [
    run.detail.dataset, `depth ${c.model.depth}`, `base ${c.model.base}`, `dropout ${c.model.dropout}`, c.loss,
    `${c.epochs} epochs`, `lr ${fmtLr(c.lr)}`, `batch ${c.batch}`, `seed ${c.seed}`, c.hflip ? 'augmented' : 'no augmentation',
  ] : [j?.dataset];
  if (j) bits.push(`created ${fmtAgo(j.created)}`);
  $('#run-summary').textContent = run.id ? (bits.filter(Boolean).join(' · ') || ' ') : 'No run selected yet. Start a training job to see its curves here.';
  const errText = j?.error || run.detail?.error;
  const err = errText && ['failed', 'interrupted', 'cancelled'].includes(state) ? `${state === 'failed' ? 'Failed' : 'Note'}: ${errText}` : '';
  showError($('#run-error'), run.problem || err);
  const log = run.detail?.log, box = $('#run-log');
  box.hidden = !log?.length;
  if (log?.length) {
    const text = log.join('\n'), pre = box.querySelector('pre');
    if (pre.textContent !== text) pre.textContent = text;
    box.querySelector('summary .muted').textContent = `${log.length} line${log.length === 1 ? '' : 's'}`;
  }
  renderActions();
}

/** The model the run produced (known to /models), if any. */
function runModel() {
  const id = selectedJob()?.model ?? run.detail?.model;
  return store.models.find((m) => (id && m.id === id) || m.job === run.id || m.id === run.id) ?? null;
}

export function renderActions() {
  const box = $('#run-actions'), state = runState(), html = [];
  if (run.id && ACTIVE_STATES.has(state)) html.push('<button type="button" class="btn danger small" data-action="cancel">Cancel run</button>');
  if (run.id && (state === 'interrupted' || state === 'cancelled')) html.push('<button type="button" class="btn small" data-action="resume">Resume</button>');
  const model = runModel();
  if (run.id && model && model.id !== store.active)
    html.push(`<button type="button" class="btn small" data-action="serve" data-id="${esc(model.id)}">Serve this model</button>`);
  const sig = html.join('') + run.id;
  if (box.dataset.sig !== sig) { box.innerHTML = html.join(''); box.dataset.sig = sig; }
}

function renderProgress() {
  const wrap = $('#run-progress'), j = selectedJob(), state = runState();
  if (!ACTIVE_STATES.has(state)) { wrap.hidden = true; return; }
  wrap.hidden = false;
  const p = run.progress ?? j?.progress ?? null;
  const epochs = p?.epochs ?? run.epochs ?? j?.epochs;
  const finished = run.points.size ? Math.max(...run.points.keys()) : (j?.epoch ?? 0);
  const eta = etaOf(run.id, state, p, p?.eta_s ?? j?.eta ?? null);
  const frac = state === 'running' ? runFraction(state, p, finished, epochs) : 0;
  const bar = $('#run-progressbar');
  bar.setAttribute('aria-valuenow', String(Math.round(frac * 100)));
  bar.setAttribute('aria-valuetext', state === 'queued' ? 'waiting in the queue' : `${Math.round(frac * 100)}%, ${etaText(eta) || 'ETA unknown'}`);
  bar.classList.toggle('indeterminate', state === 'queued');
  $('#run-progress-fill').style.width = state === 'queued' ? '' : `${(frac * 100).toFixed(2)}%`;
  const bits = [];
  if (state === 'queued') bits.push('Waiting in the queue for the trainer…');
  else {
    bits.push(`<strong>${(frac * 100).toFixed(frac < 0.1 ? 1 : 0)}%</strong>`);
    bits.push(`epoch ${p?.epoch ?? finished + 1}${epochs ? ' of ' + epochs : ''}`);
    if (p?.batches) bits.push(`batch ${p.batch}/${p.batches}`);
    if (p && p.loss !== null) bits.push(`loss ${fmtNum(p.loss, 3)}`);
    if (p && p.images_per_s !== null) bits.push(`${fmtNum(p.images_per_s, 3)} img/s`);
    if (!p) bits.push('waiting for the first batch');
    bits.push(!eta || eta.estimating ? '<span class="eta">ETA estimating…</span>' : `<span class="eta">ETA <strong>${esc(fmtDuration(eta.eta))}</strong></span>`);
  }
  $('#run-progress-text').innerHTML = bits.join('<span class="sep" aria-hidden="true"> · </span>');
}

function renderStats(points) {
  const dl = $('#run-stats'), last = points[points.length - 1];
  if (!last) { dl.innerHTML = ''; return; }
  let best = null;
  for (const p of points) if (p.val_miou !== null && (!best || p.val_miou > best.val_miou)) best = p;
  const items = [
    ['Epoch', `${last.epoch}`],
    ['Train loss', fmtNum(last.train_loss, 3)],
    ['Val loss', fmtNum(last.val_loss, 3)],
    ['Val mIoU', fmtPct(last.val_miou)],
    [best ? `Best · ep ${best.epoch}` : 'Best mIoU', best ? fmtPct(best.val_miou) : '—'],
    ['Pixel acc', fmtPct(last.pixel_acc)],
    ['LR', fmtLr(last.lr)],
    ['Epoch time', last.seconds !== null ? fmtDuration(last.seconds) : '—'],
  ];
  dl.innerHTML = items.map(([k, v]) => `<div><dt>${k}</dt><dd>${v}</dd></div>`).join('');
}

/** What the charts say while there is nothing to draw. */
function emptyText() {
  if (!run.id) return store.jobsLoaded && !store.jobs.length ? 'No runs yet' : 'No run selected';
  if (!run.loaded) return 'Loading curves…';
  if (run.state === 'queued') return 'Queued — curves appear after the first epoch';
  return run.state === 'running' ? 'Training the first epoch…' : 'No epochs recorded';
}

/** The charts, or one line instead of four empty charts while there is nothing to draw (no run,
 * or one that has not finished an epoch nor reported a batch yet). */
function drawRunCharts(points = runPoints()) {
  const p = run.progress;
  const live = run.state === 'running' && p && p.loss !== null;
  const show = points.length > 0 || !!live;
  $('.charts').hidden = !show;
  const note = $('#charts-empty');
  note.hidden = show || !run.id; // without a run the summary line says it already
  note.textContent = show ? '' : `${emptyText()}.`;
  if (show) drawCharts(points, { state: run.state, progress: p, epochs: p?.epochs ?? run.epochs ?? selectedJob()?.epochs ?? 0, empty: emptyText() });
  else document.body.dataset.curves = '0';
  renderTable(points);
}

/** The charts' values as a table (keyboard and screen-reader users, and anyone who wants the
 * numbers): one row per finished epoch. */
function renderTable(points) {
  const box = $('#run-table');
  box.hidden = !points.length;
  if (!points.length) return;
  const classes = store.schema.classes;
  const head = ['Epoch', 'Train loss', 'Val loss', 'Train mIoU', 'Val mIoU', ...classes.map((k) => `IoU ${k.name}`), 'Pixel acc', 'LR'];
  const rows = points.map((p) => [String(p.epoch), fmtNum(p.train_loss, 3), fmtNum(p.val_loss, 3), fmtPct(p.train_miou), fmtPct(p.val_miou),
    ...classes.map((k) => fmtPct(p.val_iou[k.id])), fmtPct(p.pixel_acc), fmtLr(p.lr)]);
  const html = `<table><caption class="visually-hidden">Values per epoch of run ${esc(run.id)}</caption>
    <thead><tr>${head.map((h) => `<th scope="col">${esc(h)}</th>`).join('')}</tr></thead>
    <tbody>${rows.map((r) => `<tr>${r.map((c, i) => i ? `<td>${esc(c)}</td>` : `<th scope="row">${esc(c)}</th>`).join('')}</tr>`).join('')}</tbody></table>`;
  const wrap = box.querySelector('.table-wrap');
  if (wrap.dataset.sig !== html) { wrap.innerHTML = html; wrap.dataset.sig = html; }
  box.querySelector('summary .muted').textContent = `· ${points.length} epoch${points.length === 1 ? '' : 's'}`;
}

function renderRun() {
  renderHeader();
  renderProgress();
  const points = runPoints();
  renderStats(points);
  drawRunCharts(points);
}

export function initRun() {
  $('#run-actions').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b || !run.id) return;
    if (b.dataset.action === 'cancel') cancelJob(run.id, b);
    else if (b.dataset.action === 'resume') resumeJob(run.id, b);
    else if (b.dataset.action === 'serve') activateModel(b.dataset.id);
  });
  $('#run-h').tabIndex = -1;
  initCharts(() => drawRunCharts());
  renderRun();
}
