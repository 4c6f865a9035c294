/* onnx_export_internal.h — the ONNX writer's builder, shared by onnx_export.c (the walk over the
 * graph, the model around it, packing) and onnx_export_ops.c (one table entry per kiln op).
 *
 * Everything the protobuf-c messages point at (nodes, attributes, names, constants) lives in the
 * builder's arena and is freed at once when the model has been packed; parameter values are not
 * copied: an initializer's raw_data points into the weights being exported. A failed allocation
 * sets b->oom and makes the helpers return NULL; the walk checks it after each op, so an emitter
 * may chain helpers without checking each one.
 */
#ifndef KILN_ONNX_EXPORT_INTERNAL_H
#define KILN_ONNX_EXPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "graph/graph_internal.h"
#include "kiln/backend.h"
#include "kiln/status.h"
#include "onnx/onnx.pb-c.h"

typedef struct {
    kiln_graph *g;
    const float *weights; /* the flat parameter buffer being exported */
    const char **names;   /* [node count]: the ONNX value holding each node's value (or NULL) */
    void **allocs;        /* the arena: every block below */
    size_t n_allocs, cap_allocs;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    int oom;
} kiln_onnx_builder;

/* One kiln op as ONNX: emit writes the nodes computing node n's value into the value named out,
 * reading its inputs' values by name (kiln_onnx_input). alias: no node at all, the value is the
 * one of input 0 (dropout at inference); the walk adds an Identity where that value must carry
 * a name of its own (the graph's output). */
typedef struct {
    const char *op; /* kiln_op.name */
    kiln_status (*emit)(kiln_onnx_builder *b, const kiln_node *n, const char *out);
    int alias;
} kiln_onnx_op;

/* The table (onnx_export_ops.c); NULL when kiln has no ONNX form for the op. */
const kiln_onnx_op *kiln_onnx_find_op(const char *op_name);

void *kiln_onnx_alloc(kiln_onnx_builder *b, size_t bytes); /* zeroed */
char *kiln_onnx_str(kiln_onnx_builder *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends a node op_type(in[0..n_in-1]) -> out named after out; NULL on OOM. An input that is
 * "" is an omitted optional input. */
Onnx__NodeProto *kiln_onnx_node(kiln_onnx_builder *b, const char *op_type, const char *const *in,
                                int n_in, const char *out);
void kiln_onnx_attr_int(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name, int64_t v);
void kiln_onnx_attr_float(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name, float v);
void kiln_onnx_attr_str(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name,
                        const char *v); /* v must outlive the packing (a literal) */
void kiln_onnx_attr_ints(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name, int count,
                         const int64_t *v);
/* The value name of input i of n: a parameter becomes an initializer (once) holding its values. */
const char *kiln_onnx_input(kiln_onnx_builder *b, const kiln_node *n, int i);
/* A float constant initializer named name (added once; later calls with the name return it). */
const char *kiln_onnx_const_f(kiln_onnx_builder *b, const char *name, int ndim,
                              const int64_t *dims, const float *v);
const char *kiln_onnx_const_i64(kiln_onnx_builder *b, const char *name, int ndim,
                                const int64_t *dims, const int64_t *v);
/* y = act(x) into out (Identity for KILN_ACT_NONE); alpha: leaky relu's slope. GELU is the exact
 * erf form as 5 nodes (ONNX's Gelu op only came with opset 20). tmp names derive from out. */
kiln_status kiln_onnx_act(kiln_onnx_builder *b, kiln_act act, float alpha, const char *x,
                          const char *out);

#endif
