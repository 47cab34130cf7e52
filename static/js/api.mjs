/* Every request the dashboard makes, and the access token it sends. Answers come back through
 * the strict readers of schema.mjs (a SchemaError when the server broke the contract); HTTP and
 * network failures are thrown as ApiError with the server's {"error","code"} text. */
import * as read from './schema.mjs';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status; this.code = code; this.retryAfter = retryAfter;
  }
}

// ───────────────────────────── the token (this browser only)
const TOKEN_KEY = 'marsseg.token';
export const token = {
  get() { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; } },
  set(v) { localStorage.setItem(TOKEN_KEY, v); },
  clear() { try { localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ } },
};

// ───────────────────────────── the connection
/** Whether the server answered the last request: every answer (any status) says it is there,
 * every network failure that it is not. health.mjs polls so that this changes within ~2 s. */
const listeners = new Set();
export const connection = {
  online: null, // null until the first answer
  /** fn(online, wasOnline) on every change */
  on(fn) { listeners.add(fn); return () => listeners.delete(fn); },
  report(online) {
    if (online === connection.online) return;
    const was = connection.online;
    connection.online = online;
    for (const fn of listeners) fn(online, was);
  },
};

// ───────────────────────────── one request
/** The error of a non-2xx answer: message is the server's own text (errors.mjs turns it into
 * a sentence for the page), code its code. */
async function errorFrom(res) {
  let msg = '', code = '';
  try {
    const text = await res.text();
    try { const j = JSON.parse(text); msg = j.error || ''; code = j.code || ''; }
    catch { msg = text.trim().slice(0, 200); }
  } catch { /* body unreadable: keep the status line */ }
  if (!msg) msg = res.statusText || 'request failed';
  const ra = Number(res.headers.get('Retry-After')) || 0;
  return new ApiError(res.status, code || 'http' + res.status, msg, ra);
}

/** expect: 'json' (parsed), 'response' (the Response) or 'blob'. */
async function request(method, path, { json, body, type, expect = 'json', timeoutMs = 30000 } = {}) {
  const headers = { Accept: expect === 'json' ? 'application/json' : '*/*' };
  const t = token.get();
  if (t) headers.Authorization = 'Bearer ' + t;
  if (json !== undefined) { body = JSON.stringify(json); headers['Content-Type'] = 'application/json'; }
  else if (type) headers['Content-Type'] = type;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal: ctl.signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw Object.assign(new ApiError(0, 'timeout', `${method} ${path}: no answer after ${Math.round(timeoutMs / 1000)} s`), { timeoutS: Math.round(timeoutMs / 1000) });
    connection.report(false);
    throw new ApiError(0, 'network', `${method} ${path}: ${e.message || 'network error'}`);
  } finally { clearTimeout(timer); }
  connection.report(true);
  if (!res.ok) throw Object.assign(await errorFrom(res), { tokenSent: !!t });
  if (expect === 'response') return res;
  if (expect === 'blob') return res.blob();
  const text = await res.text();
  try { return JSON.parse(text); } catch {
    throw new ApiError(res.status, 'badjson', `${method} ${path}: the server sent something that is not JSON`);
  }
}

const job = (id) => `/jobs/${encodeURIComponent(id)}`;

// ───────────────────────────── the endpoints
export const api = {
  schema: async () => read.readSchema(await request('GET', '/schema')),
  jobs: async () => read.readJobList(await request('GET', '/jobs')),
  job: async (id) => read.readJob(await request('GET', job(id)), `GET ${job(id)}`, { detail: true }),
  curves: async (id, since, nClasses) =>
    read.readCurves(await request('GET', `${job(id)}/curves?since=${since}`), nClasses, `GET ${job(id)}/curves`),
  createJob: async (config) => read.readJob(await request('POST', '/jobs', { json: config }), 'POST /jobs', { detail: true }),
  cancelJob: (id) => request('DELETE', job(id)),
  resumeJob: (id) => request('POST', `${job(id)}/resume`),
  models: async () => read.readModelList(await request('GET', '/models')),
  activate: (id) => request('PUT', '/models/active', { json: { id } }),
  datasets: async () => read.readDatasetList(await request('GET', '/datasets')),
  /** Multipart field "file"; ?name= is a display name, the server assigns the id. */
  uploadDataset: async (file, name) => {
    const form = new FormData();
    form.append('file', file, file.name || 'dataset.npz');
    return read.readDataset(await request('POST', `/datasets?name=${encodeURIComponent(name)}`, { body: form, timeoutMs: 30 * 60000 }), 'POST /datasets');
  },
  /** GET /models/active: the serving model, or null (polled by health.mjs). */
  active: async () => read.readActiveModel(await request('GET', '/models/active', { timeoutMs: 5000 })),
  /** The one request of a segmentation: class ids, uncertainty map and scores in one JSON answer
   * (?format=json&maps=1); segment.mjs composes mask, overlays and counts from it. frame: the
   * image is a whole camera frame (&frame=1: segmented at the model's scale, answered at its own). */
  segment: async (png, { frame = false } = {}) =>
    read.readSegmentMaps(await request('POST', `/segment?format=json&maps=1${frame ? '&frame=1' : ''}`, { body: png, type: 'image/png', timeoutMs: 120000 })),
  createEvaluation: async (req) => read.readPass(await request('POST', '/evaluations', { json: req }), 'POST /evaluations'),
  evaluation: async (id) => read.readEvaluation(await request('GET', `/evaluations/${encodeURIComponent(id)}`), `GET /evaluations/${id}`),
  /** A report's PNG (the worst tiles), by the name report.json gives it. */
  evaluationFile: (id, name) => `/evaluations/${encodeURIComponent(id)}/files/${encodeURIComponent(name)}`,
};
