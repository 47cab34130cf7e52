/* The Models card: GET /models as radio buttons, PUT /models/active to serve another one, the
 * "model" pill at the top, and the banner that says when the serving model changed without
 * anyone on this page asking (a finished job that had "serve the trained model" ticked, or
 * another client).
 *
 * Selection and serving never disagree: the checked radio is the serving model unless the user
 * has just picked another one to serve (then the row says so and the button offers it); any
 * change of the serving model drops that pick. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { esc, fmtAgo, fmtPct, shortId } from './format.mjs';
import { toast, reportError } from './toasts.mjs';
import { refreshHealth } from './health.mjs';

let onChange = () => {};
let pending = null;    // the model the user picked to serve (not serving yet), or null
let expected = null;   // the model this page asked the server to serve (PUT in flight or just done)
let seen;              // the serving model last observed: { id, miou } (undefined before the first answer)
let switchError = '';  // the last failed switch (stays until the user acts again)
let loadError = '';

/** Where a model came from: "train · job j000003", "job j000003", or its source. */
function origin(m) {
  if (!m.job || m.source.includes(m.job)) return m.source;
  return m.source && !/^(job|train)$/i.test(m.source) ? `${m.source} · job ${m.job}` : `job ${m.job}`;
}

const byId = (id) => store.models.find((m) => m.id === id) ?? null;
const miouText = (v) => v === null || v === undefined ? 'no validation mIoU recorded' : `validation mIoU ${fmtPct(v)}`;

/** The serving model in a few words, for the job form's "serve the trained model" hint. */
export function servingSummary() {
  const m = byId(store.active);
  if (!store.active) return 'no model serves yet';
  return `${store.active}${m && m.miou !== null ? `, ${fmtPct(m.miou)} mIoU` : ''}`;
}

/** The serving model is id (its mIoU when known), as an answer of the server says. */
export function observeActive(id, miou) {
  if (seen === undefined) { seen = { id, miou }; return; }
  if (id === seen.id) { if (miou !== undefined) seen.miou = miou; return; }
  const before = seen;
  seen = { id, miou: miou ?? byId(id)?.miou ?? null };
  pending = null;
  const now = seen;
  if (id === expected) { expected = null; if (store.active !== id) refreshModels(); return; }
  // the list first: it knows the new model's run (a model seen here for the first time)
  (store.active !== id || !byId(id) ? refreshModels() : Promise.resolve()).then(() => showSwitchBanner(before, now));
}

function showSwitchBanner(before, now) {
  const banner = $('#serve-banner');
  const worse = before.miou !== null && before.miou !== undefined && now.miou !== null && now.miou < before.miou;
  if (!now.id) {
    $('#serve-banner-msg').innerHTML = `No model serves segmentation any more (it was <strong>${esc(before.id)}</strong>).`;
  } else {
    const m = byId(now.id);
    const run = m?.job ?? store.jobs.find((j) => j.model === now.id)?.id ?? null;
    $('#serve-banner-msg').innerHTML = `Now serving <strong class="mono">${esc(now.id)}</strong> (${esc(miouText(now.miou))})`
      + (run ? `, trained by run ${esc(run)}` : '')
      + (before.id ? `; it replaced <strong class="mono">${esc(before.id)}</strong> (${esc(miouText(before.miou))})` : '')
      + ` without anyone here asking${run ? ' (the run had “serve the trained model” ticked)' : ''}.`
      + (worse ? ' <strong class="warn-text">It scores lower than the model it replaced.</strong>' : '');
  }
  banner.dataset.worse = String(worse);
  const back = $('#serve-banner-back');
  back.hidden = !before.id;
  back.dataset.id = before.id || '';
  back.textContent = `Serve ${shortId(before.id || '')} again`;
  banner.hidden = false;
}

export async function refreshModels() {
  try {
    const r = await api.models();
    store.models = r.models;
    store.active = r.active;
    loadError = '';
    observeActive(r.active, byId(r.active)?.miou ?? null);
  } catch (e) {
    loadError = reportError(e, 'Loading models', { key: 'models', inline: true });
  }
  renderModels();
}

function renderModels() {
  $('#active-model-name').textContent = store.active ?? 'none';
  showError($('#model-error'), switchError || loadError);
  const list = $('#model-list');
  if (!store.models.length) {
    list.innerHTML = `<li class="empty">${loadError ? 'Could not load the models.' : 'No models yet: a succeeded training job adds one.'}</li>`;
    updateSubmit();
    onChange();
    return;
  }
  if (pending && (pending === store.active || !byId(pending))) pending = null;
  const sorted = [...store.models].sort((a, b) => b.registered - a.registered);
  const checked = pending ?? store.active;
  list.innerHTML = sorted.map((m, i) => {
    const isActive = m.id === store.active, isPending = m.id === pending;
    const arch = `depth ${m.config.depth} · base ${m.config.base}`;
    return `<li class="model${isActive ? ' is-active' : ''}${isPending ? ' is-pending' : ''}">
      <input type="radio" name="model" id="model-${i}" value="${esc(m.id)}"${m.id === checked ? ' checked' : ''}>
      <label for="model-${i}">
        <span class="model-top"><span class="mono model-id">${esc(m.id)}</span>${isActive ? '<span class="badge" data-state="active">serving</span>' : ''}${isPending ? '<span class="badge" data-state="pending">selected</span>' : ''}</span>
        <span class="model-meta">${esc([origin(m), arch, fmtAgo(m.registered)].filter(Boolean).join(' · '))}</span>
      </label>
      <span class="model-score" title="validation mean IoU">${m.miou === null ? '' : `<strong>${fmtPct(m.miou)}</strong><span class="muted">mIoU</span>`}</span>
    </li>`;
  }).join('');
  updateSubmit();
  onChange();
}

function updateSubmit() {
  const btn = $('#model-submit');
  btn.disabled = !pending;
  btn.textContent = pending ? `Serve ${shortId(pending)}` : 'Serve selected model';
  $('#model-hint').textContent = pending ? `${pending} is selected; ${store.active ?? 'no model'} serves until you press the button.` : '';
}

export async function activateModel(id) {
  expected = id;
  switchError = '';
  try {
    await api.activate(id);
    pending = null;
    $('#serve-banner').hidden = true;
    toast(`Now serving model ${id}.`, 'ok', 'switch');
  } catch (e) {
    expected = null;
    switchError = reportError(e, `Switching to model ${id}`, { inline: true });
  }
  await refreshModels();
  refreshHealth();
}

/** onModelsChange: called after every redraw of the list (the run view offers "Serve this
 * model", the job form names the serving model). */
export function initModels({ onModelsChange }) {
  onChange = onModelsChange;
  $('#model-list').addEventListener('change', (e) => {
    const id = e.target.closest('input[name="model"]')?.value;
    pending = id && id !== store.active ? id : null;
    switchError = '';
    renderModels();
    $(`#model-list input[value="${CSS.escape(id)}"]`)?.focus();
  });
  $('#model-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!pending) return;
    const btn = $('#model-submit');
    btn.disabled = true; btn.textContent = 'Switching…';
    await activateModel(pending);
  });
  $('#serve-banner-close').addEventListener('click', () => { $('#serve-banner').hidden = true; });
  $('#serve-banner-back').addEventListener('click', (e) => activateModel(e.currentTarget.dataset.id));
  document.addEventListener('marsseg:token', () => { switchError = ''; renderModels(); });
}
