/* optimize.c — kiln optimize (see kiln/optimize.h and docs/optimize.md): load the source as a
 * servable version (a run is first exported into a private temporary folder, so its EMA
 * weights, preprocessing and class names come out exactly as kiln export writes them), apply
 * the transformations to a model rebuilt from the (possibly rewritten) config, check that the
 * result compiles and runs here, and only then write the new version with kiln_export_graph
 * (atomic: a failure anywhere leaves no version behind).
 *
 * Order: fold (fold.c) first, so that quantization sees the folded weights and the fused
 * activations (a ReLU fused into a conv makes the next layer's input unsigned: u8); then int8
 * calibration (calibrate.c) or the bf16 marking. model.json gets "optimizations" (the list of
 * transformations with their parameters, after any the source already had), "quantization"
 * (what the servable loader applies: servable_lowp.c) and "optimized_from" (the source folder).
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfg_json.h"
#include "kiln/backend.h"
#include "kiln/cpu.h"
#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/inputs.h"
#include "kiln/mem.h"
#include "kiln/nn.h"
#include "kiln/prune.h"
#include "kiln/run.h"
#include "optimize/optimize_internal.h"

static int is_file(const char *dir, const char *name) {
    char p[4400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void rm_tree(const char *dir) { /* the temporary export: <tmp>/<v>/<files> */
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static kiln_status check_opts(const kiln_optimize_opts *o) {
    if (!o || !o->source || !o->source[0]) return kiln_error(KILN_ERR_INVALID, "optimize: no source (an export version or a run)");
    if (!o->to || !o->to[0]) return kiln_error(KILN_ERR_INVALID, "optimize: --to BASE is required (where the new version goes)");
    if (o->quantize && strcmp(o->quantize, "int8") && strcmp(o->quantize, "bf16"))
        return kiln_error(KILN_ERR_INVALID, "optimize: --quantize %s: expected int8 or bf16", o->quantize);
    if (!o->fold && !o->quantize && !o->prune)
        return kiln_error(KILN_ERR_INVALID, "optimize: nothing to do (give --fold, --prune and/or --quantize)");
    if (o->prune != 0 && !(o->prune > 0 && o->prune < 1))
        return kiln_error(KILN_ERR_INVALID, "optimize: --prune %g: expected a sparsity in (0, 1)", o->prune);
    if (o->calibration && strcmp(o->calibration, "minmax") && strcmp(o->calibration, "percentile"))
        return kiln_error(KILN_ERR_INVALID, "optimize: --calibration %s: expected minmax or percentile", o->calibration);
    if (o->calibrate < 0 || o->calibrate > 1000000)
        return kiln_error(KILN_ERR_INVALID, "optimize: --calibrate %d: expected 1 or more batches", o->calibrate);
    if (o->percentile != 0 && !(o->percentile > 50 && o->percentile <= 100))
        return kiln_error(KILN_ERR_INVALID, "optimize: percentile %g: expected a number in (50, 100]", o->percentile);
    int calib_opts = o->calibrate || o->calibration || o->percentile || o->data;
    if (calib_opts && !(o->quantize && !strcmp(o->quantize, "int8")))
        return kiln_error(KILN_ERR_INVALID, "optimize: --calibrate/--calibration/--data apply to --quantize int8 only");
    return KILN_OK;
}

/* The config of model.json as a resolved kiln_cfg (as the servable loader builds it). */
static kiln_status cfg_of(const cJSON *config, const char *task, const char *label, kiln_cfg **out) {
    cJSON *full = cJSON_CreateObject(), *data = cJSON_CreateObject();
    if (!full || !data) return cJSON_Delete(full), cJSON_Delete(data), KILN_ERR_NOMEM;
    cJSON_AddItemToObject(full, "data", data);
    cJSON_AddStringToObject(data, "source", "npy");
    cJSON_AddObjectToObject(data, "train");
    cJSON_AddStringToObject(data, "task", task);
    static const char *const keys[] = {"seed", "model", "loss"};
    for (int i = 0; i < 3; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(config, keys[i]);
        if (v) cJSON_AddItemToObject(full, keys[i], cJSON_Duplicate(v, 1));
    }
    /* through text: kiln_cfg_to_json writes exact numbers as raw JSON, which the reader of
     * parsed JSON does not take */
    char *text = cJSON_PrintUnformatted(full);
    cJSON_Delete(full);
    full = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!full) return kiln_error(KILN_ERR_NOMEM, "optimize: out of memory");
    kiln_status st = kiln_cfg_from_json(full, label, NULL, out);
    cJSON_Delete(full);
    if (st) return st;
    kiln_cfg *seed = kiln_cfg_child(*out, "seed");
    if (seed && seed->type == KILN_CFG_SCALAR) seed->quoted = 0;
    if ((st = kiln_config_resolve(*out))) kiln_cfg_free(*out), *out = NULL;
    return st;
}

static void append(char *buf, size_t cap, const char *s) {
    size_t n = strlen(buf);
    if (n + strlen(s) + 3 < cap) snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", s);
}

static int is_loss_op(const char *op) {
    return !strcmp(op, "softmax_cross_entropy") || !strcmp(op, "binary_cross_entropy") || !strcmp(op, "mse") ||
           !strcmp(op, "mae") || !strcmp(op, "huber");
}

/* Calibration data: --data, else the run's config.yaml. */
static kiln_status load_data(const kiln_optimize_opts *o, const char *run_dir, kiln_model *m, kiln_cfg **dcfg,
                             kiln_inputs *in, const kiln_dataset **ds, kiln_optimize_report *r) {
    char path[4400];
    if ((o->data && strlen(o->data) >= 4300) || (run_dir && strlen(run_dir) >= 4300))
        return kiln_error(KILN_ERR_INVALID, "optimize: the data config's path is too long");
    if (o->data) snprintf(path, sizeof path, "%s", o->data);
    else if (run_dir) snprintf(path, sizeof path, "%.4300s/config.yaml", run_dir);
    else
        return kiln_error(KILN_ERR_INVALID,
                          "optimize: int8 calibration needs data: the source names no run whose config.yaml "
                          "could give it; pass --data CONFIG (an experiment config with a data: section)");
    if (!o->data && access(path, R_OK) != 0)
        return kiln_error(KILN_ERR_INVALID,
                          "optimize: int8 calibration needs data: the source's run config %s cannot be read; "
                          "pass --data CONFIG", path);
    kiln_status st = kiln_config_load(path, dcfg);
    if (!st) st = kiln_inputs_resolve_paths(*dcfg, NULL);
    if (!st) st = kiln_config_resolve(*dcfg);
    if (!st) st = kiln_inputs_load(*dcfg, m, in);
    if (st) return st;
    *ds = in->validation ? in->validation : in->test;
    snprintf(r->calibration_split, sizeof r->calibration_split, "%s", in->validation ? "validation" : "test");
    if (!*ds)
        return kiln_error(KILN_ERR_INVALID, "optimize: %s has no validation or test split to calibrate on", path);
    return KILN_OK;
}

kiln_status kiln_optimize(const kiln_optimize_opts *o, kiln_optimize_report *r) {
    memset(r, 0, sizeof *r);
    kiln_status st = check_opts(o);
    if (st) return st;
    int int8 = o->quantize && !strcmp(o->quantize, "int8"), bf16 = o->quantize && !strcmp(o->quantize, "bf16");
    int batches = o->calibrate ? o->calibrate : 8, pctl = o->calibration && !strcmp(o->calibration, "percentile");
    double pct = o->percentile ? o->percentile : 99.99;
    r->isa = kiln_backend_cpu_isa();
    r->weight_bits = kiln_backend_int8_weight_bits();

    /* the source as a version folder */
    char vdir[4300], tmp[64] = "", run_dir[4300] = "", *json_text = NULL;
    struct stat sb;
    if (stat(o->source, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kiln_error(KILN_ERR_NOTFOUND, "optimize: %s: no such folder (an export version or a run)", o->source);
    if (is_file(o->source, "model.json")) {
        snprintf(vdir, sizeof vdir, "%s", o->source);
    } else if (is_file(o->source, "run.json") || is_file(o->source, "config.yaml")) {
        snprintf(run_dir, sizeof run_dir, "%s", o->source);
        snprintf(tmp, sizeof tmp, "/tmp/kiln-optimize-XXXXXX");
        if (!mkdtemp(tmp)) return kiln_error(KILN_ERR_IO, "optimize: cannot make a temporary folder");
        int64_t v = 0;
        if ((st = kiln_export_run_ex(o->source, o->checkpoint, tmp, 1, NULL, &v))) return rm_tree(tmp), st;
        snprintf(vdir, sizeof vdir, "%s/1", tmp);
    } else {
        return kiln_error(KILN_ERR_INVALID, "optimize: %s is neither an export version (no model.json) nor a run "
                          "(no run.json)", o->source);
    }

    kiln_servable *s = NULL;
    cJSON *root = NULL, *extra = NULL, *opts_list = NULL, *quant = NULL;
    kiln_cfg *cfg0 = NULL, *cfg1 = NULL, *dcfg = NULL;
    kiln_model m1 = {0};
    kiln_fold_result fr = {0};
    kiln_inputs in = {0};
    kiln_calib_layer *cl = NULL;
    int ncl = 0;
    char *extra_text = NULL, label[4400];
    snprintf(label, sizeof label, "%s/model.json", vdir);
    size_t len;
    if (!(st = kiln_file_read_all(label, (void **)&json_text, &len, (size_t)64 << 20)) &&
        !(root = cJSON_ParseWithLength(json_text, len)))
        st = kiln_error(KILN_ERR_FORMAT, "%s: not valid JSON", label);
    if (!st && cJSON_GetObjectItemCaseSensitive(root, "quantization") &&
        !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "quantization")))
        st = kiln_error(KILN_ERR_INVALID, "optimize: %s is already quantized; optimize the fp32 version it came from "
                        "(model.json \"optimized_from\")", vdir);
    if (!st) st = kiln_servable_load(vdir, &s);
    kiln_servable_info info = {0};
    if (!st) {
        info = kiln_servable_get_info(s);
        if (!run_dir[0] && info.source_run && access(info.source_run, R_OK) == 0)
            snprintf(run_dir, sizeof run_dir, "%s", info.source_run);
        st = cfg_of(cJSON_GetObjectItemCaseSensitive(root, "config"),
                    info.task == KILN_TASK_REGRESSION ? "regression" : "classification", label, &cfg0);
    }
    if (!st && !(extra = cJSON_CreateObject())) st = KILN_ERR_NOMEM;
    if (!st) {
        const cJSON *prev = cJSON_GetObjectItemCaseSensitive(root, "optimizations");
        opts_list = cJSON_IsArray(prev) ? cJSON_Duplicate(prev, 1) : cJSON_CreateArray();
        cJSON_AddItemToObject(extra, "optimizations", opts_list);
        cJSON_AddStringToObject(extra, "optimized_from", o->source);
    }

    /* fold: a new config and the model rebuilt from it */
    kiln_model *m0 = s ? kiln_servable_model(s) : NULL;
    if (!st && o->fold) {
        st = kiln_fold_plan(cfg0, m0, &fr);
        cJSON *cj = NULL;
        if (!st) {
            cJSON *config = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(root, "config"), 1);
            cJSON *model = cJSON_GetObjectItemCaseSensitive(config, "model");
            cJSON_DeleteItemFromObjectCaseSensitive(model, "blocks");
            cJSON_ReplaceItemInObjectCaseSensitive(model, "layers", fr.layers);
            fr.layers = NULL;
            cj = config;
            st = cfg_of(cj, info.task == KILN_TASK_REGRESSION ? "regression" : "classification", label, &cfg1);
            if (st) kiln_error_prefix("optimize: the folded config");
        }
        cJSON_Delete(cj);
        r->bn_folded = fr.n_pairs, r->dropout_removed = fr.dropout_removed, r->act_fused = fr.act_fused;
        if (!st) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddItemToObject(f, "fold", fr.record);
            fr.record = NULL;
            cJSON_AddItemToArray(opts_list, f);
        }
    }
    if (!st) st = kiln_model_build(cfg1 ? cfg1 : cfg0, &m1);
    if (!st) st = kiln_graph_init_params(m1.graph);
    if (!st) st = kiln_fold_weights(&fr, m0->graph, m1.graph);

    /* prune: one-shot, on the (folded) weights, before calibration sees them */
    if (!st && o->prune > 0) {
        st = kiln_prune_magnitude(m1.graph, o->prune, NULL, 0, NULL, &r->pruned, &r->prunable);
        if (!st) {
            cJSON *pr = cJSON_CreateObject(), *pp = cJSON_CreateObject();
            cJSON_AddItemToObject(pp, "sparsity", kiln_json_number(o->prune, 0));
            cJSON_AddStringToObject(pp, "method", "magnitude, per tensor, every kernel");
            cJSON_AddNumberToObject(pp, "pruned", (double)r->pruned);
            cJSON_AddNumberToObject(pp, "of", (double)r->prunable);
            cJSON_AddItemToObject(pr, "prune", pp);
            cJSON_AddItemToArray(opts_list, pr);
        }
    }

    /* int8: calibration; bf16: every layer that has the form */
    if (!st && int8) {
        const kiln_dataset *ds = NULL;
        int64_t rows = 0;
        st = load_data(o, run_dir[0] ? run_dir : NULL, &m1, &dcfg, &in, &ds, r);
        if (!st) st = kiln_calibrate(&m1, ds, &in.loader, batches, pctl, pct, &cl, &ncl, &rows);
        r->calibration_rows = (int)rows;
    }
    if (!st && o->quantize) {
        quant = cJSON_CreateObject();
        cJSON *layers = cJSON_CreateObject(), *q = cJSON_CreateObject(), *qp = cJSON_CreateObject();
        cJSON_AddStringToObject(quant, "dtype", o->quantize);
        cJSON_AddStringToObject(qp, "dtype", o->quantize);
        if (int8) {
            cJSON_AddStringToObject(quant, "calibration", pctl ? "percentile" : "minmax");
            cJSON_AddStringToObject(qp, "calibration", pctl ? "percentile" : "minmax");
            if (pctl) cJSON_AddNumberToObject(quant, "percentile", pct), cJSON_AddNumberToObject(qp, "percentile", pct);
            cJSON_AddNumberToObject(qp, "batches", batches);
            cJSON_AddNumberToObject(qp, "rows", r->calibration_rows);
            cJSON_AddStringToObject(qp, "split", r->calibration_split);
            cJSON_AddStringToObject(qp, "weights", "per-output-channel symmetric, quantized when a plan is compiled");
            cJSON_AddStringToObject(qp, "activations", "per-tensor symmetric, u8 for non-negative inputs, else s8");
            for (int i = 0; i < ncl && !st; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddItemToObject(e, "input_scale", kiln_json_number(cl[i].in_scale, 1));
                cJSON_AddBoolToObject(e, "input_signed", cl[i].in_signed);
                cJSON *rg = cJSON_CreateArray();
                cJSON_AddItemToArray(rg, kiln_json_number(cl[i].lo, 1));
                cJSON_AddItemToArray(rg, kiln_json_number(cl[i].hi, 1));
                cJSON_AddItemToObject(e, "range", rg);
                cJSON_AddItemToObject(e, "clip", kiln_json_number(cl[i].clip, 1));
                cJSON_AddItemToObject(layers, kiln_node_name(cl[i].node), e);
                st = kiln_lowp_convert(m1.graph, cl[i].node, &(kiln_lowp_opts){KILN_PRECISION_INT8, cl[i].in_scale,
                                                                               cl[i].in_signed});
                append(r->lowp_layers, sizeof r->lowp_layers, kiln_node_name(cl[i].node));
                r->n_lowp++;
            }
        } else {
            int hw = kiln_cpu_has_bf16();
            for (int i = 0; i < kiln_graph_node_count(m1.graph) && !st; i++) {
                kiln_node *nd = kiln_graph_node(m1.graph, i);
                if (!kiln_lowp_supported(nd)) continue;
                cJSON_AddItemToObject(layers, kiln_node_name(nd), cJSON_CreateObject());
                append(r->lowp_layers, sizeof r->lowp_layers, kiln_node_name(nd));
                r->n_lowp++;
                if (hw) st = kiln_lowp_convert(m1.graph, nd, &(kiln_lowp_opts){KILN_PRECISION_BF16, 1, 0});
            }
            if (!hw)
                snprintf(r->warning, sizeof r->warning,
                         "this CPU has neither AVX512-BF16 nor AMX-BF16: the version is marked bf16 and runs "
                         "in fp32 here (bf16 where a CPU has them, chosen when it is loaded)");
        }
        cJSON_AddItemToObject(quant, "layers", layers);
        cJSON_AddItemToObject(q, "quantize", qp);
        cJSON_AddItemToArray(opts_list, q);
        cJSON_AddItemToObject(extra, "quantization", quant);
        /* the ops that stay fp32 */
        for (int i = 0; i < kiln_graph_node_count(m1.graph); i++) {
            kiln_node *nd = kiln_graph_node(m1.graph, i);
            const char *op = kiln_node_op(nd);
            if (!op || !strcmp(op, "input") || !strcmp(op, "param") || is_loss_op(op) || kiln_lowp_get(nd, NULL) ||
                (bf16 && kiln_lowp_supported(nd)))
                continue;
            if (kiln_lowp_supported(nd) || !strcmp(op, "conv2d_transpose")) r->n_fp32++;
            if (!strstr(r->fp32_ops, op)) append(r->fp32_ops, sizeof r->fp32_ops, op);
        }
        cJSON *ops = cJSON_CreateArray();
        cJSON_AddItemToObject(quant, "fp32_ops", ops);
        for (char *p = r->fp32_ops, *e; *p; p = e + (*e ? 2 : 0)) {
            e = strstr(p, ", ");
            if (!e) e = p + strlen(p);
            char one[64];
            snprintf(one, sizeof one, "%.*s", (int)(e - p), p);
            cJSON_AddItemToArray(ops, cJSON_CreateString(one));
            if (!*e) break;
        }
        cJSON_AddStringToObject(qp, "isa", r->isa);
        if (int8) cJSON_AddNumberToObject(qp, "weight_bits", r->weight_bits);
    }
    r->precision = int8 ? "int8" : bf16 ? (kiln_cpu_has_bf16() ? "bf16" : "fp32 (bf16 version)") : "fp32";

    /* it must compile and run here before anything is written */
    if (!st) {
        kiln_plan *p = kiln_plan_new(m1.graph, &(kiln_plan_opts){.outputs = &m1.output, .n_outputs = 1, .batch = 2});
        if (!p) st = KILN_ERR_INVALID, kiln_error_prefix("optimize: the optimized model does not compile here");
        else st = kiln_plan_forward(p);
        kiln_plan_free(p);
    }
    if (!st && !(extra_text = cJSON_PrintUnformatted(extra))) st = KILN_ERR_NOMEM;
    if (!st) {
        int nc = kiln_servable_class_count(s);
        const char **names = nc ? calloc((size_t)nc, sizeof *names) : NULL;
        for (int i = 0; i < nc && names; i++) names[i] = kiln_servable_class_name(s, i);
        kiln_export_source src = {.model = &m1, .cfg = cfg1 ? cfg1 : cfg0,
                                  .preprocessing = *kiln_servable_preprocessing(s),
                                  .class_names = names, .n_class_names = names ? nc : 0, .name = info.name,
                                  .source_run = info.source_run, .source_checkpoint = info.source_checkpoint,
                                  .extra_json = extra_text, .sparse = o->prune > 0};
        if (nc && !names) st = KILN_ERR_NOMEM;
        else st = kiln_export_graph(&src, o->to, 0, &r->version);
        free(names);
        if (!st) {
            int n = snprintf(r->dir, sizeof r->dir, "%s", o->to);
            while (n > 1 && r->dir[n - 1] == '/') r->dir[--n] = 0;
            snprintf(r->dir + n, sizeof r->dir - (size_t)n, "/%lld", (long long)r->version);
        }
    }
    free(extra_text);
    free(cl);
    kiln_inputs_free(&in);
    kiln_cfg_free(dcfg);
    kiln_fold_free(&fr);
    kiln_model_free(&m1);
    kiln_cfg_free(cfg0), kiln_cfg_free(cfg1);
    cJSON_Delete(extra);
    cJSON_Delete(root);
    kiln_free(json_text);
    kiln_servable_free(s);
    if (tmp[0]) rm_tree(tmp);
    return st;
}
