/* board_mlflow_models.c — the MLflow model registry subset on kiln's model registry:
 * registered-models/create, get, search, get-latest-versions; model-versions/create, get, search;
 * registered-models/alias (POST set, GET get, DELETE delete).
 *
 * kiln's registered models (runs/kiln.db: models, model_versions, aliases; kiln/registry.h)
 * appear as MLflow registered models, their versions as model versions (source: the version
 * folder, run_id: the source run's MLflow id, status READY) and their aliases as aliases. What
 * MLflow has and kiln's registry does not (a model with no version yet, descriptions, tags,
 * and versions whose source is not a kiln run with a checkpoint) is kept in
 * <runs_dir>/models/<name>/mlflow-model.json (name as given, times, description, tags, and such
 * "external" versions with their source URI and aliases). model-versions/create with the run_id
 * of a kiln run that has a checkpoint registers it the kiln way (kiln_registry_register_model:
 * the checkpoint is exported into models/<name>/<version>/, servable by kiln serve); any other
 * source is recorded as an external version. Versions of both kinds share one numbering.
 * Aliases of kiln versions go to the registry (so `kiln models` and models:/NAME@ALIAS see them);
 * those of external versions to mlflow-model.json.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "board/board_mlflow.h"
#include "kiln/fileio.h"
#include "kiln/registry.h"

#define MAX_VERSIONS 4096

typedef struct {
    int64_t version;
    int64_t created;
    char *source, *run_id, *description;
    char *aliases; /* "a,b" */
    const cJSON *tags;
    int kiln; /* in kiln's registry */
} mversion;

typedef struct {
    char name[KILN_RUN_NAME_MAX * 2 + 8];
    char folder[KILN_RUN_NAME_MAX + 1];
    cJSON *meta; /* mlflow-model.json (NULL when none) */
    int exists;
    int64_t created, updated;
    mversion *v;
    int n;
} model;

static void model_free(model *m) {
    for (int i = 0; i < m->n; i++)
        free(m->v[i].source), free(m->v[i].run_id), free(m->v[i].description),
            free(m->v[i].aliases);
    free(m->v);
    cJSON_Delete(m->meta);
    memset(m, 0, sizeof *m);
}

static void meta_path(kiln_board *b, const char *folder, char *path, size_t cap) {
    snprintf(path, cap, "%s/models/%s/mlflow-model.json", b->runs_dir, folder);
}

static mversion *add_version(model *m) {
    if (m->n == MAX_VERSIONS) return NULL;
    mversion *v = realloc(m->v, (size_t)(m->n + 1) * sizeof *v);
    if (!v) return NULL;
    m->v = v;
    memset(&v[m->n], 0, sizeof *v);
    return &v[m->n++];
}

typedef struct {
    model *m;
    kiln_board *b;
} kiln_ctx;

static int on_kiln_version(const kiln_registry_model_version *kv, void *ctx) {
    kiln_ctx *c = ctx;
    mversion *v = add_version(c->m);
    if (!v) return 1;
    v->kiln = 1;
    v->version = kv->version;
    v->created = mlf_iso_ms(kv->created);
    v->source = strdup(kv->path ? kv->path : "");
    char id[MLF_ID_MAX] = "";
    if (kv->run) mlf_hex(kv->run, id, sizeof id);
    v->run_id = strdup(id);
    kiln_sbuf a = KILN_SBUF_INIT;
    for (const char *p = kv->aliases ? kv->aliases : ""; *p;) {
        size_t n = strcspn(p, ", ");
        if (n) {
            if (a.len) kiln_sbuf_putc(&a, ',');
            kiln_sbuf_put(&a, p, n);
        }
        p += n;
        while (*p == ',' || *p == ' ') p++;
    }
    v->aliases = kiln_sbuf_take(&a, NULL);
    if (!v->aliases) v->aliases = strdup("");
    return 0;
}

static int cmp_version(const void *a, const void *b) {
    int64_t x = ((const mversion *)a)->version, y = ((const mversion *)b)->version;
    return (x > y) - (x < y);
}

/* Loads model name: kiln's versions and mlflow-model.json. m->exists when either has it. */
static void model_load(kiln_board *b, kiln_registry *reg, const char *name, model *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    kiln_run_sanitize(name, m->folder);
    char path[4096];
    meta_path(b, m->folder, path, sizeof path);
    m->meta = mlf_read_json(path);
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(m->meta, "name");
    if (m->meta && (!cJSON_IsString(mn) || strcmp(mn->valuestring, name))) {
        cJSON_Delete(m->meta); /* another name that sanitizes to the same folder */
        m->meta = NULL;
    }
    if (reg && kiln_registry_valid_name(name)) {
        kiln_ctx c = {m, b};
        if (kiln_registry_list_models(reg, name, on_kiln_version, &c)) kiln_error_clear();
    }
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(m->meta, "versions"), *x;
    cJSON_ArrayForEach(x, vs) {
        mversion *v = add_version(m);
        if (!v) break;
        v->version = strtoll(x->string, NULL, 10);
        const cJSON *f;
        v->created = cJSON_IsNumber(f = cJSON_GetObjectItemCaseSensitive(x, "creation_timestamp"))
                         ? (int64_t)f->valuedouble
                         : 0;
        f = cJSON_GetObjectItemCaseSensitive(x, "source");
        v->source = strdup(cJSON_IsString(f) ? f->valuestring : "");
        f = cJSON_GetObjectItemCaseSensitive(x, "run_id");
        v->run_id = strdup(cJSON_IsString(f) ? f->valuestring : "");
        f = cJSON_GetObjectItemCaseSensitive(x, "description");
        v->description = strdup(cJSON_IsString(f) ? f->valuestring : "");
        v->tags = cJSON_GetObjectItemCaseSensitive(x, "tags");
        v->aliases = strdup("");
    }
    /* external versions' aliases */
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(m->meta, "aliases");
    cJSON_ArrayForEach(x, al) {
        if (!cJSON_IsString(x)) continue;
        int64_t ver = strtoll(x->valuestring, NULL, 10);
        for (int i = 0; i < m->n; i++)
            if (!m->v[i].kiln && m->v[i].version == ver) {
                kiln_sbuf a = KILN_SBUF_INIT;
                kiln_sbuf_printf(&a, "%s%s%s", m->v[i].aliases, m->v[i].aliases[0] ? "," : "",
                                 x->string);
                free(m->v[i].aliases);
                m->v[i].aliases = kiln_sbuf_take(&a, NULL);
                if (!m->v[i].aliases) m->v[i].aliases = strdup("");
            }
    }
    if (m->n > 0) qsort(m->v, (size_t)m->n, sizeof *m->v, cmp_version);
    m->exists = m->meta != NULL || m->n > 0;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(m->meta, "creation_timestamp");
    const cJSON *ut = cJSON_GetObjectItemCaseSensitive(m->meta, "last_updated_timestamp");
    m->created = cJSON_IsNumber(ct) ? (int64_t)ct->valuedouble : m->n ? m->v[0].created : 0;
    m->updated = cJSON_IsNumber(ut) ? (int64_t)ut->valuedouble : m->created;
    for (int i = 0; i < m->n; i++)
        if (m->v[i].created > m->updated) m->updated = m->v[i].created;
}

static void render_tags_obj(kiln_sbuf *s, const cJSON *tags) {
    kiln_sbuf_putc(s, '[');
    const cJSON *t;
    int n = 0;
    cJSON_ArrayForEach(t, tags) {
        if (!cJSON_IsString(t)) continue;
        kiln_sbuf_puts(s, n++ ? ",{\"key\":" : "{\"key\":");
        kiln_sbuf_json_str(s, t->string);
        kiln_sbuf_puts(s, ",\"value\":");
        kiln_sbuf_json_str(s, t->valuestring);
        kiln_sbuf_putc(s, '}');
    }
    kiln_sbuf_putc(s, ']');
}

static void render_version(const model *m, const mversion *v, kiln_sbuf *s) {
    kiln_sbuf_puts(s, "{\"name\":");
    kiln_sbuf_json_str(s, m->name);
    kiln_sbuf_printf(s,
                     ",\"version\":\"%lld\",\"creation_timestamp\":%lld,"
                     "\"last_updated_timestamp\":%lld,\"current_stage\":\"None\",\"description\":",
                     (long long)v->version, (long long)v->created, (long long)v->created);
    kiln_sbuf_json_str(s, v->description ? v->description : "");
    kiln_sbuf_puts(s, ",\"source\":");
    kiln_sbuf_json_str(s, v->source);
    kiln_sbuf_puts(s, ",\"run_id\":");
    kiln_sbuf_json_str(s, v->run_id);
    kiln_sbuf_puts(s, ",\"status\":\"READY\",\"tags\":");
    render_tags_obj(s, v->tags);
    kiln_sbuf_puts(s, ",\"aliases\":[");
    int n = 0;
    for (const char *p = v->aliases; *p;) {
        size_t k = strcspn(p, ",");
        if (n++) kiln_sbuf_putc(s, ',');
        char a[KILN_REGISTRY_NAME_MAX * 2 + 2];
        snprintf(a, sizeof a, "%.*s", (int)k, p);
        kiln_sbuf_json_str(s, a);
        p += k;
        if (*p) p++;
    }
    kiln_sbuf_puts(s, "]}");
}

static void render_model(const model *m, kiln_sbuf *s) {
    kiln_sbuf_puts(s, "{\"name\":");
    kiln_sbuf_json_str(s, m->name);
    kiln_sbuf_printf(s, ",\"creation_timestamp\":%lld,\"last_updated_timestamp\":%lld",
                     (long long)m->created, (long long)m->updated);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(m->meta, "description");
    kiln_sbuf_puts(s, ",\"description\":");
    kiln_sbuf_json_str(s, cJSON_IsString(d) ? d->valuestring : "");
    kiln_sbuf_puts(s, ",\"latest_versions\":[");
    if (m->n) render_version(m, &m->v[m->n - 1], s);
    kiln_sbuf_puts(s, "],\"tags\":");
    render_tags_obj(s, cJSON_GetObjectItemCaseSensitive(m->meta, "tags"));
    kiln_sbuf_puts(s, ",\"aliases\":[");
    int n = 0;
    for (int i = 0; i < m->n; i++)
        for (const char *p = m->v[i].aliases; *p;) {
            size_t k = strcspn(p, ",");
            char a[KILN_REGISTRY_NAME_MAX * 2 + 2];
            snprintf(a, sizeof a, "%.*s", (int)k, p);
            kiln_sbuf_puts(s, n++ ? ",{\"alias\":" : "{\"alias\":");
            kiln_sbuf_json_str(s, a);
            kiln_sbuf_printf(s, ",\"version\":\"%lld\"}", (long long)m->v[i].version);
            p += k;
            if (*p) p++;
        }
    kiln_sbuf_puts(s, "]}");
}

static kiln_status save_meta(kiln_board *b, model *m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", b->runs_dir, m->folder);
    kiln_status st = kiln_mkdirs(path);
    if (st) return st;
    meta_path(b, m->folder, path, sizeof path);
    return mlf_write_json(path, m->meta);
}

static cJSON *meta_obj(cJSON *parent, const char *k) {
    cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, k);
    if (cJSON_IsObject(o)) return o;
    cJSON_DeleteItemFromObjectCaseSensitive(parent, k);
    return cJSON_AddObjectToObject(parent, k);
}

static void put_tag_list(cJSON *obj, const cJSON *list) {
    const cJSON *t;
    cJSON_ArrayForEach(t, list) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(t, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, "value");
        if (!cJSON_IsString(k)) continue;
        cJSON_DeleteItemFromObjectCaseSensitive(obj, k->valuestring);
        cJSON_AddStringToObject(obj, k->valuestring, cJSON_IsString(v) ? v->valuestring : "");
    }
}

static void ensure_meta(model *m) {
    if (m->meta) return;
    m->meta = cJSON_CreateObject();
    cJSON_AddStringToObject(m->meta, "name", m->name);
    cJSON_AddNumberToObject(m->meta, "creation_timestamp",
                            (double)(m->created ? m->created : mlf_now_ms()));
}

/* ---- endpoints ---- */

static void rm_create(kiln_board *b, kiln_registry *reg, const mlf_req *r,
                      kiln_http_response *resp) {
    const char *name = mlf_need(r, resp, "name");
    if (!name) return;
    model m;
    model_load(b, reg, name, &m);
    if (m.exists) {
        mlf_error(resp, "RESOURCE_ALREADY_EXISTS", "Registered Model (name=%s) already exists.",
                  name);
    } else if (!strcmp(m.folder, "_") || m.folder[0] == '.') {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid registered model name '%s'", name);
    } else {
        ensure_meta(&m);
        m.created = m.updated = mlf_now_ms();
        const char *d = mlf_str(r, "description");
        if (d) cJSON_AddStringToObject(m.meta, "description", d);
        put_tag_list(meta_obj(m.meta, "tags"), cJSON_GetObjectItemCaseSensitive(r->j, "tags"));
        if (save_meta(b, &m)) {
            mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
        } else {
            m.exists = 1;
            kiln_sbuf s = KILN_SBUF_INIT;
            kiln_sbuf_puts(&s, "{\"registered_model\":");
            render_model(&m, &s);
            kiln_sbuf_putc(&s, '}');
            kiln_http_body_sbuf(resp, &s);
        }
    }
    model_free(&m);
}

static int need_model(kiln_board *b, kiln_registry *reg, const mlf_req *r, kiln_http_response *resp,
                      model *m) {
    const char *name = mlf_need(r, resp, "name");
    if (!name) return 0;
    model_load(b, reg, name, m);
    if (!m->exists) {
        mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "Registered Model with name=%s not found", name);
        model_free(m);
        return 0;
    }
    return 1;
}

static void rm_get(kiln_board *b, kiln_registry *reg, const mlf_req *r, kiln_http_response *resp) {
    model m;
    if (!need_model(b, reg, r, resp, &m)) return;
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"registered_model\":");
    render_model(&m, &s);
    kiln_sbuf_putc(&s, '}');
    model_free(&m);
    kiln_http_body_sbuf(resp, &s);
}

/* Every model name: kiln's and those with an mlflow-model.json. */
typedef struct {
    char **names;
    int n, cap;
} names;

static void names_add(names *ns, const char *s) {
    for (int i = 0; i < ns->n; i++)
        if (!strcmp(ns->names[i], s)) return;
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? 2 * ns->cap : 32;
        char **x = realloc(ns->names, (size_t)ns->cap * sizeof *x);
        if (!x) return;
        ns->names = x;
    }
    if ((ns->names[ns->n] = strdup(s))) ns->n++;
}

static int on_any_version(const kiln_registry_model_version *v, void *ctx) {
    names_add(ctx, v->model);
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void all_names(kiln_board *b, kiln_registry *reg, names *ns) {
    if (reg && kiln_registry_list_models(reg, NULL, on_any_version, ns)) kiln_error_clear();
    char path[4096];
    snprintf(path, sizeof path, "%s/models", b->runs_dir);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        meta_path(b, e->d_name, path, sizeof path);
        cJSON *j = mlf_read_json(path);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "name");
        if (cJSON_IsString(n)) names_add(ns, n->valuestring);
        cJSON_Delete(j);
    }
    if (d) closedir(d);
    if (ns->n > 0) qsort(ns->names, (size_t)ns->n, sizeof *ns->names, cmp_name);
}

/* filter: "name = 'x'", "name LIKE 'x%'" / ILIKE, or (model versions) "run_id = 'x'". */
typedef struct {
    char field[16], op[8], value[512];
} simple_filter;

static int parse_simple(const char *f, simple_filter *sf, kiln_http_response *resp) {
    memset(sf, 0, sizeof *sf);
    if (!f || !*f) return 1;
    if (sscanf(f, " %15[a-z_] %7[=A-Za-z] '%511[^']'", sf->field, sf->op, sf->value) == 3 &&
        (!strcmp(sf->field, "name") || !strcmp(sf->field, "run_id")) &&
        (!strcmp(sf->op, "=") || !strcasecmp(sf->op, "LIKE") || !strcasecmp(sf->op, "ILIKE")))
        return 1;
    mlf_error(resp, "INVALID_PARAMETER_VALUE",
              "Invalid filter '%s': expected name = 'X', name LIKE 'X%%' or run_id = 'X'", f);
    return 0;
}

static int like_match(const char *s, const char *p, int icase) {
    if (!*p) return !*s;
    if (*p == '%') {
        for (;; s++) {
            if (like_match(s, p + 1, icase)) return 1;
            if (!*s) return 0;
        }
    }
    if (!*s) return 0;
    int eq = icase ? strncasecmp(s, p, 1) == 0 : *s == *p;
    return (*p == '_' || eq) && like_match(s + 1, p + 1, icase);
}

static int simple_match(const simple_filter *sf, const char *field, const char *v) {
    if (!sf->field[0] || strcmp(sf->field, field)) return !sf->field[0] || !strcmp(field, "");
    if (!strcmp(sf->op, "=")) return !strcmp(v, sf->value);
    return like_match(v, sf->value, !strcasecmp(sf->op, "ILIKE"));
}

static int paging(const mlf_req *r, kiln_http_response *resp, int64_t *max, int64_t *off) {
    *max = 100, *off = 0;
    if (mlf_i64(r, "max_results", max) < 0 || *max < 1 || *max > 100000) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "max_results must be a positive integer");
        return 0;
    }
    const char *tok = mlf_str(r, "page_token");
    if (tok && *tok && (*off = mlf_page_offset(tok)) < 0) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid page token '%s'", tok);
        return 0;
    }
    return 1;
}

static void rm_search(kiln_board *b, kiln_registry *reg, const mlf_req *r, kiln_http_response *resp,
                      int versions) {
    int64_t max, off;
    simple_filter sf;
    if (!paging(r, resp, &max, &off) || !parse_simple(mlf_str(r, "filter"), &sf, resp)) return;
    if (!versions && !strcmp(sf.field, "run_id")) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "registered models are filtered by name");
        return;
    }
    names ns = {0};
    all_names(b, reg, &ns);
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, versions ? "{\"model_versions\":[" : "{\"registered_models\":[");
    int64_t total = 0, shown = 0;
    for (int i = 0; i < ns.n; i++) {
        if (!strcmp(sf.field, "name") && !simple_match(&sf, "name", ns.names[i])) continue;
        model m;
        model_load(b, reg, ns.names[i], &m);
        if (!versions) {
            if (m.exists && total++ >= off && shown < max) {
                if (shown++) kiln_sbuf_putc(&s, ',');
                render_model(&m, &s);
            }
        } else
            for (int k = 0; k < m.n; k++) {
                if (!strcmp(sf.field, "run_id") && strcmp(m.v[k].run_id, sf.value)) continue;
                if (total++ < off || shown >= max) continue;
                if (shown++) kiln_sbuf_putc(&s, ',');
                render_version(&m, &m.v[k], &s);
            }
        model_free(&m);
    }
    kiln_sbuf_putc(&s, ']');
    if (total > off + shown) {
        kiln_sbuf_puts(&s, ",\"next_page_token\":");
        mlf_page_token(&s, off + shown);
    }
    kiln_sbuf_putc(&s, '}');
    for (int i = 0; i < ns.n; i++) free(ns.names[i]);
    free(ns.names);
    kiln_http_body_sbuf(resp, &s);
}

static mversion *find_version(model *m, const char *ver) {
    char *end;
    long long v = ver ? strtoll(ver, &end, 10) : 0;
    if (!ver || !*ver || *end) return NULL;
    for (int i = 0; i < m->n; i++)
        if (m->v[i].version == v) return &m->v[i];
    return NULL;
}

static void answer_version(model *m, mversion *v, kiln_http_response *resp) {
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"model_version\":");
    render_version(m, v, &s);
    kiln_sbuf_putc(&s, '}');
    kiln_http_body_sbuf(resp, &s);
}

static void mv_create(kiln_board *b, kiln_registry *reg, const mlf_req *r,
                      kiln_http_response *resp) {
    model m;
    if (!need_model(b, reg, r, resp, &m)) return;
    const char *source = mlf_str(r, "source"), *run_id = mlf_str(r, "run_id");
    const char *desc = mlf_str(r, "description");
    if ((!source || !*source) && (!run_id || !*run_id)) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "Missing value for required parameter 'source'.");
        model_free(&m);
        return;
    }
    int64_t next = m.n ? m.v[m.n - 1].version + 1 : 1, got = 0;
    char key[600];
    /* a kiln run with a checkpoint: a real kiln model version */
    if (run_id && *run_id && reg && kiln_registry_valid_name(m.name) &&
        mlf_unhex(run_id, key, sizeof key)) {
        if (kiln_registry_register_model(reg, key, m.name, NULL, next, &got, NULL, 0)) {
            kiln_error_clear();
            got = 0;
        }
    }
    int external = !got;
    if (external) {
        ensure_meta(&m);
        cJSON *vs = meta_obj(m.meta, "versions");
        char vk[32];
        snprintf(vk, sizeof vk, "%lld", (long long)next);
        cJSON *v = cJSON_AddObjectToObject(vs, vk);
        cJSON_AddStringToObject(v, "source", source ? source : "");
        cJSON_AddStringToObject(v, "run_id", run_id ? run_id : "");
        cJSON_AddStringToObject(v, "description", desc ? desc : "");
        cJSON_AddNumberToObject(v, "creation_timestamp", (double)mlf_now_ms());
        put_tag_list(meta_obj(v, "tags"), cJSON_GetObjectItemCaseSensitive(r->j, "tags"));
        got = next;
    }
    if (m.meta) {
        cJSON_DeleteItemFromObjectCaseSensitive(m.meta, "last_updated_timestamp");
        cJSON_AddNumberToObject(m.meta, "last_updated_timestamp", (double)mlf_now_ms());
        if (save_meta(b, &m)) {
            mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
            model_free(&m);
            return;
        }
    }
    char name[sizeof m.name];
    snprintf(name, sizeof name, "%s", m.name);
    model_free(&m);
    model_load(b, reg, name, &m);
    char vs[32];
    snprintf(vs, sizeof vs, "%lld", (long long)got);
    mversion *v = find_version(&m, vs);
    if (v)
        answer_version(&m, v, resp);
    else
        mlf_error(resp, "INTERNAL_ERROR", "version %s of %s cannot be read back", vs, name);
    model_free(&m);
}

static void mv_get(kiln_board *b, kiln_registry *reg, const mlf_req *r, kiln_http_response *resp) {
    model m;
    if (!need_model(b, reg, r, resp, &m)) return;
    const char *ver = mlf_str(r, "version");
    mversion *v = find_version(&m, ver);
    if (!v)
        mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "Model Version (name=%s, version=%s) not found",
                  m.name, ver ? ver : "");
    else
        answer_version(&m, v, resp);
    model_free(&m);
}

/* registered-models/get-latest-versions: the highest version (every version's stage is "None";
 * stages other than None select nothing). */
static void rm_latest(kiln_board *b, kiln_registry *reg, const mlf_req *r,
                      kiln_http_response *resp) {
    model m;
    if (!need_model(b, reg, r, resp, &m)) return;
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(r->j, "stages"), *x;
    int none = !cJSON_GetArraySize(stages) && !cJSON_IsString(stages);
    if (cJSON_IsString(stages)) none = !strcasecmp(stages->valuestring, "None");
    cJSON_ArrayForEach(x, stages) {
        if (cJSON_IsString(x) && !strcasecmp(x->valuestring, "None")) none = 1;
    }
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"model_versions\":[");
    if (none && m.n) render_version(&m, &m.v[m.n - 1], &s);
    kiln_sbuf_puts(&s, "]}");
    model_free(&m);
    kiln_http_body_sbuf(resp, &s);
}

static void alias_route(kiln_board *b, kiln_registry *reg, kiln_http_method method,
                        const mlf_req *r, kiln_http_response *resp) {
    model m;
    if (!need_model(b, reg, r, resp, &m)) return;
    const char *alias = mlf_need(r, resp, "alias");
    if (!alias) {
        model_free(&m);
        return;
    }
    mversion *owner = NULL; /* the version the alias names now */
    for (int i = 0; i < m.n && !owner; i++) {
        size_t n = strlen(alias);
        for (const char *p = m.v[i].aliases; *p && !owner;) {
            size_t k = strcspn(p, ",");
            if (k == n && !strncmp(p, alias, n)) owner = &m.v[i];
            p += k;
            if (*p) p++;
        }
    }
    if (method == KILN_HTTP_GET) {
        if (!owner)
            mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "Registered model alias %s not found.",
                      alias);
        else
            answer_version(&m, owner, resp);
        model_free(&m);
        return;
    }
    kiln_status st = KILN_OK;
    if (method == KILN_HTTP_POST) {
        mversion *v = find_version(&m, mlf_str(r, "version"));
        if (!v) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "Model Version (name=%s, version=%s) not found", m.name,
                      mlf_str(r, "version") ? mlf_str(r, "version") : "");
            model_free(&m);
            return;
        }
        if (!kiln_registry_valid_name(alias)) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "Invalid alias '%s': letters, digits, '-', '_' and '.', not all digits",
                      alias);
            model_free(&m);
            return;
        }
        if (owner && owner != v) { /* move it */
            if (owner->kiln)
                st = kiln_registry_delete_alias(reg, m.name, alias);
            else if (m.meta)
                cJSON_DeleteItemFromObjectCaseSensitive(meta_obj(m.meta, "aliases"), alias);
        }
        if (!st && v->kiln)
            st = reg ? kiln_registry_set_alias(reg, m.name, v->version, alias) : KILN_ERR_IO;
        if (!st && !v->kiln) {
            ensure_meta(&m);
            cJSON *al = meta_obj(m.meta, "aliases");
            cJSON_DeleteItemFromObjectCaseSensitive(al, alias);
            char vs[32];
            snprintf(vs, sizeof vs, "%lld", (long long)v->version);
            cJSON_AddStringToObject(al, alias, vs);
        }
    } else { /* DELETE */
        if (!owner) {
            mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "Registered model alias %s not found.",
                      alias);
            model_free(&m);
            return;
        }
        if (owner->kiln)
            st = kiln_registry_delete_alias(reg, m.name, alias);
        else
            cJSON_DeleteItemFromObjectCaseSensitive(meta_obj(m.meta, "aliases"), alias);
    }
    if (!st && m.meta) st = save_meta(b, &m);
    if (st)
        mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
    else
        kiln_http_body_static(resp, "{}");
    model_free(&m);
}

void mlf_models_route(kiln_board *b, const char *path, const kiln_http_request *req,
                      const mlf_req *r, kiln_http_response *resp) {
    kiln_registry *reg = NULL;
    if (kiln_registry_open(b->runs_dir, &reg)) {
        kiln_error_clear(); /* external versions still work; kiln's need the registry */
        reg = NULL;
    }
    kiln_http_method m = req->method == KILN_HTTP_HEAD ? KILN_HTTP_GET : req->method;
    int get = m == KILN_HTTP_GET, post = m == KILN_HTTP_POST;
    if (!strcmp(path, "registered-models/create") && post)
        rm_create(b, reg, r, resp);
    else if (!strcmp(path, "registered-models/get") && get)
        rm_get(b, reg, r, resp);
    else if (!strcmp(path, "registered-models/search") && (get || post))
        rm_search(b, reg, r, resp, 0);
    else if (!strcmp(path, "registered-models/get-latest-versions") && (get || post))
        rm_latest(b, reg, r, resp);
    else if (!strcmp(path, "model-versions/create") && post)
        mv_create(b, reg, r, resp);
    else if (!strcmp(path, "model-versions/get") && get)
        mv_get(b, reg, r, resp);
    else if (!strcmp(path, "model-versions/search") && (get || post))
        rm_search(b, reg, r, resp, 1);
    else if (!strcmp(path, "registered-models/alias") && (get || post || m == KILN_HTTP_DELETE))
        alias_route(b, reg, m, r, resp);
    else
        mlf_error(resp, "ENDPOINT_NOT_FOUND", "no MLflow endpoint %s %s", req->method_name,
                  req->path);
    kiln_registry_close(reg);
}
