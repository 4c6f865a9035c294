/* onnx_import_blocks.c — the block form of an imported model: sub-graphs that repeat become
 * model.blocks (src/model/blocks.c defines the syntax) and each occurrence a block use.
 *
 * At a scope depth d, a layer's scope is the first d components of its name ("layer1/0" for
 * "layer1/0/conv1" at d = 2; a name of exactly d components is its own scope, as torch names a
 * residual Add "layer1/0"). A group is the run of consecutive layers sharing a scope. It can be
 * a block instance when:
 *   - it has two layers or more, and its scope occurs in no other run (an instance expands into
 *     consecutive layers, in the flat order);
 *   - it reads exactly one layer outside it (or the model input): the block's `input`;
 *   - only its last layer is read from outside (the instance's output is its last layer);
 *   - a layer named exactly the scope has no parameters (inside the block it is named after its
 *     kind, e.g. `add`; its parameters' names would change otherwise), and no layer's local name
 *     is `input` or `input_N` (those name the block's inputs inside it).
 * A group's signature is, layer by layer, the kind, the name within the group, the from:
 * references (within the group or `input`), the config keys in order and the parameter
 * suffixes. Groups of one signature that occurs twice or more become one block; a key whose
 * value differs between them is a block parameter (named after the key, or `<layer>_<key>` when
 * that name is taken by other values; keys with the same values in every instance share one
 * parameter; `<key>_2`, ... when the layer's name does not start with a letter), written
 * `"${p}"` in the definition and given at every use. Every other layer is
 * written flat, as in the flat form.
 *
 * Invariant: expanding the block form gives the flat form's layers in the same order with the
 * same kinds, keys and values, and the same names except a group's layer named exactly its scope
 * (which has no parameters): so the parameter names, and the model, are the flat form's. The
 * instance's name is the scope; later layers read its output as `from: <scope>`.
 *
 * The depth: every depth is rendered; among those whose text is shorter than the flat form's,
 * the one whose instances cover the most layers wins (then the shorter text), so MobileNetV2's
 * inverted residuals keep their Add inside (features/3, not features/3/conv). Nothing repeats, or
 * nothing gets shorter: the flat form.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/onnx_import_internal.h"

#define MAX_COMP 16
#define NAME_CAP 128
#define MAX_PARAMS 64

typedef struct {
    int first, n;
    char scope[NAME_CAP];
    int src;    /* the one outside layer it reads (-1: the model input) */
    int ok;     /* can be an instance */
    int block;  /* its block, -1: written flat */
    char *sig;  /* signature (ok groups) */
} grp;

typedef struct {
    int rep; /* the first group of this block */
    int uses;
    char name[32];
    int np;
    char pname[MAX_PARAMS][64];
    int pj[MAX_PARAMS], pk[MAX_PARAMS]; /* where each parameter was first lifted */
    int *pidx;                          /* [member * OX_MAXKV + kv]: parameter, -1: literal */
} blk;

typedef struct {
    const kiln_onnx_model *m;
    int *gof;     /* layer -> group, -1 */
    char **local; /* layer -> its name inside its group (groups that are ok) */
    grp *g;
    int ng;
    blk *b;
    int nb;
} plan;

static int n_comp(const char *s) {
    int n = 0;
    for (const char *p = s; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        n++;
        p += strcspn(p, "/");
    }
    return n;
}

/* The first d components of name, or 0 when it has fewer. */
static int scope_of(const char *name, int d, char *out, size_t cap) {
    if (n_comp(name) < d) return 0;
    const char *p = name;
    for (int k = 0; k < d; k++) {
        while (*p == '/') p++;
        p += strcspn(p, "/");
    }
    if ((size_t)(p - name) >= cap) return 0;
    memcpy(out, name, (size_t)(p - name));
    out[p - name] = 0;
    return 1;
}

static void plan_free(plan *p) {
    if (p->local)
        for (int i = 0; i < p->m->nl; i++) free(p->local[i]);
    for (int i = 0; i < p->ng; i++) free(p->g[i].sig);
    for (int i = 0; i < p->nb; i++) free(p->b[i].pidx);
    free(p->local), free(p->gof), free(p->g), free(p->b);
    memset(p, 0, sizeof *p);
}

static int in_group(const plan *p, int gi, int li) {
    return li >= p->g[gi].first && li < p->g[gi].first + p->g[gi].n;
}

/* Checks group gi and names its layers; 0 ok, 1 not an instance, -1 out of memory. */
static int check_group(plan *p, int gi) {
    const kiln_onnx_model *m = p->m;
    grp *G = &p->g[gi];
    if (G->n < 2) return 1;
    for (int k = 0; k < p->ng; k++)
        if (k != gi && !strcmp(p->g[k].scope, G->scope)) return 1;
    G->src = -2;
    size_t sl = strlen(G->scope);
    for (int i = G->first; i < G->first + G->n; i++) {
        const ox_layer *L = &m->layers[i];
        if (L->nfrom < 1) return 1;
        for (int k = 0; k < L->nfrom; k++) {
            int f = L->from[k];
            if (in_group(p, gi, f)) continue;
            if (G->src != -2 && G->src != f) return 1; /* a second input */
            G->src = f;
        }
        if (!strcmp(L->name, G->scope)) {
            if (L->nw) return 1;
            continue;
        }
        const char *loc = L->name + sl + 1;
        if (!strcmp(loc, "input") || !strncmp(loc, "input_", 6)) return 1;
        if (!(p->local[i] = strdup(loc))) return -1;
    }
    if (G->src == -2) return 1;
    /* only the last layer is read from outside */
    for (int i = 0; i < m->nl; i++) {
        if (in_group(p, gi, i)) continue;
        for (int k = 0; k < m->layers[i].nfrom; k++) {
            int f = m->layers[i].from[k];
            if (in_group(p, gi, f) && f != G->first + G->n - 1) return 1;
        }
    }
    /* the layer named as the scope: after its kind, unique in the group */
    for (int i = G->first; i < G->first + G->n; i++) {
        if (p->local[i]) continue;
        char nm[64];
        snprintf(nm, sizeof nm, "%s", m->layers[i].kind);
        for (int k = 2;; k++) {
            int taken = !strcmp(nm, "input") || !strncmp(nm, "input_", 6);
            for (int j = G->first; j < G->first + G->n && !taken; j++)
                taken = p->local[j] && !strcmp(p->local[j], nm);
            if (!taken) break;
            snprintf(nm, sizeof nm, "%s_%d", m->layers[i].kind, k);
        }
        if (!(p->local[i] = strdup(nm))) return -1;
    }
    return 0;
}

static char *signature(const plan *p, int gi) {
    const grp *G = &p->g[gi];
    ox_buf b = {0};
    for (int i = G->first; i < G->first + G->n; i++) {
        const ox_layer *L = &p->m->layers[i];
        ox_put(&b, "%s %s <", L->kind, p->local[i]);
        for (int k = 0; k < L->nfrom; k++)
            ox_put(&b, " %d", in_group(p, gi, L->from[k]) ? L->from[k] - G->first : -1);
        ox_put(&b, " > {");
        for (int k = 0; k < L->nkv; k++) ox_put(&b, " %s", L->kv[k].key);
        ox_put(&b, " } (");
        for (int k = 0; k < L->nw; k++) ox_put(&b, " %s", L->w[k].suffix);
        ox_put(&b, " );");
    }
    if (b.oom) free(b.s), b.s = NULL;
    return b.s;
}

static const char *kv_text(const plan *p, int gi, int j, int k) {
    return p->m->layers[p->g[gi].first + j].kv[k].text;
}

/* Whether (j1, k1) and (j2, k2) have equal values in every instance of block bi. */
static int same_values(const plan *p, int bi, int j1, int k1, int j2, int k2) {
    for (int gi = 0; gi < p->ng; gi++)
        if (p->g[gi].block == bi && strcmp(kv_text(p, gi, j1, k1), kv_text(p, gi, j2, k2)))
            return 0;
    return 1;
}

static int param_named(const blk *B, const char *nm) {
    for (int q = 0; q < B->np; q++)
        if (!strcmp(B->pname[q], nm)) return q;
    return -1;
}

/* The block parameters of block bi: the keys whose values differ between its instances. */
static int lift(plan *p, int bi) {
    blk *B = &p->b[bi];
    const grp *R = &p->g[B->rep];
    if (!(B->pidx = malloc((size_t)R->n * OX_MAXKV * sizeof *B->pidx))) return -1;
    for (int j = 0; j < R->n; j++) {
        const ox_layer *L = &p->m->layers[R->first + j];
        for (int k = 0; k < OX_MAXKV; k++) B->pidx[j * OX_MAXKV + k] = -1;
        for (int k = 0; k < L->nkv; k++) {
            int differs = 0;
            for (int gi = 0; gi < p->ng && !differs; gi++)
                differs = p->g[gi].block == bi &&
                          strcmp(kv_text(p, gi, j, k), kv_text(p, B->rep, j, k));
            if (!differs) continue;
            char nm[64], base[48];
            snprintf(base, sizeof base, "%s", L->kv[k].key);
            int q = param_named(B, base);
            if (q >= 0 && same_values(p, bi, j, k, B->pj[q], B->pk[q])) {
                B->pidx[j * OX_MAXKV + k] = q;
                continue;
            }
            int reserved = !strcmp(base, "use") || !strcmp(base, "name") || !strcmp(base, "from");
            if ((q >= 0 || reserved) && isalpha((unsigned char)p->local[R->first + j][0])) {
                snprintf(base, sizeof base, "%.20s_%.24s", p->local[R->first + j], L->kv[k].key);
                for (char *s = base; *s; s++)
                    if (!isalnum((unsigned char)*s) && *s != '_') *s = '_';
                reserved = 0;
            }
            snprintf(nm, sizeof nm, "%s", base);
            for (int n = 2; (reserved || param_named(B, nm) >= 0) && n < 1000; n++)
                snprintf(nm, sizeof nm, "%.40s_%d", base, n), reserved = 0;
            if (B->np == MAX_PARAMS) return 1;
            snprintf(B->pname[B->np], sizeof B->pname[0], "%s", nm);
            B->pj[B->np] = j, B->pk[B->np] = k;
            B->pidx[j * OX_MAXKV + k] = B->np++;
        }
    }
    return 0;
}

/* The plan at depth d; -1 out of memory. */
static int plan_build(const kiln_onnx_model *m, int d, plan *p) {
    memset(p, 0, sizeof *p);
    p->m = m;
    p->gof = malloc((size_t)m->nl * sizeof *p->gof);
    p->local = calloc((size_t)m->nl, sizeof *p->local);
    p->g = calloc((size_t)m->nl, sizeof *p->g);
    p->b = calloc((size_t)m->nl, sizeof *p->b);
    if (!p->gof || !p->local || !p->g || !p->b) return -1;
    for (int i = 0; i < m->nl; i++) {
        char sc[NAME_CAP];
        p->gof[i] = -1;
        if (!scope_of(m->layers[i].name, d, sc, sizeof sc)) continue;
        if (p->ng && p->g[p->ng - 1].first + p->g[p->ng - 1].n == i &&
            !strcmp(p->g[p->ng - 1].scope, sc)) {
            p->g[p->ng - 1].n++;
        } else {
            grp *G = &p->g[p->ng++];
            G->first = i, G->n = 1, G->block = -1;
            snprintf(G->scope, sizeof G->scope, "%s", sc);
        }
        p->gof[i] = p->ng - 1;
    }
    for (int gi = 0; gi < p->ng; gi++) {
        int r = check_group(p, gi);
        if (r < 0) return -1;
        p->g[gi].ok = r == 0;
        if (p->g[gi].ok && !(p->g[gi].sig = signature(p, gi))) return -1;
    }
    /* blocks: signatures that occur twice or more, in the order of their first use */
    int nres = 0, nplain = 0;
    for (int gi = 0; gi < p->ng; gi++) {
        grp *G = &p->g[gi];
        if (!G->ok || G->block >= 0) continue;
        int uses = 1;
        for (int k = gi + 1; k < p->ng; k++)
            uses += p->g[k].ok && !strcmp(p->g[k].sig, G->sig);
        if (uses < 2) continue;
        blk *B = &p->b[p->nb];
        B->rep = gi, B->uses = uses;
        for (int k = gi; k < p->ng; k++)
            if (p->g[k].ok && !strcmp(p->g[k].sig, G->sig)) p->g[k].block = p->nb;
        /* residual: the block's input is read by two layers or more (a skip connection) */
        int reads = 0;
        for (int i = G->first; i < G->first + G->n; i++)
            for (int k = 0; k < m->layers[i].nfrom; k++)
                reads += !in_group(p, gi, m->layers[i].from[k]);
        int n = reads > 1 ? ++nres : ++nplain;
        snprintf(B->name, sizeof B->name, "%s", reads > 1 ? "residual" : "block");
        if (n > 1) snprintf(B->name + strlen(B->name), 12, "_%d", n % 100000);
        int r = lift(p, p->nb++);
        if (r < 0) return -1;
        if (r > 0) { /* too many parameters: these groups stay flat */
            for (int k = gi; k < p->ng; k++)
                if (p->g[k].block == p->nb - 1) p->g[k].block = -1, p->g[k].ok = 0;
            p->b[p->nb - 1].uses = 0;
        }
    }
    return 0;
}

/* How a top-level layer reads layer f: an instance's output by the instance's name. */
static const char *top_ref(const plan *p, int f) {
    if (f < 0) return "input";
    int gi = p->gof[f];
    return gi >= 0 && p->g[gi].block >= 0 ? p->g[gi].scope : p->m->layers[f].name;
}

static void render_block(const plan *p, int bi, ox_buf *b) {
    const blk *B = &p->b[bi];
    const grp *R = &p->g[B->rep];
    ox_put(b, "    %s:   # %d layers, %d uses\n", B->name, R->n, B->uses);
    if (B->np) {
        ox_put(b, "      params: {");
        for (int q = 0; q < B->np; q++) ox_put(b, "%s%s: null", q ? ", " : "", B->pname[q]);
        ox_put(b, "}\n");
    }
    ox_put(b, "      layers:\n");
    for (int j = 0; j < R->n; j++) {
        int i = R->first + j;
        const ox_layer *L = &p->m->layers[i];
        const char *refs[OX_MAXIN], *val[OX_MAXKV];
        char vbuf[OX_MAXKV][80];
        for (int k = 0; k < L->nfrom; k++)
            refs[k] = in_group(p, B->rep, L->from[k]) ? p->local[L->from[k]] : "input";
        int implicit = L->nfrom == 1 && (j == 0 ? !in_group(p, B->rep, L->from[0])
                                                 : L->from[0] == i - 1);
        for (int k = 0; k < L->nkv; k++) {
            int q = B->pidx[j * OX_MAXKV + k];
            val[k] = NULL;
            if (q >= 0) {
                snprintf(vbuf[k], sizeof vbuf[k], "\"${%s}\"", B->pname[q]);
                val[k] = vbuf[k];
            }
        }
        ox_put_layer(b, 8, L, p->local[i], implicit ? NULL : refs, L->nfrom, val);
    }
}

static void render_plan(const plan *p, ox_buf *b) {
    const kiln_onnx_model *m = p->m;
    int any = 0;
    for (int bi = 0; bi < p->nb; bi++) any |= p->b[bi].uses > 0;
    if (any) ox_put(b, "  blocks:\n");
    for (int bi = 0; bi < p->nb; bi++)
        if (p->b[bi].uses > 0) render_block(p, bi, b);
    ox_put(b, "  layers:\n");
    for (int i = 0; i < m->nl; i++) {
        int gi = p->gof[i];
        if (gi >= 0 && p->g[gi].block >= 0) {
            const grp *G = &p->g[gi];
            const blk *B = &p->b[G->block];
            if (i != G->first) continue;
            ox_put(b, "    - block: {use: %s, name: ", B->name);
            ox_put_name(b, G->scope);
            if (G->src != G->first - 1) {
                ox_put(b, ", from: ");
                ox_put_name(b, top_ref(p, G->src));
            }
            for (int q = 0; q < B->np; q++)
                ox_put(b, ", %s: %s", B->pname[q], kv_text(p, gi, B->pj[q], B->pk[q]));
            ox_put(b, "}\n");
            continue;
        }
        const ox_layer *L = &m->layers[i];
        const char *refs[OX_MAXIN];
        for (int k = 0; k < L->nfrom; k++) refs[k] = top_ref(p, L->from[k]);
        int chain = L->nfrom == 1 && L->from[0] == i - 1;
        ox_put_layer(b, 4, L, L->name, chain ? NULL : refs, L->nfrom, NULL);
    }
}

static int used_blocks(const plan *p) {
    int n = 0;
    for (int bi = 0; bi < p->nb; bi++) n += p->b[bi].uses > 0;
    return n;
}

static int covered(const plan *p) {
    int n = 0;
    for (int gi = 0; gi < p->ng; gi++) n += p->g[gi].block >= 0 ? p->g[gi].n : 0;
    return n;
}

int ox_blocks_render(const kiln_onnx_model *m, int depth, ox_buf *b) {
    plan p;
    if (plan_build(m, depth, &p)) return plan_free(&p), -1;
    int n = used_blocks(&p);
    if (n > 0) render_plan(&p, b);
    plan_free(&p);
    return b->oom ? -1 : n;
}

int ox_blocks_choose(const kiln_onnx_model *m) {
    int maxd = 0;
    for (int i = 0; i < m->nl; i++) {
        int n = n_comp(m->layers[i].name);
        if (n > maxd) maxd = n;
    }
    if (maxd > MAX_COMP) maxd = MAX_COMP;
    /* the flat form's length: a plan at a depth no name reaches groups nothing */
    size_t flat_len = 0, best_len = 0;
    int best = 0, best_cov = 0;
    for (int d = maxd + 1; d >= 1; d--) {
        plan p;
        ox_buf b = {0};
        if (plan_build(m, d, &p)) return plan_free(&p), -1;
        int n = used_blocks(&p), cov = covered(&p);
        if (d == maxd + 1 || n > 0) render_plan(&p, &b);
        plan_free(&p);
        if (b.oom) return free(b.s), -1;
        if (d == maxd + 1) flat_len = b.len;
        else if (n > 0 && b.len < flat_len &&
                 (cov > best_cov || (cov == best_cov && b.len < best_len)))
            best = d, best_cov = cov, best_len = b.len;
        free(b.s);
    }
    return best;
}
