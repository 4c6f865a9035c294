/* test_torch_ops.c — issue 13's activations and upsampling against PyTorch itself: relu6,
 * hard_sigmoid, hard_swish (at and beside their kinks), clip at its bounds, upsampling (linear
 * 1-D, bilinear, trilinear, nearest) and global max pooling with ties. The test writes its
 * inputs and upstream gradients, runs tests/oracles/torch_ops.py under /usr/bin/python3
 * (Debian's python3-torch 1.13) to get y and dx from PyTorch at run time, and compares kiln's
 * forward and backward with them. Nothing expected is written down here: without torch the test
 * fails. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

typedef struct {
    const char *op; /* as torch_ops.py names it */
    int nd;
    int64_t dims[5];
    float p[4]; /* clip: min, max; upsample: linear, factors */
    int np;
    float *x, *dy;  /* inputs */
    float *y, *dx;  /* kiln's results */
    int64_t nx, ny;
} tcase;

static kiln_node *build(kiln_graph *g, const tcase *c, kiln_node *x) {
    if (!strcmp(c->op, "relu6")) return kiln_relu6(g, x);
    if (!strcmp(c->op, "hard_sigmoid")) return kiln_hard_sigmoid(g, x);
    if (!strcmp(c->op, "hard_swish")) return kiln_hard_swish(g, x);
    if (!strcmp(c->op, "clip")) return kiln_clip(g, x, c->p[0], c->p[1]);
    if (!strcmp(c->op, "global_maxpool"))
        return c->nd == 3 ? kiln_global_maxpool1d(g, x)
               : c->nd == 4 ? kiln_global_maxpool2d(g, x)
                            : kiln_global_maxpool3d(g, x);
    kiln_upsampling_opts o = {.nsp = c->nd - 2,
                              .interpolation = c->p[0] ? KILN_UPSAMPLE_LINEAR
                                                       : KILN_UPSAMPLE_NEAREST};
    for (int i = 0; i < o.nsp; i++) o.size[i] = (int)c->p[1 + i];
    return kiln_upsampling_ex(g, x, &o);
}

/* Runs the case in kiln: fills c->y and c->dx. */
static int run_kiln(tcase *c) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_param(g, "x", c->nd, c->dims, (kiln_init){KILN_INIT_ZEROS}, 1, 1, 1);
    kiln_node *y = build(g, c, x);
    kiln_plan *p = y ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1,
                                                          .loss = y, .batch = 1})
                     : NULL;
    CHECK_MSG(p != NULL, "%s: %s", c->op, kiln_last_error());
    if (!p) return kiln_graph_free(g), -1;
    kiln_shape ys = kiln_plan_shape(p, y);
    c->ny = kiln_shape_numel(&ys);
    c->dy = malloc((size_t)c->ny * sizeof *c->dy);
    c->y = malloc((size_t)c->ny * sizeof *c->y);
    c->dx = malloc((size_t)c->nx * sizeof *c->dx);
    kiln_test_fill(c->dy, (size_t)c->ny, -1, 1, 77);
    memcpy(kiln_plan_data(p, x), c->x, (size_t)c->nx * sizeof *c->x);
    CHECK_OK(kiln_plan_forward(p));
    memcpy(c->y, kiln_plan_data(p, y), (size_t)c->ny * sizeof *c->y);
    memcpy(kiln_plan_grad(p, y), c->dy, (size_t)c->ny * sizeof *c->dy);
    CHECK_OK(kiln_plan_backward(p));
    memcpy(c->dx, kiln_plan_grad(p, x), (size_t)c->nx * sizeof *c->dx);
    kiln_plan_free(p);
    kiln_graph_free(g);
    return 0;
}

static void write_floats(FILE *f, const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) fprintf(f, "%s%.9g", i ? " " : "", (double)v[i]);
    fprintf(f, "\n");
}

/* Reads n floats from f into v; -1 when the line is short. */
static int read_floats(FILE *f, float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (fscanf(f, "%f", &v[i]) != 1) return -1;
    return 0;
}

static void add_case(tcase *cs, int *n, const char *op, int nd, const int64_t *dims,
                     const float *p, int np, float lo, float hi) {
    tcase *c = &cs[(*n)++];
    memset(c, 0, sizeof *c);
    c->op = op, c->nd = nd, c->np = np;
    memcpy(c->dims, dims, (size_t)nd * sizeof *dims);
    if (np) memcpy(c->p, p, (size_t)np * sizeof *p);
    c->nx = 1;
    for (int i = 0; i < nd; i++) c->nx *= dims[i];
    c->x = malloc((size_t)c->nx * sizeof *c->x);
    kiln_test_fill(c->x, (size_t)c->nx, lo, hi, (uint64_t)*n);
}

static void test_against_torch(void) {
    tcase cs[16];
    int n = 0;
    static const float kinks[] = {-8,      -6, -3.5f,   -3, -2.9999f, -1.5f, -0.5f, 0,
                                  1e-7f, 0.5f, 2.9999f, 3,  3.0001f,  5.9999f, 6,  6.0001f,
                                  9,     -1e-7f};
    const char *acts[] = {"relu6", "hard_sigmoid", "hard_swish"};
    for (int a = 0; a < 3; a++) {
        add_case(cs, &n, acts[a], 2, (int64_t[]){4, 16}, NULL, 0, -8, 9);
        memcpy(cs[n - 1].x, kinks, sizeof kinks);
    }
    add_case(cs, &n, "clip", 2, (int64_t[]){3, 8}, (float[]){-1.5f, 2}, 2, -3, 3);
    cs[n - 1].x[0] = -1.5f, cs[n - 1].x[1] = 2;
    add_case(cs, &n, "upsample", 4, (int64_t[]){2, 3, 5, 4}, (float[]){1, 2, 2}, 3, -2, 2);
    add_case(cs, &n, "upsample", 4, (int64_t[]){2, 3, 5, 4}, (float[]){1, 3, 2}, 3, -2, 2);
    add_case(cs, &n, "upsample", 4, (int64_t[]){1, 2, 3, 6}, (float[]){1, 4, 3}, 3, -2, 2);
    add_case(cs, &n, "upsample", 4, (int64_t[]){2, 2, 3, 4}, (float[]){0, 2, 3}, 3, -2, 2);
    add_case(cs, &n, "upsample", 3, (int64_t[]){2, 3, 7}, (float[]){1, 3}, 2, -2, 2);
    add_case(cs, &n, "upsample", 5, (int64_t[]){1, 2, 3, 4, 2}, (float[]){1, 2, 3, 2}, 4, -2, 2);
    add_case(cs, &n, "upsample", 5, (int64_t[]){1, 2, 2, 3, 2}, (float[]){0, 2, 2, 3}, 4, -2, 2);
    add_case(cs, &n, "global_maxpool", 4, (int64_t[]){2, 3, 4, 4}, NULL, 0, -2, 2);
    add_case(cs, &n, "global_maxpool", 3, (int64_t[]){2, 3, 9}, NULL, 0, -2, 2);
    for (int i = n - 2; i < n; i++) /* coarse values: ties within a plane */
        for (int64_t j = 0; j < cs[i].nx; j++) cs[i].x[j] = roundf(cs[i].x[j] * 1.5f);

    char dir[] = "/tmp/kiln-torch-XXXXXX", in[64], out[64], cmd[1024];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(in, sizeof in, "%s/in.txt", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    FILE *f = fopen(in, "w");
    CHECK(f != NULL);
    int ok = f != NULL;
    for (int i = 0; ok && i < n; i++) {
        ok = run_kiln(&cs[i]) == 0;
        if (!ok) break;
        fprintf(f, "%s %d", cs[i].op, cs[i].nd);
        for (int d = 0; d < cs[i].nd; d++) fprintf(f, " %lld", (long long)cs[i].dims[d]);
        for (int k = 0; k < cs[i].np; k++) fprintf(f, " %.9g", (double)cs[i].p[k]);
        fprintf(f, "\n");
        write_floats(f, cs[i].x, cs[i].nx);
        write_floats(f, cs[i].dy, cs[i].ny);
    }
    if (f) fclose(f);
    char base[512]; /* the source tree: ctest's KILN_SOURCE_DIR, else where this file was */
    const char *src = getenv("KILN_SOURCE_DIR");
    snprintf(base, sizeof base, "%s", src ? src : __FILE__);
    char *cut = src ? NULL : strstr(base, "/tests/test_torch_ops.c");
    if (cut) *cut = 0;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/oracles/torch_ops.py' '%s' '%s'", base,
             in, out);
    int rc = ok ? system(cmd) : -1;
    CHECK_MSG(rc == 0, "%s failed (%d): PyTorch (python3-torch) is needed", cmd, rc);
    FILE *r = rc == 0 ? fopen(out, "r") : NULL;
    for (int i = 0; r && i < n; i++) {
        tcase *c = &cs[i];
        float *ty = malloc((size_t)c->ny * sizeof *ty), *tdx = malloc((size_t)c->nx * sizeof *tdx);
        int got = read_floats(r, ty, c->ny) == 0 && read_floats(r, tdx, c->nx) == 0;
        CHECK_MSG(got, "%s: PyTorch's output is short", c->op);
        if (got) {
            size_t wi;
            double e = kiln_test_compare(c->y, ty, (size_t)c->ny, 1e-6, 1e-6, &wi);
            CHECK_MSG(e <= 1, "case %d %s: y[%zu] = %.9g, PyTorch %.9g", i, c->op, wi,
                      (double)c->y[wi], (double)ty[wi]);
            e = kiln_test_compare(c->dx, tdx, (size_t)c->nx, 1e-6, 1e-5, &wi);
            CHECK_MSG(e <= 1, "case %d %s: dx[%zu] = %.9g, PyTorch %.9g (x %.9g)", i, c->op, wi,
                      (double)c->dx[wi], (double)tdx[wi], (double)c->x[wi]);
        }
        free(ty), free(tdx);
    }
    if (r) fclose(r);
    unlink(in), unlink(out), rmdir(dir);
    for (int i = 0; i < n; i++) free(cs[i].x), free(cs[i].dy), free(cs[i].y), free(cs[i].dx);
}

int main(void) {
    RUN(test_against_torch);
    return kiln_test_summary();
}
