/* test_tfrecord.c — TFRecord framing (src/io/tfrecord.c): the bytes of a framed record checked
 * by hand (little-endian length, checksums by the tests' bit-by-bit CRC-32C), round trips in
 * memory and through files (empty records, a 1 MiB record, many records), and damaged input:
 * every byte of a small file flipped and the file cut at every length, through the record
 * reader and through the event reader (kiln_tb_read_events) — each reported as an error that
 * names the offset of the damaged record, none crashing, none delivering a damaged record.
 * Compression (TF's GZIP and ZLIB): files written by kiln_tfrecord_writer are checked with
 * zlib's own gzread / uncompress against the plain file (byte for byte), read back explicitly
 * and with detection, concatenated gzip members, and the same byte flips and cuts as above on
 * the compressed bytes; skipping a record with a bad data checksum; random access by offset;
 * atomic writes (nothing under the target name until the commit). */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "kiln/crc32c.h"
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

/* ---- compression ---- */

/* Record i of the sample files: i bytes (i < 20), then one of 200 KiB (bigger than the
 * writer's buffer would make it go through unbuffered if it were 256 KiB; a mid-size one). */
static size_t sample_rec(int i, unsigned char *b) {
    size_t n = i < 20 ? (size_t)i : (size_t)200 << 10;
    for (size_t j = 0; j < n; j++) b[j] = (unsigned char)(i < 20 ? 'a' + (i + j) % 26 : j * 7 >> 3);
    return n;
}

static const char *write_with(kiln_tfrecord_compression c, int records, const char *tag) {
    static char path[4][160];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 160, "%s/w-%s-%s.tfrecord", dir, tag, kiln_tfrecord_compression_name(c));
    kiln_tfrecord_writer *w;
    CHECK_OK(kiln_tfrecord_writer_open(p, c, &w));
    if (!w) return p;
    unsigned char *b = malloc((size_t)200 << 10);
    for (int i = 0; i < records; i++) CHECK_OK(kiln_tfrecord_writer_add(w, b, sample_rec(i, b)));
    free(b);
    CHECK_OK(kiln_tfrecord_writer_commit(w));
    return p;
}

/* Reads a whole file with compression c; returns records read that match sample_rec, -1 when
 * one does not; *st the final status. */
static int read_check(const char *path, kiln_tfrecord_compression c, kiln_status *st) {
    kiln_tfrecord_reader *r;
    *st = kiln_tfrecord_open_compressed(path, c, 0, &r);
    if (*st) return 0;
    unsigned char *b = malloc((size_t)200 << 10);
    const void *data;
    size_t len;
    int good = 0;
    while ((*st = kiln_tfrecord_next(r, &data, &len)) == KILN_OK) {
        size_t n = sample_rec(good, b);
        if (n != len || memcmp(b, data, n)) {
            good = -1;
            break;
        }
        good++;
    }
    free(b);
    kiln_tfrecord_close(r);
    return good;
}

static void test_compression_round_trip(void) {
    const char *plain = write_with(KILN_TFRECORD_NONE, 21, "rt");
    const char *gz = write_with(KILN_TFRECORD_GZIP, 21, "rt");
    const char *zl = write_with(KILN_TFRECORD_ZLIB, 21, "rt");
    void *pb, *gb, *zb;
    size_t pn, gn, zn;
    CHECK_OK(kiln_file_read_all(plain, &pb, &pn, 1 << 24));
    CHECK_OK(kiln_file_read_all(gz, &gb, &gn, 1 << 24));
    CHECK_OK(kiln_file_read_all(zl, &zb, &zn, 1 << 24));
    const unsigned char *g = gb, *z = zb;
    CHECK(gn > 3 && g[0] == 0x1f && g[1] == 0x8b && g[2] == 8);
    CHECK(zn > 2 && z[0] == 0x78 && ((z[0] << 8) | z[1]) % 31 == 0);
    CHECK(gn < pn && zn < pn);
    /* zlib's own readers give back the plain file byte for byte */
    unsigned char *u = malloc(pn + 64);
    gzFile f = gzopen(gz, "rb");
    int got = f ? gzread(f, u, (unsigned)pn + 64) : -1;
    if (f) gzclose(f);
    CHECK(got == (int)pn && !memcmp(u, pb, pn));
    uLongf ul = pn + 64;
    CHECK(uncompress(u, &ul, zb, zn) == Z_OK && ul == pn && !memcmp(u, pb, pn));
    free(u);
    /* detection */
    CHECK(kiln_tfrecord_detect(pb, pn) == KILN_TFRECORD_NONE);
    CHECK(kiln_tfrecord_detect(gb, gn) == KILN_TFRECORD_GZIP);
    CHECK(kiln_tfrecord_detect(zb, zn) == KILN_TFRECORD_ZLIB);
    CHECK(kiln_tfrecord_detect("", 0) == KILN_TFRECORD_NONE);
    /* a plain file whose first length looks like the gzip magic: 0x088b1f bytes */
    unsigned char h[12], ft[4];
    kiln_tfrecord_frame(NULL, 0, h, ft);
    h[0] = 0x1f, h[1] = 0x8b, h[2] = 0x08;
    uint32_t lc = kiln_crc32c_mask(kiln_crc32c(h, 8));
    for (int i = 0; i < 4; i++) h[8 + i] = (unsigned char)(lc >> (8 * i));
    CHECK(kiln_tfrecord_detect(h, 12) == KILN_TFRECORD_NONE);
    CHECK(kiln_tfrecord_detect(h, 3) == KILN_TFRECORD_GZIP); /* too short to tell: the magic */
    /* reading: explicit and detected */
    kiln_status st;
    CHECK(read_check(plain, KILN_TFRECORD_NONE, &st) == 21 && st == KILN_ERR_NOTFOUND);
    CHECK(read_check(plain, KILN_TFRECORD_AUTO, &st) == 21 && st == KILN_ERR_NOTFOUND);
    CHECK(read_check(gz, KILN_TFRECORD_GZIP, &st) == 21 && st == KILN_ERR_NOTFOUND);
    CHECK(read_check(gz, KILN_TFRECORD_AUTO, &st) == 21 && st == KILN_ERR_NOTFOUND);
    CHECK(read_check(zl, KILN_TFRECORD_ZLIB, &st) == 21 && st == KILN_ERR_NOTFOUND);
    CHECK(read_check(zl, KILN_TFRECORD_AUTO, &st) == 21 && st == KILN_ERR_NOTFOUND);
    kiln_tfrecord_reader *r;
    CHECK_OK(kiln_tfrecord_open_compressed(zl, KILN_TFRECORD_AUTO, 0, &r));
    CHECK(r && kiln_tfrecord_reader_compression(r) == KILN_TFRECORD_ZLIB);
    kiln_tfrecord_close(r);
    /* the wrong compression named: an error at the first record, not garbage */
    CHECK(read_check(gz, KILN_TFRECORD_NONE, &st) == 0 && st == KILN_ERR_FORMAT);
    CHECK(read_check(gz, KILN_TFRECORD_ZLIB, &st) == 0 && st == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("corrupt zlib data");
    CHECK(read_check(plain, KILN_TFRECORD_GZIP, &st) == 0 && st == KILN_ERR_FORMAT);
    /* an empty file has no records, whatever the compression */
    const char *e0 = write_with(KILN_TFRECORD_NONE, 0, "empty");
    CHECK(read_check(e0, KILN_TFRECORD_GZIP, &st) == 0 && st == KILN_ERR_NOTFOUND);
    /* an empty gzip file made by the writer is a valid (empty) stream */
    const char *e1 = write_with(KILN_TFRECORD_GZIP, 0, "empty");
    CHECK(read_check(e1, KILN_TFRECORD_AUTO, &st) == 0 && st == KILN_ERR_NOTFOUND);
    /* concatenated gzip members (cat a.gz b.gz) read as one file */
    const char *g2 = write_with(KILN_TFRECORD_GZIP, 5, "cat");
    void *cb;
    size_t cn;
    CHECK_OK(kiln_file_read_all(g2, &cb, &cn, 1 << 24));
    unsigned char *b = malloc((size_t)200 << 10);
    kiln_tfrecord_writer *w;
    char cat[200];
    snprintf(cat, sizeof cat, "%s/cat2.tfrecord.gz", dir);
    CHECK_OK(kiln_tfrecord_writer_open(cat, KILN_TFRECORD_GZIP, &w));
    for (int i = 5; i < 21; i++) CHECK_OK(kiln_tfrecord_writer_add(w, b, sample_rec(i, b)));
    CHECK_OK(kiln_tfrecord_writer_commit(w));
    void *c2;
    size_t c2n;
    CHECK_OK(kiln_file_read_all(cat, &c2, &c2n, 1 << 24));
    unsigned char *both = malloc(cn + c2n);
    memcpy(both, cb, cn), memcpy(both + cn, c2, c2n);
    CHECK_OK(kiln_file_write_atomic(cat, both, cn + c2n));
    CHECK(read_check(cat, KILN_TFRECORD_AUTO, &st) == 21 && st == KILN_ERR_NOTFOUND);
    /* zlib has no members: bytes after its end are an error */
    memcpy(both, zb, zn);
    both[zn] = 0x78;
    CHECK_OK(kiln_file_write_atomic(cat, both, zn + 1));
    CHECK(read_check(cat, KILN_TFRECORD_ZLIB, &st) == 21 && st == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("after the end of the zlib stream");
    free(both), free(b);
    kiln_free(cb), kiln_free(c2);
    kiln_free(pb), kiln_free(gb), kiln_free(zb);
}

/* Every byte flipped and every cut of small compressed files: errors only (a gzip header's
 * unchecked bytes aside), never a wrong record, never a crash. */
static void test_compressed_damage(void) {
    for (int k = 0; k < 2; k++) {
        kiln_tfrecord_compression c = k ? KILN_TFRECORD_ZLIB : KILN_TFRECORD_GZIP;
        const char *path = write_with(c, 20, "dmg");
        void *file;
        size_t n;
        CHECK_OK(kiln_file_read_all(path, &file, &n, 1 << 20));
        unsigned char *copy = malloc(n);
        unsigned char *b = malloc(64);
        int bad = 0, wrong = 0;
        for (size_t at = 0; at < n; at++) {
            memcpy(copy, file, n);
            copy[at] ^= 0x21;
            kiln_tfrecord_reader *r;
            kiln_status st = kiln_tfrecord_open_mem_compressed(copy, n, "z", c, 0, &r);
            int good = 0;
            const void *data;
            size_t len;
            while (!st && (st = kiln_tfrecord_next(r, &data, &len)) == KILN_OK) {
                size_t want = sample_rec(good, b);
                if (len != want || memcmp(data, b, len)) wrong++;
                good++;
            }
            kiln_tfrecord_close(r);
            /* gzip header bytes 4..9 (MTIME, XFL, OS) carry no checksum */
            int unchecked = c == KILN_TFRECORD_GZIP && at >= 4 && at <= 9;
            if (!unchecked && st != KILN_ERR_FORMAT) bad++;
            if (st == KILN_ERR_FORMAT && !strstr(kiln_last_error(), "z: ")) bad++;
        }
        CHECK_MSG(bad == 0 && wrong == 0, "%s: %d flips not reported, %d wrong records",
                  kiln_tfrecord_compression_name(c), bad, wrong);
        bad = 0;
        for (size_t cut = 1; cut < n; cut++) {
            kiln_status st;
            int64_t off;
            int trunc;
            kiln_tfrecord_reader *r;
            st = kiln_tfrecord_open_mem_compressed(file, cut, "z", c, 0, &r);
            const void *data;
            size_t len;
            int good = 0;
            while (!st && (st = kiln_tfrecord_next(r, &data, &len)) == KILN_OK) good++;
            off = kiln_tfrecord_offset(r), trunc = kiln_tfrecord_truncated(r);
            kiln_tfrecord_close(r);
            (void)off;
            if (st != KILN_ERR_FORMAT || !trunc || good > 20) bad++;
        }
        CHECK_MSG(bad == 0, "%s: %d cuts not reported as truncated",
                  kiln_tfrecord_compression_name(c), bad);
        free(copy), free(b);
        kiln_free(file);
    }
}

static void test_skip_damaged(void) {
    const char *path = write_sample(0);
    void *file;
    size_t n;
    CHECK_OK(kiln_file_read_all(path, &file, &n, 1 << 20));
    unsigned char *m = file;
    int64_t start5 = 0;
    for (int i = 0; i < 5; i++) start5 += 16 + i;
    m[start5 + 12 + 2] ^= 1; /* record 5's data */
    kiln_tfrecord_reader *r;
    CHECK_OK(kiln_tfrecord_open_mem(m, n, "m", 0, &r));
    const void *data;
    size_t len;
    int good = 0, skipped = 0;
    kiln_status st;
    for (;;) {
        st = kiln_tfrecord_next(r, &data, &len);
        if (st == KILN_OK) {
            good++;
            continue;
        }
        if (st == KILN_ERR_FORMAT && kiln_tfrecord_skip_damaged(r)) {
            CHECK(kiln_tfrecord_offset(r) == start5 + 16 + 5);
            skipped++;
            continue;
        }
        break;
    }
    CHECK(st == KILN_ERR_NOTFOUND && good == 19 && skipped == 1);
    kiln_tfrecord_close(r);
    m[start5 + 12 + 2] ^= 1;
    m[start5 + 3] ^= 1; /* record 5's length: no way past it */
    CHECK_OK(kiln_tfrecord_open_mem(m, n, "m", 0, &r));
    good = 0;
    while ((st = kiln_tfrecord_next(r, &data, &len)) == KILN_OK) good++;
    CHECK(st == KILN_ERR_FORMAT && good == 5 && !kiln_tfrecord_skip_damaged(r));
    CHECK(kiln_tfrecord_next(r, &data, &len) == KILN_ERR_FORMAT);
    kiln_tfrecord_close(r);
    kiln_free(file);
}

static void test_read_at(void) {
    const char *path = write_sample(1);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    unsigned char *buf = malloc(((size_t)1 << 20) + 16);
    const void *data;
    int64_t off = 0;
    for (int i = 0; i < 20; i++) {
        CHECK_OK(kiln_tfrecord_read_at(fd, off, (size_t)i, buf, path, &data));
        for (int j = 0; j < i && data; j++)
            CHECK(((const char *)data)[j] == (char)('a' + (i + j) % 26));
        off += 16 + i;
    }
    CHECK_OK(kiln_tfrecord_read_at(fd, off, (size_t)1 << 20, buf, path, &data));
    CHECK(data && ((const unsigned char *)data)[77] == (unsigned char)(77u * 2654435761u >> 24));
    /* the wrong length, past the end, a misaligned offset */
    CHECK(kiln_tfrecord_read_at(fd, 16, 2, buf, path, &data) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("offset 16: corrupt record");
    CHECK(kiln_tfrecord_read_at(fd, off, ((size_t)1 << 20) - 1, buf, path, &data) ==
          KILN_ERR_FORMAT);
    CHECK(kiln_tfrecord_read_at(fd, off + 1, 10, buf, path, &data) == KILN_ERR_FORMAT);
    CHECK(kiln_tfrecord_read_at(fd, off, ((size_t)1 << 20) + 5, buf, path, &data) ==
          KILN_ERR_FORMAT);
    CHECK_ERR_HAS("truncated record");
    close(fd);
    /* a damaged data byte */
    void *file;
    size_t n;
    CHECK_OK(kiln_file_read_all(path, &file, &n, 1 << 22));
    ((unsigned char *)file)[16 + 17 + 12 + 1] ^= 4; /* record 2's data */
    char p2[200];
    snprintf(p2, sizeof p2, "%s/damaged.tfrecord", dir);
    CHECK_OK(kiln_file_write_atomic(p2, file, n));
    fd = open(p2, O_RDONLY);
    CHECK(kiln_tfrecord_read_at(fd, 33, 2, buf, p2, &data) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("offset 33: corrupt record: the checksum of its 2 data bytes");
    CHECK_OK(kiln_tfrecord_read_at(fd, 51, 3, buf, p2, &data));
    close(fd);
    kiln_free(file);
    free(buf);
}

static int count_tmp(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, ".tmp-", 5)) n++;
    if (d) closedir(d);
    return n;
}

static void test_writer_atomic(void) {
    char path[200];
    snprintf(path, sizeof path, "%s/atomic.tfrecord", dir);
    kiln_tfrecord_writer *w;
    CHECK_OK(kiln_tfrecord_writer_open(path, KILN_TFRECORD_GZIP, &w));
    CHECK_OK(kiln_tfrecord_writer_add(w, "abc", 3));
    CHECK(access(path, F_OK) != 0); /* nothing under the name before the commit */
    CHECK(count_tmp() == 1);
    kiln_tfrecord_writer_abort(w);
    CHECK(access(path, F_OK) != 0 && count_tmp() == 0);
    CHECK_OK(kiln_tfrecord_writer_open(path, KILN_TFRECORD_NONE, &w));
    CHECK_OK(kiln_tfrecord_writer_add(w, "abc", 3));
    CHECK(kiln_tfrecord_writer_bytes(w) == 0); /* still in the buffer */
    CHECK_OK(kiln_tfrecord_writer_commit(w));
    CHECK(access(path, F_OK) == 0 && count_tmp() == 0);
    snprintf(path, sizeof path, "%s/no/such/dir/x.tfrecord", dir);
    CHECK(kiln_tfrecord_writer_open(path, KILN_TFRECORD_NONE, &w) != KILN_OK && w == NULL);
    CHECK(kiln_tfrecord_writer_open(path, KILN_TFRECORD_AUTO, &w) == KILN_ERR_INVALID);
    kiln_tfrecord_compression c;
    CHECK(kiln_tfrecord_compression_parse("gzip", &c) == 0 && c == KILN_TFRECORD_GZIP);
    CHECK(kiln_tfrecord_compression_parse("ZLIB", &c) == -1);
    CHECK(kiln_tfrecord_compression_parse("", &c) == 0 && c == KILN_TFRECORD_NONE);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/kiln-test-tfrecord-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(test_frame_bytes);
    RUN(test_round_trip_file);
    RUN(test_damage);
    RUN(test_event_file_fuzz);
    RUN(test_compression_round_trip);
    RUN(test_compressed_damage);
    RUN(test_skip_damaged);
    RUN(test_read_at);
    RUN(test_writer_atomic);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return kiln_test_summary();
}
