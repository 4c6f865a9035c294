/* blocks.c — model.blocks (named, parameterised sub-graphs) and the built-in backbones (resnet,
 * vgg, mobilenet_v2), expanded into the flat list of layers that model.c builds.
 *
 * A block is {params: {name: default}, layers: [...]}; a use is a layer
 * `- block: {use: NAME, name: N, from: [...], <param>: <value>}`. Expanding a use:
 *   1. its parameters are the definition's defaults overridden by the use's keys (a default of
 *      null makes the parameter required; a key the block does not declare is an error);
 *   2. each layer of the definition is cloned and every scalar holding `${p}` is substituted: a
 *      scalar that is exactly "${p}" becomes a copy of the value (so a list passes as a list),
 *      text around it makes a string;
 *   3. each layer's name is scoped by the instance name ("stage2/block1" + "conv1" ->
 *      "stage2/block1/conv1", so its parameters are "stage2/block1/conv1.kernel"); unnamed
 *      layers get "<kind>_<k>" within the instance;
 *   4. from: names inside a block refer to the block's own earlier layers (scoped) and to its
 *      inputs: "input" (the first), "input_0", "input_1", ... (the use's from: list in order;
 *      without from: the single input is the layer before the use). A layer with no from: takes
 *      the previous one; the first takes all the block's inputs;
 *   5. the instance's output is its last layer; later from: names may name the instance.
 * Nested uses recurse (with a depth limit and a clear error for a block that uses itself).
 * Each expanded layer is then checked against the layer schema (kiln_config_check_layer, defaults
 * filled), so a substituted value of the wrong type is reported at the definition's file:line,
 * followed by the chain of uses ("in block 'b' used at m.yaml:30:7: model.layers[3].block").
 *
 * References between expanded layers are written "@<i>" (the output of flat layer i) when the
 * layer has no name, which model.c resolves; names never start with '@' otherwise.
 *
 * Backbones are blocks too: the .yaml files of src/model/backbones/, compiled in, define the
 * bodies (resnet18/34/50, vgg11/16) and the pieces (basic, bottleneck, inverted_residual, ...);
 * a backbone layer becomes a use of its body plus the head its options ask for (include_top,
 * pooling, classes). MobileNetV2's stage list depends on the width multiplier alpha (torchvision's
 * _make_divisible rounding), so it is written here as block uses, in the same form.
 * A backbone without a name adds no scope: its parameters are torchvision's names exactly.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/blocks.h"

#define MAX_DEPTH 32

typedef struct {
    char *local, *flat;
} alias;

typedef struct scope scope;
struct scope {
    scope *up;
    char *prefix;  /* "" or "stage2/block1" */
    char **inputs; /* flat references of the instance's inputs */
    int n_inputs;
    const kiln_cfg *params; /* map: parameter -> value (NULL at the top) */
    const char *block;      /* the block's name (NULL at the top) */
    char *use_at;           /* "m.yaml:30:7: model.layers[3].block" of the use */
    alias *names;
    int n_names;
    int n_emitted; /* layers (and uses) expanded in this scope so far */
    struct {
        char kind[40];
        int n;
    } auto_n[24];
    int n_auto;
};

typedef struct {
    kiln_flat_layers *out;
    int cap;
    const kiln_cfg *user; /* model.blocks */
    kiln_cfg *lib[8];     /* the built-in files, parsed */
    int n_lib;
    const char *stack[MAX_DEPTH];
    int depth;
    struct {
        char name[64];
        int n;
    } uses[64];
    int n_uses;
} expander;

/* ---- small helpers ---- */

static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, f);
        vsnprintf(s, (size_t)n + 1, f, ap);
        va_end(ap);
    }
    return s;
}

static const char *where(const kiln_cfg *c, char *buf, size_t cap) {
    return kiln_cfg_where(c, buf, cap);
}

/* " (in block 'b' used at m.yaml:3:7: model.layers[3].block, in block ...)" */
static void chain(const scope *s, char *buf, size_t cap) {
    buf[0] = 0;
    for (; s && s->block; s = s->up) {
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, "%s block '%s' used at %s", n ? "," : " (in", s->block,
                 s->use_at);
    }
    if (buf[0]) snprintf(buf + strlen(buf), cap - strlen(buf), ")");
}

static kiln_status fail(const scope *s, const kiln_cfg *at, const char *path, const char *f, ...) {
    char msg[1024], w[300], ch[1500];
    va_list ap;
    va_start(ap, f);
    vsnprintf(msg, sizeof msg, f, ap);
    va_end(ap);
    chain(s, ch, sizeof ch);
    return kiln_error(KILN_ERR_INVALID, "%s: %s: %s%s", where(at, w, sizeof w), path, msg, ch);
}

/* Keys of a map as "a, b, c" and the closest one to got as " (did you mean 'x'?)". */
static void keys_of(const kiln_cfg *map, const char *got, char *list, size_t cap, char *sug,
                    size_t scap) {
    list[0] = sug[0] = 0;
    int best = 99;
    for (int i = 0; map && map->type == KILN_CFG_MAP && i < map->n_items; i++) {
        const char *k = map->items[i]->key;
        snprintf(list + strlen(list), cap - strlen(list), "%s%s", i ? ", " : "", k);
        int d = got ? kiln_cfg_edit_distance(got, k) : 99;
        if (d < best && d <= ((int)strlen(got) / 3 > 2 ? (int)strlen(got) / 3 : 2))
            best = d, snprintf(sug, scap, " (did you mean '%s'?)", k);
    }
    if (!list[0]) snprintf(list, cap, "none");
}

static kiln_cfg *node(kiln_cfg_type t, const kiln_cfg *pos) {
    kiln_cfg *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->type = t;
    if (pos) c->file = pos->file, c->line = pos->line, c->column = pos->column;
    return c;
}

static int push(kiln_cfg *parent, kiln_cfg *child) {
    kiln_cfg **ni =
        child ? realloc(parent->items, (size_t)(parent->n_items + 1) * sizeof *ni) : NULL;
    if (!ni) return kiln_cfg_free(child), -1;
    parent->items = ni;
    parent->items[parent->n_items++] = child;
    return 0;
}

static kiln_cfg *scalar(const char *text, const kiln_cfg *pos) {
    kiln_cfg *c = node(KILN_CFG_SCALAR, pos);
    if (c && !(c->text = strdup(text))) kiln_cfg_free(c), c = NULL;
    return c;
}

/* Sets map[key] to v (replacing it); v is taken. */
static int set_child(kiln_cfg *map, const char *key, kiln_cfg *v) {
    if (!v) return -1;
    free(v->key);
    if (!(v->key = strdup(key))) return kiln_cfg_free(v), -1;
    for (int i = 0; i < map->n_items; i++)
        if (!strcmp(map->items[i]->key, key)) {
            kiln_cfg_free(map->items[i]);
            map->items[i] = v;
            return 0;
        }
    return push(map, v);
}

static int is_null(const kiln_cfg *c) {
    return c->type == KILN_CFG_SCALAR && !c->quoted && !c->text[0];
}

/* A layer item as {kind: {args}}: bare names and "kind:" with nothing get an empty map. */
static int normalize(kiln_cfg *c) {
    if (c->type == KILN_CFG_SCALAR && c->text[0]) {
        kiln_cfg *args = node(KILN_CFG_MAP, c);
        if (!args) return -1;
        args->key = c->text, c->text = NULL;
        c->type = KILN_CFG_MAP;
        if (push(c, args)) return -1;
    }
    if (c->type != KILN_CFG_MAP || c->n_items != 1) return 1;
    if (is_null(c->items[0])) c->items[0]->type = KILN_CFG_MAP;
    return c->items[0]->type == KILN_CFG_MAP ? 0 : 1;
}

/* ---- names ---- */

static int add_alias(scope *s, const char *local, const char *flat) {
    alias *na = realloc(s->names, (size_t)(s->n_names + 1) * sizeof *na);
    if (!na) return -1;
    s->names = na;
    na[s->n_names].local = strdup(local), na[s->n_names].flat = strdup(flat);
    if (!na[s->n_names].local || !na[s->n_names].flat)
        return free(na[s->n_names].local), free(na[s->n_names].flat), -1;
    s->n_names++;
    return 0;
}

static const char *find_alias(const scope *s, const char *local) {
    for (int i = s->n_names - 1; i >= 0; i--)
        if (!strcmp(s->names[i].local, local)) return s->names[i].flat;
    return NULL;
}

/* The flat reference of output item i: its name, or "@i". */
static char *ref_of(expander *e, int i) {
    const kiln_cfg *args = e->out->layers->items[i]->items[0];
    const char *name = kiln_cfg_str(args, "name", NULL);
    return name ? strdup(name) : fmt("@%d", i);
}

/* What a from: name means in scope s: a flat reference (malloc'ed), or NULL with an error. */
static char *resolve_name(expander *e, scope *s, const kiln_cfg *at, const char *path,
                          const char *want) {
    (void)e;
    const char *a = find_alias(s, want);
    if (a) return strdup(a);
    if (!s->block) return strdup(want); /* the top level: model.c checks the names */
    if (!strcmp(want, "input")) return strdup(s->inputs[0]);
    if (!strncmp(want, "input_", 6) && want[6]) {
        char *end;
        long k = strtol(want + 6, &end, 10);
        if (!*end && k >= 0 && k < s->n_inputs) return strdup(s->inputs[k]);
        fail(s, at, path, "'%s': block '%s' has %d input%s (input, input_0 .. input_%d)", want,
             s->block, s->n_inputs, s->n_inputs == 1 ? "" : "s", s->n_inputs - 1);
        return NULL;
    }
    char known[600] = "input";
    for (int i = 0; i < s->n_names; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), ", %s", s->names[i].local);
    fail(s, at, path,
         "unknown layer '%s' in block '%s' (a layer of a block may take the block's inputs and "
         "its own earlier layers: %s)",
         want, s->block, known);
    return NULL;
}

/* Rewrites args.from in place (names -> flat references). */
static kiln_status rewrite_from(expander *e, scope *s, kiln_cfg *args, const char *path) {
    kiln_cfg *from = kiln_cfg_child(args, "from");
    if (!from) return KILN_OK;
    char p[700];
    snprintf(p, sizeof p, "%s.from", path);
    int n = from->type == KILN_CFG_SEQ ? from->n_items : 1;
    for (int k = 0; k < n; k++) {
        kiln_cfg *c = from->type == KILN_CFG_SEQ ? from->items[k] : from;
        if (c->type != KILN_CFG_SCALAR) return fail(s, c, p, "expected a layer name");
        char *r = resolve_name(e, s, c, p, c->text);
        if (!r) return KILN_ERR_INVALID;
        free(c->text);
        c->text = r;
        c->quoted = 1;
    }
    return KILN_OK;
}

/* ---- substitution ---- */

static kiln_status subst(scope *s, kiln_cfg *c, const char *path) {
    if (c->type != KILN_CFG_SCALAR) {
        for (int i = 0; i < c->n_items; i++) {
            char p[800];
            if (c->type == KILN_CFG_MAP)
                snprintf(p, sizeof p, "%s.%s", path, c->items[i]->key);
            else
                snprintf(p, sizeof p, "%s[%d]", path, i);
            kiln_status st = subst(s, c->items[i], p);
            if (st) return st;
        }
        return KILN_OK;
    }
    if (!strstr(c->text, "${")) return KILN_OK;
    char out[2048] = "";
    size_t n = 0;
    for (const char *p = c->text; *p;) {
        const char *b = strstr(p, "${");
        if (!b) {
            snprintf(out + n, sizeof out - n, "%s", p);
            n = strlen(out);
            break;
        }
        const char *end = strchr(b, '}');
        char name[128];
        if (!end || end - b - 2 < 1 || end - b - 2 >= (long)sizeof name)
            return fail(s, c, path, "'%s': expected ${name} with a parameter name", c->text);
        memcpy(name, b + 2, (size_t)(end - b - 2));
        name[end - b - 2] = 0;
        const kiln_cfg *v = s->params ? kiln_cfg_child(s->params, name) : NULL;
        if (!v) {
            char list[600], sug[128];
            keys_of(s->params, name, list, sizeof list, sug, sizeof sug);
            return fail(s, c, path, "unknown block parameter '${%s}'%s (block '%s' declares: %s)",
                        name, sug, s->block ? s->block : "-", list);
        }
        if (b == c->text && !end[1]) { /* the whole scalar: take the value as it is */
            kiln_cfg *copy = kiln_cfg_clone(v);
            if (!copy) return KILN_ERR_NOMEM;
            free(c->text);
            c->text = copy->text, c->quoted = copy->quoted, c->type = copy->type;
            c->items = copy->items, c->n_items = copy->n_items;
            copy->text = NULL, copy->items = NULL, copy->n_items = 0;
            kiln_cfg_free(copy);
            return KILN_OK;
        }
        if (v->type != KILN_CFG_SCALAR)
            return fail(s, c, path,
                        "'%s': parameter '%s' is a list or map and cannot be part of a string",
                        c->text, name);
        snprintf(out + n, sizeof out - n, "%.*s%s", (int)(b - p), p, v->text);
        n = strlen(out);
        p = end + 1;
    }
    char *t = strdup(out);
    if (!t) return KILN_ERR_NOMEM;
    free(c->text);
    c->text = t;
    c->quoted = 0;
    return KILN_OK;
}

/* ---- expansion ---- */

static kiln_status expand_list(expander *e, scope *s, const kiln_cfg *layers,
                               const char *list_path);

static int auto_count(scope *s, const char *kind) {
    for (int i = 0; i < s->n_auto; i++)
        if (!strcmp(s->auto_n[i].kind, kind)) return ++s->auto_n[i].n;
    if (s->n_auto < (int)(sizeof s->auto_n / sizeof s->auto_n[0])) {
        snprintf(s->auto_n[s->n_auto].kind, sizeof s->auto_n[0].kind, "%s", kind);
        s->auto_n[s->n_auto++].n = 1;
    }
    return 1;
}

static kiln_status emit(expander *e, scope *s, kiln_cfg *c, const char *path) {
    kiln_cfg *args = c->items[0];
    const char *kind = args->key;
    kiln_cfg *nm = kiln_cfg_child(args, "name");
    char *local = NULL;
    if (nm && nm->type != KILN_CFG_SCALAR)
        return kiln_cfg_free(c), fail(s, nm, path, "name: expected a string");
    if (s->block) {
        local = nm ? strdup(nm->text) : fmt("%s_%d", kind, auto_count(s, kind));
        char *flat = local ? (s->prefix[0] ? fmt("%s/%s", s->prefix, local) : strdup(local)) : NULL;
        if (!flat || set_child(args, "name", scalar(flat, nm ? nm : args))) {
            free(flat), free(local), kiln_cfg_free(c);
            return KILN_ERR_NOMEM;
        }
        kiln_cfg_child(args, "name")->quoted = 1;
        free(flat);
    }
    kiln_status st = rewrite_from(e, s, args, path);
    if (!st && s->block && s->n_emitted == 0 && !kiln_cfg_child(args, "from")) {
        kiln_cfg *from = node(KILN_CFG_SEQ, args);
        for (int i = 0; from && i < s->n_inputs; i++)
            if (push(from, scalar(s->inputs[i], args))) kiln_cfg_free(from), from = NULL;
        if (!from || set_child(args, "from", from)) st = KILN_ERR_NOMEM;
    }
    char ip[700]; /* the item's path: check_layer adds ".<kind>" */
    snprintf(ip, sizeof ip, "%.*s", (int)(strlen(path) - strlen(kind) - 1), path);
    if (!st && (st = kiln_config_check_layer(c, ip)) != KILN_OK && s->block) {
        char msg[1500], ch[1500];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        chain(s, ch, sizeof ch);
        kiln_error(st, "%s%s", msg, ch);
    }
    if (st) return free(local), kiln_cfg_free(c), st;
    if (e->out->n == e->cap) {
        int cap = e->cap ? 2 * e->cap : 64;
        char **np = realloc(e->out->paths, (size_t)cap * sizeof *np);
        if (!np) return free(local), kiln_cfg_free(c), KILN_ERR_NOMEM;
        e->out->paths = np, e->cap = cap;
    }
    char ch[1500];
    chain(s, ch, sizeof ch);
    e->out->paths[e->out->n] = fmt("%s%s", path, ch);
    if (!e->out->paths[e->out->n] || push(e->out->layers, c)) return free(local), KILN_ERR_NOMEM;
    e->out->n++;
    s->n_emitted++;
    char *ref = ref_of(e, e->out->n - 1);
    int bad = !ref || (local && add_alias(s, local, ref));
    free(ref), free(local);
    return bad ? KILN_ERR_NOMEM : KILN_OK;
}

/* The definition of block `name`: model.blocks first, then the built-in files. */
static const kiln_cfg *find_block(expander *e, const char *name, char *path, size_t cap) {
    const kiln_cfg *d = e->user ? kiln_cfg_child(e->user, name) : NULL;
    if (d) {
        snprintf(path, cap, "model.blocks.%s", name);
        return d;
    }
    for (int i = 0; i < e->n_lib; i++)
        if ((d = kiln_cfg_child(kiln_cfg_child(e->lib[i], "blocks"), name))) {
            snprintf(path, cap, "blocks.%s", name);
            return d;
        }
    return NULL;
}

static void known_blocks(expander *e, const char *got, char *list, size_t cap, char *sug,
                         size_t scap) {
    char a[800], b[1600], s1[128], s2[128];
    keys_of(e->user, got, a, sizeof a, s1, sizeof s1);
    b[0] = 0;
    s2[0] = 0;
    for (int i = 0; i < e->n_lib; i++) {
        char part[800], sp[128];
        keys_of(kiln_cfg_child(e->lib[i], "blocks"), got, part, sizeof part, sp, sizeof sp);
        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s", i ? ", " : "", part);
        if (!s2[0]) snprintf(s2, sizeof s2, "%s", sp);
    }
    snprintf(list, cap, "model.blocks: %s; built in: %s", a, b);
    snprintf(sug, scap, "%s", s1[0] ? s1 : s2);
}

/* int(v + d / 2) // d * d, at least d and not below 90% of v (torchvision's _make_divisible). */
static int make_divisible(double v, int d) {
    int n = (int)(v + d / 2.0) / d * d;
    if (n < d) n = d;
    if (n < 0.9 * v) n += d;
    return n;
}

/* The head a backbone's options ask for, as YAML layers appended to its body. */
static char *backbone_text(const char *kind, const kiln_cfg *args, char *body, size_t cap) {
    int top = kiln_cfg_bool(args, "include_top", 1),
        classes = (int)kiln_cfg_int(args, "classes", 1000);
    const char *pool = kiln_cfg_str(args, "pooling", "none");
    char head[1024] = "";
    if (!strcmp(kind, "mobilenet_v2")) {
        double alpha = kiln_cfg_num(args, "alpha", 1.0);
        static const int T[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                    {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
        int in = make_divisible(32 * alpha, 8),
            last = make_divisible(1280 * (alpha > 1 ? alpha : 1.0), 8), f = 1;
        size_t n = (size_t)snprintf(
            body, cap,
            "layers:\n  - block: {use: conv_bn_relu6, name: features/0, filters: %d, "
            "kernel: 3, strides: 2, pad: 1}\n",
            in);
        for (int r = 0; r < 7; r++) {
            int out = make_divisible(T[r][1] * alpha, 8);
            for (int i = 0; i < T[r][2]; i++, f++) {
                int stride = i ? 1 : T[r][3], hidden = in * T[r][0], res = stride == 1 && in == out;
                n += (size_t)snprintf(
                    body + n, n < cap ? cap - n : 0,
                    "  - block: {use: inverted_residual%s%s, name: features/%d, hidden: %d, "
                    "out: %d, strides: %d}\n",
                    T[r][0] == 1 ? "_t1" : "", res ? "_add" : "", f, hidden, out, stride);
                in = out;
            }
        }
        n += (size_t)snprintf(body + n, n < cap ? cap - n : 0,
                              "  - block: {use: conv_bn_relu6, name: features/%d, "
                              "filters: %d, kernel: 1, strides: 1, pad: 0}\n",
                              f, last);
        if (top)
            snprintf(head, sizeof head,
                     "  - global_avgpool2d: {name: avgpool}\n  - dropout: {name: classifier/0, "
                     "rate: %.17g}\n"
                     "  - dense: {name: classifier/1, units: %d}\n",
                     kiln_cfg_num(args, "dropout", 0.2), classes);
        if (n >= cap) return NULL;
    } else if (!strcmp(kind, "vgg")) {
        snprintf(body, cap, "layers:\n");
        if (top)
            snprintf(
                head, sizeof head,
                "  - adaptive_avgpool2d: {name: avgpool, size: 7}\n  - flatten: {name: flatten}\n"
                "  - dense: {name: classifier/0, units: 4096, activation: relu}\n"
                "  - dropout: {name: classifier/2, rate: 0.5}\n"
                "  - dense: {name: classifier/3, units: 4096, activation: relu}\n"
                "  - dropout: {name: classifier/5, rate: 0.5}\n  - dense: {name: classifier/6, "
                "units: %d}\n",
                classes);
    } else {
        snprintf(body, cap, "layers:\n");
        if (top)
            snprintf(head, sizeof head,
                     "  - global_avgpool2d: {name: avgpool}\n  - dense: {name: fc, units: %d}\n",
                     classes);
    }
    if (!top && !strcmp(pool, "avg"))
        snprintf(head, sizeof head, "  - global_avgpool2d: {name: avgpool}\n");
    if (!top && !strcmp(pool, "max"))
        snprintf(head, sizeof head, "  - global_maxpool2d: {name: global_maxpool}\n");
    if (strlen(body) + strlen(head) + 8 > cap) return NULL;
    strcat(body, head);
    if (!strcmp(body, "layers:\n")) strcat(body, "  []\n");
    return body;
}

/* A block use (kind "block") or a backbone layer (resnet, vgg, mobilenet_v2). c is taken. */
static kiln_status expand_use(expander *e, scope *s, kiln_cfg *c, const char *path) {
    kiln_cfg *args = c->items[0];
    const char *kind = args->key;
    int backbone = strcmp(kind, "block") != 0;
    char def_path[300], where_def[300], uw[300];
    const kiln_cfg *def = NULL;
    kiln_cfg *made = NULL; /* a backbone's definition, made here */
    const char *use = NULL;
    kiln_status st = KILN_OK;
    if (backbone) {
        char ip[700];
        snprintf(ip, sizeof ip, "%.*s", (int)(strlen(path) - strlen(kind) - 1), path);
        if ((st = kiln_config_check_layer(c, ip))) goto out; /* its options, defaults filled */
        char label[64], *text = malloc(16384);
        snprintf(label, sizeof label, "%s (built in)", kind);
        int bad = !text || !backbone_text(kind, args, text, 16384) ||
                  kiln_config_parse(text, label, &made);
        free(text);
        if (bad) {
            st = kiln_error(KILN_ERR_INVALID, "%s: %s: internal error making the backbone",
                            where(c, uw, sizeof uw), path);
            goto out;
        }
        if (strcmp(
                kind,
                "mobilenet_v2")) { /* resnet<depth>, vgg<depth>: the file's body, then the head */
            char bname[32];
            snprintf(bname, sizeof bname, "%s%s", kind, kiln_cfg_str(args, "depth", ""));
            const kiln_cfg *b = NULL, *head = kiln_cfg_child(made, "layers");
            for (int i = 0; i < e->n_lib && !b; i++)
                b = kiln_cfg_child(kiln_cfg_child(e->lib[i], "blocks"), bname);
            b = b ? kiln_cfg_child(b, "layers") : NULL;
            kiln_cfg *all = b ? kiln_cfg_clone(b) : NULL;
            for (int i = 0; all && head && i < head->n_items; i++)
                if (push(all, kiln_cfg_clone(head->items[i]))) kiln_cfg_free(all), all = NULL;
            if (!all || set_child(made, "layers", all)) {
                st = kiln_error(KILN_ERR_INVALID, "%s: %s: internal error: no built-in block %s",
                                where(c, uw, sizeof uw), path, bname);
                goto out;
            }
        }
        def = made, use = kind;
        snprintf(def_path, sizeof def_path, "%s", kind);
    } else {
        kiln_cfg *u = kiln_cfg_child(args, "use");
        if (!u || u->type != KILN_CFG_SCALAR || !u->text[0]) {
            st = fail(s, args, path, "a block layer needs use: <block name>");
            goto out;
        }
        use = u->text;
        if (!(def = find_block(e, use, def_path, sizeof def_path))) {
            char list[2600], sug[128];
            known_blocks(e, use, list, sizeof list, sug, sizeof sug);
            st = fail(s, u, path, "unknown block '%s'%s (%s)", use, sug, list);
            goto out;
        }
    }
    for (int i = 0; i < e->depth; i++)
        if (!strcmp(e->stack[i], use)) {
            char cyc[600] = "";
            for (int k = i; k < e->depth; k++)
                snprintf(cyc + strlen(cyc), sizeof cyc - strlen(cyc), "%s -> ", e->stack[k]);
            st = fail(s, args, path, "block '%s' uses itself (%s%s)", use, cyc, use);
            goto out;
        }
    if (e->depth == MAX_DEPTH) {
        st = fail(s, args, path, "blocks nested deeper than %d levels", MAX_DEPTH);
        goto out;
    }
    where(def, where_def, sizeof where_def);
    for (int i = 0; def->type == KILN_CFG_MAP && i < def->n_items; i++)
        if (strcmp(def->items[i]->key, "layers") && strcmp(def->items[i]->key, "params")) {
            st = kiln_error(KILN_ERR_INVALID,
                            "%s: %s: unknown key '%s' (a block has params: and layers:)",
                            where(def->items[i], uw, sizeof uw), def_path, def->items[i]->key);
            goto out;
        }
    const kiln_cfg *dl = kiln_cfg_child(def, "layers"), *dp = kiln_cfg_child(def, "params");
    if (def->type != KILN_CFG_MAP || !dl || dl->type != KILN_CFG_SEQ || dl->n_items == 0 ||
        (dp && dp->type != KILN_CFG_MAP && !is_null(dp))) {
        st = kiln_error(
            KILN_ERR_INVALID,
            "%s: %s: a block is {params: {name: default, ...}, layers: [at least one layer]}",
            where_def, def_path);
        goto out;
    }
    scope ns = {.up = s, .block = use};
    kiln_cfg *params = node(KILN_CFG_MAP, def);
    if (!params) {
        st = KILN_ERR_NOMEM;
        goto out;
    }
    /* parameters: declared defaults, overridden by the use; required ones (null) must be given */
    for (int i = 0; dp && dp->type == KILN_CFG_MAP && i < dp->n_items && !st; i++) {
        const kiln_cfg *given = kiln_cfg_child(args, dp->items[i]->key);
        if (!given && is_null(dp->items[i]))
            st = fail(s, args, path, "block '%s' needs parameter '%s' (defined at %s)", use,
                      dp->items[i]->key, where(dp->items[i], uw, sizeof uw));
        else if (push(params, kiln_cfg_clone(given ? given : dp->items[i])))
            st = KILN_ERR_NOMEM;
    }
    for (int i = 0; !backbone && i < args->n_items && !st; i++) {
        const char *k = args->items[i]->key;
        if (!strcmp(k, "use") || !strcmp(k, "name") || !strcmp(k, "from")) continue;
        if (!dp || !kiln_cfg_child(dp, k)) {
            char list[600], sug[128];
            keys_of(dp, k, list, sizeof list, sug, sizeof sug);
            st = fail(s, args->items[i], path,
                      "block '%s' has no parameter '%s'%s (its parameters: %s; defined at %s)", use,
                      k, sug, list, where_def);
        }
    }
    /* inputs: the use's from:, else the layer before it */
    kiln_cfg *from = kiln_cfg_child(args, "from");
    if (!st && from) {
        int n = from->type == KILN_CFG_SEQ ? from->n_items : 1;
        if (n < 1 || n > 64) st = fail(s, from, path, "from: expected 1 to 64 layer names");
        ns.inputs = calloc((size_t)(n > 0 ? n : 1), sizeof *ns.inputs);
        for (int k = 0; !st && k < n && ns.inputs; k++) {
            const kiln_cfg *fc = from->type == KILN_CFG_SEQ ? from->items[k] : from;
            if (fc->type != KILN_CFG_SCALAR)
                st = fail(s, fc, path, "from: expected layer names");
            else if (!(ns.inputs[k] = resolve_name(e, s, fc, path, fc->text)))
                st = KILN_ERR_INVALID;
            else
                ns.n_inputs++;
        }
        if (!ns.inputs) st = KILN_ERR_NOMEM;
    } else if (!st) {
        ns.inputs =
            calloc(s->block && s->n_emitted == 0 ? (size_t)s->n_inputs : 1, sizeof *ns.inputs);
        if (!ns.inputs)
            st = KILN_ERR_NOMEM;
        else if (s->block && s->n_emitted == 0)
            for (int k = 0; k < s->n_inputs; k++) ns.inputs[ns.n_inputs++] = strdup(s->inputs[k]);
        else
            ns.inputs[ns.n_inputs++] = e->out->n ? ref_of(e, e->out->n - 1) : strdup("input");
        for (int k = 0; !st && k < ns.n_inputs; k++)
            if (!ns.inputs[k]) st = KILN_ERR_NOMEM;
    }
    /* the instance's name and scope */
    const kiln_cfg *nm = kiln_cfg_child(args, "name");
    char *local = NULL;
    if (!st) {
        if (nm && nm->type == KILN_CFG_SCALAR && nm->text[0])
            local = strdup(nm->text);
        else if (nm)
            st = fail(s, nm, path, "name: expected a non-empty string");
        else if (!backbone) {
            int k = 0;
            for (int i = 0; i < e->n_uses && !k; i++)
                if (!strcmp(e->uses[i].name, use)) k = ++e->uses[i].n;
            if (!k && e->n_uses < 64)
                snprintf(e->uses[e->n_uses].name, 64, "%s", use), e->uses[e->n_uses++].n = k = 1;
            local = fmt("%s_%d", use, k ? k : 1);
        } else
            local = strdup("");
        if (!st && !local) st = KILN_ERR_NOMEM;
    }
    if (!st) {
        ns.prefix = s->prefix[0] && local[0] ? fmt("%s/%s", s->prefix, local)
                                             : strdup(local[0] ? local : s->prefix);
        ns.use_at = fmt("%s: %s", where(args, uw, sizeof uw), path);
        ns.params = params;
        if (!ns.prefix || !ns.use_at) st = KILN_ERR_NOMEM;
    }
    int before = e->out->n;
    if (!st) {
        e->stack[e->depth++] = use;
        char lp[400];
        snprintf(lp, sizeof lp, "%s.layers", def_path);
        st = expand_list(e, &ns, dl, lp);
        e->depth--;
    }
    if (!st && e->out->n > before) {
        char *ref = ref_of(e, e->out->n - 1);
        if (!ref || (local[0] && add_alias(s, local, ref))) st = KILN_ERR_NOMEM;
        free(ref);
        s->n_emitted++;
    }
    free(local);
    for (int k = 0; k < ns.n_inputs; k++) free(ns.inputs[k]);
    free(ns.inputs);
    for (int k = 0; k < ns.n_names; k++) free(ns.names[k].local), free(ns.names[k].flat);
    free(ns.names);
    free(ns.prefix), free(ns.use_at);
    kiln_cfg_free(params);
out:
    kiln_cfg_free(made);
    kiln_cfg_free(c);
    return st;
}

static int is_backbone(const char *k) {
    return !strcmp(k, "resnet") || !strcmp(k, "vgg") || !strcmp(k, "mobilenet_v2");
}

static kiln_status expand_list(expander *e, scope *s, const kiln_cfg *layers,
                               const char *list_path) {
    for (int i = 0; i < layers->n_items; i++) {
        char path[600], w[300];
        kiln_cfg *c = kiln_cfg_clone(layers->items[i]);
        if (!c) return KILN_ERR_NOMEM;
        int bad = normalize(c);
        if (bad) {
            kiln_cfg_free(c);
            if (bad < 0) return KILN_ERR_NOMEM;
            return fail(s, layers->items[i], list_path,
                        "item %d: expected a layer: a name or a map with one key "
                        "(dense: {...})",
                        i);
        }
        snprintf(path, sizeof path, "%s[%d].%s", list_path, i, c->items[0]->key);
        (void)w;
        kiln_status st = s->block ? subst(s, c->items[0], path) : KILN_OK;
        if (st) return kiln_cfg_free(c), st;
        const char *kind = c->items[0]->key;
        st = !strcmp(kind, "block") || is_backbone(kind) ? expand_use(e, s, c, path)
                                                         : emit(e, s, c, path);
        if (st) return st;
    }
    return KILN_OK;
}

void kiln_blocks_free(kiln_flat_layers *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->paths[i]);
    free(f->paths);
    kiln_cfg_free(f->layers);
    memset(f, 0, sizeof *f);
}

kiln_status kiln_blocks_expand(const kiln_cfg *cfg, kiln_flat_layers *out) {
    memset(out, 0, sizeof *out);
    expander e = {.out = out, .user = kiln_cfg_at(cfg, "model.blocks")};
    const kiln_cfg *layers = kiln_cfg_at(cfg, "model.layers");
    char w[300];
    if (e.user && is_null(e.user)) e.user = NULL;
    if (e.user && e.user->type != KILN_CFG_MAP)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: model.blocks: expected a map of block name -> {params, layers}",
                          where(e.user, w, sizeof w));
    if (!(out->layers = node(KILN_CFG_SEQ, layers))) return KILN_ERR_NOMEM;
    if (!layers || layers->type != KILN_CFG_SEQ) return KILN_OK; /* model.c reports it */
    kiln_status st = KILN_OK;
    int uses = 0; /* parse the built-in files only when something may need them */
    for (int i = 0; i < layers->n_items; i++) {
        const kiln_cfg *it = layers->items[i];
        const char *k = it->type == KILN_CFG_MAP && it->n_items == 1 ? it->items[0]->key : "";
        uses |= !strcmp(k, "block") || is_backbone(k);
    }
    for (int i = 0; uses && i < kiln_backbone_n_files && i < 8 && !st; i++) {
        char label[128];
        snprintf(label, sizeof label, "src/model/backbones/%s", kiln_backbone_files[i]);
        st = kiln_config_parse(kiln_backbone_texts[i], label, &e.lib[e.n_lib]);
        if (!st) e.n_lib++;
    }
    scope top = {.prefix = ""};
    if (!st) st = expand_list(&e, &top, layers, "model.layers");
    for (int k = 0; k < top.n_names; k++) free(top.names[k].local), free(top.names[k].flat);
    free(top.names);
    for (int i = 0; i < e.n_lib; i++) kiln_cfg_free(e.lib[i]);
    if (st) kiln_blocks_free(out);
    return st;
}
