/* The figures of an evaluation report (GET /evaluations/{id}: report.json of `marsseg eval
 * --report`) as the Evaluate card draws them: the confusion heatmap's cells (row-normalised
 * shares, counts for the hover text) and the per-class IoU of two models side by side. Class
 * names and colours come from /schema (store.schema.classes). Pure; unit-tested by
 * tests/web/evalmath.test.mjs. */

/** The heatmap: one row per true class, one cell per predicted class: { v (the row's share, 0..1
 * or null for a class absent from the truth), count, title }. */
export function heatRows(report, classes) {
  return classes.map((t, i) => ({
    name: t.name,
    cells: classes.map((p, j) => {
      const count = report.confusion[i]?.[j] ?? 0, v = report.normalized[i]?.[j] ?? null;
      const share = v === null ? 'no such pixel in the truth' : `${(v * 100).toFixed(1)}% of ${t.name}`;
      return { v, count, title: `truth ${t.name} → predicted ${p.name}: ${count.toLocaleString('en-US')} pixels (${share})` };
    }),
  }));
}

/** The cell's background: the shares on one scale (0 transparent, 1 the full accent). */
export const heatColor = (v) => `rgba(232, 118, 58, ${v === null ? 0 : (0.08 + 0.92 * v).toFixed(3)})`;

/** Per class: { id, name, rgb, a, b } — the IoU of model A and of model B (null: B not
 * evaluated, or the class absent from truth and prediction). */
export function iouRows(a, b, classes) {
  return classes.map((k) => ({ id: k.id, name: k.name, rgb: k.rgb, a: a.iou[k.id] ?? null, b: b ? b.iou[k.id] ?? null : null }));
}

/** A pass's progress in words: "120 of 256 tiles". */
export const progressText = (p) => (p && Number.isFinite(p.done) && Number.isFinite(p.total) ? `${p.done} of ${p.total} tiles` : 'queued');
