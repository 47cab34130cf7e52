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

// ───────────────────────────── one request
async function errorFrom(res) {
  let msg = '', code = '';
  try {
    const text = await res.text();
    try { const j = JSON.parse(text); msg = j.error || ''; code = j.code || ''; }
    catch { msg = text.trim().slice(0, 200); }
  } catch { /* body unreadable: keep the status line */ }
  if (!msg) msg = res.statusText || 'request failed';
  const ra = Number(res.headers.get('Retry-After')) || 0;
  let text = `${msg} (HTTP ${res.status}${code ? ', ' + code : ''})`;
  if (res.status === 401) text = `${msg} (HTTP 401). This server needs an access token: set it with the Token button at the top.`;
  else if (ra) text += ` — try again in ${ra} s`;
  return new ApiError(res.status, code || 'http' + res.status, text, ra);
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
    throw new ApiError(0, 'network', e.name === 'AbortError'
      ? `${method} ${path}: no answer from the server after ${Math.round(timeoutMs / 1000)} s`
      : `${method} ${path}: cannot reach the server (${e.message || 'network error'})`);
  } finally { clearTimeout(timer); }
  if (!res.ok) throw await errorFrom(res);
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
  ready: async () => read.readReady(await request('GET', '/readyz', { timeoutMs: 8000 })),
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
  /** The palette mask PNG (a Response: its X-Model header names the model). */
  segmentMask: (png) => request('POST', '/segment', { body: png, type: 'image/png', expect: 'response', timeoutMs: 60000 }),
  /** The mask over the input (an RGB PNG blob). */
  segmentOverlay: (png) => request('POST', '/segment?format=overlay', { body: png, type: 'image/png', expect: 'blob', timeoutMs: 60000 }),
  /** Per-class pixel counts and timing. */
  segmentInfo: async (png, nClasses) =>
    read.readSegmentInfo(await request('POST', '/segment?format=json', { body: png, type: 'image/png', timeoutMs: 60000 }), nClasses),
};
