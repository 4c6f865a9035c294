/* cfg_json.c — config trees as JSON and back, exact JSON numbers (see cfg_json.h).
 *
 * Integers beyond 2^53 (only a seed can be that large) do not survive a JSON reader's double,
 * so they go out as decimal strings, as run.json writes its seed; whoever reads them back
 * (the servable loader, for "seed") turns that string into a plain scalar again.
 */
#include "config/cfg_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXACT_INT 9007199254740992.0 /* 2^53 */

cJSON *kiln_json_number(double v, int as_float) {
    char buf[48];
    if (v == floor(v) && fabs(v) <= EXACT_INT) {
        snprintf(buf, sizeof buf, "%lld", (long long)v);
    } else if (as_float) {
        float f = (float)v;
        for (int p = 1; p <= 9; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, (double)f);
            if ((float)strtod(buf, NULL) == f) break;
        }
    } else {
        for (int p = 1; p <= 17; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, v);
            if (strtod(buf, NULL) == v) break;
        }
    }
    return cJSON_CreateRaw(buf);
}

static int is_name_key(const char *k) {
    return k && (!strcmp(k, "name") || !strcmp(k, "from") || !strcmp(k, "class_names"));
}

static cJSON *scalar_to_json(const kiln_cfg *c, int names) {
    if (c->quoted) return cJSON_CreateString(c->text);
    if (!c->text[0]) return cJSON_CreateNull();
    if (names) return cJSON_CreateString(c->text);
    int b;
    if (!kiln_cfg_parse_bool(c, &b)) return cJSON_CreateBool(b);
    double v;
    if (kiln_cfg_parse_num(c, &v) || !isfinite(v)) return cJSON_CreateString(c->text);
    if (v == floor(v) && fabs(v) > EXACT_INT) return cJSON_CreateString(c->text);
    return kiln_json_number(v, 0);
}

/* names: c is a value of a name key, or an item of one (from: [a, b]). */
static cJSON *to_json(const kiln_cfg *c, int names) {
    names = names || is_name_key(c->key);
    if (c->type == KILN_CFG_SCALAR) return scalar_to_json(c, names);
    cJSON *o = c->type == KILN_CFG_MAP ? cJSON_CreateObject() : cJSON_CreateArray();
    for (int i = 0; o && i < c->n_items; i++) {
        cJSON *v = to_json(c->items[i], c->type == KILN_CFG_SEQ && names);
        int ok = v && (c->type == KILN_CFG_MAP ? cJSON_AddItemToObject(o, c->items[i]->key, v)
                                               : cJSON_AddItemToArray(o, v));
        if (!ok) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

cJSON *kiln_cfg_to_json(const kiln_cfg *c) {
    return to_json(c, 0);
}

static kiln_cfg *node(kiln_cfg_type t, const char *file, const char *key, const char *text) {
    kiln_cfg *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->type = t;
    c->file = file;
    if ((key && !(c->key = strdup(key))) || (text && !(c->text = strdup(text)))) {
        kiln_cfg_free(c);
        return NULL;
    }
    return c;
}

static kiln_status from_json(const cJSON *j, const char *file, const char *key, const char *path,
                             kiln_cfg **out) {
    *out = NULL;
    kiln_cfg *c = NULL;
    char text[48];
    if (cJSON_IsObject(j) || cJSON_IsArray(j)) {
        int map = cJSON_IsObject(j), n = cJSON_GetArraySize(j), i = 0;
        if (!(c = node(map ? KILN_CFG_MAP : KILN_CFG_SEQ, file, key, NULL)) ||
            (n && !(c->items = calloc((size_t)n, sizeof *c->items)))) {
            kiln_cfg_free(c);
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory reading %s", file, path);
        }
        for (const cJSON *e = j->child; e; e = e->next, i++) {
            char p[512];
            if (map)
                snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", e->string);
            else
                snprintf(p, sizeof p, "%s[%d]", path, i);
            for (int k = 0; map && k < c->n_items; k++)
                if (!strcmp(c->items[k]->key, e->string)) {
                    kiln_cfg_free(c);
                    return kiln_error(KILN_ERR_FORMAT, "%s: %s: duplicate key", file, p);
                }
            kiln_status st = from_json(e, file, map ? e->string : NULL, p, &c->items[i]);
            if (st) {
                kiln_cfg_free(c);
                return st;
            }
            c->n_items = i + 1;
        }
    } else if (cJSON_IsString(j)) {
        if ((c = node(KILN_CFG_SCALAR, file, key, j->valuestring))) c->quoted = 1;
    } else if (cJSON_IsNumber(j)) {
        double v = j->valuedouble;
        if (v == floor(v) && fabs(v) <= EXACT_INT) {
            snprintf(text, sizeof text, "%lld", (long long)v);
        } else {
            for (int p = 1; p <= 17; p++) {
                snprintf(text, sizeof text, "%.*g", p, v);
                if (strtod(text, NULL) == v) break;
            }
        }
        c = node(KILN_CFG_SCALAR, file, key, text);
    } else {
        c = node(KILN_CFG_SCALAR, file, key,
                 cJSON_IsTrue(j)    ? "true"
                 : cJSON_IsFalse(j) ? "false"
                                    : "");
    }
    if (!c) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory reading %s", file, path);
    *out = c;
    return KILN_OK;
}

kiln_status kiln_cfg_from_json(const cJSON *j, const char *file, const char *key, kiln_cfg **out) {
    return from_json(j, file, key, key ? key : "", out);
}
