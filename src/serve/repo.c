/* repo.c — the model repository: versions per model, the version policy, loading with warm-up,
 * the atomic swap and reference counting (guarantees in include/kiln/serve.h).
 *
 * Invariants:
 *   - m->loaded is sorted by version and only changes under m->mu; every version in it holds
 *     one reference for the table. Requests take theirs under m->mu (serve_repo_acquire), so a
 *     listed version cannot be freed while a request is taking it.
 *   - Loading happens on the poller thread without m->mu held: a request never waits for a
 *     load. Only the poller thread adds or removes versions, so a poll sees its own changes.
 *   - m->records holds one record per version ever seen (loaded, unloaded or failed), sorted;
 *     a failed version keeps its files' stamp and is retried only when the stamp changes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln/mem.h"
#include "kiln/registry.h"
#include "serve/serve_internal.h"

const char *serve_version_state_name(version_state st) {
    static const char *names[] = {"LOADING", "AVAILABLE", "UNLOADING", "END"};
    return (unsigned)st < 4 ? names[st] : "UNKNOWN";
}

/* ---- records ---- */

static version_record *record_of(served_model *m, int64_t version, int make) {
    int i = 0;
    while (i < m->n_records && m->records[i].version < version) i++;
    if (i < m->n_records && m->records[i].version == version) return &m->records[i];
    if (!make) return NULL;
    if (m->n_records == m->cap_records) {
        int cap = m->cap_records ? 2 * m->cap_records : 8;
        version_record *r = realloc(m->records, (size_t)cap * sizeof *r);
        if (!r) return NULL;
        m->records = r, m->cap_records = cap;
    }
    memmove(&m->records[i + 1], &m->records[i], (size_t)(m->n_records - i) * sizeof *m->records);
    m->n_records++;
    m->records[i] = (version_record){.version = version, .state = VS_LOADING};
    return &m->records[i];
}

static void set_record(served_model *m, int64_t version, version_state st, const char *error,
                       const char *stamp) {
    pthread_mutex_lock(&m->mu);
    version_record *r = record_of(m, version, 1);
    if (r) {
        r->state = st;
        free(r->error);
        r->error = error ? strdup(error) : NULL;
        snprintf(r->stamp, sizeof r->stamp, "%s", stamp ? stamp : "");
    }
    pthread_mutex_unlock(&m->mu);
}

/* The identity of a version folder's files (sizes and modification times). */
static void files_stamp(const char *dir, char out[64]) {
    char path[4096 + 32];
    struct stat a = {0}, b = {0};
    snprintf(path, sizeof path, "%s/model.json", dir);
    stat(path, &a);
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    stat(path, &b);
    snprintf(out, 64, "%lld.%ld:%lld/%lld.%ld:%lld", (long long)a.st_mtim.tv_sec,
             a.st_mtim.tv_nsec, (long long)a.st_size, (long long)b.st_mtim.tv_sec,
             b.st_mtim.tv_nsec, (long long)b.st_size);
}

/* ---- versions ---- */

static void version_free(served_version *v) {
    if (!v) return;
    if (v->loaded_gauge) kiln_prom_set(v->loaded_gauge, 0);
    serve_slots_free(v);
    kiln_servable_free(v->sv);
    free(v);
}

void serve_version_release(served_version *v) {
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) version_free(v);
}

static served_version *version_load(served_model *m, int64_t version, const char *dir) {
    kiln_server *s = m->srv;
    served_version *v = calloc(1, sizeof *v);
    if (!v) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&v->refs, 1);
    v->model = m;
    v->version = version;
    snprintf(v->version_str, sizeof v->version_str, "%" PRId64, version);
    if (kiln_servable_load(dir, &v->sv)) {
        free(v);
        return NULL;
    }
    const kiln_servable_tensor *in = kiln_servable_input(v->sv, 0),
                               *out = kiln_servable_output(v->sv, 0);
    v->in_row = kiln_servable_row_size(in);
    v->row = in->shape;
    v->row.ndim--;
    memmove(v->row.dims, v->row.dims + 1, (size_t)v->row.ndim * sizeof *v->row.dims);
    v->out_row = kiln_servable_row_size(out);
    v->has_probs = kiln_servable_output_count(v->sv) > 1;
    v->n_classes = kiln_servable_class_count(v->sv);
    v->n_slots = s->n_slots;
    v->slots = calloc((size_t)v->n_slots, sizeof *v->slots);
    if (!v->slots) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        version_free(v);
        return NULL;
    }
    for (int i = 0; i < v->n_slots; i++) pthread_mutex_init(&v->slots[i].mu, NULL);
    if (serve_warm_up(s, v)) {
        version_free(v);
        return NULL;
    }
    v->loaded_gauge = kiln_prom_series_of(s->f_loaded, (const char *[]){m->name, v->version_str});
    return v;
}

/* Puts v into the table (the poller's reference passes to the table). */
static void table_insert(served_model *m, served_version *v) {
    pthread_mutex_lock(&m->mu);
    if (m->n_loaded == m->cap_loaded) {
        int cap = m->cap_loaded ? 2 * m->cap_loaded : 4;
        served_version **t = realloc(m->loaded, (size_t)cap * sizeof *t);
        if (!t) {
            pthread_mutex_unlock(&m->mu);
            serve_log(m->srv, "model %s: out of memory adding version %" PRId64, m->name,
                      v->version);
            serve_version_release(v);
            return;
        }
        m->loaded = t, m->cap_loaded = cap;
    }
    int i = m->n_loaded;
    while (i > 0 && m->loaded[i - 1]->version > v->version) i--;
    memmove(&m->loaded[i + 1], &m->loaded[i], (size_t)(m->n_loaded - i) * sizeof *m->loaded);
    m->loaded[i] = v;
    m->n_loaded++;
    version_record *r = record_of(m, v->version, 1);
    if (r) r->state = VS_AVAILABLE, free(r->error), r->error = NULL;
    pthread_mutex_unlock(&m->mu);
    if (v->loaded_gauge) kiln_prom_set(v->loaded_gauge, 1);
}

/* Takes version i out of the table and drops the table's reference. */
static void table_remove(served_model *m, int64_t version) {
    served_version *gone = NULL;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_loaded; i++)
        if (m->loaded[i]->version == version) {
            gone = m->loaded[i];
            memmove(&m->loaded[i], &m->loaded[i + 1],
                    (size_t)(m->n_loaded - i - 1) * sizeof *m->loaded);
            m->n_loaded--;
            break;
        }
    version_record *r = record_of(m, version, 1);
    if (r) r->state = VS_END;
    pthread_mutex_unlock(&m->mu);
    if (gone) {
        if (gone->loaded_gauge) kiln_prom_set(gone->loaded_gauge, 0);
        gone->loaded_gauge = NULL;
        serve_version_release(gone);
    }
}

static int is_loaded(served_model *m, int64_t version) {
    pthread_mutex_lock(&m->mu);
    int found = 0;
    for (int i = 0; i < m->n_loaded && !found; i++) found = m->loaded[i]->version == version;
    pthread_mutex_unlock(&m->mu);
    return found;
}

/* 1 when the version failed to load and its files have not changed since. */
static int failed_before(served_model *m, int64_t version, const char *stamp) {
    pthread_mutex_lock(&m->mu);
    version_record *r = record_of(m, version, 0);
    int failed = r && r->error && strcmp(r->stamp, stamp) == 0;
    pthread_mutex_unlock(&m->mu);
    return failed;
}

static int policy_lists(const served_model *m, int64_t version) {
    for (int i = 0; i < m->n_versions; i++)
        if (m->versions[i] == version) return 1;
    return 0;
}

/* A models:/ URI: where its versions are now and which one it names. 0 when resolved. */
static int resolve_uri(served_model *m) {
    char base[4096];
    int64_t version = 0;
    if (kiln_registry_resolve_model_uri(m->runs_dir, m->uri, base, sizeof base, &version)) {
        if (strcmp(m->uri_error, kiln_last_error()) != 0) {
            /* the error begins with the URI (kiln_registry_resolve_model_uri prefixes it) */
            serve_log(m->srv, "model %s: %s (still serving what is loaded)", m->name,
                      kiln_last_error());
            snprintf(m->uri_error, sizeof m->uri_error, "%s", kiln_last_error());
        }
        return -1;
    }
    m->uri_error[0] = 0;
    if (!m->base_path || strcmp(base, m->base_path) != 0) {
        char *b = strdup(base);
        if (!b) return -1;
        free(m->base_path);
        m->base_path = b;
    }
    if (version != m->uri_version && version > 0)
        serve_log(m->srv, "model %s: %s is version %" PRId64, m->name, m->uri, version);
    m->uri_version = version;
    return 0;
}

static void poll_model(served_model *m) {
    kiln_server *s = m->srv;
    if (m->uri && resolve_uri(m)) return;
    int64_t *found = NULL;
    int n = 0;
    kiln_status st = kiln_export_list_versions(m->base_path, &found, &n);
    if (st && st != KILN_ERR_NOTFOUND) {
        if (!m->warned_empty)
            serve_log(s, "model %s: cannot list %s: %s", m->name, m->base_path,
                      kiln_last_error());
        m->warned_empty = 1;
        return; /* keep serving what is loaded: the folder may come back */
    }
    /* Which versions the policy wants, newest first; failed versions (files unchanged) are
     * skipped so that "latest" falls back to the newest loadable one. */
    int64_t *want = malloc((size_t)(n + 1) * sizeof *want);
    if (!want) {
        serve_log(s, "model %s: out of memory polling %s", m->name, m->base_path);
        kiln_free(found);
        return;
    }
    int n_want = 0, limit = m->policy == KILN_VERSIONS_LATEST ? (m->latest_n > 0 ? m->latest_n : 1)
                                                               : n;
    if (m->uri_version > 0) limit = n; /* the URI names one version: the filter below */
    char stamp[64], dir[4096];
    if (strlen(m->base_path) > sizeof dir - 32) {
        if (!m->warned_empty) serve_log(s, "model %s: base path too long", m->name);
        m->warned_empty = 1;
        free(want);
        kiln_free(found);
        return;
    }
    for (int i = n - 1; i >= 0 && n_want < limit; i--) {
        if (m->uri_version > 0 ? found[i] != m->uri_version
                               : m->policy == KILN_VERSIONS_SPECIFIC && !policy_lists(m, found[i]))
            continue;
        snprintf(dir, sizeof dir, "%s/%" PRId64, m->base_path, found[i]);
        files_stamp(dir, stamp);
        if (failed_before(m, found[i], stamp)) continue;
        if (is_loaded(m, found[i])) {
            want[n_want++] = found[i];
            continue;
        }
        set_record(m, found[i], VS_LOADING, NULL, NULL);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        served_version *v = version_load(m, found[i], dir);
        if (!v) {
            serve_log(s, "model %s: version %" PRId64 " failed to load, skipped: %s", m->name,
                      found[i], kiln_last_error());
            set_record(m, found[i], VS_END, kiln_last_error(), stamp);
            if (m->load_failures) kiln_prom_add(m->load_failures, 1);
            continue; /* the next older version may take its place */
        }
        table_insert(m, v);
        serve_log(s, "model %s: version %" PRId64 " loaded and warmed up in %.1f ms", m->name,
                  found[i], serve_seconds_since(&t0) * 1e3);
        want[n_want++] = found[i];
    }
    if (n == 0 && !m->warned_empty) {
        serve_log(s, "model %s: no versions under %s yet (waiting for one)", m->name,
                  m->base_path);
        m->warned_empty = 1;
    }
    if (n) m->warned_empty = 0;
    /* Unload what is no longer wanted, once its replacement is in. */
    int64_t loaded[256];
    int n_loaded = serve_repo_loaded(m, loaded, 256);
    for (int i = 0; i < n_loaded; i++) {
        int keep = 0;
        for (int k = 0; k < n_want && !keep; k++) keep = want[k] == loaded[i];
        if (!keep) {
            set_record(m, loaded[i], VS_UNLOADING, NULL, NULL);
            table_remove(m, loaded[i]);
            serve_log(s, "model %s: version %" PRId64 " unloaded", m->name, loaded[i]);
        }
    }
    free(want);
    kiln_free(found);
}

void serve_repo_poll(kiln_server *s) {
    for (int i = 0; i < s->n_models; i++) poll_model(&s->models[i]);
}

/* ---- lookups ---- */

served_model *serve_repo_find(kiln_server *s, const char *name) {
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return &s->models[i];
    return NULL;
}

int serve_repo_sel_version(const served_model *m, const version_sel *sel, int64_t *version) {
    *version = sel->number;
    if (sel->kind != SEL_LABEL) return 0;
    for (int i = 0; i < m->n_labels; i++)
        if (strcmp(m->label_names[i], sel->label) == 0) return *version = m->label_versions[i], 0;
    /* TF Serving's words and code (INVALID_ARGUMENT: 400), and the labels there are */
    char known[256] = "";
    size_t n = 0;
    for (int i = 0; i < m->n_labels && n < sizeof known; i++)
        n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "",
                              m->label_names[i]);
    kiln_error(KILN_ERR_INVALID, "Unrecognized servable version label: %.64s (model %s has %s%s)",
               sel->label, m->name, m->n_labels ? "labels " : "no labels", known);
    return -1;
}

served_version *serve_repo_acquire(served_model *m, const version_sel *sel, int *http_status) {
    served_version *v = NULL;
    int64_t want;
    if (serve_repo_sel_version(m, sel, &want)) {
        *http_status = 400;
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    if (sel->kind == SEL_LATEST) {
        if (m->n_loaded) v = m->loaded[m->n_loaded - 1];
    } else {
        for (int i = 0; i < m->n_loaded && !v; i++)
            if (m->loaded[i]->version == want) v = m->loaded[i];
    }
    if (v) atomic_fetch_add(&v->refs, 1);
    int any = m->n_loaded > 0;
    pthread_mutex_unlock(&m->mu);
    if (v) return v;
    if (sel->kind == SEL_LATEST) {
        *http_status = 503;
        kiln_error(KILN_ERR_NOTFOUND, "Servable not found for request: Latest(%s): no version "
                   "is loaded yet", m->name);
    } else {
        *http_status = 404;
        kiln_error(KILN_ERR_NOTFOUND, "Servable not found for request: Specific(%s, %" PRId64
                   ")%s", m->name, want, any ? "" : ": no version is loaded yet");
    }
    return NULL;
}

int serve_repo_loaded(served_model *m, int64_t *out, int cap) {
    pthread_mutex_lock(&m->mu);
    int n = m->n_loaded < cap ? m->n_loaded : cap;
    for (int i = 0; i < n; i++) out[i] = m->loaded[i]->version;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int serve_repo_seen(served_model *m, int64_t version) {
    pthread_mutex_lock(&m->mu);
    int seen = record_of(m, version, 0) != NULL;
    pthread_mutex_unlock(&m->mu);
    return seen;
}

int serve_repo_ready(kiln_server *s) {
    for (int i = 0; i < s->n_models; i++) {
        pthread_mutex_lock(&s->models[i].mu);
        int any = s->models[i].n_loaded > 0;
        pthread_mutex_unlock(&s->models[i].mu);
        if (!any) return 0;
    }
    return 1;
}

/* ---- setup ---- */

static int name_ok(const char *n) {
    if (!n || !*n) return 0;
    for (const char *p = n; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

kiln_status serve_repo_init(kiln_server *s) {
    const kiln_serve_config *c = &s->cfg;
    if (c->n_models < 1) return kiln_error(KILN_ERR_INVALID, "serve: no model to serve");
    s->models = calloc((size_t)c->n_models, sizeof *s->models);
    if (!s->models) return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
    s->n_models = c->n_models;
    for (int i = 0; i < c->n_models; i++) pthread_mutex_init(&s->models[i].mu, NULL);
    for (int i = 0; i < c->n_models; i++) {
        const kiln_serve_model *src = &c->models[i];
        served_model *m = &s->models[i];
        m->srv = s;
        if (!name_ok(src->name))
            return kiln_error(KILN_ERR_INVALID,
                              "serve: model name '%s' must be letters, digits, '_', '-' or '.'",
                              src->name ? src->name : "");
        for (int k = 0; k < i; k++)
            if (strcmp(s->models[k].name, src->name) == 0)
                return kiln_error(KILN_ERR_INVALID, "serve: model '%s' is configured twice",
                                  src->name);
        if (!src->base_path || !*src->base_path)
            return kiln_error(KILN_ERR_INVALID, "serve: model '%s' has no base_path", src->name);
        if (src->policy == KILN_VERSIONS_SPECIFIC && src->n_versions < 1)
            return kiln_error(KILN_ERR_INVALID,
                              "serve: model '%s': the specific version policy lists no version",
                              src->name);
        if (src->latest_n < 0)
            return kiln_error(KILN_ERR_INVALID, "serve: model '%s': latest num_versions %d < 1",
                              src->name, src->latest_n);
        m->name = strdup(src->name);
        if (strncmp(src->base_path, "models:/", 8) == 0) {
            m->uri = strdup(src->base_path);
            m->runs_dir = strdup(src->runs_dir ? src->runs_dir : "runs");
            if (!m->uri || !m->runs_dir) return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
        } else if (!(m->base_path = strdup(src->base_path))) {
            return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
        }
        m->policy = src->policy;
        m->latest_n = src->latest_n;
        m->n_versions = src->n_versions;
        m->versions = malloc((size_t)(src->n_versions + 1) * sizeof *m->versions);
        m->n_labels = src->n_labels;
        m->label_names = calloc((size_t)src->n_labels + 1, sizeof *m->label_names);
        m->label_versions = malloc((size_t)(src->n_labels + 1) * sizeof *m->label_versions);
        if (!m->name || !m->versions || !m->label_names || !m->label_versions)
            return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
        for (int k = 0; k < src->n_versions; k++) {
            if (src->versions[k] < 1)
                return kiln_error(KILN_ERR_INVALID, "serve: model '%s': version %" PRId64
                                  " must be >= 1", src->name, src->versions[k]);
            m->versions[k] = src->versions[k];
        }
        for (int k = 0; k < src->n_labels; k++) {
            if (!name_ok(src->labels[k].label) || src->labels[k].version < 1)
                return kiln_error(KILN_ERR_INVALID,
                                  "serve: model '%s': bad version label '%s' -> %" PRId64,
                                  src->name, src->labels[k].label ? src->labels[k].label : "",
                                  src->labels[k].version);
            if (!(m->label_names[k] = strdup(src->labels[k].label)))
                return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
            m->label_versions[k] = src->labels[k].version;
        }
        m->load_failures = kiln_prom_series_of(s->f_failures, (const char *[]){m->name});
        m->batch_sizes = kiln_prom_series_of(s->f_batch, (const char *[]){m->name});
    }
    return KILN_OK;
}

void serve_repo_free(kiln_server *s) {
    for (int i = 0; i < s->n_models; i++) {
        served_model *m = &s->models[i];
        for (int k = 0; k < m->n_loaded; k++) serve_version_release(m->loaded[k]);
        free(m->loaded);
        for (int k = 0; k < m->n_records; k++) free(m->records[k].error);
        free(m->records);
        for (int k = 0; k < m->n_labels; k++) free(m->label_names[k]);
        free(m->label_names);
        free(m->label_versions);
        free(m->versions);
        free(m->name);
        free(m->base_path);
        free(m->uri);
        free(m->runs_dir);
        pthread_mutex_destroy(&m->mu);
    }
    free(s->models);
    s->models = NULL;
}
