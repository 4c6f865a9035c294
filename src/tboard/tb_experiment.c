/* tb_experiment.c — the HParams experiment summary of a TensorBoard log folder
 * (kiln_tb_experiment_update, see kiln/tboard.h).
 *
 * TensorBoard's HParams plugin takes the first "_hparams_/experiment" it finds in a log folder
 * and, per tag, the first metadata it sees, so the summary must be one file that always holds
 * the union of every run's hyperparameters and metrics. Under an exclusive flock on the folder:
 * read the newest dir/events.out.tfevents.<t>.<host>.experiment, merge (existing entries keep
 * their order and types, new ones are appended), and if anything changed create a new file
 * whose name sorts after it (its <t> is at least the old one's + 1), then unlink the older ones.
 * The new file is complete before the old is removed, so there is always a summary on disk; a
 * TensorBoard already running keeps the one it loaded first (restart it to see new columns).
 *
 * Each hyperparameter carries its domain over every run that called this, as TensorBoard computes
 * it when it builds a summary itself from session infos (backend_context.py): numbers an interval
 * [min, max] (NaN left out), strings and bools the discrete set of values seen (bools false then
 * true, strings in order of appearance); and `differs` when it has had two or more values. A value
 * of another type than the entry's first marks it as differing and leaves the domain as it is.
 * A run that brings a new value (or a new hyperparameter or metric) changes the summary.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "kiln/fileio.h"
#include "tboard/tb_internal.h"

#define PREFIX "events.out.tfevents."
#define SUFFIX ".experiment"

typedef struct {
    Tensorboard__Hparams__Experiment *exp; /* unpacked, owned */
} found;

static int on_event(const Tensorflow__Event *ev, int64_t offset, void *ctx) {
    found *f = ctx;
    if (ev->what_case != TENSORFLOW__EVENT__WHAT_SUMMARY || f->exp) return 0;
    for (size_t i = 0; i < ev->summary->n_value; i++) {
        const Tensorflow__Summary__Value *v = ev->summary->value[i];
        if (strcmp(v->tag, "_hparams_/experiment") || !v->metadata || !v->metadata->plugin_data)
            continue;
        const ProtobufCBinaryData *c = &v->metadata->plugin_data->content;
        Tensorboard__Hparams__HParamsPluginData *pd =
            tensorboard__hparams__hparams_plugin_data__unpack(NULL, c->len, c->data);
        if (pd && pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT) {
            f->exp = pd->experiment; /* keep it: detach from pd */
            pd->experiment = NULL;
            pd->data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA__NOT_SET;
        }
        if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
        return f->exp != NULL;
    }
    return 0;
}

static int is_summary_file(const char *name) {
    size_t n = strlen(name), p = strlen(PREFIX), s = strlen(SUFFIX);
    return n > p + s && !strncmp(name, PREFIX, p) && !strcmp(name + n - s, SUFFIX);
}

/* The names of dir's summary files, sorted (newest last). */
static int list_summaries(const char *dir, char ***names, int *n) {
    *names = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_summary_file(e->d_name)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 4;
            char **t = realloc(*names, (size_t)cap * sizeof *t);
            if (!t) break;
            *names = t;
        }
        if (!((*names)[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* insertion sort: a handful of names */
        for (int j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
            char *t = (*names)[j];
            (*names)[j] = (*names)[j - 1], (*names)[j - 1] = t;
        }
    return 0;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* ---- hyperparameters: types, domains, differs ---- */

/* One hyperparameter of the merged summary: what the old summary said plus this run's value. */
typedef struct {
    const Tensorboard__Hparams__HParamInfo *old; /* NULL: new in this run */
    const char *name;
    Tensorboard__Hparams__DataType type;
    int differs;
    int interval;      /* FLOAT64: [lo, hi] holds every known value */
    double lo, hi;
    int bools;         /* BOOL: bit 0 false seen, bit 1 true seen */
    const char **strs; /* STRING: the distinct values, in order of appearance (borrowed) */
    int n_strs, cap_strs;
    int changed;
} hp_entry;

static Tensorboard__Hparams__DataType hp_type(kiln_tb_hp_type t) {
    return t == KILN_TB_HP_NUMBER ? TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_FLOAT64
           : t == KILN_TB_HP_BOOL ? TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_BOOL
                                  : TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_STRING;
}

static int add_string(hp_entry *e, const char *v) {
    for (int i = 0; i < e->n_strs; i++)
        if (!strcmp(e->strs[i], v)) return 0;
    if (e->n_strs == e->cap_strs) {
        int cap = e->cap_strs ? 2 * e->cap_strs : 4;
        const char **t = realloc(e->strs, (size_t)cap * sizeof *t);
        if (!t) return -1;
        e->strs = t, e->cap_strs = cap;
    }
    e->strs[e->n_strs++] = v;
    return 1;
}

static void add_number(hp_entry *e, double v) {
    if (v != v) return; /* NaN: not a point of any interval */
    if (!e->interval) e->interval = 1, e->lo = e->hi = v, e->changed = 1;
    if (v < e->lo) e->lo = v, e->changed = 1;
    if (v > e->hi) e->hi = v, e->changed = 1;
}

/* The entry as the old summary describes it (a summary from before domains has none). */
static int entry_from_old(hp_entry *e, const Tensorboard__Hparams__HParamInfo *o) {
    memset(e, 0, sizeof *e);
    e->old = o, e->name = o->name, e->type = o->type, e->differs = o->differs;
    if (o->domain_case == TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_INTERVAL && o->domain_interval)
        e->interval = 1, e->lo = o->domain_interval->min_value, e->hi = o->domain_interval->max_value;
    if (o->domain_case == TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_DISCRETE && o->domain_discrete)
        for (size_t i = 0; i < o->domain_discrete->n_values; i++) {
            const Google__Protobuf__Value *v = o->domain_discrete->values[i];
            if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE && add_string(e, v->string_value) < 0) return -1;
            if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE) e->bools |= v->bool_value ? 2 : 1;
            if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE) add_number(e, v->number_value);
        }
    e->changed = 0;
    return 0;
}

/* Adds this run's value; a value of another type than the entry's only marks it as differing. */
static int entry_add(hp_entry *e, const kiln_tb_hparam *h) {
    if (hp_type(h->type) != e->type) {
        e->changed |= !e->differs;
        e->differs = 1;
        return 0;
    }
    if (h->type == KILN_TB_HP_NUMBER) add_number(e, h->number);
    else if (h->type == KILN_TB_HP_BOOL) {
        int bit = h->boolean ? 2 : 1;
        e->changed |= !(e->bools & bit);
        e->bools |= bit;
    } else {
        int r = add_string(e, h->string ? h->string : "");
        if (r < 0) return -1;
        e->changed |= r;
    }
    int differs = e->differs || (e->interval && e->lo < e->hi) || e->bools == 3 || e->n_strs > 1;
    e->changed |= differs != e->differs;
    e->differs = differs;
    return 0;
}

/* Builds the merged experiment and writes it to a new file at path; *changed: whether it says
 * anything the old one did not (then the file is written). */
static kiln_status write_summary(const char *path, const char *name,
                                 const Tensorboard__Hparams__Experiment *old,
                                 const kiln_tb_hparams *hp, const kiln_tb_metric_info *mi, int n_mi,
                                 int *changed) {
    size_t n_old_h = old ? old->n_hparam_infos : 0, n_old_m = old ? old->n_metric_infos : 0;
    size_t cap_h = n_old_h + (size_t)(hp ? hp->n : 0), cap_m = n_old_m + (size_t)n_mi;
    hp_entry *ent = calloc(cap_h + 1, sizeof *ent);
    Tensorboard__Hparams__HParamInfo *hi = calloc(cap_h + 1, sizeof *hi),
                                     **hptr = calloc(cap_h + 1, sizeof *hptr);
    Tensorboard__Hparams__Interval *iv = calloc(cap_h + 1, sizeof *iv);
    Google__Protobuf__ListValue *lv = calloc(cap_h + 1, sizeof *lv);
    Tensorboard__Hparams__MetricInfo *mv = calloc(cap_m + 1, sizeof *mv),
                                     **mptr = calloc(cap_m + 1, sizeof *mptr);
    Tensorboard__Hparams__MetricName *mn = calloc(cap_m + 1, sizeof *mn);
    Google__Protobuf__Value *vals = NULL, **vptr = NULL;
    size_t nh = 0, nm = 0;
    kiln_status st = KILN_OK;
    *changed = 0;
    if (!ent || !hi || !hptr || !iv || !lv || !mv || !mptr || !mn) goto nomem;
    for (size_t i = 0; i < n_old_h; i++)
        if (entry_from_old(&ent[nh++], old->hparam_infos[i])) goto nomem;
    for (int i = 0; hp && i < hp->n; i++) {
        const kiln_tb_hparam *h = &hp->items[i];
        hp_entry *e = NULL;
        for (size_t j = 0; j < nh && !e; j++)
            if (!strcmp(ent[j].name, h->name)) e = &ent[j];
        if (!e) {
            e = &ent[nh++];
            e->name = h->name, e->type = hp_type(h->type), e->changed = 1;
        }
        if (entry_add(e, h)) goto nomem;
    }
    size_t n_vals = 0;
    for (size_t i = 0; i < nh; i++) {
        *changed |= ent[i].changed;
        n_vals += (size_t)ent[i].n_strs + 2;
    }
    if (!(vals = calloc(n_vals, sizeof *vals)) || !(vptr = calloc(n_vals, sizeof *vptr))) goto nomem;
    size_t k = 0;
    for (size_t i = 0; i < nh; i++) {
        const hp_entry *e = &ent[i];
        Tensorboard__Hparams__HParamInfo *h = &hi[i];
        tensorboard__hparams__hparam_info__init(h);
        h->name = (char *)e->name, h->type = e->type, h->differs = e->differs;
        if (e->old) h->display_name = e->old->display_name, h->description = e->old->description;
        if (e->type == TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_FLOAT64 && e->interval) {
            tensorboard__hparams__interval__init(&iv[i]);
            iv[i].min_value = e->lo, iv[i].max_value = e->hi;
            h->domain_case = TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_INTERVAL, h->domain_interval = &iv[i];
        } else if (e->n_strs || e->bools) {
            google__protobuf__list_value__init(&lv[i]);
            lv[i].values = vptr + k;
            for (int b = 0; b < 2; b++) /* false, then true */
                if (e->bools & (1 << b)) {
                    google__protobuf__value__init(&vals[k]);
                    vals[k].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE, vals[k].bool_value = b;
                    vptr[k] = &vals[k], k++, lv[i].n_values++;
                }
            for (int j = 0; j < e->n_strs; j++) {
                google__protobuf__value__init(&vals[k]);
                vals[k].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE, vals[k].string_value = (char *)e->strs[j];
                vptr[k] = &vals[k], k++, lv[i].n_values++;
            }
            h->domain_case = TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_DISCRETE, h->domain_discrete = &lv[i];
        }
        hptr[i] = h;
    }
    for (size_t i = 0; i < n_old_m; i++) mptr[nm++] = old->metric_infos[i];
    for (int i = 0; i < n_mi; i++) {
        int dup = 0;
        for (size_t j = 0; j < nm && !dup; j++) {
            const Tensorboard__Hparams__MetricName *o = mptr[j]->name;
            dup = o && !strcmp(o->group, mi[i].group) && !strcmp(o->tag, mi[i].tag);
        }
        if (dup) continue;
        tensorboard__hparams__metric_name__init(&mn[i]);
        mn[i].group = (char *)mi[i].group, mn[i].tag = (char *)mi[i].tag;
        Tensorboard__Hparams__MetricInfo *m = &mv[i];
        tensorboard__hparams__metric_info__init(m);
        m->name = &mn[i];
        if (mi[i].display_name) m->display_name = (char *)mi[i].display_name;
        m->dataset_type = (Tensorboard__Hparams__DatasetType)mi[i].dataset;
        mptr[nm++] = m, *changed = 1;
    }
    if (!*changed && old) goto done;
    Tensorboard__Hparams__Experiment e = TENSORBOARD__HPARAMS__EXPERIMENT__INIT;
    if (name) e.name = (char *)name;
    e.time_created_secs = old ? old->time_created_secs : (double)time(NULL);
    e.n_hparam_infos = nh, e.hparam_infos = hptr;
    e.n_metric_infos = nm, e.metric_infos = mptr;
    Tensorboard__Hparams__HParamsPluginData pd = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__INIT;
    pd.data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT;
    pd.experiment = &e;
    kiln_tb_writer *w;
    if (!(st = kiln_tb_open_path(path, &w))) {
        st = kiln_tb_write_hparams(w, "_hparams_/experiment", &pd);
        kiln_tb_close(w);
        if (st) unlink(path);
    }
    *changed = 1; /* a first summary is a change even when it is empty */
    goto done;
nomem:
    st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
done:
    for (size_t i = 0; ent && i < cap_h; i++) free(ent[i].strs);
    free(ent), free(hi), free(hptr), free(iv), free(lv), free(vals), free(vptr);
    free(mv), free(mptr), free(mn);
    return st;
}

kiln_status kiln_tb_experiment_update(const char *dir, const char *name, const kiln_tb_hparams *hp,
                                      const kiln_tb_metric_info *metrics, int n_metrics,
                                      int *changed) {
    if (changed) *changed = 0;
    kiln_status st = kiln_mkdirs(dir);
    if (st) return st;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return kiln_error(KILN_ERR_IO, "%s: %s", dir, strerror(errno));
    while (flock(dfd, LOCK_EX) != 0 && errno == EINTR) {
    }
    char **names;
    int n;
    if (list_summaries(dir, &names, &n)) {
        st = kiln_error(KILN_ERR_IO, "%s: %s", dir, strerror(errno));
        close(dfd);
        return st;
    }
    found f = {NULL};
    char path[4096 + 512];
    long long t_old = -1;
    if (n) {
        snprintf(path, sizeof path, "%s/%s", dir, names[n - 1]);
        /* a file damaged before its summary leaves f.exp NULL: it counts as absent */
        (void)kiln_tb_read_events(path, on_event, &f);
        t_old = strtoll(names[n - 1] + strlen(PREFIX), NULL, 10);
    }
    char host[256];
    kiln_tb_hostname(host, sizeof host);
    long long t = (long long)time(NULL);
    if (t <= t_old) t = t_old + 1;
    int len = snprintf(path, sizeof path, "%s/" PREFIX "%010lld.%s" SUFFIX, dir, t, host);
    int added = 0;
    if (len < 0 || (size_t)len >= sizeof path)
        st = kiln_error(KILN_ERR_INVALID, "%s: path too long", dir);
    else
        st = write_summary(path, name, f.exp, hp, metrics, n_metrics, &added);
    if (!st && added) {
        for (int i = 0; i < n; i++) unlinkat(dfd, names[i], 0);
        if (changed) *changed = 1;
    }
    if (f.exp) tensorboard__hparams__experiment__free_unpacked(f.exp, NULL);
    free_names(names, n);
    close(dfd); /* releases the lock */
    return st;
}
