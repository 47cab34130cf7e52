/* Line charts as SVG markup: scales, ticks, paths, legend and the accessible summary.
 * Pure (strings in, strings out; no DOM): charts.mjs puts the markup into the page.
 * Unit-tested by tests/web/chart.test.mjs.
 *
 * opt = { xMax, n (points), empty (text when there are none), label, fmt (value → text),
 *         y: 'unit' (0..1) | 'log' (log scale when the values span > ~a decade) | 'auto',
 *         series: [{ name, color, dash?, step?, data: [[x, y|null]...], live?: [x, y] }] } */
import { esc, fmtLr } from './format.mjs';

export const MARGIN = { l: 46, r: 12, t: 10, b: 24 };

/** A "nice" tick step (1, 2, 2.5, 5 × 10^k) giving about `target` steps over `range`. */
export function niceStep(range, target) {
  const raw = range / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

/** The y domain and ticks for the values `vals` (nulls already dropped). In log mode y0/y1
 * are decades (log10). */
export function yAxis(kind, vals) {
  if (kind === 'unit') return { y0: 0, y1: 1, ticks: [0, 0.25, 0.5, 0.75, 1], logY: false };
  if (kind === 'log' && vals.length && Math.max(...vals) / Math.min(...vals) > 12) {
    // Log scale only when the rate spans more than about a decade; linear reads better otherwise.
    let y0 = Math.floor(Math.log10(Math.min(...vals)) + 1e-9), y1 = Math.ceil(Math.log10(Math.max(...vals)) - 1e-9);
    if (y1 - y0 < 1) { y0 -= 0.5; y1 += 0.5; }
    const step = y1 - y0 > 5 ? 2 : 1, ticks = [];
    for (let e = Math.ceil(y0); e <= y1 + 1e-9; e += step) ticks.push(10 ** e);
    return { y0, y1, ticks, logY: true };
  }
  if (!vals.length) return { y0: 0, y1: 1, ticks: [], logY: false }; // nothing to scale: no labels
  const hi = Math.max(...vals) || 1, st = niceStep(hi, 4), y1 = Math.ceil(hi * 1.04 / st) * st, ticks = [];
  for (let v = 0; v <= y1 + st * 1e-6; v += st) ticks.push(+v.toPrecision(6));
  return { y0: 0, y1, ticks, logY: false };
}

/** Epoch ticks: whole numbers from 0 to xMax, about one per 55 px of `iw`. */
export function xTicks(xMax, iw) {
  const step = Math.max(1, Math.round(niceStep(xMax, Math.max(2, Math.floor(iw / 55)))));
  const ticks = [];
  for (let x = 0; x <= xMax + 1e-9; x += step) ticks.push(x);
  return ticks;
}

/** The plot's geometry for a width W: scales sx (epoch → px) and sy (value → px). */
export function geometry(opt, W) {
  const H = W < 440 ? 180 : 200, M = MARGIN;
  const iw = W - M.l - M.r, ih = H - M.t - M.b;
  const vals = [];
  for (const s of opt.series) {
    for (const [, v] of s.data) if (v !== null && (opt.y !== 'log' || v > 0)) vals.push(v);
    if (s.live) vals.push(s.live[1]);
  }
  const ax = yAxis(opt.y, vals);
  const sy = ax.logY
    ? (v) => M.t + ih - ((Math.log10(v) - ax.y0) / (ax.y1 - ax.y0)) * ih
    : (v) => M.t + ih - ((v - ax.y0) / (ax.y1 - ax.y0)) * ih;
  const sx = (x) => M.l + (x / opt.xMax) * iw;
  return { W, H, M, iw, ih, sx, sy, ...ax };
}

const drawable = (v, logY) => v !== null && !(logY && v <= 0);

/** The SVG path of one series: gaps at nulls, stairs for step series. `last` is the last drawn
 * point in px (the live segment starts there). */
export function seriesPath(s, g) {
  let d = '', pen = false, last = null;
  for (const [x, v] of s.data) {
    if (!drawable(v, g.logY)) { pen = false; continue; }
    const px = g.sx(x).toFixed(1), py = g.sy(v).toFixed(1);
    if (!pen) d += `M${px} ${py}`;
    else if (s.step) d += `H${px}V${py}`;
    else d += `L${px} ${py}`;
    pen = true;
    last = [px, py];
  }
  return { d, last };
}

const lastValue = (s) => [...s.data].reverse().find(([, v]) => v !== null);

/** One line for screen readers: "Loss over 3 epochs; latest: train 0.41, validation 0.52". */
export function chartSummary(opt) {
  if (!opt.n) return `${opt.label}: ${opt.empty}`;
  const bits = opt.series.map((s) => { const l = lastValue(s); return l ? `${s.name} ${opt.fmt(l[1])}` : null; }).filter(Boolean);
  return `${opt.label} over ${opt.n} epoch${opt.n === 1 ? '' : 's'}; latest: ${bits.join(', ')}`;
}

/** The chart as SVG markup at width W, and its geometry (for the hover cursor). */
export function chartSvg(opt, W) {
  const g = geometry(opt, W), { H, M, iw, ih, sx, sy } = g;
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(chartSummary(opt))}">`];
  for (const t of g.ticks) { // grid + y labels
    const y = sy(t).toFixed(1);
    parts.push(`<line class="grid" x1="${M.l}" x2="${W - M.r}" y1="${y}" y2="${y}"/>`);
    parts.push(`<text class="tick" x="${M.l - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(g.logY ? fmtLr(t) : opt.fmt(t).replace(/\.0%$/, '%'))}</text>`);
  }
  for (const x of xTicks(opt.xMax, iw)) { // epochs
    const px = sx(x).toFixed(1);
    parts.push(`<line class="xtick" x1="${px}" x2="${px}" y1="${M.t + ih}" y2="${M.t + ih + 4}"/>`);
    parts.push(`<text class="tick" x="${px}" y="${H - 6}" text-anchor="middle">${x}</text>`);
  }
  parts.push(`<line class="axis" x1="${M.l}" x2="${W - M.r}" y1="${M.t + ih}" y2="${M.t + ih}"/>`);
  parts.push(`<text class="axis-label" x="${M.l - 6}" y="${H - 6}" text-anchor="end">epoch</text>`);
  for (const s of opt.series) {
    const { d, last } = seriesPath(s, g);
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    if (d) parts.push(`<path class="line" d="${d}" stroke="${s.color}"${dash} data-series="${esc(s.name)}"/>`);
    if (opt.n <= 40) { // markers while they stay apart
      for (const [x, v] of s.data) {
        if (drawable(v, g.logY)) parts.push(`<circle class="dot" cx="${sx(x).toFixed(1)}" cy="${sy(v).toFixed(1)}" r="${opt.n === 1 ? 3.5 : 2.2}" fill="${s.color}"/>`);
      }
    }
    if (s.live) {
      const lx = sx(s.live[0]).toFixed(1), ly = sy(s.live[1]).toFixed(1);
      if (last) parts.push(`<line class="live-line" x1="${last[0]}" y1="${last[1]}" x2="${lx}" y2="${ly}" stroke="${s.color}"/>`);
      parts.push(`<circle class="live-dot" cx="${lx}" cy="${ly}" r="4" stroke="${s.color}"><title>running mean loss of the current epoch</title></circle>`);
    }
  }
  if (!opt.n && !opt.series.some((s) => s.live)) {
    parts.push(`<text class="empty-note" x="${M.l + iw / 2}" y="${M.t + ih / 2}" text-anchor="middle" dominant-baseline="middle">${esc(opt.empty)}</text>`);
  }
  parts.push(`<line class="cursor" x1="0" x2="0" y1="${M.t}" y2="${M.t + ih}" visibility="hidden"/>`);
  parts.push(`<rect class="hit" x="${M.l}" y="${M.t}" width="${iw}" height="${ih}" fill="transparent"/>`);
  parts.push('</svg>');
  return { svg: parts.join(''), geom: g };
}

/** A colour swatch as the legend and the tooltip draw it. */
export const swatch = (s) => `<span class="swatch${s.dash ? ' dashed' : ''}" style="--c:${s.color}" aria-hidden="true"></span>`;

/** The legend items: each series with its latest value. */
export function legendHtml(opt) {
  return opt.series.map((s) => {
    const l = lastValue(s);
    return `<li>${swatch(s)}${esc(s.name)}${l ? ` <span class="legend-val">${esc(opt.fmt(l[1]))}</span>` : ''}</li>`;
  }).join('');
}

/** The epoch in `epochs` nearest to the value at pixel px of the plot. */
export function nearestEpoch(epochs, px, g, xMax) {
  const xv = ((px - g.M.l) / g.iw) * xMax;
  let best = epochs[0];
  for (const x of epochs) if (Math.abs(x - xv) < Math.abs(best - xv)) best = x;
  return best;
}

/** A class colour made readable as a thin line on the dark card: colours darker than `minLuma`
 * (Rec. 601 luma, 0-255) are mixed with white until they reach it; brighter ones stay. */
export function lineColor(rgb, minLuma = 150) {
  const luma = (c) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
  const y = luma(rgb);
  const t = y >= minLuma ? 0 : (minLuma - y) / (255 - y);
  const c = rgb.map((v) => Math.round(v + (255 - v) * t));
  return '#' + c.map((v) => v.toString(16).padStart(2, '0')).join('');
}
