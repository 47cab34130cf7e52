/* MPI jobs through the service (serve --mpi-hostfile, POST /jobs {"ranks": N}) on loopback: a
 * hostfile "localhost slots=2", the MPI build (build-mpi/marsseg, `make mpi`) started by mpirun.
 *
 *  1. refusals, each clear and leaving no job behind: ranks without a hostfile configured, more
 *     ranks than slots, not a whole number, the hostfile gone after start; at start: a missing
 *     hostfile, mpirun not on PATH, no MPI build, a hostfile for an inference replica;
 *  2. /schema says mpi.max_ranks;
 *  3. a 2-rank job: live curves (points from the checkpoint, batch progress from rank 0's
 *     output), cancel (DELETE: mpirun gets SIGUSR1, the ranks checkpoint), resume, then the
 *     service's SIGTERM pauses it (queued, resume) and a restart finishes it: every epoch's point,
 *     the model registered and serving.
 * Skipped (77) without mpirun, as tests/test_mpi.c. */
#include "marsseg.h"
#include "marsseg_curves.h"
#include "testutil.h"
#include "srvutil.h"

#include <dirent.h>

#define MPI_BIN MS_SRC_DIR "/build-mpi/marsseg"

static const char *const mpi_env[] = {"OMPI_MCA_btl=self,vader", "OMPI_MCA_oob_tcp_if_include=lo", NULL};
static char g_hostfile[PATH_MAX];

static int start(struct srv *s, const char *data, const char *hostfile) {
    const char *extra[] = {"--mpi-hostfile", hostfile, "--mpi-marsseg", MPI_BIN, NULL};
    struct srv_opts o = {.extra = hostfile ? extra : NULL, .env = mpi_env, .model = MS_SRC_DIR "/models/default.npz",
                         .dataset = MS_SRC_DIR "/datasets/sample.npz"};
    return srv_start_opts(s, data, &o);
}

static int count_jobs(const char *data) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/jobs", data);
    DIR *d = opendir(p);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] == 'j';
    if (d) closedir(d);
    return n;
}

/* `marsseg serve ARGS` must refuse to start with exit 2 and a message containing want */
static void refuses_start(const char *env, const char *args, const char *want) {
    char cmd[PATH_MAX * 3], out[4096];
    snprintf(cmd, sizeof cmd, "%s %s serve --port 0 --data-dir %s/refused %s 2>&1", env, g_bin, g_tmp, args);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2 && strstr(out, want), "serve %s: exit %d, want \"%s\": %s", args,
          WIFEXITED(st) ? WEXITSTATUS(st) : -1, want, out);
}

static void refuses_job(int port, const char *json, int status, const char *code, const char *data) {
    const int before = count_jobs(data);
    struct resp r;
    send_json("POST", port, "/jobs", json, &r);
    EXPECT_ERROR(r, status, code);
    printf("POST /jobs %s: %ld %s\n", json, r.status, r.body ? r.body : "");
    resp_free(&r);
    CHECK(count_jobs(data) == before, "nothing written for a refused job");
}

static int curve_points(int port, const char *id, cJSON **progress) {
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s/curves", id);
    cJSON *j = get_json(port, path);
    const int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "points"));
    if (progress) *progress = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j, "progress"), 1);
    cJSON_Delete(j);
    return n;
}

/* epochs in the job's checkpoint (the service is down) */
static int curve_points_file(const char *data, const char *id) {
    char dir[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/jobs/%s", data, id);
    ms_epoch_stats *c = NULL;
    int n = 0;
    ms_run_curves(dir, &c, &n);
    free(c);
    return n;
}

int main(int argc, char **argv) {
    (void)argc;
    if (!have_cmd("mpirun")) {
        printf("mpirun is not installed (Debian: openmpi-bin): skipped\n");
        return 77;
    }
    if (access(MPI_BIN, X_OK) != 0) {
        fprintf(stderr, "no %s: build it with `make mpi` (make test does)\n", MPI_BIN);
        return 1;
    }
    if (su_init(argv[0], "mpi")) return 1;
    const double t_start = now_s();
    char data[PATH_MAX], moved[PATH_MAX];
    path_in_tmp(data, sizeof data, "data");
    path_in_tmp(g_hostfile, sizeof g_hostfile, "hostfile");
    path_in_tmp(moved, sizeof moved, "hostfile.away");
    CHECK(write_file(g_hostfile, "# loopback only\nlocalhost slots=2\n", 35) == 0, "hostfile");
    CHECK(make_static() == 0, "static fixture");

    /* 1. refusals at start-up */
    char args[PATH_MAX + 64];
    refuses_start("", "--mpi-hostfile /nonexistent/hosts", "--mpi-hostfile /nonexistent/hosts: No such file or directory");
    snprintf(args, sizeof args, "--mpi-hostfile %s", g_hostfile);
    refuses_start("PATH=/nonexistent", args, "mpirun is not on PATH");
    snprintf(args, sizeof args, "--mpi-hostfile %s --mpi-marsseg /nonexistent/marsseg", g_hostfile);
    refuses_start("", args, "no MPI build of marsseg at /nonexistent/marsseg");
    snprintf(args, sizeof args, "--mpi-hostfile %s --role inference", g_hostfile);
    refuses_start("", args, "an inference replica runs no jobs");

    /* ... and per request */
    struct srv plain, s;
    CHECK(start(&plain, data, NULL) == 0, "a server without --mpi-hostfile");
    char json[512];
    tiny_job(json, sizeof json, "sample", 1);
    refuses_job(plain.port, "{\"ranks\": 2}", 400, "mpi_unavailable", data);
    cJSON *schema = get_json(plain.port, "/schema");
    CHECK(schema && !cJSON_GetObjectItemCaseSensitive(schema, "mpi"), "/schema has no mpi without a hostfile");
    cJSON_Delete(schema);
    CHECK(srv_stop(&plain, SIGTERM) == 0, "clean exit");
    if (start(&s, data, g_hostfile)) {
        CHECK(0, "server start (see the log in %s)", g_tmp);
        su_done();
        return TEST_END();
    }
    schema = get_json(s.port, "/schema");
    CHECK(jnum(cJSON_GetObjectItemCaseSensitive(schema, "mpi"), "max_ranks") == 2, "/schema: mpi.max_ranks 2");
    cJSON_Delete(schema);
    refuses_job(s.port, "{\"ranks\": 3}", 400, "invalid_argument", data);
    refuses_job(s.port, "{\"ranks\": 1.5}", 400, "invalid_argument", data);
    refuses_job(s.port, "{\"ranks\": 0}", 400, "invalid_argument", data);
    refuses_job(s.port, "{\"ranks\": \"2\"}", 400, "invalid_argument", data);
    CHECK(rename(g_hostfile, moved) == 0, "hostfile moved away");
    refuses_job(s.port, "{\"ranks\": 2}", 409, "mpi_unavailable", data);
    CHECK(rename(moved, g_hostfile) == 0, "hostfile back");

    /* 3. a 2-rank job: curves, cancel, resume, pause by the service's SIGTERM, restart */
    snprintf(json, sizeof json,
             "{\"ranks\": 2, \"epochs\": 8, \"batch\": 4, \"limit\": 160, \"model\": {\"depth\": 2, \"base\": 4}, \"threads\": 1,"
             " \"early_stop\": 0, \"dedup_k\": 0, \"activate\": \"always\"}"); /* serves whatever its score */
    char *id = post_job(s.port, json);
    CHECK(id != NULL, "POST /jobs with ranks 2");
    if (!id) id = strdup("none");
    cJSON *j = job_get(s.port, id);
    CHECK(jnum(j, "ranks") == 2, "the job says its ranks");
    cJSON_Delete(j);
    int points = 0, progressed = 0;
    for (double t0 = now_s(); points < 1 && now_s() - t0 < 60; sleep_ms(50)) {
        cJSON *p = NULL;
        points = curve_points(s.port, id, &p);
        progressed |= jnum(p, "batches") > 0;
        cJSON_Delete(p);
    }
    CHECK(points >= 1 && progressed, "live curves: %d points, batch progress %s", points, progressed ? "seen" : "never seen");
    struct resp r;
    char path[96], last[64] = "";
    snprintf(path, sizeof path, "/jobs/%s", id);
    http("DELETE", s.port, path, NULL, &r);
    CHECK(r.status == 202, "DELETE a running MPI job: %ld", r.status);
    resp_free(&r);
    CHECK(wait_state(s.port, id, "cancelled", 30, last, sizeof last), "cancelled (last %s)", last);
    const int at_cancel = curve_points(s.port, id, NULL);
    char ck[PATH_MAX + 64];
    snprintf(ck, sizeof ck, "%s/jobs/%s/checkpoint.npz", data, id);
    CHECK(access(ck, F_OK) == 0, "a cancelled MPI job keeps its checkpoint");
    CHECK(at_cancel >= 1 && at_cancel < 8, "cancelled in mid-run: %d epochs", at_cancel);
    printf("2-rank job %s: live curves seen, cancelled after %d of 8 epochs\n", id, at_cancel);

    snprintf(path, sizeof path, "/jobs/%s/resume", id);
    http("POST", s.port, path, NULL, &r);
    CHECK(r.status == 202, "resume: %ld", r.status);
    resp_free(&r);
    CHECK(wait_state(s.port, id, "running", 30, last, sizeof last), "running again (last %s)", last);
    for (double t0 = now_s(); curve_points(s.port, id, NULL) <= at_cancel && now_s() - t0 < 60;) sleep_ms(50);
    CHECK(srv_stop(&s, SIGTERM) == 0, "the service's SIGTERM pauses the job and exits 0 (see %s)", s.log);
    CHECK(log_has(&s, "paused (resumes on restart)"), "paused, not lost");
    printf("resumed, then paused by the service's SIGTERM after %d epochs\n", curve_points_file(data, id));
    CHECK(start(&s, data, g_hostfile) == 0, "restart");
    CHECK(wait_state(s.port, id, "succeeded", 120, last, sizeof last), "finished after the restart (last %s)", last);
    j = job_get(s.port, id);
    CHECK(jnum(j, "epoch") == 8 && curve_points(s.port, id, NULL) == 8, "every epoch's point: %g", jnum(j, "epoch"));
    CHECK(!strcmp(jstr(j, "model"), id), "its model is registered");
    cJSON_Delete(j);
    size_t plen = 0;
    uint8_t *png = gray_png(128, 64, &plen);
    struct reqopt img = {.ctype = "image/png", .body = png, .len = plen, .has_body = 1};
    http("POST", s.port, "/segment", &img, &r);
    CHECK(r.status == 200 && !strcmp(r.xmodel, id), "the MPI job's model serves: %ld %s", r.status, r.xmodel);
    resp_free(&r);
    free(png);
    free(id);
    CHECK(srv_stop(&s, SIGTERM) == 0, "clean exit");
    printf("%.0f s\n", now_s() - t_start);
    su_done();
    return TEST_END();
}
