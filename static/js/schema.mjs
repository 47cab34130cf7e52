/* Strict readers of the server's JSON: each takes exactly the fields server/ sends and throws a
 * SchemaError naming the first field that is missing or of the wrong type, so that a broken
 * contract shows up at once (as a visible error and on the console) instead of as a blank.
 * Shapes: server/job_view.c (jobs, curves), models.c (incl. /models/active), datasets.c and
 * GET /schema (classes, training-config fields, limits, auth).
 * Pure (no DOM); unit-tested by tests/web/schema.test.mjs. */
import { parseHexColor } from './format.mjs';

export class SchemaError extends Error {
  constructor(at, message) {
    super(`${at}: ${message}`);
    this.name = 'SchemaError';
    this.at = at;
  }
}

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'];
/** States in which a job still changes (polled fast). */
export const ACTIVE_STATES = new Set(['queued', 'running']);

// ───────────────────────────── primitives: (value, where) → value, or throw
const kind = (v) => v === null || v === undefined ? String(v) : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
const expected = (at, what, v) => { throw new SchemaError(at, `expected ${what}, got ${kind(v)}`); };

const str = (v, at) => typeof v === 'string' ? v : expected(at, 'a string', v);
const bool = (v, at) => typeof v === 'boolean' ? v : expected(at, 'true or false', v);
const number = (v, at) => typeof v === 'number' && Number.isFinite(v) ? v : expected(at, 'a number', v);
const int = (v, at) => Number.isInteger(v) ? v : expected(at, 'an integer', v);
const count = (v, at) => Number.isInteger(v) && v >= 0 ? v : expected(at, 'an integer >= 0', v);
/** Unix seconds (the server's timestamps) as a Date. */
const time = (v, at) => new Date(number(v, at) * 1000);
const color = (v, at) => parseHexColor(str(v, at)) ?? expected(at, 'a colour "#rrggbb"', v);
const nullable = (read) => (v, at) => v === null ? null : read(v, at);
const oneOf = (values) => (v, at) => values.includes(v) ? v : expected(at, `one of ${values.join(', ')}`, v);
const arrayOf = (read, length) => (v, at) => {
  if (!Array.isArray(v)) return expected(at, 'an array', v);
  if (length !== undefined && v.length !== length) throw new SchemaError(at, `expected ${length} entries, got ${v.length}`);
  return v.map((x, i) => read(x, `${at}[${i}]`));
};

/** An object's reader: field(key, read) reads a required field, maybe(key, read) one that may be
 * absent (null then). */
function fields(v, at) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) expected(at, 'an object', v);
  const field = (key, read) => {
    if (!(key in v)) throw new SchemaError(`${at}.${key}`, 'missing');
    return read(v[key], `${at}.${key}`);
  };
  const maybe = (key, read) => key in v ? read(v[key], `${at}.${key}`) : null;
  return { field, maybe };
}
const object = (v, at) => { fields(v, at); return v; };

// ───────────────────────────── GET /schema
function readClass(v, at) {
  const { field } = fields(v, at);
  return { id: field('id', count), name: field('name', str), rgb: field('color', color) };
}

const CONFIG_TYPES = ['number', 'integer', 'boolean', 'string', 'weights'];
const DEFAULT_READERS = {
  number, integer: int, boolean: bool, string: str, weights: arrayOf(number),
};
function readConfigField(v, at) {
  const { field, maybe } = fields(v, at);
  const type = field('type', oneOf(CONFIG_TYPES));
  return {
    name: field('name', str), type,
    default: field('default', DEFAULT_READERS[type]),
    min: maybe('min', number), max: maybe('max', number),
    choices: maybe('choices', arrayOf(str)),
    help: field('help', str), flag: maybe('flag', str),
  };
}

/** GET /schema → { classes: [{id, name, rgb}], config: [field], limits, auth, mpi }. The class
 * ids must be 0..n-1 in order: the mask PNG's pixel values index this list. mpi is
 * { max_ranks } when the server runs MPI jobs (serve --mpi-hostfile), null otherwise. */
export function readSchema(v, at = 'GET /schema') {
  const { field, maybe } = fields(v, at);
  const classes = field('classes', arrayOf(readClass));
  if (!classes.length) throw new SchemaError(`${at}.classes`, 'no classes');
  classes.forEach((c, i) => { if (c.id !== i) throw new SchemaError(`${at}.classes[${i}].id`, `expected ${i}, got ${c.id}`); });
  const limits = field('limits', (l, a) => {
    const r = fields(l, a);
    return { max_body: r.field('max_body', count), max_pixels: r.field('max_pixels', count),
      max_json: r.field('max_json', count), max_upload: r.field('max_upload', count),
      max_frame_pixels: r.field('max_frame_pixels', count), max_frame_body: r.field('max_frame_body', count) };
  });
  const auth = field('auth', (o, a) => ({ token_required: fields(o, a).field('token_required', bool) }));
  const mpi = maybe('mpi', (o, a) => {
    const n = fields(o, a).field('max_ranks', count);
    return n >= 1 ? { max_ranks: n } : expected(`${a}.max_ranks`, 'an integer >= 1', n);
  });
  const activate = field('activate', (o, a) => {
    const r = fields(o, a);
    const choices = r.field('choices', arrayOf((c, at) => {
      const f = fields(c, at);
      return { value: f.field('value', activateValue), label: f.field('label', str), help: f.field('help', str) };
    }));
    return { default: r.field('default', activateValue), choices };
  });
  return { classes, config: field('config', arrayOf(readConfigField)), limits, auth, mpi, activate };
}

/** A job's "activate": "if_better", "always" or false (GET /schema lists them with labels). */
const activateValue = (v, at) => v === false || typeof v === 'string' ? v : expected(at, 'a string or false', v);

// ───────────────────────────── jobs
/** Live batch progress of a running job (`epoch` is the one training, 1-based). */
function readProgress(v, at = 'progress') {
  const { field } = fields(v, at);
  return {
    epoch: field('epoch', count), epochs: field('epochs', count), batch: field('batch', count), batches: field('batches', count),
    loss: field('loss', nullable(number)), eta_s: field('eta_s', nullable(number)), images_per_s: field('images_per_s', nullable(number)),
  };
}

/** The part of a job's training config that the run view shows. */
function readRunConfig(v, at) {
  const { field } = fields(v, at);
  const model = field('model', (m, a) => {
    const r = fields(m, a);
    return { depth: r.field('depth', count), base: r.field('base', count), dropout: r.field('dropout', number) };
  });
  return {
    model, loss: field('loss', str), epochs: field('epochs', count), lr: field('lr', number),
    batch: field('batch', count), seed: field('seed', number), hflip: field('hflip', bool),
  };
}

/** A job as GET /jobs lists it; with detail (GET /jobs/{id}, POST /jobs) also its config and log.
 * `epoch` = epochs finished. */
export function readJob(v, at = 'job', { detail = false } = {}) {
  const { field, maybe } = fields(v, at);
  return {
    id: field('id', str),
    state: field('state', oneOf(JOB_STATES)),
    dataset: field('dataset', str),
    activate: field('activate', activateValue),
    activation: maybe('activation', nullable(object)), // what the rule decided once it succeeded
    created: field('created', time),
    started: field('started', nullable(time)),
    finished: field('finished', nullable(time)),
    epoch: field('epoch', count),
    epochs: field('epochs', count),
    best: field('best_val_miou', nullable(number)),
    bestEpoch: field('best_epoch', count),
    progress: field('progress', nullable(readProgress)),
    eta: field('eta_s', nullable(number)),
    error: field('error', nullable(str)) ?? '',
    model: field('model', nullable(str)),
    ranks: maybe('ranks', count), // an MPI job's processes; null for a local one
    config: detail ? field('config', readRunConfig) : null,
    log: detail ? field('log', arrayOf(str)) : null,
  };
}

/** GET /jobs → { jobs (newest first), queued, running }. */
export function readJobList(v, at = 'GET /jobs') {
  const { field } = fields(v, at);
  return {
    jobs: field('jobs', arrayOf((j, a) => readJob(j, a))),
    queued: field('queued', count),
    running: field('running', nullable(str)),
  };
}

/** One finished epoch; val_iou has one entry per class. */
function readPoint(v, at, nClasses) {
  const { field } = fields(v, at);
  const n = nullable(number);
  return {
    epoch: field('epoch', count),
    train_loss: field('train_loss', n), val_loss: field('val_loss', n),
    train_miou: field('train_miou', n), val_miou: field('val_miou', n),
    pixel_acc: field('pixel_acc', n),
    val_iou: field('val_iou', arrayOf(n, nClasses)),
    lr: field('lr', n), seconds: field('seconds', n), images_per_s: field('images_per_s', n),
  };
}

/** GET /jobs/{id}/curves?since=N → the epochs after N, the state and the live progress. */
export function readCurves(v, nClasses, at = 'curves') {
  const { field } = fields(v, at);
  return {
    id: field('id', str),
    state: field('state', oneOf(JOB_STATES)),
    epoch: field('epoch', count), epochs: field('epochs', count), since: field('since', count),
    best: field('best_val_miou', nullable(number)), bestEpoch: field('best_epoch', count),
    points: field('points', arrayOf((p, a) => readPoint(p, a, nClasses))),
    progress: field('progress', nullable(readProgress)),
  };
}

// ───────────────────────────── models, datasets
/** A model of GET /models; `job` is absent for models that no job trained. */
export function readModel(v, at = 'model') {
  const { field, maybe } = fields(v, at);
  const metrics = field('metrics', (m, a) => {
    const r = fields(m, a);
    return { val_miou: r.maybe('val_miou', nullable(number)), pixel_acc: r.maybe('pixel_acc', nullable(number)) };
  });
  const config = field('config', (c, a) => {
    const r = fields(c, a);
    return { depth: r.field('depth', count), base: r.field('base', count), classes: r.field('classes', count), dropout: r.field('dropout', number) };
  });
  field('meta', object);
  return {
    id: field('id', str), source: field('source', str), job: maybe('job', str), active: field('active', bool),
    params: field('params', count), registered: field('registered', time), config, miou: metrics.val_miou,
  };
}

/** GET /models → { models, active (id or null) }. */
export function readModelList(v, at = 'GET /models') {
  const { field } = fields(v, at);
  return { models: field('models', arrayOf((m, a) => readModel(m, a))), active: field('active', nullable(str)) };
}

export function readDataset(v, at = 'dataset') {
  const { field } = fields(v, at);
  return {
    id: field('id', str), name: field('name', str), samples: field('samples', count),
    height: field('height', count), width: field('width', count), bytes: field('bytes', count),
    created: field('created', time), builtin: field('builtin', bool),
  };
}

export function readDatasetList(v, at = 'GET /datasets') {
  return { datasets: fields(v, at).field('datasets', arrayOf((d, a) => readDataset(d, a))) };
}

/** GET /models/active: the serving model (as GET /models lists it), or null ({"id": null}). */
export function readActiveModel(v, at = 'GET /models/active') {
  const { field } = fields(v, at);
  return field('id', nullable(str)) === null ? null : readModel(v, at);
}

// ───────────────────────────── segmentation, passes
/** POST /segment?format=json&maps=1: the scores and the maps (base64, one byte per pixel). */
export function readSegmentMaps(v, at = 'POST /segment') {
  const { field, maybe } = fields(v, at);
  const timing = field('timing', (t, a) => ({ inference_ms: fields(t, a).field('inference_ms', number) }));
  // ?frame=1: the size the whole frame was segmented at (the maps are at the image's size)
  const frame = maybe('frame', (f, a) => { const r = fields(f, a); return { width: r.field('width', count), height: r.field('height', count) }; });
  return {
    width: field('width', count), height: field('height', count), model: field('model', str),
    confidence: field('confidence', number), entropy: field('entropy', number),
    labels: field('labels', str), uncertainty: field('uncertainty', str), timing, frame: frame ?? null,
  };
}

/** A prediction or an evaluation (a pass of a model over a dataset). */
export function readPass(v, at = 'pass') {
  const { field } = fields(v, at);
  return {
    id: field('id', str), kind: field('kind', str), state: field('state', oneOf(JOB_STATES)), model: field('model', nullable(str)),
    dataset: field('dataset', nullable(str)), progress: field('progress', nullable(object)), error: field('error', nullable(str)) ?? '',
    request: field('request', object), result: field('result', nullable(object)),
  };
}

const matrix = (read) => arrayOf(arrayOf(read));
function readReport(v, at) {
  const { field } = fields(v, at);
  const n = nullable(number);
  return {
    tiles: field('tiles', count), miou: field('miou', n), pixelAcc: field('pixel_acc', n),
    confusion: field('confusion', matrix(count)), normalized: field('confusion_normalized', matrix(n)),
    iou: field('iou', arrayOf(n)), precision: field('precision', arrayOf(n)), recall: field('recall', arrayOf(n)),
    worst: field('worst', arrayOf((w, a) => {
      const r = fields(w, a);
      return { index: r.field('index', count), miou: r.field('miou', n), image: r.field('image', str), truth: r.field('truth', str),
        pred: r.field('pred', str), uncertainty: r.field('uncertainty', str) };
    })),
  };
}

/** GET /evaluations/{id}: the pass and, once it succeeded, its report. */
export function readEvaluation(v, at = 'evaluation') {
  return { ...readPass(v, at), report: fields(v, at).field('report', nullable((r, a) => readReport(r, a))) };
}
