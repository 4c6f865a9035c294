/* onnx_import_fuzz.c — fuzzing the ONNX importer (src/model/onnx_import*.c): any bytes, and
 * valid models with mutated protobuf fields, give a clear error or a model kiln can build;
 * never a crash, a read out of bounds or undefined behaviour.
 *
 * Two ways to run it:
 *  - ctest `onnx_import_fuzz` (built with the library, no libFuzzer needed): the program's own
 *    main builds a valid seed model with protobuf-c (Conv with pads, BatchNormalization, Relu,
 *    MaxPool, a residual Add, Clip, Concat, GlobalAveragePool, a Constant-shaped Reshape,
 *    Gemm, Softmax), then for N iterations (argv[1], default 2000; seed argv[2]) mutates it:
 *    protobuf fields (attribute values and types, tensor dims, data types and data lengths,
 *    input dims, opset, counts of repeated fields, swapped names and op types) and raw bytes
 *    (flips, truncation, insertions) on the packed result, and feeds each to
 *    kiln_onnx_convert. A converted model is also built (kiln_config_resolve +
 *    kiln_model_build of its config, and its weights checked against the graph by name and
 *    shape); a refusal must come with a message. With ASan/UBSan (-DKILN_SANITIZE=ON) it checks
 *    memory too.
 *  - libFuzzer, by hand (clang 14+; the library built with clang and -fsanitize=address):
 *      clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -DKILN_LIBFUZZER -Iinclude \
 *        -Ibuild/proto tests/fuzz/onnx_import_fuzz.c build-asan/libkiln.a <its link flags> \
 *        -o /tmp/onnx_fuzz
 *      /tmp/onnx_fuzz -seed_corpus_dir... (write the seed with `onnx_import_fuzz --seed F`)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/config.h"
#include "kiln/model.h"
#include "kiln/onnx.h"
#include "onnx/onnx.pb-c.h"

static long n_ok, n_err;

/* The converted model must build in kiln, parameters matching the weights. */
static void check_built(kiln_onnx_model *m) {
    kiln_cfg *cfg = NULL;
    kiln_model km = {0};
    kiln_status st = kiln_config_parse(kiln_onnx_yaml(m, 0), "fuzz.yaml", &cfg);
    if (!st) st = kiln_config_resolve(cfg);
    if (!st) st = kiln_model_build(cfg, &km);
    if (!st) {
        int n;
        const kiln_st_entry *w = kiln_onnx_weights(m, &n);
        for (int i = 0; i < kiln_graph_param_count(km.graph); i++) {
            const kiln_param_info *pi = kiln_graph_param_info(km.graph, i);
            int found = 0;
            for (int k = 0; k < n; k++)
                if (!strcmp(w[k].name, pi->name)) {
                    found = 1;
                    if (kiln_shape_numel(&w[k].shape) != (int64_t)pi->numel) {
                        fprintf(stderr, "weight %s: wrong size\n", pi->name);
                        abort();
                    }
                }
            /* layers kiln does not have yet (other branches) fail earlier; here all match */
            if (!found) {
                fprintf(stderr, "parameter %s has no imported weight\n", pi->name);
                abort();
            }
        }
    } else if (!kiln_last_error()[0]) {
        abort();
    }
    kiln_model_free(&km);
    kiln_cfg_free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kiln_onnx_model *m = NULL;
    kiln_error_clear();
    kiln_status st = kiln_onnx_convert(data, size, "fuzz.onnx", &m);
    if (st == KILN_OK) {
        if (!m) abort();
        n_ok++;
        check_built(m);
        kiln_onnx_free(m);
    } else {
        n_err++;
        if (m || !kiln_last_error()[0]) abort(); /* a refusal says why */
    }
    return 0;
}

#ifndef KILN_LIBFUZZER

/* ---- a valid seed model, built with protobuf-c ---- */

static void *xcalloc(size_t n, size_t s) {
    void *p = calloc(n ? n : 1, s);
    if (!p) abort();
    return p;
}
static char *xstrdup(const char *s) {
    char *p = strdup(s);
    if (!p) abort();
    return p;
}

static Onnx__AttributeProto *attr_ints(const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = xcalloc(1, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = xstrdup(name);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)n;
    a->ints = xcalloc((size_t)n, sizeof *a->ints);
    memcpy(a->ints, v, (size_t)n * sizeof *v);
    return a;
}
static Onnx__AttributeProto *attr_int(const char *name, int64_t v) {
    Onnx__AttributeProto *a = xcalloc(1, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = xstrdup(name);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1, a->i = v;
    return a;
}
static Onnx__AttributeProto *attr_float(const char *name, float v) {
    Onnx__AttributeProto *a = xcalloc(1, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = xstrdup(name);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1, a->f = v;
    return a;
}

static Onnx__TensorProto *tensor(const char *name, int nd, const int64_t *dims, int is_int,
                                 unsigned seed) {
    Onnx__TensorProto *t = xcalloc(1, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = xstrdup(name);
    t->n_dims = (size_t)nd;
    t->dims = xcalloc((size_t)nd, sizeof *t->dims);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) t->dims[i] = dims[i], n *= dims[i];
    t->has_data_type = 1;
    t->data_type = is_int ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    if (is_int) return t; /* the caller fills int64_data */
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * 4;
    t->raw_data.data = xcalloc((size_t)n, 4);
    for (int64_t i = 0; i < n; i++) {
        float v = (float)((i * 2654435761u + seed) % 1000) / 1000.0f + 0.1f;
        memcpy(t->raw_data.data + 4 * i, &v, 4);
    }
    return t;
}

static Onnx__NodeProto *node(const char *op, const char *name, int n_in, const char *const *in,
                             const char *out) {
    Onnx__NodeProto *n = xcalloc(1, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = xstrdup(op);
    n->name = xstrdup(name);
    n->n_input = (size_t)n_in;
    n->input = xcalloc((size_t)n_in, sizeof *n->input);
    for (int i = 0; i < n_in; i++) n->input[i] = xstrdup(in[i]);
    n->n_output = 1;
    n->output = xcalloc(1, sizeof *n->output);
    n->output[0] = xstrdup(out);
    return n;
}
static void add_attr(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    Onnx__AttributeProto **na = xcalloc(n->n_attribute + 1, sizeof *na);
    if (n->n_attribute) memcpy(na, n->attribute, n->n_attribute * sizeof *na);
    free(n->attribute);
    n->attribute = na;
    n->attribute[n->n_attribute++] = a;
}

static Onnx__ValueInfoProto *value_info(const char *name, int nd, const int64_t *dims) {
    Onnx__ValueInfoProto *v = xcalloc(1, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = xstrdup(name);
    v->type = xcalloc(1, sizeof *v->type);
    onnx__type_proto__init(v->type);
    v->type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type->tensor_type = xcalloc(1, sizeof *v->type->tensor_type);
    onnx__type_proto__tensor__init(v->type->tensor_type);
    v->type->tensor_type->has_elem_type = 1;
    v->type->tensor_type->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    Onnx__TensorShapeProto *s = xcalloc(1, sizeof *s);
    onnx__tensor_shape_proto__init(s);
    s->n_dim = (size_t)nd;
    s->dim = xcalloc((size_t)nd, sizeof *s->dim);
    for (int i = 0; i < nd; i++) {
        s->dim[i] = xcalloc(1, sizeof *s->dim[i]);
        onnx__tensor_shape_proto__dimension__init(s->dim[i]);
        if (dims[i] < 0) {
            s->dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            s->dim[i]->dim_param = xstrdup("batch");
        } else {
            s->dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            s->dim[i]->dim_value = dims[i];
        }
    }
    v->type->tensor_type->shape = s;
    return v;
}

/* input [B, 3, 8, 8] -> conv(3x3, pads 1) -> bn -> relu -> maxpool(2) -> conv 1x1 -> add
 * (residual) -> clip(0, 6) -> concat with itself -> global avg pool -> reshape [-1, 8] -> gemm
 * (transB) -> softmax */
static uint8_t *seed_model(size_t *len) {
    Onnx__ModelProto *mpp = xcalloc(1, sizeof *mpp);
    onnx__model_proto__init(mpp);
#define mp (*mpp)
    mp.has_ir_version = 1, mp.ir_version = 8;
    mp.producer_name = xstrdup("kiln-fuzz");
    Onnx__OperatorSetIdProto *os = xcalloc(1, sizeof *os);
    onnx__operator_set_id_proto__init(os);
    os->domain = xstrdup(""), os->has_version = 1, os->version = 13;
    mp.n_opset_import = 1;
    mp.opset_import = xcalloc(1, sizeof *mp.opset_import);
    mp.opset_import[0] = os;
    Onnx__GraphProto *g = xcalloc(1, sizeof *g);
    onnx__graph_proto__init(g);
    g->name = xstrdup("seed");
    mp.graph = g;
    g->n_input = 1;
    g->input = xcalloc(1, sizeof *g->input);
    g->input[0] = value_info("x", 4, (int64_t[]){-1, 3, 8, 8});
    g->n_output = 1;
    g->output = xcalloc(1, sizeof *g->output);
    g->output[0] = value_info("y", 2, (int64_t[]){-1, 4});
    Onnx__TensorProto *inits[12];
    int ni = 0;
    inits[ni++] = tensor("w1", 4, (int64_t[]){4, 3, 3, 3}, 0, 1);
    inits[ni++] = tensor("b1", 1, (int64_t[]){4}, 0, 2);
    inits[ni++] = tensor("gamma", 1, (int64_t[]){4}, 0, 3);
    inits[ni++] = tensor("beta", 1, (int64_t[]){4}, 0, 4);
    inits[ni++] = tensor("mean", 1, (int64_t[]){4}, 0, 5);
    inits[ni++] = tensor("var", 1, (int64_t[]){4}, 0, 6);
    inits[ni++] = tensor("w2", 4, (int64_t[]){4, 4, 1, 1}, 0, 7);
    inits[ni++] = tensor("lo", 0, NULL, 0, 8);
    inits[ni++] = tensor("hi", 0, NULL, 0, 9);
    inits[ni++] = tensor("wf", 2, (int64_t[]){4, 8}, 0, 10);
    inits[ni++] = tensor("bf", 1, (int64_t[]){4}, 0, 11);
    float lo = 0, hi = 3.40282347e38f; /* Clip(0, FLT_MAX): relu, which every branch builds */
    memcpy(inits[7]->raw_data.data, &lo, 4), memcpy(inits[8]->raw_data.data, &hi, 4);
    g->n_initializer = (size_t)ni;
    g->initializer = xcalloc((size_t)ni, sizeof *g->initializer);
    memcpy(g->initializer, inits, (size_t)ni * sizeof *inits);
    Onnx__NodeProto *nodes[16];
    int nn = 0;
    Onnx__NodeProto *n = node("Conv", "/conv1/Conv", 3, (const char *[]){"x", "w1", "b1"}, "c1");
    add_attr(n, attr_ints("kernel_shape", 2, (int64_t[]){3, 3}));
    add_attr(n, attr_ints("pads", 4, (int64_t[]){1, 1, 1, 1}));
    add_attr(n, attr_ints("strides", 2, (int64_t[]){1, 1}));
    nodes[nn++] = n;
    n = node("BatchNormalization", "/bn1/BatchNormalization", 5,
             (const char *[]){"c1", "gamma", "beta", "mean", "var"}, "b");
    add_attr(n, attr_float("epsilon", 1e-5f));
    add_attr(n, attr_float("momentum", 0.9f));
    nodes[nn++] = n;
    nodes[nn++] = node("Relu", "/relu/Relu", 1, (const char *[]){"b"}, "r");
    n = node("MaxPool", "/pool/MaxPool", 1, (const char *[]){"r"}, "p");
    add_attr(n, attr_ints("kernel_shape", 2, (int64_t[]){2, 2}));
    add_attr(n, attr_ints("strides", 2, (int64_t[]){2, 2}));
    add_attr(n, attr_int("ceil_mode", 0));
    nodes[nn++] = n;
    nodes[nn++] = node("Conv", "/conv2/Conv", 2, (const char *[]){"p", "w2"}, "c2");
    nodes[nn++] = node("Add", "/Add", 2, (const char *[]){"c2", "p"}, "a");
    nodes[nn++] = node("Clip", "/Clip", 3, (const char *[]){"a", "lo", "hi"}, "cl");
    n = node("Concat", "/Concat", 2, (const char *[]){"cl", "cl"}, "cc");
    add_attr(n, attr_int("axis", 1));
    nodes[nn++] = n;
    nodes[nn++] = node("GlobalAveragePool", "/gap/GlobalAveragePool", 1, (const char *[]){"cc"},
                       "gp");
    n = node("Constant", "/Constant", 0, NULL, "shape");
    Onnx__AttributeProto *va = xcalloc(1, sizeof *va);
    onnx__attribute_proto__init(va);
    va->name = xstrdup("value");
    va->has_type = 1, va->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    va->t = tensor("", 1, (int64_t[]){2}, 1, 0);
    va->t->n_int64_data = 2;
    va->t->int64_data = xcalloc(2, sizeof(int64_t));
    va->t->int64_data[0] = -1, va->t->int64_data[1] = 8;
    add_attr(n, va);
    nodes[nn++] = n;
    nodes[nn++] = node("Reshape", "/Reshape", 2, (const char *[]){"gp", "shape"}, "fl");
    n = node("Gemm", "/fc/Gemm", 3, (const char *[]){"fl", "wf", "bf"}, "logits");
    add_attr(n, attr_int("transB", 1));
    add_attr(n, attr_float("alpha", 1));
    nodes[nn++] = n;
    n = node("Softmax", "/Softmax", 1, (const char *[]){"logits"}, "y");
    add_attr(n, attr_int("axis", -1));
    nodes[nn++] = n;
    g->n_node = (size_t)nn;
    g->node = xcalloc((size_t)nn, sizeof *g->node);
    memcpy(g->node, nodes, (size_t)nn * sizeof *nodes);
    *len = onnx__model_proto__get_packed_size(&mp);
    uint8_t *buf = xcalloc(*len, 1);
    onnx__model_proto__pack(&mp, buf);
    /* every part was malloc'd, as protobuf-c's unpacking does: it frees the same way */
    onnx__model_proto__free_unpacked(mpp, NULL);
#undef mp
    return buf;
}

/* ---- mutations ---- */

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int64_t interesting(void) {
    static const int64_t v[] = {0, 1, -1, 2, 3, 4, 6, 7, 8, 13, 64, -7, 1 << 20, INT32_MAX,
                                INT64_MAX, INT64_MIN, (int64_t)1 << 40};
    return rnd() % 4 ? v[rnd() % (sizeof v / sizeof *v)] : (int64_t)rnd();
}

/* one string slot of the graph, picked at random (node inputs, outputs, op types, names) */
static char **pick_string(Onnx__GraphProto *g) {
    if (!g->n_node) return NULL;
    Onnx__NodeProto *n = g->node[rnd() % g->n_node];
    switch (rnd() % 4) {
    case 0: return n->n_input ? &n->input[rnd() % n->n_input] : NULL;
    case 1: return n->n_output ? &n->output[rnd() % n->n_output] : NULL;
    case 2: return &n->op_type;
    default: return &n->name;
    }
}

typedef struct {
    size_t *slot, keep;
} count_fix;

static void mutate_fields(Onnx__ModelProto *mp, count_fix *fix, int *n_fix) {
    Onnx__GraphProto *g = mp->graph;
    int n_mut = 1 + (int)(rnd() % 3);
    for (int k = 0; k < n_mut && g; k++) {
        Onnx__NodeProto *n = g->n_node ? g->node[rnd() % g->n_node] : NULL;
        switch (rnd() % 9) {
        case 0: /* an attribute's value */
            if (n && n->n_attribute) {
                Onnx__AttributeProto *a = n->attribute[rnd() % n->n_attribute];
                a->i = interesting();
                a->f = (float)interesting() / (float)(1 + rnd() % 8);
                if (a->n_ints) a->ints[rnd() % a->n_ints] = interesting();
                if (a->n_floats) a->floats[rnd() % a->n_floats] = (float)interesting();
            }
            break;
        case 1: /* an attribute's type */
            if (n && n->n_attribute) n->attribute[rnd() % n->n_attribute]->type = rnd() % 15;
            break;
        case 2: { /* swap two names or op types */
            char **a = pick_string(g), **b = pick_string(g);
            if (a && b) {
                char *t = *a;
                *a = *b, *b = t;
            }
            break;
        }
        case 3: { /* drop trailing entries of a repeated field (restored before freeing) */
            size_t *slots[6] = {&g->n_node, &g->n_initializer, n ? &n->n_input : NULL,
                                n ? &n->n_attribute : NULL, n ? &n->n_output : NULL,
                                &g->n_output};
            size_t *s = slots[rnd() % 6];
            if (s && *s && *n_fix < 16) {
                fix[(*n_fix)++] = (count_fix){s, *s};
                *s = rnd() % *s;
            }
            break;
        }
        case 4: /* an initializer's dims or type */
            if (g->n_initializer) {
                Onnx__TensorProto *t = g->initializer[rnd() % g->n_initializer];
                if (t->n_dims && rnd() % 2) t->dims[rnd() % t->n_dims] = interesting();
                else t->data_type = (int32_t)(rnd() % 17);
            }
            break;
        case 5: /* an initializer's data length (restored before freeing) */
            if (g->n_initializer && *n_fix < 16) {
                Onnx__TensorProto *t = g->initializer[rnd() % g->n_initializer];
                if (t->has_raw_data && t->raw_data.len) {
                    fix[(*n_fix)++] = (count_fix){&t->raw_data.len, t->raw_data.len};
                    t->raw_data.len = rnd() % t->raw_data.len;
                }
            }
            break;
        case 6: /* the input's dims */
            if (g->n_input && g->input[0]->type && g->input[0]->type->tensor_type &&
                g->input[0]->type->tensor_type->shape) {
                Onnx__TensorShapeProto *s = g->input[0]->type->tensor_type->shape;
                Onnx__TensorShapeProto__Dimension *d = s->n_dim ? s->dim[rnd() % s->n_dim] : NULL;
                if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
                    d->dim_value = rnd() % 2 ? interesting() : (int64_t)(rnd() % 40);
            }
            break;
        case 7: /* the opset */
            if (mp->n_opset_import) mp->opset_import[0]->version = 5 + (int64_t)(rnd() % 16);
            break;
        default: /* a small attribute int, the likeliest to pass the checks */
            if (n && n->n_attribute) {
                Onnx__AttributeProto *a = n->attribute[rnd() % n->n_attribute];
                if (a->n_ints) a->ints[rnd() % a->n_ints] = (int64_t)(rnd() % 5);
                else a->i = (int64_t)(rnd() % 5) - 1;
            }
        }
    }
}

static void mutate_bytes(uint8_t **buf, size_t *len) {
    int n_mut = 1 + (int)(rnd() % 4);
    for (int k = 0; k < n_mut && *len; k++) {
        switch (rnd() % 3) {
        case 0:
            (*buf)[rnd() % *len] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1:
            *len = rnd() % *len;
            break;
        default: {
            size_t at = rnd() % *len, add = 1 + rnd() % 8;
            uint8_t *nb = realloc(*buf, *len + add);
            if (!nb) abort();
            memmove(nb + at + add, nb + at, *len - at);
            for (size_t i = 0; i < add; i++) nb[at + i] = (uint8_t)rnd();
            *buf = nb, *len += add;
        }
        }
    }
}

int main(int argc, char **argv) {
    size_t seed_len;
    uint8_t *seed = seed_model(&seed_len);
    if (argc == 3 && !strcmp(argv[1], "--seed")) { /* write the seed for a libFuzzer corpus */
        FILE *f = fopen(argv[2], "wb");
        int ok = f && fwrite(seed, 1, seed_len, f) == seed_len;
        if (f) ok = !fclose(f) && ok;
        free(seed);
        return ok ? 0 : 1;
    }
    long iters = argc > 1 ? atol(argv[1]) : 2000;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    /* the seed itself converts and builds */
    LLVMFuzzerTestOneInput(seed, seed_len);
    if (n_ok != 1) {
        fprintf(stderr, "the seed model does not import: %s\n", kiln_last_error());
        return 1;
    }
    for (long it = 0; it < iters; it++) {
        Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, seed_len, seed);
        if (!mp) abort();
        count_fix fix[16];
        int n_fix = 0;
        mutate_fields(mp, fix, &n_fix);
        size_t len = onnx__model_proto__get_packed_size(mp);
        uint8_t *buf = malloc(len + 1);
        if (!buf) abort();
        onnx__model_proto__pack(mp, buf);
        for (int i = n_fix - 1; i >= 0; i--) *fix[i].slot = fix[i].keep;
        onnx__model_proto__free_unpacked(mp, NULL);
        if (it % 3 == 0) mutate_bytes(&buf, &len);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
    }
    printf("%ld inputs: %ld imported, %ld refused with a message; no crash\n", iters + 1, n_ok,
           n_err);
    free(seed);
    return 0;
}

#endif
