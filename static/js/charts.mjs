/* The run's four charts (loss, mean IoU, IoU per class, learning rate) drawn into their
 * <figure>s, with a hover tooltip and a redraw when the layout width changes. The markup comes
 * from chart.mjs; the per-class series take their names and colours from /schema.
 * tests/dashboard.sh reads each figure's data-points="N". */
import { $ } from './dom.mjs';
import { store } from './store.mjs';
import { esc, fmtLr, fmtNum, fmtPct } from './format.mjs';
import { chartSvg, legendHtml, lineColor, nearestEpoch, swatch } from './chart.mjs';

const SERIES_COLORS = { train: '#f0a04b', val: '#7cc4f0', lr: '#d7b4ff' };

function draw(fig, opt) {
  const plot = fig.querySelector('.plot');
  // Drawn at the plot's CSS width; the SVG scales with its viewBox until the next redraw.
  const { svg, geom } = chartSvg(opt, Math.max(200, Math.round(plot.clientWidth || 360)));
  fig.dataset.points = String(opt.n);
  plot.innerHTML = svg;
  fig._chart = { opt, geom };
  if (fig._hoverEpoch != null && opt.n) moveCursor(fig, fig._hoverEpoch); // keep it across live redraws
  fig.querySelector('.legend').innerHTML = legendHtml(opt);
}

function moveCursor(fig, epoch) {
  const cur = fig.querySelector('.cursor'), cx = fig._chart.geom.sx(epoch).toFixed(1);
  cur.setAttribute('x1', cx); cur.setAttribute('x2', cx); cur.setAttribute('visibility', 'visible');
}

/** Draws the charts of `points` (finished epochs, in order). run = { state, progress, epochs,
 * empty }: the selected run's state, live progress (or null), planned epochs and the text
 * shown while there is nothing to draw. */
export function drawCharts(points, run) {
  const p = run.progress;
  const lastEpoch = points.length ? points[points.length - 1].epoch : 0;
  const xMax = Math.max(run.epochs || 0, lastEpoch, 1);
  const xy = (key) => points.map((pt) => [pt.epoch, pt[key]]);
  // A live point for the running epoch: its running mean training loss so far.
  let live = null;
  if (run.state === 'running' && p && p.loss !== null && p.batches) {
    const x = p.epoch - 1 + p.batch / p.batches;
    if (x > lastEpoch) live = [x, p.loss];
  }
  const common = { xMax, empty: run.empty, n: points.length };
  const trainVal = (key, extra = {}) => [
    { name: 'train', color: SERIES_COLORS.train, dash: '5 4', data: xy(`train_${key}`), ...extra },
    { name: 'validation', color: SERIES_COLORS.val, data: xy(`val_${key}`) },
  ];
  draw($('#chart-loss'), { ...common, y: 'auto', fmt: (v) => fmtNum(v, 3), label: 'Loss', series: trainVal('loss', { live }) });
  draw($('#chart-miou'), { ...common, y: 'unit', fmt: (v) => fmtPct(v, 1), label: 'Mean IoU', series: trainVal('miou') });
  draw($('#chart-iou'), { ...common, y: 'unit', fmt: (v) => fmtPct(v, 1), label: 'Validation IoU per class',
    series: store.schema.classes.map((k) => ({
      name: k.name, color: lineColor(k.rgb), dash: k.id === 0 ? '2 3' : null,
      data: points.map((pt) => [pt.epoch, pt.val_iou[k.id]]),
    })) });
  draw($('#chart-lr'), { ...common, y: 'log', fmt: fmtLr, label: 'Learning rate',
    series: [{ name: 'learning rate', color: SERIES_COLORS.lr, data: xy('lr'), step: true }] });
  document.body.dataset.curves = String(points.length);
}

function showTip(tip, fig, e) {
  const { opt, geom } = fig._chart;
  const svg = fig.querySelector('svg'), r = svg.getBoundingClientRect();
  const epochs = opt.series[0].data.map(([x]) => x);
  if (!epochs.length) return false;
  const best = nearestEpoch(epochs, (e.clientX - r.left) * (geom.W / r.width), geom, opt.xMax);
  fig._hoverEpoch = best;
  moveCursor(fig, best);
  const rows = opt.series.map((s) => {
    const v = s.data.find(([x]) => x === best)?.[1];
    return `<li>${swatch(s)}${esc(s.name)} <b>${esc(v === null || v === undefined ? '—' : opt.fmt(v))}</b></li>`;
  }).join('');
  tip.innerHTML = `<strong>epoch ${best}</strong><ul>${rows}</ul>`;
  tip.hidden = false;
  const tw = tip.offsetWidth, th = tip.offsetHeight;
  let left = e.clientX + 14, top = e.clientY + 14;
  if (left + tw > window.innerWidth - 8) left = e.clientX - tw - 14;
  if (top + th > window.innerHeight - 8) top = e.clientY - th - 14;
  tip.style.left = `${Math.max(8, left)}px`; tip.style.top = `${Math.max(8, top)}px`;
  return true;
}

/** The hover tooltip of every chart, and redraw() when the charts' width changes. */
export function initCharts(redraw) {
  // the mean IoU is over the classes other than background (id 0)
  $('#miou-classes').textContent = store.schema.classes.filter((k) => k.id !== 0).map((k) => k.name).join(' · ');
  const tip = $('#chart-tip');
  const hide = (fig) => {
    tip.hidden = true;
    fig._hoverEpoch = null;
    fig.querySelector('.cursor')?.setAttribute('visibility', 'hidden');
  };
  for (const fig of document.querySelectorAll('.chart')) {
    const plot = fig.querySelector('.plot');
    plot.addEventListener('pointermove', (e) => { if (!fig._chart?.opt.n || !showTip(tip, fig, e)) hide(fig); });
    plot.addEventListener('pointerleave', () => hide(fig));
  }
  let pending = 0, lastW = 0;
  new ResizeObserver((entries) => {
    const w = Math.round(entries[0].contentRect.width);
    if (w === lastW) return;
    lastW = w;
    clearTimeout(pending);
    pending = setTimeout(redraw, 60);
  }).observe($('.charts'));
}
