/* The New training job card: the dataset list (GET /datasets, upload with POST /datasets) and
 * the config fields, built from /schema's "config" table: each input's type, min, max, step,
 * options and default come from there, so the browser checks what the server will check
 * (formcheck.mjs: integers on their text, so "1e3" is refused, not sent as 1000). When the
 * server refuses a config anyway (a rule across fields: base * 2^depth), the fields its error
 * names are marked. After "Start training" the focus moves to the new run. */
import { $, showError } from './dom.mjs';
import { ApiError, api } from './api.mjs';
import { store } from './store.mjs';
import { SchemaError } from './schema.mjs';
import { esc, fmtBytes } from './format.mjs';
import { toast, dropToast, reportError } from './toasts.mjs';
import { checkField, checkRanks, configErrorText, fieldsOfError } from './formcheck.mjs';
import { refreshJobs } from './jobs.mjs';
import { focusRun, selectJob } from './runview.mjs';
import { servingSummary } from './models.mjs';

/** The form's config fields in display order, by /schema name; `label` and `option` names are
 * presentation only. */
const FIELDS = [
  { name: 'loss', label: 'Loss', wide: true, options: { wce: 'weighted cross-entropy', dice: 'Dice', focal: 'focal', 'wce+dice': 'weighted cross-entropy + Dice' } },
  { name: 'epochs', label: 'Epochs' },
  { name: 'batch', label: 'Batch size' },
  { name: 'lr', label: 'Learning rate' },
  { name: 'model.dropout', label: 'Dropout' },
  { name: 'model.depth', label: 'U-Net depth' },
  { name: 'model.base', label: 'Base channels' },
  { name: 'seed', label: 'Seed', wide: true },
];
/** Unticking "Augmentation" sends these. */
const NO_AUGMENTATION = { hflip: false, brightness: 0, contrast: 0, max_shift: 0 };

const inputId = (name) => `f-${name.replace(/^model\./, '')}`;
const errId = (name) => `${inputId(name)}-err`;

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
    control = `<input id="${id}" name="${esc(f.name)}" type="number" inputmode="${int ? 'numeric' : 'decimal'}" min="${s.min}" max="${s.max}" step="${int ? 1 : 'any'}" value="${s.default}" required aria-describedby="${errId(f.name)}"${help}>`;
  } else {
    throw new SchemaError(`GET /schema: config "${f.name}"`, `the form has no input for type ${s.type}`);
  }
  return `<div class="field${f.wide ? ' wide' : ''}"><label for="${id}">${esc(f.label)}</label>${control}<span class="field-error" id="${errId(f.name)}" hidden></span></div>`;
}

/** The form's fields joined with their /schema entries (a SchemaError names a missing one). */
function formFields() {
  return FIELDS.map((f) => {
    const s = store.schema.config.find((c) => c.name === f.name);
    if (!s) throw new SchemaError('GET /schema: config', `no field "${f.name}" (the job form shows it)`);
    return { ...f, schema: s, el: () => document.getElementById(inputId(f.name)) };
  });
}

/** Marks the field with its own message, or with the form's message below (byForm: a server
 * refusal that may name two fields is said once), or clears it (''). */
function markField(f, message, { byForm = false } = {}) {
  const el = f.el(), err = document.getElementById(errId(f.name));
  if (message) el.setAttribute('aria-invalid', 'true'); else el.removeAttribute('aria-invalid');
  el.setAttribute('aria-describedby', byForm ? `${errId(f.name)} form-error` : errId(f.name));
  if (err) { err.textContent = byForm ? '' : message; err.hidden = byForm || !message; }
}

/** The field's text checked against its /schema entry: the value, or the message (marked). */
function checkOne(f) {
  const r = checkField(f.el().value, f.schema, f.label);
  markField(f, r.ok ? '' : r.message);
  return r;
}

/** The config of the form, or throws an Error naming the first bad field (all bad ones marked). */
function configFromForm(fields) {
  const config = {};
  let first = null;
  for (const f of fields) {
    const r = checkOne(f);
    if (!r.ok) { first = first || { f, message: r.message }; continue; }
    const [outer, inner] = f.name.split('.'); // "model.depth" lives in the nested "model" object
    if (inner) (config[outer] ??= {})[inner] = r.value;
    else config[outer] = r.value;
  }
  if (first) throw Object.assign(new Error(first.message), { field: first.f.el() });
  const ranksEl = document.getElementById('f-ranks');
  if (ranksEl) { // a server with --mpi-hostfile: empty trains here, N through mpirun
    const r = checkRanks(ranksEl.value, store.schema.mpi);
    if (!r.ok) throw Object.assign(new Error(r.message), { field: ranksEl });
    if (r.value !== null) config.ranks = r.value;
  }
  const ds = $('#f-dataset').value;
  if (ds) config.dataset = ds;
  if (!$('#f-augment').checked) Object.assign(config, NO_AUGMENTATION);
  config.activate = activateChoice().value;
  return config;
}

/** The chosen "activate" entry of /schema ({ value, label, help }). */
const activateChoice = () => store.schema.activate.choices[Number($('#f-activate').value)] ?? store.schema.activate.choices[0];

/** The hint under "When the run succeeds": what the choice does, and against which model. */
export function updateActivateHint() {
  const el = $('#activate-hint');
  if (!el || !store.schema) return;
  const c = activateChoice();
  el.textContent = `${c.help}${c.value !== false && store.active ? ` Serving now: ${servingSummary()}.` : ''}`;
}

/** The choices of /schema's activate table, its default selected (labels are the server's). */
function fillActivate() {
  const a = store.schema.activate;
  $('#f-activate').innerHTML = a.choices.map((c, i) => `<option value="${i}"${c.value === a.default ? ' selected' : ''}>${esc(c.label)}</option>`).join('');
}

export async function refreshDatasets(select) {
  const sel = $('#f-dataset');
  try {
    store.datasets = (await api.datasets()).datasets;
  } catch (e) {
    store.datasets = [];
    reportError(e, 'Loading datasets', { key: 'datasets', transient: true });
  }
  const prev = sel.value;
  // short enough for the narrow column; the id (when the name is not unique) and the tile size
  // go into the title
  const names = store.datasets.map((d) => d.name || d.id);
  const opts = store.datasets.map((d, i) => {
    const name = names.indexOf(names[i]) !== i || names.lastIndexOf(names[i]) !== i ? `${names[i]} (${d.id})` : names[i];
    return `<option value="${esc(d.id)}" title="${esc(`${d.id}: ${d.samples} tiles of ${d.width}×${d.height}, ${fmtBytes(d.bytes)}`)}">${esc(name)} · ${d.samples.toLocaleString()} tiles</option>`;
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
    if (!/\.npz$/i.test(file.name)) { showError(err, `${file.name} is not an .npz file: choose one with a training_set array (N×2×H×W).`); return; }
    const max = store.schema.limits.max_upload;
    if (file.size > max) { showError(err, `${file.name} is ${fmtBytes(file.size)}; the server takes datasets up to ${fmtBytes(max)}.`); return; }
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
      showError(err, reportError(e, `Uploading ${file.name}`, { inline: true }));
    } finally {
      btn.disabled = false; btn.textContent = 'Upload .npz';
    }
  });
}

/** The server refused the config: the fields its error names are marked, the first focused. */
function showRefusal(fields, ex) {
  const err = $('#form-error');
  if (!(ex instanceof ApiError) || !['invalid_config', 'invalid_argument', 'unknown_dataset'].includes(ex.code)) {
    showError(err, reportError(ex, 'Starting the job', { inline: true }));
    return;
  }
  const labelOf = (name) => fields.find((x) => x.name === name)?.label ?? null;
  const text = configErrorText(ex.message, labelOf);
  showError(err, `The server refused the job. ${text}`);
  const marked = fieldsOfError(ex.message).map((name) => fields.find((x) => x.name === name)).filter(Boolean);
  for (const f of marked) markField(f, text, { byForm: true });
  if (/^dataset:/.test(ex.message)) $('#f-dataset').setAttribute('aria-invalid', 'true');
  (marked[0]?.el() ?? err).focus?.();
}

/** Builds the fields from store.schema (a SchemaError when /schema lacks one). */
export function initJobForm() {
  initUpload();
  fillActivate();
  const form = $('#job-form'), err = $('#form-error'), btn = $('#job-submit');
  const fields = formFields();
  const mpi = store.schema.mpi;
  $('#config-fields').innerHTML = fields.map((f) => fieldHtml(f, f.schema)).join('') + (mpi
    ? `<div class="field wide"><label for="f-ranks">MPI ranks <span class="muted">(empty: train on this server)</span></label><input id="f-ranks" name="ranks" type="number" inputmode="numeric" min="1" max="${mpi.max_ranks}" step="1" placeholder="1 to ${mpi.max_ranks}" title="data-parallel processes on the server's MPI hosts (mpirun)"></div>`
    : '');
  for (const f of fields) {
    if (f.schema.type === 'string') continue;
    // Checked as the user types, so that the message appears before "Start training" is pressed
    // (a message appearing on blur moves the button away from under the pointer). An empty
    // field (also what a number input reports for a half-typed "1e") waits for the submit.
    f.el().addEventListener('input', () => {
      const raw = f.el().value;
      if (raw.trim() === '') markField(f, '');
      else checkOne(f);
    });
  }
  $('#f-dataset').addEventListener('change', () => $('#f-dataset').removeAttribute('aria-invalid'));
  $('#f-activate').addEventListener('change', updateActivateHint);
  form.addEventListener('reset', () => {
    showError(err, '');
    for (const f of fields) markField(f, '');
    setTimeout(() => { fillActivate(); refreshDatasets(); updateActivateHint(); }, 0);
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
      toast(`Training run ${job.id} queued.`, 'ok', 'newjob');
      await refreshJobs();
      selectJob(job.id);
      focusRun();
    } catch (ex) {
      showRefusal(fields, ex);
    } finally {
      btn.disabled = false; btn.textContent = 'Start training';
    }
  });
  updateActivateHint();
}
