// node --test: the dashboard's one-click samples (static/samples/) are the bundled examples
// byte for byte (examples/tile1.png, tile2.png: AI4Mars, see the README's Data section), and
// index.html offers exactly these (run by build/tests/test_web_units in `make test`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';

const root = new URL('../../', import.meta.url);

test('static/samples/* equal examples/*', () => {
  const files = readdirSync(new URL('static/samples/', root)).sort();
  assert.deepEqual(files, ['tile1.png', 'tile2.png']);
  for (const f of files) {
    assert.ok(readFileSync(new URL(`static/samples/${f}`, root)).equals(readFileSync(new URL(`examples/${f}`, root))), `${f} differs from examples/${f}`);
  }
});

test('index.html offers the samples that exist', () => {
  const html = readFileSync(new URL('static/index.html', root), 'utf8');
  const offered = [...html.matchAll(/data-sample="\/static\/samples\/([^"]+)"/g)].map((m) => m[1]).sort();
  assert.deepEqual(offered, ['tile1.png', 'tile2.png']);
});
