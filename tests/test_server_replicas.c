/* Replicated serving on loopback, no containers: a trainer (serve --role trainer), two inference
 * replicas (--role inference) on one data directory, and Debian's HAProxy running
 * deploy/haproxy.cfg itself (addresses through its environment variables).
 *
 *  1. deploy/: `haproxy -c` accepts the config; deploy/compose.yaml parses (python3's yaml, when
 *     there) and gives HAProxy every variable the config reads;
 *  2. routing: /segment through HAProxy reaches both replicas (round robin), POST /jobs the
 *     trainer; a replica asked directly for a trainer's route answers 403 "role"; /healthz says
 *     the role;
 *  3. `wrk -c4` on POST /segment through HAProxy; replica 2 SIGKILLed mid-load: at most the
 *     requests in flight to it (one per connection) may fail, and 200s keep coming after it;
 *  4. replica 2 restarted on the same port comes back into the pool;
 *  5. a job trained by the trainer (activate: false) is listed by both replicas within 2 s;
 *     PUT /models/active through HAProxy (to the trainer): both replicas serve it (X-Model)
 *     within 2 s, and again when switched back.
 * HAProxy is installed here when missing (as root, apt-get); exit 77 only when it cannot be had. */
#include "marsseg.h"
#include "testutil.h"
#include "srvutil.h"

#include <netinet/in.h>
#include <sys/socket.h>

#define HAPROXY "/usr/sbin/haproxy"
#define CONNS 4

static const char LUA[] =
    "local threads = {}\n"
    "function setup(thread) table.insert(threads, thread) end\n"
    "local f = assert(io.open(os.getenv('REPL_TILE'), 'rb'))\n"
    "local png = f:read('*a')\n"
    "f:close()\n"
    "local kill_at = tonumber(os.getenv('REPL_KILL_AT'))\n"
    "wrk.method = 'POST'\n"
    "wrk.headers['Content-Type'] = 'image/png'\n"
    "wrk.body = png\n"
    "function init(args) ok = 0; bad = 0; after = 0 end\n"
    "function response(status, headers, body)\n"
    "  if status == 200 then ok = ok + 1; if os.time() > kill_at + 1 then after = after + 1 end else bad = bad + 1 end\n"
    "end\n"
    "function done(summary, latency, requests)\n"
    "  local a, b, c = 0, 0, 0\n"
    "  for _, t in ipairs(threads) do a = a + t:get('ok'); b = b + t:get('bad'); c = c + t:get('after') end\n"
    "  local e = summary.errors\n"
    "  io.write(string.format('REPLSTATS requests=%d duration_us=%d ok=%d bad=%d after=%d connect=%d read=%d write=%d "
    "timeout=%d p50_us=%d p99_us=%d\\n', summary.requests, summary.duration, a, b, c, e.connect, e.read, e.write, e.timeout,\n"
    "    latency:percentile(50), latency:percentile(99)))\n"
    "end\n";

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &n) == 0
                   ? ntohs(a.sin_port)
                   : -1;
    if (fd >= 0) close(fd);
    return port;
}

/* HAProxy's environment: where it listens and where the three servers are */
static void haproxy_env(int lb, const int ports[3]) {
    char v[64];
    snprintf(v, sizeof v, "127.0.0.1:%d", lb);
    setenv("MARSSEG_LISTEN", v, 1);
    snprintf(v, sizeof v, "127.0.0.1:%d", ports[0]);
    setenv("MARSSEG_TRAINER", v, 1);
    snprintf(v, sizeof v, "127.0.0.1:%d", ports[1]);
    setenv("MARSSEG_REPLICA1", v, 1);
    snprintf(v, sizeof v, "127.0.0.1:%d", ports[2]);
    setenv("MARSSEG_REPLICA2", v, 1);
}

static pid_t spawn_log(const char *log, char *const argv[]) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int run_status(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* /segment's X-Model on a port ("" when it does not answer 200) */
static void served_model(int port, char *out, size_t cap, const uint8_t *png, size_t plen) {
    struct reqopt img = {.ctype = "image/png", .body = png, .len = plen, .has_body = 1};
    struct resp r;
    http("POST", port, "/segment", &img, &r);
    snprintf(out, cap, "%s", r.status == 200 ? r.xmodel : "");
    resp_free(&r);
}

/* Seconds until both replicas serve model id (-1 after 10 s). */
static double until_both_serve(const int ports[3], const char *id, const uint8_t *png, size_t plen) {
    const double t0 = now_s();
    char a[64], b[64];
    do {
        served_model(ports[1], a, sizeof a, png, plen);
        served_model(ports[2], b, sizeof b, png, plen);
        if (!strcmp(a, id) && !strcmp(b, id)) return now_s() - t0;
        sleep_ms(20);
    } while (now_s() - t0 < 10);
    fprintf(stderr, "    replicas serve %s and %s, not %s\n", a, b, id);
    return -1;
}

static int lists_model(int port, const char *id) {
    cJSON *j = get_json(port, "/models");
    const cJSON *m;
    int found = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "models")) found |= !strcmp(jstr(m, "id"), id);
    cJSON_Delete(j);
    return found;
}

static int start_server(struct srv *s, const char *data, const char *role, int port) {
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *extra[] = {"--role", role, "--port", p, "--threads", "1", NULL};
    /* two replicas and a trainer on 2 cores: one OpenMP thread each, as deploy/compose.yaml */
    static const char *const env[] = {"OMP_NUM_THREADS=1", NULL};
    struct srv_opts o = {.extra = extra, .env = env, .model = MS_SRC_DIR "/models/default.npz", .dataset = MS_SRC_DIR "/datasets/sample.npz"};
    return srv_start_opts(s, data, &o);
}

/* Every route the table (server/routes.c, the one place a route is declared) marks
 * ROUTE_TRAINER must reach the trainer through deploy/haproxy.cfg: a replica would answer it 403
 * "role". Read from the table itself, so that a new trainer route fails here until HAProxy sends
 * it to the trainer. ({} becomes a made-up id and bodies carry an unknown field: the trainer's
 * 404 or 400 is the answer wanted, and nothing is created.) */
static void trainer_routes_reach_trainer(int lb) {
    FILE *f = fopen(MS_SRC_DIR "/server/routes.c", "r");
    CHECK(f != NULL, "server/routes.c");
    if (!f) return;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char method[8], pattern[128], path[160];
        if (!strstr(line, "ROUTE_TRAINER") || sscanf(line, " {\"%7[A-Z]\", \"%127[^\"]\"", method, pattern) != 2) continue;
        size_t u = 0;
        for (const char *c = pattern; *c && u < sizeof path - 8; c++) {
            if (c[0] == '{' && c[1] == '}') memcpy(path + u, "zz0", 3), u += 3, c++;
            else path[u++] = *c;
        }
        path[u] = 0;
        struct resp r;
        if (strcmp(method, "GET") && strcmp(method, "DELETE")) send_json(method, lb, path, "{\"zz_no_such_field\": 1}", &r); /* refused, creates nothing */
        else http(method, lb, path, NULL, &r);
        CHECK(r.status > 0 && !(r.status == 403 && is_json_error(&r, "role")), "%s %s through HAProxy reaches the trainer: %ld %.200s",
              method, path, r.status, r.body ? r.body : "");
        resp_free(&r);
        n++;
    }
    fclose(f);
    CHECK(n >= 10, "trainer routes read from server/routes.c: %d", n);
    printf("%d trainer routes through HAProxy: none answered by a replica\n", n);
}

int main(int argc, char **argv) {
    (void)argc;
    if (access(HAPROXY, X_OK) != 0) su_apt_install("haproxy");
    if (access(HAPROXY, X_OK) != 0) {
        printf("SKIP replicas: no %s, and Debian's haproxy cannot be installed here (needs root and apt-get)\n", HAPROXY);
        return 77;
    }
    if (!have_cmd("wrk")) {
        fprintf(stderr, "wrk is not installed (tools/deps.sh installs it: apt-get install wrk)\n");
        return 1;
    }
    if (su_init(argv[0], "replicas")) return 1;
    const double t_start = now_s();
    char data[PATH_MAX], cfg[PATH_MAX], lua[PATH_MAX], out[PATH_MAX], hlog[PATH_MAX], cmd[PATH_MAX * 2];
    path_in_tmp(data, sizeof data, "data");
    path_in_tmp(lua, sizeof lua, "segment.lua");
    path_in_tmp(out, sizeof out, "wrk.out");
    path_in_tmp(hlog, sizeof hlog, "haproxy.log");
    snprintf(cfg, sizeof cfg, "%s/deploy/haproxy.cfg", MS_SRC_DIR);
    CHECK(make_static() == 0, "static fixture");
    FILE *lf = fopen(lua, "w");
    CHECK(lf && fputs(LUA, lf) >= 0 && fclose(lf) == 0, "lua script");
    size_t plen = 0;
    uint8_t *png = NULL;
    CHECK(ms_read_file(MS_SRC_DIR "/examples/tile1.png", 0, &png, &plen) == MS_OK, "examples/tile1.png");

    /* 1. deploy/ */
    const int ports[3] = {free_port(), free_port(), free_port()}, lb = free_port();
    haproxy_env(lb, ports);
    snprintf(cmd, sizeof cmd, HAPROXY " -c -q -f %s", cfg);
    CHECK(run_status(cmd) == 0, "haproxy -c -f deploy/haproxy.cfg");
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import yaml' 2>/dev/null || exit 77; python3 - %s/deploy <<'EOF'\n"
             "import re, sys, yaml\n"
             "d = yaml.safe_load(open(sys.argv[1] + '/compose.yaml'))\n"
             "s = d['services']; env = s['haproxy']['environment']\n"
             "need = set(re.findall(r'\\$\\{(\\w+)\\}', open(sys.argv[1] + '/haproxy.cfg').read()))\n"
             "assert need <= set(env), need - set(env)\n"
             "roles = [x['command'][x['command'].index('--role') + 1] for n, x in s.items() if n != 'haproxy']\n"
             "assert sorted(roles) == ['inference', 'inference', 'trainer'], roles\n"
             "assert all(x['volumes'] == ['data:/data'] for n, x in s.items() if n != 'haproxy')\n"
             "EOF",
             MS_SRC_DIR);
    const int compose = run_status(cmd);
    CHECK(compose == 0 || compose == 77, "deploy/compose.yaml: parsed, HAProxy's variables, roles and the shared volume");
    if (compose == 77) printf("note: python3's yaml is not installed: deploy/compose.yaml not parsed\n");

    struct srv trainer, r1, r2;
    if (start_server(&trainer, data, "trainer", ports[0]) || start_server(&r1, data, "inference", ports[1]) ||
        start_server(&r2, data, "inference", ports[2])) {
        CHECK(0, "servers start");
        su_done();
        return TEST_END();
    }
    char *hargv[] = {HAPROXY, "-db", "-f", cfg, NULL};
    pid_t hp = spawn_log(hlog, hargv);
    CHECK(hp > 0, "haproxy started");
    int up = 0;
    for (double t0 = now_s(); !up && now_s() - t0 < 15; sleep_ms(100)) { /* both replicas pass 2 checks */
        char a[64], b[64];
        served_model(lb, a, sizeof a, png, plen);
        served_model(lb, b, sizeof b, png, plen);
        up = a[0] && b[0];
    }
    CHECK(up, "HAProxy answers /segment (see %s)", hlog);

    /* 2. routing and roles */
    struct resp r;
    http("POST", ports[1], "/jobs", NULL, &r);
    EXPECT_ERROR(r, 403, "role");
    resp_free(&r);
    send_json("PUT", ports[2], "/models/active", "{\"id\":\"default\"}", &r);
    EXPECT_ERROR(r, 403, "role");
    resp_free(&r);
    cJSON *h = get_json(ports[1], "/healthz");
    CHECK(!strcmp(jstr(h, "role"), "inference"), "a replica's /healthz says its role");
    cJSON_Delete(h);
    h = get_json(lb, "/jobs");
    CHECK(h && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(h, "jobs")), "GET /jobs through HAProxy reaches the trainer");
    cJSON_Delete(h);
    trainer_routes_reach_trainer(lb);
    char job_json[512];
    tiny_job(job_json, sizeof job_json, "sample", 1);
    job_json[strlen(job_json) - 1] = 0;
    strcat(job_json, ", \"activate\": false}");
    char *job = post_job(lb, job_json);
    CHECK(job != NULL, "POST /jobs through HAProxy");

    /* 3. wrk through HAProxy; replica 2 SIGKILLed after 2.5 s */
    char dur[16], url[64], kill_at[32], conns[16];
    snprintf(dur, sizeof dur, "%ds", 7);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/segment", lb);
    snprintf(conns, sizeof conns, "-c%d", CONNS);
    snprintf(kill_at, sizeof kill_at, "%ld", (long)time(NULL) + 3);
    setenv("REPL_TILE", MS_SRC_DIR "/examples/tile1.png", 1);
    setenv("REPL_KILL_AT", kill_at, 1);
    pid_t wrk = fork();
    if (wrk == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
        execlp("wrk", "wrk", "-t2", conns, "-d", dur, "--timeout", "5s", "--latency", "-s", lua, url, (char *)NULL);
        _exit(127);
    }
    while (time(NULL) < atol(kill_at)) sleep_ms(20);
    kill(r2.pid, SIGKILL);
    waitpid(r2.pid, NULL, 0);
    r2.pid = 0;
    int st = 0;
    waitpid(wrk, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "wrk exit (see %s)", out);
    uint8_t *txt = NULL;
    size_t tl = 0;
    long long req = 0, dus = 1, ok = 0, bad = 0, after = 0, ec = 0, er = 0, ew = 0, et = 0, p50 = 0, p99 = 0;
    const char *ls = ms_read_file(out, 0, &txt, &tl) == MS_OK ? strstr((char *)txt, "REPLSTATS ") : NULL;
    int got = ls ? sscanf(ls,
                          "REPLSTATS requests=%lld duration_us=%lld ok=%lld bad=%lld after=%lld connect=%lld read=%lld write=%lld "
                          "timeout=%lld p50_us=%lld p99_us=%lld",
                          &req, &dus, &ok, &bad, &after, &ec, &er, &ew, &et, &p50, &p99)
                 : 0;
    CHECK(got == 11, "wrk's summary (see %s)", out);
    const long long failed = bad + ec + er + ew + et;
    printf("through HAProxy for 7 s, replica 2 SIGKILLed after 2-3 s: %lld requests (%.0f/s), %lld x 200, %lld failed (status "
           "%lld, socket connect %lld read %lld write %lld timeout %lld), %lld x 200 from 1 s after the kill on; p50 %.1f ms, "
           "p99 %.1f ms\n",
           req, req / (dus / 1e6), ok, failed, bad, ec, er, ew, et, after, p50 / 1e3, p99 / 1e3);
    CHECK(failed <= CONNS, "at most the %d requests in flight to the killed replica fail: %lld", CONNS, failed);
    CHECK(after > 10, "the traffic goes on after the kill: %lld answers", after);
    free(txt);

    /* 4. replica 2 back on its port, back in the pool */
    CHECK(start_server(&r2, data, "inference", ports[2]) == 0, "replica 2 restarts");
    int both = 0;
    for (double t0 = now_s(); !both && now_s() - t0 < 10; sleep_ms(50)) {
        struct resp q;
        both = get(ports[2], "/readyz", &q) == 200;
        resp_free(&q);
    }
    CHECK(both, "replica 2 ready again");
    int served = 0; /* HAProxy's checks (2 passes, 0.5 s apart) take it back */
    for (double t0 = now_s(); !served && now_s() - t0 < 10; sleep_ms(100)) {
        char m[64];
        served_model(lb, m, sizeof m, png, plen);
        served = log_has(&r2, "POST /segment 200");
    }
    CHECK(served, "HAProxy sends /segment to the restarted replica again");

    /* 5. the trainer's models reach both replicas */
    char last[64] = "";
    CHECK(job && wait_state(lb, job, "succeeded", 60, last, sizeof last), "job %s succeeded (last %s)", job ? job : "-", last);
    const double t_done = now_s();
    int listed = 0;
    while (!listed && now_s() - t_done < 5) {
        listed = job && lists_model(ports[1], job) && lists_model(ports[2], job);
        if (!listed) sleep_ms(20);
    }
    const double t_listed = now_s() - t_done;
    CHECK(listed && t_listed <= 2.0, "both replicas list the trained model within 2 s: %.2f s", t_listed);
    if (job) {
        char body[96];
        snprintf(body, sizeof body, "{\"id\":\"%s\"}", job);
        send_json("PUT", lb, "/models/active", body, &r);
        CHECK(r.status == 200, "PUT /models/active through HAProxy: %ld %s", r.status, r.body ? r.body : "");
        resp_free(&r);
        const double t1 = until_both_serve(ports, job, png, plen);
        CHECK(t1 >= 0 && t1 <= 2.0, "both replicas serve %s within 2 s: %.2f s", job, t1);
        send_json("PUT", lb, "/models/active", "{\"id\":\"default\"}", &r);
        CHECK(r.status == 200, "switch back: %ld", r.status);
        resp_free(&r);
        const double t2 = until_both_serve(ports, "default", png, plen);
        CHECK(t2 >= 0 && t2 <= 2.0, "both replicas serve default again within 2 s: %.2f s", t2);
        printf("trained model listed by both replicas %.2f s after the job's end; switches followed in %.2f and %.2f s\n", t_listed,
               t1, t2);
    }
    free(job);
    free(png);

    kill(hp, SIGTERM);
    waitpid(hp, NULL, 0);
    CHECK(srv_stop(&r1, SIGTERM) == 0, "replica 1 clean exit (see %s)", r1.log);
    CHECK(srv_stop(&r2, SIGTERM) == 0, "replica 2 clean exit (see %s)", r2.log);
    CHECK(srv_stop(&trainer, SIGTERM) == 0, "trainer clean exit (see %s)", trainer.log);
    printf("%.0f s\n", now_s() - t_start);
    su_done();
    return TEST_END();
}
