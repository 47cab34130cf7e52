/* The job queue: FIFO, one worker thread that runs one job at a time through its kind's run
 * function, the end of a job (job_finish), start and stop (see jobs.h for the locking). */
#include "jobs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void job_enqueue(struct jobs *js, struct job *jb) {
    jb->qnext = NULL;
    if (js->qtail) js->qtail->qnext = jb;
    else js->qhead = jb;
    js->qtail = jb;
    js->nqueued++;
    pthread_cond_signal(&js->cv);
}

int job_dequeue(struct jobs *js, struct job *jb) {
    struct job **pp = &js->qhead, *prev = NULL;
    while (*pp && *pp != jb) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp) return 0;
    *pp = jb->qnext;
    if (js->qtail == jb) js->qtail = prev;
    jb->qnext = NULL;
    js->nqueued--;
    return 1;
}

void job_finish(struct jobs *js, struct job *jb, enum job_state state, const char *fmt, ...) {
    char error[sizeof jb->error] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(error, sizeof error, fmt, ap);
        va_end(ap);
    }
    const double t = now_wall();
    /* On disk first, visible second: a client never sees an outcome (succeeded, failed,
     * cancelled) that a crash right after could take back. The snapshot is taken from a
     * shallow copy carrying the new state; job_json only reads it, under mu. */
    pthread_mutex_lock(&js->mu);
    struct job view = *jb;
    view.state = state;
    view.has_progress = 0;
    if (state != JS_QUEUED) view.finished = t;
    memcpy(view.error, error, sizeof view.error);
    unsigned long version = ++jb->version;
    cJSON *snap = job_json(&view, VIEW_PERSIST);
    pthread_mutex_unlock(&js->mu);
    job_write_snapshot(js, jb, version, snap);
    pthread_mutex_lock(&js->mu);
    jb->state = state;
    jb->has_progress = 0;
    if (state != JS_QUEUED) jb->finished = t;
    memcpy(jb->error, error, sizeof jb->error);
    if (state != JS_QUEUED) js->finished_total[job_kind_index(jb->kind)][state]++;
    pthread_mutex_unlock(&js->mu);
    log_msg("job %s: %s%s%s", jb->id, state == JS_QUEUED ? "paused (resumes on restart)" : job_state_names[state],
            error[0] ? ": " : "", error);
}

static void *worker_main(void *arg) {
    struct jobs *js = arg;
    /* Jobs run at a lower priority than the HTTP and inference threads, so that /segment stays
     * responsive while a job trains. On Linux nice is per thread, and the OpenMP team this
     * thread starts inherits it. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        log_msg("jobs: could not lower the worker thread's priority: %s", strerror(errno));
    pthread_mutex_lock(&js->mu);
    for (;;) {
        while (!js->stop && !js->qhead) pthread_cond_wait(&js->cv, &js->mu);
        if (js->stop) break;
        struct job *jb = js->qhead;
        job_dequeue(js, jb);
        jb->state = JS_RUNNING;
        jb->started = now_wall();
        jb->finished = 0;
        jb->error[0] = 0;
        jb->has_progress = 0;
        jb->cancel_requested = jb->pause_requested = 0;
        js->running = jb;
        pthread_mutex_unlock(&js->mu);
        log_msg("job %s: %s on dataset %s", jb->id, jb->resume ? "resuming" : "starting", jb->dataset);
        job_persist(js, jb);
        jb->kind->run(js, jb);
        pthread_mutex_lock(&js->mu);
        js->running = NULL;
    }
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

int jobs_start(struct jobs *js) {
    if (pthread_create(&js->worker, NULL, worker_main, js) != 0) return -1;
    js->worker_started = 1;
    return 0;
}

void jobs_stop(struct jobs *js) {
    if (!js) return;
    pthread_mutex_lock(&js->mu);
    js->stop = 1;
    if (js->running) {
        js->running->pause_requested = 1;
        js->running->kind->interrupt(js->running, 1);
    }
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    if (js->worker_started) pthread_join(js->worker, NULL);
    js->worker_started = 0;
}
