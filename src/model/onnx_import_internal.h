/* onnx_import_internal.h — what the ONNX importer's files share (src/model/onnx_import*.c).
 *
 * onnx_import.c reads the protobuf, the values (initializers, Constant outputs, the model input)
 * and walks the nodes in order; onnx_import_ops.c maps one node onto layers; onnx_import_write.c
 * renders the layers as YAML and writes the files.
 *
 * Invariants: a value is either a constant (data owned, full ONNX shape) or an activation (the
 * layer that computes it, -1 for the model input; its ONNX shape with dims[0] = -1 for the batch,
 * and the shape kiln gives it, which differs only where kiln drops trailing 1s, e.g. after a
 * global pool). Layers are appended in node order, so every from: names an earlier layer.
 */
#ifndef KILN_ONNX_IMPORT_INTERNAL_H
#define KILN_ONNX_IMPORT_INTERNAL_H

#include <stdint.h>

#include "kiln/onnx.h"
#include "onnx/onnx.pb-c.h"

#define OX_MAXD 8   /* dims of a value, batch included */
#define OX_MAXKV 16 /* config keys of one layer */
#define OX_MAXW 4   /* parameters of one layer */
#define OX_MAXIN 16 /* inputs of one layer */

typedef struct {
    const char *name; /* the ONNX value name (points into the protobuf) */
    int is_const;
    int nd;
    int64_t dims[OX_MAXD];
    /* constants: float (f) or int64 (i64) data of n elements */
    float *f;
    int64_t *i64;
    int64_t n;
    /* activations */
    int layer; /* producing layer, -1: the model input */
    int knd;   /* kiln's shape of it (batch included) */
    int64_t kdims[OX_MAXD];
    int uses; /* node inputs and graph outputs reading it */
} ox_val;

typedef struct {
    char key[24];
    char *text; /* YAML flow text of the value */
} ox_kv;

typedef struct {
    char suffix[24]; /* kernel, bias, gamma, ... */
    int nd;
    int64_t dims[OX_MAXD];
    float *data;
} ox_w;

typedef struct {
    char kind[32];
    char *name;
    int from[OX_MAXIN]; /* layer indices, -1: the model input */
    int nfrom;
    ox_kv kv[OX_MAXKV];
    int nkv;
    ox_w w[OX_MAXW];
    int nw;
    int out_val; /* the value this layer's output is (for fusing an activation) */
    int node;    /* the ONNX node it came from */
} ox_layer;

struct kiln_onnx_model {
    ox_layer *layers;
    int nl, capl;
    int n_nodes;
    int opset;
    int in_nd;
    int64_t in_dims[OX_MAXD]; /* model.input (without the batch) */
    char *input_name, *output_name, *producer, *label;
    char loss[32];   /* softmax_cross_entropy, binary_cross_entropy, mse */
    char dropped[16]; /* "Softmax" / "Sigmoid" when the final op was dropped, else "" */
    char *yaml_full, *yaml_serve;
    int flat;        /* 1: every layer written out (kiln import --flat) */
    int block_depth; /* scope depth the blocks were found at; 0: the flat form was written */
    int n_blocks;    /* block definitions written */
    kiln_st_entry *entries;
    char **entry_names;
    int ne;
};

typedef struct {
    const Onnx__ModelProto *mp;
    const char *label;
    int opset;
    ox_val *vals;
    int nv, capv;
    kiln_onnx_model *m;
    int ni;                   /* the node being mapped */
    const Onnx__NodeProto *n; /* its protobuf */
} ox_ctx;

/* ---- onnx_import.c ---- */
/* An error about the current node: "<label>: node 12 'name' (Conv): attribute 'pads': ...";
 * attr may be NULL. Returns st. */
kiln_status ox_err(ox_ctx *c, kiln_status st, const char *attr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int ox_find(ox_ctx *c, const char *name); /* value index or -1 */
/* Input k of the current node: an activation (error when it is missing or a constant). */
kiln_status ox_act_in(ox_ctx *c, int k, int *v);
/* Input k as a constant; *v = -1 when the input is absent or empty (optional inputs). An
 * activation there is an error naming what. */
kiln_status ox_const_in(ox_ctx *c, int k, const char *what, int *v);
/* The attribute, checking its type; NULL when absent. */
const Onnx__AttributeProto *ox_attr(ox_ctx *c, const char *name);
kiln_status ox_attr_int(ox_ctx *c, const char *name, int64_t def, int64_t *out);
kiln_status ox_attr_float(ox_ctx *c, const char *name, float def, float *out);
/* ints: up to max values, *n = -1 when absent. */
kiln_status ox_attr_ints(ox_ctx *c, const char *name, int64_t *out, int max, int *n);
kiln_status ox_attr_str(ox_ctx *c, const char *name, const char *def, char *out, size_t cap);
/* Every attribute of the node must be in allowed (NULL-terminated). */
kiln_status ox_attrs_only(ox_ctx *c, const char *const *allowed);
/* A new layer reading the given activation values; its name comes from the node's. */
kiln_status ox_layer_new(ox_ctx *c, const char *kind, const int *in_vals, int n_in, int *li);
kiln_status ox_kv_add(ox_ctx *c, int li, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *ox_kv_get(const ox_layer *L, const char *key);
/* Adds a parameter (data copied when copy, else taken over). */
kiln_status ox_w_add(ox_ctx *c, int li, const char *suffix, int nd, const int64_t *dims,
                     float *data);
/* Defines output k of the current node as an activation computed by layer li. */
kiln_status ox_def_act(ox_ctx *c, int k, int li, int nd, const int64_t *dims, int knd,
                       const int64_t *kdims);
/* Output k is input value v under another name (Identity, a no-op). */
kiln_status ox_alias(ox_ctx *c, int k, int v);
/* Output k is a new constant (data taken over). */
kiln_status ox_def_const(ox_ctx *c, int k, int nd, const int64_t *dims, float *f, int64_t *i64,
                         int64_t n);
/* Makes kiln's shape of v its ONNX shape, adding a reshape layer when they differ; *out is the
 * value to read. */
kiln_status ox_exact(ox_ctx *c, int v, int *out);
/* How many node inputs and graph outputs read value v. */
int ox_uses(ox_ctx *c, int v);
/* A Constant node's tensor as a new value. */
kiln_status ox_const_from_attr(ox_ctx *c, const Onnx__TensorProto *t, int *v);
/* Shortest decimal text that reads back as the same float. */
void ox_fmt_float(char *buf, size_t cap, float x);
/* "[a, b, c]" or "a" when one value (or all equal and one_if_same). */
void ox_fmt_ints(char *buf, size_t cap, const int64_t *v, int n, int one_if_same);

/* ---- onnx_import_ops.c ---- */
kiln_status ox_map_node(ox_ctx *c);
void ox_free_layer(ox_layer *L);

/* ---- onnx_import_write.c ---- */
kiln_status ox_render(kiln_onnx_model *m);
/* A growing string; oom is set (and the text dropped) on a failed allocation. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} ox_buf;
void ox_put(ox_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ox_put_name(ox_buf *b, const char *s); /* a name as a YAML flow scalar */
/* One layer as a flow-style line at indent ind; refs[k] names from[k] (NULL: the chain, no
 * from:); val[k] replaces kv[k]'s text when not NULL. */
void ox_put_layer(ox_buf *b, int ind, const ox_layer *L, const char *name,
                  const char *const *refs, int nref, const char *const *val);

/* ---- onnx_import_blocks.c ---- */
/* The scope depth whose block form is the shortest text, or 0 when no depth has a sub-graph
 * that repeats or the flat form is as short (-1: out of memory). */
int ox_blocks_choose(const kiln_onnx_model *m);
/* model.blocks and model.layers (from "  blocks:" on) of the block form at depth; returns the
 * number of blocks (0: nothing written; -1: out of memory). */
int ox_blocks_render(const kiln_onnx_model *m, int depth, ox_buf *b);

#endif
