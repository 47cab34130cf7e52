/* An inference replica follows the trainer through the data directory they share (a volume, or
 * the same disk): the trainer is the one writer, the replica only reads.
 *
 *  - the active model: the trainer writes <data>/active_model.json atomically (temp, fsync,
 *    rename) whenever it activates one; a rename makes a new inode, so a stat every
 *    FOLLOW_POLL_MS (inode, size, mtime) sees every switch, and models_follow_saved then loads
 *    the model and swaps it in as the trainer's own switch does (an immutable snapshot, in-flight
 *    requests finish on the model they started with). Polling rather than inotify: inotify does
 *    not see writes made by another host on a network file system or another container's
 *    overlay, a stat does, and four stats a second cost nothing.
 *  - the models: a job's model is <data>/jobs/<id>/model.npz once its job.json says succeeded
 *    (the trainer writes model.npz atomically first, then job.json). A replica lists them
 *    (GET /models) after a scan of the job directories every FOLLOW_SCAN_MS, and registers the
 *    one active_model.json names at once (the trainer activates a model before it writes the
 *    job's outcome, and model.npz is complete by then).
 * A switch that cannot be applied (the file names a model this replica cannot load) is logged
 * once and retried at every poll; the replica serves the model it has meanwhile. */
#include "handlers.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define FOLLOW_SCAN_MS 2000

struct follower {
    struct server *srv;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, started;
    char state_path[PATH_MAX], jobs_dir[PATH_MAX];
    struct stat seen; /* active_model.json as last applied (st_ino 0: none yet) */
    int pending;      /* the last change is not applied yet */
    char failed[64];  /* the id whose failure was logged last */
    double last_scan;
};

const char *server_role_name(enum server_role r) {
    return r == ROLE_INFERENCE ? "inference" : r == ROLE_TRAINER ? "trainer" : "all";
}

/* Register jobs/<id>/model.npz under id. With require_success, only if job.json says so. */
static void register_job_model(struct follower *f, const char *id, int require_success) {
    char path[PATH_MAX];
    struct stat sb;
    if (models_known(f->srv->models, id, NULL) || !fmt_path(path, sizeof path, "%s/%s/model.npz", f->jobs_dir, id) ||
        stat(path, &sb) != 0)
        return;
    if (require_success) {
        char jpath[PATH_MAX];
        if (!fmt_path(jpath, sizeof jpath, "%s/%s/job.json", f->jobs_dir, id)) return;
        cJSON *j = read_json_file(jpath, 64u << 20);
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(j, "state"), *model = cJSON_GetObjectItemCaseSensitive(j, "model");
        const int ok = cJSON_IsString(state) && strcmp(state->valuestring, "succeeded") == 0 && cJSON_IsString(model) &&
                       strcmp(model->valuestring, id) == 0;
        cJSON_Delete(j);
        if (!ok) return;
    }
    if (models_register(f->srv->models, id, path, "job", id, 0)) log_msg("model %s: %s", id, ms_last_error());
    else log_msg("model %s registered (trained by the trainer)", id);
}

static void scan_jobs(struct follower *f) {
    DIR *d = opendir(f->jobs_dir);
    if (!d) return; /* no job has run yet */
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] == 'j' && is_safe_id(de->d_name, 15)) register_job_model(f, de->d_name, 1);
    closedir(d);
}

static void follow_once(struct follower *f) {
    struct stat sb;
    if (now_mono() - f->last_scan >= FOLLOW_SCAN_MS / 1e3) {
        f->last_scan = now_mono();
        scan_jobs(f);
    }
    if (stat(f->state_path, &sb) != 0) return; /* nothing activated yet: the default model serves */
    if (!f->pending && sb.st_ino == f->seen.st_ino && sb.st_size == f->seen.st_size &&
        sb.st_mtim.tv_sec == f->seen.st_mtim.tv_sec && sb.st_mtim.tv_nsec == f->seen.st_mtim.tv_nsec)
        return;
    f->seen = sb;
    ms_status st = models_follow_saved(f->srv->models);
    if (st == MS_ERR_NOTFOUND) {
        char id[64];
        models_saved_id(f->srv->models, id, sizeof id);
        if (id[0] && is_safe_id(id, 15)) register_job_model(f, id, 0);
        st = models_follow_saved(f->srv->models);
    }
    f->pending = st != MS_OK;
    if (st) {
        char id[64];
        models_saved_id(f->srv->models, id, sizeof id);
        if (strcmp(id, f->failed) != 0) log_msg("cannot follow the active model %s yet: %s", id, ms_last_error());
        snprintf(f->failed, sizeof f->failed, "%s", id);
    } else {
        f->failed[0] = 0;
    }
}

static void *follow_main(void *arg) {
    struct follower *f = arg;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += FOLLOW_POLL_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&f->cv, &f->mu, &until);
        if (f->stop) break;
        pthread_mutex_unlock(&f->mu);
        follow_once(f);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int follower_start(struct server *srv, struct follower **out) {
    struct follower *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->srv = srv;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (!fmt_path(f->state_path, sizeof f->state_path, "%s/active_model.json", srv->cfg.data_dir) ||
        !fmt_path(f->jobs_dir, sizeof f->jobs_dir, "%s/jobs", srv->cfg.data_dir)) {
        follower_stop(f);
        return -1;
    }
    f->pending = 1;
    f->last_scan = -1e9;
    follow_once(f); /* serve the trainer's choice from the first request on */
    if (pthread_create(&f->thread, NULL, follow_main, f) != 0) {
        follower_stop(f);
        return -1;
    }
    f->started = 1;
    *out = f;
    return 0;
}

void follower_stop(struct follower *f) {
    if (!f) return;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}
