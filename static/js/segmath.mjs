/* The segmentation result composed in the browser from the one answer of POST /segment: since
 * issue 14 its JSON with the class ids and the uncertainty map (?format=json&maps=1), from which
 * the mask in the class colours, the pixels per class, the overlay, the uncertainty overlay and
 * the input's gray levels are drawn here; labelsFromRgba still reads a palette mask PNG's
 * colours back to class ids (a mask PNG from elsewhere). The overlay is the server's (core/png.c, ms_png_encode_overlay): the class colour at
 * alpha 0.45 over the gray input, weights out of 256, rounded. Pure (typed arrays in and out);
 * unit-tested by tests/web/segmath.test.mjs. */

export const OVERLAY_ALPHA = 0.45;

/** RGBA pixels of the mask → { labels (Uint8Array, class ids), counts (pixels per class),
 * offPalette (pixels that are no class colour, give or take rounding), offExample }.
 * classes: [{ id, rgb }] with ids 0..n-1. */
export function labelsFromRgba(rgba, classes) {
  const n = rgba.length >> 2, labels = new Uint8Array(n), counts = new Array(classes.length).fill(0);
  const exact = new Map(classes.map((k) => [(k.rgb[0] << 16) | (k.rgb[1] << 8) | k.rgb[2], k.id]));
  let offPalette = 0, offExample = null;
  for (let i = 0; i < n; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    let id = exact.get((r << 16) | (g << 8) | b);
    if (id === undefined) { // not exact (colour management): the nearest class colour
      let bd = Infinity;
      for (const k of classes) {
        const d = (r - k.rgb[0]) ** 2 + (g - k.rgb[1]) ** 2 + (b - k.rgb[2]) ** 2;
        if (d < bd) { bd = d; id = k.id; }
      }
      if (bd > 12) { offPalette++; offExample = offExample || `rgb(${r},${g},${b})`; }
    }
    labels[i] = id;
    counts[id]++;
  }
  return { labels, counts, offPalette, offExample };
}

/** RGBA pixels of the input → gray levels (Rec. 601 luma, as the server reads colour PNGs). */
export function grayFromRgba(rgba) {
  const n = rgba.length >> 2, gray = new Uint8Array(n);
  for (let i = 0; i < n; i++) gray[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
  return gray;
}

/** The overlay as RGBA (opaque): class colour over gray at `alpha`. */
export function overlayRgba(gray, labels, classes, alpha = OVERLAY_ALPHA) {
  const n = gray.length, out = new Uint8ClampedArray(4 * n);
  const a = Math.round(alpha * 256), na = 256 - a;
  for (let i = 0; i < n; i++) {
    const c = classes[labels[i]].rgb, g = gray[i] * na;
    out[4 * i] = (g + c[0] * a + 128) >> 8;
    out[4 * i + 1] = (g + c[1] * a + 128) >> 8;
    out[4 * i + 2] = (g + c[2] * a + 128) >> 8;
    out[4 * i + 3] = 255;
  }
  return out;
}

/** Pixels per class → [{ pixels, fraction }]. */
export const fractions = (counts) => {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((p) => ({ pixels: p, fraction: total ? p / total : 0 }));
};

/** The result in a few words: "41% sand, 33% bedrock" (the two largest classes other than
 * background), or "mostly background". */
export function summary(counts, classes) {
  const f = fractions(counts);
  const top = classes.filter((k) => k.id !== 0 && f[k.id].pixels > 0).sort((a, b) => f[b.id].fraction - f[a.id].fraction);
  return top.slice(0, 2).map((k) => `${Math.round(f[k.id].fraction * 100)}% ${k.name}`).join(', ') || 'mostly background';
}

// ───────────────────────────── the one JSON answer (POST /segment?format=json&maps=1)
/** base64 → bytes (the answer's "labels" and "uncertainty": one byte per pixel, row-major). */
export function b64ToBytes(s) {
  const bin = atob(s), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Class ids → { counts (pixels per class), offPalette (ids that are no class), offExample }. */
export function labelCounts(labels, classes) {
  const counts = new Array(classes.length).fill(0);
  let offPalette = 0, offExample = null;
  for (const id of labels) {
    if (id < classes.length) counts[id]++;
    else { offPalette++; offExample ??= `class id ${id}`; }
  }
  return { counts, offPalette, offExample };
}

/** The mask as RGBA in the class colours (opaque). */
export function maskRgba(labels, classes) {
  const out = new Uint8ClampedArray(4 * labels.length);
  for (let i = 0; i < labels.length; i++) {
    const c = classes[labels[i]]?.rgb ?? [255, 0, 255];
    out[4 * i] = c[0]; out[4 * i + 1] = c[1]; out[4 * i + 2] = c[2]; out[4 * i + 3] = 255;
  }
  return out;
}

/** The colour of uncertainty: no class's, so that it never reads as one. */
export const UNCERTAIN_RGB = [255, 40, 200];

/** The uncertainty overlay: the gray input, tinted towards UNCERTAIN_RGB by each pixel's
 * uncertainty u (0 certain: the gray pixel; 255 all classes equally likely: 85% tint). */
export function uncertaintyRgba(gray, unc) {
  const out = new Uint8ClampedArray(4 * gray.length);
  for (let i = 0; i < gray.length; i++) {
    const a = Math.round((unc[i] * 218) / 255), na = 256 - a, g = gray[i] * na; // weights out of 256, as overlayRgba
    out[4 * i] = (g + UNCERTAIN_RGB[0] * a + 128) >> 8;
    out[4 * i + 1] = (g + UNCERTAIN_RGB[1] * a + 128) >> 8;
    out[4 * i + 2] = (g + UNCERTAIN_RGB[2] * a + 128) >> 8;
    out[4 * i + 3] = 255;
  }
  return out;
}
