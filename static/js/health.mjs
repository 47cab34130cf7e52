/* The status pill at the top: GET /readyz (ready / no model loaded / offline). */
import { $ } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { reportError } from './toasts.mjs';

export function setHealth(state, text, title = '') {
  const pill = $('#health');
  pill.dataset.state = state;
  pill.title = title;
  $('#health-text').textContent = text;
}

export const healthy = () => $('#health').dataset.state === 'ok';

export async function refreshHealth() {
  try {
    const r = await api.ready();
    setHealth('ok', 'ready');
    if (!store.active) $('#active-model-name').textContent = r.model;
  } catch (e) {
    if (e.status === 503) setHealth('warn', 'no model loaded', e.message);
    else if (e.status === 0) setHealth('bad', 'offline', e.message);
    else if (e.status) setHealth('warn', `not ready (${e.status})`, e.message);
    else { setHealth('warn', 'unreadable answer', e.message); reportError(e, 'Readiness', 'health'); }
  }
}
