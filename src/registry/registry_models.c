/* registry_models.c — the model registry: named models, their numbered versions (each a servable
 * package exported from a run's checkpoint) and aliases, and model URIs for kiln serve.
 *
 * Layout: version V of model NAME is the folder <runs_dir>/models/NAME/V/ (model.json +
 * weights.safetensors, kiln/export.h), written by kiln_export_run, which makes it appear
 * complete or not at all and never overwrites a version. So <runs_dir>/models/NAME is a model
 * base folder in TF Serving's layout, and `kiln serve --model_base_path` serves it as is.
 *
 * Registering exports first and records the version after: the folder is the truth, and a
 * version whose row could not be written (a crash, a locked registry) is picked up by the next
 * sync (kiln_reg_sync_models), from its model.json (source run and checkpoint, creation time).
 * Aliases exist only in the registry.
 *
 * Version numbers: the next one is one past the highest that the registry or the folder knows.
 * Two processes registering at once may pick the same number; the rename in kiln_export_graph
 * lets only one win, and the other takes the next number.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "registry/registry_internal.h"
#include "run/run_internal.h"

#define MODEL_JSON_MAX (64u << 20)
#define RETRIES        16

int kiln_registry_valid_name(const char *name) {
    if (!name || !*name || name[0] == '.' || name[0] == '-' ||
        strlen(name) > KILN_REGISTRY_NAME_MAX)
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.'))
            return 0;
    return 1;
}

static int valid_alias(const char *alias) {
    if (!kiln_registry_valid_name(alias)) return 0;
    for (const char *c = alias; *c; c++)
        if (*c < '0' || *c > '9') return 1;
    return 0; /* all digits: it would read as a version */
}

static kiln_status prepare(kiln_registry *reg, const char *sql, reg_stmt **st,
                           const char *what) {
    int rc = reg_prepare(reg->db, sql, st);
    return rc == REG_OK ? KILN_OK : kiln_reg_fail(reg, rc, what);
}

/* One integer from a query with ?1 (text) and ?2 (integer, when has2); *found 0 when no row. */
static kiln_status query_int(kiln_registry *reg, const char *sql, const char *a, int has2,
                             int64_t b, int64_t *v, int *found) {
    reg_stmt *st = NULL;
    kiln_status s = prepare(reg, sql, &st, "reading models");
    if (s) return s;
    kiln_reg_bind_text(st, 1, a);
    if (has2) reg_bind_int64(st, 2, b);
    int rc = reg_step(st);
    *found = rc == REG_ROW && !reg_col_null(st, 0);
    if (*found) *v = reg_col_int64(st, 0);
    if (rc != REG_ROW && rc != REG_DONE) s = kiln_reg_fail(reg, rc, "reading models");
    reg_finalize(st);
    return s;
}

/* The texts a query with ?1 returns, joined by sep into out ("" when none). */
static kiln_status query_list(kiln_registry *reg, const char *sql, const char *a, const char *sep,
                              char *out, size_t cap) {
    reg_stmt *st = NULL;
    out[0] = 0;
    kiln_status s = prepare(reg, sql, &st, "reading models");
    if (s) return s;
    kiln_reg_bind_text(st, 1, a);
    int rc, n = 0;
    while ((rc = reg_step(st)) == REG_ROW) {
        size_t used = strlen(out);
        const char *t = kiln_reg_col_text(st, 0);
        if (t && used + strlen(t) + 8 < cap)
            snprintf(out + used, cap - used, "%s%s", n++ ? sep : "", t);
        else if (t && used + 5 < cap && !strstr(out, "..."))
            snprintf(out + used, cap - used, "%s...", n++ ? sep : "");
    }
    if (rc != REG_DONE) s = kiln_reg_fail(reg, rc, "reading models");
    reg_finalize(st);
    return s;
}

/* What a version's model.json says about where it came from. */
typedef struct {
    char run[PATH_MAX];
    char checkpoint[64];
    char created[32];
} provenance;

static void read_provenance(const char *version_dir, provenance *p) {
    memset(p, 0, sizeof *p);
    char path[PATH_MAX + 16];
    void *buf = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/model.json", version_dir);
    if (kiln_file_read_all(path, &buf, &len, MODEL_JSON_MAX)) {
        kiln_error_clear();
        return;
    }
    cJSON *j = cJSON_ParseWithLength(buf, len);
    kiln_free(buf);
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(j, "source");
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(src, "run");
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(src, "checkpoint");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(j, "created");
    if (cJSON_IsString(run)) snprintf(p->run, sizeof p->run, "%s", run->valuestring);
    if (cJSON_IsString(ck)) snprintf(p->checkpoint, sizeof p->checkpoint, "%s", ck->valuestring);
    if (cJSON_IsString(created))
        snprintf(p->created, sizeof p->created, "%s", created->valuestring);
    cJSON_Delete(j);
}

/* The run id of an absolute run path inside the runs folder ("" when it is elsewhere). */
static void run_id_of(const kiln_registry *reg, const char *run_path, char *id, size_t cap) {
    char root[PATH_MAX];
    id[0] = 0;
    if (!run_path[0] || !realpath(reg->runs_dir, root)) return;
    size_t n = strlen(root);
    if (!strncmp(run_path, root, n) && run_path[n] == '/')
        snprintf(id, cap, "%s", run_path + n + 1);
}

/* Records a version (inside a transaction). */
static kiln_status add_version(kiln_registry *reg, const char *name, int64_t version,
                               const char *run_id, const char *checkpoint, const char *created) {
    char now[24], path[KILN_REGISTRY_NAME_MAX + 48];
    kiln_run_iso_time((long long)time(NULL), now);
    snprintf(path, sizeof path, "models/%s/%lld", name, (long long)version);
    reg_stmt *st = NULL;
    kiln_status s = prepare(reg,
                            "INSERT INTO models(name, created) VALUES (?1, ?2)"
                            " ON CONFLICT DO NOTHING",
                            &st,
                            "adding a model");
    if (s) return s;
    kiln_reg_bind_text(st, 1, name);
    kiln_reg_bind_text(st, 2, now);
    s = kiln_reg_step_done(reg, st, "adding a model");
    reg_finalize(st);
    if (s) return s;
    s = prepare(reg,
                "INSERT INTO model_versions(mid, version, rid, run, checkpoint, path, created)"
                " VALUES ((SELECT mid FROM models WHERE name = ?1), ?2,"
                " (SELECT rid FROM runs WHERE id = ?3), ?3, ?4, ?5, ?6)",
                &st, "adding a model version");
    if (s) return s;
    kiln_reg_bind_text(st, 1, name);
    reg_bind_int64(st, 2, version);
    kiln_reg_bind_text(st, 3, run_id && *run_id ? run_id : NULL);
    kiln_reg_bind_text(st, 4, checkpoint && *checkpoint ? checkpoint : NULL);
    kiln_reg_bind_text(st, 5, path);
    kiln_reg_bind_text(st, 6, created && *created ? created : now);
    s = kiln_reg_step_done(reg, st, "adding a model version");
    reg_finalize(st);
    return s;
}

/* ---- registering ---- */

static int folder_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

kiln_status kiln_registry_register_model(kiln_registry *reg, const char *id, const char *name,
                                         const char *checkpoint, int64_t version,
                                         int64_t *version_out, char *model_name, size_t cap) {
    return kiln_registry_register_model_ex(reg, id, name, checkpoint, version, NULL, version_out,
                                           model_name, cap);
}

kiln_status kiln_registry_register_model_ex(kiln_registry *reg, const char *id, const char *name,
                                            const char *checkpoint, int64_t version,
                                            const kiln_export_run_opts *o, int64_t *version_out,
                                            char *model_name, size_t cap) {
    if (version_out) *version_out = 0;
    if (model_name && cap) model_name[0] = 0;
    if (!reg || !id) return kiln_error(KILN_ERR_INVALID, "register model: NULL argument");
    if (version < 0) return kiln_error(KILN_ERR_INVALID, "register model: negative version");
    reg_stmt *st = NULL;
    kiln_status s = kiln_reg_writable(reg, "register models");
    if (s) return s;
    s = prepare(reg,
                            "SELECT e.name FROM runs r JOIN experiments e ON e.eid = r.eid"
                            " WHERE r.id = ?1",
                            &st, "reading a run");
    if (s) return s;
    kiln_reg_bind_text(st, 1, id);
    char model[KILN_RUN_NAME_MAX + 1] = "";
    int rc = reg_step(st);
    if (rc == REG_ROW) kiln_run_sanitize(kiln_reg_col_text(st, 0), model);
    reg_finalize(st);
    if (rc == REG_DONE)
        return kiln_error(KILN_ERR_NOTFOUND, "no run %s in %s", id, reg->runs_dir);
    if (rc != REG_ROW) return kiln_reg_fail(reg, rc, "reading a run");
    if (name) {
        if (!kiln_registry_valid_name(name))
            return kiln_error(KILN_ERR_INVALID,
                              "model name '%s': use 1 to %d letters, digits, '-', '_' or '.', not "
                              "starting with '.' or '-'",
                              name, KILN_REGISTRY_NAME_MAX);
        snprintf(model, sizeof model, "%s", name);
    }
    if (model[0] == '-') model[0] = '_'; /* a sanitized experiment name may start with '-' */

    char run_dir[4200], base[4400], vdir[4500];
    if ((s = kiln_reg_run_path(reg, id, run_dir, sizeof run_dir))) return s;
    snprintf(base, sizeof base, "%s/models/%s", reg->runs_dir, model);
    int64_t have = 0;
    int found;
    if ((s = query_int(reg,
                       "SELECT max(version) FROM model_versions v JOIN models m ON m.mid = v.mid"
                       " WHERE m.name = ?1",
                       model, 0, 0, &have, &found)))
        return s;
    if (version) {
        int taken = 0;
        if ((s = query_int(reg,
                           "SELECT 1 FROM model_versions v JOIN models m ON m.mid = v.mid"
                           " WHERE m.name = ?1 AND v.version = ?2",
                           model, 1, version, &have, &taken)))
            return s;
        if (taken)
            return kiln_error(KILN_ERR_INVALID, "model %s already has version %lld", model,
                              (long long)version);
    } else {
        int64_t *versions = NULL;
        int n = 0;
        if (kiln_export_list_versions(base, &versions, &n) == KILN_OK && n &&
            versions[n - 1] > have)
            have = versions[n - 1];
        kiln_free(versions);
        kiln_error_clear();
    }
    /* Export: the best checkpoint when the run kept one, else the newest (or the one asked). */
    int64_t written = 0;
    for (int attempt = 0;; attempt++) {
        int64_t v = version ? version : have + 1 + attempt;
        snprintf(vdir, sizeof vdir, "%s/%lld", base, (long long)v);
        if (!version && folder_exists(vdir) && attempt < RETRIES) continue;
        if (checkpoint) {
            s = kiln_export_run_ex(run_dir, checkpoint, base, v, o, &written);
        } else {
            s = kiln_export_run_ex(run_dir, "best", base, v, o, &written);
            if (s == KILN_ERR_NOTFOUND) s = kiln_export_run_ex(run_dir, NULL, base, v, o, &written);
        }
        if (s == KILN_ERR_INVALID && !version && attempt < RETRIES && folder_exists(vdir))
            continue; /* another process took this number */
        break;
    }
    if (s) return s;
    snprintf(vdir, sizeof vdir, "%s/%lld", base, (long long)written);
    provenance p;
    read_provenance(vdir, &p);
    if ((s = kiln_reg_begin(reg))) return s;
    s = add_version(reg, model, written, id, p.checkpoint, p.created);
    s = s ? (kiln_reg_rollback(reg), s) : kiln_reg_commit(reg);
    if (s) return s;
    if (version_out) *version_out = written;
    if (model_name && cap) snprintf(model_name, cap, "%s", model);
    return KILN_OK;
}

/* ---- listing ---- */

static int complete_version(const char *dir) {
    char p[4600];
    struct stat st;
    snprintf(p, sizeof p, "%s/model.json", dir);
    if (stat(p, &st) != 0) return 0;
    snprintf(p, sizeof p, "%s/weights.safetensors", dir);
    return stat(p, &st) == 0;
}

kiln_status kiln_registry_list_models(kiln_registry *reg, const char *name,
                                      kiln_registry_model_fn fn, void *ctx) {
    if (!reg || !fn) return kiln_error(KILN_ERR_INVALID, "list models: NULL argument");
    int64_t mid;
    int found;
    kiln_status s;
    if (name) {
        if ((s = query_int(reg, "SELECT mid FROM models WHERE name = ?1", name, 0, 0, &mid,
                           &found)))
            return s;
        if (!found) {
            char names[600];
            if ((s = query_list(reg, "SELECT name FROM models WHERE CAST(?1 AS TEXT) IS NOT NULL"
                                " ORDER BY name",
                                "", ", ", names, sizeof names)))
                return s;
            return kiln_error(KILN_ERR_NOTFOUND, "no model '%s' in %s (%s%s)", name, reg->path,
                              names[0] ? "models: " : "none registered", names);
        }
    }
    reg_stmt *st = NULL;
    if ((s = prepare(reg,
                     "SELECT m.name, v.version, v.run, v.rid IS NOT NULL, v.checkpoint, v.path,"
                     " v.created, (SELECT group_concat(alias, ', ') FROM (SELECT alias FROM"
                     " aliases a WHERE a.mid = v.mid AND a.version = v.version ORDER BY alias) al)"
                     " FROM model_versions v JOIN models m ON m.mid = v.mid"
                     " WHERE CAST(?1 AS TEXT) IS NULL OR m.name = ?1 ORDER BY m.name, v.version",
                     &st, "listing models")))
        return s;
    kiln_reg_bind_text(st, 1, name);
    int rc;
    char dir[4400];
    while ((rc = reg_step(st)) == REG_ROW) {
        const char *aliases = kiln_reg_col_text(st, 7);
        kiln_registry_model_version v = {
            .model = kiln_reg_col_text(st, 0),
            .version = reg_col_int64(st, 1),
            .run = kiln_reg_col_text(st, 2),
            .run_exists = (int)reg_col_int64(st, 3),
            .checkpoint = kiln_reg_col_text(st, 4),
            .path = kiln_reg_col_text(st, 5),
            .created = kiln_reg_col_text(st, 6),
            .aliases = aliases ? aliases : "",
        };
        if (!v.model || !v.path) continue;
        snprintf(dir, sizeof dir, "%s/%s", reg->runs_dir, v.path);
        v.path_exists = complete_version(dir);
        if (fn(&v, ctx)) break;
    }
    if (rc != REG_ROW && rc != REG_DONE) s = kiln_reg_fail(reg, rc, "listing models");
    reg_finalize(st);
    return s;
}

/* ---- aliases ---- */

/* The model's mid, or KILN_ERR_NOTFOUND naming the models there are. */
static kiln_status model_id(kiln_registry *reg, const char *name, const char *what, int64_t *mid) {
    int found;
    kiln_status s =
        query_int(reg, "SELECT mid FROM models WHERE name = ?1", name, 0, 0, mid, &found);
    if (s || found) return s;
    char names[600];
    if ((s = query_list(reg, "SELECT name FROM models WHERE CAST(?1 AS TEXT) IS NOT NULL"
                                " ORDER BY name", "", ", ",
                        names, sizeof names)))
        return s;
    return kiln_error(KILN_ERR_NOTFOUND, "%s: no model named '%s' in %s (%s%s)", what, name,
                      reg->path, names[0] ? "models: " : "no models registered", names);
}

static kiln_status version_missing(kiln_registry *reg, const char *what, const char *name,
                                   int64_t version) {
    char list[600];
    kiln_status s = query_list(reg,
                               "SELECT v.version FROM model_versions v JOIN models m"
                               " ON m.mid = v.mid WHERE m.name = ?1 ORDER BY v.version",
                               name, ", ", list, sizeof list);
    if (s) return s;
    return kiln_error(KILN_ERR_NOTFOUND, "%s: model %s has no version %lld (versions: %s)", what,
                      name, (long long)version, list[0] ? list : "none");
}

kiln_status kiln_registry_set_alias(kiln_registry *reg, const char *name, int64_t version,
                                    const char *alias) {
    if (!reg || !name || !alias) return kiln_error(KILN_ERR_INVALID, "alias: NULL argument");
    if (!valid_alias(alias))
        return kiln_error(KILN_ERR_INVALID,
                          "alias '%s': use 1 to %d letters, digits, '-', '_' or '.', not all "
                          "digits, not starting with '.' or '-'",
                          alias, KILN_REGISTRY_NAME_MAX);
    int64_t mid, one;
    int found;
    kiln_status s = kiln_reg_writable(reg, "set aliases");
    if (s || (s = kiln_reg_begin(reg))) return s;
    if (!(s = model_id(reg, name, "alias", &mid)) &&
        !(s = query_int(reg,
                        "SELECT 1 FROM model_versions v JOIN models m ON m.mid = v.mid"
                        " WHERE m.name = ?1 AND v.version = ?2",
                        name, 1, version, &one, &found)) &&
        !found)
        s = version_missing(reg, "alias", name, version);
    reg_stmt *st = NULL;
    if (!s && !(s = prepare(reg,
                            "INSERT INTO aliases(mid, alias, version) VALUES (?1, ?2, ?3)"
                            " ON CONFLICT(mid, alias) DO UPDATE SET version = excluded.version",
                            &st, "setting an alias"))) {
        reg_bind_int64(st, 1, mid);
        kiln_reg_bind_text(st, 2, alias);
        reg_bind_int64(st, 3, version);
        s = kiln_reg_step_done(reg, st, "setting an alias");
        reg_finalize(st);
    }
    return s ? (kiln_reg_rollback(reg), s) : kiln_reg_commit(reg);
}

kiln_status kiln_registry_delete_alias(kiln_registry *reg, const char *name, const char *alias) {
    if (!reg || !name || !alias) return kiln_error(KILN_ERR_INVALID, "alias: NULL argument");
    int64_t mid;
    kiln_status s = kiln_reg_writable(reg, "remove aliases");
    if (s || (s = kiln_reg_begin(reg))) return s;
    reg_stmt *st = NULL;
    if (!(s = model_id(reg, name, "alias", &mid)) &&
        !(s = prepare(reg, "DELETE FROM aliases WHERE mid = ?1 AND alias = ?2", &st,
                      "removing an alias"))) {
        reg_bind_int64(st, 1, mid);
        kiln_reg_bind_text(st, 2, alias);
        s = kiln_reg_step_done(reg, st, "removing an alias");
        reg_finalize(st);
        if (!s && reg_changes(reg->db) == 0)
            s = kiln_error(KILN_ERR_NOTFOUND, "model %s has no alias '%s'", name, alias);
    }
    return s ? (kiln_reg_rollback(reg), s) : kiln_reg_commit(reg);
}

/* ---- model URIs ---- */

kiln_status kiln_registry_resolve_model_uri(const char *runs_dir, const char *uri, char *base,
                                            size_t cap, int64_t *version) {
    static const char *const FORMS =
        "models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest or models:/NAME";
    if (cap) base[0] = 0;
    if (version) *version = 0;
    if (!runs_dir || !uri || !base || !version)
        return kiln_error(KILN_ERR_INVALID, "resolve model: NULL argument");
    if (strncmp(uri, "models:/", 8))
        return kiln_error(KILN_ERR_INVALID, "model URI '%s': expected %s", uri, FORMS);
    char name[KILN_REGISTRY_NAME_MAX + 1], tail[KILN_REGISTRY_NAME_MAX + 2] = "";
    const char *p = uri + 8;
    size_t n = strcspn(p, "/@");
    if (n == 0 || n > KILN_REGISTRY_NAME_MAX)
        return kiln_error(KILN_ERR_INVALID, "model URI '%s': expected %s", uri, FORMS);
    memcpy(name, p, n), name[n] = 0;
    char sep = p[n];
    if (sep && (strlen(p + n + 1) == 0 || strlen(p + n + 1) > KILN_REGISTRY_NAME_MAX))
        return kiln_error(KILN_ERR_INVALID,
                          "model URI '%s': nothing usable after '%c' (expected %s)", uri, sep,
                          FORMS);
    if (sep) snprintf(tail, sizeof tail, "%s", p + n + 1);
    int64_t want = 0;
    if (!kiln_registry_valid_name(name))
        return kiln_error(KILN_ERR_INVALID, "model URI '%s': '%s' is not a model name", uri, name);
    if (sep == '/' && strcmp(tail, "latest") && !kiln_export_parse_version(tail, &want))
        return kiln_error(KILN_ERR_INVALID,
                          "model URI '%s': '%s' is not a version (a positive integer) or latest",
                          uri, tail);
    if (sep == '@' && !valid_alias(tail))
        return kiln_error(KILN_ERR_INVALID, "model URI '%s': '%s' is not an alias", uri, tail);

    kiln_registry *reg = NULL;
    kiln_status s = kiln_reg_open_readonly(runs_dir, &reg);
    if (s) {
        kiln_error_prefix("%s", uri);
        return s;
    }
    int64_t mid = 0, v = 0;
    int found = 0;
    if ((s = model_id(reg, name, uri, &mid))) goto out;
    if (sep == '@') {
        reg_stmt *st = NULL;
        if ((s = prepare(reg,
                         "SELECT a.version FROM aliases a JOIN models m ON m.mid = a.mid"
                         " WHERE m.name = ?1 AND a.alias = ?2",
                         &st, "reading aliases")))
            goto out;
        kiln_reg_bind_text(st, 1, name);
        kiln_reg_bind_text(st, 2, tail);
        int rc = reg_step(st);
        found = rc == REG_ROW;
        if (found) v = reg_col_int64(st, 0);
        reg_finalize(st);
        if (rc != REG_ROW && rc != REG_DONE) {
            s = kiln_reg_fail(reg, rc, "reading aliases");
            goto out;
        }
        if (!found) {
            char list[600];
            if (!(s = query_list(reg,
                                 "SELECT a.alias || ' -> ' || CAST(a.version AS TEXT)"
                                 " FROM aliases a JOIN models"
                                 " m ON m.mid = a.mid WHERE m.name = ?1 ORDER BY a.alias",
                                 name, ", ", list, sizeof list)))
                s = kiln_error(KILN_ERR_NOTFOUND, "%s: model %s has no alias '%s' (%s%s)", uri,
                               name, tail, list[0] ? "aliases: " : "it has no aliases", list);
            goto out;
        }
    } else if (sep == '/') {
        const char *sql = want ? "SELECT v.version FROM model_versions v JOIN models m"
                                 " ON m.mid = v.mid WHERE m.name = ?1 AND v.version = ?2"
                               : "SELECT max(v.version) FROM model_versions v JOIN models m"
                                 " ON m.mid = v.mid WHERE m.name = ?1";
        if ((s = query_int(reg, sql, name, want != 0, want, &v, &found))) goto out;
        if (!found) {
            s = want ? version_missing(reg, uri, name, want)
                     : kiln_error(KILN_ERR_NOTFOUND, "%s: model %s has no versions", uri, name);
            goto out;
        }
    }
    char dir[4400];
    if (snprintf(base, cap, "%s/models/%s", reg->runs_dir, name) >= (int)cap) {
        s = kiln_error(KILN_ERR_INVALID, "%s: the base folder's path needs more than %zu bytes",
                       uri, cap);
        goto out;
    }
    snprintf(dir, sizeof dir, "%s/%lld", base, (long long)v);
    if (v ? !complete_version(dir) : !folder_exists(base)) {
        s = kiln_error(KILN_ERR_NOTFOUND, "%s: the folder %s is missing", uri, v ? dir : base);
        goto out;
    }
    *version = v;
out:
    if (s && cap) base[0] = 0;
    kiln_registry_close(reg);
    return s;
}

/* ---- sync ---- */

kiln_status kiln_reg_sync_models(kiln_registry *reg, int *added) {
    *added = 0;
    char root[4200], base[4500], dir[4600], id[PATH_MAX];
    snprintf(root, sizeof root, "%s/models", reg->runs_dir);
    DIR *d = opendir(root);
    if (!d) return KILN_OK;
    kiln_status s = KILN_OK;
    int in_tx = 0;
    for (struct dirent *e; !s && (e = readdir(d));) {
        if (!kiln_registry_valid_name(e->d_name)) continue;
        snprintf(base, sizeof base, "%s/%s", root, e->d_name);
        int64_t *versions = NULL, one;
        int n = 0, found;
        if (kiln_export_list_versions(base, &versions, &n)) {
            kiln_error_clear();
            continue;
        }
        for (int i = 0; !s && i < n; i++) {
            if ((s = query_int(reg,
                               "SELECT 1 FROM model_versions v JOIN models m ON m.mid = v.mid"
                               " WHERE m.name = ?1 AND v.version = ?2",
                               e->d_name, 1, versions[i], &one, &found)) ||
                found)
                continue;
            if (!in_tx && !(s = kiln_reg_begin(reg))) in_tx = 1;
            if (s) break;
            provenance p;
            snprintf(dir, sizeof dir, "%s/%lld", base, (long long)versions[i]);
            read_provenance(dir, &p);
            run_id_of(reg, p.run, id, sizeof id);
            if (!(s = add_version(reg, e->d_name, versions[i], id, p.checkpoint, p.created)))
                ++*added;
        }
        kiln_free(versions);
    }
    closedir(d);
    if (in_tx) s = s ? (kiln_reg_rollback(reg), s) : kiln_reg_commit(reg);
    if (s) *added = 0;
    return s;
}
