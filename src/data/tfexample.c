/* tfexample.c — tf.train.Example parsing and building (see kiln/tfexample.h).
 *
 * Parsing: protobuf-c unpacks into memory it asks of a ProtobufCAllocator; ours is an arena of
 * blocks that only grows within one parse and is reset (not freed) before the next, so steady
 * state is one block and no malloc per record. The arena refuses to grow past its limit (the
 * larger of KILN_EXAMPLE_MAX_ARENA and 48 bytes per input byte), which makes protobuf-c fail
 * cleanly instead of allocating what a hostile length claims. After a parse, `order` lists the
 * map entries by key (ties: the last one, as protobuf keeps for maps).
 *
 * Building: values go into one byte store (keys, numbers, bytes: offsets, so it can grow);
 * serialize sorts the entries by key, points protobuf-c's structs at the store and packs.
 */
#include "kiln/tfexample.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/example.pb-c.h"

static const char *const KIND_NAMES[] = {"none", "bytes", "float", "int64"};

const char *kiln_feat_kind_name(kiln_feat_kind k) {
    return (unsigned)k < 4 ? KIND_NAMES[k] : "?";
}

/* ---- the arena ---- */

typedef struct block {
    struct block *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
} block;

struct kiln_example {
    block *blocks; /* the newest first */
    size_t total;  /* bytes of all blocks */
    size_t limit;
    ProtobufCAllocator alloc;
    Tensorflow__Example *msg;
    int *order; /* [n] indexes into msg->features->feature, by key, duplicates dropped */
    int n, cap;
};

static void *arena_alloc(void *ctx, size_t size) {
    kiln_example *e = ctx;
    size = (size + 15) & ~(size_t)15;
    if (!size) size = 16;
    block *b = e->blocks;
    if (b && b->cap - b->used >= size) {
        void *p = b->data + b->used;
        b->used += size;
        return p;
    }
    size_t cap = b ? b->cap * 2 : (size_t)64 << 10;
    if (cap < size) cap = size;
    if (e->total + cap > e->limit) {
        if (e->total + size > e->limit) return NULL;
        cap = size;
    }
    block *nb = malloc(sizeof *nb + cap);
    if (!nb) return NULL;
    nb->next = b, nb->cap = cap, nb->used = size;
    e->blocks = nb, e->total += cap;
    return nb->data;
}

static void arena_free(void *ctx, void *p) {
    (void)ctx, (void)p; /* freed all at once */
}

/* Empties the arena, keeping one block as large as all of them were. */
static void arena_reset(kiln_example *e) {
    if (e->blocks && e->blocks->next) {
        size_t total = e->total;
        for (block *b = e->blocks, *nx; b; b = nx) nx = b->next, free(b);
        e->blocks = NULL, e->total = 0;
        block *nb = malloc(sizeof *nb + total);
        if (nb) nb->next = NULL, nb->cap = total, nb->used = 0, e->blocks = nb, e->total = total;
    } else if (e->blocks) {
        e->blocks->used = 0;
    }
}

kiln_status kiln_example_new(kiln_example **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return kiln_error(KILN_ERR_NOMEM, "tf.train.Example: out of memory");
    (*out)->alloc = (ProtobufCAllocator){arena_alloc, arena_free, *out};
    return KILN_OK;
}

void kiln_example_free(kiln_example *e) {
    if (!e) return;
    for (block *b = e->blocks, *nx; b; b = nx) nx = b->next, free(b);
    free(e->order);
    free(e);
}

/* ---- parsing ---- */

static const char *entry_key(const Tensorflow__Example *m, int i) {
    const char *k = m->features->feature[i]->key;
    return k ? k : "";
}

/* By key, then by position (so the last of equal keys sorts last). */
static int entry_cmp(const void *a, const void *b, void *ctx) {
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(entry_key(ctx, i), entry_key(ctx, j));
    return c ? c : (i > j) - (i < j);
}

/* The key of entry order[i]. */
static const char *key_at(const kiln_example *e, int i) {
    return entry_key(e->msg, e->order[i]);
}

kiln_status kiln_example_parse(kiln_example *e, const void *data, size_t len) {
    e->msg = NULL, e->n = 0;
    arena_reset(e);
    e->limit = len > KILN_EXAMPLE_MAX_ARENA / 48 ? len * 48 : KILN_EXAMPLE_MAX_ARENA;
    Tensorflow__Example *m = tensorflow__example__unpack(&e->alloc, len, data);
    if (!m)
        return kiln_error(KILN_ERR_FORMAT, "not a tf.train.Example (malformed protocol buffer)");
    size_t n = m->features ? m->features->n_feature : 0;
    if (n > (size_t)e->cap) {
        int *o = realloc(e->order, n * sizeof *o);
        if (!o) return kiln_error(KILN_ERR_NOMEM, "tf.train.Example: out of memory");
        e->order = o, e->cap = (int)n;
    }
    for (size_t i = 0; i < n; i++) e->order[i] = (int)i;
    if (n > 1) qsort_r(e->order, n, sizeof *e->order, entry_cmp, m);
    /* equal keys: keep the last of each run */
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (i + 1 == n || strcmp(entry_key(m, e->order[i]), entry_key(m, e->order[i + 1])))
            e->order[k++] = e->order[i];
    e->msg = m, e->n = k;
    return KILN_OK;
}

int kiln_example_size(const kiln_example *e) {
    return e->msg ? e->n : 0;
}

static void fill(const Tensorflow__Features__FeatureEntry *en, kiln_feature *f) {
    memset(f, 0, sizeof *f);
    f->key = en->key ? en->key : "";
    const Tensorflow__Feature *v = en->value;
    if (!v) return;
    switch (v->kind_case) {
    case TENSORFLOW__FEATURE__KIND_BYTES_LIST:
        f->kind = KILN_FEAT_BYTES;
        f->n = v->bytes_list ? v->bytes_list->n_value : 0;
        f->bytes = v->bytes_list;
        break;
    case TENSORFLOW__FEATURE__KIND_FLOAT_LIST:
        f->kind = KILN_FEAT_FLOAT;
        f->n = v->float_list ? v->float_list->n_value : 0;
        f->f = v->float_list ? v->float_list->value : NULL;
        break;
    case TENSORFLOW__FEATURE__KIND_INT64_LIST:
        f->kind = KILN_FEAT_INT64;
        f->n = v->int64_list ? v->int64_list->n_value : 0;
        f->i = v->int64_list ? v->int64_list->value : NULL;
        break;
    default:
        break;
    }
}

void kiln_example_feature(const kiln_example *e, int i, kiln_feature *f) {
    fill(e->msg->features->feature[e->order[i]], f);
}

int kiln_example_find(const kiln_example *e, const char *key, kiln_feature *f) {
    int lo = 0, hi = kiln_example_size(e);
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(key_at(e, mid), key);
        if (c == 0) {
            fill(e->msg->features->feature[e->order[mid]], f);
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

const uint8_t *kiln_feature_bytes(const kiln_feature *f, size_t i, size_t *len) {
    const Tensorflow__BytesList *b = f->bytes;
    if (!b || i >= b->n_value) {
        *len = 0;
        return NULL;
    }
    *len = b->value[i].len;
    return b->value[i].data ? b->value[i].data : (const uint8_t *)"";
}

/* ---- building ---- */

typedef struct {
    size_t key; /* offset of the NUL-terminated key in store */
    kiln_feat_kind kind;
    size_t off, n; /* values at store + off: n floats, n int64, or n bytes (one value) */
} bentry;

struct kiln_example_builder {
    unsigned char *store;
    size_t used, cap;
    bentry *e;
    int n, ecap;
    /* serialize's scratch */
    Tensorflow__Features__FeatureEntry *fe, **fep;
    Tensorflow__Feature *ft;
    Tensorflow__BytesList *bl;
    Tensorflow__FloatList *fl;
    Tensorflow__Int64List *il;
    ProtobufCBinaryData *bd;
    int scap;
    int *ord;
    uint8_t *out;
    size_t ocap;
};

kiln_status kiln_example_builder_new(kiln_example_builder **out) {
    *out = calloc(1, sizeof **out);
    return *out ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "tf.train.Example: out of memory");
}

void kiln_example_builder_free(kiln_example_builder *b) {
    if (!b) return;
    free(b->store), free(b->e), free(b->fe), free(b->fep), free(b->ft), free(b->bl);
    free(b->fl), free(b->il), free(b->bd), free(b->ord), free(b->out);
    free(b);
}

void kiln_example_builder_reset(kiln_example_builder *b) {
    b->used = 0, b->n = 0;
}

/* Copies n bytes (aligned to 8) into the store; *off gets where. */
static int put(kiln_example_builder *b, const void *p, size_t n, size_t *off) {
    size_t at = (b->used + 7) & ~(size_t)7;
    if (at + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < at + n + 1) c *= 2;
        unsigned char *s = realloc(b->store, c);
        if (!s) return -1;
        b->store = s, b->cap = c;
    }
    if (n) memcpy(b->store + at, p, n);
    b->used = at + n;
    *off = at;
    return 0;
}

static kiln_status add(kiln_example_builder *b, const char *key, kiln_feat_kind kind, const void *v,
                       size_t n, size_t bytes) {
    int slot = b->n;
    for (int i = 0; i < b->n; i++)
        if (!strcmp((const char *)b->store + b->e[i].key, key)) slot = i;
    if (slot == b->n && b->n == b->ecap) {
        int c = b->ecap ? b->ecap * 2 : 16;
        bentry *e = realloc(b->e, (size_t)c * sizeof *e);
        if (!e) return kiln_error(KILN_ERR_NOMEM, "tf.train.Example: out of memory");
        b->e = e, b->ecap = c;
    }
    bentry be = {0, kind, 0, n};
    if (put(b, key, strlen(key) + 1, &be.key) || put(b, v, bytes, &be.off))
        return kiln_error(KILN_ERR_NOMEM, "tf.train.Example: out of memory");
    b->e[slot] = be;
    if (slot == b->n) b->n++;
    return KILN_OK;
}

kiln_status kiln_example_add_bytes(kiln_example_builder *b, const char *key, const void *data,
                                   size_t len) {
    return add(b, key, KILN_FEAT_BYTES, data, len, len);
}
kiln_status kiln_example_add_int64(kiln_example_builder *b, const char *key, const int64_t *v,
                                   size_t n) {
    return add(b, key, KILN_FEAT_INT64, v, n, n * sizeof *v);
}
kiln_status kiln_example_add_float(kiln_example_builder *b, const char *key, const float *v,
                                   size_t n) {
    return add(b, key, KILN_FEAT_FLOAT, v, n, n * sizeof *v);
}

static int bentry_cmp(const void *x, const void *y, void *ctx) {
    const kiln_example_builder *b = ctx;
    return strcmp((const char *)b->store + b->e[*(const int *)x].key,
                  (const char *)b->store + b->e[*(const int *)y].key);
}

/* Reallocates *p to n elements of size sz; 0 on success (*p unchanged on failure). */
static int grow(void *p, size_t n, size_t sz) {
    void *q = realloc(*(void **)p, n * sz);
    if (!q) return -1;
    *(void **)p = q;
    return 0;
}
#define GROW(p, n) (grow(&(p), (size_t)(n), sizeof *(p)) == 0)

kiln_status kiln_example_serialize(kiln_example_builder *b, const void **data, size_t *len) {
    int n = b->n;
    if (n > b->scap) {
        int c = n;
        if (!GROW(b->fe, c) || !GROW(b->fep, c) || !GROW(b->ft, c) || !GROW(b->bl, c) ||
            !GROW(b->fl, c) || !GROW(b->il, c) || !GROW(b->bd, c) || !GROW(b->ord, c))
            return kiln_error(KILN_ERR_NOMEM, "tf.train.Example: out of memory");
        b->scap = c;
    }
    /* keys in byte order (add() keeps them distinct) */
    for (int i = 0; i < n; i++) b->ord[i] = i;
    if (n > 1) qsort_r(b->ord, (size_t)n, sizeof *b->ord, bentry_cmp, b);
    for (int k = 0; k < n; k++) {
        const bentry *be = &b->e[b->ord[k]];
        Tensorflow__Feature *ft = &b->ft[k];
        tensorflow__feature__init(ft);
        void *vals = b->store + be->off;
        if (be->kind == KILN_FEAT_BYTES) {
            tensorflow__bytes_list__init(&b->bl[k]);
            b->bd[k] = (ProtobufCBinaryData){be->n, vals};
            b->bl[k].n_value = 1, b->bl[k].value = &b->bd[k];
            ft->kind_case = TENSORFLOW__FEATURE__KIND_BYTES_LIST, ft->bytes_list = &b->bl[k];
        } else if (be->kind == KILN_FEAT_FLOAT) {
            tensorflow__float_list__init(&b->fl[k]);
            b->fl[k].n_value = be->n, b->fl[k].value = vals;
            ft->kind_case = TENSORFLOW__FEATURE__KIND_FLOAT_LIST, ft->float_list = &b->fl[k];
        } else {
            tensorflow__int64_list__init(&b->il[k]);
            b->il[k].n_value = be->n, b->il[k].value = vals;
            ft->kind_case = TENSORFLOW__FEATURE__KIND_INT64_LIST, ft->int64_list = &b->il[k];
        }
        tensorflow__features__feature_entry__init(&b->fe[k]);
        b->fe[k].key = (char *)b->store + be->key, b->fe[k].value = ft;
        b->fep[k] = &b->fe[k];
    }
    Tensorflow__Features fs;
    tensorflow__features__init(&fs);
    fs.n_feature = (size_t)n, fs.feature = b->fep;
    Tensorflow__Example ex;
    tensorflow__example__init(&ex);
    ex.features = &fs;
    size_t need = tensorflow__example__get_packed_size(&ex);
    if (need > b->ocap) {
        uint8_t *o = realloc(b->out, need ? need : 1);
        if (!o) return kiln_error(KILN_ERR_NOMEM, "tf.train.Example: out of memory");
        b->out = o, b->ocap = need;
    }
    *len = tensorflow__example__pack(&ex, b->out);
    *data = b->out;
    return KILN_OK;
}
