/* plan.c — compiling a graph into a plan, and running it (see kiln/graph.h).
 *
 * Compile: (1) keep the nodes the outputs and the loss depend on, in creation order (already
 * topological); (2) infer every shape at the plan's batch size; (3) mark where gradients flow
 * (ancestors of the loss that depend on a trainable parameter, or with input_grads on an input)
 * and, walking backward order,
 * decide for each (consumer, input) pair whether the consumer's backward overwrites the input's
 * gradient (first writer) or adds to it; (4) memory plan: one arena, a fixed slice per value and
 * per gradient (parameters and their gradients live in the graph's flat buffers); (5) let each
 * op create its backend primitives and size the shared scratch; (6) make the stream of the ops'
 * backend (every op of a plan must name the same one).
 *
 * Run: forward walks fwd[], backward walks bwd[]; neither allocates nor looks anything up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/graph_internal.h"
#include "graph/memplan.h"

struct kiln_plan {
    kiln_graph *g;
    int n_nodes;
    kiln_inst **by_id; /* [n_nodes] NULL where a node is not in the plan */
    kiln_inst *insts;  /* [n_inst] */
    int n_inst;
    kiln_inst **fwd; /* op instances in execution order */
    int n_fwd;
    kiln_inst **bwd; /* instances whose backward runs, in reverse order */
    int n_bwd;
    float **zero_grads; /* gradients no backward writes (zeroed at the start of backward) */
    size_t *zero_sizes;
    int n_zero;
    kiln_inst *loss;
    kiln_arena arena;
    void *scratch;
    kiln_run run;
    const kiln_backend *backend; /* the ops' backend, owner of run.stream (NULL without ops) */
    kiln_op_event *prof; /* per-op timing (kiln_plan_profile), NULL when off */
    int prof_cap, *prof_count;
    /* kiln_plan_on_grads: after backward op k, gradients [ready_from[k], n_trainable) of the
     * flat buffer are final (every op writing to them has run); ready_start before the first */
    size_t *ready_from, ready_start;
    void (*grads_fn)(void *ctx, size_t from);
    void *grads_ctx;
};

static void plan_release(kiln_plan *p) {
    for (int i = 0; i < p->n_inst; i++) {
        kiln_inst *x = &p->insts[i];
        if (x->node->op && x->node->op->release && x->state) x->node->op->release(x);
        free(x->in);
        free(x->accum);
    }
}

void kiln_plan_free(kiln_plan *p) {
    if (!p) return;
    if (p->insts) plan_release(p);
    free(p->by_id), free(p->insts), free(p->fwd), free(p->bwd);
    free(p->zero_grads), free(p->zero_sizes), free(p->ready_from);
    kiln_arena_free(&p->arena);
    kiln_free(p->scratch);
    if (p->backend) p->backend->stream_free(p->run.stream);
    free(p);
}

/* (4) Memory plan: every value and gradient that is not a parameter gets a slice of one arena;
 * slices are shared between buffers whose lifetimes do not overlap. Steps: forward op k is step
 * k, backward op k (in backward order) is step F + k, END = F + B. Inputs, requested outputs and
 * the gradient root live throughout. In plans that run backward every value lives to END (the
 * backward kernels read them); otherwise a value dies after its last consumer. A gradient lives
 * from its first writer to its own node's backward; one that nobody writes (zeroed at the start
 * of backward) lives throughout. */
static kiln_status memory_plan(kiln_plan *p, const kiln_plan_opts *o, const char *written,
                               const int *first_write) {
    int F = p->n_fwd, B = p->n_bwd, END = F + B, n = p->n_nodes, nr = 0;
    int *fpos = malloc((size_t)n * sizeof *fpos), *bpos = malloc((size_t)n * sizeof *bpos);
    int *last_use = malloc((size_t)n * sizeof *last_use);
    kiln_mem_req *req = calloc((size_t)(2 * p->n_inst + 1), sizeof *req);
    if (!fpos || !bpos || !last_use || !req) {
        free(fpos), free(bpos), free(last_use), free(req);
        return kiln_error(KILN_ERR_NOMEM, "plan: out of memory");
    }
    for (int i = 0; i < n; i++) fpos[i] = bpos[i] = last_use[i] = -1;
    for (int k = 0; k < F; k++) {
        fpos[p->fwd[k]->node->id] = k;
        for (int j = 0; j < p->fwd[k]->n_in; j++) last_use[p->fwd[k]->in[j]->node->id] = k;
    }
    for (int k = 0; k < B; k++) bpos[p->bwd[k]->node->id] = k;
    for (int i = 0; i < o->n_outputs; i++) last_use[o->outputs[i]->id] = END;
    for (int i = 0; i < p->n_inst; i++) {
        kiln_inst *x = &p->insts[i];
        int id = x->node->id;
        if (x->node->kind != KILN_NODE_PARAM) {
            kiln_mem_req *r = &req[nr++];
            r->bytes = x->bytes;
            r->where = &x->val;
            int pinned = x->node->kind == KILN_NODE_INPUT || o->loss || last_use[id] < 0;
            r->start = pinned ? 0 : fpos[id];
            r->end = pinned ? END : last_use[id];
        }
        if (x->grad == (float *)1) {
            kiln_mem_req *r = &req[nr++];
            r->bytes = x->bytes;
            r->where = (void **)&x->grad;
            int kept = x->node->kind == KILN_NODE_INPUT || last_use[id] == END; /* input_grads */
            int pinned = x == p->loss || !written[id] || (o->input_grads && kept);
            r->start = pinned ? 0 : F + first_write[id];
            r->end = pinned || bpos[id] < 0 ? (pinned ? END : F + first_write[id]) : F + bpos[id];
        }
    }
    size_t total = kiln_memplan_assign(req, nr);
    kiln_status st = KILN_OK;
    if (total == (size_t)-1) st = kiln_error(KILN_ERR_NOMEM, "plan: out of memory");
    else if (kiln_arena_init(&p->arena, total)) st = KILN_ERR_NOMEM;
    else {
        for (int i = 0; i < nr; i++) *req[i].where = p->arena.base + req[i].offset;
        p->arena.used = total;
    }
    free(fpos), free(bpos), free(last_use), free(req);
    return st;
}

static kiln_plan *fail(kiln_plan *p) {
    kiln_plan_free(p);
    return NULL;
}

/* The gradient watermarks of kiln_plan_on_grads: a trainable parameter's gradient is final after
 * the last backward op that writes it (none: zeroed before the first). Walking the parameters
 * from the highest offset down, the watermark after op k is the lowest offset above which every
 * gradient is final. */
typedef struct {
    size_t off;
    int last;
} grad_mark;

static int by_offset_desc(const void *a, const void *b) {
    size_t x = ((const grad_mark *)a)->off, y = ((const grad_mark *)b)->off;
    return x < y ? 1 : x > y ? -1 : 0;
}

static kiln_status ready_marks(kiln_plan *p, kiln_graph *g) {
    int n = kiln_graph_node_count(g), np = 0;
    float *base = kiln_graph_grads(g);
    size_t nt = kiln_graph_trainable_size(g);
    grad_mark *m = calloc((size_t)n + 1, sizeof *m);
    int *last = malloc(((size_t)n + 1) * sizeof *last);
    p->ready_from = malloc(((size_t)p->n_bwd + 1) * sizeof *p->ready_from);
    if (!m || !last || !p->ready_from) {
        free(m), free(last);
        return kiln_error(KILN_ERR_NOMEM, "plan: out of memory");
    }
    for (int i = 0; i < n; i++) last[i] = -1;
    for (int k = 0; k < p->n_bwd; k++)
        for (int j = 0; j < p->bwd[k]->n_in; j++)
            if (p->bwd[k]->in[j]->grad && p->bwd[k]->in[j]->node->kind == KILN_NODE_PARAM)
                last[p->bwd[k]->in[j]->node->id] = k;
    for (int i = 0; i < n; i++) {
        kiln_node *nd = kiln_graph_node(g, i);
        float *gr = kiln_node_param_grad(g, nd);
        if (gr) m[np++] = (grad_mark){(size_t)(gr - base), last[i]};
    }
    qsort(m, (size_t)np, sizeof *m, by_offset_desc);
    int at = 0;
    size_t mark = nt;
    for (int k = -1; k < p->n_bwd; k++) {
        while (at < np && m[at].last <= k) mark = m[at++].off;
        if (k < 0) p->ready_start = mark;
        else p->ready_from[k] = mark;
    }
    free(m), free(last);
    return KILN_OK;
}

kiln_plan *kiln_plan_new(kiln_graph *g, const kiln_plan_opts *o) {
    if (!g || !o || o->batch <= 0 || (o->n_outputs <= 0 && !o->loss)) {
        kiln_error(KILN_ERR_INVALID, "plan: need a graph, a batch > 0 and outputs or a loss");
        return NULL;
    }
    for (int i = 0; i < o->n_outputs; i++)
        if (!o->outputs[i]) {
            kiln_error(KILN_ERR_INVALID, "plan: output %d is NULL (did a builder fail?)", i);
            return NULL;
        }
    if (kiln_graph_init_params(g) != KILN_OK) return NULL;
    kiln_plan *p = calloc(1, sizeof *p);
    if (!p) {
        kiln_error(KILN_ERR_NOMEM, "plan: out of memory");
        return NULL;
    }
    p->g = g;
    int n = p->n_nodes = kiln_graph_node_count(g);
    char *need = calloc((size_t)n, 1), *to_loss = calloc((size_t)n, 1), *written = calloc((size_t)n, 1);
    char *igrad = calloc((size_t)n, 1); /* input_grads: an F32 input is upstream */
    int *first_write = calloc((size_t)n, sizeof *first_write);
    p->by_id = calloc((size_t)n, sizeof *p->by_id);
    p->insts = calloc((size_t)n, sizeof *p->insts);
    p->fwd = calloc((size_t)n, sizeof *p->fwd);
    p->bwd = calloc((size_t)n, sizeof *p->bwd);
    p->zero_grads = calloc((size_t)n, sizeof *p->zero_grads);
    p->zero_sizes = calloc((size_t)n, sizeof *p->zero_sizes);
    if (!need || !to_loss || !written || !igrad || !first_write || !p->by_id || !p->insts || !p->fwd || !p->bwd ||
        !p->zero_grads || !p->zero_sizes) {
        free(need), free(to_loss), free(written), free(igrad), free(first_write);
        kiln_error(KILN_ERR_NOMEM, "plan: out of memory");
        return fail(p);
    }
#define FAIL()                                                                                     \
    do {                                                                                           \
        free(need), free(to_loss), free(written), free(igrad), free(first_write);                                                  \
        return fail(p);                                                                            \
    } while (0)

    /* (1) what the outputs and the loss depend on */
    for (int i = 0; i < o->n_outputs; i++) need[o->outputs[i]->id] = 1;
    if (o->loss) need[o->loss->id] = to_loss[o->loss->id] = 1;
    for (int i = n - 1; i >= 0; i--) {
        kiln_node *nd = kiln_graph_node(g, i);
        for (int j = 0; j < nd->n_in; j++) {
            if (need[i]) need[nd->in[j]->id] = 1;
            if (to_loss[i]) to_loss[nd->in[j]->id] = 1;
        }
    }
    if (o->loss && kiln_node_shape(o->loss).ndim > 0 && kiln_shape_numel(&o->loss->shape) != 1 &&
        o->loss->op == NULL) {
        kiln_error(KILN_ERR_INVALID, "plan: the loss '%s' is not computed by an op", o->loss->name);
        FAIL();
    }

    /* (2) instances and shapes at this batch size */
    for (int i = 0; i < n; i++) {
        if (!need[i]) continue;
        kiln_node *nd = kiln_graph_node(g, i);
        kiln_inst *x = &p->insts[p->n_inst++];
        p->by_id[i] = x;
        x->node = nd;
        x->n_in = nd->n_in;
        x->in = calloc((size_t)(nd->n_in ? nd->n_in : 1), sizeof *x->in);
        x->accum = calloc((size_t)(nd->n_in ? nd->n_in : 1), 1);
        if (!x->in || !x->accum) {
            kiln_error(KILN_ERR_NOMEM, "plan: out of memory");
            FAIL();
        }
        for (int j = 0; j < nd->n_in; j++) x->in[j] = p->by_id[nd->in[j]->id];
        if (nd->kind == KILN_NODE_OP) {
            kiln_shape in_sh[64];
            if (nd->n_in > 64) {
                kiln_error(KILN_ERR_INVALID, "plan: %s has more than 64 inputs", nd->name);
                FAIL();
            }
            for (int j = 0; j < nd->n_in; j++) in_sh[j] = x->in[j]->shape;
            if (nd->op->infer(nd, in_sh, &x->shape, &x->dtype) != KILN_OK) {
                kiln_error_prefix("plan (batch %d)", o->batch);
                FAIL();
            }
            p->fwd[p->n_fwd++] = x;
        } else {
            x->shape = nd->shape;
            x->dtype = nd->dtype;
            if (nd->kind == KILN_NODE_INPUT) x->shape.dims[0] = o->batch;
        }
        x->numel = kiln_shape_numel(&x->shape);
        x->bytes = (size_t)x->numel * kiln_dtype_size(x->dtype);
        if (nd->kind == KILN_NODE_PARAM) x->val = kiln_node_param_data(g, nd);
        /* (3) gradients flow into ancestors of the loss that depend on a trainable param */
        if (nd->kind == KILN_NODE_INPUT) igrad[i] = nd->dtype == KILN_F32;
        for (int j = 0; j < nd->n_in && nd->kind == KILN_NODE_OP; j++)
            igrad[i] |= igrad[nd->in[j]->id];
        int has_grad = o->loss && to_loss[i] && (o->input_grads ? igrad[i] : nd->requires_grad);
        if (has_grad && nd->kind == KILN_NODE_PARAM) x->grad = kiln_node_param_grad(g, nd);
        else if (has_grad) {
            if (x->dtype != KILN_F32) {
                kiln_error(KILN_ERR_INVALID, "plan: gradient must flow through %s, which is %s",
                           nd->name, kiln_dtype_name(x->dtype));
                FAIL();
            }
            x->grad = (float *)1; /* placeholder until the memory plan places it */
        }
    }
    if (o->loss) {
        p->loss = p->by_id[o->loss->id];
        if (!p->loss->grad) {
            kiln_error(KILN_ERR_INVALID, "plan: the loss '%s' does not depend on any %s",
                       o->loss->name, o->input_grads ? "F32 input" : "trainable parameter");
            FAIL();
        }
    }

    /* (3b) backward order and overwrite/accumulate decisions */
    for (int i = p->n_fwd - 1; i >= 0; i--) {
        kiln_inst *x = p->fwd[i];
        if (!x->grad || !x->node->op->backward) continue;
        p->bwd[p->n_bwd++] = x;
        for (int j = 0; j < x->n_in; j++) {
            if (!x->in[j]->grad) continue;
            int id = x->in[j]->node->id;
            x->accum[j] = written[id] != 0;
            if (!written[id]) written[id] = (char)1, first_write[id] = p->n_bwd - 1;
        }
    }
    if (o->loss && !o->input_grads && ready_marks(p, g) != KILN_OK) FAIL();
    /* (3c) layouts: a value stays plain when anything but input 0 of a layout-aware op reads
     * it, or the caller does; producers then choose, in forward order */
    kiln_compile_ctx ctx = {
        .training = o->training, .has_backward = o->loss != NULL, .deterministic = o->deterministic};
    for (int i = 0; i < p->n_inst && o->plain_layouts; i++) p->insts[i].plain_out = 1;
    for (int i = 0; i < o->n_outputs; i++) p->by_id[o->outputs[i]->id]->plain_out = 1;
    if (p->loss) p->loss->plain_out = 1;
    for (int i = 0; i < p->n_fwd; i++)
        for (int j = 0; j < p->fwd[i]->n_in; j++)
            if (!(j == 0 && p->fwd[i]->node->op->accepts_layout)) p->fwd[i]->in[j]->plain_out = 1;
    for (int i = 0; i < p->n_fwd; i++) {
        kiln_inst *x = p->fwd[i];
        ctx.training = o->training && !x->node->inference; /* a frozen batch norm: inference */
        if (x->node->op->choose_layout && x->node->op->choose_layout(x, &ctx) != KILN_OK) {
            kiln_error_prefix("plan: compiling %s (%s)", x->node->name, x->node->op->name);
            FAIL();
        }
    }
    if (memory_plan(p, o, written, first_write) != KILN_OK) FAIL();
    for (int i = 0; i < p->n_inst; i++) {
        kiln_inst *x = &p->insts[i];
        if (x->grad && x != p->loss && !written[x->node->id]) {
            p->zero_grads[p->n_zero] = x->grad;
            p->zero_sizes[p->n_zero++] = x->bytes;
        }
    }
    for (int i = 0; o->loss && !o->input_grads && i < n; i++) { /* params outside the plan: 0 */
        kiln_node *nd = kiln_graph_node(g, i);
        float *gr = kiln_node_param_grad(g, nd);
        if (gr && !p->by_id[i]) {
            p->zero_grads[p->n_zero] = gr;
            p->zero_sizes[p->n_zero++] = (size_t)kiln_shape_numel(&nd->shape) * sizeof(float);
        }
    }

    /* (5) backend primitives, created once */
    for (int i = 0; i < p->n_fwd; i++) {
        kiln_inst *x = p->fwd[i];
        ctx.training = o->training && !x->node->inference;
        if (x->node->op->compile && x->node->op->compile(x, &ctx) != KILN_OK) {
            kiln_error_prefix("plan: compiling %s (%s)", x->node->name, x->node->op->name);
            FAIL();
        }
    }
    if (ctx.scratch_bytes && !(p->scratch = kiln_alloc(ctx.scratch_bytes))) FAIL();
    p->run = (kiln_run){.training = o->training, .seed = kiln_graph_seed(g), .scratch = p->scratch};
    /* (6) the backend's stream */
    for (int i = 0; i < p->n_fwd; i++) {
        const kiln_node *nd = p->fwd[i]->node;
        if (!nd->op->backend) {
            kiln_error(KILN_ERR_INVALID, "plan: op %s (of %s) names no backend", nd->op->name,
                       nd->name);
            FAIL();
        } else if (!p->backend) {
            p->backend = nd->op->backend;
        } else if (nd->op->backend != p->backend) {
            kiln_error(KILN_ERR_INVALID,
                       "plan: %s (%s) runs on the %s backend, %s (%s) on %s: one backend per plan",
                       p->fwd[0]->node->name, p->fwd[0]->node->op->name, p->backend->name, nd->name,
                       nd->op->name, nd->op->backend->name);
            FAIL();
        }
    }
    if (p->backend && !(p->run.stream = p->backend->stream_new())) FAIL();
    free(need), free(to_loss), free(written), free(igrad), free(first_write);
    return p;
#undef FAIL
}

void *kiln_plan_data(kiln_plan *p, const kiln_node *n) {
    if (!p || !n || n->id >= p->n_nodes || !p->by_id[n->id]) return NULL;
    return p->by_id[n->id]->val;
}

float *kiln_plan_grad(kiln_plan *p, const kiln_node *n) {
    if (!p || !n || n->id >= p->n_nodes || !p->by_id[n->id]) return NULL;
    return p->by_id[n->id]->grad;
}

kiln_shape kiln_plan_shape(const kiln_plan *p, const kiln_node *n) {
    kiln_shape none = {0};
    if (!p || !n || n->id >= p->n_nodes || !p->by_id[n->id]) return none;
    return p->by_id[n->id]->shape;
}

void kiln_plan_set_step(kiln_plan *p, uint64_t step) { p->run.step = step; }

int kiln_plan_value_is_blocked(const kiln_plan *p, const kiln_node *n) {
    return p && n && n->id < p->n_nodes && p->by_id[n->id] && p->by_id[n->id]->layout != NULL;
}
size_t kiln_plan_arena_bytes(const kiln_plan *p) { return p->arena.cap; }

double kiln_time_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e6 * (double)t.tv_sec + 1e-3 * (double)t.tv_nsec;
}

void kiln_plan_profile(kiln_plan *p, kiln_op_event *events, int cap, int *count) {
    p->prof = events && cap > 0 && count ? events : NULL;
    p->prof_cap = cap;
    p->prof_count = count;
}

static void record(kiln_plan *p, const kiln_inst *x, const char *phase, double t0) {
    if (*p->prof_count >= p->prof_cap) return;
    p->prof[(*p->prof_count)++] = (kiln_op_event){x->node->name, x->node->op->name, phase, t0, kiln_time_us() - t0};
}

kiln_status kiln_plan_forward(kiln_plan *p) {
    for (int i = 0; i < p->n_fwd; i++) {
        kiln_inst *x = p->fwd[i];
        double t0 = p->prof ? kiln_time_us() : 0;
        kiln_status st = x->node->op->forward(x, &p->run);
        if (p->prof) record(p, x, "forward", t0);
        if (st != KILN_OK) {
            kiln_error_prefix("%s (%s)", x->node->name, x->node->op->name);
            return st;
        }
    }
    return KILN_OK;
}

kiln_status kiln_plan_backward(kiln_plan *p) {
    if (!p->loss) return kiln_error(KILN_ERR_INVALID, "plan: backward on a plan without a loss");
    for (int i = 0; i < p->n_zero; i++) memset(p->zero_grads[i], 0, p->zero_sizes[i]);
    if (p->loss->numel == 1) p->loss->grad[0] = 1.0f;
    size_t told = (size_t)-1;
    if (p->grads_fn && p->ready_start < told) p->grads_fn(p->grads_ctx, told = p->ready_start);
    for (int i = 0; i < p->n_bwd; i++) {
        double t0 = p->prof ? kiln_time_us() : 0;
        p->bwd[i]->node->op->backward(p->bwd[i], &p->run);
        if (p->prof) record(p, p->bwd[i], "backward", t0);
        if (p->grads_fn && p->ready_from[i] < told) p->grads_fn(p->grads_ctx, told = p->ready_from[i]);
    }
    if (p->grads_fn && told != 0) p->grads_fn(p->grads_ctx, 0);
    return KILN_OK;
}

void kiln_plan_on_reduce(kiln_plan *p, kiln_reduce_fn fn, void *ctx) {
    p->run.reduce = fn;
    p->run.reduce_ctx = ctx;
}

void kiln_plan_on_grads(kiln_plan *p, void (*fn)(void *ctx, size_t from), void *ctx) {
    p->grads_fn = p->ready_from ? fn : NULL;
    p->grads_ctx = ctx;
}
