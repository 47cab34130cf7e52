/* Toasts: the page's aria-live region, for what happens away from where the user is looking
 * (a run finished, a model was switched, a background refresh failed). What a card already
 * shows inline (a segmentation, its error, the form's errors) gets no toast as well.
 *
 * The same message under the same key counts up ("(×3)"); a different message under that key
 * replaces it, so two different results never merge. Errors stay until dismissed or resolved
 * (dropToast); the rest fade. Errors of background refreshes are "transient": they go as soon
 * as the server answers again (dropTransient, called by health.mjs on recovery).
 *
 * reportError is how every view reports a failure: one plain sentence (errors.mjs), a toast
 * unless the caller shows it inline, and the console for anything that is not an HTTP error
 * (a SchemaError is a broken contract: always on the console). Network failures get no toast
 * of their own: the connection pill and its one "offline" toast say it (health.mjs). */
import { $ } from './dom.mjs';
import { ApiError } from './api.mjs';
import { describeError, sentence } from './errors.mjs';
import { store } from './store.mjs';

const toasts = new Map(); // key → { el, msg, count, timer, transient }
const MAX_TOASTS = 3;

export function toast(msg, kind = 'info', key = null, { transient = false } = {}) {
  const box = $('#toasts');
  key = key || msg;
  let t = toasts.get(key);
  if (t && t.el.isConnected) {
    t.count = t.msg === msg ? t.count + 1 : 1;
    t.msg = msg;
    t.el.dataset.kind = kind;
    t.el.querySelector('.toast-msg').textContent = msg + (t.count > 1 ? ` (×${t.count})` : '');
    clearTimeout(t.timer);
  } else {
    const el = document.createElement('div');
    el.className = 'toast';
    el.dataset.kind = kind;
    el.dataset.key = key;
    el.innerHTML = '<span class="toast-msg"></span><button type="button" class="toast-close" aria-label="Dismiss message">×</button>';
    el.querySelector('.toast-msg').textContent = msg;
    el.querySelector('button').addEventListener('click', () => dropToast(key));
    box.appendChild(el);
    t = { el, msg, count: 1, timer: 0, transient };
    toasts.set(key, t);
    while (box.children.length > MAX_TOASTS) {
      const old = box.firstElementChild;
      dropToast(old.dataset.key);
      if (old.isConnected) old.remove();
    }
  }
  t.transient = transient;
  if (kind !== 'error') t.timer = setTimeout(() => dropToast(key), kind === 'ok' ? 5000 : 7000);
}

export function dropToast(key) {
  const t = toasts.get(key);
  if (!t) return;
  clearTimeout(t.timer);
  t.el.remove();
  toasts.delete(key);
}

/** Drops every toast whose text matches re (e.g. the 401s once a token is saved). */
export function dropToastsMatching(re) {
  for (const [key, t] of [...toasts]) if (re.test(t.el.textContent)) dropToast(key);
}

/** Drops the errors of background refreshes (the server answers again). */
export function dropTransient() {
  for (const [key, t] of [...toasts]) if (t.transient) dropToast(key);
}

/** Reports e (with what was being done: "Switching to model x") and returns the sentence for
 * an inline error element. opts: key (one toast per key), inline (the caller shows it: no
 * toast), transient (a background refresh), ctx (errors.mjs: name, size). */
export function reportError(e, context, { key, inline = false, transient = false, ctx = {} } = {}) {
  const isApi = e instanceof ApiError;
  const clause = isApi ? describeError(e, { limits: store.schema?.limits, tokenSet: e.tokenSent, timeoutS: e.timeoutS, ...ctx })
    : String(e?.message || e);
  const msg = context ? `${context}: ${clause}` : sentence(clause, ctx.name);
  if (isApi && e.status === 401) document.dispatchEvent(new CustomEvent('marsseg:unauthorized', { detail: { tokenSent: !!e.tokenSent } }));
  if (!isApi) console.error(`marsseg: ${msg}`, e);
  const network = isApi && e.code === 'network';
  if (!inline && !network) toast(msg, 'error', key || msg, { transient });
  return msg;
}
