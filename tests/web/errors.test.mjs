// node --test: static/js/errors.mjs — one plain sentence per failure, each number once, a remedy;
// the checks a file gets before POST /segment (run by build/tests/test_web_units in `make test`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { describeError, pngHeader, sentence, uploadProblem } from '../../static/js/errors.mjs';

const LIMITS = { max_body: 8388608, max_pixels: 1048576, max_json: 65536, max_upload: 536870912 };
const err = (status, code, message, retryAfter = 0) => ({ status, code, message, retryAfter });
/** The numbers of at least 3 digits in s ("3000×3000" is one: a size). */
const numbers = (s) => (s.match(/\d[\d,]{2,}(?:×\d[\d,]*)?/g) || []).map((n) => n.replace(/,/g, ''));
const once = (s) => { const n = numbers(s); assert.equal(new Set(n).size, n.length, `a number repeats in: ${s}`); };

test('the issue\'s 422: one sentence, the numbers once, the remedy, no HTTP code', () => {
  const e = err(422, 'too_many_pixels', 'png: 3000x3000 = 9000000 pixels exceeds the limit of 1048576 (the limit is 1048576 pixels)');
  const s = describeError(e, { name: 'big.png', limits: LIMITS });
  assert.equal(s, 'big.png has too many pixels (3000×3000): the server segments at most 1,048,576 pixels, e.g. 1024×1024; scale it down or crop it.');
  once(s);
  assert.doesNotMatch(s, /HTTP|422|too_many_pixels/);
});

test('413, 415, 400 for a segmentation: the file named, the limit once', () => {
  const big = describeError(err(413, 'body_too_large', 'request body of 9437184 bytes exceeds the limit of 8388608 bytes for /segment'), { name: 'big.png', size: 9437184, limits: LIMITS });
  assert.equal(big, 'big.png is 9.0 MB; the server takes images up to 8.0 MB: use a smaller PNG.');
  assert.match(describeError(err(413, 'body_too_large', 'request body exceeds the limit of 8388608 bytes'), {}), /too large; the server takes images up to 8\.0 MB/);
  assert.equal(describeError(err(415, 'unsupported_media_type', 'x'), { name: 'a.jpg' }), 'a.jpg is not a PNG image: the server segments PNG files only.');
  assert.equal(describeError(err(400, 'not_png', 'the image is not a PNG (12 bytes without the PNG signature)'), { name: 'a.txt' }), 'a.txt is not a PNG image: the server segments PNG files only.');
  assert.match(describeError(err(400, 'bad_png', 'cannot decode the PNG: png: IDAT: invalid distance too far back'), { name: 'x.png' }), /^x\.png could not be decoded as a PNG .*try another file\.$/);
});

test('401: needed, or rejected when a token was sent', () => {
  const e = err(401, 'unauthorized', "this request changes state and needs 'Authorization: Bearer <token>'");
  assert.match(describeError(e, { tokenSet: false }), /^this server needs an access token .*Token button/);
  assert.match(describeError(e, { tokenSet: true }), /^the server rejected the access token: check it/);
});

test('503s say when to retry; the network says the page reconnects', () => {
  assert.equal(describeError(err(503, 'overloaded', 'all 1 inference workers are busy; retry shortly', 1)), 'the server is busy with other images: try again in 1 s.');
  assert.match(describeError(err(503, 'no_model', 'no model is loaded: …', 5)), /no model is serving yet: pick one under Models/);
  assert.match(describeError(err(503, 'queue_full', '16 jobs are already queued; retry later', 30)), /queue is full: try again in 30 s/);
  assert.match(describeError(err(0, 'network', 'GET /jobs: Failed to fetch')), /cannot reach the server.*reconnects by itself/);
  assert.match(describeError(err(0, 'timeout', 'x'), { timeoutS: 60 }), /within 60 s/);
});

test('anything else: the server\'s own line once, with a full stop, without codes', () => {
  assert.equal(describeError(err(409, 'conflict', 'job j1 is succeeded; only interrupted or cancelled jobs can be resumed')),
    'job j1 is succeeded; only interrupted or cancelled jobs can be resumed.');
  assert.match(describeError(err(500, 'io', 'cannot create the job directory: No space left on device')), /server failed \(cannot create .*\); the server's log/);
  assert.equal(sentence('big.png is 9 MB', 'big.png'), 'big.png is 9 MB');
  assert.equal(sentence('the server…'), 'The server…');
});

// A PNG's first 24 bytes: signature, IHDR length, "IHDR", width, height (big-endian).
const head = (w, h) => {
  const b = new Uint8Array(24);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 73, 72, 68, 82]);
  new DataView(b.buffer).setUint32(16, w); new DataView(b.buffer).setUint32(20, h);
  return b;
};

test('pngHeader: signature and IHDR size', () => {
  assert.deepEqual(pngHeader(head(128, 64)), { png: true, width: 128, height: 64 });
  assert.deepEqual(pngHeader(head(70000, 3)), { png: true, width: 70000, height: 3 });
  assert.equal(pngHeader(new TextEncoder().encode('GIF89a and more bytes....')).png, false);
  assert.deepEqual(pngHeader(head(128, 64).slice(0, 8)), { png: true, width: 0, height: 0 });
});

test('uploadProblem: type, then size, then pixels; null for a good tile', () => {
  assert.equal(uploadProblem({ name: 'tile1.png', size: 4355, head: head(128, 64) }, LIMITS), null);
  assert.equal(uploadProblem({ name: 'notes.txt', size: 10, head: new TextEncoder().encode('hello') }, LIMITS), 'notes.txt is not a PNG image: the server segments PNG files only.');
  const big = uploadProblem({ name: 'big.png', size: 9 * 1048576, head: head(128, 64) }, LIMITS);
  assert.equal(big, 'big.png is 9.0 MB; the server takes images up to 8.0 MB: use a smaller PNG.');
  const px = uploadProblem({ name: 'frame.png', size: 1000, head: head(3000, 3000) }, LIMITS);
  assert.match(px, /^frame\.png has too many pixels \(3000×3000\): .*1,048,576 pixels/);
  once(px);
  assert.equal(uploadProblem({ name: 'x.png', size: 10, head: head(1024, 1024) }, LIMITS), null); // at the limit
});
