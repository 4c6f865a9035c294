/* test_tfrecord.c — TFRecord framing (src/io/tfrecord.c): the bytes of a framed record checked
 * by hand (little-endian length, checksums by the tests' bit-by-bit CRC-32C), round trips in
 * memory and through files (empty records, a 1 MiB record, many records), and damaged input:
 * every byte of a small file flipped and the file cut at every length, through the record
 * reader and through the event reader (kiln_tb_read_events) — each reported as an error that
 * names the offset of the damaged record, none crashing, none delivering a damaged record. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/tfrecord.h"
#include "kiln/tboard.h"
#include "tb_events.h"
#include "tboard/tb_internal.h"

static char dir[64];

static void test_frame_bytes(void) {
    unsigned char h[12], f[4];
    const char *data = "hello, tfrecord";
    size_t n = strlen(data);
    kiln_tfrecord_frame(data, n, h, f);
    CHECK(h[0] == n && h[1] == 0 && h[7] == 0);
    uint32_t lc = tb_masked_crc(h, 8), dc = tb_masked_crc(data, n);
    CHECK(h[8] == (lc & 0xFF) && h[9] == ((lc >> 8) & 0xFF) && h[10] == ((lc >> 16) & 0xFF) &&
          h[11] == (lc >> 24));
    CHECK(f[0] == (dc & 0xFF) && f[1] == ((dc >> 8) & 0xFF) && f[2] == ((dc >> 16) & 0xFF) &&
          f[3] == (dc >> 24));
    kiln_tfrecord_frame("", 0, h, f); /* an empty record still has both checksums */
    for (int i = 0; i < 8; i++) CHECK(h[i] == 0);
    uint32_t e = tb_masked_crc("", 0);
    CHECK(f[0] == (e & 0xFF) && f[3] == (e >> 24));
}

/* A file of records r0 = "", r1 = 1 byte, ..., plus one of 1 MiB; returns its path. */
static const char *write_sample(int big) {
    static char path[128];
    snprintf(path, sizeof path, "%s/sample-%d.tfrecord", dir, big);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    CHECK(fd >= 0);
    char rec[64];
    for (int i = 0; i < 20; i++) {
        for (int j = 0; j < i; j++) rec[j] = (char)('a' + (i + j) % 26);
        CHECK_OK(kiln_tfrecord_write(fd, rec, (size_t)i, path));
    }
    if (big) {
        size_t n = 1 << 20;
        unsigned char *b = malloc(n);
        for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 2654435761u >> 24);
        CHECK_OK(kiln_tfrecord_write(fd, b, n, path));
        free(b);
    }
    close(fd);
    return path;
}

static void test_round_trip_file(void) {
    const char *path = write_sample(1);
    kiln_tfrecord_reader *r;
    CHECK_OK(kiln_tfrecord_open(path, 0, &r));
    const void *data;
    size_t len;
    int64_t expect_off = 0;
    for (int i = 0; i < 20; i++) {
        CHECK(kiln_tfrecord_offset(r) == expect_off);
        CHECK_OK(kiln_tfrecord_next(r, &data, &len));
        CHECK(len == (size_t)i);
        for (int j = 0; j < i && len == (size_t)i; j++)
            CHECK(((const char *)data)[j] == (char)('a' + (i + j) % 26));
        expect_off += 16 + i;
    }
    CHECK_OK(kiln_tfrecord_next(r, &data, &len));
    CHECK(len == 1 << 20);
    CHECK(len == 1 << 20 &&
          ((const unsigned char *)data)[12345] == (unsigned char)(12345u * 2654435761u >> 24));
    CHECK(kiln_tfrecord_next(r, &data, &len) == KILN_ERR_NOTFOUND);
    CHECK(kiln_tfrecord_next(r, &data, &len) == KILN_ERR_NOTFOUND);
    kiln_tfrecord_close(r);
    /* the same file with a cap below the big record */
    CHECK_OK(kiln_tfrecord_open(path, 1000, &r));
    kiln_status st;
    while ((st = kiln_tfrecord_next(r, &data, &len)) == KILN_OK) {
    }
    CHECK(st == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("larger than the 1000 allowed");
    CHECK(!kiln_tfrecord_truncated(r));
    kiln_tfrecord_close(r);
    CHECK(kiln_tfrecord_open("/nonexistent/x.tfrecord", 0, &r) == KILN_ERR_NOTFOUND && r == NULL);
    CHECK_OK(kiln_tfrecord_open_mem(NULL, 0, "empty", 0, &r));
    CHECK(kiln_tfrecord_next(r, &data, &len) == KILN_ERR_NOTFOUND);
    kiln_tfrecord_close(r);
}

/* Reads everything from mem; returns the number of good records, *st the final status. */
static int read_all(const unsigned char *mem, size_t n, kiln_status *st, int64_t *err_off,
                    int *truncated) {
    kiln_tfrecord_reader *r;
    CHECK_OK(kiln_tfrecord_open_mem(mem, n, "mem", 0, &r));
    const void *data;
    size_t len;
    int good = 0;
    while ((*st = kiln_tfrecord_next(r, &data, &len)) == KILN_OK) good++;
    *err_off = kiln_tfrecord_offset(r);
    *truncated = kiln_tfrecord_truncated(r);
    kiln_tfrecord_close(r);
    return good;
}

static void test_damage(void) {
    const char *path = write_sample(0);
    void *file;
    size_t n;
    CHECK_OK(kiln_file_read_all(path, &file, &n, 1 << 20));
    unsigned char *copy = malloc(n);
    /* record starts: record i is 16 + i bytes */
    int64_t starts[21];
    starts[0] = 0;
    for (int i = 0; i < 20; i++) starts[i + 1] = starts[i] + 16 + i;
    CHECK(starts[20] == (int64_t)n);
    int bad = 0;
    for (size_t at = 0; at < n;
         at++) { /* one flipped byte: the record holding it fails, by offset */
        memcpy(copy, file, n);
        copy[at] ^= 0x5A;
        int rec = 0;
        while (starts[rec + 1] <= (int64_t)at) rec++;
        kiln_status st;
        int64_t off;
        int trunc;
        int good = read_all(copy, n, &st, &off, &trunc);
        /* a flipped length byte may make the record look longer than the file: then it is
         * "truncated" */
        if (good != rec || st != KILN_ERR_FORMAT || off != starts[rec] ||
            !strstr(kiln_last_error(), "mem: offset "))
            bad++;
    }
    CHECK_MSG(bad == 0, "%d flipped bytes were not reported at their record", bad);
    bad = 0;
    for (size_t cut = 0; cut < n;
         cut++) { /* cut at every length: whole records read, then truncated */
        kiln_status st;
        int64_t off;
        int trunc;
        int good = read_all(file, cut, &st, &off, &trunc);
        int complete = 0;
        while (complete < 20 && starts[complete + 1] <= (int64_t)cut) complete++;
        int at_boundary = starts[complete] == (int64_t)cut;
        if (good != complete)
            bad++;
        else if (at_boundary ? st != KILN_ERR_NOTFOUND
                             : (st != KILN_ERR_FORMAT || !trunc || off != starts[complete]))
            bad++;
    }
    CHECK_MSG(bad == 0, "%d cut lengths misreported", bad);
    free(copy);
    kiln_free(file);
}

static int count_events(const Tensorflow__Event *ev, int64_t offset, void *ctx) {
    (void)ev, (void)offset;
    ++*(int *)ctx;
    return 0;
}

/* An event file written by the TensorBoard writer, damaged byte by byte and cut at every length:
 * kiln_tb_read_events reports "offset N" and never delivers more events than the intact prefix. */
static void test_event_file_fuzz(void) {
    char evdir[128];
    snprintf(evdir, sizeof evdir, "%s/events", dir);
    kiln_tb_writer *w;
    CHECK_OK(kiln_tb_open(evdir, &w));
    if (!w) return;
    CHECK_OK(kiln_tb_scalar(w, "epoch_loss", 1, 0.5f));
    CHECK_OK(kiln_tb_scalar(w, "epoch_loss", 2, 0.25f));
    CHECK_OK(kiln_tb_text(w, "config", 0, "seed: 1"));
    float v[5] = {1, 2, 3, 4, 5};
    CHECK_OK(kiln_tb_histogram(w, "dense_1/kernel", 2, v, 5));
    char path[512];
    snprintf(path, sizeof path, "%s", kiln_tb_path(w));
    kiln_tb_close(w);
    void *file;
    size_t n;
    CHECK_OK(kiln_file_read_all(path, &file, &n, 1 << 20));
    int all = 0;
    CHECK_OK(kiln_tb_read_events(path, count_events, &all));
    CHECK(all == 5);
    unsigned char *copy = malloc(n);
    int bad = 0;
    for (size_t at = 0; at < n; at++) {
        memcpy(copy, file, n);
        copy[at] ^= 0x01;
        int got = 0;
        kiln_status st = kiln_tb_read_events_mem(copy, n, "ev", count_events, &got);
        if (st != KILN_ERR_FORMAT || got >= all || !strstr(kiln_last_error(), "ev: offset ")) bad++;
    }
    CHECK_MSG(bad == 0, "%d flipped bytes not reported", bad);
    bad = 0;
    int boundaries = 0;
    for (size_t cut = 0; cut < n; cut++) { /* at a record boundary the shorter file is valid */
        int got = 0;
        kiln_status st = kiln_tb_read_events_mem(file, cut, "ev", count_events, &got);
        if (st == KILN_OK)
            boundaries++;
        else if (st != KILN_ERR_FORMAT || got >= all ||
                 !strstr(kiln_last_error(), "truncated record"))
            bad++;
    }
    CHECK_MSG(bad == 0, "%d cuts not reported", bad);
    CHECK(boundaries == all); /* offsets 0 and the starts of records 1 .. all-1 */
    /* a record with valid checksums that is not an Event */
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK_OK(kiln_tfrecord_write(fd, "\xff\xff\xff", 3, path));
    close(fd);
    int got = 0;
    CHECK(kiln_tb_read_events(path, count_events, &got) == KILN_ERR_FORMAT);
    CHECK(got == all);
    char want[64];
    snprintf(want, sizeof want, "offset %zu: the record is not a tensorflow.Event", n);
    CHECK_ERR_HAS(want);
    free(copy);
    kiln_free(file);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/kiln-test-tfrecord-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(test_frame_bytes);
    RUN(test_round_trip_file);
    RUN(test_damage);
    RUN(test_event_file_fuzz);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return kiln_test_summary();
}
