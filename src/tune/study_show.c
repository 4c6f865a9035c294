/* study_show.c — `kiln tune show [STUDY]`: the studies of a runs folder, or one study's best
 * trial, its trials and the parameters' importances (kiln_tune_importance over the finished
 * trials; the space is read again from the study's config, and left out when that is gone).
 * Reads the registry only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kiln/registry.h"
#include "kiln/tune.h"

static int list_one(const kiln_registry_study *s, void *ctx) {
    int *n = ctx;
    if (!(*n)++)
        printf("%-40s %-24s %-18s %6s %8s %6s %6s %7s  %s\n", "STUDY", "EXPERIMENT", "OBJECTIVE",
               "TRIALS", "FINISHED", "PRUNED", "FAILED", "RUNNING", "BEST");
    char obj[64], best[32] = "-";
    snprintf(obj, sizeof obj, "%s (%s)", s->metric, !strcmp(s->direction, "maximize") ? "max" : "min");
    if (s->has_best) snprintf(best, sizeof best, "%.6g", s->best);
    printf("%-40s %-24s %-18s %6lld %8lld %6lld %6lld %7lld  %s\n", s->name, s->experiment, obj,
           (long long)s->trials, (long long)s->finished, (long long)s->pruned, (long long)s->failed,
           (long long)s->running, best);
    return 0;
}

typedef struct {
    kiln_registry_study s;
    char *name, *metric, *spec;
    int maximize;
} one_study;

static int got(const kiln_registry_study *s, void *ctx) {
    one_study *o = ctx;
    o->s = *s;
    o->name = strdup(s->name), o->metric = strdup(s->metric), o->spec = strdup(s->spec);
    o->maximize = !strcmp(s->direction, "maximize");
    return 1;
}

typedef struct {
    kiln_registry_trial t;
    char *state, *run, *params, *x;
} row;
typedef struct {
    row *r;
    int n;
} rows;

static char *dup0(const char *s) { return s ? strdup(s) : NULL; }

static int got_trial(const kiln_registry_trial *t, void *ctx) {
    rows *rs = ctx;
    row *a = realloc(rs->r, (size_t)(rs->n + 1) * sizeof *a);
    if (!a) return 1;
    rs->r = a;
    row *r = &a[rs->n++];
    r->t = *t;
    r->state = dup0(t->state), r->run = dup0(t->run), r->params = dup0(t->params), r->x = dup0(t->x);
    r->t.start_time = r->t.end_time = r->t.message = NULL;
    return 0;
}

/* The space again, from the spec's config (for importances); 0 when it cannot be read. */
static int space_of(const char *spec, kiln_tune_space *sp) {
    cJSON *j = cJSON_Parse(spec);
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(j, "config");
    const cJSON *spf = cJSON_GetObjectItemCaseSensitive(j, "space");
    const cJSON *sets = cJSON_GetObjectItemCaseSensitive(j, "sets"), *e;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "config_text");
    const cJSON *stx = cJSON_GetObjectItemCaseSensitive(j, "space_text");
    kiln_cfg *root = NULL, *space = NULL;
    /* the stored texts (studies since they were kept), else the files */
    kiln_status s = cJSON_IsString(ct)   ? kiln_config_parse(ct->valuestring, "config.yaml", &root)
                    : cJSON_IsString(cf) ? kiln_config_load(cf->valuestring, &root)
                                         : KILN_ERR_INVALID;
    cJSON_ArrayForEach(e, sets) if (!s && cJSON_IsString(e)) s = kiln_config_set(root, e->valuestring);
    if (!s && cJSON_IsString(stx)) s = kiln_config_parse(stx->valuestring, "space.yaml", &space);
    else if (!s && cJSON_IsString(spf)) s = kiln_config_load(spf->valuestring, &space);
    const kiln_cfg *tune = space ? (kiln_cfg_child(space, "tune") ? kiln_cfg_child(space, "tune") : space)
                                 : root ? kiln_cfg_child(root, "tune") : NULL;
    if (!s) s = tune ? kiln_tune_space_parse(tune, root, sp) : KILN_ERR_INVALID;
    kiln_cfg_free(root), kiln_cfg_free(space);
    cJSON_Delete(j);
    return s == KILN_OK;
}

static void print_params(const char *json, const char *indent, const char *sep) {
    cJSON *p = cJSON_Parse(json), *e;
    int first = 1;
    cJSON_ArrayForEach(e, p) {
        printf("%s%s%s=", first ? "" : sep, first ? indent : (sep[0] == '\n' ? indent : ""), e->string);
        if (cJSON_IsNumber(e)) printf("%.6g", e->valuedouble);
        else if (cJSON_IsString(e)) printf("%s", e->valuestring);
        first = 0;
    }
    cJSON_Delete(p);
}

kiln_status kiln_tune_show(const char *runs_dir, const char *study) {
    kiln_registry *reg = NULL;
    kiln_status s = kiln_registry_open(runs_dir ? runs_dir : "runs", &reg);
    if (s) return s;
    if (!study) {
        int n = 0;
        s = kiln_registry_studies(reg, NULL, list_one, &n);
        if (!s && !n) printf("no studies in %s (start one with kiln tune CONFIG)\n", runs_dir ? runs_dir : "runs");
        kiln_registry_close(reg);
        return s;
    }
    one_study o = {0};
    rows rs = {0};
    if ((s = kiln_registry_studies(reg, study, got, &o)) ||
        (s = kiln_registry_trials(reg, study, got_trial, &rs)))
        goto out;
    printf("study %s: objective %s (%s); %lld trials: %lld finished, %lld pruned, %lld failed, "
           "%lld running\n",
           o.name, o.metric, o.maximize ? "max" : "min", (long long)o.s.trials, (long long)o.s.finished,
           (long long)o.s.pruned, (long long)o.s.failed, (long long)o.s.running);
    int best = -1;
    for (int i = 0; i < rs.n; i++)
        if (!strcmp(rs.r[i].state, "finished") && rs.r[i].t.has_value &&
            (best < 0 || (o.maximize ? rs.r[i].t.value > rs.r[best].t.value
                                     : rs.r[i].t.value < rs.r[best].t.value)))
            best = i;
    if (best >= 0) {
        printf("\nbest: trial %lld, %s %.6g, run %s\n", (long long)rs.r[best].t.number, o.metric,
               rs.r[best].t.value, rs.r[best].run ? rs.r[best].run : "-");
        print_params(rs.r[best].params, "  ", "\n");
        printf("\n");
    }
    printf("\n%5s  %-9s %12s %9s  %s\n", "TRIAL", "STATE", o.metric, "RESOURCE", "PARAMS");
    for (int i = 0; i < rs.n; i++) {
        char v[32] = "-", r[32] = "-";
        if (rs.r[i].t.has_value) snprintf(v, sizeof v, "%.6g", rs.r[i].t.value);
        if (rs.r[i].t.has_resource) snprintf(r, sizeof r, "%g", rs.r[i].t.resource);
        printf("%5lld  %-9s %12s %9s  ", (long long)rs.r[i].t.number, rs.r[i].state, v, r);
        print_params(rs.r[i].params, "", " ");
        printf("\n");
    }
    kiln_tune_space sp;
    if (space_of(o.spec, &sp)) {
        int m = 0;
        const double **xs = calloc((size_t)rs.n + 1, sizeof *xs);
        double *vals = calloc((size_t)rs.n + 1, sizeof *vals), *imp = calloc((size_t)sp.n_params + 1, sizeof *imp);
        double *all = calloc((size_t)(rs.n + 1) * (size_t)(sp.n_params + 1), sizeof *all);
        for (int i = 0; xs && vals && all && i < rs.n; i++) {
            if (strcmp(rs.r[i].state, "finished") || !rs.r[i].t.has_value) continue;
            cJSON *x = cJSON_Parse(rs.r[i].x);
            double *row_x = all + (size_t)m * (size_t)(sp.n_params + 1);
            for (int k = 0; k < sp.n_params; k++) {
                const cJSON *v = cJSON_GetArrayItem(x, k);
                row_x[k] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            }
            cJSON_Delete(x);
            xs[m] = row_x, vals[m++] = rs.r[i].t.value;
        }
        if (m >= 4 && imp) {
            kiln_tune_importance(&sp, xs, vals, m, imp);
            printf("\nimportances (share of the objective's variance between quartiles or options, "
                   "over %d finished trials):\n", m);
            for (int k = 0; k < sp.n_params; k++) {
                printf("  %-40s %5.2f  ", sp.params[k].key, imp[k]);
                for (int b = 0; b < (int)lround(imp[k] * 40); b++) putchar('#');
                printf("\n");
            }
        } else {
            printf("\nimportances: need 4 or more finished trials\n");
        }
        free(xs), free(vals), free(imp), free(all);
        kiln_tune_space_free(&sp);
    }
out:
    for (int i = 0; i < rs.n; i++) free(rs.r[i].state), free(rs.r[i].run), free(rs.r[i].params), free(rs.r[i].x);
    free(rs.r);
    free(o.name), free(o.metric), free(o.spec);
    kiln_registry_close(reg);
    return s;
}
