/* The Evaluate models card: one model (and optionally a second to compare with) evaluated on a
 * labelled dataset by the server (POST /evaluations, a background job each), then drawn from the
 * reports: the first model's confusion matrix as a heatmap (each row the share of a true class,
 * counts on hover), the per-class IoU of both models side by side, and the first model's worst
 * tiles (image, truth, prediction and uncertainty, as the report's PNGs). Class names and colours
 * come from /schema; the figures from evalmath.mjs. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { esc, fmtPct, rgbCss } from './format.mjs';
import { reportError } from './toasts.mjs';
import { heatColor, heatRows, iouRows, progressText } from './evalmath.mjs';

const WORST = 4;
const classes = () => store.schema.classes;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The selects follow the model and dataset lists (their choice is kept when it still exists). */
export function refreshEvalChoices() {
  const fill = (sel, items, extra) => {
    const prev = sel.value;
    sel.innerHTML = extra + items.map(([v, t]) => `<option value="${esc(v)}">${esc(t)}</option>`).join('');
    if ([...sel.options].some((o) => o.value === prev)) sel.value = prev;
  };
  const models = store.models.map((m) => [m.id, `${m.id}${m.miou !== null ? ` · ${fmtPct(m.miou)}` : ''}`]);
  fill($('#eval-a'), models, '');
  if (!$('#eval-a').value && store.active) $('#eval-a').value = store.active;
  fill($('#eval-b'), models, '<option value="">nothing</option>');
  fill($('#eval-data'), store.datasets.map((d) => [d.id, d.name || d.id]), '');
}

/** Evaluates one model; resolves to its report (the card's status follows the job). */
async function evaluate(model, dataset, label) {
  let ev = await api.createEvaluation({ model, dataset, worst: WORST });
  while (ev.state === 'queued' || ev.state === 'running') {
    $('#eval-status').textContent = `Evaluating ${label} on ${dataset}: ${progressText(ev.progress)}…`;
    await sleep(400);
    ev = await api.evaluation(ev.id);
  }
  if (ev.state !== 'succeeded' || !ev.report) throw new Error(`the evaluation of ${label} ${ev.state}${ev.error ? `: ${ev.error}` : ''}`);
  return { id: ev.id, model, report: ev.report };
}

function renderHeatmap(a) {
  const ks = classes();
  const rows = heatRows(a.report, ks);
  $('#eval-heat-model').textContent = a.model;
  $('#eval-heatmap').innerHTML = `<thead><tr><th scope="col"><span class="visually-hidden">truth \\ prediction</span></th>${ks.map((k) => `<th scope="col">${esc(k.name)}</th>`).join('')}</tr></thead>
    <tbody>${rows.map((r) => `<tr><th scope="row">${esc(r.name)}</th>${r.cells.map((c) => `<td style="background:${heatColor(c.v)}" title="${esc(c.title)}" data-count="${c.count}" data-share="${c.v ?? ''}">${c.v === null ? '—' : `${Math.round(c.v * 100)}%`}</td>`).join('')}</tr>`).join('')}</tbody>`;
}

function renderIou(a, b) {
  const bar = (v, rgb, cls, who) => `<span class="iou-bar ${cls}" style="width:${((v ?? 0) * 100).toFixed(1)}%;background-color:${rgbCss(rgb)}" title="${esc(who)}: IoU ${fmtPct(v)}"></span>`;
  $('#eval-iou-legend').textContent = b ? `solid: ${a.model} · striped: ${b.model}` : a.model;
  $('#eval-iou').innerHTML = iouRows(a.report, b?.report, classes()).map((r) => `<div class="iou-row" data-class="${r.id}">
      <span>${esc(r.name)}</span>
      <div class="iou-pair">${bar(r.a, r.rgb, 'a', a.model)}<span class="iou-val">${fmtPct(r.a)}</span>${b ? `${bar(r.b, r.rgb, 'b', b.model)}<span class="iou-val">${fmtPct(r.b)}</span>` : ''}</div>
    </div>`).join('');
}

function renderGallery(a) {
  $('#eval-gallery-model').textContent = a.model;
  const img = (name, alt) => `<img src="${api.evaluationFile(a.id, name)}" alt="${esc(alt)}" width="128" height="64" loading="lazy">`;
  $('#eval-gallery').innerHTML = a.report.worst.map((w) => `<figure class="tile" data-index="${w.index}">
      ${img(w.image, `tile ${w.index}`)}${img(w.truth, `tile ${w.index}, true classes`)}${img(w.pred, `tile ${w.index}, predicted classes`)}${img(w.uncertainty, `tile ${w.index}, uncertainty`)}
      <figcaption>tile ${w.index} · mIoU ${fmtPct(w.miou)}</figcaption></figure>`).join('') || '<p class="muted">No tile has a foreground class to score.</p>';
}

export function initEval() {
  const form = $('#eval-form'), btn = $('#eval-submit'), err = $('#eval-error');
  for (const id of ['#eval-a', '#eval-b', '#eval-data']) $(id).addEventListener('focus', refreshEvalChoices, { once: true });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const a = $('#eval-a').value, b = $('#eval-b').value, data = $('#eval-data').value;
    if (!a || !data) { showError(err, 'Choose a model and a labelled dataset to evaluate it on.'); return; }
    showError(err, '');
    btn.disabled = true;
    try {
      const ra = await evaluate(a, data, a);
      const rb = b && b !== a ? await evaluate(b, data, b) : null;
      renderHeatmap(ra);
      renderIou(ra, rb);
      renderGallery(ra);
      $('#eval-result').hidden = false;
      $('#eval-meta').textContent = `${data}: ${ra.report.tiles} tiles`;
      $('#eval-status').textContent = `${a}: mIoU ${fmtPct(ra.report.miou)}${rb ? `; ${b}: ${fmtPct(rb.report.miou)}` : ''} on ${data}.`;
    } catch (ex) {
      $('#eval-status').textContent = '';
      showError(err, reportError(ex, 'Evaluating', { inline: true }));
    } finally {
      btn.disabled = false;
    }
  });
  refreshEvalChoices();
}
