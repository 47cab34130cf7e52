// node --test: the strict readers of static/js/schema.mjs. The fixtures are what server/ sends
// (job_view.c, models.c, datasets.c, GET /schema); each reader must take them
// as they are and refuse a missing field, a wrong type and the old aliases (status, job_id,
// created_at, miou) that the former "tolerant readers" accepted.
import test from 'node:test';
import assert from 'node:assert/strict';
import * as read from '../../static/js/schema.mjs';

const clone = (v) => structuredClone(v);
const without = (o, key) => { const c = clone(o); delete c[key]; return c; };
const rejects = (fn, pattern) => assert.throws(fn, (e) => e instanceof read.SchemaError && pattern.test(e.message));

const CLASSES = ['background', 'soil', 'bedrock', 'sand', 'big rock'];
const SCHEMA = {
  classes: [['#282828'], ['#d6a054'], ['#a0463c'], ['#fadc78'], ['#4682e6']].map(([color], id) => ({ id, name: CLASSES[id], color })),
  config: [
    { name: 'data', type: 'string', default: '', help: 'dataset npz', flag: '--data' },
    { name: 'hflip', type: 'boolean', default: true, help: 'augmentation: random horizontal flip' },
    { name: 'model.depth', type: 'integer', default: 4, min: 1, max: 6, help: 'U-Net levels', flag: '--depth' },
    { name: 'loss', type: 'string', default: 'wce', choices: ['wce', 'dice', 'focal', 'wce+dice'], help: 'training loss', flag: '--loss' },
    { name: 'class_weights', type: 'weights', default: [1, 1, 1, 1, 1], min: 0, max: 1000, help: 'per-class weights' },
    { name: 'lr', type: 'number', default: 0.001, min: 1e-7, max: 1, help: 'learning rate', flag: '--lr' },
  ],
  limits: { max_body: 8388608, max_pixels: 16777216, max_json: 65536, max_upload: 2147483648, max_frame_pixels: 16777216, max_frame_body: 33554432 },
  auth: { token_required: false },
  activate: { default: 'if_better', choices: [{ value: 'if_better', label: 'only if better', help: 'h' }, { value: 'always', label: 'always', help: 'h' }, { value: false, label: 'never', help: 'h' }] },
};
const PROGRESS = { epoch: 2, epochs: 5, batch: 7, batches: 20, loss: 0.81, eta_s: 42.5, images_per_s: 120.3 };
const JOB = {
  id: 'j000003', state: 'running', dataset: 'sample', activate: 'if_better', created: 1718000000.123, started: 1718000001.5,
  finished: null, epoch: 1, epochs: 5, best_val_miou: 0.41, best_epoch: 1, progress: PROGRESS, eta_s: 42.5, error: null, model: null,
};
const CONFIG = { val_frac: 0.1, hflip: true, model: { depth: 4, base: 16, classes: 5, dropout: 0.1 }, loss: 'wce', lr: 0.001, batch: 32, epochs: 5, seed: 42 };
const JOB_DETAIL = { ...JOB, config: CONFIG, log: ['epoch 1: loss 0.9'] };
const POINT = {
  epoch: 1, train_loss: 0.9, val_loss: 1.1, train_miou: 0.3, val_miou: 0.41, pixel_acc: 0.8,
  val_iou: [0.9, 0.5, null, 0.3, 0.1], lr: 0.001, seconds: 12.5, images_per_s: 110,
};
const CURVES = { id: 'j000003', state: 'running', epoch: 1, epochs: 5, since: 0, best_val_miou: 0.41, best_epoch: 1, points: [POINT], progress: PROGRESS };
const MODEL = {
  id: 'default', source: 'bundled', active: true, params: 1234567, registered: 1718000000,
  config: { depth: 4, base: 16, classes: 5, dropout: 0.1 }, metrics: { val_miou: 0.52, pixel_acc: 0.9, epoch: 20 }, meta: { source: 'train' },
};
const DATASET = { id: 'sample', name: 'sample', samples: 512, height: 64, width: 128, bytes: 8400000, created: 1718000000, builtin: true };

test('GET /schema: classes as [r,g,b] in id order, config rows, limits, auth', () => {
  const s = read.readSchema(clone(SCHEMA));
  assert.deepEqual(s.classes[1], { id: 1, name: 'soil', rgb: [214, 160, 84] });
  assert.equal(s.config.length, 6);
  const depth = s.config.find((c) => c.name === 'model.depth');
  assert.deepEqual(depth, { name: 'model.depth', type: 'integer', default: 4, min: 1, max: 6, choices: null, help: 'U-Net levels', flag: '--depth' });
  assert.deepEqual(s.config.find((c) => c.name === 'loss').choices, ['wce', 'dice', 'focal', 'wce+dice']);
  assert.equal(s.config.find((c) => c.name === 'hflip').min, null);
  assert.equal(s.limits.max_upload, 2147483648);
  assert.equal(s.limits.max_frame_pixels, 16777216);
  assert.equal(s.limits.max_frame_body, 33554432);
  assert.equal(s.auth.token_required, false);
});

test('GET /schema: refuses what the page cannot use', () => {
  const bad = (mutate, pattern) => { const s = clone(SCHEMA); mutate(s); rejects(() => read.readSchema(s), pattern); };
  bad((s) => { s.classes[2].color = 'brick'; }, /classes\[2\]\.color: expected a colour/);
  bad((s) => { s.classes[2].id = 3; }, /classes\[2\]\.id: expected 2, got 3/);
  bad((s) => { s.classes = []; }, /classes: no classes/);
  bad((s) => { delete s.classes[0].name; }, /classes\[0\]\.name: missing/);
  bad((s) => { s.config[2].type = 'int'; }, /config\[2\]\.type: expected one of/);
  bad((s) => { s.config[2].default = '4'; }, /config\[2\]\.default: expected an integer/);
  bad((s) => { s.config[1].default = 1; }, /config\[1\]\.default: expected true or false/);
  bad((s) => { s.config[2].min = null; }, /config\[2\]\.min: expected a number, got null/);
  bad((s) => { s.config[3].choices = 'wce|dice'; }, /config\[3\]\.choices: expected an array/);
  bad((s) => { delete s.limits.max_json; }, /limits\.max_json: missing/);
  bad((s) => { delete s.limits.max_frame_body; }, /limits\.max_frame_body: missing/);
  bad((s) => { s.auth.token_required = 'no'; }, /auth\.token_required: expected true or false/);
});

test('POST /segment?format=json&maps=1: the maps, and with frame=1 the size the frame was segmented at', () => {
  const tile = { width: 128, height: 64, pixels: 8192, model: 'default', confidence: 0.8, entropy: 0.2, classes: [], labels: 'AA==', uncertainty: 'AA==',
    timing: { decode_ms: 0.1, inference_ms: 3.2, total_ms: 4 } };
  assert.equal(read.readSegmentMaps(clone(tile)).frame, null);
  const r = read.readSegmentMaps({ ...clone(tile), width: 3000, height: 3000, frame: { width: 128, height: 128 } });
  assert.deepEqual([r.width, r.height, r.frame], [3000, 3000, { width: 128, height: 128 }]);
  rejects(() => read.readSegmentMaps({ ...clone(tile), frame: { width: 128 } }), /frame\.height: missing/);
  rejects(() => read.readSegmentMaps(without(tile, 'labels')), /labels: missing/);
});

test('GET /jobs: the summary view', () => {
  const r = read.readJobList({ jobs: [clone(JOB)], queued: 0, running: 'j000003' });
  const j = r.jobs[0];
  assert.equal(j.id, 'j000003');
  assert.equal(j.state, 'running');
  assert.equal(j.created.getTime(), 1718000000123);
  assert.equal(j.finished, null);
  assert.deepEqual(j.progress, PROGRESS);
  assert.equal(j.best, 0.41);
  assert.equal(j.error, '');
  assert.equal(j.config, null);
  assert.equal(r.running, 'j000003');
});

test('jobs: the old aliases and wrong types are refused', () => {
  const { state, ...noState } = JOB;
  rejects(() => read.readJob({ ...noState, status: state }), /^job\.state: missing$/);
  const { id, ...noId } = JOB;
  rejects(() => read.readJob({ ...noId, job_id: id }), /^job\.id: missing$/);
  const { created, ...noCreated } = JOB;
  rejects(() => read.readJob({ ...noCreated, created_at: created }), /^job\.created: missing$/);
  rejects(() => read.readJob({ ...JOB, state: 'done' }), /job\.state: expected one of queued, running/);
  rejects(() => read.readJob({ ...JOB, created: '2024-06-10T06:13:20Z' }), /job\.created: expected a number, got string/);
  rejects(() => read.readJob({ ...JOB, epoch: 1.5 }), /job\.epoch: expected an integer >= 0/);
  rejects(() => read.readJob({ ...JOB, progress: without(PROGRESS, 'loss') }), /job\.progress\.loss: missing/);
  rejects(() => read.readJobList([JOB]), /GET \/jobs: expected an object, got an array/);
  rejects(() => read.readJobList({ jobs: [JOB, without(JOB, 'eta_s')], queued: 0, running: null }), /GET \/jobs\.jobs\[1\]\.eta_s: missing/);
});

test('GET /jobs/{id}: the detail view has the config and the log', () => {
  const j = read.readJob(clone(JOB_DETAIL), 'GET /jobs/j000003', { detail: true });
  assert.deepEqual(j.config.model, { depth: 4, base: 16, dropout: 0.1 });
  assert.equal(j.config.hflip, true);
  assert.deepEqual(j.log, ['epoch 1: loss 0.9']);
  rejects(() => read.readJob(clone(JOB), 'GET /jobs/j000003', { detail: true }), /^GET \/jobs\/j000003\.config: missing$/);
  rejects(() => read.readJob({ ...JOB_DETAIL, config: { ...CONFIG, hflip: 1 } }, 'j', { detail: true }), /j\.config\.hflip: expected true or false/);
});

test('curves: points with one IoU per class', () => {
  const c = read.readCurves(clone(CURVES), 5);
  assert.equal(c.points[0].val_iou[2], null);
  assert.equal(c.points[0].val_miou, 0.41);
  rejects(() => read.readCurves(clone(CURVES), 4), /curves\.points\[0\]\.val_iou: expected 4 entries, got 5/);
  const { val_miou, ...noMiou } = POINT;
  rejects(() => read.readCurves({ ...CURVES, points: [{ ...noMiou, miou: val_miou }] }, 5), /points\[0\]\.val_miou: missing/);
  rejects(() => read.readCurves({ ...CURVES, points: [{ ...POINT, val_iou: { soil: 0.5 } }] }, 5), /val_iou: expected an array/);
  rejects(() => read.readCurves(without(CURVES, 'progress'), 5), /curves\.progress: missing/);
  assert.equal(read.readCurves({ ...CURVES, progress: null }, 5).progress, null);
});

test('GET /models: metrics may lack a value; the job is there only for trained models', () => {
  const r = read.readModelList({ models: [clone(MODEL), { ...MODEL, id: 'j000003', job: 'j000003', active: false, metrics: {} }], active: 'default' });
  assert.equal(r.models[0].miou, 0.52);
  assert.equal(r.models[0].job, null);
  assert.equal(r.models[1].miou, null);
  assert.equal(r.models[1].job, 'j000003');
  assert.equal(r.active, 'default');
  rejects(() => read.readModel({ ...MODEL, metrics: { miou: 0.5, val_miou: 'high' } }), /model\.metrics\.val_miou: expected a number/);
  rejects(() => read.readModel(without(MODEL, 'registered')), /model\.registered: missing/);
  rejects(() => read.readModelList({ models: [] }), /GET \/models\.active: missing/);
});

test('datasets; GET /models/active: the serving model or null', () => {
  const d = read.readDatasetList({ datasets: [clone(DATASET)] }).datasets[0];
  assert.equal(d.samples, 512);
  assert.equal(d.builtin, true);
  rejects(() => read.readDataset({ ...without(DATASET, 'samples'), n: 512 }), /dataset\.samples: missing/);
  rejects(() => read.readDataset({ ...DATASET, bytes: '8 MB' }), /dataset\.bytes: expected an integer >= 0, got string/);
  assert.equal(read.readActiveModel(clone(MODEL)).miou, 0.52);
  assert.equal(read.readActiveModel({ id: null }), null);
  rejects(() => read.readActiveModel({ id: "default" }), /GET \/models\/active\.metrics: missing/);
  rejects(() => read.readActiveModel({}), /GET \/models\/active\.id: missing/);
});

test('SchemaError names where', () => {
  try { read.readDataset({ id: 'x' }, 'GET /datasets/x'); assert.fail('no error'); } catch (e) {
    assert.equal(e.name, 'SchemaError');
    assert.equal(e.at, 'GET /datasets/x.name');
    assert.equal(e.message, 'GET /datasets/x.name: missing');
  }
});
