/* The Token button and panel: the bearer token kept in this browser (api.mjs sends it).
 *
 * The button says where things stand before anything fails: "Token needed" when GET /schema's
 * auth.token_required is set and no token is saved (with a note under the top bar), "Token set",
 * and "Token rejected" once the server answered 401 to the saved token. */
import { $ } from './dom.mjs';
import { token } from './api.mjs';
import { toast, dropToastsMatching, reportError } from './toasts.mjs';

let required = false, rejected = false;

function render() {
  const has = !!token.get();
  const state = has ? (rejected ? 'rejected' : 'set') : (required ? 'needed' : 'none');
  const btn = $('#token-toggle');
  btn.dataset.state = state;
  $('#token-state').textContent = { none: 'Token', set: 'Token set', needed: 'Token needed', rejected: 'Token rejected' }[state];
  btn.classList.toggle('on', state === 'set');
  btn.classList.toggle('attention', state === 'needed' || state === 'rejected');
  const note = $('#token-note');
  note.hidden = state !== 'needed' && state !== 'rejected';
  note.textContent = state === 'rejected'
    ? 'The server rejected the saved access token: check it with the Token button.'
    : 'This server needs an access token to start jobs, upload datasets or switch models: set it with the Token button.';
}

/** From GET /schema: whether state changes need a token. */
export function setTokenRequired(v) { required = v; render(); }

export function initToken() {
  const btn = $('#token-toggle'), panel = $('#token-panel'), input = $('#token-input');
  const setOpen = (open) => {
    panel.hidden = !open;
    btn.setAttribute('aria-expanded', String(open));
    if (open) { input.value = token.get(); input.focus(); }
  };
  const saved = (message) => {
    rejected = false;
    render(); setOpen(false); btn.focus();
    dropToastsMatching(/access token/);
    document.dispatchEvent(new CustomEvent('marsseg:token'));
    toast(message, 'ok', 'token');
  };
  btn.addEventListener('click', () => setOpen(panel.hidden));
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { setOpen(false); btn.focus(); } });
  panel.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = input.value.trim();
    try { if (v) token.set(v); else token.clear(); } catch (err) { reportError(err, 'Saving the token'); }
    saved(v ? 'Token saved in this browser.' : 'Token cleared.');
  });
  $('#token-clear').addEventListener('click', () => {
    token.clear();
    input.value = '';
    saved('Token cleared.');
  });
  // toasts.mjs: a 401 answered the saved token (rejected) or no token (needed)
  document.addEventListener('marsseg:unauthorized', (e) => {
    if (e.detail.tokenSent) rejected = true;
    else required = true;
    render();
  });
  render();
}
