/* The marsseg HTTP service: the one server struct every resource hangs off, and the interfaces
 * between the resource files (models, jobs, datasets, segment, health, static).
 *
 * Ownership: `struct server` is created by serve.c and outlives the HTTP daemon; each resource
 * keeps its own lock, so a slow operation in one (a model load, an fsync of job.json) never
 * blocks another. Nothing here is global: handlers reach the server through their request.
 * Failures are reported as the core's are (ms_fail, ms_last_error), and the server includes only
 * the public headers of include/ (it is built without -Icore). */
#ifndef MS_SERVER_H
#define MS_SERVER_H

#include "marsseg.h"
#include "jobreq.h" /* request JSON, job requests, is_safe_id */

#include <cJSON.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct req;
struct models;
struct jobs;
struct datasets;
struct metrics;
struct infer_pool;
struct follower;

/* What a process of a deployment does (--role): ROLE_ALL (the default) and ROLE_TRAINER run
 * jobs and own the data directory's writes; ROLE_INFERENCE serves /segment and the read-only
 * routes from the same data directory, never writes to it, refuses the trainer's routes, and
 * follows the model the trainer activates (follow.c). */
enum server_role { ROLE_ALL, ROLE_TRAINER, ROLE_INFERENCE };
struct labelstudio;

/* Everything `marsseg serve` can be told with flags and environment variables. */
struct server_config {
    char host[256];
    unsigned port;               /* 0 = any free port (written to port_file) */
    char port_file[PATH_MAX];    /* "" = none */
    char data_dir[PATH_MAX];
    char model_path[PATH_MAX];   /* the default model ("" = none) */
    char dataset_path[PATH_MAX]; /* the bundled dataset, listed as id "sample" */
    char static_dir[PATH_MAX];
    unsigned threads;            /* concurrent inferences (/segment workers) */
    unsigned infer_queue;        /* inferences allowed to wait for a worker before 503 */
    unsigned max_conns;          /* simultaneous HTTP connections */
    unsigned timeout_s;          /* idle timeout of a connection */
    unsigned body_timeout_s;     /* total time allowed to receive one request body */
    unsigned max_queue;          /* queued training jobs before POST /jobs answers 503 */
    size_t max_body;             /* /segment request bodies */
    size_t max_json;             /* JSON request bodies */
    size_t max_upload;           /* dataset uploads (streamed to disk) */
    size_t max_dataset_mem;      /* memory a dataset may need when it is validated/trained on */
    size_t max_pixels;           /* pixels of an image to segment; of a whole frame, once resized */
    size_t max_frame_pixels;     /* pixels of a whole frame as sent (?frame=1), decoded before resizing */
    char token[256];             /* MARSSEG_TOKEN; "" = no auth */
    char role[16];               /* "all", "trainer" or "inference" (enum server_role) */
    char mpi_hostfile[PATH_MAX]; /* "" = no MPI jobs (POST /jobs {"ranks": N} refused) */
    char mpi_bin[PATH_MAX];      /* the MPI build of marsseg that mpirun starts */
    char ls_url[1024];           /* --label-studio-url: the one host task images are fetched from */
    char ls_token[256];          /* --label-studio-token: sent to it as 'Authorization: Token ...' */
};

struct server {
    struct server_config cfg;
    char static_real[PATH_MAX]; /* realpath of cfg.static_dir ("" if it does not exist) */
    double started;             /* wall clock at start (s) */
    atomic_int stopping;
    /* 1 while a job trains (job_train.c). Inference workers (segment.c) then run single-threaded:
     * a two-thread OpenMP team sharing a core with the trainer waits at every barrier for
     * whichever thread the scheduler parked, which is what made /segment's tail latency long
     * during training. */
    atomic_int training_active;
    struct models *models;
    struct jobs *jobs;
    struct datasets *datasets;
    struct metrics *metrics;
    struct infer_pool *infer;
    struct labelstudio *labelstudio; /* the Label Studio ML backend (labelstudio.h) */
    int omp_max; /* OpenMP threads a team may have (OMP_NUM_THREADS or the cores), read at start */
    enum server_role role;
    struct follower *follower; /* ROLE_INFERENCE only */
    char mpirun[PATH_MAX];     /* mpirun's path, found on PATH at start (with --mpi-hostfile) */
};

/* ------------------------------------------------------------------ files.c (durable writes: marsseg_io.h) */
/* snprintf into a fixed buffer; returns 0 if the result was truncated (callers refuse it). */
int fmt_path(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* mkdir -p for one level (EEXIST is fine). 0 on success. */
int ensure_dir(const char *path);
/* Deletes the *.tmp files in dir: the temp files of atomic writes (ms_write_file_atomic, the npz
 * writer) that a crash left behind. Only at start-up, before anything writes there, and only in
 * directories that belong to the service (a job's). Returns how many were removed. */
int remove_tmp_files(const char *dir);
/* ms_write_file_atomic of a cJSON tree (printed formatted, with a trailing newline). */
ms_status write_json_atomic(const char *path, const cJSON *json);
/* Read and parse a JSON file of at most max_bytes; NULL (and a log line) on any failure. */
cJSON *read_json_file(const char *path, size_t max_bytes);
/* is_safe_id (jobreq.h) checks every id that reaches a path (job, dataset, model), so none can
 * name ".." or contain "/". */

/* ------------------------------------------------------------------ text.c */
double now_wall(void);                 /* seconds since the epoch */
double now_mono(void);                 /* monotonic seconds */
/* One log line to stderr, prefixed with a UTC timestamp; thread-safe (one fprintf). */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse "123", "64k", "16M", "2G" (binary units) into *out. 0 on success. */
int parse_size(const char *s, size_t *out);
/* Parse an unsigned decimal integer in [lo, hi]. 0 on success. */
int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);
/* Copies src to dst (truncating to cap) with every occurrence of needle replaced by with.
 * Used to keep server paths out of texts shown to clients. */
void str_replace(char *dst, size_t cap, const char *src, const char *needle, const char *with);
/* A float as the shortest decimal that reads back to it (0.1f -> 0.1, not 0.100000001). */
double tidy_float(float f);
/* v rounded to `decimals` places (for timings in JSON). */
double round_to(double v, int decimals);
/* The number of online CPUs (>= 1). */
int cpu_count(void);
/* Decodes base64 (standard or URL-safe alphabet, padding optional, line breaks ignored) into
 * out (at most cap bytes). 0, or -1 if malformed or longer than cap. */
int base64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *len);
/* Standard base64 with padding, NUL-terminated and malloc'd (NULL on no memory). */
char *base64_encode(const uint8_t *in, size_t n);
/* Append printf output to a growing malloc'd buffer; on allocation failure the buffer is freed
 * and *buf set to NULL (callers check once at the end). */
void buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------ models.c */
/* An immutable, reference-counted loaded model. Requests take one with model_acquire and keep
 * it until they are done, so swapping the active model never pulls it from under them. */
struct model_snap {
    ms_model *model;
    char id[64];
    atomic_int refs;
};
int models_create(struct server *srv, struct models **out);
void models_destroy(struct models *ms);
/* Register a model file under id (loads it once to read its config and meta) and, if
 * activate, make it the active model (persisting the choice). */
ms_status models_register(struct models *ms, const char *id, const char *path, const char *source,
                          const char *job_id, int activate);
/* Make id the active model (loads the file; persists the choice unless persist is 0). */
ms_status models_activate(struct models *ms, const char *id, int persist);
/* Apply the choice saved in the data dir, if any (called once every model is registered). */
void models_restore_active(struct models *ms);
struct model_snap *model_acquire(struct models *ms); /* NULL if no model is active */
/* Whether id names a registered model (GET /models lists it); its architecture into *cfg
 * (may be NULL). */
int models_known(struct models *ms, const char *id, ms_model_config *cfg);
/* The model registered as id, for a request that names one: the active snapshot when id is
 * active, otherwise its file loaded (the last model so loaded is kept for the next request).
 * MS_ERR_NOTFOUND when id is unknown, or the load's error. Release *out with model_release. */
ms_status model_acquire_id(struct models *ms, const char *id, struct model_snap **out);
void model_release(struct model_snap *s);
/* Writes the active model's id into buf ("" if none). */
void models_active_id(struct models *ms, char *buf, size_t cap);
/* The id active_model.json holds into buf ("" if none or unreadable). */
void models_saved_id(struct models *ms, char *buf, size_t cap);
/* For a process that does not own the choice (an inference replica): when active_model.json
 * names another model than the active one, activate it without writing the file. The file is
 * read under the activation lock, so a slower follow never undoes a newer switch.
 * MS_ERR_NOTFOUND if the saved id is not registered (the caller registers it and calls again). */
ms_status models_follow_saved(struct models *ms);
/* Prometheus lines about models. */
void models_metrics(struct models *ms, char **buf, size_t *len, size_t *cap);

/* ------------------------------------------------------------------ datasets.c */
int datasets_create(struct server *srv, struct datasets **out);
void datasets_destroy(struct datasets *ds);
/* Path of dataset id into buf; MS_ERR_NOTFOUND if unknown. */
ms_status datasets_path(struct datasets *ds, const char *id, char *buf, size_t cap);
/* The npz path dataset id has (or will have) in the data directory; 0 if id is not a safe id or
 * the path is too long. */
int datasets_file(struct datasets *ds, const char *id, char *buf, size_t cap);
/* Registers, or updates, dataset id once its npz is in place at datasets_file(id) (written
 * atomically by the caller): <id>.json is written atomically and the dataset is listed. */
ms_status datasets_publish(struct datasets *ds, const char *id, const char *name, int n, int h, int w);

/* ------------------------------------------------------------------ jobs (jobs.h says which file holds what) */
int jobs_create(struct server *srv, struct jobs **out); /* reloads jobs from the data dir */
/* Start the worker thread (after models are registered, so finished jobs can activate). */
int jobs_start(struct jobs *js);
/* Clean shutdown: pause the running job (it checkpoints), wait for the worker. */
void jobs_stop(struct jobs *js);
void jobs_destroy(struct jobs *js);
void jobs_metrics(struct jobs *js, char **buf, size_t *len, size_t *cap);

/* ------------------------------------------------------------------ follow.c */
/* An inference replica's link to the trainer through the shared data directory: registers the
 * models of jobs that succeeded there and swaps to the model active_model.json names, within
 * FOLLOW_POLL_MS of the trainer's atomic rename. The first pass runs before it returns. */
#define FOLLOW_POLL_MS 250
int follower_start(struct server *srv, struct follower **out);
void follower_stop(struct follower *f); /* NULL is fine */
const char *server_role_name(enum server_role r);

/* ------------------------------------------------------------------ mpi_conf.c */
/* With --mpi-hostfile: the hostfile readable with slots, mpirun on PATH (srv->mpirun) and the MPI
 * build of marsseg (cfg.mpi_bin, resolved). Prints the CLI error and returns -1 otherwise. */
int mpi_config_check(struct server *srv);
/* Whether POST /jobs may run `ranks` processes now: 0, or -1 with *e (no hostfile configured,
 * the hostfile unreadable, mpirun gone, more ranks than slots). */
int mpi_check_ranks(const struct server *srv, int ranks, struct jr_error *e);
/* The hostfile's slots now (0 without --mpi-hostfile or when unreadable): /schema's max_ranks. */
int mpi_max_ranks(const struct server *srv);

/* ------------------------------------------------------------------ segment.c */
/* Work for an inference worker: fn(ctx) runs on a worker thread, in its OpenMP team, and its
 * status, ms_last_error() text and time come back here. */
struct infer_job {
    ms_status (*fn)(void *ctx);
    void *ctx;
    ms_status st;
    char err[256];
    double seconds;
};
/* Runs job on a worker and waits for it: 0 when it ran (job->st tells how), -1 when refused
 * because every worker is busy and the wait queue is full (answer 503 with Retry-After). The
 * same workers, queue bound and metrics as /segment. */
int infer_call(struct infer_pool *p, struct infer_job *job);
int infer_pool_create(struct server *srv, struct infer_pool **out);
/* worker 0's OpenMP team size; the plans of m's tile on it and on one thread, before m serves */
int infer_team_threads(const struct server *srv);
void infer_warm(const struct server *srv, const ms_model *m);
void infer_pool_destroy(struct infer_pool *p);
void infer_metrics(struct infer_pool *p, char **buf, size_t *len, size_t *cap);

#endif
