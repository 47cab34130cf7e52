/* The status pill at the top and the connection: GET /models/active every 2 s (while the page
 * is visible) says whether the server is there, whether a model serves /segment, and which one
 * (models.mjs notices a switch nobody here asked for). Any request of the page that fails for
 * the network, or gets an answer, moves the pill too (api.mjs's connection). When the server
 * comes back, the stale errors go and every view reloads (onRecover). */
import { $ } from './dom.mjs';
import { api, connection } from './api.mjs';
import { poller } from './poller.mjs';
import { toast, dropToast, dropTransient, reportError } from './toasts.mjs';

const POLL_MS = 2000;
let onActive = () => {}, onRecover = () => {};

export function setHealth(state, text, title = '') {
  const pill = $('#health');
  pill.dataset.state = state;
  pill.title = title;
  $('#health-text').textContent = text;
}

export const healthy = () => $('#health').dataset.state === 'ok';

const healthPoller = poller(async () => {
  const m = await api.active();
  if (m) setHealth('ok', 'ready', `serving ${m.id}`);
  else setHealth('warn', 'no model loaded', 'No model serves /segment: pick one under Models, or train one.');
  onActive(m);
  dropToast('health');
  return POLL_MS;
}, {
  min: POLL_MS, max: POLL_MS, // offline: keep knocking every 2 s, so that the return shows at once
  onError(e) {
    if (e.code === 'network' || e.code === 'timeout') connection.report(false);
    else reportError(e, 'Checking the server', { key: 'health', transient: true });
    return POLL_MS;
  },
});

/** Checks now (after a switch, or when the page comes back to the foreground). */
export const refreshHealth = () => healthPoller.now();

/** onActive(model or null): every answer of GET /models/active; onRecover(): the server
 * answers again after it was unreachable. */
export function initHealth(hooks) {
  ({ onActive, onRecover } = hooks);
  connection.on((online, was) => {
    if (!online) {
      setHealth('bad', 'offline', 'The server does not answer; the page keeps trying every 2 s.');
      toast('Lost the connection to the server; the page reconnects by itself.', 'error', 'offline');
      return;
    }
    dropToast('offline');
    if (was === false) {
      setHealth('unknown', 'connecting…');
      dropTransient();
      toast('Connected to the server again.', 'ok', 'offline-over');
      onRecover();
      healthPoller.now();
    }
  });
  healthPoller.now();
}
