/* test_fileio.c — atomic writes (commit replaces, abort and failed writes keep the old file and
 * leave no temporary file), bounded reads (limits, empty files, /proc files), mkdir -p, and the
 * error messages (they name the path and the system's reason).
 *
 * ENOSPC cannot be produced without mounting a small filesystem, so the failed-write test uses
 * RLIMIT_FSIZE (EFBIG) instead: the same code path, a different errno.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "kiln/fileio.h"

static char root[64];

static const char *at(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    return buf[k];
}

static void put(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
}

/* 1 when path holds exactly text. */
static int holds(const char *path, const char *text) {
    void *buf;
    size_t len;
    if (kiln_file_read_all(path, &buf, &len, 1 << 20) != KILN_OK) return 0;
    int same = len == strlen(text) && !memcmp(buf, text, len);
    kiln_free(buf);
    return same;
}

/* Entries of dir whose names start with ".tmp-". */
static int temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += !strncmp(e->d_name, ".tmp-", 5);
    closedir(d);
    return n;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_write_read_roundtrip(void) {
    unsigned char data[1000];
    for (int i = 0; i < 1000; i++) data[i] = (unsigned char)(i * 7 % 256); /* zeros included */
    CHECK_OK(kiln_file_write_atomic(at("bin"), data, sizeof data));
    void *buf;
    size_t len;
    CHECK_OK(kiln_file_read_all(at("bin"), &buf, &len, sizeof data));
    CHECK(len == sizeof data);
    CHECK(buf && !memcmp(buf, data, sizeof data));
    CHECK(buf && ((char *)buf)[len] == 0);
    kiln_free(buf);

    CHECK_OK(kiln_file_write_atomic(at("empty"), NULL, 0));
    CHECK_OK(kiln_file_read_all(at("empty"), &buf, &len, 0));
    CHECK(len == 0 && buf != NULL && ((char *)buf)[0] == 0);
    kiln_free(buf);
    CHECK(temp_files(root) == 0);
}

static void test_commit_replaces(void) {
    put(at("r.txt"), "old");
    CHECK_OK(kiln_file_write_atomic(at("r.txt"), "new content", 11));
    CHECK(holds(at("r.txt"), "new content"));

    kiln_atomic_file *f;
    CHECK_OK(kiln_atomic_open(at("r.txt"), &f));
    if (!f) return;
    const char *tmp = kiln_atomic_temp_path(f);
    char want[600];
    snprintf(want, sizeof want, "%s/.tmp-r.txt-%ld-", root, (long)getpid());
    CHECK_MSG(!strncmp(tmp, want, strlen(want)), "temp path %s, wanted prefix %s", tmp, want);
    CHECK(exists(tmp));
    CHECK_OK(kiln_atomic_write(f, "one ", 4));
    CHECK_OK(kiln_atomic_write(f, "two", 3));
    CHECK(holds(at("r.txt"), "new content")); /* readers see the old file until commit */
    CHECK_OK(kiln_atomic_commit(f));
    CHECK(holds(at("r.txt"), "one two"));
    CHECK(temp_files(root) == 0);
}

static void test_abort_keeps_old(void) {
    put(at("a.txt"), "old");
    kiln_atomic_file *f;
    CHECK_OK(kiln_atomic_open(at("a.txt"), &f));
    if (!f) return;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", kiln_atomic_temp_path(f));
    CHECK_OK(kiln_atomic_write(f, "half of a new fi", 16));
    kiln_atomic_abort(f);
    CHECK(holds(at("a.txt"), "old"));
    CHECK(!exists(tmp));
    CHECK(temp_files(root) == 0);

    /* With no old file, abort leaves nothing at all. */
    CHECK_OK(kiln_atomic_open(at("never.txt"), &f));
    kiln_atomic_abort(f);
    CHECK(!exists(at("never.txt")));
    CHECK(temp_files(root) == 0);
    kiln_atomic_abort(NULL);
}

/* A write that fails half way (the file size limit stands in for a full disk). */
static void test_failed_write_keeps_old(void) {
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 4096) {
        printf("  (skipped: RLIMIT_FSIZE hard limit below 4096)\n");
        return;
    }
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    put(at("f.txt"), "old");
    static char big[10000];
    memset(big, 'x', sizeof big);

    struct rlimit lim = {4096, old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    kiln_status s = kiln_file_write_atomic(at("f.txt"), big, sizeof big);
    CHECK(s == KILN_ERR_IO);
    CHECK_ERR_HAS(at("f.txt"));
    CHECK_ERR_HAS(strerror(EFBIG));
    CHECK_ERR_HAS("after 4096 bytes");
    CHECK_ERR_HAS("is unchanged");

    /* Streaming: the first error sticks to the file; the commit repeats it. */
    kiln_atomic_file *f;
    CHECK_OK(kiln_atomic_open(at("f.txt"), &f));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", kiln_atomic_temp_path(f));
    CHECK(kiln_atomic_write(f, big, sizeof big) == KILN_ERR_IO);
    CHECK(!exists(tmp)); /* unlinked at once, so a full disk gets its space back */
    kiln_error_clear();
    CHECK(kiln_atomic_write(f, "y", 1) == KILN_ERR_IO);
    CHECK_ERR_HAS(strerror(EFBIG));
    kiln_error_clear();
    CHECK(kiln_atomic_commit(f) == KILN_ERR_IO);
    CHECK_ERR_HAS(strerror(EFBIG));
    CHECK_ERR_HAS(at("f.txt"));

    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, prev);
    CHECK(holds(at("f.txt"), "old"));
    CHECK(temp_files(root) == 0);
}

static void test_write_errors(void) {
    kiln_atomic_file *f = (kiln_atomic_file *)1;
    CHECK(kiln_atomic_open(at("missing/x.txt"), &f) == KILN_ERR_IO);
    CHECK(f == NULL);
    CHECK_ERR_HAS(at("missing/x.txt"));
    CHECK_ERR_HAS(strerror(ENOENT));

    CHECK(kiln_file_write_atomic("", "x", 1) == KILN_ERR_INVALID);
    CHECK(kiln_file_write_atomic(NULL, "x", 1) == KILN_ERR_INVALID);
    CHECK(kiln_file_write_atomic(at("dir/"), "x", 1) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("does not name a file");
    CHECK(kiln_file_write_atomic(at(".."), "x", 1) == KILN_ERR_INVALID);

    /* The target is a folder: the rename fails, nothing is left behind. */
    CHECK_OK(kiln_mkdirs(at("adir")));
    CHECK(kiln_file_write_atomic(at("adir"), "x", 1) == KILN_ERR_IO);
    CHECK_ERR_HAS(at("adir"));
    CHECK_ERR_HAS(strerror(EISDIR));
    CHECK(temp_files(root) == 0);

    /* NULL data for a non-empty write is refused and unlinks the temporary file. */
    CHECK(kiln_file_write_atomic(at("n.txt"), NULL, 5) == KILN_ERR_INVALID);
    CHECK(!exists(at("n.txt")));
    CHECK(temp_files(root) == 0);
}

static void test_long_and_relative_names(void) {
    char name[201];
    memset(name, 'n', 200);
    name[200] = 0;
    CHECK_OK(kiln_file_write_atomic(at(name), "long", 4)); /* temp name cut to fit NAME_MAX */
    CHECK(holds(at(name), "long"));

    int cwd = open(".", O_RDONLY | O_DIRECTORY);
    CHECK(cwd >= 0 && chdir(root) == 0);
    CHECK_OK(kiln_file_write_atomic("rel.txt", "here", 4));
    CHECK(holds("rel.txt", "here"));
    CHECK(temp_files(".") == 0);
    CHECK(cwd >= 0 && fchdir(cwd) == 0);
    if (cwd >= 0) close(cwd);
    CHECK(holds(at("rel.txt"), "here"));
}

static void test_read_limits(void) {
    char text[101];
    memset(text, 'a', 100);
    text[100] = 0;
    put(at("h.txt"), text);
    void *buf = (void *)1;
    size_t len = 7;
    CHECK_OK(kiln_file_read_all(at("h.txt"), &buf, &len, 100));
    CHECK(len == 100);
    kiln_free(buf);
    CHECK(kiln_file_read_all(at("h.txt"), &buf, &len, 99) == KILN_ERR_FORMAT);
    CHECK(buf == NULL && len == 0);
    CHECK_ERR_HAS(at("h.txt"));
    CHECK_ERR_HAS("100 bytes, more than the limit of 99");

    /* No size known up front: read until EOF, growing, within the limit. */
    CHECK_OK(kiln_file_read_all("/proc/self/status", &buf, &len, 1 << 20));
    CHECK(len > 0 && buf && strstr(buf, "Name:") != NULL);
    kiln_free(buf);
    CHECK(kiln_file_read_all("/proc/self/status", &buf, &len, 10) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("limit of 10");
    CHECK(buf == NULL);

    CHECK(kiln_file_read_all(at("nope"), &buf, &len, 10) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS(at("nope"));
    CHECK_ERR_HAS(strerror(ENOENT));
    CHECK(kiln_file_read_all(root, &buf, &len, 10) == KILN_ERR_IO);
    CHECK_ERR_HAS("is a folder");
    CHECK(kiln_file_read_all("", &buf, &len, 10) == KILN_ERR_INVALID);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mkdirs(void) {
    CHECK_OK(kiln_mkdirs(at("m/a/b/c")));
    CHECK(is_dir(at("m/a/b/c")));
    CHECK_OK(kiln_mkdirs(at("m/a/b/c"))); /* exists: fine */
    CHECK_OK(kiln_mkdirs(at("m/a/b/c/")));
    CHECK_OK(kiln_mkdirs(at("m//x///y/")));
    CHECK(is_dir(at("m/x/y")));
    CHECK_OK(kiln_mkdirs("/"));

    put(at("m/file"), "f");
    CHECK(kiln_mkdirs(at("m/file/sub")) == KILN_ERR_IO);
    CHECK_ERR_HAS(at("m/file"));
    CHECK_ERR_HAS("is not a folder");
    CHECK(kiln_mkdirs(at("m/file")) == KILN_ERR_IO);
    CHECK(kiln_mkdirs("") == KILN_ERR_INVALID);
    CHECK(kiln_mkdirs(NULL) == KILN_ERR_INVALID);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/kiln-test-fileio-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_write_read_roundtrip);
    RUN(test_commit_replaces);
    RUN(test_abort_keeps_old);
    RUN(test_failed_write_keeps_old);
    RUN(test_write_errors);
    RUN(test_long_and_relative_names);
    RUN(test_read_limits);
    RUN(test_mkdirs);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return kiln_test_summary();
}
