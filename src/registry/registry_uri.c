/* registry_uri.c — registry URIs and the user config file (see registry_uri.h).
 *
 * The user config file is a YAML map; its known keys are in USER_KEYS (an unknown one is an
 * error naming the file, line and the keys there are, so a typo is not silently ignored).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "kiln/config.h"
#include "kiln/registry.h"
#include "registry/registry_uri.h"

static const char *const FORMS =
    "sqlite:, sqlite:PATH, postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME] (or "
    "postgres://), mlflow+http(s)://HOST:PORT (an MLflow tracking server), or off";

/* Keys of the user config file. */
static const char *const USER_KEYS[] = {"registry"};

static int starts(const char *s, const char *prefix) {
    return !strncasecmp(s, prefix, strlen(prefix));
}

/* The URI with the password of user:password@ replaced by *** */
static void mask(const char *uri, char *out, size_t cap) {
    snprintf(out, cap, "%s", uri);
    char *scheme = strstr(out, "://");
    if (!scheme) return;
    char *auth = scheme + 3, *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    if (!at || (slash && slash < at)) return;
    char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon) return;
    char rest[4096];
    snprintf(rest, sizeof rest, "%s", at);
    snprintf(colon + 1, cap - (size_t)(colon + 1 - out), "***%s", rest);
}

/* Moves the schema=NAME query parameter of a PostgreSQL URI into u->schema. */
static kiln_status take_schema(const char *text, kiln_reg_uri *u) {
    snprintf(u->conninfo, sizeof u->conninfo, "%s", text);
    char *q = strchr(u->conninfo, '?');
    if (!q) return KILN_OK;
    char out[4096], *o = out;
    size_t cap = sizeof out;
    int first = 1;
    for (char *p = q + 1; *p;) {
        size_t n = strcspn(p, "&");
        if (!strncmp(p, "schema=", 7)) {
            size_t len = n - 7;
            if (len == 0 || len >= sizeof u->schema)
                return kiln_error(KILN_ERR_INVALID,
                                  "registry URI '%s': schema= needs a name of 1 to %zu bytes",
                                  u->display, sizeof u->schema - 1);
            memcpy(u->schema, p + 7, len), u->schema[len] = 0;
            for (const char *c = u->schema; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                    return kiln_error(KILN_ERR_INVALID,
                                      "registry URI '%s': schema '%s': use lowercase letters, "
                                      "digits and '_'",
                                      u->display, u->schema);
        } else if (n) {
            int w = snprintf(o, cap, "%s%.*s", first ? "" : "&", (int)n, p);
            o += w, cap -= (size_t)w, first = 0;
        }
        p += n;
        if (*p == '&') p++;
    }
    *o = 0;
    if (out[0])
        snprintf(q + 1, sizeof u->conninfo - (size_t)(q + 1 - u->conninfo), "%s", out);
    else
        *q = 0;
    return KILN_OK;
}

kiln_status kiln_reg_uri_parse(const char *text, kiln_reg_uri *u) {
    memset(u, 0, sizeof *u);
    if (!text || !*text) return kiln_error(KILN_ERR_INVALID, "registry URI: empty (use %s)", FORMS);
    if (strlen(text) >= sizeof u->conninfo)
        return kiln_error(KILN_ERR_INVALID, "registry URI: longer than %zu bytes",
                          sizeof u->conninfo - 1);
    mask(text, u->display, sizeof u->display);
    if (!strcasecmp(text, "off") || !strcmp(text, "0") || !strcasecmp(text, "false") ||
        !strcasecmp(text, "no")) {
        u->kind = REG_URI_OFF;
        return KILN_OK;
    }
    if (starts(text, "sqlite:")) {
        const char *p = text + 7;
        if (!strncmp(p, "//", 2)) p += 2; /* sqlite:///abs/path */
        u->kind = REG_URI_SQLITE;
        snprintf(u->path, sizeof u->path, "%s", p);
        return KILN_OK;
    }
    if (starts(text, "postgresql://") || starts(text, "postgres://")) {
        u->kind = REG_URI_PG;
        return take_schema(text, u);
    }
    if (starts(text, "mlflow+http://") || starts(text, "mlflow+https://") ||
        starts(text, "http://") || starts(text, "https://")) {
        u->kind = REG_URI_MLFLOW; /* a tracking server: MLflow's REST API (kiln board has it) */
        snprintf(u->conninfo, sizeof u->conninfo, "%s%s", starts(text, "mlflow+") ? "" : "mlflow+",
                 text);
        return KILN_OK;
    }
    return kiln_error(KILN_ERR_INVALID, "registry URI '%s': unknown form (use %s)", u->display,
                      FORMS);
}

/* The user config file's path into out; 0 when there is none to read. */
static int user_config_path(char *out, size_t cap) {
    const char *explicit = getenv("KILN_CONFIG");
    if (explicit && *explicit) return snprintf(out, cap, "%s", explicit) < (int)cap;
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg)
        n = snprintf(out, cap, "%s/kiln/config.yaml", xdg);
    else if (home && *home)
        n = snprintf(out, cap, "%s/.config/kiln/config.yaml", home);
    else
        return 0;
    struct stat st;
    return n < (int)cap && stat(out, &st) == 0;
}

kiln_status kiln_reg_uri_current(kiln_reg_uri *u) {
    const char *env = getenv("KILN_REGISTRY");
    kiln_status s;
    if (env && (!strcasecmp(env, "on") || !strcmp(env, "1") || !strcasecmp(env, "true") ||
                !strcasecmp(env, "yes")))
        env = NULL; /* enabled: where the user config says, else the default */
    if (env && *env) {
        if ((s = kiln_reg_uri_parse(env, u))) {
            kiln_error_prefix("KILN_REGISTRY");
            return s;
        }
        snprintf(u->origin, sizeof u->origin, "KILN_REGISTRY");
        return KILN_OK;
    }
    char path[4096];
    if (user_config_path(path, sizeof path)) {
        kiln_cfg *cfg = NULL;
        if ((s = kiln_config_load(path, &cfg))) {
            kiln_error_prefix("user config");
            return s == KILN_ERR_IO ? s : KILN_ERR_INVALID;
        }
        const kiln_cfg *uri = NULL;
        if (!cfg) goto none;
        if (cfg->type != KILN_CFG_MAP && !(cfg->type == KILN_CFG_SCALAR && !cfg->text[0])) {
            kiln_cfg_free(cfg);
            return kiln_error(KILN_ERR_INVALID, "%s: the user config must be a map of settings",
                              path);
        }
        for (int i = 0; cfg->type == KILN_CFG_MAP && i < cfg->n_items; i++) {
            const kiln_cfg *c = cfg->items[i];
            size_t k = 0;
            while (k < sizeof USER_KEYS / sizeof *USER_KEYS && strcmp(c->key, USER_KEYS[k])) k++;
            if (k == sizeof USER_KEYS / sizeof *USER_KEYS) {
                s = kiln_error(KILN_ERR_INVALID, "%s:%d:%d: unknown key '%s' (known: registry)",
                               path, c->line, c->column, c->key);
                kiln_cfg_free(cfg);
                return s;
            }
            if (!strcmp(c->key, "registry")) uri = c;
        }
        if (uri && (uri->type != KILN_CFG_SCALAR || !uri->text[0])) {
            s = kiln_error(KILN_ERR_INVALID, "%s:%d:%d: registry: expected a URI (%s)", path,
                           uri->line, uri->column, FORMS);
            kiln_cfg_free(cfg);
            return s;
        }
        if (uri) {
            s = kiln_reg_uri_parse(uri->text, u);
            if (s) kiln_error_prefix("%s:%d:%d", path, uri->line, uri->column);
            else snprintf(u->origin, sizeof u->origin, "%s (registry:)", path);
            kiln_cfg_free(cfg);
            return s;
        }
        kiln_cfg_free(cfg);
    }
none:
    memset(u, 0, sizeof *u);
    u->kind = REG_URI_SQLITE;
    snprintf(u->display, sizeof u->display, "sqlite:");
    snprintf(u->origin, sizeof u->origin, "default");
    return KILN_OK;
}

kiln_status kiln_registry_check_uri(const char *uri) {
    kiln_reg_uri u;
    return kiln_reg_uri_parse(uri, &u);
}
