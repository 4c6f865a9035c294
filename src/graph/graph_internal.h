/* graph_internal.h — nodes, the op table, and compiled instances (library-private).
 *
 * A kiln_op is one table entry: shape inference plus, per backend, compile / forward /
 * backward / release. A kiln_node is the op applied to inputs at build time; a kiln_inst is that
 * node inside one compiled plan, with its buffers and backend state at the plan's batch size.
 *
 * Kernel contract:
 *  - forward reads in[i]->val and writes x->val (ops with running state, e.g. batch norm, may
 *    also update their non-trainable parameter inputs in training plans).
 *  - backward reads x->grad (dL/d out) and forward values, and for every input with
 *    in[i]->grad != NULL writes dL/d in[i]: overwriting it when accum[i] == 0, adding to it
 *    when accum[i] == 1. Inputs are processed in index order (the same input may appear twice).
 *  - neither allocates: compile sizes everything (op state, and r->scratch via c->scratch_bytes).
 *  - an op whose input 0 has accepts_layout reads in[0]->layout; every other input is plain.
 */
#ifndef KILN_GRAPH_INTERNAL_H
#define KILN_GRAPH_INTERNAL_H

#include "kiln/graph.h"
#include "kiln/mem.h"

typedef struct kiln_inst kiln_inst;
typedef struct kiln_op kiln_op;

/* A backend, as a plan sees it: its ops' kernels are in the op entries; besides them a plan only
 * needs the backend's execution stream, made once per plan (so plans on different threads never
 * share one) and handed to every kernel in kiln_run.stream. The backends define these (CPU:
 * src/backend/cpu/dnnl_util.c); the graph never names one, so it sits below all of them. */
typedef struct {
    const char *name;
    void *(*stream_new)(void);         /* NULL with a message on failure */
    void (*stream_free)(void *stream); /* accepts NULL */
} kiln_backend;

/* What a step needs besides the instance: read-only during the step. */
typedef struct {
    int training;
    uint64_t seed; /* the graph's seed */
    uint64_t step; /* RNG counter base (kiln_plan_set_step) */
    void *scratch; /* shared temporary, c->scratch_bytes long (64-byte aligned) */
    void *stream;  /* the plan's backend stream (CPU: a dnnl_stream_t) */
    kiln_reduce_fn reduce; /* kiln_plan_on_reduce (NULL: none); call it outside parallel regions */
    void *reduce_ctx;
} kiln_run;

/* What compile may ask of the plan. */
typedef struct {
    int training;
    int has_backward;     /* the plan will run backward */
    int deterministic;    /* results must not depend on the number of threads (kiln_plan_opts) */
    size_t scratch_bytes; /* raise to the most this op needs as temporary */
} kiln_compile_ctx;

struct kiln_op {
    const char *name;
    const kiln_backend *backend; /* whose kernels these are; a plan runs on one backend */
    /* Output shape/dtype from input shapes (batch 1 at build time, the plan's batch at compile
     * time). Errors name the node, its inputs and their shapes. */
    kiln_status (*infer)(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                         kiln_dtype *dt);
    /* Optional, before the memory plan, in forward order: may make x->state and pick a backend
     * layout for the output (x->layout, x->bytes) unless x->plain_out. Inputs' layouts are
     * final by then. */
    kiln_status (*choose_layout)(kiln_inst *x, kiln_compile_ctx *c);
    kiln_status (*compile)(kiln_inst *x, kiln_compile_ctx *c); /* optional; after the memory plan */
    kiln_status (*forward)(kiln_inst *x, const kiln_run *r);
    void (*backward)(kiln_inst *x, const kiln_run *r); /* NULL: no gradient flows through */
    void (*release)(kiln_inst *x);                     /* optional: frees x->state */
    int accepts_layout; /* input 0 may arrive in a backend layout (conv, pooling) */
};

struct kiln_node {
    int id;
    const kiln_op *op; /* NULL for inputs and parameters */
    enum { KILN_NODE_INPUT, KILN_NODE_PARAM, KILN_NODE_OP } kind;
    char name[96];
    int n_in;
    kiln_node **in;
    kiln_shape shape; /* at build time (batch 1) */
    kiln_dtype dtype;
    void *attr;       /* op attributes (malloc'd copy, owned by the graph) */
    int param_index;  /* KILN_NODE_PARAM: index into g->params */
    int requires_grad; /* a trainable, unfrozen parameter is upstream (or this is one) */
    /* Runs as in inference even in training plans (kiln_graph_set_inference: a batch norm under
     * a frozen scope uses and keeps its moving statistics); plans read it when compiled. */
    unsigned char inference;
};

struct kiln_inst {
    const kiln_node *node;
    kiln_shape shape; /* at the plan's batch size */
    kiln_dtype dtype;
    int64_t numel;
    void *val;           /* [shape] */
    float *grad;         /* [shape] dL/d val, NULL when no gradient flows here */
    /* Layout of val and grad: NULL is plain row-major; otherwise a backend descriptor owned by
     * the producer's state (oneDNN: a dnnl_memory_desc_t such as nChw8c). Only consumers with
     * accepts_layout ever see a non-plain input. bytes: size of val (and of grad). */
    const void *layout;
    size_t bytes;
    unsigned char plain_out; /* some consumer (or the caller) needs val plain */
    int n_in;
    kiln_inst **in;
    unsigned char *accum; /* [n_in] */
    void *state;          /* op-private, made by compile, freed by release */
};

/* Adds an op node: copies attr (attr_size bytes), infers its shape; NULL with message on error.
 * name may be NULL (then "<prefix>_<n>" is generated, Keras-style, from the op name). */
kiln_node *kiln_graph_add_op(kiln_graph *g, const kiln_op *op, kiln_node *const *in, int n_in,
                             const void *attr, size_t attr_size, const char *name);
/* "dense" -> "dense_3": the next Keras-style name for a layer kind in this graph. */
const char *kiln_graph_auto_name(kiln_graph *g, const char *kind, char *buf, size_t cap);
/* Parameter n's current value in the flat buffer (NULL before kiln_graph_init_params). */
float *kiln_node_param_data(kiln_graph *g, const kiln_node *n);
/* Gradient slice of a trainable parameter (NULL otherwise). */
float *kiln_node_param_grad(kiln_graph *g, const kiln_node *n);

/* Shape helper for error messages: "dense_1 (dense) got x=[1, 784], kernel=[100, 10]". */
const char *kiln_node_describe(const kiln_node *n, const kiln_shape *in, char *buf, size_t cap);

#define KILN_ATTR(n, type) ((const type *)(n)->attr)

#endif
