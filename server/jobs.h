/* Jobs: a FIFO queue, one worker thread that runs one job at a time, and the state of every job
 * on disk so that it survives restarts and crashes. Shared by the job files:
 *   job_store.c  job.json: atomic snapshots, reload and crash recovery at start-up
 *   job_queue.c  the FIFO, the worker thread, the end of a job (finish), start and stop
 *   job_view.c   the JSON views of a job (list, detail, job.json) and of its progress
 *   job_train.c  the one job kind so far: training (its run function and trainer callbacks)
 *   jobs.c       the HTTP handlers and the metrics
 * A new kind (prediction, evaluation) is a struct job_kind with its run function in a file of
 * its own; the queue, the worker, the store and the views serve it as they are.
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
    const char *name;
    void (*run)(struct jobs *js, struct job *jb);
    void (*interrupt)(struct job *jb, int pause);
};
extern const struct job_kind job_kind_train;
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
    int activate;
    cJSON *config;      /* the resolved training config as shown to clients (no "data" path) */
    enum job_state state;
    double created, started, finished;
    int resume;         /* the next run continues from dir/checkpoint.npz */
    int cancel_requested, pause_requested;
    ms_trainer *trainer; /* while running */
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
    unsigned long long finished_total[JS_COUNT];
};

/* jobs.c: a training job on dataset with config's fields (a client's object: defaults for the
 * rest), queued and on disk before it is visible: what POST /jobs and Label Studio's
 * START_TRAINING make. Call without mu. NULL with *e filled (status, code, message). */
struct job *job_submit(struct jobs *js, const char *dataset, const cJSON *config, int activate, int ranks, struct jr_error *e);

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
