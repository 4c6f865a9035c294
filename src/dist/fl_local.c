/* fl_local.c — one client's local training in a federated round: the whole kiln trainer
 * (kiln_train: augmentation, schedules, EMA, its own run folder) started from the global
 * weights and run for E epochs; the final parameters come back from its last checkpoint.
 *
 * How it plugs in without touching the trainer. The global weights reach the model through
 * model.init_from (a --set of the config, the ordinary path of fine-tuning), the epochs through
 * train.epochs. The rest goes through kiln_train_hooks (kiln/trainer.h), the callbacks data
 * parallel training uses, here for a single process (writer = 1): setup narrows the training
 * split to this client's rows (a simulated partition, --limit, --shard) and offsets the shuffle
 * seed per round; begin keeps a copy of the starting (global) trainable weights; step_end adds
 * FedProx's proximal gradient mu (w - w_global) before the optimizer's update. With mu = 0, one
 * client, all rows and seed offset 0, this is exactly `kiln train` started from those weights.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist/fl_internal.h"
#include "kiln/checkpoint.h"
#include "kiln/trainer.h"

typedef struct {
    const fl_local_opts *o;
    kiln_graph *g;
    float *w0; /* [trainable]: the weights the round started from */
    size_t nt;
    int64_t samples;
} local;

static kiln_status narrow(kiln_dataset **ds, const int64_t *rows, int64_t n) {
    kiln_dataset *part = NULL;
    kiln_status st = kiln_dataset_subset(*ds, rows, n, &part);
    if (st) return st;
    kiln_dataset_free(*ds);
    *ds = part;
    return KILN_OK;
}

static kiln_status h_setup(void *ctx, kiln_status st, int *usage, const char *hash,
                           const kiln_cfg *cfg, kiln_inputs *in) {
    (void)hash;
    local *L = ctx;
    const fl_local_opts *o = L->o;
    if (st) return st;
    if (o->mu > 0 && kiln_config_stage_count(cfg) > 0) { /* a stage rebuilds the graph begin saw */
        *usage = 1;
        return kiln_error(KILN_ERR_INVALID, "fl: FedProx (mu > 0) does not support a config with "
                                            "stages: (yet)");
    }
    int64_t n = kiln_dataset_rows(in->train);
    if (o->rows) {
        for (int64_t i = 0; i < o->n_rows; i++)
            if (o->rows[i] < 0 || o->rows[i] >= n)
                return kiln_error(KILN_ERR_INVALID,
                                  "fl: row %lld of the partition is outside "
                                  "the %lld training rows",
                                  (long long)o->rows[i], (long long)n);
        if ((st = narrow(&in->train, o->rows, o->n_rows))) return st;
    }
    n = kiln_dataset_rows(in->train);
    int64_t lo = 0, hi = n;
    if (o->limit > 0 && o->limit < hi) hi = o->limit;
    if (o->shards > 1) {
        int64_t m = hi;
        lo = m * o->shard / o->shards, hi = m * (o->shard + 1) / o->shards;
    }
    if (lo > 0 || hi < n) {
        if (hi <= lo)
            return kiln_error(KILN_ERR_INVALID, "fl: no training rows left for this client");
        int64_t *r = malloc((size_t)(hi - lo) * sizeof *r);
        if (!r) return kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
        for (int64_t i = lo; i < hi; i++) r[i - lo] = i;
        st = narrow(&in->train, r, hi - lo);
        free(r);
        if (st) return st;
    }
    if (o->drop_eval) {
        kiln_dataset_free(in->validation), in->validation = NULL;
        kiln_dataset_free(in->test), in->test = NULL;
    }
    in->train_loader.seed += o->seed_offset;
    L->samples = kiln_dataset_rows(in->train);
    return KILN_OK;
}

static kiln_status h_run_folder(void *ctx, kiln_status st, char *dir, size_t cap) {
    (void)ctx, (void)dir, (void)cap;
    return st;
}

static kiln_status h_begin(void *ctx, kiln_status st, const kiln_train_sync *s) {
    local *L = ctx;
    if (st) return st;
    L->g = s->graph;
    if (L->o->mu > 0) {
        L->nt = kiln_graph_trainable_size(s->graph);
        if (!(L->w0 = malloc((L->nt ? L->nt : 1) * sizeof *L->w0)))
            return kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
        memcpy(L->w0, kiln_graph_params(s->graph), L->nt * sizeof *L->w0);
    }
    return KILN_OK;
}

static void h_step_begin(void *ctx, int64_t batch, int rows, float *grads) {
    (void)ctx, (void)batch, (void)rows, (void)grads;
}

static void h_grads_ready(void *ctx, size_t from) {
    (void)ctx, (void)from;
}

static kiln_status h_step_end(void *ctx, float *grads, float *loss, int *rows, int *stop) {
    (void)loss, (void)rows, (void)stop;
    local *L = ctx;
    if (L->w0 && L->g) { /* FedProx: d/dw of mu/2 |w - w_global|^2 */
        const float *w = kiln_graph_params(L->g);
        float mu = (float)L->o->mu;
        size_t nt = kiln_graph_trainable_size(L->g);
        if (nt > L->nt) nt = L->nt;
        for (size_t i = 0; i < nt; i++) grads[i] += mu * (w[i] - L->w0[i]);
    }
    return KILN_OK;
}

static kiln_status h_reduce(void *ctx, kiln_metrics *mt) {
    (void)ctx, (void)mt;
    return KILN_OK;
}

static kiln_status h_sync(void *ctx, float *p, size_t n) {
    (void)ctx, (void)p, (void)n;
    return KILN_OK;
}

static void h_log(void *ctx, const char *line) {
    (void)ctx, (void)line;
}

void kiln_fl_remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                kiln_fl_remove_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

kiln_status kiln_fl_local_train(const fl_local_opts *o, kiln_graph *g, float *out, int64_t *samples,
                                int *usage, int keep) {
    *usage = 0;
    static const char *const NO_EARLY[] = {"train.early_stopping.monitor=loss",
                                           "train.early_stopping.restore_best=false",
                                           "train.early_stopping.patience=1000000000"};
    int n = o->n_sets + 2 + (o->no_early_stop ? 3 : 0);
    const char **sets = malloc((size_t)n * sizeof *sets);
    char *init = malloc(strlen(o->init_path) + 32), epochs[64];
    if (!sets || !init) {
        free(sets), free(init);
        return kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
    }
    for (int i = 0; i < o->n_sets; i++) sets[i] = o->sets[i];
    sprintf(init, "model.init_from=%s", o->init_path);
    snprintf(epochs, sizeof epochs, "train.epochs=%d", o->epochs > 0 ? o->epochs : 1);
    sets[o->n_sets] = init, sets[o->n_sets + 1] = epochs;
    for (int i = 0; o->no_early_stop && i < 3; i++) sets[o->n_sets + 2 + i] = NO_EARLY[i];
    local L = {.o = o};
    kiln_train_hooks h = {.ctx = &L,
                          .writer = 1,
                          .setup = h_setup,
                          .run_folder = h_run_folder,
                          .begin = h_begin,
                          .step_begin = h_step_begin,
                          .grads_ready = h_grads_ready,
                          .step_end = h_step_end,
                          .reduce_metrics = h_reduce,
                          .sync_buffers = h_sync,
                          .log = h_log};
    kiln_train_opts to = {.config_path = o->config_path,
                          .sets = sets,
                          .n_sets = n,
                          .name = "fl-local",
                          .runs_dir = o->runs_dir,
                          .threads = o->threads,
                          .quiet = 1,
                          .hooks = &h};
    kiln_train_result res;
    fflush(stdout);
    /* the trainer's own lines (progress, its init_from report) are the local run's log.txt */
    int saved = dup(1), saved2 = dup(2), null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1), dup2(null, 2);
    kiln_status st = kiln_train(&to, &res);
    fflush(stdout);
    if (saved >= 0) dup2(saved, 1), close(saved);
    if (saved2 >= 0) dup2(saved2, 2), close(saved2);
    if (null >= 0) close(null);
    free(sets), free(init), free(L.w0);
    *usage = res.usage_error;
    if (!st) {
        char path[4400];
        kiln_rundir *run = NULL;
        char name[256];
        if (!(st = kiln_run_open(res.run_dir, KILN_RUN_READ, &run)) &&
            !(st = kiln_run_checkpoint_latest(run, name, sizeof name, NULL, 0))) {
            snprintf(path, sizeof path, "%s/checkpoints/%s/weights.safetensors", res.run_dir, name);
            /* the trained parameters themselves (not their EMA) */
            st = kiln_checkpoint_load_weights(path, g, 0);
        }
        if (!st && o->metrics && o->metrics_cap) { /* for federated evaluation */
            size_t at = 0;
            o->metrics[0] = 0;
            for (int i = 0; i < kiln_run_metric_count(run, KILN_RUN_FINAL); i++) {
                double v;
                const char *n = kiln_run_metric_at(run, KILN_RUN_FINAL, i, &v);
                if (!n || strncmp(n, "val_", 4) || strlen(n) > 60 || !isfinite(v)) continue;
                int k = snprintf(o->metrics + at, o->metrics_cap - at, "%s%s=%.9g", at ? ";" : "",
                                 n, v);
                if (k < 0 || (size_t)k >= o->metrics_cap - at) break;
                at += (size_t)k;
            }
        }
        kiln_run_close(run);
        if (!st) memcpy(out, kiln_graph_params(g), kiln_graph_params_size(g) * sizeof *out);
        *samples = L.samples;
    }
    if (!keep && res.run_dir[0]) kiln_fl_remove_tree(res.run_dir);
    return st;
}
