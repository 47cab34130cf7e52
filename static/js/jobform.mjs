/* The New training job card: the dataset list (GET /datasets, upload with POST /datasets) and
 * the config fields, built from /schema's "config" table: each input's type, min, max, step,
 * options and default come from there, so the browser checks what the server will check. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { SchemaError } from './schema.mjs';
import { esc, fmtBytes } from './format.mjs';
import { toast, dropToast, reportError } from './toasts.mjs';
import { refreshJobs } from './jobs.mjs';
import { selectJob } from './runview.mjs';

/** The form's config fields in display order, by /schema name; `label` and `option` names are
 * presentation only. */
const FIELDS = [
  { name: 'epochs', label: 'Epochs' },
  { name: 'batch', label: 'Batch size' },
  { name: 'lr', label: 'Learning rate' },
  { name: 'loss', label: 'Loss', options: { wce: 'weighted cross-entropy', 'wce+dice': 'wce + dice' } },
  { name: 'model.depth', label: 'U-Net depth' },
  { name: 'model.base', label: 'Base channels' },
  { name: 'model.dropout', label: 'Dropout' },
  { name: 'seed', label: 'Seed' },
];
/** Unticking "Augmentation" sends these. */
const NO_AUGMENTATION = { hflip: false, brightness: 0, contrast: 0, max_shift: 0 };

const inputId = (name) => `f-${name.replace(/^model\./, '')}`;

/** One field's markup from its /schema entry: a select for choices, a number input otherwise. */
function fieldHtml(f, s) {
  const id = inputId(f.name), help = s.help ? ` title="${esc(s.help)}"` : '';
  let control;
  if (s.type === 'string' && s.choices) {
    control = `<select id="${id}" name="${esc(f.name)}"${help}>${s.choices.map((c) =>
      `<option value="${esc(c)}"${c === s.default ? ' selected' : ''}>${esc(f.options?.[c] ?? c)}</option>`).join('')}</select>`;
  } else if (s.type === 'integer' || s.type === 'number') {
    if (s.min === null || s.max === null) throw new SchemaError(`GET /schema: config "${f.name}"`, 'the form needs its min and max');
    const int = s.type === 'integer';
    control = `<input id="${id}" name="${esc(f.name)}" type="number" inputmode="${int ? 'numeric' : 'decimal'}" min="${s.min}" max="${s.max}" step="${int ? 1 : 'any'}" value="${s.default}" required${help}>`;
  } else {
    throw new SchemaError(`GET /schema: config "${f.name}"`, `the form has no input for type ${s.type}`);
  }
  return `<div class="field"><label for="${id}">${esc(f.label)}</label>${control}</div>`;
}

/** The form's fields joined with their /schema entries (a SchemaError names a missing one). */
function formFields() {
  return FIELDS.map((f) => {
    const s = store.schema.config.find((c) => c.name === f.name);
    if (!s) throw new SchemaError('GET /schema: config', `no field "${f.name}" (the job form shows it)`);
    return { ...f, schema: s, el: () => document.getElementById(inputId(f.name)) };
  });
}

function configFromForm(fields) {
  const form = $('#job-form');
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const config = {};
  for (const f of fields) {
    const el = f.el();
    let v = el.value;
    if (f.schema.type !== 'string') {
      v = Number(el.value);
      if (el.value.trim() === '' || !el.checkValidity() || !Number.isFinite(v)) {
        el.setAttribute('aria-invalid', 'true');
        throw Object.assign(new Error(`${f.label}: ${el.validationMessage || 'enter a valid number'}`), { field: el });
      }
    }
    const [outer, inner] = f.name.split('.'); // "model.depth" lives in the nested "model" object
    if (inner) (config[outer] ??= {})[inner] = v;
    else config[outer] = v;
  }
  const ds = $('#f-dataset').value;
  if (ds) config.dataset = ds;
  if (!$('#f-augment').checked) Object.assign(config, NO_AUGMENTATION);
  config.activate = $('#f-activate').checked;
  return config;
}

export async function refreshDatasets(select) {
  const sel = $('#f-dataset');
  try {
    store.datasets = (await api.datasets()).datasets;
  } catch (e) {
    store.datasets = [];
    reportError(e, 'Loading datasets', 'datasets');
  }
  const prev = sel.value;
  const opts = store.datasets.map((d) => {
    const extra = `${d.samples.toLocaleString()} tiles, ${fmtBytes(d.bytes)}`;
    const label = d.name && d.name !== d.id ? `${d.name} (${d.id})` : d.id;
    return `<option value="${esc(d.id)}">${esc(label)} — ${esc(extra)}</option>`;
  });
  if (!opts.length) opts.push('<option value="">server default</option>');
  sel.innerHTML = opts.join('');
  const want = [select, prev].find((v) => v && store.datasets.some((d) => d.id === v))
    ?? (store.datasets.find((d) => d.id === 'sample')?.id ?? store.datasets[0]?.id ?? '');
  if (want) sel.value = want;
}

function initUpload() {
  const input = $('#dataset-file'), btn = $('#dataset-upload'), err = $('#form-error');
  btn.addEventListener('click', () => input.click());
  input.addEventListener('change', async () => {
    const file = input.files[0];
    input.value = '';
    if (!file) return;
    if (!/\.npz$/i.test(file.name)) { showError(err, `${file.name}: choose a .npz file (arrays training_set or test_set).`); return; }
    showError(err, '');
    btn.disabled = true; btn.textContent = 'Uploading…';
    toast(`Uploading ${file.name} (${fmtBytes(file.size)}); the server validates it before listing it.`, 'info', 'upload');
    try {
      const d = await api.uploadDataset(file, file.name.replace(/\.npz$/i, '').slice(0, 60));
      dropToast('upload');
      toast(`Dataset ${d.name || d.id} added (${d.samples.toLocaleString()} tiles).`, 'ok');
      await refreshDatasets(d.id);
    } catch (e) {
      dropToast('upload');
      showError(err, reportError(e, `Uploading ${file.name}`));
    } finally {
      btn.disabled = false; btn.textContent = 'Upload .npz';
    }
  });
}

/** Builds the fields from store.schema (a SchemaError when /schema lacks one). */
export function initJobForm() {
  initUpload();
  const form = $('#job-form'), err = $('#form-error'), btn = $('#job-submit');
  const fields = formFields();
  $('#config-fields').innerHTML = fields.map((f) => fieldHtml(f, f.schema)).join('');
  form.addEventListener('reset', () => {
    showError(err, '');
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    setTimeout(refreshDatasets, 0);
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let config;
    try { config = configFromForm(fields); } catch (ex) {
      showError(err, ex.message); ex.field?.focus(); return;
    }
    showError(err, '');
    btn.disabled = true; btn.textContent = 'Starting…';
    try {
      const job = await api.createJob(config);
      dropToast('newjob');
      toast(`Training job ${job.id} queued.`, 'ok');
      await refreshJobs();
      selectJob(job.id);
    } catch (ex) {
      showError(err, reportError(ex, 'Starting the job', 'newjob'));
      // "model.depth: …" or "lr: …" → mark that field.
      const m = /^([a-z_]+(?:\.[a-z_]+)?)\s*:/.exec(ex.message || '');
      const f = m && fields.find((x) => x.name === m[1]);
      if (f) f.el().setAttribute('aria-invalid', 'true');
    } finally {
      btn.disabled = false; btn.textContent = 'Start training';
    }
  });
}
