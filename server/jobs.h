/* Jobs: a FIFO queue, one worker thread that runs one job at a time, and the state of every job
 * on disk so that it survives restarts and crashes. Shared by the job files:
 *   job_store.c  job.json: atomic snapshots, reload and crash recovery at start-up
 *   job_queue.c  the FIFO, the worker thread, the end of a job (finish), start and stop
 *   job_view.c   the JSON views of a job (list, detail, job.json) and of its progress
 *   job_train.c  the training kind (its run function and trainer callbacks); job_mpi.c the same
 *                through mpirun; job_activate.c the end of either: the model registered, and
 *                served or not by the job's "activate" rule
 *   job_pass.c   what the kinds that pass a model over a dataset share (requests, the run's
 *                frame: progress, cancel, pause); job_predict.c (POST /predictions) and
 *                job_eval.c (POST /evaluations) are such kinds
 *   jobs.c       the HTTP handlers of /jobs, the handlers every collection shares, the metrics
 * A kind is a struct job_kind with its run function in a file of its own; the queue, the worker,
 * the store and the views serve it as they are. Every kind lives in one queue (one job runs at a
 * time) and under <data-dir>/jobs/<id>/, its id's first letter its kind's.
 *
 * Ownership: struct jobs owns every struct job; jobs are never freed while the service runs, so
 * a pointer taken under the lock stays valid after it. A job's curves are owned by its run's
 * checkpoint (marsseg_curves.h): they are read from there when a job is loaded and appended
 * live from the trainer's epoch callback, never stored in job.json.
 *
 * Locking: `mu` guards every job's fields and the queue, and is held only for copies (the
 * per-batch progress callback, GET handlers). Files are written outside it, under `io_mu`, from a
 * JSON snapshot taken under `mu`; each snapshot carries a version so that a slower writer can
 * never replace a newer job.json with an older one. Model registration (its own locks) is
 * always called without `mu` held. */
#ifndef MS_JOBS_H
#define MS_JOBS_H

#include "handlers.h"

#include "marsseg_curves.h"

#include <pthread.h>

#define LOG_LINES 32
#define MAX_CURVE_POINTS 100000
#define MAX_JOBS 100000

enum job_state { JS_QUEUED, JS_RUNNING, JS_SUCCEEDED, JS_FAILED, JS_CANCELLED, JS_INTERRUPTED, JS_COUNT };
extern const char *const job_state_names[JS_COUNT];

struct job;

/* What a kind of job does. run is called on the worker thread, without `mu`, and ends the job
 * with job_finish; interrupt (under `mu`) asks a running job to stop at its next step,
 * checkpointing first when pause is set. */
struct job_kind {
    const char *name;       /* job.json's "kind" */
    char prefix;            /* the first letter of its ids */
    const char *collection; /* the routes that list it: "/jobs", "/predictions", "/evaluations" */
    /* a pass of a model over a dataset (job_pass.c): no checkpoint, so a run the service's death
     * interrupted is queued again at start-up and a paused one runs again from the start; its
     * views show its "request" and "result" instead of a training config and curves */
    int pass;
    void (*run)(struct jobs *js, struct job *jb);
    void (*interrupt)(struct job *jb, int pause);
};
extern const struct job_kind job_kind_train;
extern const struct job_kind job_kind_predict; /* job_predict.c */
/* The kinds' names ("kind" in job.json and the metrics' label): the MPI kind is a "train" too. */
#define JOB_KINDS 3
extern const char *const job_kind_names[JOB_KINDS];
int job_kind_index(const struct job_kind *k); /* its place in job_kind_names */
extern const struct job_kind job_kind_eval;    /* job_eval.c */
/* job_mpi.c: a training job run through mpirun on the --mpi-hostfile hosts (jb->ranks > 0) */
extern const struct job_kind job_kind_mpi;
/* job_train.c: a client's (or job.json's) config object as an ms_train_config
 * (job_config_resolve) with the dataset's path, never the client's, and the service's default
 * thread count. On failure ms_last_error() names the field. */
ms_status job_train_config(struct jobs *js, const char *dataset, const cJSON *obj, ms_train_config *cfg);

struct job {
    const struct job_kind *kind;
    char id[16];
    char dir[PATH_MAX];
    char dataset[32];
    int activate;       /* enum activate_rule (training) */
    /* training: the resolved training config as shown to clients (no "data" path); a pass: its
     * resolved request (model, dataset, key, options) */
    cJSON *config;
    /* what the run concluded, kept in job.json: training, the activation decision with both
     * figures ("activation"); a pass, its result's summary ("result"). NULL until then. */
    cJSON *outcome;
    enum job_state state;
    double created, started, finished;
    int resume;         /* the next run continues from dir/checkpoint.npz */
    int cancel_requested, pause_requested;
    ms_trainer *trainer; /* while running */
    atomic_int *stop;    /* a pass's cancel flag, while it runs (job_pass.c) */
    int ranks;           /* > 0: an MPI job of that many processes (job_mpi.c) */
    ms_progress progress;
    int has_progress;
    ms_epoch_stats *curves; /* one point per finished epoch (see Ownership) */
    int ncurves, capcurves;
    char error[512];
    char model_id[64];
    char *log[LOG_LINES]; /* ring of the trainer's recent log lines */
    int log_head, log_n;
    unsigned long version;           /* bumped on every change worth persisting */
    unsigned long persisted_version; /* guarded by io_mu */
    struct job *qnext;
};

struct jobs {
    struct server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue non-empty, or stop */
    pthread_mutex_t io_mu;
    struct job **v; /* every job, creation order */
    int n, cap;
    struct job *qhead, *qtail;
    int nqueued;
    struct job *running;
    unsigned next_id;
    int stop;
    int worker_started;
    pthread_t worker;
    char dir[PATH_MAX];
    int default_threads;
    unsigned long long finished_total[JOB_KINDS][JS_COUNT]; /* by kind and outcome */
};

/* jobs.c: a training job on dataset with config's fields (a client's object: defaults for the
 * rest), queued and on disk before it is visible: what POST /jobs and Label Studio's
 * START_TRAINING make. Call without mu. NULL with *e filled (status, code, message). */
struct job *job_submit(struct jobs *js, const char *dataset, const cJSON *config, int activate, int ranks, struct jr_error *e);
/* The two steps of every submission, for kinds whose job directory gets files first (an npz
 * body): job_reserve gives jb (kind, config... set by the caller) its id and directory; then
 * job_publish writes job.json and queues it. On failure each frees jb (and its directory) and
 * fills *e. Call without mu. */
int job_reserve(struct jobs *js, struct job *jb, struct jr_error *e);
int job_publish(struct jobs *js, struct job *jb, struct jr_error *e);
/* The handlers every collection shares, for the kinds whose collection it is: the list (newest
 * first), one job, its cancel. */
enum MHD_Result jobs_reply_list(struct req *r, const char *collection);
enum MHD_Result jobs_reply_get(struct req *r, const char *collection);
enum MHD_Result jobs_reply_cancel(struct req *r, const char *collection);
/* The job {id} of the route's collection (under mu), NULL if none. */
struct job *job_find_in(struct jobs *js, const char *id, const char *collection);
/* A refusal as the client's answer. */
enum MHD_Result reply_jr_error(struct req *r, const struct jr_error *e);
/* 202 with the new job's detail view and its Location. */
enum MHD_Result jobs_reply_created(struct req *r, struct job *jb);

/* ------------------------------------------------------------------ job_activate.c */
/* A run's texts name the dataset file and the job directory; clients see ids instead. */
void job_scrub(const struct job *jb, const char *data_path, char *dst, size_t cap, const char *src);
/* Appends a log line to the job's ring (and the service's log). */
void job_log(struct jobs *js, struct job *jb, const char *line);
/* The end of a training run that wrote dir/model.npz: registers it, applies the job's activate
 * rule (if_better: the new and the serving model evaluated on the run's validation split, both
 * figures in the log and in "activation") and ends the job (succeeded, or failed when the model
 * cannot be loaded). data_path: the dataset's file, scrubbed from texts. Without mu. */
void job_train_succeeded(struct jobs *js, struct job *jb, const char *data_path);
/* ------------------------------------------------------------------ job_pass.c */
/* A pass's request: the fields every kind takes. */
struct pass_req {
    char model[64];
    char dataset[32]; /* "" for a job's own npz body */
    char key[64];     /* "" until resolved (ms_predict_default_key) */
    int tta;
    int frame;        /* predictions: each image a whole camera frame (any size: resized, padded) */
};
/* From a JSON body: model, dataset, key, tta, and the kind's `extra` fields (NULL-terminated;
 * read by the caller); any other field is refused. 0, or -1 with *e. */
int pass_req_from_json(const cJSON *body, const char *const *extra, struct pass_req *q, struct jr_error *e);
/* From the query string (?model=&key=&tta=), for requests whose body is the data. */
int pass_req_from_query(struct req *r, struct pass_req *q, struct jr_error *e);
/* A boolean field of a body / of the query string into *out (left as it is when absent). */
int pass_bool(const cJSON *body, const char *k, int *out, struct jr_error *e);
int pass_query_bool(struct req *r, const char *k, int *out, struct jr_error *e);
/* The model (acquired: release it; q->model "" means the serving one) and the tiles of q's dataset, or of the file `input` (an npz
 * body) when not NULL, checked as pass_* requests are (job_pass.c); q->key and q->dataset are
 * resolved. 0, or -1 with *e (a 4xx naming the problem). */
int pass_open(struct server *srv, struct pass_req *q, const char *input, int need_labels, struct model_snap **snap,
              ms_dataset *ds, struct jr_error *e);
/* The request as stored and shown ("dataset": null for an npz body); NULL on no memory. */
cJSON *pass_request_json(const struct pass_req *q, int body);
/* Queues a pass of `kind` with its request (taken), moving `upload` (an npz body, or NULL) into
 * its directory as input.npz first. NULL with *e. */
struct job *pass_submit(struct jobs *js, const struct job_kind *kind, const struct pass_req *q, cJSON *request, const char *upload,
                        struct jr_error *e);

/* A run of a pass on the worker: open fills snap, ds (and idx, n for a subset), work runs the
 * core with cancel and progress and leaves its summary in result. */
struct pass_run {
    struct jobs *js;
    struct job *jb;
    int tta;
    struct model_snap *snap;
    ms_dataset ds;
    int *idx, n; /* the tiles of ds to use (idx NULL: all) */
    atomic_int cancel;
    void (*progress)(void *user, int done, int total, double elapsed_s); /* user: the pass_run */
    cJSON *result;
    char data_path[PATH_MAX]; /* the dataset's file, scrubbed from texts */
};
/* open for a request of model, dataset (or the job's input.npz) and key. */
ms_status pass_open_request(struct pass_run *p, int need_labels);
/* The frame of a kind's run function: open, work, then the job's end (succeeded, failed,
 * cancelled, or queued again when the service stops). */
void pass_execute(struct jobs *js, struct job *jb, ms_status (*open)(struct pass_run *p), ms_status (*work)(struct pass_run *p));
/* A kind's interrupt: the core stops before its next batch. */
void pass_interrupt(struct job *jb, int pause);

/* ------------------------------------------------------------------ job_view.c (callers hold mu) */
enum job_view { VIEW_SUMMARY, VIEW_DETAIL, VIEW_PERSIST };
cJSON *job_json(const struct job *jb, enum job_view view);
cJSON *progress_json(const ms_progress *p);
int job_epochs(const struct job *jb);     /* the config's epochs */
int job_last_epoch(const struct job *jb); /* the last finished epoch, 0 if none */

/* ------------------------------------------------------------------ job_store.c */
/* Reads every job of js->dir (crash recovery included; see job_store.c). 0, or -1 logged. */
int job_store_load(struct jobs *js);
/* Writes job.json from a snapshot. Call without mu. */
void job_persist(struct jobs *js, struct job *jb);
/* Writes snap (of version `version`) unless a newer one is on disk. Without mu; takes snap. */
void job_write_snapshot(struct jobs *js, struct job *jb, unsigned long version, cJSON *snap);
/* Appends a finished epoch (under mu): a resumed run may redo epochs after its checkpoint, so
 * the points from e->epoch on are replaced. */
void job_add_epoch(struct job *jb, const ms_epoch_stats *e);
int job_add(struct jobs *js, struct job *jb); /* under mu (or before the worker starts) */
struct job *job_find(struct jobs *js, const char *id); /* under mu */
void job_free(struct job *jb);

/* ------------------------------------------------------------------ job_queue.c */
void job_enqueue(struct jobs *js, struct job *jb);    /* under mu */
int job_dequeue(struct jobs *js, struct job *jb);     /* under mu; 0 if it was not queued */
/* The end of a run (or a pause: state JS_QUEUED): on disk first, visible second. Without mu. */
void job_finish(struct jobs *js, struct job *jb, enum job_state state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
