/* What went wrong, in plain words: one sentence per failure, each number once, and what to do
 * about it. The server's {"error","code"} text is written for logs and curl users ("… 9000000
 * pixels exceeds the limit of 1048576 (the limit is 1048576 pixels)"); the page shows these
 * sentences instead and keeps the server's own text for the console and a title attribute.
 *
 * Also the checks a file gets before it is uploaded to POST /segment (type, size, pixels from
 * the PNG header), against the limits of GET /schema, so that a file the server would refuse
 * is never sent. Pure (no DOM); unit-tested by tests/web/errors.test.mjs. */
import { fmtBytes } from './format.mjs';

const int = (n) => Math.round(n).toLocaleString('en-US');
const seconds = (s) => `${s} s`;

/** The first letter upper-cased (clauses below start lower-case so that they can follow a
 * "Switching to model x: " context), unless the clause starts with a file name. */
export const sentence = (s, name = '') => !s || (name && s.startsWith(name)) ? s : s[0].toUpperCase() + s.slice(1);

/** The largest square that fits a pixel budget, for "e.g. 1024×1024". */
const square = (pixels) => { const s = Math.floor(Math.sqrt(pixels)); return `${s}×${s}`; };

/** Describes e (an ApiError-like {status, code, message, retryAfter}) as a clause. ctx:
 *   name      the file concerned (segmentation), size its bytes
 *   tokenSet  whether the page sent a token (a 401 then means it was rejected)
 *   limits    GET /schema's limits (for 413/422 when the server's text lacks the number)
 *   timeoutS  the client's timeout (code 'timeout') */
export function describeError(e, ctx = {}) {
  const status = e?.status ?? -1, code = e?.code || '', raw = String(e?.message ?? e ?? '');
  const what = ctx.name ? ctx.name : 'the image';
  const retry = e?.retryAfter ? `try again in ${seconds(e.retryAfter)}` : 'try again in a moment';
  switch (code) {
    case 'network':
      return 'cannot reach the server: check that marsseg is still running; the page reconnects by itself.';
    case 'timeout':
      return `the server did not answer within ${seconds(ctx.timeoutS ?? 30)}; it may be busy training: ${retry}.`;
    case 'badjson':
      return 'the server sent an answer this page cannot read; reload the page, and report it if it happens again.';
    case 'too_many_pixels': {
      // core/png.c: "png: WxH = N pixels exceeds the limit of L"
      const m = /(\d+)x(\d+)\s*=\s*\d+ pixels exceeds the limit of (\d+)/.exec(raw);
      const limit = m ? Number(m[3]) : ctx.limits?.max_pixels;
      return tooManyPixels(what, m ? Number(m[1]) : null, m ? Number(m[2]) : null, limit);
    }
    case 'body_too_large':
      return tooLarge(what, ctx.size ?? null, ctx.limits?.max_body ?? limitFrom(raw));
    case 'not_png': case 'unsupported_media_type':
      return notPng(what);
    case 'bad_png':
      return `${what} could not be decoded as a PNG (the file may be damaged); try another file.`;
    case 'no_image':
      return 'the request carried no image; choose a PNG file.';
    case 'no_model': case 'not_ready':
      return 'no model is serving yet: pick one under Models, or train one.';
    case 'overloaded':
      return `the server is busy with other images: ${retry}.`;
    case 'nomem':
      return `the server is short of memory right now: ${retry}.`;
    case 'queue_full': case 'too_many_jobs':
      return `the training queue is full: ${retry}, or cancel a queued run.`;
    case 'shutting_down':
      return 'the server is shutting down; it answers again once it is restarted.';
    case 'unauthorized':
      return unauthorized(ctx.tokenSet);
    default:
  }
  if (status === 401) return unauthorized(ctx.tokenSet);
  if (status === 413) return tooLarge(what, ctx.size ?? null, ctx.limits?.max_body ?? limitFrom(raw));
  if (status === 415) return notPng(what);
  if (status === 404) return `the server no longer knows it (${raw || 'not found'}); the lists refresh by themselves.`;
  if (status === 503) return `the server cannot take this right now: ${retry}.`;
  if (status >= 500) return `the server failed (${raw || 'internal error'}); the server's log says more.`;
  // 400/409 and the rest: the server's text is already one plain line ("job j1 is succeeded;
  // only interrupted or cancelled jobs can be resumed"); keep it, once, without codes.
  return raw ? raw.replace(/\s*\(HTTP \d+[^)]*\)\s*$/, '').replace(/\.?$/, '.') : 'the request failed.';
}

const limitFrom = (raw) => { const m = /limit of (\d+)/.exec(raw); return m ? Number(m[1]) : null; };

function unauthorized(tokenSet) {
  return tokenSet
    ? 'the server rejected the access token: check it with the Token button at the top.'
    : 'this server needs an access token for changes: set it with the Token button at the top.';
}

function tooLarge(what, size, limit) {
  const lim = limit ? `; the server takes images up to ${fmtBytes(limit)}` : ' for the server';
  return size !== null ? `${what} is ${fmtBytes(size)}${lim}: use a smaller PNG.` : `${what} is too large${lim}: use a smaller PNG.`;
}

function tooManyPixels(what, w, h, limit) {
  const dims = w && h ? ` (${w}×${h})` : '';
  const lim = limit ? `at most ${int(limit)} pixels, e.g. ${square(limit)}` : 'fewer pixels';
  return `${what} has too many pixels${dims}: the server segments ${lim}; scale it down or crop it.`;
}

function notPng(what) {
  return `${what} is not a PNG image: the server segments PNG files only.`;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The PNG header of the first 24+ bytes: { png, width, height } (width/height 0 when the
 * IHDR chunk is not where the PNG standard puts it). */
export function pngHeader(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const png = b.length >= 8 && PNG_SIGNATURE.every((v, i) => b[i] === v);
  if (!png || b.length < 24 || String.fromCharCode(b[12], b[13], b[14], b[15]) !== 'IHDR') return { png, width: 0, height: 0 };
  const be = (o) => ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
  return { png, width: be(16), height: be(20) };
}

/** Why a file must not be uploaded for segmentation, as a sentence, or null when it may go:
 * file = { name, size, head: its first 24 bytes }; limits from GET /schema. */
export function uploadProblem(file, limits) {
  const what = file.name || 'the image';
  const h = pngHeader(file.head);
  if (!h.png) return sentence(notPng(what), file.name);
  if (limits?.max_body && file.size > limits.max_body) return sentence(tooLarge(what, file.size, limits.max_body), file.name);
  if (limits?.max_pixels && h.width * h.height > limits.max_pixels) return sentence(tooManyPixels(what, h.width, h.height, limits.max_pixels), file.name);
  return null;
}
