/* Pure text helpers: numbers, times, sizes and the markup of small pieces (no DOM, no state).
 * Unit-tested by tests/web/format.test.mjs. */

/** A finite number, or null for anything else (null, undefined, '', NaN, text). */
export const num = (v) => (v === null || v === undefined || v === '' || !Number.isFinite(Number(v))) ? null : Number(v);

const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** Escapes text for HTML (element content and quoted attributes). */
export const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ENTITIES[c]);

/** [r, g, b] as a CSS colour. */
export const rgbCss = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;

/** '#rrggbb' as [r, g, b], or null when it is not that form. */
export function parseHexColor(s) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(String(s));
  return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : null;
}

/** "just now", "3 min ago", "2 h ago", "4 d ago", or the date after two weeks. */
export function fmtAgo(d, now = Date.now()) {
  if (!d) return '';
  const s = (now - d.getTime()) / 1000;
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 86400 * 14) return `${Math.round(s / 86400)} d ago`;
  return d.toLocaleDateString();
}

/** Seconds as "42 s", "3 min 07 s" or "2 h 05 min"; '—' when unknown. */
export function fmtDuration(s) {
  if (s === null || s < 0) return '—';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

export const fmtPct = (v, d = 1) => v === null ? '—' : `${(v * 100).toFixed(d)}%`;
export const fmtNum = (v, p = 3) => v === null ? '—' : (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString() : String(+v.toPrecision(p)));

/** A learning rate: plain above 0.01, "5e-4" style below. */
export function fmtLr(v) {
  if (v === null) return '—';
  if (v === 0) return '0';
  if (v >= 0.01) return String(+v.toPrecision(3));
  const [m, e] = v.toExponential(2).split('e');
  return `${m.replace(/\.?0+$/, '')}e${e}`;
}

export function fmtBytes(b) {
  if (b === null) return '';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b < 10 && i ? b.toFixed(1) : Math.round(b)} ${u[i]}`;
}

export const shortId = (id) => id.length > 14 ? id.slice(0, 12) + '…' : id;

/** The coloured state badge of a job (style.css colours it by data-state). */
export function badge(state) {
  return `<span class="badge" data-state="${esc(state)}"><span class="badge-dot" aria-hidden="true"></span>${esc(state)}</span>`;
}
