/* marsseg dashboard: ES modules, no build step, no dependencies. This file wires them:
 *
 *   api (requests, the connection) ← schema (strict readers) · format · poller · chart · eta ·
 *   errors · formcheck · segmath · evalmath (pure)
 *   toasts · token · health · models · jobs · runview (+ charts) · jobform · segment · evalview
 *   selftest (import()ed only with ?selftest=1)
 *
 * Class names and colours, the job form's limits, the upload limits and whether a token is
 * needed come from GET /schema, which is loaded first: nothing else starts without it. */
import { $, showError } from './dom.mjs';
import { api } from './api.mjs';
import { store } from './store.mjs';
import { SchemaError } from './schema.mjs';
import { poller } from './poller.mjs';
import { dropToast, reportError } from './toasts.mjs';
import { initToken, setTokenRequired } from './token.mjs';
import { initHealth, refreshHealth } from './health.mjs';
import { initModels, observeActive, refreshModels } from './models.mjs';
import { initJobs, pauseJobs, refreshJobs, renderJobs } from './jobs.mjs';
import { afterJobList, initRun, renderHeader, renderActions, runVisible, selectJob, touchRun } from './runview.mjs';
import { initJobForm, refreshDatasets, updateActivateHint } from './jobform.mjs';
import { initSegment } from './segment.mjs';
import { initEval, refreshEvalChoices } from './evalview.mjs';

const SELFTEST = new URLSearchParams(location.search).has('selftest') || location.hash === '#selftest';

let started = false;
function refreshAll() {
  if (!started) { schema.now(); return; }
  refreshJobs(); refreshModels(); refreshDatasets().then(refreshEvalChoices); runVisible(true);
}

function start() {
  started = true;
  setTokenRequired(store.schema.auth.token_required);
  initModels({ onModelsChange() { renderActions(); updateActivateHint(); refreshEvalChoices(); } });
  initJobs({ onList: afterJobList, onSelect: selectJob, onTouched: touchRun });
  initRun();
  initSegment();
  initEval();
  try {
    initJobForm();
  } catch (e) {
    showError($('#form-error'), reportError(e, 'The job form', { inline: true }));
    $('#job-submit').disabled = true;
  }
  $('#jobs-refresh').addEventListener('click', () => { refreshAll(); refreshHealth(); });
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { pauseJobs(); runVisible(false); return; }
    refreshJobs();
    refreshHealth();
    runVisible(true);
  });
  // Relative times ("3 min ago") stay fresh without extra requests.
  setInterval(() => { if (!document.hidden && store.jobs.length) { renderJobs(); renderHeader(); } }, 60000);
  refreshModels();
  refreshDatasets().then(refreshEvalChoices);
  refreshJobs();
  if (SELFTEST) import('./selftest.mjs').then((m) => m.selftest());
}

// GET /schema until it answers (the server may still be starting); a malformed answer is final.
const schema = poller(async () => {
  store.schema = await api.schema();
  dropToast('schema');
  showError($('#form-error'), '');
  start();
  return null;
}, {
  onError(e, retryMs) {
    const final = e instanceof SchemaError;
    const msg = reportError(e, `Loading /schema, which this page needs${final ? '' : ` (retrying in ${Math.round(retryMs / 1000)} s)`}`, { key: 'schema', transient: true });
    showError($('#form-error'), msg);
    if (SELFTEST && final) document.body.dataset.selftest = `fail: ${msg}`;
    return final ? null : retryMs;
  },
});

initToken();
initHealth({ onActive: (m) => { if (started) observeActive(m?.id ?? null, m?.miou ?? null); }, onRecover: refreshAll });
schema.now();
