/* The Token button and panel: the bearer token kept in this browser (api.mjs sends it). */
import { $ } from './dom.mjs';
import { token } from './api.mjs';
import { toast, dropToastsMatching, reportError } from './toasts.mjs';

export function initToken() {
  const btn = $('#token-toggle'), panel = $('#token-panel'), input = $('#token-input');
  const refresh = () => {
    const has = !!token.get();
    $('#token-state').textContent = has ? 'Token set' : 'Token';
    btn.classList.toggle('on', has);
  };
  const setOpen = (open) => {
    panel.hidden = !open;
    btn.setAttribute('aria-expanded', String(open));
    if (open) { input.value = token.get(); input.focus(); }
  };
  const close = (message) => {
    refresh(); setOpen(false); btn.focus();
    toast(message, 'ok');
  };
  btn.addEventListener('click', () => setOpen(panel.hidden));
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { setOpen(false); btn.focus(); } });
  panel.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = input.value.trim();
    try { token.set(v); } catch (err) { reportError(err, 'Saving the token'); }
    btn.classList.remove('attention');
    dropToastsMatching(/HTTP 401/);
    close(v ? 'Token saved in this browser.' : 'Token cleared.');
  });
  $('#token-clear').addEventListener('click', () => {
    token.clear();
    input.value = '';
    close('Token cleared.');
  });
  refresh();
}
