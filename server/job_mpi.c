/* The MPI training job kind (POST /jobs {"ranks": N} on a server started with --mpi-hostfile):
 * the worker runs `mpirun -np N --hostfile H <MPI build> train --config <dir>/train_config.json
 * --out <dir>` (`train --resume <dir>` to continue) and follows it from outside, since the
 * trainer now lives in other processes, maybe on other hosts:
 *
 *  - curves: from the run directory's checkpoint, their owner (ms_run_curves), re-read whenever
 *    rank 0 rewrote it (a new inode: every write is an atomic rename), so they are exactly what a
 *    local job shows; live batch progress and log lines from rank 0's output, which mpirun
 *    forwards to our pipe (the progress lines come every tenth of an epoch);
 *  - stopping: cancel and pause (DELETE, service shutdown) send mpirun SIGUSR1, which it forwards
 *    to every rank at once without killing them: the ranks agree on the next batch, rank 0 writes
 *    a mid-epoch checkpoint, all exit 130 and so does mpirun. Not SIGTERM: mpirun 4.1 answers it
 *    with SIGCONT, a 1 s sleep, SIGTERM, a 1 s sleep, SIGKILL (README, "Stopping"). If the job
 *    has not ended STOP_GRACE_S after SIGUSR1, mpirun gets SIGTERM, and SIGKILL after as long again;
 *  - the outcome from mpirun's exit: 0 with model.npz is success (the model is registered and
 *    activated as a local job's), a stop we asked for is cancelled or paused (resumable: the
 *    checkpoint), anything else failed with the last line rank 0 or mpirun printed.
 * mpirun runs in a process group of its own (a terminal's Ctrl-C is the service's to handle)
 * and gets SIGTERM if the service dies (PR_SET_PDEATHSIG): its ranks then checkpoint and stop
 * rather than train on, unseen, into a directory that a resumed job would share. */
#include "jobs.h"

#include "marsseg_curves.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define STOP_GRACE_S 120.0

struct mpi_run {
    struct jobs *js;
    struct job *jb;
    char data_path[PATH_MAX];
    char line[2048];
    size_t nline;
    char last[512]; /* the last message of marsseg (or else of mpirun): a failed run's error */
    int ours;       /* last holds a line of marsseg's */
    struct stat ck; /* checkpoint.npz as last read */
};

/* rank 0's texts name the dataset file and the job directory; clients see ids instead */
static void scrub(const struct mpi_run *m, char *dst, size_t cap, const char *src) {
    job_scrub(m->jb, m->data_path, dst, cap, src);
}

/* "1h05m" or "2m24s" (cli_fmt_eta) in seconds */
static double parse_eta(const char *s) {
    double h = 0, mnt = 0, sec = 0;
    if (sscanf(s, "%lfh%lfm", &h, &mnt) == 2) return 3600 * h + 60 * mnt;
    if (sscanf(s, "%lfm%lfs", &mnt, &sec) == 2) return 60 * mnt + sec;
    return 0;
}

static void add_log(struct mpi_run *m, const char *line) {
    char clean[1024];
    scrub(m, clean, sizeof clean, line);
    job_log(m->js, m->jb, clean);
}

/* one line of mpirun's output: rank 0's progress, epoch summaries and messages, or mpirun's */
static void on_line(struct mpi_run *m, char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = 0;
    if (!n) return;
    ms_progress p;
    char eta[32];
    memset(&p, 0, sizeof p);
    if (sscanf(line, "epoch %d/%d batch %d/%d loss %lf %lf img/s ETA %31s", &p.epoch, &p.epochs, &p.batch, &p.batches, &p.loss,
               &p.images_per_s, eta) == 7) {
        p.eta_s = parse_eta(eta);
        pthread_mutex_lock(&m->js->mu);
        m->jb->progress = p;
        m->jb->has_progress = 1;
        pthread_mutex_unlock(&m->js->mu);
        return;
    }
    const int ours = strncmp(line, "marsseg ", 8) == 0;
    if (ours || (!m->ours && strncmp(line, "----", 4) != 0)) scrub(m, m->last, sizeof m->last, line);
    m->ours |= ours;
    add_log(m, line);
}

static void read_output(struct mpi_run *m, int fd, int *eof) {
    char buf[4096];
    ssize_t got = read(fd, buf, sizeof buf);
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
        *eof = 1;
        got = 0;
    }
    for (ssize_t i = 0; i < got; i++) {
        if (buf[i] == '\n' || m->nline + 1 >= sizeof m->line) {
            m->line[m->nline] = 0;
            on_line(m, m->line);
            m->nline = 0;
            if (buf[i] == '\n') continue;
        }
        m->line[m->nline++] = buf[i];
    }
    if (*eof && m->nline) {
        m->line[m->nline] = 0;
        on_line(m, m->line);
        m->nline = 0;
    }
}

/* The curves again when rank 0 rewrote its checkpoint (each write is a new inode). */
static void follow_checkpoint(struct mpi_run *m) {
    char path[PATH_MAX];
    struct stat sb;
    if (!fmt_path(path, sizeof path, "%s/checkpoint.npz", m->jb->dir) || stat(path, &sb) != 0) return;
    if (sb.st_ino == m->ck.st_ino && sb.st_mtim.tv_sec == m->ck.st_mtim.tv_sec && sb.st_mtim.tv_nsec == m->ck.st_mtim.tv_nsec)
        return;
    ms_epoch_stats *c = NULL;
    int n = 0;
    if (ms_run_curves(m->jb->dir, &c, &n) != MS_OK) return; /* e.g. replaced while read: next time */
    m->ck = sb;
    if (n > MAX_CURVE_POINTS) n = MAX_CURVE_POINTS;
    pthread_mutex_lock(&m->js->mu);
    const int changed = n != m->jb->ncurves;
    free(m->jb->curves);
    m->jb->curves = c;
    m->jb->ncurves = m->jb->capcurves = n;
    pthread_mutex_unlock(&m->js->mu);
    if (changed) {
        if (n) {
            const ms_epoch_stats *e = &c[n - 1];
            log_msg("job %s: epoch %d loss %.4f val_loss %.4f val_mIoU %.4f lr %.2g %.1fs", m->jb->id, e->epoch, e->train_loss,
                    e->val_loss, e->val_miou, e->lr, e->seconds);
        }
        job_persist(m->js, m->jb);
    }
}

/* The environment of mpirun: ours, plus Open MPI's consent to run as root when we are root (a
 * container's default user; the Docker image itself runs as uid 10001). NULL on no memory. */
static char **child_env(void) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 3, sizeof *env);
    if (!env) return NULL;
    memcpy(env, environ, n * sizeof *env);
    if (geteuid() == 0) {
        if (!getenv("OMPI_ALLOW_RUN_AS_ROOT")) env[n++] = "OMPI_ALLOW_RUN_AS_ROOT=1";
        if (!getenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")) env[n++] = "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1";
    }
    return env;
}

/* fork + exec of mpirun with stdout and stderr into out_fd. Between fork and exec only
 * async-signal-safe calls (this process has threads). -1 with errno. */
static pid_t spawn(const char *path, char *const argv[], char *const envp[], int out_fd) {
    const pid_t parent = getpid();
    const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) return -1;
    const pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127); /* the service died before prctl */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* serve blocks SIGINT/SIGTERM in every thread */
        signal(SIGPIPE, SIG_DFL);
        if (dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0) _exit(127);
        close_range(3, ~0u, 0); /* the service's sockets and files are none of mpirun's business */
        execve(path, argv, envp);
        _exit(127);
    }
    const int e = errno;
    close(devnull);
    errno = e;
    return pid;
}

/* The fresh run's config, with the dataset's path, for `train --config` (stays in the job dir). */
static ms_status write_config(struct jobs *js, struct job *jb, const char *path) {
    ms_train_config cfg;
    ms_status st = job_train_config(js, jb->dataset, jb->config, &cfg);
    if (st) return st;
    cJSON *j = ms_train_config_to_cjson(&cfg);
    st = j ? write_json_atomic(path, j) : MS_ERR_NOMEM;
    cJSON_Delete(j);
    return st;
}

static void run_mpi(struct jobs *js, struct job *jb) {
    struct server *srv = js->srv;
    struct mpi_run m = {.js = js, .jb = jb};
    if (datasets_path(srv->datasets, jb->dataset, m.data_path, sizeof m.data_path)) m.data_path[0] = 0;
    char ckpt[PATH_MAX], cfgpath[PATH_MAX], np[16];
    struct stat sb;
    if (!fmt_path(ckpt, sizeof ckpt, "%s/checkpoint.npz", jb->dir) || !fmt_path(cfgpath, sizeof cfgpath, "%s/train_config.json", jb->dir)) {
        job_finish(js, jb, JS_FAILED, "job directory path too long");
        return;
    }
    const int resume = jb->resume && stat(ckpt, &sb) == 0;
    if (!resume) {
        ms_status st = write_config(js, jb, cfgpath);
        if (st) {
            char err[512];
            scrub(&m, err, sizeof err, ms_last_error());
            job_finish(js, jb, JS_FAILED, "%s: %s", ms_strerror(st), err);
            return;
        }
    }
    snprintf(np, sizeof np, "%d", jb->ranks);
    char *argv[16];
    int a = 0;
    argv[a++] = "mpirun";
    argv[a++] = "-np";
    argv[a++] = np;
    argv[a++] = "--hostfile";
    argv[a++] = srv->cfg.mpi_hostfile;
    argv[a++] = srv->cfg.mpi_bin;
    argv[a++] = "train";
    argv[a++] = resume ? "--resume" : "--config";
    argv[a++] = resume ? jb->dir : cfgpath;
    if (!resume) {
        argv[a++] = "--out";
        argv[a++] = jb->dir;
    }
    argv[a] = NULL;
    int fds[2] = {-1, -1};
    char **env = child_env();
    pid_t pid = -1;
    pthread_mutex_lock(&js->mu);
    const int cancel = jb->cancel_requested, stop = js->stop;
    if (!cancel && !stop && env && pipe2(fds, O_CLOEXEC) == 0) pid = spawn(srv->mpirun, argv, env, fds[1]);
    const int spawn_errno = errno;
    pthread_mutex_unlock(&js->mu);
    free(env);
    if (fds[1] >= 0) close(fds[1]);
    if (cancel || stop) { /* asked before it started */
        if (cancel) job_finish(js, jb, JS_CANCELLED, NULL);
        else job_finish(js, jb, JS_QUEUED, NULL);
        return;
    }
    if (pid < 0) {
        if (fds[0] >= 0) close(fds[0]);
        job_finish(js, jb, JS_FAILED, "cannot start mpirun: %s", env ? strerror(spawn_errno) : "out of memory");
        return;
    }
    log_msg("job %s: mpirun -np %d (pid %d)%s", jb->id, jb->ranks, (int)pid, resume ? ", resuming" : "");
    atomic_store(&srv->training_active, 1); /* ranks on this host share its cores with /segment */
    double signalled = 0;
    int eof = 0, signals = 0;
    while (!eof) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, 250) > 0) read_output(&m, fds[0], &eof);
        follow_checkpoint(&m);
        pthread_mutex_lock(&js->mu);
        const int want_stop = jb->cancel_requested || jb->pause_requested;
        pthread_mutex_unlock(&js->mu);
        if (want_stop && signals < 3 && now_mono() - signalled >= (signals ? STOP_GRACE_S : 0)) {
            static const int sigs[] = {SIGUSR1, SIGTERM, SIGKILL};
            if (signals) log_msg("job %s: mpirun did not stop %.0f s after the last signal: %s", jb->id, STOP_GRACE_S,
                                 strsignal(sigs[signals]));
            kill(sigs[signals] == SIGKILL ? -pid : pid, sigs[signals]);
            signals++;
            signalled = now_mono();
        }
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    atomic_store(&srv->training_active, 0);
    follow_checkpoint(&m);
    pthread_mutex_lock(&js->mu);
    const int cancelled = jb->cancel_requested, paused = jb->pause_requested;
    pthread_mutex_unlock(&js->mu);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    char model[PATH_MAX];
    if (code == 0 && fmt_path(model, sizeof model, "%s/model.npz", jb->dir) && stat(model, &sb) == 0) {
        job_train_succeeded(js, jb, m.data_path);
    } else if ((cancelled || paused) && code != 0) {
        if (cancelled) {
            job_finish(js, jb, JS_CANCELLED, NULL);
        } else {
            pthread_mutex_lock(&js->mu);
            jb->resume = 1;
            pthread_mutex_unlock(&js->mu);
            job_finish(js, jb, JS_QUEUED, NULL);
        }
    } else if (code == 130) { /* someone else's SIGUSR1 or SIGINT: the ranks checkpointed */
        pthread_mutex_lock(&js->mu);
        jb->resume = 1;
        pthread_mutex_unlock(&js->mu);
        job_finish(js, jb, JS_INTERRUPTED, "mpirun was stopped from outside the service; POST /jobs/%s/resume continues it", jb->id);
    } else {
        job_finish(js, jb, JS_FAILED, "mpirun exited with status %d%s%s", code, m.last[0] ? ": " : "", m.last);
    }
}

/* The monitor in run_mpi sees the request (cancel_requested, pause_requested, set by the caller
 * under mu) within 250 ms and signals mpirun itself, so no pid is ever signalled after it was
 * reaped. */
static void interrupt_mpi(struct job *jb, int pause) {
    if (pause) log_msg("job %s: pausing for shutdown (SIGUSR1 to mpirun)", jb->id);
}

const struct job_kind job_kind_mpi = {"train", 'j', "/jobs", 0, run_mpi, interrupt_mpi};
