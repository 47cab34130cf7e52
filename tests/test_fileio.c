/* The durable writes of marsseg_io.h: ms_write_all (short writes, EINTR), ms_fsync_dir, and the
 * streamed atomic file (commit publishes, abort and every failure leave the target untouched
 * and no temp file behind); whole files: ms_write_file_atomic (overwrite, empty, a missing directory,
 * a failed rename) and ms_read_file (limits, files without a size, a missing file, a directory). */
#include "marsseg.h"
#include "marsseg_io.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/ms_test_fileio_XXXXXX";

static int file_is(const char *path, const char *want, size_t n) {
    uint8_t *b = NULL;
    size_t len = 0;
    if (ms_read_file(path, 0, &b, &len) != MS_OK) return 0;
    int ok = len == n && memcmp(b, want, n) == 0;
    free(b);
    return ok;
}

static int exists(const char *p) { return access(p, F_OK) == 0; }

/* entries of dir besides . and .. */
static int dir_entries(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static void on_alarm(int sig) { (void)sig; }

/* Writes into a pipe that a slow child drains, with a 1 ms timer signal installed without
 * SA_RESTART: write(2) returns short counts and EINTR, and every byte must still arrive once. */
static void test_write_all(void) {
    enum { N = 4 << 20 };
    uint8_t *buf = malloc(N);
    if (!buf) return;
    uint32_t sum = 0;
    for (size_t i = 0; i < N; i++) {
        buf[i] = (uint8_t)(i * 2654435761u >> 24);
        sum = sum * 31 + buf[i];
    }
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[1]);
        uint8_t in[4096];
        uint32_t s = 0;
        size_t total = 0;
        ssize_t r;
        while ((r = read(fds[0], in, sizeof in)) != 0) {
            if (r < 0) {
                if (errno == EINTR) continue;
                _exit(2);
            }
            for (ssize_t i = 0; i < r; i++) s = s * 31 + in[i];
            total += (size_t)r;
            if (total % (256 << 10) < sizeof in) usleep(2000); /* be slow now and then */
        }
        _exit(total == N && s == sum ? 0 : 1);
    }
    close(fds[0]);
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_alarm; /* no SA_RESTART: interrupted writes return early */
    sigaction(SIGALRM, &sa, &old);
    struct itimerval it = {{0, 1000}, {0, 1000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    int rc = ms_write_all(fds[1], buf, N);
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old, NULL);
    CHECK(rc == 0, "ms_write_all: %s", strerror(errno));
    close(fds[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader saw the wrong bytes (status %d)", status);
    free(buf);

    /* errors are -1 with errno */
    errno = 0;
    CHECK(ms_write_all(-1, "x", 1) == -1 && errno == EBADF, "bad fd: errno %d", errno);
    CHECK(ms_write_all(-1, NULL, 0) == 0, "nothing to write");
}

static void test_fsync_dir(void) {
    char file[300], missing[300];
    snprintf(file, sizeof file, "%s/plain", dir);
    snprintf(missing, sizeof missing, "%s/none", dir);
    CHECK(ms_fsync_dir(dir) == 0, "fsync dir: %s", strerror(errno));
    CHECK(ms_fsync_dir(".") == 0, "fsync .: %s", strerror(errno));
    errno = 0;
    CHECK(ms_fsync_dir(missing) == -1 && errno == ENOENT, "missing dir: errno %d", errno);
    CHECK_OK(ms_write_file_atomic(file, "p", 1));
    errno = 0;
    CHECK(ms_fsync_dir(file) == -1 && errno == ENOTDIR, "a file: errno %d", errno);
    unlink(file);
}

/* mkdir -p (what `train --out runs/r1` needs when runs/ does not exist yet) */
static void test_mkdirs(void) {
    char deep[400], mid[400], top[400], file[400], under[450];
    snprintf(top, sizeof top, "%s/m", dir);
    snprintf(mid, sizeof mid, "%s/m/n", dir);
    snprintf(deep, sizeof deep, "%s/m/n//o/", dir);
    snprintf(file, sizeof file, "%s/m/f", dir);
    snprintf(under, sizeof under, "%s/m/f/x", dir);
    struct stat st;
    CHECK(ms_mkdirs(deep) == 0 && stat(deep, &st) == 0 && S_ISDIR(st.st_mode), "three new levels: %s", strerror(errno));
    CHECK(ms_mkdirs(deep) == 0, "an existing directory is fine: %s", strerror(errno));
    CHECK_OK(ms_write_file_atomic(file, "f", 1));
    errno = 0;
    CHECK(ms_mkdirs(file) == -1 && errno == ENOTDIR, "a file in the way: errno %d", errno);
    errno = 0;
    CHECK(ms_mkdirs(under) == -1 && errno == ENOTDIR, "a file as a parent: errno %d", errno);
    errno = 0;
    CHECK(ms_mkdirs("") == -1 && errno == ENOENT, "an empty path: errno %d", errno);
    unlink(file);
    snprintf(deep, sizeof deep, "%s/m/n/o", dir);
    rmdir(deep);
    rmdir(mid);
    rmdir(top);
}

static void test_stream(void) {
    char path[300], tmp[310];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    /* commit: nothing visible before, everything after, no temp file */
    CHECK_OK(ms_write_file_atomic(path, "old", 3));
    ms_atomic_file *f = NULL;
    CHECK_OK(ms_atomic_open(&f, path));
    if (!f) return;
    CHECK_OK(ms_atomic_write(f, "hello ", 6));
    CHECK_OK(ms_atomic_write(f, NULL, 0));
    CHECK(ms_atomic_fd(f) >= 0 && write(ms_atomic_fd(f), "fd ", 3) == 3, "write through the descriptor");
    CHECK_OK(ms_atomic_write(f, "world", 5));
    CHECK(exists(tmp) && file_is(path, "old", 3), "the target changed before commit");
    CHECK_OK(ms_atomic_commit(f));
    CHECK(file_is(path, "hello fd world", 14) && !exists(tmp), "commit");
    CHECK(dir_entries() == 1, "%d entries after commit", dir_entries());

    /* abort: the old file stays, the temp goes; NULL is fine */
    f = NULL;
    CHECK_OK(ms_atomic_open(&f, path));
    CHECK_OK(ms_atomic_write(f, "junk", 4));
    ms_atomic_abort(f);
    ms_atomic_abort(NULL);
    CHECK(file_is(path, "hello fd world", 14) && !exists(tmp), "abort");
    CHECK(dir_entries() == 1, "%d entries after abort", dir_entries());
    unlink(path);
    f = NULL;
    CHECK_OK(ms_atomic_open(&f, path));
    ms_atomic_abort(f);
    CHECK(dir_entries() == 0, "abort of a new file left %d entries", dir_entries());

    /* an empty file */
    f = NULL;
    CHECK_OK(ms_atomic_open(&f, path));
    CHECK_OK(ms_atomic_commit(f));
    CHECK(file_is(path, "", 0), "empty commit");

    /* a failed write (the file size limit stands in for a full disk): the write reports it,
     * later writes and the commit fail, the target is untouched and the temp removed */
    CHECK_OK(ms_write_file_atomic(path, "keep", 4));
    struct rlimit lim, small;
    getrlimit(RLIMIT_FSIZE, &lim);
    small = lim;
    small.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    f = NULL;
    CHECK_OK(ms_atomic_open(&f, path));
    static uint8_t big[8192];
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit");
    ms_status st = ms_atomic_write(f, big, sizeof big);
    setrlimit(RLIMIT_FSIZE, &lim);
    CHECK(st == MS_ERR_IO && strstr(ms_last_error(), "out.bin.tmp"), "short disk: %s (%s)", ms_strerror(st),
          ms_last_error());
    CHECK(ms_atomic_write(f, "x", 1) == MS_ERR_IO, "a write after a failed one");
    st = ms_atomic_commit(f);
    CHECK(st == MS_ERR_IO && strstr(ms_last_error(), "earlier write"), "commit after a failed write: %s",
          ms_last_error());
    CHECK(file_is(path, "keep", 4) && !exists(tmp), "failed stream touched the target or left its temp");
    /* the same through the whole-file write */
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit");
    st = ms_write_file_atomic(path, big, sizeof big);
    setrlimit(RLIMIT_FSIZE, &lim);
    CHECK(st == MS_ERR_IO && file_is(path, "keep", 4) && !exists(tmp), "whole-file write on a short disk");
    signal(SIGXFSZ, SIG_DFL);

    /* open in a missing directory; rename over a non-empty directory */
    char bad[320], sub[320], inner[330], subtmp[330];
    snprintf(bad, sizeof bad, "%s/no/such", dir);
    f = (ms_atomic_file *)1;
    CHECK(ms_atomic_open(&f, bad) == MS_ERR_IO && f == NULL, "open in a missing dir");
    CHECK(strstr(ms_last_error(), "no/such.tmp") != NULL, "detail names the temp: %s", ms_last_error());
    CHECK(ms_atomic_open(&f, "") == MS_ERR_ARG && ms_atomic_open(NULL, path) == MS_ERR_ARG, "bad arguments");
    CHECK(ms_atomic_commit(NULL) == MS_ERR_ARG, "commit NULL");
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(inner, sizeof inner, "%s/f", sub);
    snprintf(subtmp, sizeof subtmp, "%s.tmp", sub);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    CHECK_OK(ms_write_file_atomic(inner, "i", 1));
    f = NULL;
    CHECK_OK(ms_atomic_open(&f, sub));
    CHECK_OK(ms_atomic_write(f, "y", 1));
    CHECK(ms_atomic_commit(f) == MS_ERR_IO && strstr(ms_last_error(), "rename"), "rename over a dir: %s",
          ms_last_error());
    CHECK(!exists(subtmp) && file_is(inner, "i", 1), "failed rename left the temp or touched the dir");
    unlink(inner);
    rmdir(sub);
    unlink(path);
}

/* ------------------------------------------------------------------ whole files */

static void test_whole_files(void) {
    char wdir[] = "/tmp/ms_test_fileio_whole_XXXXXX";
    CHECK(mkdtemp(wdir) != NULL, "mkdtemp");
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/out.bin", wdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    uint8_t data[5000];
    for (int i = 0; i < 5000; i++) data[i] = (uint8_t)(i * 7);
    CHECK_OK(ms_write_file_atomic(path, data, sizeof data));
    CHECK(access(tmp, F_OK) != 0, "tmp file removed");
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(ms_read_file(path, sizeof data, &buf, &len));
    CHECK(buf && len == sizeof data && memcmp(buf, data, len) == 0 && buf[len] == 0, "read back");
    free(buf);
    buf = NULL;
    CHECK(ms_read_file(path, sizeof data - 1, &buf, &len) == MS_ERR_LIMIT && buf == NULL, "limit");
    CHECK(strstr(ms_last_error(), "4999") != NULL, "limit detail: %s", ms_last_error());
    CHECK_OK(ms_read_file(path, 0, &buf, &len)); /* 0 = no limit */
    free(buf);
    buf = NULL;
    /* overwrite with something shorter, then an empty file */
    CHECK_OK(ms_write_file_atomic(path, "abc", 3));
    CHECK_OK(ms_read_file(path, 100, &buf, &len));
    CHECK(buf && len == 3 && memcmp(buf, "abc", 4) == 0, "overwrite");
    free(buf);
    buf = NULL;
    CHECK_OK(ms_write_file_atomic(path, NULL, 0));
    CHECK_OK(ms_read_file(path, 100, &buf, &len));
    CHECK(buf && len == 0 && buf[0] == 0, "empty file");
    free(buf);
    buf = NULL;
    /* a stream without a size */
    CHECK_OK(ms_read_file("/proc/self/status", 1 << 20, &buf, &len));
    CHECK(buf && len > 10 && strncmp((char *)buf, "Name:", 5) == 0, "proc file read");
    free(buf);
    buf = NULL;
    CHECK(ms_read_file("/proc/self/status", 10, &buf, &len) == MS_ERR_LIMIT && !buf, "proc file over limit");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope", wdir);
    CHECK(ms_read_file(missing, 0, &buf, &len) == MS_ERR_NOTFOUND, "missing file");
    CHECK(strstr(ms_last_error(), "nope") != NULL, "detail names the file: %s", ms_last_error());
    CHECK(ms_read_file(wdir, 0, &buf, &len) == MS_ERR_IO, "directory");
    snprintf(missing, sizeof missing, "%s/no/such/dir/f", wdir);
    CHECK(ms_write_file_atomic(missing, "x", 1) == MS_ERR_IO, "write into a missing dir");
    /* the rename fails (target is a non-empty directory): the tmp must not be left behind */
    char sub[300], subfile[320], subtmp[320];
    snprintf(sub, sizeof sub, "%s/sub", wdir);
    snprintf(subfile, sizeof subfile, "%s/f", sub);
    snprintf(subtmp, sizeof subtmp, "%s.tmp", sub);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    CHECK_OK(ms_write_file_atomic(subfile, "x", 1));
    CHECK(ms_write_file_atomic(sub, "y", 1) == MS_ERR_IO, "rename over a directory fails");
    CHECK(access(subtmp, F_OK) != 0, "tmp removed after a failed rename");
    unlink(subfile);
    rmdir(sub);
    unlink(path);
    rmdir(wdir);
}

int main(void) {
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    test_write_all();
    test_fsync_dir();
    test_mkdirs();
    test_stream();
    test_whole_files();
    CHECK(dir_entries() == 0, "%d entries left in %s", dir_entries(), dir);
    rmdir(dir);
    return TEST_END();
}
