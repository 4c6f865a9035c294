/* serve_config.c — TF Serving's config files for `kiln serve` (formats in include/kiln/serve.h
 * and docs/serving.md): --model_config_file (ModelServerConfig with a model_config_list) and
 * --batching_parameters_file (BatchingParameters). Fields TF Serving has and kiln does not use
 * (model_platform, logging_config) are accepted; any other name is an error naming file:line,
 * so a typo never silently changes what is served.
 */
#include <stdlib.h>
#include <string.h>

#include "serve/textproto.h"
#include "kiln/serve.h"

typedef struct {
    tp_node *root;
    int64_t *versions; /* every model's specific versions, one array */
    kiln_version_label *labels;
} owned_config;

static int count_named(const tp_node *n, const char *name) {
    int k = 0;
    for (; n; n = n->next) k += strcmp(n->name, name) == 0;
    return k;
}

static kiln_status read_policy(const tp_node *pol, const char *file, kiln_serve_model *m,
                               int64_t **vcursor) {
    kiln_status st = textproto_message(pol, file);
    int kinds = 0;
    for (const tp_node *k = pol->children; k && !st; k = k->next) {
        kinds++;
        if ((st = textproto_message(k, file))) break;
        if (strcmp(k->name, "latest") == 0) {
            m->policy = KILN_VERSIONS_LATEST;
            m->latest_n = 1;
            for (const tp_node *f = k->children; f && !st; f = f->next) {
                int64_t v;
                if (strcmp(f->name, "num_versions") != 0)
                    st = textproto_unknown(f, file, "latest");
                else if (!(st = textproto_int(f, file, 1, 1000000, &v)))
                    m->latest_n = (int)v;
            }
        } else if (strcmp(k->name, "all") == 0) {
            m->policy = KILN_VERSIONS_ALL;
            if (k->children) st = textproto_unknown(k->children, file, "all");
        } else if (strcmp(k->name, "specific") == 0) {
            m->policy = KILN_VERSIONS_SPECIFIC;
            m->versions = *vcursor;
            for (const tp_node *f = k->children; f && !st; f = f->next) {
                if (strcmp(f->name, "versions") != 0)
                    st = textproto_unknown(f, file, "specific");
                else if (!(st = textproto_int(f, file, 1, INT64_MAX, *vcursor)))
                    ++*vcursor, m->n_versions++;
            }
            if (!st && m->n_versions == 0)
                st = kiln_error(KILN_ERR_FORMAT, "%s:%d: specific: lists no versions", file,
                                k->line);
        } else {
            st = textproto_unknown(k, file, "model_version_policy (latest, all or specific)");
        }
    }
    if (!st && kinds != 1)
        st = kiln_error(KILN_ERR_FORMAT,
                        "%s:%d: model_version_policy needs exactly one of latest, all, specific",
                        file, pol->line);
    return st;
}

static kiln_status read_label(const tp_node *n, const char *file, kiln_version_label *out) {
    kiln_status st = textproto_message(n, file);
    int have_key = 0, have_value = 0;
    for (const tp_node *f = n->children; f && !st; f = f->next) {
        if (strcmp(f->name, "key") == 0)
            st = textproto_string(f, file, &out->label), have_key = 1;
        else if (strcmp(f->name, "value") == 0)
            st = textproto_int(f, file, 1, INT64_MAX, &out->version), have_value = 1;
        else
            st = textproto_unknown(f, file, "version_labels");
    }
    if (!st && (!have_key || !have_value))
        st = kiln_error(KILN_ERR_FORMAT, "%s:%d: version_labels needs a key and a value", file,
                        n->line);
    return st;
}

static kiln_status read_model(const tp_node *cfg, const char *file, kiln_serve_model *m,
                              int64_t **vcursor, kiln_version_label **lcursor) {
    kiln_status st = textproto_message(cfg, file);
    *m = (kiln_serve_model){.policy = KILN_VERSIONS_LATEST, .latest_n = 1};
    m->labels = *lcursor;
    for (const tp_node *f = cfg->children; f && !st; f = f->next) {
        const char *ignored;
        if (strcmp(f->name, "name") == 0)
            st = textproto_string(f, file, &m->name);
        else if (strcmp(f->name, "base_path") == 0)
            st = textproto_string(f, file, &m->base_path);
        else if (strcmp(f->name, "model_platform") == 0)
            st = textproto_string(f, file, &ignored);
        else if (strcmp(f->name, "model_version_policy") == 0)
            st = read_policy(f, file, m, vcursor);
        else if (strcmp(f->name, "version_labels") == 0) {
            if (!(st = read_label(f, file, *lcursor))) ++*lcursor, m->n_labels++;
        } else
            st = textproto_unknown(f, file, "config");
    }
    if (!st && (!m->name || !*m->name))
        st = kiln_error(KILN_ERR_FORMAT, "%s:%d: config has no name", file, cfg->line);
    if (!st && (!m->base_path || !*m->base_path))
        st = kiln_error(KILN_ERR_FORMAT, "%s:%d: config '%s' has no base_path", file, cfg->line,
                        m->name);
    return st;
}

static int count_all(const tp_node *n, const char *name) {
    int k = 0;
    for (; n; n = n->next) k += strcmp(n->name, name) == 0 ? 1 : 0, k += count_all(n->children, name);
    return k;
}

kiln_status kiln_serve_read_model_config(const char *path, kiln_serve_models *out) {
    memset(out, 0, sizeof *out);
    owned_config *own = calloc(1, sizeof *own);
    if (!own) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    kiln_status st = textproto_parse_file(path, &own->root);
    const tp_node *list = NULL;
    for (const tp_node *f = own->root ? own->root->children : NULL; f && !st; f = f->next) {
        if (strcmp(f->name, "model_config_list") == 0 && !list)
            st = textproto_message(f, path), list = f;
        else
            st = textproto_unknown(f, path, "the model server config (it takes model_config_list)");
    }
    if (!st && !list)
        st = kiln_error(KILN_ERR_FORMAT, "%s: no model_config_list { config { ... } }", path);
    int n = st ? 0 : count_named(list->children, "config");
    if (!st && n == 0)
        st = kiln_error(KILN_ERR_FORMAT, "%s:%d: model_config_list has no config", path,
                        list->line);
    if (!st) {
        out->models = calloc((size_t)n, sizeof *out->models);
        own->versions = calloc((size_t)count_all(list, "versions") + 1, sizeof *own->versions);
        own->labels = calloc((size_t)count_all(list, "version_labels") + 1, sizeof *own->labels);
        if (!out->models || !own->versions || !own->labels)
            st = kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    int64_t *vc = own ? own->versions : NULL;
    kiln_version_label *lc = own ? own->labels : NULL;
    for (const tp_node *f = st ? NULL : list->children; f && !st; f = f->next) {
        if (strcmp(f->name, "config") != 0) {
            st = textproto_unknown(f, path, "model_config_list");
            break;
        }
        st = read_model(f, path, &out->models[out->n_models], &vc, &lc);
        for (int k = 0; k < out->n_models && !st; k++)
            if (strcmp(out->models[k].name, out->models[out->n_models].name) == 0)
                st = kiln_error(KILN_ERR_FORMAT, "%s:%d: model '%s' is configured twice", path,
                                f->line, out->models[k].name);
        if (!st) out->n_models++;
    }
    out->owned = own;
    if (st) kiln_serve_models_free(out);
    return st;
}

void kiln_serve_models_free(kiln_serve_models *m) {
    owned_config *own = m->owned;
    if (own) {
        textproto_free(own->root);
        free(own->versions);
        free(own->labels);
        free(own);
    }
    free(m->models);
    memset(m, 0, sizeof *m);
}

kiln_status kiln_serve_read_batching_config(const char *path, kiln_serve_batching *out) {
    tp_node *root;
    kiln_status st = textproto_parse_file(path, &root);
    if (st) return st;
    for (const tp_node *f = root->children; f && !st; f = f->next) {
        /* BatchingParameters wraps each number: max_batch_size { value: 128 } */
        const tp_node *v = f->children;
        int64_t x = 0;
        if (strcmp(f->name, "pad_variable_length_inputs") == 0 ||
            strcmp(f->name, "allowed_batch_sizes") == 0) {
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s:%d: %s is not supported by kiln (batches are padded to powers of "
                            "two)",
                            path, f->line, f->name);
            break;
        }
        if ((st = textproto_message(f, path))) break;
        if (!v || v->next || strcmp(v->name, "value") != 0) {
            st = kiln_error(KILN_ERR_FORMAT, "%s:%d: %s: expected { value: N }", path, f->line,
                            f->name);
            break;
        }
        if (strcmp(f->name, "max_batch_size") == 0) {
            if (!(st = textproto_int(v, path, 1, 1 << 20, &x))) out->max_batch_size = (int)x;
        } else if (strcmp(f->name, "batch_timeout_micros") == 0) {
            if (!(st = textproto_int(v, path, 0, 60000000, &x))) out->batch_timeout_micros = x;
        } else if (strcmp(f->name, "num_batch_threads") == 0) {
            if (!(st = textproto_int(v, path, 1, 1024, &x))) out->num_batch_threads = (int)x;
        } else if (strcmp(f->name, "max_enqueued_batches") == 0) {
            if (!(st = textproto_int(v, path, 1, 1 << 24, &x))) out->max_enqueued_batches = (int)x;
        } else {
            st = textproto_unknown(f, path, "the batching parameters");
        }
    }
    textproto_free(root);
    return st;
}
