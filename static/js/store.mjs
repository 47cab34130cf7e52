/* What the views share: the server's /schema and the latest lists. Each list has one writer
 * (the module named beside it); the others only read. */
export const store = {
  schema: null,       // main.mjs: { classes: [{id, name, rgb}], config: [field], limits, auth }
  jobs: [],           // jobs.mjs: newest first
  jobsLoaded: false,  // jobs.mjs
  models: [],         // models.mjs
  active: null,       // models.mjs: the id of the model serving /segment, or null
  datasets: [],       // jobform.mjs
  selected: null,     // runview.mjs: the id of the run shown
};
