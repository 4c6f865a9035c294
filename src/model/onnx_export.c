/* onnx_export.c — a kiln model as an ONNX ModelProto (see kiln/export.h, kiln_onnx_export).
 *
 * The model: ir_version 8, opset 17 of the default domain, producer "kiln". The graph has one
 * input "input" and the outputs "output" and, for classifiers, "probabilities" (Softmax over the
 * last axis or Sigmoid of "output", as the servable computes them): the names and shapes of
 * model.json, with the batch as the symbolic dimension "batch" so any batch size runs. Every
 * parameter the outputs depend on is an initializer named as in weights.safetensors, its values
 * little-endian float32 in raw_data. The preprocessing stays outside the graph (ONNX consumers
 * apply it, as kiln serve does): model.json has it, and so do the model's doc_string and the
 * metadata entry "kiln.preprocessing" (JSON {"scale", "mean", "std"}).
 *
 * The walk visits the graph's nodes in creation order (a topological order), keeping only those
 * the output depends on (so the loss and the label input drop out); each op node is written by
 * its entry in onnx_export_ops.c. A node whose op has no entry, or a second graph input, fails
 * the whole export with a message naming the layer and its op: no partial model is produced.
 * Values are named after their kiln node ("conv2d_1"); the names "input", "output" and
 * "probabilities" are reserved for the signature (a layer of that name gets a ":value" suffix).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg_json.h"
#include "kiln/export.h"
#include "kiln/version.h"
#include "model/onnx_export_internal.h"

/* ---- the builder ---- */

void *kiln_onnx_alloc(kiln_onnx_builder *b, size_t bytes) {
    if (b->oom) return NULL;
    if (b->n_allocs == b->cap_allocs) {
        size_t cap = b->cap_allocs ? 2 * b->cap_allocs : 256;
        void **grown = realloc(b->allocs, cap * sizeof *grown);
        if (!grown) return b->oom = 1, NULL;
        b->allocs = grown, b->cap_allocs = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) return b->oom = 1, NULL;
    return b->allocs[b->n_allocs++] = p;
}

char *kiln_onnx_str(kiln_onnx_builder *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : kiln_onnx_alloc(b, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Appends p to a growing array of pointers. */
static int push(kiln_onnx_builder *b, void ***arr, size_t *n, size_t *cap, void *p) {
    if (!p || b->oom) return 0;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        void **grown = realloc(*arr, c * sizeof *grown);
        if (!grown) return b->oom = 1, 0;
        *arr = grown, *cap = c;
    }
    (*arr)[(*n)++] = p;
    return 1;
}

Onnx__NodeProto *kiln_onnx_node(kiln_onnx_builder *b, const char *op_type, const char *const *in,
                                int n_in, const char *out) {
    Onnx__NodeProto *n = kiln_onnx_alloc(b, sizeof *n);
    char **ins = kiln_onnx_alloc(b, (size_t)(n_in ? n_in : 1) * sizeof *ins),
         **outs = kiln_onnx_alloc(b, sizeof *outs);
    if (!n || !ins || !outs) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < n_in; i++) ins[i] = (char *)in[i];
    outs[0] = (char *)out;
    n->n_input = (size_t)n_in, n->input = ins;
    n->n_output = 1, n->output = outs;
    n->name = (char *)out; /* one node per value: its name is unique */
    n->op_type = (char *)op_type;
    void **arr = (void **)b->nodes;
    int ok = push(b, &arr, &b->n_nodes, &b->cap_nodes, n);
    b->nodes = (Onnx__NodeProto **)arr;
    return ok ? n : NULL;
}

static Onnx__AttributeProto *attr(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type) {
    if (!n) return NULL;
    Onnx__AttributeProto *a = kiln_onnx_alloc(b, sizeof *a);
    Onnx__AttributeProto **arr =
        kiln_onnx_alloc(b, (n->n_attribute + 1) * sizeof *arr); /* few per node: copy */
    if (!a || !arr) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1, a->type = type;
    if (n->n_attribute) memcpy(arr, n->attribute, n->n_attribute * sizeof *arr);
    arr[n->n_attribute++] = a;
    n->attribute = arr;
    return a;
}

void kiln_onnx_attr_int(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
}

void kiln_onnx_attr_float(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
}

void kiln_onnx_attr_str(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name,
                        const char *v) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (a) a->has_s = 1, a->s.len = strlen(v), a->s.data = (uint8_t *)v;
}

void kiln_onnx_attr_ints(kiln_onnx_builder *b, Onnx__NodeProto *n, const char *name, int count,
                         const int64_t *v) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *copy = a ? kiln_onnx_alloc(b, (size_t)count * sizeof *copy) : NULL;
    if (!copy) return;
    memcpy(copy, v, (size_t)count * sizeof *copy);
    a->n_ints = (size_t)count, a->ints = copy;
}

/* An initializer (data not copied: raw points at bytes that outlive the packing). */
static const char *initializer(kiln_onnx_builder *b, const char *name, int32_t type, int ndim,
                               const int64_t *dims, const void *raw, size_t bytes) {
    for (size_t i = 0; i < b->n_inits; i++)
        if (!strcmp(b->inits[i]->name, name)) return b->inits[i]->name;
    Onnx__TensorProto *t = kiln_onnx_alloc(b, sizeof *t);
    int64_t *d = kiln_onnx_alloc(b, (size_t)(ndim ? ndim : 1) * sizeof *d);
    char *nm = kiln_onnx_str(b, "%s", name);
    if (!t || !d || !nm) return NULL;
    onnx__tensor_proto__init(t);
    if (ndim) memcpy(d, dims, (size_t)ndim * sizeof *d);
    t->n_dims = (size_t)ndim, t->dims = d;
    t->has_data_type = 1, t->data_type = type;
    t->name = nm;
    t->has_raw_data = 1, t->raw_data.len = bytes, t->raw_data.data = (uint8_t *)raw;
    void **arr = (void **)b->inits;
    int ok = push(b, &arr, &b->n_inits, &b->cap_inits, t);
    b->inits = (Onnx__TensorProto **)arr;
    return ok ? nm : NULL;
}

static int64_t count(int ndim, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    return n;
}

/* A constant initializer: a copy of count(dims) values of elsize bytes each. */
static const char *const_copy(kiln_onnx_builder *b, const char *name, int type, int ndim,
                              const int64_t *dims, const void *v, size_t elsize) {
    size_t bytes = (size_t)count(ndim, dims) * elsize;
    void *copy = kiln_onnx_alloc(b, bytes);
    if (!copy) return NULL;
    memcpy(copy, v, bytes);
    return initializer(b, name, type, ndim, dims, copy, bytes);
}

const char *kiln_onnx_const_f(kiln_onnx_builder *b, const char *name, int ndim,
                              const int64_t *dims, const float *v) {
    return const_copy(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims, v, sizeof *v);
}

const char *kiln_onnx_const_i64(kiln_onnx_builder *b, const char *name, int ndim,
                                const int64_t *dims, const int64_t *v) {
    return const_copy(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, ndim, dims, v, sizeof *v);
}

const char *kiln_onnx_input(kiln_onnx_builder *b, const kiln_node *n, int i) {
    const kiln_node *in = n->in[i];
    if (b->names[in->id] || in->kind != KILN_NODE_PARAM) return b->names[in->id];
    const kiln_param_info *pi = kiln_graph_param_info(b->g, in->param_index);
    const char *name = initializer(b, pi->name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                                   pi->shape.ndim, pi->shape.dims, b->weights + pi->offset,
                                   pi->numel * sizeof(float));
    return b->names[in->id] = name;
}

static void builder_free(kiln_onnx_builder *b) {
    for (size_t i = 0; i < b->n_allocs; i++) free(b->allocs[i]);
    free(b->allocs);
    free(b->nodes);
    free(b->inits);
    free(b->names);
}

/* ---- the model around the graph ---- */

static int32_t elem_type(kiln_dtype dt) {
    switch (dt) {
    case KILN_F32: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    case KILN_I32: return ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    case KILN_I64: return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    default: return 0;
    }
}

/* name: elem [batch, s.dims[1], ...] */
static Onnx__ValueInfoProto *value_info(kiln_onnx_builder *b, const char *name, kiln_dtype dt,
                                        kiln_shape s) {
    Onnx__ValueInfoProto *v = kiln_onnx_alloc(b, sizeof *v);
    Onnx__TypeProto *t = kiln_onnx_alloc(b, sizeof *t);
    Onnx__TypeProto__Tensor *tt = kiln_onnx_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sp = kiln_onnx_alloc(b, sizeof *sp);
    Onnx__TensorShapeProto__Dimension **dims = kiln_onnx_alloc(b, (size_t)s.ndim * sizeof *dims);
    if (!v || !t || !tt || !sp || !dims) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int i = 0; i < s.ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = kiln_onnx_alloc(b, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = "batch";
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = s.dims[i];
        }
        dims[i] = d;
    }
    sp->n_dim = (size_t)s.ndim, sp->dim = dims;
    tt->has_elem_type = 1, tt->elem_type = elem_type(dt);
    tt->shape = sp;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, t->tensor_type = tt;
    v->name = (char *)name, v->type = t;
    return v;
}

static int reserved(const char *name) {
    return !strcmp(name, "input") || !strcmp(name, "output") || !strcmp(name, "probabilities");
}

/* The graph's nodes, from m->input to "output" (and "probabilities"). */
static kiln_status walk(kiln_onnx_builder *b, const kiln_model *m, const char *prob) {
    int n = kiln_graph_node_count(b->g);
    char *need = calloc((size_t)n, 1);
    if (!need) return kiln_error(KILN_ERR_NOMEM, "export: out of memory writing ONNX");
    need[m->output->id] = 1;
    for (int i = n - 1; i >= 0; i--) {
        const kiln_node *x = kiln_graph_node(b->g, i);
        if (need[i])
            for (int j = 0; j < x->n_in; j++) need[x->in[j]->id] = 1;
    }
    kiln_status st = KILN_OK;
    for (int i = 0; i < n && !st && !b->oom; i++) {
        const kiln_node *x = kiln_graph_node(b->g, i);
        if (!need[i] || x->kind == KILN_NODE_PARAM) continue; /* parameters: when used */
        if (x->kind == KILN_NODE_INPUT) {
            if (x != m->input)
                st = kiln_error(KILN_ERR_FORMAT,
                                "export: the output depends on input '%s' besides the model "
                                "input: ONNX export writes one input",
                                x->name);
            b->names[i] = "input";
            continue;
        }
        const kiln_onnx_op *op = kiln_onnx_find_op(x->op->name);
        if (!op) {
            st = kiln_error(KILN_ERR_FORMAT,
                            "export: layer '%s' (op %s): kiln cannot write this op as ONNX (no "
                            "version was written; export without --format onnx)",
                            x->name, x->op->name);
            break;
        }
        const char *out = x == m->output ? "output"
                          : reserved(x->name) ? kiln_onnx_str(b, "%s:value", x->name)
                                              : x->name;
        if (op->alias) {
            const char *src = kiln_onnx_input(b, x, 0);
            if (src && x == m->output) kiln_onnx_node(b, "Identity", &src, 1, out);
            b->names[i] = x == m->output ? out : src;
            continue;
        }
        if (out) st = op->emit(b, x, out);
        b->names[i] = out;
    }
    free(need);
    if (!st && m->output == m->input && !b->oom) { /* a model of no op: output is the input */
        const char *src = "input";
        kiln_onnx_node(b, "Identity", &src, 1, "output");
    }
    if (!st && prob && !b->oom) {
        const char *src = "output";
        int softmax = !strcmp(prob, "softmax");
        Onnx__NodeProto *p = kiln_onnx_node(b, softmax ? "Softmax" : "Sigmoid", &src, 1,
                                            "probabilities");
        if (p && softmax) kiln_onnx_attr_int(b, p, "axis", -1);
    }
    if (!st && b->oom) st = kiln_error(KILN_ERR_NOMEM, "export: out of memory writing ONNX");
    return st;
}

/* {"scale": s, "mean": [...] | null, "std": [...] | null} */
static char *preprocessing_json(const kiln_normalize *nm) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddItemToObject(o, "scale", kiln_json_number(nm && nm->scale != 0 ? nm->scale : 1, 1));
    const char *keys[2] = {"mean", "std"};
    for (int k = 0; k < 2; k++) {
        const float *v = nm && nm->channels > 0 ? (k ? nm->std : nm->mean) : NULL;
        cJSON *a = v ? cJSON_CreateArray() : cJSON_CreateNull();
        for (int c = 0; v && a && c < nm->channels; c++)
            cJSON_AddItemToArray(a, kiln_json_number(v[c], 1));
        cJSON_AddItemToObject(o, keys[k], a);
    }
    char *text = cJSON_GetArraySize(o) == 3 ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

kiln_status kiln_onnx_export(const kiln_model *m, const kiln_onnx_opts *o, void **bytes,
                             size_t *len) {
    static const kiln_onnx_opts none = {0};
    if (!o) o = &none;
    if (!bytes || !len || !m || !m->graph || !m->input || !m->output)
        return kiln_error(KILN_ERR_INVALID, "export: ONNX: need a built model and an output");
    *bytes = NULL, *len = 0;
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1)
        return kiln_error(KILN_ERR_FORMAT, "export: ONNX raw_data is little-endian; this host "
                                           "is not");
    if (o->probabilities && strcmp(o->probabilities, "softmax") &&
        strcmp(o->probabilities, "sigmoid"))
        return kiln_error(KILN_ERR_INVALID, "export: ONNX: probabilities '%s': expected softmax "
                                            "or sigmoid",
                          o->probabilities);
    kiln_onnx_builder b;
    memset(&b, 0, sizeof b);
    b.g = m->graph;
    b.weights = o->weights ? o->weights : kiln_graph_params(m->graph);
    if (!b.weights)
        return kiln_error(KILN_ERR_INVALID, "export: ONNX: the model's parameters are not "
                                            "initialized");
    int n = kiln_graph_node_count(m->graph);
    for (int i = 0; i < n; i++)
        if (kiln_graph_node(m->graph, i)->id != i)
            return kiln_error(KILN_ERR_INVALID, "export: ONNX: graph node %d has id %d", i,
                              kiln_graph_node(m->graph, i)->id);
    if (!elem_type(m->input->dtype))
        return kiln_error(KILN_ERR_FORMAT, "export: ONNX: input dtype %s has no ONNX type here",
                          kiln_dtype_name(m->input->dtype));
    if (!(b.names = calloc((size_t)n, sizeof *b.names)))
        return kiln_error(KILN_ERR_NOMEM, "export: out of memory writing ONNX");
    kiln_status st = walk(&b, m, o->probabilities);
    char *pre = st ? NULL : preprocessing_json(o->preprocessing);
    if (!st && !pre) st = kiln_error(KILN_ERR_NOMEM, "export: out of memory writing ONNX");

    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__StringStringEntryProto meta = ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__StringStringEntryProto *metas[1] = {&meta};
    Onnx__ValueInfoProto *ins[1], *outs[2];
    if (!st) {
        ins[0] = value_info(&b, "input", m->input->dtype, m->input->shape);
        outs[0] = value_info(&b, "output", m->output->dtype, m->output->shape);
        outs[1] = o->probabilities ? value_info(&b, "probabilities", KILN_F32, m->output->shape)
                                   : NULL;
        char *doc = kiln_onnx_str(
            &b,
            "kiln model '%s'. The input is the preprocessed value: apply model.json's "
            "preprocessing (x = v * scale, then (x - mean[c]) / std[c]) before running this "
            "graph; here it is %s",
            o->name ? o->name : "kiln", pre);
        if (b.oom || !doc)
            st = kiln_error(KILN_ERR_NOMEM, "export: out of memory writing ONNX");
        graph.n_node = b.n_nodes, graph.node = b.nodes;
        graph.name = (char *)(o->name ? o->name : "kiln");
        graph.n_initializer = b.n_inits, graph.initializer = b.inits;
        graph.n_input = 1, graph.input = ins;
        graph.n_output = o->probabilities ? 2 : 1, graph.output = outs;
        opset.domain = "", opset.has_version = 1, opset.version = KILN_ONNX_OPSET;
        meta.key = "kiln.preprocessing", meta.value = pre;
        model.has_ir_version = 1, model.ir_version = KILN_ONNX_IR_VERSION;
        model.n_opset_import = 1, model.opset_import = opsets;
        model.producer_name = "kiln", model.producer_version = KILN_VERSION;
        model.doc_string = doc;
        model.graph = &graph;
        model.n_metadata_props = 1, model.metadata_props = metas;
    }
    if (!st) {
        size_t size = onnx__model_proto__get_packed_size(&model);
        if (size > (size_t)INT32_MAX)
            st = kiln_error(KILN_ERR_FORMAT,
                            "export: the ONNX model would be %zu bytes; protobuf stops at 2 GiB",
                            size);
        else if (!(*bytes = malloc(size ? size : 1)))
            st = kiln_error(KILN_ERR_NOMEM, "export: out of memory writing ONNX (%zu bytes)",
                            size);
        else
            *len = onnx__model_proto__pack(&model, *bytes);
    }
    cJSON_free(pre);
    builder_free(&b);
    return st;
}
