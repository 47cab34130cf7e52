/* Load: `wrk -t2 -c2` posting a 64x128 tile (examples/tile1.png, multipart) to /segment for
 * LOAD_S seconds (default 40; 15 in a SAN=1 build) while training jobs run one after the other
 * (a new one is posted whenever the previous one finished).
 *
 * Asserts: every /segment answer is 200 or a documented 503 with Retry-After (a wrk Lua hook
 * counts statuses) and wrk saw no socket error or timeout; the server's RSS (VmRSS, sampled
 * every 2 s) stays flat: the last sample is at most 20% + 16 MB above the first one after the
 * warm-up (the first quarter, at most 10 s); /healthz answers 200 in under 2 s at every sample;
 * a job trains during at least 90% of the samples; every job ends succeeded; SIGTERM exits 0.
 * Under SAN=1 the RSS bound is not asserted (ASan's quarantine holds freed memory by design;
 * LeakSanitizer checks leaks at exit instead).
 *
 * Prints requests/s, latency p50/p99/max, status counts and the RSS samples. wrk must be
 * installed (tools/deps.sh installs it). */
#include "testutil.h"
#include "srvutil.h"
#include "reliability.h"

static const char LUA[] =
    "local threads = {}\n"
    "function setup(thread) table.insert(threads, thread) end\n"
    "local f = assert(io.open(os.getenv('LOAD_TILE'), 'rb'))\n"
    "local png = f:read('*a')\n"
    "f:close()\n"
    "local b = 'marssegloadboundary7MA4YWxkTrZu0gW'\n"
    "wrk.method = 'POST'\n"
    "wrk.headers['Content-Type'] = 'multipart/form-data; boundary=' .. b\n"
    "wrk.body = '--' .. b .. '\\r\\nContent-Disposition: form-data; name=\"img\"; filename=\"tile.png\"\\r\\n'"
    " .. 'Content-Type: image/png\\r\\n\\r\\n' .. png .. '\\r\\n--' .. b .. '--\\r\\n'\n"
    "function init(args) ok = 0; busy = 0; busy_bare = 0; other = 0; first_other = 0 end\n"
    "function response(status, headers, body)\n"
    "  if status == 200 then ok = ok + 1\n"
    "  elseif status == 503 then\n"
    "    if headers['Retry-After'] or headers['retry-after'] then busy = busy + 1 else busy_bare = busy_bare + 1 end\n"
    "  else other = other + 1; if first_other == 0 then first_other = status end end\n"
    "end\n"
    "function done(summary, latency, requests)\n"
    "  local a, b2, c, d, fo = 0, 0, 0, 0, 0\n"
    "  for _, t in ipairs(threads) do\n"
    "    a = a + t:get('ok'); b2 = b2 + t:get('busy'); c = c + t:get('busy_bare'); d = d + t:get('other')\n"
    "    if t:get('first_other') ~= 0 then fo = t:get('first_other') end\n"
    "  end\n"
    "  local e = summary.errors\n"
    "  io.write(string.format('LOADSTATS requests=%d duration_us=%d ok=%d busy=%d busy_bare=%d other=%d first_other=%d "
    "connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\\n',\n"
    "    summary.requests, summary.duration, a, b2, c, d, fo, e.connect, e.read, e.write, e.timeout,\n"
    "    latency:percentile(50), latency:percentile(99), latency.max))\n"
    "end\n";

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* A small model (a few MB of training state, so that job phases do not swamp the RSS figure)
 * trained for enough epochs to last a while. */
static const char *job_cfg(char *buf, size_t cap) {
    /* about 20 s each, plain; the last one is waited for */
    rel_job_cfg(buf, cap, SAN_BUILD ? 5 : 30, 8, 64, ", \"early_stop\": 0, \"activate\": false");
    return buf;
}

int main(int argc, char **argv) {
    (void)argc;
    if (su_init(argv[0], "test-load") != 0) return 1;
    if (!have_cmd("wrk")) {
        fprintf(stderr, "wrk is not installed (tools/deps.sh installs it: apt-get install wrk)\n");
        return 1;
    }
    const char *e = getenv("LOAD_S");
    int load_s = e ? atoi(e) : SAN_BUILD ? 15 : 40;
    if (load_s < 4) load_s = 4;
    printf("load: wrk -t2 -c2 -d%ds on POST /segment while jobs train%s\n", load_s, SAN_BUILD ? " (SAN build)" : "");

    /* the tile: examples/tile1.png of the source tree (this binary is <build>/tests/), or a
     * generated 64x128 one */
    char tile[PATH_MAX], model[PATH_MAX], dataset[PATH_MAX], data[PATH_MAX], lua[PATH_MAX], out[PATH_MAX];
    char self[PATH_MAX];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(tile, sizeof tile, "%s/../../examples/tile1.png", dirname(self));
    if (access(tile, R_OK) != 0) {
        size_t len;
        uint8_t *png = gray_png(128, 64, &len);
        path_in_tmp(tile, sizeof tile, "tile.png");
        FILE *f = fopen(tile, "wb");
        CHECK(png && f && fwrite(png, 1, len, f) == len, "tile fixture");
        if (f) fclose(f);
        free(png);
    }
    path_in_tmp(lua, sizeof lua, "segment.lua");
    path_in_tmp(out, sizeof out, "wrk.out");
    /* the default model's architecture (depth 4, base 16): the same work per tile */
    rel_fixtures(PATH_MAX, model, dataset, NULL, data, 4, 16, 64, 64, 128, 0);
    FILE *lf = fopen(lua, "w");
    CHECK(lf && fputs(LUA, lf) >= 0 && fclose(lf) == 0, "lua script");
    if (tu_failures) return TEST_END();

    struct srv s;
    struct srv_opts so = {.model = model, .dataset = dataset};
    if (srv_start_opts(&s, data, &so) != 0) {
        CHECK(0, "server start");
        su_done();
        return TEST_END();
    }
    char cfg[512];
    char *job = post_job(s.port, job_cfg(cfg, sizeof cfg));
    CHECK(job != NULL, "first job");
    char last[32];
    CHECK(job && wait_state(s.port, job, "running", 60, last, sizeof last), "first job running (%s)", last);

    char url[128], dur[32], tilevar[PATH_MAX + 16];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/segment", s.port);
    snprintf(dur, sizeof dur, "%ds", load_s);
    snprintf(tilevar, sizeof tilevar, "LOAD_TILE=%s", tile);
    pid_t wrk = fork();
    if (wrk == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
        putenv(tilevar);
        execlp("wrk", "wrk", "-t2", "-c2", "-d", dur, "--timeout", "10s", "--latency", "-s", lua, url, (char *)NULL);
        _exit(127);
    }
    CHECK(wrk > 0, "fork wrk");

    enum { MAXS = 1024 };
    long rss[MAXS];
    double at[MAXS];
    int ns = 0, training = 0, jobs = job ? 1 : 0, jobs_ok = 0, health_bad = 0;
    double health_worst = 0;
    const double warm = load_s / 4.0 < 10 ? load_s / 4.0 : 10;
    const double t0 = now_s();
    int wrk_status = -1;
    while (wrk > 0) {
        sleep_ms(2000);
        if (ns < MAXS) {
            at[ns] = now_s() - t0;
            rss[ns++] = rss_kb(s.pid);
        }
        struct resp r;
        double q0 = now_s();
        get(s.port, "/healthz", &r);
        double q = now_s() - q0;
        if (q > health_worst) health_worst = q;
        health_bad += r.status != 200 || q > 2;
        resp_free(&r);
        if (job) { /* keep a job training: the next one once this one is done */
            cJSON *j = job_get(s.port, job);
            const char *st = jstr(j, "state");
            if (strcmp(st, "running") == 0) training++;
            if (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
                CHECK(strcmp(st, "succeeded") == 0, "job %s ended %s: %s", job, st, jstr(j, "error"));
                jobs_ok += strcmp(st, "succeeded") == 0;
                free(job);
                job = post_job(s.port, job_cfg(cfg, sizeof cfg));
                CHECK(job != NULL, "next job");
                jobs += job != NULL;
                training++; /* it is queued behind nothing: it starts at once */
            }
            cJSON_Delete(j);
        }
        int st;
        if (waitpid(wrk, &st, WNOHANG) == wrk) {
            wrk_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            wrk = 0;
        }
        if (wrk > 0 && now_s() - t0 > load_s + 60) {
            kill(wrk, SIGKILL);
            waitpid(wrk, NULL, 0);
            CHECK(0, "wrk did not finish");
            wrk = 0;
        }
    }
    CHECK(wrk_status == 0, "wrk exit status %d (see %s)", wrk_status, out);
    /* the last job finishes */
    if (job) {
        CHECK(wait_state(s.port, job, "succeeded|failed|cancelled", 300, last, sizeof last) && strcmp(last, "succeeded") == 0,
              "last job %s ends %s", job, last);
        jobs_ok += strcmp(last, "succeeded") == 0;
        free(job);
    }
    struct resp r;
    CHECK(get(s.port, "/healthz", &r) == 200, "healthz after the load: %ld", r.status);
    resp_free(&r);
    long rss_end = rss_kb(s.pid);
    CHECK(srv_stop_wait(&s, SIGTERM, 60) == 0, "clean exit (see %s)", s.log);

    /* wrk's figures */
    uint8_t *txt = NULL;
    size_t tl = 0;
    long long req = 0, dur_us = 1, ok = 0, busy = 0, bare = 0, other = 0, first_other = 0, econn = 0, eread = 0, ewrite = 0,
              etime = 0, p50 = 0, p99 = 0, pmax = 0;
    const char *ls = NULL;
    if (ms_read_file(out, 0, &txt, &tl) == MS_OK) ls = strstr((char *)txt, "LOADSTATS ");
    int got = ls ? sscanf(ls,
                          "LOADSTATS requests=%lld duration_us=%lld ok=%lld busy=%lld busy_bare=%lld other=%lld first_other=%lld "
                          "connect=%lld read=%lld write=%lld timeout=%lld p50_us=%lld p99_us=%lld max_us=%lld",
                          &req, &dur_us, &ok, &busy, &bare, &other, &first_other, &econn, &eread, &ewrite, &etime, &p50, &p99,
                          &pmax)
                 : 0;
    CHECK(got == 14, "wrk's summary line (see %s): %s", out, txt ? (char *)txt : "");
    printf("wrk: %lld requests in %.1f s = %.1f req/s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", req, dur_us / 1e6,
           req / (dur_us / 1e6), p50 / 1e3, p99 / 1e3, pmax / 1e3);
    printf("statuses: %lld x 200, %lld x 503 with Retry-After, %lld x 503 without, %lld other (first %lld); socket "
           "errors: connect %lld read %lld write %lld timeout %lld\n",
           ok, busy, bare, other, first_other, econn, eread, ewrite, etime);
    CHECK(ok > 0 && ok + busy == req, "only 200 and 503+Retry-After: %lld of %lld", ok + busy, req);
    CHECK(bare == 0 && other == 0, "%lld bare 503, %lld other statuses (first %lld)", bare, other, first_other);
    CHECK(econn + eread + ewrite + etime == 0, "socket errors");
    free(txt);

    /* RSS */
    int w = 0;
    while (w < ns - 1 && at[w] < warm) w++;
    printf("RSS (MB) every 2 s:");
    for (int i = 0; i < ns; i++) printf(" %.0f", rss[i] / 1024.0);
    printf("; after the load %.0f\n", rss_end / 1024.0);
    long first = ns ? rss[w] : 0, lastr = ns ? rss[ns - 1] : 0, peak = 0;
    for (int i = w; i < ns; i++) peak = rss[i] > peak ? rss[i] : peak;
    printf("RSS first after warm-up (%.0f s) %.1f MB, last %.1f MB (%+.1f MB), peak %.1f MB\n", at[w], first / 1024.0,
           lastr / 1024.0, (lastr - first) / 1024.0, peak / 1024.0);
    CHECK(ns >= 2 && first > 0, "RSS samples: %d", ns);
    if (!SAN_BUILD) CHECK(lastr <= first + first / 5 + 16 * 1024, "RSS grew from %ld to %ld kB", first, lastr);
    printf("jobs: %d posted, %d succeeded; a job was training at %d of %d samples; healthz worst %.0f ms\n", jobs, jobs_ok,
           training, ns, health_worst * 1e3);
    CHECK(jobs_ok == jobs && jobs >= 1, "%d of %d jobs succeeded", jobs_ok, jobs);
    CHECK(training * 10 >= ns * 9, "a job trained at only %d of %d samples", training, ns);
    CHECK(health_bad == 0, "%d slow or failed /healthz during the load (worst %.2f s)", health_bad, health_worst);
    su_done();
    return TEST_END();
}
