// node --test: static/js/formcheck.mjs — the job form's checks from /schema's config table and
// the server's refusals mapped to fields (run by build/tests/test_web_units in `make test`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkField, configErrorText, fieldsOfError } from '../../static/js/formcheck.mjs';

const EPOCHS = { type: 'integer', min: 1, max: 10000 };
const SEED = { type: 'integer', min: 0, max: 9007199254740991 };
const LR = { type: 'number', min: 1e-7, max: 1 };
const LOSS = { type: 'string', choices: ['wce', 'dice', 'focal', 'wce+dice'] };

test('integers: digits only — "1e3" is refused, not read as 1000', () => {
  assert.deepEqual(checkField('20', EPOCHS, 'Epochs'), { ok: true, value: 20 });
  assert.deepEqual(checkField(' 7 ', EPOCHS, 'Epochs'), { ok: true, value: 7 });
  for (const bad of ['1e3', '1.5', '2.0', '-3', '+3', '0x10', '', ' ', '1 000']) {
    const r = checkField(bad, EPOCHS, 'Epochs');
    assert.equal(r.ok, false, bad);
    assert.match(r.message, /^Epochs: .*\(from 1 to 10,000\)\.$/);
  }
  assert.match(checkField('1e3', EPOCHS, 'Epochs').message, /"1e3" is not a whole number: use digits only/);
  assert.match(checkField('10001', EPOCHS, 'Epochs').message, /10001 is out of range; use a whole number from 1 to 10,000/);
  assert.match(checkField('0', EPOCHS, 'Epochs').message, /out of range/);
  assert.deepEqual(checkField('9007199254740991', SEED, 'Seed'), { ok: true, value: 9007199254740991 });
  assert.equal(checkField('9007199254740992', SEED, 'Seed').ok, false);
});

test('real numbers: decimals and exponents within the range', () => {
  assert.deepEqual(checkField('5e-4', LR, 'Learning rate'), { ok: true, value: 5e-4 });
  assert.deepEqual(checkField('.01', LR, 'Learning rate'), { ok: true, value: 0.01 });
  assert.match(checkField('2', LR, 'Learning rate').message, /out of range; use a number from 1e-7 to 1/);
  assert.match(checkField('abc', LR, 'Learning rate').message, /"abc" is not a number/);
  assert.equal(checkField('Infinity', LR, 'Learning rate').ok, false);
});

test('choices', () => {
  assert.deepEqual(checkField('dice', LOSS, 'Loss'), { ok: true, value: 'dice' });
  assert.match(checkField('mse', LOSS, 'Loss').message, /choose one of wce, dice, focal, wce\+dice/);
});

test('fieldsOfError: the fields a server refusal names', () => {
  assert.deepEqual(fieldsOfError('epochs: 1000000 is outside [1, 10000]'), ['epochs']);
  assert.deepEqual(fieldsOfError('model.depth: 9 is outside [1, 6]'), ['model.depth']);
  assert.deepEqual(fieldsOfError('model: base * 2^depth must be <= 4096 (got 8192)'), ['model.depth', 'model.base']);
  assert.deepEqual(fieldsOfError('min_lr: 0.1 is above lr 0.01'), ['min_lr', 'lr']);
  assert.deepEqual(fieldsOfError('class_weights[2]: 2000 is outside [0, 1000]'), ['class_weights']);
  assert.deepEqual(fieldsOfError('config: not valid JSON'), ['config']);
  assert.deepEqual(fieldsOfError('the service is shutting down'), []);
});

test('configErrorText: one sentence with the form\'s labels', () => {
  const labels = { 'model.depth': 'U-Net depth', 'model.base': 'Base channels', epochs: 'Epochs' };
  const labelOf = (n) => labels[n] ?? null;
  assert.equal(configErrorText('model: base * 2^depth must be <= 4096 (got 8192)', labelOf),
    "Base channels × 2^depth is 8,192, above the server's limit of 4,096: lower the U-Net depth or the base channels.");
  assert.equal(configErrorText('epochs: 1000000 is outside [1, 10000]', labelOf), 'Epochs: 1000000 is out of range; the server takes 1 to 10000.');
  assert.equal(configErrorText('epochs: expected an integer', labelOf), 'Epochs: the server takes whole numbers only.');
  assert.equal(configErrorText("dataset: no dataset with id 'd9'", labelOf), 'The dataset d9 is no longer on the server: choose another one.');
  assert.equal(configErrorText('min_lr: 0.1 is above lr 0.01', labelOf), 'min_lr: 0.1 is above lr 0.01.');
});
