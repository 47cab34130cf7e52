/* Data-parallel training end to end: build-mpi/marsseg (make mpi) under `mpirun --oversubscribe
 * -np 2` on loopback, as root where need be. Skipped (exit 77) when mpirun is not installed.
 *
 *  1. the dist layer, sync BatchNorm and split Dice under mpirun (tests/mpi_dist.c);
 *  2. sync_bn, no dropout, no augmentation: 3 steps of 2 ranks x 16 equal 1 process x 32 within
 *     float tolerance (also with uneven shares, 16 + 15 of 31, and Dice, and with attention
 *     gates); without sync_bn they differ measurably;
 *  3. ranks that do not hold the same config, or the same weights (a different --init file per
 *     rank), stop at once with "ranks diverged" on every rank;
 *  4. SIGUSR1 to mpirun mid-epoch (forwarded to every rank): rank 0 writes one checkpoint,
 *     --resume under the same N ends bit-identical to an uninterrupted 2-rank run; the same
 *     checkpoint resumes in one process; SIGTERM and SIGINT (Ctrl-C) to mpirun, with its default
 *     kill timeout, leave a checkpoint of the stop too;
 *  5. SIGKILL of rank 1 mid-epoch: the job ends non-zero with Open MPI's message naming the rank,
 *     the last checkpoint reads with every CRC right, and --resume continues from it to the same
 *     final weights as the uninterrupted run. */
#include "checkpoint.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"
#include "unet.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char out[1 << 16], tmp[256], mpibin[600], plainbin[600];
/* loopback only: shared memory between the ranks, the launcher's own channel on lo */
#define MPIRUN_ARGS "mpirun --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo"
#define MPIRUN "timeout 120 " MPIRUN_ARGS /* in run(): a hang fails the test instead of blocking it */

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[4096], full[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    const int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `sh -c "exec CMD"` in the background, output to log: the pid is mpirun's */
static pid_t spawn(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static pid_t spawn(const char *log, const char *fmt, ...) {
    char cmd[4096], full[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "exec %s > %s 2>&1", cmd, log);
    const pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* exit status of a spawned mpirun; killed (and -1) after 120 s */
static int wait_exit(pid_t pid) {
    int st = 0;
    for (int i = 0; i < 2400; i++) {
        const pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0) return -1;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void read_text(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Wait until the log of a spawned run says `what` (rank 0's progress lines: "epoch 2/2 batch"
 * appears after the first tenth of epoch 2, so a signal then lands in mid-epoch). */
static int wait_text(const char *log, const char *what, double seconds) {
    static char buf[1 << 16];
    for (double t = 0; t < seconds; t += 0.02) {
        read_text(log, buf, sizeof buf);
        if (strstr(buf, what)) return 1;
        usleep(20000);
    }
    return 0;
}

/* The pid of `rank` of the run writing into dir: Open MPI puts OMPI_COMM_WORLD_RANK in each
 * rank's environment. */
static pid_t rank_pid(int rank, const char *dir) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    char want[64], path[300], buf[1 << 16];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    pid_t found = 0;
    while (d && !found && (e = readdir(d))) {
        const pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        for (size_t i = 0; i < n; i++) buf[i] = buf[i] ? buf[i] : ' ';
        buf[n] = 0;
        if (!strstr(buf, dir) || !strstr(buf, "marsseg train") || strstr(buf, "mpirun")) continue;
        snprintf(path, sizeof path, "/proc/%d/environ", pid);
        f = fopen(path, "r");
        n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
            buf[n] = 0;
            if (!strcmp(buf + i, want)) found = pid;
        }
    }
    if (d) closedir(d);
    return found;
}

static ms_model *load_weights(const char *path) {
    ms_npz *z = NULL;
    ms_model *m = NULL;
    ms_status st = ms_npz_open(&z, path);
    if (!st) st = ms_model_read_npz(z, path, &m);
    ms_npz_close(z);
    CHECK(st == MS_OK, "%s: %s", path, ms_last_error());
    return m;
}

/* share of parameters that moved apart by more than tol (lr 1e-3: an AdamW step moves ~1e-3) */
static double frac_apart(const float *a, const float *b, size_t n, double tol) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += !(fabs((double)a[i] - b[i]) <= tol);
    return (double)k / (double)n;
}

static void write_config(const char *path, const char *json) {
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(json, f) >= 0, "%s", path);
    if (f) fclose(f);
}

/* ------------------------------------------------------------------ 2: 2 x 16 against 1 x 32 */

/* The reference: the same config in one process of the build the ranks run (build-mpi's marsseg
 * started without mpirun trains as the plain one). Not this test's own in-process trainer: under
 * `make test SAN=1` that is the sanitizer build of the core, which is not bit-for-bit the plain
 * build (measured: weights up to 1.9e-3 apart after 3 steps of a config of this size), and the
 * comparison would measure the builds, not the ranks. */
static void one_process(const char *cfgpath, const char *dir) {
    const int rc = run("%s train --config %s --out %s --quiet", mpibin, cfgpath, dir);
    CHECK(rc == 0, "one process: rc %d: %s", rc, out);
}

static void equivalence(const char *loss, int batch, int attention) {
    char cfg[300], json[1024], r1[300], r2[300], r3[300], p[320];
    const char *att = attention ? "true" : "false";
    snprintf(cfg, sizeof cfg, "%s/eq-%s-%d-%s.json", tmp, loss, batch, att);
    snprintf(json, sizeof json,
             "{\"data\":\"%s/datasets/sample.npz\",\"limit\":96,\"val_frac\":0,\"oversample\":1,\"dedup_k\":0,"
             "\"hflip\":false,\"brightness\":0,\"contrast\":0,\"max_shift\":0,\"model\":{\"depth\":2,\"base\":8,\"dropout\":0,"
             "\"attention\":%s},\"loss\":\"%s\",\"batch\":%d,\"epochs\":1,\"threads\":1,\"restore_best\":false,\"early_stop\":0,"
             "\"seed\":7}",
             MS_SRC_DIR, att, loss, batch);
    write_config(cfg, json);
    snprintf(r1, sizeof r1, "%s/eq1-%s-%d-%s", tmp, loss, batch, att);
    snprintf(r2, sizeof r2, "%s/eq2-%s-%d-%s", tmp, loss, batch, att);
    snprintf(r3, sizeof r3, "%s/eq3-%s-%d-%s", tmp, loss, batch, att);
    one_process(cfg, r1); /* 96 tiles: 3 steps of the whole batch */
    int rc = run(MPIRUN " -np 2 %s train --config %s --sync-bn true --out %s --quiet", mpibin, cfg, r2);
    CHECK(rc == 0, "2 ranks with sync_bn: rc %d: %s", rc, out);
    CHECK(strstr(out, "shares of 16") && strstr(out, "sync_bn"), "rank 0 reports the shares: %s", out);
    rc = run(MPIRUN " -np 2 %s train --config %s --out %s --quiet", mpibin, cfg, r3);
    CHECK(rc == 0, "2 ranks: rc %d: %s", rc, out);
    snprintf(p, sizeof p, "%s/model.npz", r1);
    ms_model *a = load_weights(p);
    snprintf(p, sizeof p, "%s/model.npz", r2);
    ms_model *b = load_weights(p);
    snprintf(p, sizeof p, "%s/model.npz", r3);
    ms_model *c = load_weights(p);
    if (a && b && c) {
        const size_t np = a->nparams, nb = a->nbufs;
        const double sync_far = frac_apart(b->params, a->params, np, 1e-4), sync_max = tu_normwise_err(b->params, a->params, np);
        const double own_far = frac_apart(c->params, a->params, np, 1e-4);
        const double sync_bufs = tu_normwise_err(b->bufs, a->bufs, nb), own_bufs = tu_normwise_err(c->bufs, a->bufs, nb);
        printf("%s batch %d%s, after 3 steps: 2 ranks sync_bn vs 1 process: %.4f%% of %zu parameters apart by > 1e-4 "
               "(normwise %.2e), BN running stats %.2e; without sync_bn: %.1f%% apart, running stats %.2e\n",
               loss, batch, attention ? " with attention" : "", 100 * sync_far, np, sync_max, sync_bufs, 100 * own_far, own_bufs);
        CHECK(sync_far <= 0.01 && sync_max < 1e-3, "sync_bn: 2 ranks x %d vs 1 x %d: %g apart, normwise %g", batch / 2, batch,
              sync_far, sync_max);
        CHECK(sync_bufs < 1e-4, "sync_bn: running stats %g", sync_bufs);
        CHECK(own_far > 0.05 && own_bufs > 1e-3, "without sync_bn the result should differ measurably: %g apart, stats %g",
              own_far, own_bufs);
    }
    ms_model_free(a);
    ms_model_free(b);
    ms_model_free(c);
}

/* ------------------------------------------------------------------ 3: divergence */

static void divergence(void) {
    char cfg[300], json[1024], dir[300], w0[300], w1[300], logline[600];
    snprintf(cfg, sizeof cfg, "%s/div.json", tmp);
    snprintf(json, sizeof json,
             "{\"data\":\"%s/datasets/sample.npz\",\"limit\":64,\"model\":{\"depth\":2,\"base\":4},\"batch\":8,\"epochs\":1,"
             "\"threads\":1,\"dedup_k\":0}",
             MS_SRC_DIR);
    write_config(cfg, json);
    /* a config differing between ranks (MPMD: each rank its own command line) */
    snprintf(dir, sizeof dir, "%s/div-cfg", tmp);
    int rc = run(MPIRUN " -np 1 %s train --config %s --out %s --lr 0.001 : -np 1 %s train --config %s --out %s --lr 0.002", mpibin,
                 cfg, dir, mpibin, cfg, dir);
    CHECK(rc != 0 && strstr(out, "ranks diverged: 1 of 2 ranks hold a training config different from rank 0's"),
          "different configs: rc %d: %s", rc, out);
    /* the same config, but --init names a different file on each rank (each runs in its own
     * directory): the weights differ from the first step */
    snprintf(w0, sizeof w0, "%s/w0", tmp);
    snprintf(w1, sizeof w1, "%s/w1", tmp);
    mkdir(w0, 0755);
    mkdir(w1, 0755);
    for (int i = 0; i < 2; i++) {
        ms_model *m = NULL;
        const ms_model_config mc = {2, 4, 5, 0.1f, 0, 0};
        CHECK_OK(ms_model_create(&m, &mc, 100 + i));
        snprintf(logline, sizeof logline, "%s/init.npz", i ? w1 : w0);
        if (m) CHECK_OK(ms_model_save(m, logline, NULL));
        ms_model_free(m);
    }
    snprintf(dir, sizeof dir, "%s/div-w", tmp);
    rc = run(MPIRUN " -np 1 -wdir %s %s train --config %s --init init.npz --out %s : -np 1 -wdir %s %s train --config %s --init init.npz --out %s",
             w0, mpibin, cfg, dir, w1, mpibin, cfg, dir);
    CHECK(rc != 0 && strstr(out, "ranks diverged: 1 of 2 ranks hold weights or optimiser state at step 0 different from rank 0's"),
          "different weights: rc %d: %s", rc, out);
    /* the agreed failure is reported once, by rank 0 (rank 1 may still say it got mpirun's
     * SIGTERM when rank 0's exit ends the job first) */
    const char *once = strstr(out, "ranks diverged");
    CHECK(once && !strstr(once + 1, "ranks diverged"), "the divergence is reported once: %s", out);
}

/* ------------------------------------------------------------------ 4, 5: stop, kill, resume */

static int same_weights(const char *pa, const char *pb) {
    ms_model *a = load_weights(pa), *b = load_weights(pb);
    const int same = a && b && a->nparams == b->nparams && !memcmp(a->params, b->params, sizeof(float) * a->nparams) &&
                     !memcmp(a->bufs, b->bufs, sizeof(float) * a->nbufs) && a->num_batches_tracked == b->num_batches_tracked;
    ms_model_free(a);
    ms_model_free(b);
    return same;
}

static void stop_kill_resume(void) {
    char cfg[300], json[1024], ra[300], rb[300], rb1[300], rc_[300], rd[300], log[320], ck[320], pa[320], pb[320];
    static char text[1 << 16];
    snprintf(cfg, sizeof cfg, "%s/run.json", tmp);
    snprintf(json, sizeof json,
             "{\"data\":\"%s/datasets/sample.npz\",\"limit\":160,\"model\":{\"depth\":2,\"base\":4,\"dropout\":0.1},\"batch\":4,\"epochs\":2,"
             "\"threads\":1,\"dedup_k\":0,\"restore_best\":false,\"seed\":3}",
             MS_SRC_DIR);
    write_config(cfg, json);
    snprintf(ra, sizeof ra, "%s/ra", tmp);
    snprintf(rb, sizeof rb, "%s/rb", tmp);
    snprintf(rb1, sizeof rb1, "%s/rb1", tmp);
    snprintf(rc_, sizeof rc_, "%s/rc", tmp);
    snprintf(rd, sizeof rd, "%s/rd", tmp);
    snprintf(pa, sizeof pa, "%s/model.npz", ra);

    /* the uninterrupted 2-rank run */
    int rc = run(MPIRUN " -np 2 %s train --config %s --out %s --quiet", mpibin, cfg, ra);
    CHECK(rc == 0, "uninterrupted run: rc %d: %s", rc, out);

    /* 4: SIGUSR1 to mpirun in the second epoch (mpirun forwards it to every rank and waits for
     * them, output included): one checkpoint, by rank 0; resumed under 2 ranks, bit-identical */
    snprintf(log, sizeof log, "%s/rb.log", tmp);
    snprintf(ck, sizeof ck, "%s/checkpoint.npz", rb);
    pid_t pid = spawn(log, MPIRUN_ARGS " -np 2 %s train --config %s --out %s", mpibin, cfg, rb);
    CHECK(wait_text(log, "epoch 2/2 batch", 60), "no progress in the second epoch");
    kill(pid, SIGUSR1);
    rc = wait_exit(pid);
    read_text(log, text, sizeof text);
    CHECK(rc == 130 && strstr(text, "paused at epoch 2 batch") && strstr(text, "--resume"), "SIGUSR1: rc %d: %s", rc, text);
    CHECK(strstr(text, "rank 0 of 2: signal received") && strstr(text, "rank 1 of 2: signal received"),
          "every rank says it got the signal: %s", text);
    const char *first = strstr(text, "paused at epoch");
    CHECK(first && !strstr(first + 1, "paused at epoch"), "one checkpoint, by rank 0: %s", text);
    rc = run("cp -r %s %s", rb, rb1);
    rc = run(MPIRUN " -np 2 %s train --resume %s --quiet", mpibin, rb);
    CHECK(rc == 0 && strstr(out, "resumed") && !strstr(out, "batch 0 (step"), "resume under 2 ranks, mid-epoch: rc %d: %s", rc, out);
    snprintf(pb, sizeof pb, "%s/model.npz", rb);
    CHECK(same_weights(pa, pb), "a 2-rank run paused mid-epoch and resumed under 2 ranks is bit-identical to an uninterrupted one");
    /* the same mid-epoch checkpoint in one process (the plain build): it trains on, not bit-identically */
    rc = run("%s train --resume %s --quiet", plainbin, rb1);
    CHECK(rc == 0 && strstr(out, "trained 2 epochs"), "resume in one process: rc %d: %s", rc, out);

    /* SIGTERM and SIGINT (Ctrl-C) to mpirun, with its default odls_base_sigkill_timeout of 1 s:
     * mpirun sends each rank SIGCONT, sleeps 1 s, SIGTERM, sleeps 1 s, SIGKILL (and forwards no
     * output while it sleeps); the ranks take the SIGCONT as the stop request, agree on the next
     * batch, and rank 0 writes the checkpoint within those 2 s. 20 epochs: the run cannot end by
     * itself in that time, so only a stop writes a checkpoint after the signal. Between the two,
     * a SIGCONT to one rank alone: a clean pause of the whole job (exit 130, the "paused" line),
     * which no other signal of mpirun's sequence would give. */
    snprintf(ck, sizeof ck, "%s/checkpoint.npz", rd);
    int last = 0; /* the previous stop's position, epoch * 1000 + batch */
    for (int round = 0; round < 3; round++) {
        const int sig = round == 0 ? SIGTERM : round == 1 ? SIGCONT : SIGINT;
        snprintf(log, sizeof log, "%s/rd%d.log", tmp, round);
        if (round == 0)
            pid = spawn(log, MPIRUN_ARGS " -np 2 %s train --config %s --out %s --epochs 20", mpibin, cfg, rd);
        else /* Ctrl-C of the resumed run */
            pid = spawn(log, MPIRUN_ARGS " -np 2 %s train --resume %s", mpibin, rd);
        CHECK(wait_text(log, round ? "/20 batch" : "epoch 2/20 batch", 60), "%s: no progress", strsignal(sig));
        struct stat sb, before; /* an atomic write is a new file: a new inode once the stop wrote */
        CHECK(stat(ck, &before) == 0, "%s: the epoch-1 checkpoint", strsignal(sig));
        const pid_t to = sig == SIGCONT ? rank_pid(1, rd) : pid;
        CHECK(to > 0, "rank 1 not found");
        if (to > 0) kill(to, sig);
        rc = wait_exit(pid);
        CHECK(rc != 0, "%s: rc %d", strsignal(sig), rc);
        if (sig == SIGCONT) {
            read_text(log, text, sizeof text);
            CHECK(rc == 130 && strstr(text, "paused at epoch"), "SIGCONT to rank 1 pauses the job: rc %d: %s", rc, text);
        }
        CHECK(stat(ck, &sb) == 0 && sb.st_ino != before.st_ino, "%s: the stop wrote the checkpoint", strsignal(sig));
        ms_checkpoint cp;
        CHECK_OK(ms_checkpoint_load(ck, &cp)); /* every CRC checked */
        const ms_checkpoint_state *cs = &cp.state;
        const int at = cs->epoch * 1000 + cs->batch_in_epoch;
        CHECK(cs->epoch >= 1 && cs->epoch < 20 && at > last, "%s: a checkpoint in mid-run, after the last (epoch %d batch %d)",
              strsignal(sig), cs->epoch, cs->batch_in_epoch);
        last = at;
        printf("%s to %s: checkpoint at epoch %d batch %d, mpirun exit %d\n", strsignal(sig), sig == SIGCONT ? "rank 1" : "mpirun", cs->epoch + 1, cs->batch_in_epoch, rc);
        ms_checkpoint_free(&cp);
    }
    snprintf(pb, sizeof pb, "%s/model.npz", rd);
    CHECK(access(pb, F_OK) != 0, "a stopped run wrote no model.npz");

    /* 5: SIGKILL of rank 1 in the second epoch */
    snprintf(log, sizeof log, "%s/rc.log", tmp);
    snprintf(ck, sizeof ck, "%s/checkpoint.npz", rc_);
    pid = spawn(log, MPIRUN_ARGS " -np 2 %s train --config %s --out %s", mpibin, cfg, rc_);
    CHECK(wait_text(log, "epoch 2/2 batch", 60), "no progress in the second epoch");
    const pid_t victim = rank_pid(1, rc_);
    CHECK(victim > 0, "rank 1 not found");
    if (victim > 0) kill(victim, SIGKILL);
    rc = wait_exit(pid);
    read_text(log, text, sizeof text);
    CHECK(rc != 0 && strstr(text, "rank 1") && strstr(text, "signal 9"), "SIGKILL of rank 1: rc %d: %s", rc, text);
    ms_checkpoint cp;
    CHECK_OK(ms_checkpoint_load(ck, &cp)); /* every entry CRC-checked */
    CHECK(cp.state.epoch == 1 && cp.state.batch_in_epoch == 0 && cp.ncurves == 1, "the epoch-1 checkpoint: epoch %d batch %d",
          cp.state.epoch, cp.state.batch_in_epoch);
    ms_checkpoint_free(&cp);
    rc = run(MPIRUN " -np 2 %s train --resume %s --quiet", mpibin, rc_);
    CHECK(rc == 0 && strstr(out, "resumed") && strstr(out, "at epoch 2 batch 0"), "resume after the kill: rc %d: %s", rc, out);
    snprintf(pb, sizeof pb, "%s/model.npz", rc_);
    CHECK(same_weights(pa, pb), "resumed from the last checkpoint after a rank died: the uninterrupted run's weights");
}

int main(void) {
    /* the comparisons against one process need the same convolution algorithms on both sides:
     * the fixed rules (a data-parallel run uses them anyway), not per-process measurements */
    setenv("MARSSEG_PLAN", "off", 1);
    if (run("command -v mpirun") != 0) {
        printf("mpirun is not installed (Debian: openmpi-bin): skipped\n");
        return 77;
    }
    snprintf(mpibin, sizeof mpibin, "%s/marsseg", MS_MPI_BUILD);
    snprintf(plainbin, sizeof plainbin, "%s", MS_PLAIN_BIN); /* this build's own marsseg: one process */
    char dist[600];
    snprintf(dist, sizeof dist, "%s/tests/mpi_dist", MS_MPI_BUILD);
    if (access(mpibin, X_OK) || access(dist, X_OK)) {
        fprintf(stderr, "no %s or %s: build them with `make mpi` (make test does)\n", mpibin, dist);
        return 1;
    }
    /* Open MPI refuses root unless told; CI and this machine run as root */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    snprintf(tmp, sizeof tmp, "/tmp/marsseg-test-mpi-XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    const double t0 = (double)time(NULL);

    int rc = run(MPIRUN " -np 2 %s", dist);
    CHECK(rc == 0, "mpi_dist: rc %d: %s", rc, out);

    equivalence("wce", 32, 0);
    equivalence("wce+dice", 31, 0); /* shares of 16 and 15 */
    equivalence("wce", 32, 1);      /* the attention gates' BatchNorms synchronised too */
    divergence();
    stop_kill_resume();

    printf("%.0f s\n", (double)time(NULL) - t0);
    if (!tu_failures) run("rm -rf %s", tmp);
    return TEST_END();
}
