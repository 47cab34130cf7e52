/* Toasts: the page's aria-live region. Messages with the same key merge ("(×3)"); errors stay
 * until dismissed or resolved (dropToast), the rest fade. reportError is how every view reports
 * a failure: a toast, the token button's nudge on 401, and the console for anything that is
 * not a plain HTTP error (a SchemaError is a broken contract: always on the console). */
import { $ } from './dom.mjs';
import { ApiError } from './api.mjs';

const toasts = new Map(); // key → { el, count, timer }

export function toast(msg, kind = 'info', key = null) {
  const box = $('#toasts');
  key = key || msg;
  let t = toasts.get(key);
  if (t && t.el.isConnected) {
    t.count++;
    t.el.querySelector('.toast-msg').textContent = msg + (t.count > 1 ? ` (×${t.count})` : '');
    clearTimeout(t.timer);
  } else {
    const el = document.createElement('div');
    el.className = 'toast';
    el.dataset.kind = kind;
    el.innerHTML = '<span class="toast-msg"></span><button type="button" class="toast-close" aria-label="Dismiss message">×</button>';
    el.querySelector('.toast-msg').textContent = msg;
    el.querySelector('button').addEventListener('click', () => dropToast(key));
    box.appendChild(el);
    t = { el, count: 1, timer: 0 };
    toasts.set(key, t);
    while (box.children.length > 4) box.firstElementChild.remove();
  }
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

/** Reports e (with what was being done) as an error toast; returns the message for an inline
 * error element. */
export function reportError(e, context, key) {
  const msg = `${context}: ${e?.message || e}`;
  toast(msg, 'error', key || msg);
  if (e?.status === 401) $('#token-toggle').classList.add('attention');
  if (!(e instanceof ApiError)) console.error(`marsseg: ${msg}`, e);
  return msg;
}
