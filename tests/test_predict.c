/* test_predict.c — the client side of serving: instance readers and the REST client.
 *
 *  - Readers, round trips with known values: JSON predict bodies (row, columnar, named), bare
 *    lists of nested or flat instances and a single bare instance; CSV with a header, quotes,
 *    spaces, CRLF, a BOM and blank lines; NPY in f4, u1, a single row, gzip-free and through
 *    stdin-style memory; PNG (gray and RGB, written by stb_image_write) into [1,H,W], [3,H,W]
 *    and [H,W] inputs in CHW order, BMP and PGM; format sniffing of every kind; where each
 *    instance came from; appending several files.
 *  - Refusals that name the file and the place: wrong sizes (both image sizes named), wrong
 *    shapes, non-numbers, NaN, empty and unknown files; a failed read leaves what was read.
 *  - Every prefix and thousands of byte-mutations of each valid file: an error or a result,
 *    never a crash (ASan checks the memory), and truncations that must fail do.
 *  - --stream lines: JSON and CSV, and bad ones.
 *  - The client against a local HTTP server with canned TF Serving answers: metadata parsed
 *    (string sizes, version, class names), rows sent nested and bit-exact, predictions read
 *    from objects and bare lists (NaN tokens included, "classes" strings skipped), the
 *    version and an escaped model name in the URL, one connection for many requests, and
 *    errors: 404 / 400 / 500 with the server's text and status, malformed and short
 *    responses, a server that is gone.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "check.h"
#include "kiln/image.h"
#include "kiln/client.h"
#include "kiln/http.h"
#include "kiln/instances.h"
#include "kiln/sbuf.h"
#include "kiln/tensor_json.h"

static char root[] = "/tmp/kiln-test-predict-XXXXXX";

static const char *at(const char *name) {
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", root, name);
    return b;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    write_file(path, text, strlen(text));
}

static kiln_instances_spec spec_of(int ndim, const int64_t *dims) {
    kiln_instances_spec s = {kiln_shape_make(ndim, dims), "input"};
    return s;
}

/* x[i] == i + base for i < n. */
static int counts_up(const float *x, int64_t n, float base) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] != (float)i + base) return 0;
    return 1;
}

/* An NPY file: header for descr and shape, then data. */
static void write_npy(const char *path, const char *descr, int ndim, const int64_t *dims,
                      const void *data, size_t bytes) {
    char dict[256], shape[128] = "";
    size_t n = 0;
    for (int i = 0; i < ndim; i++)
        n += (size_t)snprintf(shape + n, sizeof shape - n, "%lld,%s", (long long)dims[i],
                              i + 1 < ndim ? " " : "");
    int len = snprintf(dict, sizeof dict,
                       "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
    int total = 10 + len + 1, pad = (64 - total % 64) % 64;
    unsigned char *buf = malloc((size_t)(total + pad) + bytes);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((len + 1 + pad) & 255), buf[9] = (unsigned char)((len + 1 + pad) >> 8);
    memcpy(buf + 10, dict, (size_t)len);
    memset(buf + 10 + len, ' ', (size_t)pad);
    buf[total + pad - 1] = '\n';
    memcpy(buf + total + pad, data, bytes);
    write_file(path, buf, (size_t)(total + pad) + bytes);
    free(buf);
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* ---- JSON ---- */

static void test_json(void) {
    kiln_instances_spec sp = spec_of(3, (int64_t[]){1, 2, 3}); /* row of 6 */
    kiln_instances in = {0};
    write_text(at("a.json"), "{\"signature_name\": \"serving_default\", \"instances\": "
                             "[[[[0,1,2],[3,4,5]]], [[[6,7,8],[9,10,11]]]]}");
    CHECK_OK(kiln_instances_read(&in, at("a.json"), &sp));
    CHECK(in.n == 2 && in.row_size == 6 && counts_up(in.x, 12, 0));
    CHECK(in.n == 2 && strstr(in.where[0], "a.json[0]") && strstr(in.where[1], "a.json[1]"));

    /* flat instances, columnar, named rows, named columns: all appended */
    write_text(at("b.json"), "{\"instances\": [[12,13,14,15,16,17]]}");
    write_text(at("c.json"), "{\"inputs\": [[[18,19,20],[21,22,23]]]}");
    write_text(at("d.json"), "{\"instances\": [{\"input\": [24,25,26,27,28,29]}]}");
    write_text(at("e.json"),
               "{\"inputs\": {\"input\": [[30,31,32,33,34,35], [36,37,38,39,40,41]]}}");
    CHECK_OK(kiln_instances_read(&in, at("b.json"), &sp));
    CHECK_OK(kiln_instances_read(&in, at("c.json"), &sp));
    CHECK_OK(kiln_instances_read(&in, at("d.json"), &sp));
    CHECK_OK(kiln_instances_read(&in, at("e.json"), &sp));
    CHECK(in.n == 7 && counts_up(in.x, 42, 0));
    CHECK(in.n == 7 && strstr(in.where[2], "b.json") && !strchr(in.where[2], '['));

    /* bare lists: of nested instances, of flat ones, and one instance, nested or flat */
    write_text(at("f.json"), "[[[[42,43,44],[45,46,47]]], [[[48,49,50],[51,52,53]]]]");
    write_text(at("g.json"), " [[54,55,56,57,58,59],\n [60,61,62,63,64,65]]\n");
    write_text(at("h.json"), "[[66,67,68],[69,70,71]]");
    write_text(at("i.json"), "[72,73,74,75,76,77]");
    const char *more[] = {"f.json", "g.json", "h.json", "i.json"};
    for (int i = 0; i < 4; i++) CHECK_OK(kiln_instances_read(&in, at(more[i]), &sp));
    CHECK(in.n == 13 && counts_up(in.x, 78, 0));

    /* refusals, each naming the file; nothing is appended */
    struct {
        const char *text, *says;
    } bad[] = {
        {"{\"instances\": [[0,1,2,3,4]]}", "each instance has shape [5]"},
        {"{\"instances\": [[0,1,2,3,4,5], [0,1]]}", "instances[1]: expected 6 values, got 2"},
        {"[[0,1,2,3,4,5], [0,1,2,3,4,\"x\"]]", "[1][5]: expected a number, got a string"},
        {"[[0,1,2,3,4,5], [0,1,2,3,4,\"NaN\"]]", "got a string (NaN, Infinity and -Infinity go"},
        {"[[0,1,2],\n [3,4,5]", "line 2"},
        {"{\"instances\": [{\"image\": [0,1,2,3,4,5]}]}", "input 'image' is not the model's"},
        {"{\"inputs\": {\"input\": [[0,1,2,3,4,5]], \"x\": [[1,2,3,4,5,6]]}}", "2 named inputs"},
        {"{\"foo\": 1}", "missing \"instances\""},
        {"[]", "empty list"},
        {"\"text\"", "got a string"},
        {"[1,2,3]", "neither one instance nor a list of instances"},
        {"   ", "empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(at("bad.json"), bad[i].text);
        CHECK(kiln_instances_read(&in, at("bad.json"), &sp) == KILN_ERR_FORMAT);
        CHECK_ERR_HAS(bad[i].says);
        CHECK_ERR_HAS("bad.json");
        CHECK(in.n == 13);
    }
    kiln_instances_free(&in);
    CHECK(in.n == 0 && in.x == NULL);
}

/* ---- CSV ---- */

static void test_csv(void) {
    kiln_instances_spec sp = spec_of(1, (int64_t[]){3});
    kiln_instances in = {0};
    write_text(at("a.csv"), "\xef\xbb\xbf"
                            "x0,x1,x2\r\n"
                            "0, 1 ,2\r\n"
                            "\r\n"
                            "\"3\",4.0,5e0\n"
                            "   \n"
                            "6,7,8");
    CHECK_OK(kiln_instances_read(&in, at("a.csv"), &sp));
    CHECK(in.n == 3 && counts_up(in.x, 9, 0));
    CHECK(in.n == 3 && strstr(in.where[0], "a.csv:2") && strstr(in.where[1], "a.csv:4") &&
          strstr(in.where[2], "a.csv:6"));
    write_text(at("b.txt"), "9,10,11\n-1.5,1e-3,3.25\n"); /* no header */
    CHECK_OK(kiln_instances_read(&in, at("b.txt"), &sp));
    CHECK(in.n == 5 && counts_up(in.x, 12, 0));
    CHECK(in.n == 5 && in.x[12] == -1.5f && in.x[13] == 1e-3f && in.x[14] == 3.25f);

    struct {
        const char *text, *says;
    } bad[] = {
        {"1,2,3\n4,5\n", "bad.csv:2: 2 values, but the model's input row is [3] (3 values)"},
        {"a,b,c\n1,2,3\n4,x,6\n", "bad.csv:3: column 2: 'x' is not a number"},
        {"1,2,3\n4,,6\n", "bad.csv:2: column 2: '' is not a number"},
        {"1,2,3\n4,5,nan\n", "bad.csv:2: column 3: 'nan' is not a finite"},
        {"1,2,3\n4,5,1e39\n", "column 3: '1e39' is not a finite"},
        {"1,2,3\n\"4\"x,5,6\n", "bad.csv:2: column 1"},
        {"1,2,3,4\n", "bad.csv:1: 4 values"},
        {"header only\n", "no instances"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(at("bad.csv"), bad[i].text);
        CHECK(kiln_instances_read(&in, at("bad.csv"), &sp) == KILN_ERR_FORMAT);
        CHECK_ERR_HAS(bad[i].says);
        CHECK(in.n == 5);
    }
    kiln_instances_free(&in);
}

/* ---- NPY ---- */

static void test_npy(void) {
    kiln_instances_spec sp = spec_of(3, (int64_t[]){1, 2, 2});
    kiln_instances in = {0};
    float f[12];
    unsigned char u[12];
    for (int i = 0; i < 12; i++) f[i] = (float)i, u[i] = (unsigned char)(12 + i);
    write_npy(at("a.npy"), "<f4", 4, (int64_t[]){3, 1, 2, 2}, f, sizeof f);
    write_npy(at("b.npy"), "|u1", 2, (int64_t[]){3, 4}, u, sizeof u);      /* flat rows */
    write_npy(at("c.npy"), "<f4", 2, (int64_t[]){2, 2}, f, 4 * sizeof *f); /* one row, no channel */
    CHECK_OK(kiln_instances_read(&in, at("a.npy"), &sp));
    CHECK_OK(kiln_instances_read(&in, at("b.npy"), &sp));
    CHECK(in.n == 6 && counts_up(in.x, 24, 0));
    CHECK_OK(kiln_instances_read(&in, at("c.npy"), &sp));
    CHECK(in.n == 7 && counts_up(in.x + 24, 4, 0));
    CHECK(in.n == 7 && !strcmp(in.where[6], at("c.npy")) && strstr(in.where[5], "b.npy[2]"));

    /* the same bytes from memory (stdin): sniffed, through a temporary file */
    size_t len;
    unsigned char *bytes = slurp(at("a.npy"), &len);
    CHECK_OK(kiln_instances_read_data(&in, "stdin", bytes, len, KILN_INSTANCES_UNKNOWN, &sp));
    CHECK(in.n == 10 && counts_up(in.x + 28, 12, 0) && !strcmp(in.where[7], "stdin[0]"));
    /* a truncated copy names stdin, not the temporary file */
    CHECK(kiln_instances_read_data(&in, "stdin", bytes, len - 3, KILN_INSTANCES_UNKNOWN, &sp) ==
          KILN_ERR_FORMAT);
    CHECK_ERR_HAS("stdin");
    CHECK(!strstr(kiln_last_error(), "kiln-instances-"));
    free(bytes);

    write_npy(at("bad.npy"), "<f4", 2, (int64_t[]){2, 3}, f, 6 * sizeof *f);
    CHECK(kiln_instances_read(&in, at("bad.npy"), &sp) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("bad.npy: an array of shape [2, 3] is neither one instance nor a list");
    write_text(at("bad2.npy"), "\x93NUMPY garbage");
    CHECK(kiln_instances_read(&in, at("bad2.npy"), &sp) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("bad2.npy");
    CHECK(in.n == 10);
    kiln_instances_free(&in);
}

/* ---- images ---- */

static void test_images(void) {
    enum { W = 5, H = 4 };
    unsigned char gray[H * W], rgb[H * W * 3];
    for (int i = 0; i < H * W; i++) {
        gray[i] = (unsigned char)(i * 12);
        rgb[3 * i] = (unsigned char)i, rgb[3 * i + 1] = (unsigned char)(100 + i),
                rgb[3 * i + 2] = (unsigned char)(200 + i);
    }
    CHECK(stbi_write_png(at("g.png"), W, H, 1, gray, W));
    CHECK(stbi_write_png(at("c.png"), W, H, 3, rgb, W * 3));
    CHECK(stbi_write_bmp(at("c.bmp"), W, H, 3, rgb));
    char pgm[64];
    int hl = snprintf(pgm, sizeof pgm, "P5\n# a comment\n%d %d\n255\n", W, H);
    unsigned char pgmfile[128];
    memcpy(pgmfile, pgm, (size_t)hl);
    memcpy(pgmfile + hl, gray, sizeof gray);
    write_file(at("g.pgm"), pgmfile, (size_t)hl + sizeof gray);

    kiln_instances in = {0};
    kiln_instances_spec g = spec_of(3, (int64_t[]){1, H, W}), hw = spec_of(2, (int64_t[]){H, W});
    CHECK_OK(kiln_instances_read(&in, at("g.png"), &g));
    CHECK_OK(kiln_instances_read(&in, at("g.pgm"), &g));
    CHECK_OK(kiln_instances_read(&in, at("g.png"), &hw));
    CHECK(in.n == 3);
    for (int r = 0; r < in.n; r++)
        for (int i = 0; i < H * W; i++) CHECK(in.x[r * H * W + i] == (float)gray[i]);
    CHECK(in.n == 3 && !strcmp(in.where[0], at("g.png")));
    /* an RGB image into a gray input: stb's luminance; all within 0..255 */
    CHECK_OK(kiln_instances_read(&in, at("c.png"), &g));
    CHECK(in.n == 4 && in.x[3 * H * W] >= 0 && in.x[3 * H * W + 5] <= 255);
    kiln_instances_free(&in);

    /* RGB into [3, H, W]: channel planes (CHW) */
    kiln_instances_spec c3 = spec_of(3, (int64_t[]){3, H, W});
    CHECK_OK(kiln_instances_read(&in, at("c.png"), &c3));
    CHECK_OK(kiln_instances_read(&in, at("c.bmp"), &c3));
    CHECK_OK(kiln_instances_read(&in, at("g.png"), &c3)); /* gray replicated */
    CHECK(in.n == 3);
    for (int r = 0; r < 2 && in.n == 3; r++)
        for (int i = 0; i < H * W; i++) {
            const float *x = in.x + r * 3 * H * W;
            CHECK(x[i] == (float)i && x[H * W + i] == 100.0f + i && x[2 * H * W + i] == 200.0f + i);
        }
    for (int c = 0; c < 3 && in.n == 3; c++)
        for (int i = 0; i < H * W; i++) CHECK(in.x[2 * 3 * H * W + c * H * W + i] == gray[i]);

    /* sizes and shapes that do not fit, both sizes named */
    kiln_instances_free(&in);
    kiln_instances_spec big = spec_of(3, (int64_t[]){1, 28, 28});
    CHECK(kiln_instances_read(&in, at("g.png"), &big) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("g.png: the image is 5x4 (width x height), the model's input is 28x28");
    kiln_instances_free(&in);
    kiln_instances_spec flat = spec_of(1, (int64_t[]){20}), c2 = spec_of(3, (int64_t[]){2, H, W});
    CHECK(kiln_instances_read(&in, at("g.png"), &flat) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("not an image shape");
    kiln_instances_free(&in);
    CHECK(kiln_instances_read(&in, at("g.png"), &c2) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("2 channels");
    kiln_instances_free(&in);
    write_file(at("short.pgm"), pgmfile, (size_t)hl + sizeof gray - 1);
    CHECK(kiln_instances_read(&in, at("short.pgm"), &g) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("truncated");
    CHECK(in.n == 0);
    kiln_instances_free(&in);

    /* A JPEG is the pixels the training pipeline makes of it (kiln/image.h), in gray and RGB;
     * a truncated one is refused with the file named. */
    CHECK(stbi_write_jpg(at("c.jpg"), W, H, 3, rgb, 95));
    size_t jlen;
    unsigned char *jpg = slurp(at("c.jpg"), &jlen);
    kiln_image_decoder *dec = NULL;
    CHECK_OK(kiln_image_decoder_new(&dec));
    for (int ch = 1; jpg && dec && ch <= 3; ch += 2) {
        kiln_instances_spec js = spec_of(3, (int64_t[]){ch, H, W});
        kiln_image_spec is = {.channels = ch, .out_h = H, .out_w = W};
        uint8_t want[3 * H * W];
        CHECK_OK(kiln_image_process(dec, jpg, jlen, "c.jpg", &is, want));
        CHECK_OK(kiln_instances_read(&in, at("c.jpg"), &js));
        for (int i = 0; in.n == 1 && i < ch * H * W; i++) CHECK(in.x[i] == (float)want[i]);
        kiln_instances_free(&in);
    }
    /* EXIF orientation 6 (rotate 90 clockwise): served upright, 4 wide and 5 high, as trained */
    static const unsigned char app1[] = {
        0xFF, 0xE1, 0x00, 34, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8, /* IFD0: */
        0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
    unsigned char *rot = jpg ? malloc(jlen + sizeof app1) : NULL;
    if (rot) {
        memcpy(rot, jpg, 2); /* SOI, then APP1, then the rest */
        memcpy(rot + 2, app1, sizeof app1);
        memcpy(rot + 2 + sizeof app1, jpg + 2, jlen - 2);
        write_file(at("rot.jpg"), rot, jlen + sizeof app1);
        kiln_instances_spec upright = spec_of(3, (int64_t[]){1, W, H});
        CHECK_OK(kiln_instances_read(&in, at("rot.jpg"), &upright));
        kiln_image_spec is = {.channels = 1, .out_h = W, .out_w = H};
        uint8_t want[W * H];
        CHECK_OK(kiln_image_process(dec, rot, jlen + sizeof app1, "rot.jpg", &is, want));
        for (int i = 0; in.n == 1 && i < W * H; i++) CHECK(in.x[i] == (float)want[i]);
        kiln_instances_free(&in);
        free(rot);
    }
    if (jpg) write_file(at("cut.jpg"), jpg, jlen / 2);
    CHECK(kiln_instances_read(&in, at("cut.jpg"), &c3) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("cut.jpg");
    kiln_instances_free(&in);
    kiln_image_decoder_free(dec);
    free(jpg);
}

/* ---- formats ---- */

static void test_formats(void) {
    CHECK(kiln_instances_format_of_name("a/b.JSON") == KILN_INSTANCES_JSON);
    CHECK(kiln_instances_format_of_name("x.npy.gz") == KILN_INSTANCES_NPY);
    CHECK(kiln_instances_format_of_name("x.csv.gz") == KILN_INSTANCES_UNKNOWN);
    CHECK(kiln_instances_format_of_name("x.jpeg") == KILN_INSTANCES_IMAGE);
    CHECK(kiln_instances_format_of_name("dir.png/file") == KILN_INSTANCES_UNKNOWN);
    CHECK(kiln_instances_format_of_name("noext") == KILN_INSTANCES_UNKNOWN);
    CHECK(kiln_instances_format_of_data("\x93NUMPY\x01", 7) == KILN_INSTANCES_NPY);
    CHECK(kiln_instances_format_of_data("\x89PNG\r\n\x1a\n", 8) == KILN_INSTANCES_IMAGE);
    CHECK(kiln_instances_format_of_data("\xff\xd8\xff\xe0", 4) == KILN_INSTANCES_IMAGE);
    CHECK(kiln_instances_format_of_data("GIF89a", 6) == KILN_INSTANCES_IMAGE);
    CHECK(kiln_instances_format_of_data("P5\n2 2\n", 7) == KILN_INSTANCES_IMAGE);
    CHECK(kiln_instances_format_of_data("BMI,height\n", 11) == KILN_INSTANCES_CSV);
    CHECK(kiln_instances_format_of_data("  \n [1]", 7) == KILN_INSTANCES_JSON);
    CHECK(kiln_instances_format_of_data("{\"a\":1}", 7) == KILN_INSTANCES_JSON);
    CHECK(kiln_instances_format_of_data("1,2\n", 4) == KILN_INSTANCES_CSV);
    CHECK(kiln_instances_format_of_data("ab\0cd", 5) == KILN_INSTANCES_UNKNOWN);
    CHECK(kiln_instances_format_of_data(" \n", 2) == KILN_INSTANCES_UNKNOWN);

    kiln_shape row = kiln_shape_make(3, (int64_t[]){1, 28, 28});
    CHECK(kiln_instances_fits((int64_t[]){1, 28, 28}, 3, &row));
    CHECK(kiln_instances_fits((int64_t[]){28, 28}, 2, &row));
    CHECK(kiln_instances_fits((int64_t[]){28, 28, 1}, 3, &row));
    CHECK(kiln_instances_fits((int64_t[]){784}, 1, &row));
    CHECK(!kiln_instances_fits((int64_t[]){28, 27}, 2, &row));
    CHECK(!kiln_instances_fits((int64_t[]){14, 56}, 2, &row));
    CHECK(!kiln_instances_fits(NULL, 0, &row));
    kiln_shape one = kiln_shape_make(1, (int64_t[]){1});
    CHECK(kiln_instances_fits(NULL, 0, &one));

    /* the batch rule kiln serve shares: [N, ...instance], the message names both shapes */
    kiln_shape t = kiln_shape_make(3, (int64_t[]){5, 28, 28});
    CHECK_OK(kiln_instances_check_batch("instances", &t, &row, "m"));
    t = kiln_shape_make(2, (int64_t[]){5, 784});
    CHECK_OK(kiln_instances_check_batch("instances", &t, &row, "m"));
    t = kiln_shape_make(4, (int64_t[]){2, 1, 28, 28});
    CHECK_OK(kiln_instances_check_batch("instances", &t, &row, "m"));
    t = kiln_shape_make(3, (int64_t[]){1, 28, 27});
    CHECK(kiln_instances_check_batch("instances", &t, &row, "m") == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("instances: each instance has shape [28, 27], but model m's input row is "
                  "[1, 28, 28] (784 values): give instances in that shape or flat lists of 784 "
                  "numbers");
    t = kiln_shape_make(1, (int64_t[]){784});
    CHECK(kiln_instances_check_batch("x", &t, &row, NULL) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("x: each instance has shape [], but the model's input row is [1, 28, 28]");
    t = kiln_shape_make(0, NULL);
    CHECK(kiln_instances_check_batch("x", &t, &row, NULL) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("x: expected a list of instances, got a number");

    /* sniffing in read_data: the same instance as CSV, JSON, PGM */
    kiln_instances_spec sp = spec_of(2, (int64_t[]){1, 2});
    kiln_instances in = {0};
    CHECK_OK(kiln_instances_read_data(&in, "stdin", "0,1\n", 4, KILN_INSTANCES_UNKNOWN, &sp));
    CHECK_OK(kiln_instances_read_data(&in, "stdin", "[[2,3]]", 7, KILN_INSTANCES_UNKNOWN, &sp));
    CHECK_OK(kiln_instances_read_data(&in, "stdin", "P5 2 1 255\n\x04\x05", 13,
                                      KILN_INSTANCES_UNKNOWN, &sp));
    CHECK(in.n == 3 && counts_up(in.x, 6, 0));
    CHECK(kiln_instances_read_data(&in, "stdin", "\x01\x02\0\x03", 4, KILN_INSTANCES_UNKNOWN,
                                   &sp) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("stdin: cannot tell the format");
    CHECK(kiln_instances_read_data(&in, "stdin", "", 0, KILN_INSTANCES_UNKNOWN, &sp) ==
          KILN_ERR_FORMAT);
    CHECK_ERR_HAS("empty");
    CHECK(kiln_instances_read(&in, at("missing.json"), &sp) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("missing.json");
    CHECK(kiln_instances_read(&in, root, &sp) == KILN_ERR_IO);
    /* a reader keeps one row size */
    kiln_instances_spec other = spec_of(1, (int64_t[]){3});
    CHECK(kiln_instances_read_data(&in, "x", "1,2,3", 5, KILN_INSTANCES_CSV, &other) ==
          KILN_ERR_INVALID);
    CHECK(in.n == 3);
    kiln_instances_free(&in);
}

/* ---- stream lines ---- */

static void test_lines(void) {
    kiln_instances_spec sp = spec_of(2, (int64_t[]){2, 2});
    float x[4];
    const char *good[] = {"[0,1,2,3]\n", "[[0,1],[2,3]]", " 0, 1,2 ,3\r\n", "[[[0,1],[2,3]]]",
                          "{\"instances\": [[0,1,2,3]]}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        memset(x, 0xff, sizeof x);
        CHECK_OK(kiln_instances_parse_line(good[i], strlen(good[i]), &sp, x));
        CHECK_MSG(counts_up(x, 4, 0), "line %zu", i);
    }
    const char *bad[][2] = {{"[0,1,2]", "neither"},       {"[[0,1,2,3],[0,1,2,3]]", "2 instances"},
                            {"0,1,2", "3 values"},        {"0,1,two,3", "column 3: 'two'"},
                            {"[0,1,2,3", "invalid JSON"}, {"  \n", "empty"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(kiln_instances_parse_line(bad[i][0], strlen(bad[i][0]), &sp, x) == KILN_ERR_FORMAT);
        CHECK_ERR_HAS(bad[i][1]);
    }
}

/* ---- garbage: prefixes and mutations of valid files ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}

/* Reads every prefix of data and `mutations` mutated copies: never a crash; failures leave in
 * untouched. Returns the length of the shortest prefix that read successfully (len if none). */
static size_t batter(const char *name, const unsigned char *data, size_t len,
                     kiln_instances_format fmt, const kiln_instances_spec *sp, int mutations) {
    kiln_instances in = {0};
    size_t shortest_ok = len;
    unsigned char *copy = malloc(len + 1);
    for (size_t n = 0; n < len; n++) {
        memcpy(copy, data, n); /* an exact-size buffer: ASan sees any read past n */
        unsigned char *exact = malloc(n ? n : 1);
        memcpy(exact, data, n);
        int64_t before = in.n;
        kiln_status st = kiln_instances_read_data(&in, name, exact, n, fmt, sp);
        if (st)
            CHECK(in.n == before);
        else if (n < shortest_ok)
            shortest_ok = n;
        free(exact);
    }
    for (int m = 0; m < mutations; m++) {
        memcpy(copy, data, len);
        int flips = 1 + (int)(next_rand() % 4);
        for (int k = 0; k < flips; k++) {
            size_t pos = next_rand() % len;
            copy[pos] = next_rand() % 3 ? (unsigned char)next_rand() : copy[pos] ^ 0x80;
        }
        int64_t before = in.n;
        if (kiln_instances_read_data(&in, name, copy, len, fmt, sp)) CHECK(in.n == before);
        if (in.n > 1000) kiln_instances_free(&in);
    }
    free(copy);
    kiln_instances_free(&in);
    return shortest_ok;
}

/* Debian's libstb is built with assertions, and on some corrupt JPEGs its Huffman decoder read
 * memory whose contents depend on the heap's past, then asserted (abort): found here, when one
 * more JSON file read in test_json made this test abort. JPEG instances now go through
 * kiln/image.h's libjpeg-turbo decoder (instances_image.c), which these mutations exercise. */
static void test_garbage(void) {
    enum { W = 6, H = 5 };
    unsigned char px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (unsigned char)(i * 7);
    kiln_instances_spec img = spec_of(3, (int64_t[]){3, H, W});
    const char *files[] = {"m.png", "m.bmp", "m.jpg", "m.tga"};
    CHECK(stbi_write_png(at(files[0]), W, H, 3, px, W * 3));
    CHECK(stbi_write_bmp(at(files[1]), W, H, 3, px));
    CHECK(stbi_write_jpg(at(files[2]), W, H, 3, px, 90));
    for (int f = 0; f < 3; f++) {
        size_t len;
        unsigned char *d = slurp(at(files[f]), &len);
        CHECK(d != NULL);
        if (!d) continue;
        size_t ok = batter(files[f], d, len, KILN_INSTANCES_IMAGE, &img, 3000);
        /* a PNG cut anywhere before its last chunk (IEND, 12 bytes) is refused */
        if (f == 0) CHECK_MSG(ok >= len - 12, "a PNG cut to %zu of %zu bytes decoded", ok, len);
        free(d);
    }
    /* a JSON body, a CSV, an NPY: every prefix short of the whole fails */
    kiln_instances_spec sp = spec_of(2, (int64_t[]){2, 3});
    const char *json = "{\"instances\": [[[0, 1.5, -2e3], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]}";
    CHECK(batter("m.json", (const unsigned char *)json, strlen(json), KILN_INSTANCES_JSON, &sp,
                 3000) == strlen(json));
    const char *csv = "a,b,c,d,e,f\n0,1,2,3,4,5\n6,7,8,9,10,11\n";
    batter("m.csv", (const unsigned char *)csv, strlen(csv), KILN_INSTANCES_CSV, &sp, 3000);
    float f[12] = {0};
    write_npy(at("m.npy"), "<f4", 3, (int64_t[]){2, 2, 3}, f, sizeof f);
    size_t len;
    unsigned char *d = slurp(at("m.npy"), &len);
    CHECK(batter("m.npy", d, len, KILN_INSTANCES_NPY, &sp, 300) == len);
    free(d);
    /* pure noise, sniffed */
    unsigned char noise[512];
    for (int r = 0; r < 500; r++) {
        size_t n = 1 + next_rand() % sizeof noise;
        for (size_t i = 0; i < n; i++) noise[i] = (unsigned char)next_rand();
        kiln_instances in = {0};
        if (!kiln_instances_read_data(&in, "noise", noise, n, KILN_INSTANCES_UNKNOWN, &img))
            CHECK(in.n >= 1);
        kiln_instances_free(&in);
    }
}


/* A predict body that TF Serving takes is read, NaN and Infinity tokens included (its
 * api_rest.md, "JSON conformance"): the JSON reader is the server's. (Run after test_garbage:
 * see the note there.) */
static void test_nonfinite_json(void) {
    kiln_instances_spec sp = spec_of(3, (int64_t[]){1, 2, 3}); /* row of 6 */
    kiln_instances nf = {0};
    write_text(at("nonfinite.json"), "{\"instances\": [[0, 1, NaN, Infinity, -Infinity, 5]]}");
    CHECK_OK(kiln_instances_read(&nf, at("nonfinite.json"), &sp));
    CHECK(nf.n == 1 && nf.x[1] == 1 && isnan(nf.x[2]) && nf.x[3] == INFINITY && nf.x[5] == 5);
    kiln_instances_free(&nf);
    write_text(at("nonfinite.json"), "[0, 1, NaN, -Inf, Inf, -NaN]");
    CHECK_OK(kiln_instances_read(&nf, at("nonfinite.json"), &sp));
    CHECK(nf.n == 1 && isnan(nf.x[2]) && nf.x[3] == -INFINITY && isnan(nf.x[5]));
    kiln_instances_free(&nf);
    float x[6];
    CHECK_OK(kiln_instances_parse_line("[1, 2, 3, 4, 5, NaN]", 20, &sp, x));
    CHECK(x[4] == 5 && isnan(x[5]));
}
/* ---- the client, against canned answers ---- */

typedef enum {
    S_CLASSIFIER,
    S_SINGLE,
    S_404,
    S_500_TEXT,
    S_BAD_JSON,
    S_SHORT,
    S_BAD_ROW,
    S_MISSING
} server_mode;
static _Atomic int mode;
static _Atomic int requests;
static char last_path[256];
static float last_x[64];
static int64_t last_dims[KILN_MAX_DIMS];
static int last_ndim;

static const char *META_CLASSIFIER =
    "{\"model_spec\": {\"name\": \"m\", \"signature_name\": \"\", \"version\": \"3\"}, "
    "\"metadata\": {\"signature_def\": {\"signature_def\": {\"serving_default\": {"
    "\"inputs\": {\"input\": {\"dtype\": \"DT_FLOAT\", \"tensor_shape\": {\"dim\": [{\"size\": "
    "\"-1\", \"name\": \"\"}, {\"size\": \"1\", \"name\": \"\"}, {\"size\": \"2\", \"name\": "
    "\"\"}, "
    "{\"size\": \"2\", \"name\": \"\"}], \"unknown_rank\": false}, \"name\": \"input\"}}, "
    "\"outputs\": {\"output\": {\"dtype\": \"DT_FLOAT\", \"tensor_shape\": {\"dim\": [{\"size\": "
    "\"-1\"}, {\"size\": \"3\"}], \"unknown_rank\": false}, \"name\": \"output\"}, "
    "\"probabilities\": {\"dtype\": \"DT_FLOAT\", \"tensor_shape\": {\"dim\": [{\"size\": \"-1\"}, "
    "{\"size\": \"3\"}], \"unknown_rank\": false}, \"name\": \"probabilities\"}}, "
    "\"method_name\": \"tensorflow/serving/predict\"}}}, \"kiln\": {\"task\": \"classification\", "
    "\"class_names\": [\"a\", \"b\", \"c\"], \"preprocessing\": {\"scale\": 1}}}}";
static const char *META_SINGLE =
    "{\"model_spec\": {\"name\": \"m\", \"version\": 7}, \"metadata\": {\"signature_def\": "
    "{\"signature_def\": {\"serving_default\": {\"inputs\": {\"x\": {\"dtype\": \"DT_FLOAT\", "
    "\"tensor_shape\": {\"dim\": [{\"size\": -1}, {\"size\": 4}]}}}, \"outputs\": {\"y\": "
    "{\"dtype\": \"DT_FLOAT\", \"tensor_shape\": {\"dim\": [{\"size\": -1}, {\"size\": 2}]}}}}}}}}";

static void handler(void *ctx, const kiln_http_request *req, kiln_http_response *resp) {
    (void)ctx;
    requests++;
    snprintf(last_path, sizeof last_path, "%s", req->path);
    server_mode m = (server_mode)mode;
    if (m == S_404) return kiln_http_json_error(resp, 404, "Servable not found for request: m");
    if (m == S_500_TEXT) {
        resp->status = 500;
        resp->content_type = "text/plain";
        return kiln_http_body_static(resp, "internal trouble");
    }
    size_t n = strlen(req->path);
    if (n > 9 && !strcmp(req->path + n - 9, "/metadata"))
        return kiln_http_body_static(resp, m == S_SINGLE ? META_SINGLE : META_CLASSIFIER);
    if (n < 8 || strcmp(req->path + n - 8, ":predict"))
        return kiln_http_json_error(resp, 404, "no such path");
    kiln_tj_request r;
    if (kiln_tj_parse_tf(req->body, req->body_len, NULL, &r))
        return kiln_http_json_error(resp, 400, "%s", kiln_last_error());
    const kiln_tj_tensor *t = &r.inputs[0];
    last_ndim = t->shape.ndim;
    memcpy(last_dims, t->shape.dims, sizeof last_dims);
    int64_t numel = kiln_shape_numel(&t->shape), rows = t->shape.dims[0], per = numel / rows;
    memcpy(last_x, t->data, (size_t)(numel < 64 ? numel : 64) * sizeof(float));
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, m == S_BAD_JSON ? "{\"predictions\": [oops" : "{\"predictions\": [");
    for (int64_t i = 0; i < rows - (m == S_SHORT); i++) {
        const float *x = (const float *)t->data + i * per;
        float s = 0;
        for (int64_t k = 0; k < per; k++) s += x[k];
        if (i) kiln_sbuf_putc(&b, ',');
        if (m == S_SINGLE) {
            kiln_sbuf_putc(&b, '[');
            kiln_sbuf_f32(&b, s);
            kiln_sbuf_puts(&b, ", ");
            kiln_sbuf_f32(&b, 2 * s);
            kiln_sbuf_putc(&b, ']');
            continue;
        }
        kiln_sbuf_puts(&b, "{\"classes\": \"b\", \"output\": [[");
        kiln_sbuf_f32(&b, s);
        kiln_sbuf_puts(&b, i == 1 ? "], [NaN, -Infinity]]" : "], [-1, 0]]");
        if (m == S_BAD_ROW)
            kiln_sbuf_puts(&b, ", \"probabilities\": [0.25, 0.5]}");
        else if (m != S_MISSING)
            kiln_sbuf_puts(&b, ", \"probabilities\": [0.25, 0.5, 0.25]}");
        else
            kiln_sbuf_putc(&b, '}');
    }
    kiln_sbuf_puts(&b, "], \"model_version\": \"3\"}");
    kiln_http_body_sbuf(resp, &b);
    kiln_tj_request_free(&r);
}

static void test_client(void) {
    kiln_http_server *srv =
        kiln_http_start(&(kiln_http_config){.port = 0, .threads = 2}, handler, NULL);
    CHECK(srv != NULL);
    if (!srv) return;
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d/", kiln_http_port(srv));
    kiln_client *c = NULL;
    mode = S_CLASSIFIER;
    CHECK_OK(kiln_client_open(&(kiln_client_config){url, "my model", 3, 10}, &c));
    if (!c) return kiln_http_stop(srv, 0);
    const kiln_client_model *m = NULL;
    CHECK_OK(kiln_client_metadata(c, &m));
    CHECK(!strcmp(last_path, "/v1/models/my model/versions/3/metadata"));
    CHECK(m && m->version == 3 && !strcmp(m->name, "m") && !strcmp(m->input.name, "input"));
    CHECK(m && m->input.shape.ndim == 4 && m->input.shape.dims[0] == -1 &&
          m->input.shape.dims[3] == 2 && kiln_client_row_size(&m->input) == 4);
    CHECK(m && m->n_outputs == 2 && kiln_client_output_index(m, "probabilities") == 1);
    CHECK(m && !strcmp(m->task, "classification") && m->n_classes == 3 &&
          !strcmp(m->class_names[2], "c"));
    CHECK(m && !strcmp(m->input.dtype, "DT_FLOAT"));

    /* values that need all 9 digits, and one that is not a short decimal */
    float x[12] = {0.1f, 1.0f / 3, -2.5e-7f, 16777215.0f, 255, 0, 1, 2, 3e38f, -1, 7, 8};
    float out[3 * 3], probs[3 * 3];
    for (int round = 0; round < 5; round++) {
        memset(out, 0, sizeof out);
        CHECK_OK(kiln_client_predict(c, x, 3, (float *const[]){out, probs}));
    }
    CHECK(!strcmp(last_path, "/v1/models/my model/versions/3:predict"));
    CHECK(last_ndim == 4 && last_dims[0] == 3 && last_dims[1] == 1 && last_dims[2] == 2 &&
          last_dims[3] == 2);
    CHECK(memcmp(last_x, x, sizeof x) == 0); /* bit-exact on the server */
    float s0 = 0;
    for (int k = 0; k < 4; k++) s0 += x[k]; /* as the server sums */
    CHECK(out[0] == s0 && out[3] == x[4] + x[5] + x[6] + x[7]);
    CHECK(out[1] == -1 && out[2] == 0 && isnan(out[4]) && isinf(out[5]) && out[5] < 0);
    CHECK(probs[0] == 0.25f && probs[4] == 0.5f && probs[8] == 0.25f);
    CHECK_MSG(kiln_client_connections(c) == 1, "%d connections for 6 requests",
              kiln_client_connections(c));
    CHECK(kiln_client_http_status(c) == 200);
    /* only some outputs wanted */
    CHECK_OK(kiln_client_predict(c, x, 1, (float *const[]){NULL, probs}));
    CHECK_OK(kiln_client_predict(c, x, 1, NULL));

    /* answers that are not what was asked */
    struct {
        server_mode m;
        kiln_status st;
        const char *says;
    } bad[] = {
        {S_SHORT, KILN_ERR_FORMAT, "2 predictions for 3 instances"},
        {S_BAD_JSON, KILN_ERR_FORMAT, "invalid JSON"},
        {S_BAD_ROW, KILN_ERR_FORMAT, "predictions[0].probabilities: 2 values, the output has 3"},
        {S_MISSING, KILN_ERR_FORMAT, "predictions[0]: no \"probabilities\""},
        {S_404, KILN_ERR_NOTFOUND, "HTTP 404: Servable not found for request: m"},
        {S_500_TEXT, KILN_ERR_IO, "HTTP 500: internal trouble"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mode = bad[i].m;
        CHECK(kiln_client_predict(c, x, 3, (float *const[]){out, probs}) == bad[i].st);
        CHECK_ERR_HAS(bad[i].says);
        CHECK_ERR_HAS(":predict");
    }
    mode = S_404;
    CHECK(kiln_client_http_status(c) == 500);
    kiln_client_free(c);

    /* metadata errors, and a single-output model answering with bare lists */
    CHECK_OK(kiln_client_open(&(kiln_client_config){url, "m", 0, 10}, &c));
    CHECK(kiln_client_metadata(c, &m) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("GET http://127.0.0.1:");
    CHECK_ERR_HAS("/v1/models/m/metadata: HTTP 404: Servable not found");
    mode = S_SINGLE;
    CHECK_OK(kiln_client_metadata(c, &m));
    CHECK(m && m->version == 7 && m->n_outputs == 1 && !m->task && m->n_classes == 0);
    float y[2 * 2];
    CHECK_OK(kiln_client_predict(c, x, 2, (float *const[]){y}));
    CHECK(y[0] == s0);
    CHECK(y[3] == 2 * y[2]);
    CHECK(!strcmp(last_path, "/v1/models/m:predict"));
    kiln_client_free(c);

    /* raw requests */
    CHECK_OK(kiln_client_open(&(kiln_client_config){url, "m", 0, 10}, &c));
    int status;
    char *body;
    size_t blen;
    CHECK_OK(
        kiln_client_request(c, "GET", "/v1/models/m/metadata", NULL, 0, &status, &body, &blen));
    CHECK(status == 200 && blen == strlen(META_SINGLE) && !strcmp(body, META_SINGLE));
    free(body);
    CHECK_OK(kiln_client_request(c, "POST", "/v1/models/m:predict", "{", 1, &status, &body, NULL));
    CHECK(status == 400 && strstr(body, "\"error\""));
    free(body);
    kiln_client_free(c);

    /* the server goes away */
    int port = kiln_http_port(srv);
    kiln_http_stop(srv, 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    CHECK_OK(kiln_client_open(&(kiln_client_config){url, "m", 0, 5}, &c));
    CHECK(kiln_client_metadata(c, &m) == KILN_ERR_IO);
    CHECK_ERR_HAS("GET http://127.0.0.1:");
    CHECK(kiln_client_http_status(c) == 0);
    kiln_client_free(c);

    /* configurations refused up front */
    CHECK(kiln_client_open(&(kiln_client_config){NULL, "m", 0, 0}, &c) == KILN_ERR_INVALID);
    CHECK(kiln_client_open(&(kiln_client_config){"http://x", "", 0, 0}, &c) == KILN_ERR_INVALID);
    CHECK(kiln_client_open(&(kiln_client_config){"http://a b", "m", 0, 0}, &c) == KILN_ERR_INVALID);
    CHECK(kiln_client_open(&(kiln_client_config){"http://x", "m", -1, 0}, &c) == KILN_ERR_INVALID);
    CHECK(c == NULL);
}

int main(void) {
    if (!mkdtemp(root)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_json);
    RUN(test_csv);
    RUN(test_npy);
    RUN(test_images);
    RUN(test_formats);
    RUN(test_lines);
    RUN(test_garbage);
    RUN(test_nonfinite_json);
    RUN(test_client);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return kiln_test_summary();
}
