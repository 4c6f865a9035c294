/* fl_sim.c — `kiln fl simulate`: a whole federation in one process (kiln/fl.h).
 *
 * The training split is partitioned once among N simulated clients (iid, dirichlet:ALPHA,
 * shards:K; kiln_fl_partition) and each client's row count and class histogram are logged.
 * Each round samples ceil(fraction_fit * N) clients (at least min_clients) and trains them one
 * after the other with the same local training as a real client (fl_local.c: the ordinary
 * trainer started from the global weights, narrowed to the client's rows): memory stays at two
 * models (the global one and one client's) and one loaded data set at a time, whatever N is.
 * Updates go through the same checks and strategies as the server's, and the global model gets
 * the same run folder (fl_run.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/fl_internal.h"
#include "kiln/data.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static kiln_status read_labels(const kiln_dataset *ds, int64_t n, int32_t *labels) {
    kiln_shape s = kiln_dataset_x_shape(ds);
    int64_t numel = 1;
    for (int d = 0; d < s.ndim; d++) numel *= s.dims[d];
    float *x = malloc((size_t)(numel > 0 ? numel : 1) * sizeof *x);
    if (!x) return kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
    kiln_status st = KILN_OK;
    for (int64_t i = 0; !st && i < n; i++) st = kiln_dataset_get(ds, i, x, &labels[i]);
    free(x);
    return st;
}

kiln_status kiln_fl_simulate(const kiln_fl_sim_opts *o, kiln_fl_result *res) {
    memset(res, 0, sizeof *res);
    res->accuracy = NAN;
    if (o->s.resume) {
        res->usage_error = 1;
        return kiln_error(KILN_ERR_INVALID, "fl simulate does not resume (run it again)");
    }
    fl_global G;
    int usage = 0;
    kiln_status st = kiln_fl_global_open(&G, &o->s, "simulate", &usage);
    snprintf(res->run_dir, sizeof res->run_dir, "%s", G.dir);
    if (st) {
        res->usage_error = usage;
        return kiln_fl_global_close(&G, st);
    }
    int N = o->clients;
    int64_t rows = kiln_dataset_rows(G.in.train);
    if (o->limit > 0 && o->limit < rows) rows = o->limit;
    int classes = kiln_dataset_label_kind(G.in.train) == KILN_LABEL_CLASS
                      ? kiln_dataset_num_classes(G.in.train)
                      : 0;
    int32_t *labels = calloc((size_t)rows, sizeof *labels);
    int64_t **part = calloc((size_t)(N > 0 ? N : 1), sizeof *part);
    int64_t *counts = calloc((size_t)(N > 0 ? N : 1), sizeof *counts);
    float *upd = calloc(G.n, sizeof *upd);
    kiln_model cm = {0};
    int has_cm = 0;
    if (!labels || !part || !counts || !upd) st = kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
    if (!st && classes) st = read_labels(G.in.train, rows, labels);
    if (!st) {
        st = kiln_fl_partition(o->partition ? o->partition : "iid", labels, rows, classes, N,
                               (uint64_t)kiln_cfg_int(G.cfg, "seed", 1), part, counts);
        if (st) res->usage_error = 1;
    }
    if (!st) { /* per-client data statistics */
        kiln_fl_log(&G,
                    "fl simulate: %d clients over %lld training rows, partition %s, %d rounds, "
                    "strategy %s, fraction %.3g, %d local epoch%s; run %s",
                    N, (long long)rows, o->partition ? o->partition : "iid", o->s.rounds,
                    kiln_fl_kind_name(o->s.strategy.kind), o->s.fraction_fit, o->s.local_epochs,
                    o->s.local_epochs == 1 ? "" : "s", G.dir);
        int64_t *h = calloc((size_t)(classes > 0 ? classes : 1), sizeof *h);
        for (int c = 0; h && c < N; c++) {
            char line[1024];
            int at = snprintf(line, sizeof line, "client %d: %lld rows", c, (long long)counts[c]);
            if (classes) {
                memset(h, 0, (size_t)classes * sizeof *h);
                for (int64_t i = 0; i < counts[c]; i++) {
                    int32_t l = labels[part[c][i]];
                    if (l >= 0 && l < classes) h[l]++;
                }
                at += snprintf(line + at, sizeof line - (size_t)at, ", classes [");
                for (int k = 0; k < classes && at < (int)sizeof line - 24; k++)
                    at += snprintf(line + at, sizeof line - (size_t)at, "%s%lld", k ? " " : "",
                                   (long long)h[k]);
                snprintf(line + at, sizeof line - (size_t)at, "]");
            }
            kiln_fl_log(&G, "%s", line);
        }
        free(h);
    }
    if (!st && !(st = kiln_model_build(G.cfg, &cm))) has_cm = 1;
    if (!st && !(st = kiln_graph_init_params(cm.graph))) kiln_fl_zero_gaps(cm.graph);
    char tmp[4200], gpath[4300], cpath[4300];
    snprintf(tmp, sizeof tmp, "%s/fl-tmp", G.dir);
    snprintf(gpath, sizeof gpath, "%s/global.safetensors", tmp);
    snprintf(cpath, sizeof cpath, "%s/config.yaml", G.dir);
    if (!st) st = kiln_mkdirs(tmp);
    int per = (int)ceil(o->s.fraction_fit * N);
    if (per < o->s.min_clients) per = o->s.min_clients;
    if (per > N) per = N;
    if (per < 1) per = 1;
    G.dp_q = (double)per / N;
    int64_t *pick = malloc((size_t)(N > 0 ? N : 1) * sizeof *pick);
    if (!pick && !st) st = kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
    uint64_t seed = (uint64_t)kiln_cfg_int(G.cfg, "seed", 1);
    for (int r = 1; !st && r <= o->s.rounds; r++) {
        double t0 = now_s();
        if ((st = kiln_fl_global_write(&G, gpath, r))) break;
        if ((st = kiln_data_permutation(N, seed, 0x53494d00u + (uint64_t)r, pick))) break;
        if (per == N) /* everyone, in order */
            for (int c = 0; c < N; c++) pick[c] = c;
        kiln_fl_accum_reset(&G.acc);
        int rejected = 0;
        double samples = 0, norm_sum = 0;
        for (int j = 0; !st && j < per; j++) {
            int c = (int)pick[j];
            if (counts[c] == 0) continue; /* a client with no data sits the round out */
            fl_local_opts lo = {.config_path = cpath,
                                .init_path = gpath,
                                .epochs = o->s.local_epochs,
                                .mu = o->s.strategy.kind == KILN_FL_FEDPROX ? o->s.strategy.mu : 0,
                                .seed_offset = (uint64_t)(r - 1) * (uint64_t)N + (uint64_t)c,
                                .rows = part[c],
                                .n_rows = counts[c],
                                .drop_eval = 1,
                                .no_early_stop = kiln_cfg_at(G.cfg, "train.early_stopping") != NULL,
                                .runs_dir = tmp};
            int64_t ns = 0;
            int u = 0;
            if ((st = kiln_fl_local_train(&lo, cm.graph, upd, &ns, &u, 0))) {
                res->usage_error = u;
                break;
            }
            double norm = 0;
            if (kiln_fl_check_update(&G.strat.o, G.global, upd, G.n, &norm)) {
                kiln_fl_log(&G, "round %d: client %d's update refused: %s", r, c,
                            kiln_last_error());
                rejected++;
                continue;
            }
            kiln_fl_accum_add(&G.acc, upd, kiln_fl_weight(&G.strat.o, (double)ns));
            samples += (double)ns, norm_sum += norm;
        }
        if (st) break;
        if (G.acc.count == 0) {
            st = kiln_error(KILN_ERR_INVALID, "round %d: no client gave a valid update", r);
            break;
        }
        int got = G.acc.count;
        if ((st = kiln_fl_strategy_apply(&G.strat, &G.acc, G.global))) break;
        char extra[128];
        snprintf(extra, sizeof extra, "mean_update_norm=%.4g (%.1f s)", norm_sum / got,
                 now_s() - t0);
        kiln_run_log_metric(G.run, r, r, KILN_SPLIT_TRAIN, "fl_update_norm", norm_sum / got);
        st = kiln_fl_global_round(&G, r, got, samples, rejected, extra);
    }
    if (G.dir[0]) kiln_fl_remove_tree(tmp);
    for (int c = 0; part && c < N; c++) free(part[c]);
    free(part), free(counts), free(labels), free(upd), free(pick);
    if (has_cm) kiln_model_free(&cm);
    res->accuracy = G.last_acc;
    if (st) kiln_fl_log(&G, "error: %s", kiln_last_error());
    st = kiln_fl_global_close(&G, st);
    if (!st) printf("fl simulate: finished: %s\n", res->run_dir);
    return st;
}
