/* src/tune/ — hyperparameter search: the search space (space.c), the samplers (sampler.c), the
 * pruners and importances (pruner.c), and the study runner behind `kiln tune` (study.c,
 * study_show.c). It sits above train/ and dist/ (docs/architecture.md) and drives training
 * through child processes running `kiln train`, so a trial is an ordinary run.
 *
 * space.c — the tune: section of a config into a kiln_tune_space.
 *
 *   tune:
 *     objective: {metric: val_accuracy, mode: max}   # default: train.early_stopping.monitor
 *     trials: 20
 *     time_limit: 3600          # seconds; no trial starts after it
 *     parallel: 2
 *     sampler: {tpe: {startup_trials: 10, ei_candidates: 24, gamma: 0.1, seed: 1}}  # or random
 *     pruner: {asha: {min_resource: 1, reduction_factor: 3, resource: epoch}}       # or median
 *     space:
 *       optimizer.adam.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
 *       data.batch_size: {int: [32, 256], log: true}
 *       model.layers[1].dense.units: {choice: [64, 128, 256]}
 *       optimizer: {choice: [{adam: {learning_rate: {loguniform: [1e-4, 1e-2]}}}, sgd]}
 *
 * Invariants: params are listed parents first (a conditional parameter, found inside a choice
 * option, comes right after its parent's other children); every option kept in choices is the
 * option without its nested parameters (which are set after it); every parameter was checked
 * against the config schema by applying each bound (or option) to a copy of the config.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/tune.h"

static const char *const DISTS[] = {"uniform", "loguniform", "int", "choice", NULL};

static kiln_status bad(const kiln_cfg *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kiln_status bad(const kiln_cfg *at, const char *path, const char *fmt, ...) {
    char where[300], msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(KILN_ERR_INVALID, "%s: %s: %s", kiln_cfg_where(at, where, sizeof where), path,
                      msg);
}

static int is_dist(const kiln_cfg *c) {
    if (!c || c->type != KILN_CFG_MAP) return 0;
    for (int i = 0; i < c->n_items; i++)
        for (int k = 0; DISTS[k]; k++)
            if (!strcmp(c->items[i]->key, DISTS[k])) return 1;
    return 0;
}

static kiln_status num_of(const kiln_cfg *c, const char *path, double *v) {
    if (!c || kiln_cfg_parse_num(c, v) || !isfinite(*v))
        return bad(c, path, "expected a number, got '%.60s'",
                   c && c->type == KILN_CFG_SCALAR ? c->text : "a collection");
    return KILN_OK;
}

static kiln_status add_param(kiln_tune_space *s, kiln_tune_param **out) {
    kiln_tune_param *p = realloc(s->params, (size_t)(s->n_params + 1) * sizeof *p);
    if (!p) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    s->params = p;
    *out = &p[s->n_params++];
    memset(*out, 0, sizeof **out);
    (*out)->parent = -1;
    return KILN_OK;
}

static kiln_status parse_dist(kiln_tune_space *s, const char *key, const kiln_cfg *c,
                              const char *path, int parent, int option);

/* Takes the nested parameters out of option (a clone), as children of param pi's option o. */
static kiln_status extract(kiln_tune_space *s, kiln_cfg *node, const char *key, const char *path,
                           int pi, int o) {
    if (node->type != KILN_CFG_MAP) return KILN_OK;
    for (int i = 0; i < node->n_items; i++) {
        kiln_cfg *ci = node->items[i];
        char k[600], p[700];
        snprintf(k, sizeof k, "%s.%s", key, ci->key);
        snprintf(p, sizeof p, "%s.%s", path, ci->key);
        if (is_dist(ci)) {
            kiln_status st = parse_dist(s, k, ci, p, pi, o);
            if (st) return st;
            kiln_cfg_free(ci);
            memmove(node->items + i, node->items + i + 1,
                    (size_t)(node->n_items - i - 1) * sizeof *node->items);
            node->n_items--, i--;
        } else {
            kiln_status st = extract(s, ci, k, p, pi, o);
            if (st) return st;
        }
    }
    return KILN_OK;
}

static kiln_status parse_dist(kiln_tune_space *s, const char *key, const kiln_cfg *c,
                              const char *path, int parent, int option) {
    if (!is_dist(c))
        return bad(c, path, "expected a distribution: {uniform: [lo, hi]}, {loguniform: [lo, hi]}, "
                            "{int: [lo, hi]} or {choice: [...]}");
    kiln_tune_param *p = NULL;
    kiln_status st = add_param(s, &p);
    if (st) return st;
    int pi = s->n_params - 1;
    if (!(p->key = strdup(key))) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    p->parent = parent, p->parent_option = option, p->step = 1;
    const kiln_cfg *range = NULL;
    for (int i = 0; i < c->n_items; i++) {
        const kiln_cfg *ci = c->items[i];
        char sub[700];
        snprintf(sub, sizeof sub, "%s.%s", path, ci->key);
        int k = 0;
        while (DISTS[k] && strcmp(DISTS[k], ci->key)) k++;
        if (DISTS[k]) {
            if (range)
                return bad(ci, path, "two distributions ('%s' and '%s')", range->key, ci->key);
            range = ci;
            s->params[pi].kind = (kiln_tune_kind)k;
        } else if (!strcmp(ci->key, "log") || !strcmp(ci->key, "step")) {
            /* read below, once the kind is known */
        } else {
            return bad(ci, path, "unknown key '%s' (a distribution takes log: and step: besides)",
                       ci->key);
        }
    }
    p = &s->params[pi];
    if (p->kind == KILN_TUNE_CHOICE) {
        if (range->type != KILN_CFG_SEQ || range->n_items < 1)
            return bad(range, path, "choice: expected a list of one or more options");
        if (kiln_cfg_child(c, "log") || kiln_cfg_child(c, "step"))
            return bad(c, path, "choice takes no log: or step:");
        p->choices = calloc((size_t)range->n_items, sizeof *p->choices);
        if (!p->choices) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
        p->n_choices = range->n_items;
        for (int o = 0; o < range->n_items; o++) {
            if (!(s->params[pi].choices[o] = kiln_cfg_clone(range->items[o])))
                return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
            char sub[700];
            snprintf(sub, sizeof sub, "%s.choice[%d]", path, o);
            st = extract(s, s->params[pi].choices[o], key, sub, pi, o);
            if (st) return st;
        }
        return KILN_OK;
    }
    char sub[700];
    snprintf(sub, sizeof sub, "%s.%s", path, range->key);
    if (range->type != KILN_CFG_SEQ || range->n_items != 2)
        return bad(range, sub, "expected [low, high]");
    if ((st = num_of(range->items[0], sub, &p->low)) || (st = num_of(range->items[1], sub, &p->high)))
        return st;
    if (!(p->low < p->high)) return bad(range, sub, "low (%g) must be below high (%g)", p->low, p->high);
    p->log = p->kind == KILN_TUNE_LOGUNIFORM;
    const kiln_cfg *lg = kiln_cfg_child(c, "log"), *stp = kiln_cfg_child(c, "step");
    if ((lg || stp) && p->kind != KILN_TUNE_INT)
        return bad(lg ? lg : stp, path, "log: and step: go with int (use loguniform for a float)");
    if (lg && kiln_cfg_parse_bool(lg, &p->log)) return bad(lg, path, "log: expected true or false");
    if (stp && ((st = num_of(stp, path, &p->step)))) return st;
    if (p->kind == KILN_TUNE_INT) {
        if (p->low != floor(p->low) || p->high != floor(p->high) || p->step != floor(p->step) ||
            p->step < 1)
            return bad(range, sub, "int: expected whole numbers (and a step of 1 or more)");
        if (p->log && p->step != 1) return bad(stp, path, "int: log: true takes no step");
    }
    if (p->log && p->low <= 0) return bad(range, sub, "a log scale needs low > 0, got %g", p->low);
    return KILN_OK;
}

/* ---- values as YAML ---- */

static void flow(const kiln_cfg *c, char *buf, size_t cap) {
    size_t n = strlen(buf);
    if (n >= cap - 1) return;
    if (c->type == KILN_CFG_SCALAR) {
        if (!c->quoted) {
            snprintf(buf + n, cap - n, "%s", c->text[0] ? c->text : "null");
            return;
        }
        snprintf(buf + n, cap - n, "'");
        for (const char *t = c->text; *t; t++)
            snprintf(buf + strlen(buf), cap - strlen(buf), *t == '\'' ? "''" : "%c", *t);
        snprintf(buf + strlen(buf), cap - strlen(buf), "'");
        return;
    }
    int map = c->type == KILN_CFG_MAP;
    snprintf(buf + n, cap - n, map ? "{" : "[");
    for (int i = 0; i < c->n_items; i++) {
        if (i) snprintf(buf + strlen(buf), cap - strlen(buf), ", ");
        if (map) snprintf(buf + strlen(buf), cap - strlen(buf), "%s: ", c->items[i]->key);
        flow(c->items[i], buf, cap);
    }
    snprintf(buf + strlen(buf), cap - strlen(buf), map ? "}" : "]");
}

int kiln_tune_active(const kiln_tune_space *s, const double *x, int i) {
    const kiln_tune_param *p = &s->params[i];
    if (p->parent < 0) return 1;
    return kiln_tune_active(s, x, p->parent) && x[p->parent] == (double)p->parent_option;
}

static void value_text(const kiln_tune_param *p, double v, char *buf, size_t cap, int exact) {
    buf[0] = 0;
    if (isnan(v)) snprintf(buf, cap, "-");
    else if (p->kind == KILN_TUNE_CHOICE) flow(p->choices[(int)v], buf, cap);
    else if (p->kind == KILN_TUNE_INT) snprintf(buf, cap, "%.0f", v);
    else snprintf(buf, cap, exact ? "%.17g" : "%.4g", v);
}

int kiln_tune_assignment(const kiln_tune_space *s, const double *x, int i, char *buf, size_t cap) {
    const kiln_tune_param *p = &s->params[i];
    int n = snprintf(buf, cap, "%s=", p->key);
    if (n < 0 || (size_t)n >= cap) return -1;
    value_text(p, x[i], buf + n, cap - (size_t)n, 1);
    return strlen(buf) + 1 >= cap ? -1 : 0;
}

void kiln_tune_display(const kiln_tune_space *s, const double *x, int i, char *buf, size_t cap) {
    const kiln_tune_param *p = &s->params[i];
    if (p->kind == KILN_TUNE_CHOICE && !isnan(x[i])) {
        const kiln_cfg *o = p->choices[(int)x[i]];
        if (o->type == KILN_CFG_MAP && o->n_items == 1) {
            snprintf(buf, cap, "%s", o->items[0]->key);
            return;
        }
    }
    value_text(p, x[i], buf, cap, 0);
}

/* ---- checking the parameters against the config ---- */

/* Applies x's active assignments up to and including parameter last to a copy of root and
 * resolves it. */
static kiln_status try_point(const kiln_tune_space *s, const kiln_cfg *root, const double *x,
                             int last, const kiln_cfg *at, const char *path) {
    kiln_cfg *c = kiln_cfg_clone(root);
    if (!c) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    kiln_status st = kiln_config_set(c, "tune=null");
    char a[4096] = "";
    for (int i = 0; !st && i <= last; i++) {
        if (isnan(x[i])) continue;
        if (kiln_tune_assignment(s, x, i, a, sizeof a))
            st = kiln_error(KILN_ERR_INVALID, "value too long");
        else
            st = kiln_config_set(c, a);
    }
    if (!st) st = kiln_config_resolve(c);
    kiln_cfg_free(c);
    if (st) {
        char why[1024];
        snprintf(why, sizeof why, "%s", kiln_last_error());
        return bad(at, path, "setting %s does not give a valid config: %s", a, why);
    }
    return KILN_OK;
}

/* Every bound or option of parameter i, with its ancestors at the options it needs. */
static kiln_status check_param(const kiln_tune_space *s, const kiln_cfg *root, int i,
                               const kiln_cfg *at) {
    double *x = malloc((size_t)s->n_params * sizeof *x);
    if (!x) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    for (int k = 0; k < s->n_params; k++) x[k] = NAN;
    for (int k = i; s->params[k].parent >= 0; k = s->params[k].parent)
        x[s->params[k].parent] = s->params[k].parent_option;
    const kiln_tune_param *p = &s->params[i];
    kiln_status st = KILN_OK;
    int n = p->kind == KILN_TUNE_CHOICE ? p->n_choices : 2;
    for (int v = 0; !st && v < n; v++) {
        x[i] = p->kind == KILN_TUNE_CHOICE ? v : v ? p->high : p->low;
        st = try_point(s, root, x, i, at, "tune.space");
    }
    free(x);
    return st;
}

static const kiln_cfg *child_of(const kiln_cfg *m, const char *key) {
    return m && m->type == KILN_CFG_MAP ? kiln_cfg_child(m, key) : NULL;
}

static kiln_status check_keys(const kiln_cfg *m, const char *path, const char *const *keys) {
    if (m->type != KILN_CFG_MAP) return bad(m, path, "expected a map of keys");
    for (int i = 0; i < m->n_items; i++) {
        int k = 0;
        while (keys[k] && strcmp(keys[k], m->items[i]->key)) k++;
        if (!keys[k]) {
            char list[300] = "";
            for (k = 0; keys[k]; k++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", keys[k]);
            return bad(m->items[i], path, "unknown key '%s' (expected one of: %s)",
                       m->items[i]->key, list);
        }
    }
    return KILN_OK;
}

static kiln_status int_of(const kiln_cfg *m, const char *key, const char *path, long lo, long hi,
                          int *out) {
    const kiln_cfg *c = child_of(m, key);
    if (!c) return KILN_OK;
    int64_t v;
    if (kiln_cfg_parse_int(c, &v) || v < lo || v > hi)
        return bad(c, path, "%s: expected a whole number from %ld to %ld", key, lo, hi);
    *out = (int)v;
    return KILN_OK;
}

static kiln_status real_of(const kiln_cfg *m, const char *key, const char *path, double lo,
                           double hi, double *out) {
    const kiln_cfg *c = child_of(m, key);
    if (!c) return KILN_OK;
    double v;
    if (kiln_cfg_parse_num(c, &v) || !(v >= lo && v <= hi))
        return bad(c, path, "%s: expected a number from %g to %g", key, lo, hi);
    *out = v;
    return KILN_OK;
}

/* A one-key map {name: {...}} or a bare name: the name index in names, and its parameters. */
static kiln_status oneof(const kiln_cfg *c, const char *path, const char *const *names, int *which,
                         const kiln_cfg **args) {
    const char *name = c->type == KILN_CFG_SCALAR ? c->text
                       : c->type == KILN_CFG_MAP && c->n_items == 1 ? c->items[0]->key
                                                                    : NULL;
    *args = c->type == KILN_CFG_MAP && c->n_items == 1 ? c->items[0] : NULL;
    for (int k = 0; name && names[k]; k++)
        if (!strcmp(name, names[k])) {
            *which = k;
            if (*args && (*args)->type == KILN_CFG_SCALAR && !(*args)->text[0]) *args = NULL;
            return KILN_OK;
        }
    char list[200] = "";
    for (int k = 0; names[k]; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", names[k]);
    return bad(c, path, "got '%s'; expected one of: %s", name ? name : "a collection", list);
}

kiln_status kiln_tune_space_parse(const kiln_cfg *tune, const kiln_cfg *root, kiln_tune_space *out) {
    memset(out, 0, sizeof *out);
    kiln_tune_space *s = out;
    s->trials = 20, s->parallel = 1, s->n_startup = 10, s->n_ei = 24, s->gamma = 0.1;
    s->prior_weight = 1, s->min_resource = 1, s->reduction = 3, s->median_startup = 5;
    s->multivariate = 1, s->ei_weights = 1, s->clip_exponent = 2;
    s->seed = root ? (uint64_t)kiln_cfg_int(root, "seed", 1) : 1;
    static const char *const KEYS[] = {"objective", "trials", "time_limit", "parallel", "sampler",
                                       "pruner", "space", NULL};
    kiln_status st;
    if (!tune) return kiln_error(KILN_ERR_INVALID, "tune: the config has no tune: section");
    if ((st = check_keys(tune, "tune", KEYS))) goto fail;
    if ((st = int_of(tune, "trials", "tune", 1, 100000, &s->trials)) ||
        (st = int_of(tune, "parallel", "tune", 1, 1024, &s->parallel)) ||
        (st = real_of(tune, "time_limit", "tune", 0, 1e9, &s->time_limit)))
        goto fail;
    /* objective */
    const kiln_cfg *obj = child_of(tune, "objective");
    const char *metric = root ? kiln_cfg_str(root, "train.early_stopping.monitor", NULL) : NULL;
    const char *mode = NULL;
    if (obj) {
        static const char *const OK[] = {"metric", "mode", NULL};
        if ((st = check_keys(obj, "tune.objective", OK))) goto fail;
        const kiln_cfg *m = child_of(obj, "metric"), *d = child_of(obj, "mode");
        if (m && (m->type != KILN_CFG_SCALAR || !m->text[0])) {
            st = bad(m, "tune.objective.metric", "expected a metric name (val_accuracy)");
            goto fail;
        }
        if (m) metric = m->text;
        if (d && (d->type != KILN_CFG_SCALAR || (strcmp(d->text, "min") && strcmp(d->text, "max")))) {
            st = bad(d, "tune.objective.mode", "expected min or max");
            goto fail;
        }
        if (d) mode = d->text;
    }
    if (!metric) {
        st = bad(tune, "tune.objective",
                 "no metric: give objective: {metric: NAME, mode: min|max} or "
                 "train.early_stopping.monitor");
        goto fail;
    }
    if (!mode) {
        const char *es = root ? kiln_cfg_str(root, "train.early_stopping.mode", "auto") : "auto";
        mode = strcmp(es, "auto") ? es
               : (strstr(metric, "acc") || strstr(metric, "auc") || strstr(metric, "precision") ||
                  strstr(metric, "recall") || strstr(metric, "f1"))
                   ? "max"
                   : "min";
    }
    s->maximize = !strcmp(mode, "max");
    if (!(s->metric = strdup(metric))) goto nomem;
    /* sampler */
    const kiln_cfg *smp = child_of(tune, "sampler"), *args;
    if (smp) {
        static const char *const NAMES[] = {"tpe", "random", NULL};
        int w = 0;
        if ((st = oneof(smp, "tune.sampler", NAMES, &w, &args))) goto fail;
        s->sampler = (kiln_tune_sampler)w;
        if (args) {
            static const char *const TPE[] = {"startup_trials", "ei_candidates", "gamma",
                                              "prior_weight", "seed", "density",
                                              "multivariate", "weights", "clip_exponent",
                                              NULL};
            static const char *const RND[] = {"seed", NULL};
            double seed = (double)s->seed;
            if ((st = check_keys(args, "tune.sampler", w ? RND : TPE)) ||
                (st = int_of(args, "startup_trials", "tune.sampler", 0, 100000, &s->n_startup)) ||
                (st = int_of(args, "ei_candidates", "tune.sampler", 1, 100000, &s->n_ei)) ||
                (st = real_of(args, "gamma", "tune.sampler", 1e-6, 1, &s->gamma)) ||
                (st = real_of(args, "prior_weight", "tune.sampler", 1e-6, 1e6, &s->prior_weight)) ||
                (st = real_of(args, "clip_exponent", "tune.sampler", 0, 10, &s->clip_exponent)) ||
                (st = real_of(args, "seed", "tune.sampler", 0, 9e15, &seed)))
                goto fail;
            s->seed = (uint64_t)seed;
            const kiln_cfg *dn = child_of(args, "density");
            if (dn && (dn->type != KILN_CFG_SCALAR || (strcmp(dn->text, "exact") && strcmp(dn->text, "optuna31")))) {
                st = bad(dn, "tune.sampler.density", "expected exact or optuna31");
                goto fail;
            }
            s->optuna31 = dn && !strcmp(dn->text, "optuna31");
            const kiln_cfg *mv = child_of(args, "multivariate");
            if (mv && (mv->type != KILN_CFG_SCALAR ||
                       (strcmp(mv->text, "true") && strcmp(mv->text, "false")))) {
                st = bad(mv, "tune.sampler.multivariate", "expected true or false");
                goto fail;
            }
            if (mv) s->multivariate = !strcmp(mv->text, "true");
            const kiln_cfg *wt = child_of(args, "weights");
            if (wt && (wt->type != KILN_CFG_SCALAR ||
                       (strcmp(wt->text, "ei") && strcmp(wt->text, "uniform")))) {
                st = bad(wt, "tune.sampler.weights", "expected ei or uniform");
                goto fail;
            }
            if (wt) s->ei_weights = !strcmp(wt->text, "ei");
        }
    }
    /* pruner */
    const kiln_cfg *prn = child_of(tune, "pruner");
    if (prn) {
        static const char *const NAMES[] = {"none", "asha", "median", NULL};
        int w = 0;
        if ((st = oneof(prn, "tune.pruner", NAMES, &w, &args))) goto fail;
        s->pruner = (kiln_tune_pruner)w;
        if (args) {
            static const char *const ASHA[] = {"min_resource", "reduction_factor", "resource", NULL};
            static const char *const MED[] = {"startup_trials", "warmup", "resource", NULL};
            static const char *const NONE[] = {NULL};
            if ((st = check_keys(args, "tune.pruner", w == 1 ? ASHA : w == 2 ? MED : NONE)) ||
                (st = real_of(args, "min_resource", "tune.pruner", 1e-9, 1e15, &s->min_resource)) ||
                (st = real_of(args, "reduction_factor", "tune.pruner", 1.0001, 1e6, &s->reduction)) ||
                (st = int_of(args, "startup_trials", "tune.pruner", 0, 100000, &s->median_startup)) ||
                (st = real_of(args, "warmup", "tune.pruner", 0, 1e15, &s->median_warmup)))
                goto fail;
            const kiln_cfg *r = child_of(args, "resource");
            if (r && (r->type != KILN_CFG_SCALAR || (strcmp(r->text, "epoch") && strcmp(r->text, "step")))) {
                st = bad(r, "tune.pruner.resource", "expected epoch or step");
                goto fail;
            }
            s->by_step = r && !strcmp(r->text, "step");
        }
        /* where a full trial ends (stages: their own epochs, so unknown) */
        if (root && !kiln_cfg_child(root, "stages"))
            s->max_resource = s->by_step ? (double)kiln_cfg_int(root, "train.max_steps", 0)
                                         : (double)kiln_cfg_int(root, "train.epochs", 10);
    }
    /* space */
    const kiln_cfg *space = child_of(tune, "space");
    if (!space || space->type != KILN_CFG_MAP || !space->n_items) {
        st = bad(space ? space : tune, "tune.space", "expected a map of config keys to distributions");
        goto fail;
    }
    for (int i = 0; i < space->n_items; i++) {
        const kiln_cfg *ci = space->items[i];
        char path[600];
        snprintf(path, sizeof path, "tune.space.%s", ci->key);
        int first = s->n_params;
        if ((st = parse_dist(s, ci->key, ci, path, -1, 0))) goto fail;
        for (int k = first; k < s->n_params; k++) {
            for (int j = 0; j < k; j++)
                if (!strcmp(s->params[j].key, s->params[k].key) &&
                    s->params[j].parent == s->params[k].parent &&
                    s->params[j].parent_option == s->params[k].parent_option) {
                    st = bad(ci, path, "'%s' is searched twice", s->params[k].key);
                    goto fail;
                }
            if (root && (st = check_param(s, root, k, ci))) goto fail;
        }
    }
    return KILN_OK;
nomem:
    st = kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
fail:
    kiln_tune_space_free(s);
    return st;
}

void kiln_tune_space_free(kiln_tune_space *s) {
    for (int i = 0; i < s->n_params; i++) {
        free(s->params[i].key);
        for (int o = 0; o < s->params[i].n_choices; o++) kiln_cfg_free(s->params[i].choices[o]);
        free(s->params[i].choices);
    }
    free(s->params);
    free(s->metric);
    memset(s, 0, sizeof *s);
}
