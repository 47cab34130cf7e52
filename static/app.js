/* marsseg dashboard: plain JS, no build step, no dependencies.
 *
 * Sections: constants · API (every server call lives there) · helpers · toasts · token ·
 * health & models · datasets & the job form · job list · the selected run (curves polling,
 * progress, charts) · charts (SVG drawn here) · segmentation · self-test · start-up.
 *
 * ?selftest=1 segments a generated gray tile through the real API and sets
 * <body data-selftest="ok"> (or "fail: reason"); tests/dashboard.sh relies on it and on the
 * data-points="N" attribute of every chart <figure>.
 */
'use strict';
(() => {

// ───────────────────────────────────────────────────────────── constants
// Class ids, names and mask colours. The colours MUST equal ms_class_colors in core/png.c:
// the mask PNG is drawn with them, and the self-test checks every mask pixel against them.
const CLASSES = [
  { id: 0, name: 'background', rgb: [40, 40, 40],    stroke: '#a8a29e' },
  { id: 1, name: 'soil',       rgb: [214, 160, 84],  stroke: '#d6a054' },
  { id: 2, name: 'bedrock',    rgb: [160, 70, 60],   stroke: '#e07462' },
  { id: 3, name: 'sand',       rgb: [250, 220, 120], stroke: '#fadc78' },
  { id: 4, name: 'big rock',   rgb: [70, 130, 230],  stroke: '#78a6f2' },
];
const ACTIVE = new Set(['queued', 'running']);
const STATE_WORDS = {
  queued: 'queued', running: 'running', succeeded: 'succeeded', failed: 'failed',
  cancelled: 'cancelled', interrupted: 'interrupted',
};
const POLL_RUNNING_MS = 1000;   // /curves while the selected job trains
const POLL_QUEUED_MS = 3000;    // /curves while it waits in the queue
const JOBS_ACTIVE_MS = 2000;    // /jobs while any job is queued or running
const JOBS_IDLE_MS = 20000;     // /jobs otherwise (notices jobs started elsewhere, e.g. with curl)
const BACKOFF_MIN_MS = 2000, BACKOFF_MAX_MS = 30000;
const TOKEN_KEY = 'marsseg.token';
const params = new URLSearchParams(location.search);
const SELFTEST = params.has('selftest') || location.hash === '#selftest';

// ───────────────────────────────────────────────────────────── API
// Everything the dashboard asks the server is here. Errors are thrown as ApiError with the
// server's {"error","code"} text when it sent one.
class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status; this.code = code; this.retryAfter = retryAfter;
  }
}

const api = {
  token() { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; } },

  async request(method, path, { json, body, type, expect = 'json', timeoutMs = 30000 } = {}) {
    const headers = { Accept: expect === 'json' ? 'application/json' : '*/*' };
    const token = api.token();
    if (token) headers.Authorization = 'Bearer ' + token;
    if (json !== undefined) { body = JSON.stringify(json); headers['Content-Type'] = 'application/json'; }
    else if (type) headers['Content-Type'] = type;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    let res;
    try {
      res = await fetch(path, { method, headers, body, signal: ctl.signal, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'network', e.name === 'AbortError'
        ? `${method} ${path}: no answer from the server after ${Math.round(timeoutMs / 1000)} s`
        : `${method} ${path}: cannot reach the server (${e.message || 'network error'})`);
    } finally { clearTimeout(timer); }
    if (!res.ok) throw await api.errorFrom(res, method, path);
    if (expect === 'response') return res;
    if (expect === 'blob') return res.blob();
    if (res.status === 204) return {};
    const text = await res.text();
    if (!text) return {};
    try { return JSON.parse(text); } catch {
      throw new ApiError(res.status, 'badjson', `${method} ${path}: the server sent something that is not JSON`);
    }
  },

  async errorFrom(res, method, path) {
    let msg = '', code = '';
    try {
      const text = await res.text();
      try { const j = JSON.parse(text); msg = j.error || j.message || ''; code = j.code || ''; }
      catch { msg = text.trim().slice(0, 200); }
    } catch { /* body unreadable: keep the status line */ }
    if (!msg) msg = res.statusText || 'request failed';
    const ra = Number(res.headers.get('Retry-After')) || 0;
    let text = `${msg} (HTTP ${res.status}${code ? ', ' + code : ''})`;
    if (res.status === 401) text = `${msg} (HTTP 401). This server needs an access token: set it with the Token button at the top.`;
    else if (ra) text += ` — try again in ${ra} s`;
    return new ApiError(res.status, code || 'http' + res.status, text, ra);
  },

  jobs:      ()          => api.request('GET', '/jobs'),
  job:       (id)        => api.request('GET', `/jobs/${encodeURIComponent(id)}`),
  curves:    (id, since) => api.request('GET', `/jobs/${encodeURIComponent(id)}/curves?since=${since}`),
  createJob: (config)    => api.request('POST', '/jobs', { json: config, expect: 'response' }),
  cancelJob: (id)        => api.request('DELETE', `/jobs/${encodeURIComponent(id)}`),
  resumeJob: (id)        => api.request('POST', `/jobs/${encodeURIComponent(id)}/resume`),
  models:    ()          => api.request('GET', '/models'),
  activate:  (id)        => api.request('PUT', '/models/active', { json: { id } }),
  datasets:  ()          => api.request('GET', '/datasets'),
  // multipart field "file"; ?name= is a display name, the server assigns the id.
  uploadDataset: (file, name) => {
    const form = new FormData();
    form.append('file', file, file.name || 'dataset.npz');
    return api.request('POST', `/datasets?name=${encodeURIComponent(name)}`, { body: form, timeoutMs: 30 * 60000 });
  },
  ready:     ()          => api.request('GET', '/readyz', { timeoutMs: 8000 }),
  // format: undefined (palette mask PNG), 'overlay' (RGB PNG) or 'json'. Raw image/png body.
  segment:   (blob, format) => api.request('POST', '/segment' + (format ? `?format=${format}` : ''),
    { body: blob, type: 'image/png', expect: format === 'json' ? 'json' : 'response', timeoutMs: 60000 }),
};

// Tolerant readers of the server's objects (field names may differ slightly).
const read = {
  jobList: (r) => Array.isArray(r) ? r : (r?.jobs ?? r?.items ?? []),
  // `epoch` = epochs finished; live batch progress in a nested `progress` object
  // ({epoch (the one training, 1-based), epochs, batch, batches, loss, eta_s, images_per_s}).
  // A flat form (batch/batches next to epoch, epoch = the one training) is understood too.
  job(j) {
    const c = j?.config ?? null;
    const state = String(j?.state ?? j?.status ?? 'unknown').toLowerCase();
    let p = read.progress(j?.progress);
    let epoch = num(j?.epoch ?? j?.epochs_done);
    if (!p && state === 'running' && num(j?.batches)) {
      p = read.progress({ epoch: j.epoch, epochs: j.epochs, batch: j.batch, batches: j.batches, eta_s: j.eta_s });
      epoch = epoch !== null ? Math.max(0, epoch - 1) : null;
    }
    return {
      id: String(j?.id ?? j?.job_id ?? ''),
      state,
      created: parseTime(j?.created ?? j?.created_at ?? j?.submitted),
      dataset: j?.dataset ?? c?.dataset ?? (c?.data ? String(c.data).split('/').pop() : null),
      epoch,
      epochs: num(j?.epochs ?? p?.epochs ?? c?.epochs),
      progress: p,
      eta: num(j?.eta_s ?? p?.eta_s),
      best: num(j?.best_val_miou ?? j?.best?.val_miou ?? j?.metrics?.val_miou),
      bestEpoch: num(j?.best_epoch),
      error: j?.error ? String(j.error) : '',
      config: c,
      model: j?.model ? String(j.model) : null,
      log: Array.isArray(j?.log) ? j.log.map(String) : null,
    };
  },
  progress(p) {
    if (!p || typeof p !== 'object') return null;
    return {
      epoch: num(p.epoch), epochs: num(p.epochs), batch: num(p.batch), batches: num(p.batches),
      loss: num(p.loss), eta_s: num(p.eta_s), images_per_s: num(p.images_per_s),
    };
  },
  point(p) {
    let iou = p?.val_iou ?? p?.iou ?? [];
    if (!Array.isArray(iou)) iou = CLASSES.map((k) => iou?.[k.name] ?? iou?.[k.id]);
    return {
      epoch: num(p?.epoch),
      train_loss: num(p?.train_loss ?? p?.loss), val_loss: num(p?.val_loss),
      train_miou: num(p?.train_miou), val_miou: num(p?.val_miou ?? p?.miou),
      pixel_acc: num(p?.pixel_acc ?? p?.val_pixel_acc),
      val_iou: CLASSES.map((k) => num(iou[k.id])),
      lr: num(p?.lr), seconds: num(p?.seconds), images_per_s: num(p?.images_per_s),
    };
  },
  model(m) {
    const metrics = { ...(m?.meta ?? {}), ...(m?.metrics ?? {}) };
    const job = m?.job ? String(m.job) : null;
    let source = String(m?.source ?? '');
    if (job && !source.includes(job)) source = source && !/^(job|train)$/i.test(source) ? `${source} · job ${job}` : `job ${job}`;
    return {
      id: String(m?.id ?? ''),
      job,
      source,
      active: m?.active === true,
      created: parseTime(m?.created ?? m?.registered ?? m?.created_at),
      miou: num(metrics.val_miou ?? metrics.best_val_miou ?? metrics.miou ?? m?.val_miou),
      acc: num(metrics.pixel_acc ?? metrics.val_pixel_acc),
      config: m?.config ?? m?.model ?? null,
    };
  },
  dataset(d) {
    return {
      id: String(d?.id ?? d?.name ?? ''),
      name: d?.name ? String(d.name) : '',
      samples: num(d?.samples ?? d?.n ?? d?.count),
      bytes: num(d?.bytes ?? d?.size),
    };
  },
};

// ───────────────────────────────────────────────────────────── helpers
const $ = (sel, root = document) => root.querySelector(sel);
const num = (v) => (v === null || v === undefined || v === '' || !Number.isFinite(Number(v))) ? null : Number(v);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseTime(v) {
  if (v === null || v === undefined || v === '') return null;
  if (typeof v === 'number' || /^\d+(\.\d+)?$/.test(String(v))) {
    const n = Number(v);
    return new Date(n < 1e12 ? n * 1000 : n);
  }
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}
function fmtAgo(d) {
  if (!d) return '';
  const s = (Date.now() - d.getTime()) / 1000;
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 86400 * 14) return `${Math.round(s / 86400)} d ago`;
  return d.toLocaleDateString();
}
function fmtDuration(s) {
  if (s === null || s < 0) return '—';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}
const fmtPct = (v, d = 1) => v === null ? '—' : `${(v * 100).toFixed(d)}%`;
const fmtNum = (v, p = 3) => v === null ? '—' : (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString() : String(+v.toPrecision(p)));
function fmtLr(v) {
  if (v === null) return '—';
  if (v === 0) return '0';
  if (v >= 0.01) return String(+v.toPrecision(3));
  const [m, e] = v.toExponential(2).split('e');
  return `${m.replace(/\.?0+$/, '')}e${e}`;
}
function fmtBytes(b) {
  if (b === null) return '';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b < 10 && i ? b.toFixed(1) : Math.round(b)} ${u[i]}`;
}
function badge(state) {
  const s = STATE_WORDS[state] ? state : 'unknown';
  return `<span class="badge" data-state="${esc(s)}"><span class="badge-dot" aria-hidden="true"></span>${esc(state)}</span>`;
}
function shortId(id) { return id.length > 14 ? id.slice(0, 12) + '…' : id; }
function configSummary(j) {
  const c = j?.config ?? {};
  const m = c.model ?? {};
  const parts = [];
  if (j?.dataset) parts.push(j.dataset);
  if (m.depth ?? c.depth) parts.push(`depth ${m.depth ?? c.depth}`);
  if (m.base ?? c.base) parts.push(`base ${m.base ?? c.base}`);
  if (c.loss) parts.push(c.loss);
  if (c.epochs === undefined && j?.epochs) parts.push(`${j.epochs} epochs`);
  return parts.join(' · ');
}
function showError(el, msg) {
  if (!el) return;
  el.textContent = msg || '';
  el.hidden = !msg;
}

// ───────────────────────────────────────────────────────────── toasts (the aria-live region)
const toasts = new Map();
function toast(msg, kind = 'info', key = null) {
  const box = $('#toasts');
  key = key || msg;
  let t = toasts.get(key);
  if (t && t.el.isConnected) {
    t.count++;
    t.el.querySelector('.toast-msg').textContent = msg + (t.count > 1 ? ` (×${t.count})` : '');
    clearTimeout(t.timer);
  } else {
    const el = document.createElement('div');
    el.className = 'toast';
    el.dataset.kind = kind;
    el.innerHTML = `<span class="toast-msg"></span><button type="button" class="toast-close" aria-label="Dismiss message">×</button>`;
    el.querySelector('.toast-msg').textContent = msg;
    el.querySelector('button').addEventListener('click', () => dropToast(key));
    box.appendChild(el);
    t = { el, count: 1, timer: 0 };
    toasts.set(key, t);
    while (box.children.length > 4) box.firstElementChild.remove();
  }
  // Errors stay until dismissed or resolved; the rest fade after a while.
  if (kind !== 'error') t.timer = setTimeout(() => dropToast(key), kind === 'ok' ? 5000 : 7000);
}
function dropToast(key) {
  const t = toasts.get(key);
  if (!t) return;
  clearTimeout(t.timer);
  t.el.remove();
  toasts.delete(key);
}
function reportError(e, context, key) {
  const msg = `${context}: ${e?.message || e}`;
  toast(msg, 'error', key || msg);
  if (e?.status === 401) $('#token-toggle').classList.add('attention');
  if (!(e instanceof ApiError)) console.error(e);
  return msg;
}

// ───────────────────────────────────────────────────────────── token
function initToken() {
  const btn = $('#token-toggle'), panel = $('#token-panel'), input = $('#token-input');
  const refresh = () => {
    const has = !!api.token();
    $('#token-state').textContent = has ? 'Token set' : 'Token';
    btn.classList.toggle('on', has);
  };
  const setOpen = (open) => {
    panel.hidden = !open;
    btn.setAttribute('aria-expanded', String(open));
    if (open) { input.value = api.token(); input.focus(); }
  };
  btn.addEventListener('click', () => setOpen(panel.hidden));
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { setOpen(false); btn.focus(); } });
  panel.addEventListener('submit', (e) => {
    e.preventDefault();
    try { localStorage.setItem(TOKEN_KEY, input.value.trim()); } catch (err) { reportError(err, 'Saving the token'); }
    btn.classList.remove('attention');
    for (const [key, t] of [...toasts]) if (/HTTP 401/.test(t.el.textContent)) dropToast(key);
    refresh(); setOpen(false); btn.focus();
    toast(input.value.trim() ? 'Token saved in this browser.' : 'Token cleared.', 'ok');
  });
  $('#token-clear').addEventListener('click', () => {
    try { localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
    input.value = ''; refresh(); setOpen(false); btn.focus();
    toast('Token cleared.', 'ok');
  });
  refresh();
}

// ───────────────────────────────────────────────────────────── health & models
const store = { jobs: [], jobsLoaded: false, models: [], active: null, datasets: [], selected: null };

async function refreshHealth() {
  const pill = $('#health'), text = $('#health-text');
  try {
    const r = await api.ready();
    pill.dataset.state = 'ok';
    text.textContent = 'ready';
    if (r?.model && !store.active) $('#active-model-name').textContent = r.model;
  } catch (e) {
    if (e.status === 503) { pill.dataset.state = 'warn'; text.textContent = 'no model loaded'; }
    else if (e.status === 0) { pill.dataset.state = 'bad'; text.textContent = 'offline'; }
    else { pill.dataset.state = 'warn'; text.textContent = `not ready (${e.status})`; }
    pill.title = e.message;
  }
}

async function refreshModels() {
  try {
    const r = await api.models();
    store.models = (Array.isArray(r) ? r : r?.models ?? []).map(read.model).filter((m) => m.id);
    store.active = r?.active != null ? String(r.active?.id ?? r.active) : (store.models.find((m) => m.active)?.id ?? null);
    if (r?.active === null) store.active = null;
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
  const sorted = [...store.models].sort((a, b) => (b.created?.getTime() ?? 0) - (a.created?.getTime() ?? 0));
  const checked = prev && sorted.some((m) => m.id === prev) ? prev : store.active;
  list.innerHTML = sorted.map((m, i) => {
    const isActive = m.id === store.active;
    const c = m.config ?? {};
    const arch = c.depth ? `depth ${c.depth} · base ${c.base ?? '?'}` : '';
    return `<li class="model${isActive ? ' is-active' : ''}">
      <input type="radio" name="model" id="model-${i}" value="${esc(m.id)}"${m.id === checked ? ' checked' : ''}>
      <label for="model-${i}">
        <span class="model-top"><span class="mono model-id">${esc(m.id)}</span>${isActive ? '<span class="badge" data-state="active">serving</span>' : ''}</span>
        <span class="model-meta">${esc([m.source, arch, fmtAgo(m.created)].filter(Boolean).join(' · '))}</span>
      </label>
      <span class="model-score" title="validation mean IoU">${m.miou === null ? '' : `<strong>${fmtPct(m.miou)}</strong><span class="muted">mIoU</span>`}</span>
    </li>`;
  }).join('');
  updateModelSubmit();
  renderRunActions();
}
function updateModelSubmit() {
  const sel = $('#model-list input:checked')?.value;
  const btn = $('#model-submit');
  btn.disabled = !sel || sel === store.active;
  btn.textContent = sel && sel !== store.active ? `Serve ${shortId(sel)}` : 'Serve selected model';
}
async function activateModel(id) {
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
function initModels() {
  $('#model-list').addEventListener('change', updateModelSubmit);
  $('#model-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = $('#model-list input:checked')?.value;
    if (!id || id === store.active) return;
    const btn = $('#model-submit');
    btn.disabled = true; btn.textContent = 'Switching…';
    await activateModel(id);
  });
}

// ───────────────────────────────────────────────────────────── datasets & the job form
async function refreshDatasets(select) {
  const sel = $('#f-dataset');
  try {
    const r = await api.datasets();
    store.datasets = (Array.isArray(r) ? r : r?.datasets ?? []).map(read.dataset).filter((d) => d.id);
  } catch (e) {
    store.datasets = [];
    reportError(e, 'Loading datasets', 'datasets');
  }
  const prev = sel.value;
  const opts = store.datasets.map((d) => {
    const extra = [d.samples !== null ? `${d.samples.toLocaleString()} tiles` : '', fmtBytes(d.bytes)].filter(Boolean).join(', ');
    const label = d.name && d.name !== d.id ? `${d.name} (${d.id})` : d.id;
    return `<option value="${esc(d.id)}">${esc(label)}${extra ? ' — ' + esc(extra) : ''}</option>`;
  });
  if (!opts.length) opts.push('<option value="">server default</option>');
  sel.innerHTML = opts.join('');
  const want = [select, prev].find((v) => v && store.datasets.some((d) => d.id === v))
    ?? (store.datasets.find((d) => d.id === 'sample')?.id ?? store.datasets[0]?.id ?? '');
  if (want) sel.value = want;
}

// Form field → how it goes into the JSON config (server errors "field: …" are mapped back).
const FORM_FIELDS = {
  epochs: { id: 'f-epochs', int: true }, batch: { id: 'f-batch', int: true }, lr: { id: 'f-lr' },
  seed: { id: 'f-seed', int: true }, depth: { id: 'f-depth', int: true, model: true },
  base: { id: 'f-base', int: true, model: true }, dropout: { id: 'f-dropout', model: true },
};
function jobConfigFromForm() {
  const form = $('#job-form');
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const config = { model: {} };
  for (const [name, f] of Object.entries(FORM_FIELDS)) {
    const el = document.getElementById(f.id);
    const label = form.querySelector(`label[for="${f.id}"]`).textContent.trim();
    const v = Number(el.value);
    if (el.value.trim() === '' || !el.checkValidity() || !Number.isFinite(v) || (f.int && !Number.isInteger(v))) {
      el.setAttribute('aria-invalid', 'true');
      throw Object.assign(new Error(`${label}: ${el.validationMessage || 'enter a valid number'}`), { field: el });
    }
    (f.model ? config.model : config)[name] = v;
  }
  const ds = $('#f-dataset').value;
  if (ds) config.dataset = ds;
  config.loss = $('#f-loss').value;
  if (!$('#f-augment').checked) Object.assign(config, { hflip: false, brightness: 0, contrast: 0, max_shift: 0 });
  config.activate = $('#f-activate').checked;
  return config;
}
function initDatasetUpload() {
  const input = $('#dataset-file'), btn = $('#dataset-upload'), err = $('#form-error');
  btn.addEventListener('click', () => input.click());
  input.addEventListener('change', async () => {
    const file = input.files[0];
    input.value = '';
    if (!file) return;
    if (!/\.npz$/i.test(file.name)) { showError(err, `${file.name}: choose a .npz file (arrays training_set or test_set).`); return; }
    const name = file.name.replace(/\.npz$/i, '').slice(0, 60);
    showError(err, '');
    btn.disabled = true; btn.textContent = 'Uploading…';
    toast(`Uploading ${file.name} (${fmtBytes(file.size)}); the server validates it before listing it.`, 'info', 'upload');
    try {
      const r = await api.uploadDataset(file, name);
      const d = read.dataset(r?.dataset ?? r);
      dropToast('upload');
      toast(`Dataset ${d.name || d.id} added${d.samples !== null ? ` (${d.samples.toLocaleString()} tiles)` : ''}.`, 'ok');
      await refreshDatasets(d.id);
    } catch (e) {
      dropToast('upload');
      showError(err, reportError(e, `Uploading ${file.name}`));
    } finally {
      btn.disabled = false; btn.textContent = 'Upload .npz';
    }
  });
}

function initJobForm() {
  initDatasetUpload();
  const form = $('#job-form'), err = $('#form-error'), btn = $('#job-submit');
  form.addEventListener('reset', () => {
    showError(err, '');
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    setTimeout(refreshDatasets, 0);
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let config;
    try { config = jobConfigFromForm(); } catch (ex) {
      showError(err, ex.message); ex.field?.focus(); return;
    }
    showError(err, '');
    btn.disabled = true; btn.textContent = 'Starting…';
    try {
      const res = await api.createJob(config);
      let body = {};
      try { body = await res.json(); } catch { /* a 202 without a body is fine */ }
      const id = String(body?.id ?? body?.job?.id ?? (res.headers.get('Location') || '').split('/').filter(Boolean).pop() ?? '');
      dropToast('newjob');
      toast(`Training job ${id || ''} queued.`, 'ok');
      await refreshJobs();
      if (id) selectJob(id, { focus: false });
    } catch (ex) {
      const msg = reportError(ex, 'Starting the job', 'newjob');
      showError(err, msg);
      // "model.depth: must be …" or "lr: …" → mark that field.
      const m = /^(?:model\.)?([a-z_]+)\s*:/.exec(ex.message || '');
      const f = m && FORM_FIELDS[m[1]];
      if (f) document.getElementById(f.id).setAttribute('aria-invalid', 'true');
    } finally {
      btn.disabled = false; btn.textContent = 'Start training';
    }
  });
}

// ───────────────────────────────────────────────────────────── the job list
let jobsTimer = 0, jobsBackoff = 0, jobsInFlight = null, jobsAgain = false;

// Concurrent callers share the request in flight and get one more refresh after it, so that
// "create, then refresh" always sees the new job.
function refreshJobs() {
  if (jobsInFlight) { jobsAgain = true; return jobsInFlight; }
  jobsInFlight = loadJobs().finally(() => {
    jobsInFlight = null;
    if (jobsAgain) { jobsAgain = false; return refreshJobs(); }
  });
  return jobsInFlight;
}

async function loadJobs() {
  clearTimeout(jobsTimer);
  let delay;
  try {
    const r = await api.jobs();
    const before = new Map(store.jobs.map((j) => [j.id, j.state]));
    store.jobs = read.jobList(r).map(read.job).filter((j) => j.id)
      .sort((a, b) => (b.created?.getTime() ?? 0) - (a.created?.getTime() ?? 0));
    const first = !store.jobsLoaded;
    store.jobsLoaded = true;
    jobsBackoff = 0;
    dropToast('jobs');
    if (!first) announceTransitions(before);
    renderJobs();
    if (!store.selected) autoSelect();
    else syncRunFromList();
    delay = store.jobs.some((j) => ACTIVE.has(j.state)) ? JOBS_ACTIVE_MS : JOBS_IDLE_MS;
    if (delay === JOBS_IDLE_MS || $('#health').dataset.state !== 'ok') refreshHealth();
  } catch (e) {
    jobsBackoff = Math.min(Math.max(BACKOFF_MIN_MS, jobsBackoff * 2), BACKOFF_MAX_MS);
    delay = jobsBackoff;
    if (e.status === 0) { $('#health').dataset.state = 'bad'; $('#health-text').textContent = 'offline'; }
    reportError(e, `Loading jobs (retrying in ${Math.round(delay / 1000)} s)`, 'jobs');
    if (!store.jobsLoaded) $('#jobs-empty').textContent = 'Could not load the job list.';
  }
  if (!document.hidden) jobsTimer = setTimeout(refreshJobs, delay);
}

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

function jobProgressText(j) {
  if (j.state === 'running') {
    const bits = [];
    const cur = j.progress?.epoch ?? (j.epoch !== null ? j.epoch + 1 : null);
    if (cur !== null && j.epochs) bits.push(`epoch ${Math.min(cur, j.epochs)}/${j.epochs}`);
    if (j.eta !== null) bits.push(`ETA ${fmtDuration(j.eta)}`);
    return bits.join(' · ') || 'training…';
  }
  if (j.state === 'queued') return 'waiting in the queue';
  if (j.state === 'failed') return j.error || 'failed';
  const bits = [];
  if (j.epoch !== null && j.epochs !== null) bits.push(`${j.epoch}/${j.epochs} epochs`);
  if (j.best !== null) bits.push(`best mIoU ${fmtPct(j.best)}`);
  return bits.join(' · ');
}
// Fraction of the run done: finished epochs plus the share of batches of the current one.
function runFraction(state, p, finished, epochs) {
  if (!epochs) return 0;
  let done = finished ?? 0;
  if (state === 'running' && p && p.epoch !== null) done = Math.max(0, p.epoch - 1) + (p.batches ? (p.batch ?? 0) / p.batches : 0);
  return Math.max(0, Math.min(1, done / epochs));
}
function jobFraction(j) { return runFraction(j.state, j.progress, j.epoch, j.epochs); }

function renderJobs() {
  const list = $('#job-list'), empty = $('#jobs-empty');
  const focusKey = document.activeElement?.closest?.('#job-list') ? document.activeElement.dataset.focusKey : null;
  empty.hidden = store.jobs.length > 0;
  if (!store.jobs.length) empty.textContent = 'No training runs yet. Start one with the form below.';
  list.innerHTML = store.jobs.map((j) => {
    const sel = j.id === store.selected;
    const frac = jobFraction(j);
    const act = j.state === 'running' || j.state === 'queued'
      ? `<button type="button" class="btn danger small" data-action="cancel" data-id="${esc(j.id)}" data-focus-key="cancel:${esc(j.id)}" aria-label="Cancel run ${esc(j.id)}">Cancel</button>`
      : j.state === 'interrupted' || j.state === 'cancelled'
        ? `<button type="button" class="btn small" data-action="resume" data-id="${esc(j.id)}" data-focus-key="resume:${esc(j.id)}" aria-label="Resume run ${esc(j.id)}">Resume</button>`
        : '';
    return `<li class="job${sel ? ' is-selected' : ''}" data-state="${esc(j.state)}">
      <button type="button" class="job-main" data-action="select" data-id="${esc(j.id)}" data-focus-key="select:${esc(j.id)}" aria-pressed="${sel}">
        <span class="job-top"><span class="mono job-id" title="${esc(j.id)}">${esc(shortId(j.id))}</span>${badge(j.state)}</span>
        <span class="job-meta">${esc(configSummary(j))}</span>
        <span class="job-prog"><span>${esc(jobProgressText(j))}</span><span class="job-when">${esc(fmtAgo(j.created))}</span></span>
        ${j.state === 'running' ? `<span class="mini-bar" aria-hidden="true"><span style="width:${(frac * 100).toFixed(1)}%"></span></span>` : ''}
      </button>
      ${act}
    </li>`;
  }).join('');
  if (focusKey) list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
}

function initJobs() {
  $('#job-list').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    const id = b.dataset.id;
    if (b.dataset.action === 'select') {
      selectJob(id, { focus: false });
      // One-column layouts: the run is below the list, bring it into view.
      if (window.matchMedia('(max-width: 1099px)').matches) {
        const reduce = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
        $('.area-run').scrollIntoView({ behavior: reduce ? 'auto' : 'smooth', block: 'start' });
      }
    }
    else if (b.dataset.action === 'cancel') cancelJob(id, b);
    else if (b.dataset.action === 'resume') resumeJob(id, b);
  });
  $('#jobs-refresh').addEventListener('click', () => { refreshJobs(); refreshModels(); refreshDatasets(); refreshHealth(); });
}

const cancelRequested = new Set();
async function cancelJob(id, btn) {
  if (btn) { btn.disabled = true; btn.textContent = 'Cancelling…'; }
  try {
    await api.cancelJob(id);
    cancelRequested.add(id);
    const running = store.jobs.find((j) => j.id === id)?.state === 'running';
    toast(running ? `Cancel requested for run ${id}: it stops after the current batch and keeps its last checkpoint.`
      : `Run ${id} cancelled.`, 'info');
  } catch (e) {
    reportError(e, `Cancelling run ${id}`);
  }
  await refreshJobs();
  if (id === store.selected) pollCurvesNow();
}
async function resumeJob(id, btn) {
  if (btn) { btn.disabled = true; btn.textContent = 'Resuming…'; }
  try {
    await api.resumeJob(id);
    toast(`Run ${id} resumed.`, 'ok');
  } catch (e) {
    reportError(e, `Resuming run ${id}`);
  }
  await refreshJobs();
  if (id === store.selected) pollCurvesNow();
}

// ───────────────────────────────────────────────────────────── the selected run
const run = { id: null, gen: 0, points: new Map(), since: 0, state: null, progress: null, epochs: null, detail: null, timer: 0, backoff: 0, loaded: false, inFlight: false, problem: '' };

function autoSelect() {
  const fromHash = /^#job=(.+)$/.exec(location.hash);
  const want = fromHash && decodeURIComponent(fromHash[1]);
  const pick = (want && store.jobs.find((j) => j.id === want))
    || store.jobs.find((j) => j.state === 'running')
    || store.jobs.find((j) => j.state === 'succeeded' || j.epoch > 0)
    || store.jobs[0];
  if (pick) selectJob(pick.id, { focus: false });
  else renderRun();
}

function selectJob(id, { focus } = {}) {
  const changed = id !== run.id;
  store.selected = id;
  if (changed) {
    clearTimeout(run.timer);
    Object.assign(run, { id, gen: run.gen + 1, points: new Map(), since: 0, state: null, progress: null, epochs: null, detail: null, backoff: 0, loaded: false, inFlight: false, problem: '' });
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
  if (changed) { pollCurves(run.gen); loadRunDetail(run.gen); }
  if (focus) $('#run-h').focus();
}

function selectedJob() { return store.jobs.find((j) => j.id === run.id) ?? null; }

// GET /jobs/{id}: the full config (the list may leave it out), the error text and the log.
async function loadRunDetail(gen) {
  try {
    const d = read.job(await api.job(run.id));
    if (gen !== run.gen) return;
    run.detail = d;
    renderRunHeader();
  } catch (e) {
    if (gen !== run.gen || e.status === 404) return; // the curves poll reports unknown runs
    reportError(e, `Details of run ${run.id}`, 'detail');
  }
}

// The list poll may notice a state change first (queued → running): resume live polling then.
function syncRunFromList() {
  const j = selectedJob();
  if (!j) return;
  if (j.state !== run.state && !run.inFlight) {
    if (ACTIVE.has(j.state) || ACTIVE.has(run.state)) pollCurvesNow();
    else { run.state = j.state; renderRun(); }
  } else {
    renderRunHeader();
  }
}

function pollCurvesNow() {
  clearTimeout(run.timer);
  if (!run.inFlight) pollCurves(run.gen);
}

async function pollCurves(gen) {
  if (gen !== run.gen || !run.id) return;
  if (document.hidden) return; // resumed by the visibilitychange handler
  run.inFlight = true;
  const wasActive = ACTIVE.has(run.state);
  let delay = null;
  try {
    const r = await api.curves(run.id, run.since);
    if (gen !== run.gen) return;
    for (const raw of r?.points ?? r?.curves ?? r?.epochs ?? []) {
      const p = read.point(raw);
      if (p.epoch === null) continue;
      run.points.set(p.epoch, p);
      run.since = Math.max(run.since, p.epoch);
    }
    run.progress = read.progress(r?.progress);
    run.epochs = num(r?.epochs) ?? run.epochs;
    const j = selectedJob();
    const before = run.state;
    run.state = String(r?.state ?? j?.state ?? run.state ?? 'unknown').toLowerCase();
    if (before && before !== run.state) loadRunDetail(gen);
    run.loaded = true;
    run.backoff = 0;
    run.problem = '';
    dropToast('curves');
    if (run.state === 'running') delay = POLL_RUNNING_MS;
    else if (run.state === 'queued') delay = POLL_QUEUED_MS;
    renderRun();
    if (wasActive && !ACTIVE.has(run.state)) { refreshJobs(); refreshModels(); refreshHealth(); }
  } catch (e) {
    if (gen !== run.gen) return;
    run.loaded = true;
    if (e.status === 404) {
      run.problem = `Run ${run.id} is not known to the server (${e.message}).`;
      delay = null;
    } else {
      run.backoff = Math.min(Math.max(BACKOFF_MIN_MS, run.backoff * 2), BACKOFF_MAX_MS);
      delay = run.backoff;
      reportError(e, `Live curves of run ${run.id} (retrying in ${Math.round(delay / 1000)} s)`, 'curves');
    }
    renderRun();
  } finally {
    if (gen === run.gen) run.inFlight = false;
  }
  if (gen === run.gen && delay !== null) run.timer = setTimeout(() => pollCurves(gen), delay);
}

function runPoints() { return [...run.points.values()].sort((a, b) => a.epoch - b.epoch); }

function renderRunHeader() {
  const j = selectedJob();
  $('#run-id').textContent = run.id ? shortId(run.id) : '';
  $('#run-id').title = run.id || '';
  const state = run.state && run.state !== 'unknown' ? run.state : j?.state;
  $('#run-badge').innerHTML = state ? badge(state) : '';
  const c = run.detail?.config ?? j?.config ?? {};
  const m = c.model ?? {};
  const aug = c.hflip === 0 || c.hflip === false ? 'no augmentation' : (c.hflip !== undefined ? 'augmented' : '');
  const bits = [
    j?.dataset ?? run.detail?.dataset ?? null,
    m.depth !== undefined ? `depth ${m.depth}` : null, m.base !== undefined ? `base ${m.base}` : null,
    m.dropout !== undefined ? `dropout ${m.dropout}` : null, c.loss ?? null,
    c.epochs !== undefined ? `${c.epochs} epochs` : null,
    c.lr !== undefined ? `lr ${fmtLr(num(c.lr))}` : null, c.batch !== undefined ? `batch ${c.batch}` : null,
    c.seed !== undefined ? `seed ${c.seed}` : null, aug || null,
    j?.created ? `created ${fmtAgo(j.created)}` : null,
  ].filter(Boolean);
  $('#run-summary').textContent = run.id ? (bits.join(' · ') || ' ') : 'No run selected yet. Start a training job to see its curves here.';
  const errText = j?.error || run.detail?.error;
  const err = errText && (state === 'failed' || state === 'interrupted' || state === 'cancelled') ? `${state === 'failed' ? 'Failed' : 'Note'}: ${errText}` : '';
  showError($('#run-error'), run.problem || err);
  const log = run.detail?.log;
  const box = $('#run-log');
  box.hidden = !log?.length;
  if (log?.length) {
    const text = log.join('\n');
    const pre = box.querySelector('pre');
    if (pre.textContent !== text) pre.textContent = text;
    box.querySelector('summary .muted').textContent = `${log.length} line${log.length === 1 ? '' : 's'}`;
  }
  renderRunActions();
}

// The model a run produced (known to /models), if any.
function runModel() {
  const j = selectedJob();
  const id = j?.model ?? run.detail?.model;
  return store.models.find((m) => (id && m.id === id) || (m.job && m.job === run.id) || m.id === run.id) ?? null;
}

function renderRunActions() {
  const box = $('#run-actions');
  if (!box) return;
  const j = selectedJob();
  const state = run.state && run.state !== 'unknown' ? run.state : j?.state;
  const html = [];
  if (run.id && ACTIVE.has(state)) html.push(`<button type="button" class="btn danger small" data-action="cancel">Cancel run</button>`);
  if (run.id && (state === 'interrupted' || state === 'cancelled')) html.push(`<button type="button" class="btn small" data-action="resume">Resume</button>`);
  const model = runModel();
  if (run.id && model && model.id !== store.active)
    html.push(`<button type="button" class="btn small" data-action="serve" data-id="${esc(model.id)}">Serve this model</button>`);
  const sig = html.join('');
  if (box.dataset.sig !== sig + run.id) { box.innerHTML = sig; box.dataset.sig = sig + run.id; }
}

function renderProgress() {
  const wrap = $('#run-progress');
  const j = selectedJob();
  const state = run.state ?? j?.state;
  if (!ACTIVE.has(state)) { wrap.hidden = true; return; }
  wrap.hidden = false;
  const p = run.progress ?? j?.progress ?? {};
  const epochs = p.epochs ?? run.epochs ?? j?.epochs;
  const finished = run.points.size ? Math.max(...run.points.keys()) : (j?.epoch ?? 0);
  const epoch = p.epoch ?? (finished + 1);
  const batch = p.batch ?? null, batches = p.batches ?? null;
  const eta = p.eta_s ?? j?.eta ?? null;
  const frac = state === 'running' ? runFraction(state, p.epoch !== undefined && p.epoch !== null ? p : null, finished, epochs) : 0;
  const bar = $('#run-progressbar');
  bar.setAttribute('aria-valuenow', String(Math.round(frac * 100)));
  bar.setAttribute('aria-valuetext', state === 'queued' ? 'waiting in the queue' : `${Math.round(frac * 100)}%, ETA ${fmtDuration(eta)}`);
  bar.classList.toggle('indeterminate', state === 'queued');
  $('#run-progress-fill').style.width = state === 'queued' ? '' : `${(frac * 100).toFixed(2)}%`;
  const bits = [];
  if (state === 'queued') bits.push('Waiting in the queue for the trainer…');
  else {
    bits.push(`<strong>${(frac * 100).toFixed(frac < 0.1 ? 1 : 0)}%</strong>`);
    if (epoch !== null) bits.push(`epoch ${epoch}${epochs ? ' of ' + epochs : ''}`);
    if (batch !== null && batches) bits.push(`batch ${batch}/${batches}`);
    if (num(p.loss) !== null) bits.push(`loss ${fmtNum(num(p.loss), 3)}`);
    if (num(p.images_per_s) !== null) bits.push(`${fmtNum(num(p.images_per_s), 3)} img/s`);
    if (!run.progress && !j?.progress) bits.push('waiting for the first batch');
    bits.push(`ETA <strong>${esc(fmtDuration(eta))}</strong>`);
  }
  $('#run-progress-text').innerHTML = bits.join('<span class="sep" aria-hidden="true"> · </span>');
}

function renderStats(points) {
  const dl = $('#run-stats');
  const last = points[points.length - 1];
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

function renderRun() {
  renderRunHeader();
  renderProgress();
  const points = runPoints();
  renderStats(points);
  drawCharts(points);
}

function initRun() {
  $('#run-actions').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b || !run.id) return;
    if (b.dataset.action === 'cancel') cancelJob(run.id, b);
    else if (b.dataset.action === 'resume') resumeJob(run.id, b);
    else if (b.dataset.action === 'serve') activateModel(b.dataset.id);
  });
  $('#run-h').tabIndex = -1;
}

// ───────────────────────────────────────────────────────────── charts (SVG, drawn here)
const SERIES_COLORS = { train: '#f0a04b', val: '#7cc4f0', lr: '#d7b4ff' };

function drawCharts(points) {
  const j = selectedJob();
  const p = run.progress ?? {};
  const epochs = p.epochs ?? run.epochs ?? j?.epochs ?? 0;
  const lastEpoch = points.length ? points[points.length - 1].epoch : 0;
  const xMax = Math.max(epochs || 0, lastEpoch, 1);
  const xy = (key) => points.map((pt) => [pt.epoch, pt[key]]);
  // A live point for the running epoch: its running mean training loss so far.
  let live = null;
  if (run.state === 'running' && num(p.loss) !== null && num(p.epoch) !== null && num(p.batches)) {
    const x = num(p.epoch) - 1 + (num(p.batch) ?? 0) / num(p.batches);
    if (x > lastEpoch) live = [x, num(p.loss)];
  }
  const empty = !run.id ? (store.jobsLoaded && !store.jobs.length ? 'No runs yet' : 'No run selected')
    : !run.loaded ? 'Loading curves…'
    : run.state === 'queued' ? 'Queued — curves appear after the first epoch'
    : run.state === 'running' ? 'Training the first epoch…' : 'No epochs recorded';
  const common = { xMax, empty, n: points.length };
  chart($('#chart-loss'), { ...common, y: 'auto', fmt: (v) => fmtNum(v, 3), label: 'Loss',
    series: [
      { name: 'train', color: SERIES_COLORS.train, dash: '5 4', data: xy('train_loss'), live },
      { name: 'validation', color: SERIES_COLORS.val, data: xy('val_loss') },
    ] });
  chart($('#chart-miou'), { ...common, y: 'unit', fmt: (v) => fmtPct(v, 1), label: 'Mean IoU',
    series: [
      { name: 'train', color: SERIES_COLORS.train, dash: '5 4', data: xy('train_miou') },
      { name: 'validation', color: SERIES_COLORS.val, data: xy('val_miou') },
    ] });
  chart($('#chart-iou'), { ...common, y: 'unit', fmt: (v) => fmtPct(v, 1), label: 'Validation IoU per class',
    series: CLASSES.map((k) => ({
      name: k.name, color: k.stroke, dash: k.id === 0 ? '2 3' : null,
      data: points.map((pt) => [pt.epoch, pt.val_iou[k.id]]),
    })) });
  chart($('#chart-lr'), { ...common, y: 'log', fmt: fmtLr, label: 'Learning rate',
    series: [{ name: 'learning rate', color: SERIES_COLORS.lr, data: xy('lr'), step: true }] });
  document.body.dataset.curves = String(points.length);
}

function niceStep(range, target) {
  const raw = range / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

function chart(fig, opt) {
  const plot = fig.querySelector('.plot');
  const legend = fig.querySelector('.legend');
  // Drawn at the plot's CSS width; the SVG scales with its viewBox should the width change
  // before the next redraw (ResizeObserver).
  const W = Math.max(200, Math.round(plot.clientWidth || 360));
  const H = W < 440 ? 180 : 200;
  const M = { l: 46, r: 12, t: 10, b: 24 };
  const iw = W - M.l - M.r, ih = H - M.t - M.b;
  fig._chart = null;
  fig.dataset.points = String(opt.n);

  // y domain
  const vals = [];
  for (const s of opt.series) {
    for (const [, v] of s.data) if (v !== null && (opt.y !== 'log' || v > 0)) vals.push(v);
    if (s.live) vals.push(s.live[1]);
  }
  let y0, y1, ticks = [], ymap, logY = false;
  if (opt.y === 'unit') {
    y0 = 0; y1 = 1; ticks = [0, 0.25, 0.5, 0.75, 1];
  } else if (opt.y === 'log' && vals.length && Math.max(...vals) / Math.min(...vals) > 12) {
    // Log scale only when the rate spans more than about a decade; linear reads better otherwise.
    logY = true;
    const lo = vals.length ? Math.min(...vals) : 1e-4, hi = vals.length ? Math.max(...vals) : 1e-2;
    y0 = Math.floor(Math.log10(lo) + 1e-9); y1 = Math.ceil(Math.log10(hi) - 1e-9);
    if (y1 - y0 < 1) { y0 -= 0.5; y1 += 0.5; }
    const step = y1 - y0 > 5 ? 2 : 1;
    for (let e = Math.ceil(y0); e <= y1 + 1e-9; e += step) ticks.push(10 ** e);
  } else if (!vals.length) {
    y0 = 0; y1 = 1; // nothing to scale: no y labels
  } else {
    const hi = vals.length ? Math.max(...vals) : 1;
    y0 = 0; const st = niceStep(hi || 1, 4); y1 = Math.ceil((hi || 1) * 1.04 / st) * st;
    for (let v = 0; v <= y1 + st * 1e-6; v += st) ticks.push(+v.toPrecision(6));
  }
  const sy = logY
    ? (v) => M.t + ih - ((Math.log10(v) - y0) / (y1 - y0)) * ih
    : (v) => M.t + ih - ((v - y0) / (y1 - y0)) * ih;
  const sx = (x) => M.l + (x / opt.xMax) * iw;
  ymap = sy;

  const parts = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(chartSummary(opt))}">`);
  // grid + y labels
  for (const t of ticks) {
    const y = sy(t).toFixed(1);
    parts.push(`<line class="grid" x1="${M.l}" x2="${W - M.r}" y1="${y}" y2="${y}"/>`);
    parts.push(`<text class="tick" x="${M.l - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(logY ? fmtLr(t) : opt.fmt(t).replace(/\.0%$/, '%'))}</text>`);
  }
  // x ticks (epochs)
  const xs = niceStep(opt.xMax, Math.max(2, Math.floor(iw / 55)));
  const xstep = Math.max(1, Math.round(xs));
  for (let x = 0; x <= opt.xMax + 1e-9; x += xstep) {
    const px = sx(x).toFixed(1);
    parts.push(`<line class="xtick" x1="${px}" x2="${px}" y1="${M.t + ih}" y2="${M.t + ih + 4}"/>`);
    parts.push(`<text class="tick" x="${px}" y="${H - 6}" text-anchor="middle">${x}</text>`);
  }
  parts.push(`<line class="axis" x1="${M.l}" x2="${W - M.r}" y1="${M.t + ih}" y2="${M.t + ih}"/>`);
  parts.push(`<text class="axis-label" x="${M.l - 6}" y="${H - 6}" text-anchor="end">epoch</text>`);

  // series
  const markers = opt.n <= 40;
  for (const s of opt.series) {
    let d = '', pen = false, prev = null;
    for (const [x, v] of s.data) {
      if (v === null || (logY && v <= 0)) { pen = false; continue; }
      const px = sx(x), py = sy(v);
      if (!pen) d += `M${px.toFixed(1)} ${py.toFixed(1)}`;
      else if (s.step && prev) d += `H${px.toFixed(1)}V${py.toFixed(1)}`;
      else d += `L${px.toFixed(1)} ${py.toFixed(1)}`;
      pen = true; prev = [px, py];
    }
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    if (d) parts.push(`<path class="line" d="${d}" stroke="${s.color}"${dash} data-series="${esc(s.name)}"/>`);
    if (markers) {
      for (const [x, v] of s.data) {
        if (v === null || (logY && v <= 0)) continue;
        parts.push(`<circle class="dot" cx="${sx(x).toFixed(1)}" cy="${sy(v).toFixed(1)}" r="${opt.n === 1 ? 3.5 : 2.2}" fill="${s.color}"/>`);
      }
    }
    if (s.live) {
      const [lx, lv] = s.live;
      if (prev) parts.push(`<line class="live-line" x1="${prev[0].toFixed(1)}" y1="${prev[1].toFixed(1)}" x2="${sx(lx).toFixed(1)}" y2="${sy(lv).toFixed(1)}" stroke="${s.color}"/>`);
      parts.push(`<circle class="live-dot" cx="${sx(lx).toFixed(1)}" cy="${sy(lv).toFixed(1)}" r="4" stroke="${s.color}"><title>running mean loss of the current epoch</title></circle>`);
    }
  }
  if (!opt.n && !opt.series.some((s) => s.live)) {
    parts.push(`<text class="empty-note" x="${M.l + iw / 2}" y="${M.t + ih / 2}" text-anchor="middle" dominant-baseline="middle">${esc(opt.empty)}</text>`);
  }
  parts.push(`<line class="cursor" x1="0" x2="0" y1="${M.t}" y2="${M.t + ih}" visibility="hidden"/>`);
  parts.push(`<rect class="hit" x="${M.l}" y="${M.t}" width="${iw}" height="${ih}" fill="transparent"/>`);
  parts.push('</svg>');
  plot.innerHTML = parts.join('');
  fig._chart = { opt, sx, sy: ymap, M, iw, W };
  if (fig._hoverEpoch != null && opt.n) { // keep the hover cursor across live redraws
    const cur = plot.querySelector('.cursor'), cx = sx(fig._hoverEpoch).toFixed(1);
    cur.setAttribute('x1', cx); cur.setAttribute('x2', cx); cur.setAttribute('visibility', 'visible');
  }

  legend.innerHTML = opt.series.map((s) => {
    const last = [...s.data].reverse().find(([, v]) => v !== null);
    return `<li><span class="swatch${s.dash ? ' dashed' : ''}" style="--c:${s.color}" aria-hidden="true"></span>${esc(s.name)}${last ? ` <span class="legend-val">${esc(opt.fmt(last[1]))}</span>` : ''}</li>`;
  }).join('');
}

function chartSummary(opt) {
  if (!opt.n) return `${opt.label}: ${opt.empty}`;
  const bits = opt.series.map((s) => {
    const last = [...s.data].reverse().find(([, v]) => v !== null);
    return last ? `${s.name} ${opt.fmt(last[1])}` : null;
  }).filter(Boolean);
  return `${opt.label} over ${opt.n} epoch${opt.n === 1 ? '' : 's'}; latest: ${bits.join(', ')}`;
}

function initChartHover() {
  const tip = $('#chart-tip');
  const hide = (fig) => {
    tip.hidden = true;
    if (fig) fig._hoverEpoch = null;
    fig?.querySelector('.cursor')?.setAttribute('visibility', 'hidden');
  };
  for (const fig of document.querySelectorAll('.chart')) {
    const plot = fig.querySelector('.plot');
    plot.addEventListener('pointermove', (e) => {
      const c = fig._chart;
      if (!c || !c.opt.n) return hide(fig);
      const svg = plot.querySelector('svg');
      const r = svg.getBoundingClientRect();
      const px = (e.clientX - r.left) * (c.W / r.width);
      const xv = ((px - c.M.l) / c.iw) * c.opt.xMax;
      const epochs = c.opt.series[0].data.map(([x]) => x);
      if (!epochs.length) return hide(fig);
      let best = epochs[0];
      for (const x of epochs) if (Math.abs(x - xv) < Math.abs(best - xv)) best = x;
      fig._hoverEpoch = best;
      const cur = svg.querySelector('.cursor');
      const cx = c.sx(best).toFixed(1);
      cur.setAttribute('x1', cx); cur.setAttribute('x2', cx); cur.setAttribute('visibility', 'visible');
      const rows = c.opt.series.map((s) => {
        const v = s.data.find(([x]) => x === best)?.[1];
        return `<li><span class="swatch${s.dash ? ' dashed' : ''}" style="--c:${s.color}"></span>${esc(s.name)} <b>${esc(v === null || v === undefined ? '—' : c.opt.fmt(v))}</b></li>`;
      }).join('');
      tip.innerHTML = `<strong>epoch ${best}</strong><ul>${rows}</ul>`;
      tip.hidden = false;
      const tw = tip.offsetWidth, th = tip.offsetHeight;
      let left = e.clientX + 14, top = e.clientY + 14;
      if (left + tw > window.innerWidth - 8) left = e.clientX - tw - 14;
      if (top + th > window.innerHeight - 8) top = e.clientY - th - 14;
      tip.style.left = `${Math.max(8, left)}px`; tip.style.top = `${Math.max(8, top)}px`;
    });
    plot.addEventListener('pointerleave', () => hide(fig));
  }
  // Redraw at the new size when the layout changes.
  let pending = 0, lastW = 0;
  const ro = new ResizeObserver((entries) => {
    const w = Math.round(entries[0].contentRect.width);
    if (w === lastW) return;
    lastW = w;
    clearTimeout(pending);
    pending = setTimeout(() => drawCharts(runPoints()), 60);
  });
  ro.observe($('.charts'));
}

// ───────────────────────────────────────────────────────────── segmentation
const seg = { urls: [], labels: null, gray: null, w: 0, h: 0, busy: false };

async function isPng(blob) {
  const head = new Uint8Array(await blob.slice(0, 8).arrayBuffer());
  return [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => head[i] === b);
}
function loadImg(img, blob) {
  const url = URL.createObjectURL(blob);
  seg.urls.push(url);
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${img.alt}: the browser could not decode the image`));
    img.src = url;
  });
}
function pixelsOf(img) {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height).data;
}
// Mask colours → class ids (exact palette match expected; nearest colour otherwise).
function labelsFromMask(img) {
  const px = pixelsOf(img);
  const n = px.length / 4;
  const labels = new Uint8Array(n);
  let offPalette = 0, offExample = null;
  for (let i = 0; i < n; i++) {
    const r = px[4 * i], g = px[4 * i + 1], b = px[4 * i + 2];
    let best = 0, bd = Infinity;
    for (const k of CLASSES) {
      const d = (r - k.rgb[0]) ** 2 + (g - k.rgb[1]) ** 2 + (b - k.rgb[2]) ** 2;
      if (d < bd) { bd = d; best = k.id; }
    }
    labels[i] = best;
    if (bd > 12) { offPalette++; offExample = offExample || `rgb(${r},${g},${b})`; }
  }
  return { labels, offPalette, offExample };
}

// format=json may name each class's colour ("#rrggbb"): the server's palette wins over ours.
let colorWarned = false;
function adoptServerColors(list) {
  if (!Array.isArray(list)) return;
  for (const c of list) {
    const k = CLASSES[num(c?.id) ?? -1];
    const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(String(c?.color ?? ''));
    if (!k || !m) continue;
    const rgbv = [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
    if (rgbv.some((v, i) => v !== k.rgb[i])) {
      if (!colorWarned) console.warn(`marsseg: server colour of ${k.name} is ${c.color}, app.js has ${rgb(k.rgb)}; using the server's`);
      colorWarned = true;
      k.rgb = rgbv;
    }
  }
}

async function segmentBlob(blob, name = 'image') {
  const err = $('#seg-error'), dz = $('#dropzone');
  showError(err, '');
  if (!(await isPng(blob))) {
    const msg = `${name} is not a PNG file: the service segments PNG images only.`;
    showError(err, msg);
    toast(msg, 'error', 'seg-err');
    throw new Error(msg);
  }
  if (seg.busy) throw new Error('a segmentation is already running');
  seg.busy = true;
  dz.classList.add('busy'); dz.setAttribute('aria-busy', 'true');
  $('.dz-title').textContent = `Segmenting ${name}…`;
  toast(`Segmenting ${name}…`, 'info', 'seg');
  const t0 = performance.now();
  try {
    for (const u of seg.urls) URL.revokeObjectURL(u);
    seg.urls = [];
    const [maskRes, overlayRes, info] = await Promise.allSettled([
      api.segment(blob), api.segment(blob, 'overlay'), api.segment(blob, 'json'),
    ]);
    if (maskRes.status === 'rejected') throw maskRes.reason;
    const model = maskRes.value.headers.get('X-Model');
    const box = $('#seg-result');
    box.hidden = false;
    const imgs = [loadImg($('#seg-input'), blob), loadImg($('#seg-mask'), await maskRes.value.blob())];
    if (overlayRes.status === 'fulfilled') imgs.push(loadImg($('#seg-overlay'), await overlayRes.value.blob()));
    else { $('#seg-overlay').removeAttribute('src'); reportError(overlayRes.reason, 'Overlay'); }
    await Promise.all(imgs);
    const input = $('#seg-input'), mask = $('#seg-mask');
    seg.w = input.naturalWidth; seg.h = input.naturalHeight;
    for (const img of document.querySelectorAll('.seg-images img')) {
      img.width = seg.w; img.height = seg.h;
      img.classList.toggle('pixelated', seg.w < 512);
    }
    if (mask.naturalWidth !== seg.w || mask.naturalHeight !== seg.h)
      throw new Error(`the mask is ${mask.naturalWidth}×${mask.naturalHeight} but the input is ${seg.w}×${seg.h}`);
    let classes = null, fromServer = false;
    if (info.status === 'fulfilled') adoptServerColors(info.value?.classes);
    const lm = labelsFromMask(mask);
    seg.labels = lm.labels;
    const px = pixelsOf(input);
    seg.gray = new Uint8Array(seg.w * seg.h);
    for (let i = 0; i < seg.gray.length; i++) seg.gray[i] = Math.round(0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2]);
    if (info.status === 'fulfilled') {
      classes = (info.value?.classes ?? []).map((c, i) => ({
        id: num(c?.id) ?? i, name: c?.name, pixels: num(c?.pixels), fraction: num(c?.fraction),
      }));
      const total = num(info.value?.width) && num(info.value?.height) ? info.value.width * info.value.height : seg.w * seg.h;
      for (const c of classes) if (c.fraction === null && c.pixels !== null) c.fraction = c.pixels / total;
      fromServer = true;
    } else {
      reportError(info.reason, 'Class statistics (counted in the browser instead)');
    }
    if (!classes || !classes.length) {
      const counts = new Array(CLASSES.length).fill(0);
      for (const l of seg.labels) counts[l]++;
      classes = CLASSES.map((k) => ({ id: k.id, name: k.name, pixels: counts[k.id], fraction: counts[k.id] / seg.labels.length }));
    }
    renderLegend(classes, fromServer);
    const ms = fromServer ? num(info.value?.ms ?? info.value?.timing?.inference_ms ?? info.value?.timing?.total_ms) : null;
    $('#seg-meta').textContent = [`${seg.w}×${seg.h} px`, model || info.value?.model ? `model ${model || info.value.model}` : '',
      ms !== null ? `${fmtNum(ms, 3)} ms inference` : '', `${Math.round(performance.now() - t0)} ms round trip`].filter(Boolean).join(' · ');
    dropToast('seg');
    toast(`Segmented ${name}: ${classes.filter((c) => c.id !== 0 && c.fraction > 0).sort((a, b) => b.fraction - a.fraction)
      .slice(0, 2).map((c) => `${fmtPct(c.fraction, 0)} ${c.name ?? CLASSES[c.id]?.name}`).join(', ') || 'mostly background'}.`, 'ok', 'seg-done');
    return { classes, fromServer, offPalette: lm.offPalette, offExample: lm.offExample, info: info.value, model };
  } catch (e) {
    dropToast('seg');
    showError(err, reportError(e, `Segmenting ${name}`, 'seg-err'));
    throw e;
  } finally {
    seg.busy = false;
    dz.classList.remove('busy'); dz.removeAttribute('aria-busy');
    $('.dz-title').innerHTML = 'Drop a PNG here, or <span class="linkish">choose a file</span>';
  }
}

function renderLegend(classes, fromServer) {
  const byId = new Map(classes.map((c) => [c.id, c]));
  $('#seg-legend').innerHTML = CLASSES.map((k) => {
    const c = byId.get(k.id) ?? { fraction: 0, pixels: 0 };
    const f = c.fraction ?? 0;
    return `<li data-class="${k.id}">
      <span class="swatch-box" style="background:${rgb(k.rgb)}" aria-hidden="true"></span>
      <span class="cl-name">${esc(c.name || k.name)}</span>
      <span class="cl-bar" aria-hidden="true"><span style="width:${(f * 100).toFixed(2)}%;background:${rgb(k.rgb)}"></span></span>
      <span class="cl-pct">${fmtPct(f)}</span>
      <span class="cl-px muted">${c.pixels !== null ? c.pixels.toLocaleString() + ' px' : ''}</span>
    </li>`;
  }).join('') + (fromServer ? '' : '<li class="muted small-text">counted in the browser from the mask</li>');
}

function initSegment() {
  const dz = $('#dropzone'), input = $('#file-input');
  const open = () => { if (!seg.busy) input.click(); };
  const take = (file) => {
    if (!file) return;
    segmentBlob(file, file.name || 'pasted image').catch(() => { /* shown in the card and as a toast */ });
  };
  dz.addEventListener('click', open);
  dz.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); }
  });
  input.addEventListener('change', () => { take(input.files[0]); input.value = ''; });
  dz.addEventListener('dragenter', (e) => { e.preventDefault(); dz.classList.add('over'); });
  dz.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; dz.classList.add('over'); });
  dz.addEventListener('dragleave', (e) => { if (!dz.contains(e.relatedTarget)) dz.classList.remove('over'); });
  dz.addEventListener('drop', (e) => {
    e.preventDefault(); dz.classList.remove('over');
    const f = [...(e.dataTransfer?.files ?? [])][0];
    if (!f) { showError($('#seg-error'), 'Nothing to segment: drop a PNG file.'); return; }
    take(f);
  });
  // A drop that misses the zone must not navigate away from the dashboard.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => { if (!dz.contains(e.target)) e.preventDefault(); });
  document.addEventListener('paste', (e) => {
    if (e.target.closest?.('input, textarea, select')) return;
    const f = [...(e.clipboardData?.files ?? [])].find((x) => x.type === 'image/png');
    if (f) take(f);
  });
  // Read the class under the pointer from the mask.
  const probe = $('#seg-probe');
  for (const img of document.querySelectorAll('.seg-images img')) {
    img.addEventListener('pointermove', (e) => {
      if (!seg.labels || !seg.w) return;
      const r = img.getBoundingClientRect();
      const x = Math.min(seg.w - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * seg.w)));
      const y = Math.min(seg.h - 1, Math.max(0, Math.floor(((e.clientY - r.top) / r.height) * seg.h)));
      const l = seg.labels[y * seg.w + x];
      probe.innerHTML = `x ${x}, y ${y} · <span class="swatch-box inline" style="background:${rgb(CLASSES[l].rgb)}"></span> <strong>${esc(CLASSES[l].name)}</strong> · gray ${seg.gray[y * seg.w + x]}`;
      for (const li of document.querySelectorAll('#seg-legend li[data-class]')) li.classList.toggle('hot', Number(li.dataset.class) === l);
    });
    img.addEventListener('pointerleave', () => {
      for (const li of document.querySelectorAll('#seg-legend li.hot')) li.classList.remove('hot');
    });
  }
}

// ───────────────────────────────────────────────────────────── self-test (?selftest=1)
function makeTestTile(w = 128, h = 64) {
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  const ctx = c.getContext('2d');
  const g = ctx.createLinearGradient(0, 0, w, h);
  g.addColorStop(0, '#555'); g.addColorStop(1, '#9a9a9a');
  ctx.fillStyle = g; ctx.fillRect(0, 0, w, h);
  const blobs = [[24, 20, 14, 9, '#dcdcdc'], [70, 40, 22, 12, '#2a2a2a'], [104, 18, 10, 10, '#f4f4f4'], [46, 52, 16, 6, '#c4c4c4']];
  for (const [x, y, rx, ry, col] of blobs) { ctx.fillStyle = col; ctx.beginPath(); ctx.ellipse(x, y, rx, ry, 0.3, 0, Math.PI * 2); ctx.fill(); }
  // Deterministic grain so that the tile is not flat.
  const img = ctx.getImageData(0, 0, w, h);
  let s = 12345;
  for (let i = 0; i < w * h; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const v = Math.max(0, Math.min(255, img.data[4 * i] + ((s >>> 16) % 21) - 10));
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
  }
  ctx.putImageData(img, 0, 0);
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('canvas.toBlob failed'))), 'image/png'));
}

async function selftest() {
  const body = document.body;
  body.dataset.selftest = 'running';
  try {
    const tile = await makeTestTile();
    const r = await segmentBlob(tile, 'selftest.png');
    const mask = $('#seg-mask');
    if (mask.naturalWidth !== 128 || mask.naturalHeight !== 64) throw new Error(`mask is ${mask.naturalWidth}×${mask.naturalHeight}, expected 128×64`);
    if (!$('#seg-overlay').naturalWidth) throw new Error('no overlay image');
    if (r.offPalette) throw new Error(`${r.offPalette} mask pixels are not dashboard class colours (e.g. ${r.offExample}): CLASSES in app.js and ms_class_colors must match`);
    if (!r.fromServer) throw new Error('POST /segment?format=json failed');
    const w = num(r.info?.width), h = num(r.info?.height);
    if (w !== 128 || h !== 64) throw new Error(`format=json says ${w}×${h}, expected 128×64`);
    const sum = r.classes.reduce((a, c) => a + (c.fraction ?? 0), 0);
    if (Math.abs(sum - 1) > 0.01) throw new Error(`class fractions sum to ${sum.toFixed(3)}, not 1`);
    const pix = r.classes.reduce((a, c) => a + (c.pixels ?? 0), 0);
    if (pix && pix !== 128 * 64) throw new Error(`class pixel counts sum to ${pix}, not ${128 * 64}`);
    if ($('#seg-legend').children.length < CLASSES.length) throw new Error('legend not rendered');
    body.dataset.selftest = 'ok';
    toast('Self-test passed: segmentation round trip works.', 'ok');
  } catch (e) {
    body.dataset.selftest = `fail: ${e?.message || e}`;
  }
}

// ───────────────────────────────────────────────────────────── start-up
function init() {
  initToken();
  initModels();
  initJobForm();
  initJobs();
  initRun();
  initChartHover();
  initSegment();
  renderRun();
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { clearTimeout(jobsTimer); clearTimeout(run.timer); return; }
    refreshJobs();
    if (run.id && (ACTIVE.has(run.state) || !run.loaded || run.backoff)) pollCurvesNow();
  });
  // Relative times ("3 min ago") stay fresh without extra requests.
  setInterval(() => { if (!document.hidden && store.jobs.length) { renderJobs(); renderRunHeader(); } }, 60000);
  refreshHealth();
  refreshModels();
  refreshDatasets();
  refreshJobs();
  if (SELFTEST) selftest();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
})();
