// node --test: the job form's MPI part. GET /schema's optional "mpi" ({max_ranks}: the server
// runs MPI jobs, serve --mpi-hostfile), a job's optional "ranks", and the "MPI ranks" field's
// check (empty: a local job).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readSchema, readJob, SchemaError } from '../../static/js/schema.mjs';
import { checkRanks } from '../../static/js/formcheck.mjs';

const SCHEMA = {
  classes: [{ id: 0, name: 'background', color: '#000000' }],
  config: [{ name: 'epochs', type: 'integer', default: 20, min: 1, max: 10000, help: 'epochs', flag: '--epochs' }],
  limits: { max_body: 1, max_pixels: 1, max_json: 1, max_upload: 1, max_frame_pixels: 1, max_frame_body: 1 },
  auth: { token_required: false },
  activate: { default: 'if_better', choices: [{ value: 'if_better', label: 'only if better', help: 'h' }, { value: 'always', label: 'always', help: 'h' }, { value: false, label: 'never', help: 'h' }] },
};
const JOB = {
  id: 'j000001', state: 'running', dataset: 'sample', activate: 'if_better', created: 1, started: 2, finished: null, epoch: 1, epochs: 5,
  best_val_miou: null, best_epoch: 0, progress: null, eta_s: null, error: null, model: null,
};

test('GET /schema: mpi is null without a hostfile, {max_ranks} with one', () => {
  assert.equal(readSchema(structuredClone(SCHEMA)).mpi, null);
  assert.deepEqual(readSchema({ ...structuredClone(SCHEMA), mpi: { max_ranks: 4 } }).mpi, { max_ranks: 4 });
  for (const bad of [{}, { max_ranks: 0 }, { max_ranks: 2.5 }, { max_ranks: '4' }, 4]) {
    assert.throws(() => readSchema({ ...structuredClone(SCHEMA), mpi: bad }), (e) => e instanceof SchemaError && /mpi/.test(e.message));
  }
});

test('a job says its ranks when it is an MPI job', () => {
  assert.equal(readJob(structuredClone(JOB)).ranks, null);
  assert.equal(readJob({ ...structuredClone(JOB), ranks: 2 }).ranks, 2);
  assert.throws(() => readJob({ ...structuredClone(JOB), ranks: -1 }), /ranks/);
});

test('the MPI ranks field: empty trains here, else 1..max_ranks as digits', () => {
  const mpi = { max_ranks: 4 };
  assert.deepEqual(checkRanks('', mpi), { ok: true, value: null });
  assert.deepEqual(checkRanks('  ', mpi), { ok: true, value: null });
  assert.deepEqual(checkRanks('2', mpi), { ok: true, value: 2 });
  assert.deepEqual(checkRanks('4', mpi), { ok: true, value: 4 });
  for (const bad of ['0', '5', '1e1', '2.5', '-1', 'two']) {
    const r = checkRanks(bad, mpi);
    assert.equal(r.ok, false, bad);
    assert.match(r.message, /^MPI ranks: .*from 1 to 4/);
  }
});
