/* graph.c — building a graph: inputs, parameters, op nodes, names, and the flat parameter
 * buffers (see kiln/graph.h).
 *
 * Invariants: nodes[] is in creation order, which is topological (inputs precede users); node
 * names are unique; parameter offsets are fixed by kiln_graph_init_params (trainable first,
 * each 64-byte aligned) and no node may be added afterwards.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "kiln/rng.h"

typedef struct {
    kiln_param_info info;
    kiln_init init;
    int64_t fan_in, fan_out;
} param_rec;

typedef struct {
    char kind[48];
    int count;
} name_counter;

struct kiln_graph {
    uint64_t seed;
    kiln_node **nodes;
    int n_nodes, cap_nodes;
    param_rec *params;
    int n_params, cap_params;
    name_counter *counters;
    int n_counters;
    float *param_buf, *grad_buf;
    size_t n_total, n_trainable;
    int finalized;
};

kiln_graph *kiln_graph_new(uint64_t seed) {
    kiln_graph *g = calloc(1, sizeof *g);
    if (!g) kiln_error(KILN_ERR_NOMEM, "graph: out of memory");
    else g->seed = seed;
    return g;
}

void kiln_graph_free(kiln_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        free(g->nodes[i]->in);
        free(g->nodes[i]->attr);
        free(g->nodes[i]);
    }
    free(g->nodes);
    free(g->params);
    free(g->counters);
    kiln_free(g->param_buf);
    kiln_free(g->grad_buf);
    free(g);
}

uint64_t kiln_graph_seed(const kiln_graph *g) { return g->seed; }
int kiln_graph_node_count(const kiln_graph *g) { return g->n_nodes; }
kiln_node *kiln_graph_node(kiln_graph *g, int i) {
    return i >= 0 && i < g->n_nodes ? g->nodes[i] : NULL;
}

kiln_node *kiln_graph_find(kiln_graph *g, const char *name) {
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    return NULL;
}

const char *kiln_graph_auto_name(kiln_graph *g, const char *kind, char *buf, size_t cap) {
    name_counter *c = NULL;
    for (int i = 0; i < g->n_counters; i++)
        if (strcmp(g->counters[i].kind, kind) == 0) c = &g->counters[i];
    if (!c) {
        name_counter *nc = realloc(g->counters, (size_t)(g->n_counters + 1) * sizeof *nc);
        if (!nc) return NULL;
        g->counters = nc;
        c = &g->counters[g->n_counters++];
        snprintf(c->kind, sizeof c->kind, "%s", kind);
        c->count = 0;
    }
    /* Skip names the user already took explicitly. */
    do snprintf(buf, cap, "%s_%d", kind, ++c->count);
    while (kiln_graph_find(g, buf));
    return buf;
}

const char *kiln_node_name(const kiln_node *n) { return n->name; }

kiln_status kiln_graph_rename(kiln_graph *g, kiln_node *n, const char *name) {
    if (strcmp(n->name, name) == 0) return KILN_OK;
    if (strlen(name) >= sizeof n->name - 32)
        return kiln_error(KILN_ERR_INVALID, "graph: name '%.40s...' is too long", name);
    if (kiln_graph_find(g, name)) return kiln_error(KILN_ERR_INVALID, "graph: the name '%s' is already used", name);
    size_t old_len = strlen(n->name);
    for (int i = 0; i < n->n_in; i++) { /* "dense_1.kernel" -> "<name>.kernel" */
        kiln_node *p = n->in[i];
        if (p->kind == KILN_NODE_PARAM && strncmp(p->name, n->name, old_len) == 0 && p->name[old_len] == '.') {
            char nn[sizeof p->name];
            snprintf(nn, sizeof nn, "%s%s", name, p->name + old_len);
            if (kiln_graph_find(g, nn)) return kiln_error(KILN_ERR_INVALID, "graph: the name '%s' is already used", nn);
            memcpy(p->name, nn, sizeof nn);
        }
    }
    snprintf(n->name, sizeof n->name, "%s", name);
    return KILN_OK;
}
const char *kiln_node_op(const kiln_node *n) {
    return n->kind == KILN_NODE_INPUT ? "input" : n->kind == KILN_NODE_PARAM ? "param" : n->op->name;
}
kiln_shape kiln_node_shape(const kiln_node *n) { return n->shape; }
kiln_dtype kiln_node_dtype(const kiln_node *n) { return n->dtype; }

const char *kiln_node_describe(const kiln_node *n, const kiln_shape *in, char *buf, size_t cap) {
    size_t used = (size_t)snprintf(buf, cap, "%s (%s) got ", n->name, kiln_node_op(n));
    for (int i = 0; i < n->n_in && used < cap; i++) {
        char s[128];
        used += (size_t)snprintf(buf + used, cap - used, "%s%s=%s", i ? ", " : "", n->in[i]->name,
                                 kiln_shape_str(&in[i], s, sizeof s));
    }
    return buf;
}

static kiln_node *new_node(kiln_graph *g, const char *name) {
    if (g->finalized) {
        kiln_error(KILN_ERR_INVALID,
                   "graph: cannot add '%s' after parameters were initialized (build first)",
                   name ? name : "?");
        return NULL;
    }
    if (name && kiln_graph_find(g, name)) {
        kiln_error(KILN_ERR_INVALID, "graph: the name '%s' is already used", name);
        return NULL;
    }
    if (name && strlen(name) >= sizeof(((kiln_node *)0)->name)) {
        kiln_error(KILN_ERR_INVALID, "graph: name '%.40s...' is too long", name);
        return NULL;
    }
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 32;
        kiln_node **nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            kiln_error(KILN_ERR_NOMEM, "graph: out of memory");
            return NULL;
        }
        g->nodes = nn, g->cap_nodes = cap;
    }
    kiln_node *n = calloc(1, sizeof *n);
    if (!n) {
        kiln_error(KILN_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    n->id = g->n_nodes;
    n->param_index = -1;
    if (name) snprintf(n->name, sizeof n->name, "%s", name);
    return n;
}

static void push_node(kiln_graph *g, kiln_node *n) { g->nodes[g->n_nodes++] = n; }

static int check_dims(const char *what, const char *name, int ndim, const int64_t *dims) {
    if (ndim < 0 || ndim > KILN_MAX_DIMS - (what[0] == 'i')) {
        kiln_error(KILN_ERR_SHAPE, "%s '%s': %d dims (at most %d)", what, name, ndim,
                   KILN_MAX_DIMS - (what[0] == 'i'));
        return -1;
    }
    for (int i = 0; i < ndim; i++)
        if (dims[i] <= 0) {
            kiln_error(KILN_ERR_SHAPE, "%s '%s': dim %d is %lld (must be > 0)", what, name, i,
                       (long long)dims[i]);
            return -1;
        }
    return 0;
}

kiln_node *kiln_input(kiln_graph *g, const char *name, kiln_dtype dt, int ndim,
                      const int64_t *dims) {
    if (!g || !name) {
        kiln_error(KILN_ERR_INVALID, "input: graph and name are required");
        return NULL;
    }
    if ((unsigned)dt >= KILN_DTYPE_COUNT) {
        kiln_error(KILN_ERR_INVALID, "input '%s': unknown dtype %d", name, (int)dt);
        return NULL;
    }
    if (check_dims("input", name, ndim, dims)) return NULL;
    kiln_node *n = new_node(g, name);
    if (!n) return NULL;
    n->kind = KILN_NODE_INPUT;
    n->dtype = dt;
    n->shape.ndim = ndim + 1;
    n->shape.dims[0] = 1;
    for (int i = 0; i < ndim; i++) n->shape.dims[i + 1] = dims[i];
    push_node(g, n);
    return n;
}

kiln_node *kiln_param(kiln_graph *g, const char *name, int ndim, const int64_t *dims,
                      kiln_init init, int trainable, int64_t fan_in, int64_t fan_out) {
    if (!g || !name) {
        kiln_error(KILN_ERR_INVALID, "param: graph and name are required");
        return NULL;
    }
    if (check_dims("param", name, ndim, dims)) return NULL;
    if ((unsigned)init.kind >= KILN_INIT_COUNT) {
        kiln_error(KILN_ERR_INVALID, "param '%s': unknown initializer %d", name, (int)init.kind);
        return NULL;
    }
    if (g->n_params == g->cap_params) {
        int cap = g->cap_params ? 2 * g->cap_params : 16;
        param_rec *np = realloc(g->params, (size_t)cap * sizeof *np);
        if (!np) {
            kiln_error(KILN_ERR_NOMEM, "graph: out of memory");
            return NULL;
        }
        g->params = np, g->cap_params = cap;
    }
    kiln_node *n = new_node(g, name);
    if (!n) return NULL;
    n->kind = KILN_NODE_PARAM;
    n->dtype = KILN_F32;
    n->shape = kiln_shape_make(ndim, dims);
    n->requires_grad = trainable != 0;
    n->param_index = g->n_params;
    param_rec *p = &g->params[g->n_params++];
    memset(p, 0, sizeof *p);
    p->info.name = n->name;
    p->info.shape = n->shape;
    p->info.numel = (size_t)kiln_shape_numel(&n->shape);
    p->info.trainable = trainable != 0;
    p->init = init;
    /* Default fans: dense [in, out]; conv [out, in, kh, kw] (receptive field multiplies). */
    int64_t rf = 1;
    for (int i = 2; i < ndim; i++) rf *= dims[i];
    p->fan_in = fan_in ? fan_in : ndim >= 2 ? (ndim == 2 ? dims[0] : dims[1] * rf) : dims[0];
    p->fan_out = fan_out ? fan_out : ndim >= 2 ? (ndim == 2 ? dims[1] : dims[0] * rf) : dims[0];
    push_node(g, n);
    return n;
}

kiln_node *kiln_graph_add_op(kiln_graph *g, const kiln_op *op, kiln_node *const *in, int n_in,
                             const void *attr, size_t attr_size, const char *name) {
    if (!g) return NULL;
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return NULL; /* an earlier builder failed; keep its message */
    char auto_name[96];
    if (!name && !kiln_graph_auto_name(g, op->name, auto_name, sizeof auto_name)) {
        kiln_error(KILN_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    kiln_node *n = new_node(g, name ? name : auto_name);
    if (!n) return NULL;
    n->kind = KILN_NODE_OP;
    n->op = op;
    n->n_in = n_in;
    n->in = calloc((size_t)(n_in ? n_in : 1), sizeof *n->in);
    n->attr = attr_size ? malloc(attr_size) : NULL;
    if (!n->in || (attr_size && !n->attr)) {
        free(n->in), free(n->attr), free(n);
        kiln_error(KILN_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    if (attr_size) memcpy(n->attr, attr, attr_size);
    kiln_shape shapes[64];
    kiln_shape *sh = n_in <= 64 ? shapes : malloc((size_t)n_in * sizeof *sh);
    for (int i = 0; i < n_in; i++) {
        n->in[i] = in[i];
        if (sh) sh[i] = in[i]->shape;
        n->requires_grad |= in[i]->requires_grad;
    }
    kiln_status st = sh ? op->infer(n, sh, &n->shape, &n->dtype) : KILN_ERR_NOMEM;
    if (sh != shapes) free(sh);
    if (st != KILN_OK) {
        free(n->in), free(n->attr), free(n);
        return NULL;
    }
    push_node(g, n);
    return n;
}

/* ---- parameters ---- */

static float truncated_normal(uint64_t seed, uint64_t stream, uint64_t *ctr) {
    for (;;) { /* resample beyond 2 sd, as Keras's TruncatedNormal does */
        float z = kiln_rng_normal(seed, stream, (*ctr)++);
        if (fabsf(z) <= 2.0f) return z;
    }
}

static void init_param(const kiln_graph *g, int index, const param_rec *p, float *w) {
    size_t n = p->info.numel;
    double fan_avg = (double)(p->fan_in + p->fan_out) / 2.0, fan_in = (double)p->fan_in;
    uint64_t ctr = 0;
    /* A truncated N(0,1) at 2 sd has sd 0.87962566; Keras divides it out. */
    const double trunc_sd = 0.87962566103423978;
    switch (p->init.kind) {
    case KILN_INIT_ZEROS: memset(w, 0, n * sizeof *w); break;
    case KILN_INIT_ONES:
        for (size_t i = 0; i < n; i++) w[i] = 1.0f;
        break;
    case KILN_INIT_CONSTANT:
        for (size_t i = 0; i < n; i++) w[i] = p->init.value;
        break;
    case KILN_INIT_GLOROT_UNIFORM:
    case KILN_INIT_HE_UNIFORM: {
        double a = p->init.kind == KILN_INIT_GLOROT_UNIFORM ? sqrt(3.0 / fan_avg) : sqrt(6.0 / fan_in);
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(a * (2.0 * kiln_rng_uniform(g->seed, (uint64_t)index, i) - 1.0));
        break;
    }
    case KILN_INIT_GLOROT_NORMAL:
    case KILN_INIT_HE_NORMAL: {
        double sd = (p->init.kind == KILN_INIT_GLOROT_NORMAL ? sqrt(1.0 / fan_avg) : sqrt(2.0 / fan_in)) / trunc_sd;
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(sd * truncated_normal(g->seed, (uint64_t)index, &ctr));
        break;
    }
    case KILN_INIT_NORMAL:
        for (size_t i = 0; i < n; i++)
            w[i] = p->init.value * kiln_rng_normal(g->seed, (uint64_t)index, ctr++);
        break;
    case KILN_INIT_DEFAULT:
    case KILN_INIT_COUNT: memset(w, 0, n * sizeof *w); break;
    }
}

kiln_init_kind kiln_init_from_name(const char *name) {
    static const char *names[KILN_INIT_COUNT] = {
        "default", "zeros", "ones", "constant", "glorot_uniform", "glorot_normal",
        "he_uniform", "he_normal", "normal"};
    for (int i = 0; i < KILN_INIT_COUNT; i++)
        if (strcmp(name, names[i]) == 0) return (kiln_init_kind)i;
    return KILN_INIT_COUNT;
}

kiln_status kiln_graph_init_params(kiln_graph *g) {
    if (g->finalized) return KILN_OK;
    size_t off = 0;
    for (int pass = 1; pass >= 0; pass--) { /* trainable first */
        for (int i = 0; i < g->n_params; i++) {
            param_rec *p = &g->params[i];
            if (p->info.trainable != pass) continue;
            p->info.offset = off;
            off += (p->info.numel + 15) & ~(size_t)15; /* 64-byte aligned slices */
        }
        if (pass == 1) g->n_trainable = off;
    }
    g->n_total = off;
    g->param_buf = kiln_alloc((off ? off : 16) * sizeof(float));
    g->grad_buf = kiln_alloc((g->n_trainable ? g->n_trainable : 16) * sizeof(float));
    if (!g->param_buf || !g->grad_buf) {
        kiln_free(g->param_buf), kiln_free(g->grad_buf);
        g->param_buf = g->grad_buf = NULL;
        return kiln_error(KILN_ERR_NOMEM, "graph: no memory for %zu parameters", off);
    }
    memset(g->grad_buf, 0, (g->n_trainable ? g->n_trainable : 16) * sizeof(float));
    for (int i = 0; i < g->n_params; i++)
        init_param(g, i, &g->params[i], g->param_buf + g->params[i].info.offset);
    g->finalized = 1;
    return KILN_OK;
}

int kiln_graph_param_count(const kiln_graph *g) { return g->n_params; }
const kiln_param_info *kiln_graph_param_info(const kiln_graph *g, int i) {
    return i >= 0 && i < g->n_params ? &g->params[i].info : NULL;
}
float *kiln_graph_params(kiln_graph *g) { return g->param_buf; }
float *kiln_graph_grads(kiln_graph *g) { return g->grad_buf; }
size_t kiln_graph_params_size(const kiln_graph *g) { return g->n_total; }
size_t kiln_graph_trainable_size(const kiln_graph *g) { return g->n_trainable; }

float *kiln_node_param_data(kiln_graph *g, const kiln_node *n) {
    if (n->kind != KILN_NODE_PARAM || !g->param_buf) return NULL;
    return g->param_buf + g->params[n->param_index].info.offset;
}

float *kiln_node_param_grad(kiln_graph *g, const kiln_node *n) {
    if (n->kind != KILN_NODE_PARAM || !g->grad_buf || !g->params[n->param_index].info.trainable ||
        g->params[n->param_index].info.frozen)
        return NULL;
    return g->grad_buf + g->params[n->param_index].info.offset;
}

/* ---- freezing ---- */

/* requires_grad again from the parameters' trainable and frozen flags (creation order is
 * topological, so one forward pass settles it). */
static void refresh_requires_grad(kiln_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        kiln_node *n = g->nodes[i];
        if (n->kind == KILN_NODE_PARAM) {
            const kiln_param_info *p = &g->params[n->param_index].info;
            n->requires_grad = p->trainable && !p->frozen;
        } else if (n->kind == KILN_NODE_OP) {
            n->requires_grad = 0;
            for (int j = 0; j < n->n_in; j++) n->requires_grad |= n->in[j]->requires_grad;
        }
    }
}

kiln_status kiln_graph_set_frozen(kiln_graph *g, int i, int frozen) {
    if (!g || i < 0 || i >= g->n_params)
        return kiln_error(KILN_ERR_INVALID, "graph: no parameter %d to freeze", i);
    kiln_param_info *p = &g->params[i].info;
    if (!p->trainable) return KILN_OK; /* state such as moving statistics: never updated by steps */
    if (p->frozen == (frozen != 0)) return KILN_OK;
    p->frozen = frozen != 0;
    if (g->grad_buf) memset(g->grad_buf + p->offset, 0, p->numel * sizeof(float));
    refresh_requires_grad(g);
    return KILN_OK;
}

void kiln_graph_set_inference(kiln_graph *g, kiln_node *n, int on) {
    (void)g;
    if (n && n->kind == KILN_NODE_OP) n->inference = on != 0;
}
int kiln_node_inference(const kiln_node *n) { return n && n->inference; }
int kiln_node_param_index(const kiln_node *n) {
    return n && n->kind == KILN_NODE_PARAM ? n->param_index : -1;
}
int kiln_node_input_count(const kiln_node *n) { return n ? n->n_in : 0; }
kiln_node *kiln_node_input(const kiln_node *n, int i) {
    return n && i >= 0 && i < n->n_in ? n->in[i] : NULL;
}

int kiln_graph_active_ranges(const kiln_graph *g, size_t *off, size_t *len, int cap) {
    int n = 0;
    size_t start = 0, end = 0;
    int open = 0;
    /* walk the trainable slices in buffer order (offsets increase with index among trainable) */
    for (int i = 0; i < g->n_params; i++) {
        const kiln_param_info *p = &g->params[i].info;
        if (!p->trainable) continue;
        size_t a = p->offset, b = p->offset + ((p->numel + 15) & ~(size_t)15);
        if (p->frozen) {
            if (open) {
                if (n < cap) off[n] = start, len[n] = end - start;
                n++, open = 0;
            }
            continue;
        }
        if (open && a == end) end = b;
        else {
            if (open) {
                if (n < cap) off[n] = start, len[n] = end - start;
                n++;
            }
            start = a, end = b, open = 1;
        }
    }
    if (open) {
        if (n < cap) off[n] = start, len[n] = end - start;
        n++;
    }
    return n;
}
