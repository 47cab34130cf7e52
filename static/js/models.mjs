/* The Models card: GET /models as radio buttons, PUT /models/active to serve another one, and
 * the "model" pill at the top. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { esc, fmtAgo, fmtPct, shortId } from './format.mjs';
import { toast, reportError } from './toasts.mjs';
import { refreshHealth } from './health.mjs';

let onChange = () => {};

/** Where a model came from: "train · job j000003", "job j000003", or its source. */
function origin(m) {
  if (!m.job || m.source.includes(m.job)) return m.source;
  return m.source && !/^(job|train)$/i.test(m.source) ? `${m.source} · job ${m.job}` : `job ${m.job}`;
}

export async function refreshModels() {
  try {
    const r = await api.models();
    store.models = r.models;
    store.active = r.active;
    renderModels();
    showError($('#model-error'), '');
  } catch (e) {
    showError($('#model-error'), reportError(e, 'Loading models', 'models'));
  }
}

function renderModels() {
  $('#active-model-name').textContent = store.active ?? 'none';
  const list = $('#model-list');
  const prev = list.querySelector('input:checked')?.value;
  if (!store.models.length) {
    list.innerHTML = '<li class="empty">No models yet: a succeeded training job adds one.</li>';
    $('#model-submit').disabled = true;
    return;
  }
  const sorted = [...store.models].sort((a, b) => b.registered - a.registered);
  const checked = prev && sorted.some((m) => m.id === prev) ? prev : store.active;
  list.innerHTML = sorted.map((m, i) => {
    const isActive = m.id === store.active;
    const arch = `depth ${m.config.depth} · base ${m.config.base}`;
    return `<li class="model${isActive ? ' is-active' : ''}">
      <input type="radio" name="model" id="model-${i}" value="${esc(m.id)}"${m.id === checked ? ' checked' : ''}>
      <label for="model-${i}">
        <span class="model-top"><span class="mono model-id">${esc(m.id)}</span>${isActive ? '<span class="badge" data-state="active">serving</span>' : ''}</span>
        <span class="model-meta">${esc([origin(m), arch, fmtAgo(m.registered)].filter(Boolean).join(' · '))}</span>
      </label>
      <span class="model-score" title="validation mean IoU">${m.miou === null ? '' : `<strong>${fmtPct(m.miou)}</strong><span class="muted">mIoU</span>`}</span>
    </li>`;
  }).join('');
  updateSubmit();
  onChange();
}

function updateSubmit() {
  const sel = $('#model-list input:checked')?.value;
  const btn = $('#model-submit');
  btn.disabled = !sel || sel === store.active;
  btn.textContent = sel && sel !== store.active ? `Serve ${shortId(sel)}` : 'Serve selected model';
}

export async function activateModel(id) {
  try {
    await api.activate(id);
    toast(`Now serving model ${id}.`, 'ok');
    showError($('#model-error'), '');
  } catch (e) {
    showError($('#model-error'), reportError(e, `Switching to model ${id}`));
  }
  await refreshModels();
  refreshHealth();
}

/** onModelsChange: called after every redraw of the list (the run view offers "Serve this model"). */
export function initModels({ onModelsChange }) {
  onChange = onModelsChange;
  $('#model-list').addEventListener('change', updateSubmit);
  $('#model-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = $('#model-list input:checked')?.value;
    if (!id || id === store.active) return;
    const btn = $('#model-submit');
    btn.disabled = true; btn.textContent = 'Switching…';
    await activateModel(id);
  });
}
