/* tj_internal.h — tensor builders: one input's values read from nested JSON lists.
 *
 * A builder takes the leaves of a (possibly nested) list in document order, which is row-major
 * order, converts each to the target type, and infers the shape as it goes: the first leaf
 * fixes how deep leaves sit (leaf_depth), the first list to close at each depth fixes that
 * dim, and every later list at that depth must match it. Nothing is buffered per value but the
 * value itself. Errors name the path: root, then for named TF rows "[instance].name", then one
 * [i] per depth below the builder's base.
 */
#ifndef KILN_TJ_INTERNAL_H
#define KILN_TJ_INTERNAL_H

#include "kiln/tensor_json.h"
#include "net/json_scan.h"

/* A v2 datatype: what its data may hold. */
typedef enum { TJ_BOOL, TJ_UINT, TJ_INT, TJ_FLOAT, TJ_BYTES_DT } tj_kind;
typedef struct {
    const char *name;
    tj_kind kind;
    double lo, hi; /* value range for BOOL/UINT/INT (inclusive) */
} tj_dtype;
/* The v2 datatype called name, or NULL (the message then lists the supported ones). */
const tj_dtype *tj_dtype_find(const char *name);
extern const char TJ_DTYPE_LIST[]; /* "BOOL, UINT8, ..., BYTES" */

typedef struct {
    char *name;           /* input name ("" when unnamed) */
    kiln_tj_type type;    /* target type */
    int auto_type;        /* no schema: the first leaf picks F32 (number) or BYTES */
    const tj_dtype *decl; /* v2: the declared datatype; NULL for TF */
    const char *root;     /* path root for messages */
    int named_row;        /* TF named rows: paths read root[idx[0]].name[idx[1]]... */
    int base;             /* depth of the value the builder starts at */
    int leaf_depth;       /* -1 until the first leaf */
    unsigned dims_set;    /* bit d: dims[d] is known */
    int64_t dims[KILN_MAX_DIMS];
    int64_t idx[KILN_MAX_DIMS + 1]; /* position of the current value, per depth */
    int64_t count;                  /* leaves so far */
    char *data;                     /* [cap] values (numeric) or bytes */
    size_t len, cap;
    int64_t *offsets; /* BYTES: [count + 1] */
    size_t off_cap;
    kiln_sbuf scratch; /* decoded strings before base64 */
} tj_builder;

/* root is copied. name is copied. base: 0, or 1 for TF named rows. */
kiln_status tj_builder_init(tj_builder *b, const char *name, kiln_tj_type type, int auto_type,
                            const char *root, int named_row, int base);
/* Reserve room for n values (a hint; growth is automatic). */
kiln_status tj_builder_reserve(tj_builder *b, int64_t n);
/* Reads the value at the cursor (a leaf or a list) at the given depth. */
kiln_status tj_walk(tj_builder *b, js_cur *c, int depth);
/* Reads len bytes of binary tensor data (Triton's extension: little-endian, row-major; BYTES
 * elements each a 4-byte length and the bytes) of the builder's declared datatype (b->decl, set)
 * for a tensor of numel elements; paths read root[i]. Fixed-size datatypes must fill len exactly.
 */
kiln_status tj_put_binary(tj_builder *b, const unsigned char *p, size_t len, int64_t numel);
/* Moves the builder's values into t (shape from the nesting); the builder is freed. */
kiln_status tj_finish(tj_builder *b, kiln_tj_tensor *t);
void tj_builder_free(tj_builder *b);
/* Formats b's path at the given depth into buf. */
const char *tj_path(const tj_builder *b, int depth, char *buf, size_t cap);

#define TJ_NAME "%.64s" /* user-given names in messages, cut */

/* ---- request-level helpers shared by the TF and v2 parsers (tensor_json.c) ---- */

typedef struct {
    const kiln_tj_schema *schema;
    const char *signature; /* TF signature_name, for the schema */
    kiln_sbuf key;         /* the current object key */
    tj_builder b[KILN_TJ_MAX_INPUTS];
    int nb;
    /* v2: the binary tensor data after the JSON (has_bin: the request said where it starts) */
    const unsigned char *bin;
    size_t bin_len, bin_off;
    int has_bin;
} tj_parse_ctx;

/* The key in k is exactly s. */
int tj_key_is(const kiln_sbuf *k, const char *s);
/* Reads "key": into key (keys are names: NUL bytes refused). */
kiln_status tj_read_key(js_cur *c, kiln_sbuf *key);
/* A string value as a malloc'd C string; what names it in messages. */
kiln_status tj_read_cstring(js_cur *c, const char *what, char **out);
/* Whether the value at the cursor is exactly {"b64": <string>} (the cursor does not move). */
int tj_is_b64_object(const js_cur *c);
/* A new builder for input `name`, its type asked of the schema (decl: v2's datatype, or NULL);
 * where prefixes refusals. */
kiln_status tj_add_builder(tj_parse_ctx *x, const char *name, const char *root, int named_row,
                           int base, const tj_dtype *decl, const char *where, tj_builder **out);
int tj_find_builder(const tj_parse_ctx *x, const char *name);
/* Moves every builder into out->inputs (all or nothing). */
kiln_status tj_finish_all(tj_parse_ctx *x, kiln_tj_request *out);
/* An empty context (builders past nb are left uninitialized: they are never read). */
void tj_ctx_init(tj_parse_ctx *x, const kiln_tj_schema *schema);
void tj_ctx_free(tj_parse_ctx *x);
/* Nothing but whitespace follows the top-level value. */
kiln_status tj_at_end(js_cur *c);

#endif
