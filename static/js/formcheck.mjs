/* The job form's checks, from GET /schema's training-config table: a field's text to a value
 * or a plain message, and the server's refusal of a config ("model.depth: 9 is outside [1, 6]",
 * "model: base * 2^depth must be <= 4096 (got 8192)") to the fields it names and a sentence.
 *
 * Integers are checked on the text itself: a number input accepts "1e3" (exponent notation is
 * a valid floating-point number to the browser) and would send 1000. Pure (no DOM); unit-tested
 * by tests/web/formcheck.test.mjs. */

const fmt = (v) => (Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3)) ? String(v) : v.toLocaleString('en-US', { maximumFractionDigits: 10 });
/** "Base channels" → "base channels", but "U-Net depth" stays. */
const lcFirst = (s) => /^[A-Z][a-z]/.test(s) ? s[0].toLowerCase() + s.slice(1) : s;
const range = (spec) => `from ${fmt(spec.min)} to ${fmt(spec.max)}`;

/** raw: the input's text; spec: the /schema entry (type, min, max); label: the form's name.
 * → { ok: true, value } or { ok: false, message }. */
export function checkField(raw, spec, label) {
  const text = String(raw ?? '').trim();
  if (spec.type === 'string') {
    if (spec.choices && !spec.choices.includes(text)) return { ok: false, message: `${label}: choose one of ${spec.choices.join(', ')}.` };
    return { ok: true, value: text };
  }
  if (spec.type === 'integer') {
    if (!/^\d+$/.test(text)) {
      const what = text === '' ? 'enter a whole number' : `"${text}" is not a whole number: use digits only`;
      return { ok: false, message: `${label}: ${what} (${range(spec)}).` };
    }
    const v = Number(text);
    if (!Number.isSafeInteger(v) || v < spec.min || v > spec.max) return { ok: false, message: `${label}: ${text} is out of range; use a whole number ${range(spec)}.` };
    return { ok: true, value: v };
  }
  if (spec.type === 'number') {
    // plain decimals and exponents ("5e-4") are both fine for real-valued fields
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
      return { ok: false, message: `${label}: ${text === '' ? 'enter a number' : `"${text}" is not a number`} (${range(spec)}).` };
    }
    const v = Number(text);
    if (!Number.isFinite(v) || v < spec.min || v > spec.max) return { ok: false, message: `${label}: ${text} is out of range; use a number ${range(spec)}.` };
    return { ok: true, value: v };
  }
  return { ok: false, message: `${label}: the form has no check for type ${spec.type}.` };
}

/** The job form's "MPI ranks" text (shown when /schema has mpi): empty → a local job (value
 * null), else a whole number from 1 to mpi.max_ranks. */
export function checkRanks(raw, mpi) {
  if (String(raw ?? '').trim() === '') return { ok: true, value: null };
  return checkField(raw, { type: 'integer', min: 1, max: mpi.max_ranks }, 'MPI ranks');
}

/** The config fields a server error names: "lr: …" → ['lr'], "model.depth: …" → ['model.depth'],
 * "model: base * 2^depth …" → ['model.depth', 'model.base'], "min_lr: 0.1 is above lr 0.01" →
 * ['min_lr', 'lr']; [] when it names none. */
export function fieldsOfError(message) {
  const m = /^([a-z_]+(?:\.[a-z_]+)?)(?:\[\d+\])?\s*:/.exec(String(message ?? ''));
  if (!m) return [];
  if (m[1] === 'model') return /depth/.test(message) ? ['model.depth', 'model.base'] : [];
  const names = [m[1]];
  const other = /\babove ([a-z_]+)\b/.exec(message); // "min_lr: 0.1 is above lr 0.01"
  if (other) names.push(other[1]);
  return names;
}

/** The server's refusal of a config as one sentence with the form's labels (labelOf(name) →
 * label or null). */
export function configErrorText(message, labelOf) {
  const msg = String(message ?? '').trim();
  const label = (name) => labelOf(name) ?? name;
  let m = /^model: base \* 2\^depth must be <= (\d+) \(got (\d+)\)/.exec(msg);
  if (m) return `${label('model.base')} × 2^depth is ${fmt(Number(m[2]))}, above the server's limit of ${fmt(Number(m[1]))}: lower the ${lcFirst(label('model.depth'))} or the ${lcFirst(label('model.base'))}.`;
  m = /^([a-z_.]+): (\S+) is outside \[([^,\]]+), ([^\]]+)\]/.exec(msg);
  if (m) return `${label(m[1])}: ${m[2]} is out of range; the server takes ${m[3]} to ${m[4]}.`;
  m = /^([a-z_.]+): expected an integer/.exec(msg);
  if (m) return `${label(m[1])}: the server takes whole numbers only.`;
  m = /^([a-z_.]+): "([^"]*)" is not one of (.+)$/.exec(msg);
  if (m) return `${label(m[1])}: "${m[2]}" is not one of ${m[3].split('|').join(', ')}.`;
  m = /^dataset: no dataset with id '([^']*)'/.exec(msg);
  if (m) return `The dataset ${m[1]} is no longer on the server: choose another one.`;
  m = /^([a-z_.]+): (.*)$/.exec(msg);
  if (m && labelOf(m[1])) return `${labelOf(m[1])}: ${m[2].replace(/\.?$/, '.')}`;
  return msg.replace(/\.?$/, '.');
}
