/* binary.c — elementwise add and multiply of two F32 tensors, with broadcasting.
 *
 * Shapes: a and b have the same rank; on every axis their sizes are equal or one of them is 1,
 * and y takes the larger (NumPy's rule at equal rank). The case it is made for is squeeze-and-
 * excite: a [B, C, H, W] times s [B, C, 1, 1]. Equal shapes are the plain elementwise case.
 *
 * The loops work on a collapsed view: axes where y has size 1 are dropped, and neighbouring axes
 * on which a and b are broadcast the same way are merged, which leaves at most KILN_MAX_DIMS
 * groups (usually one or two). The last group is the inner loop, where each input has stride 1
 * or 0; the groups before it are rows, addressed by decomposing the row number.
 *
 * Backward: add gives dy to each input, multiply gives dy * (the other input); an input that was
 * broadcast receives the sum over the axes it was broadcast on. Such a sum runs in a fixed order
 * per input element: rows are split among threads by the first group, on which no input of a
 * batch broadcasts, so each thread owns its slice of the gradient (and when the first group is
 * broadcast for that input, one thread does it all). Results do not depend on the thread count.
 * No state: the view is rebuilt from the shapes on each call (a few dozen operations).
 */
#include <string.h>

#include "backend/cpu/vec.h"
#include "backend/ops.h"

typedef struct {
    int nd;                      /* groups, >= 1; the last is the inner loop */
    int64_t len[KILN_MAX_DIMS];  /* y's extent of each group */
    int64_t st[2][KILN_MAX_DIMS]; /* element strides of a and b per group (0: broadcast) */
} bview;

static bview make_view(const kiln_shape *y, const kiln_shape *a, const kiln_shape *b) {
    bview v = {0};
    int bc[2][KILN_MAX_DIMS] = {{0}}; /* per group: input broadcast on it */
    for (int d = 0; d < y->ndim; d++) {
        if (y->dims[d] == 1) continue;
        int fa = a->dims[d] == 1, fb = b->dims[d] == 1, g = v.nd - 1;
        if (g >= 0 && bc[0][g] == fa && bc[1][g] == fb) {
            v.len[g] *= y->dims[d];
        } else {
            g = v.nd++;
            v.len[g] = y->dims[d], bc[0][g] = fa, bc[1][g] = fb;
        }
    }
    if (v.nd == 0) v.nd = 1, v.len[0] = 1; /* a single value */
    for (int j = 0; j < 2; j++) {
        int64_t s = 1;
        for (int g = v.nd - 1; g >= 0; g--) {
            v.st[j][g] = bc[j][g] ? 0 : s;
            if (!bc[j][g]) s *= v.len[g];
        }
    }
    return v;
}

/* Offsets into a and b of row o (rows: every group but the last). */
static inline void row_off(const bview *v, int64_t o, int64_t *oa, int64_t *ob) {
    int64_t a = 0, b = 0;
    for (int g = v->nd - 2; g >= 0; g--) {
        int64_t i = o % v->len[g];
        o /= v->len[g];
        a += i * v->st[0][g], b += i * v->st[1][g];
    }
    *oa = a, *ob = b;
}

static kiln_status binary_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                kiln_dtype *dt) {
    char buf[512];
    const char *what = n->op->name;
    if (n->in[0]->dtype != KILN_F32 || n->in[1]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: %s needs F32 inputs",
                          kiln_node_describe(n, in, buf, sizeof buf), what);
    int ok = in[0].ndim == in[1].ndim;
    *out = in[0];
    for (int d = 0; ok && d < in[0].ndim; d++) {
        int64_t p = in[0].dims[d], q = in[1].dims[d];
        ok = p == q || p == 1 || q == 1;
        out->dims[d] = p > q ? p : q;
    }
    if (!ok)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: %s needs shapes of one rank that agree on every axis or are 1 on "
                          "it (broadcast, as [B, C, 1, 1] against [B, C, H, W])",
                          kiln_node_describe(n, in, buf, sizeof buf), what);
    *dt = KILN_F32;
    return KILN_OK;
}

static void binary_forward(kiln_inst *x, int mul) {
    const float *a = x->in[0]->val, *b = x->in[1]->val;
    float *y = x->val;
    int64_t n = x->numel;
    if (x->in[0]->numel == n && x->in[1]->numel == n) { /* equal shapes */
        if (mul) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
            for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
        } else {
#pragma omp parallel for simd schedule(static) if (n > 65536)
            for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
        }
        return;
    }
    bview v = make_view(&x->shape, &x->in[0]->shape, &x->in[1]->shape);
    int64_t L = v.len[v.nd - 1], rows = n / L, sa = v.st[0][v.nd - 1], sb = v.st[1][v.nd - 1];
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t o = 0; o < rows; o++) {
        int64_t oa, ob;
        row_off(&v, o, &oa, &ob);
        const float *pa = a + oa, *pb = b + ob;
        float *py = y + o * L;
        if (sa && !sb) { /* b is one value along the row (squeeze-and-excite) */
            float c = pb[0];
            if (mul)
                for (int64_t i = 0; i < L; i++) py[i] = pa[i] * c;
            else
                for (int64_t i = 0; i < L; i++) py[i] = pa[i] + c;
        } else if (mul) {
            for (int64_t i = 0; i < L; i++) py[i] = pa[i * sa] * pb[i * sb];
        } else {
            for (int64_t i = 0; i < L; i++) py[i] = pa[i * sa] + pb[i * sb];
        }
    }
}

/* Rows [r0, r1) of input j's gradient (other: the other input's values for multiply, or NULL
 * for add), added into dx (which the caller has cleared or holds the earlier sum). */
static void reduce_rows(const bview *v, int j, const float *dy, const float *other, float *dx,
                        int64_t r0, int64_t r1) {
    int64_t L = v->len[v->nd - 1], sj = v->st[j][v->nd - 1], sk = v->st[1 - j][v->nd - 1];
    for (int64_t o = r0; o < r1; o++) {
        int64_t off[2];
        row_off(v, o, &off[0], &off[1]);
        const float *g = dy + o * L, *q = other ? other + off[1 - j] : NULL;
        float *d = dx + off[j];
        if (sj == 0) { /* broadcast along the inner group: one sum */
            float s = 0.0f;
            if (q)
                for (int64_t i = 0; i < L; i++) s += g[i] * q[i * sk];
            else
                for (int64_t i = 0; i < L; i++) s += g[i];
            d[0] += s;
        } else if (q) {
            for (int64_t i = 0; i < L; i++) d[i] += g[i] * q[i * sk];
        } else {
            for (int64_t i = 0; i < L; i++) d[i] += g[i];
        }
    }
}

static void binary_backward(kiln_inst *x, int mul) {
    const float *dy = x->grad;
    int64_t n = x->numel;
    bview v = make_view(&x->shape, &x->in[0]->shape, &x->in[1]->shape);
    int64_t L = v.len[v.nd - 1], rows = n / L;
    for (int j = 0; j < 2; j++) {
        float *dx = x->in[j]->grad;
        if (!dx) continue;
        const float *other = mul ? x->in[1 - j]->val : NULL;
        int64_t nj = x->in[j]->numel;
        int accum = x->accum[j];
        if (nj == n) { /* no broadcast into this input: elementwise */
            if (!other) {
                kiln_vec_put(dx, dy, n, accum);
                continue;
            }
            if (x->in[1 - j]->numel == n) {
                if (accum) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
                    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * other[i];
                } else {
#pragma omp parallel for simd schedule(static) if (n > 65536)
                    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * other[i];
                }
                continue;
            }
            if (!accum) memset(dx, 0, (size_t)n * sizeof *dx);
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t o = 0; o < rows; o++) reduce_rows(&v, j, dy, other, dx, o, o + 1);
            continue;
        }
        if (!accum) memset(dx, 0, (size_t)nj * sizeof *dx);
        if (v.nd >= 2 && v.st[j][0] != 0) { /* each first-group index owns a slice of dx */
            int64_t per = rows / v.len[0];
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t i0 = 0; i0 < v.len[0]; i0++)
                reduce_rows(&v, j, dy, other, dx, i0 * per, (i0 + 1) * per);
        } else {
            reduce_rows(&v, j, dy, other, dx, 0, rows);
        }
    }
}

static kiln_status add_forward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    binary_forward(x, 0);
    return KILN_OK;
}
static void add_backward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    binary_backward(x, 0);
}
static kiln_status mul_forward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    binary_forward(x, 1);
    return KILN_OK;
}
static void mul_backward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    binary_backward(x, 1);
}

const kiln_op kiln_op_add = {.name = "add", .backend = &kiln_backend_cpu, .infer = binary_infer,
                             .forward = add_forward, .backward = add_backward};
const kiln_op kiln_op_multiply = {.name = "multiply", .backend = &kiln_backend_cpu,
                                  .infer = binary_infer, .forward = mul_forward,
                                  .backward = mul_backward};
