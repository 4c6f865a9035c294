/* fl_run.c — the global model of a federation and its run folder (fl_internal.h).
 *
 * The server and the simulation write an ordinary kiln run folder (DESIGN.md §3), one round
 * being one "step": config.yaml, run.json (registered in runs/kiln.db), metrics.jsonl with the
 * test metrics of the global model after every round (split "test", step = round) and the
 * round's counts (split "train": fl_clients, fl_samples, fl_rejected), TensorBoard scalars
 * (round_<name>), log.txt, and checkpoints/step-<round>/ holding weights.safetensors (the
 * trainer's checkpoint format: kiln eval, kiln export and model.init_from read it) and
 * fl_state.safetensors (the round, the strategy and its moments). Checkpoints are committed
 * atomically (kiln_run_checkpoint_*), so after a kill -9 the newest complete one is intact and
 * --resume continues after its round exactly: the global weights and the server optimizer's
 * moments are those the round ended with.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/fl_internal.h"
#include "kiln/checkpoint.h"
#include "kiln/fileio.h"
#include "kiln/registry.h"
#include "kiln/safetensors.h"

/* The server's handler threads log refused updates while the driver logs rounds: one lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void kiln_fl_log(fl_global *G, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    printf("%s\n", line);
    fflush(stdout);
    if (G && G->run) kiln_run_log(G->run, "%s", line);
    pthread_mutex_unlock(&log_lock);
}

static kiln_status write_config(fl_global *G) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", G->dir);
    return kiln_config_save(G->cfg, path);
}

static kiln_status restore(fl_global *G) {
    char name[256], path[4400];
    kiln_status st = kiln_run_checkpoint_latest(G->run, name, sizeof name, NULL, 0);
    if (st == KILN_ERR_NOTFOUND) return KILN_OK; /* killed before round 1 ended: start over */
    if (st) return st;
    snprintf(path, sizeof path, "%s/checkpoints/%s/weights.safetensors", G->dir, name);
    if ((st = kiln_checkpoint_load_weights(path, G->m.graph, 0))) return st;
    snprintf(path, sizeof path, "%s/checkpoints/%s/fl_state.safetensors", G->dir, name);
    kiln_st_file *f = NULL;
    if ((st = kiln_safetensors_open(path, &f))) return st;
    const char *r = kiln_st_meta(f, "round"), *k = kiln_st_meta(f, "strategy");
    if (!r || !k)
        st = kiln_error(KILN_ERR_FORMAT, "%s: no round or strategy", path);
    else if (strcmp(k, kiln_fl_kind_name(G->strat.o.kind)))
        st = kiln_error(KILN_ERR_INVALID, "%s: the run used --strategy %s, not %s", path, k,
                        kiln_fl_kind_name(G->strat.o.kind));
    if (!st) G->round = atoi(r), G->strat.applied = G->round;
    if (!st && G->strat.m) {
        const kiln_st_entry *m = kiln_st_find(f, "fl.m"), *v = kiln_st_find(f, "fl.v");
        if (!m || !v || m->shape.ndim != 1 || v->shape.ndim != 1 ||
            (size_t)m->shape.dims[0] != G->n_trainable ||
            (size_t)v->shape.dims[0] != G->n_trainable)
            st =
                kiln_error(KILN_ERR_FORMAT, "%s: the server optimizer's moments are missing", path);
        else
            memcpy(G->strat.m, m->data, G->n_trainable * 4),
                memcpy(G->strat.v, v->data, G->n_trainable * 4);
    }
    kiln_st_close(f);
    return st;
}

/* The flat buffer's gaps between parameters (alignment) set to 0: updates arrive with 0 there,
 * and norms and checks run over the whole buffer. */
void kiln_fl_zero_gaps(kiln_graph *g) {
    free(kiln_fl_used_mask(g));
}

unsigned char *kiln_fl_used_mask(kiln_graph *g) {
    float *p = kiln_graph_params(g);
    size_t n = kiln_graph_params_size(g);
    unsigned char *used = calloc(n ? n : 1, 1);
    if (!used) return NULL;
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        memset(used + pi->offset, 1, pi->numel);
    }
    for (size_t i = 0; i < n; i++)
        if (!used[i]) p[i] = 0;
    return used;
}

kiln_status kiln_fl_global_open(fl_global *G, const kiln_fl_server_opts *o, const char *what,
                                int *usage) {
    memset(G, 0, sizeof *G);
    G->last_acc = NAN;
    G->rounds = o->rounds, G->export_every = o->export_every;
    *usage = 1;
    kiln_status st;
    const char *runs = o->runs_dir ? o->runs_dir : "runs";
    if (o->resume) {
        if (!strcmp(o->resume, "latest")) {
            if ((st = kiln_run_find_latest(runs, NULL, G->dir, sizeof G->dir))) return st;
        } else {
            snprintf(G->dir, sizeof G->dir, "%s", o->resume);
        }
        if ((st = kiln_run_open(G->dir, KILN_RUN_WRITE, &G->run))) return st;
        kiln_registry_follow_run(G->run, 0);
        char path[4200];
        snprintf(path, sizeof path, "%s/config.yaml", G->dir);
        if ((st = kiln_config_load(path, &G->cfg)) || (st = kiln_config_resolve(G->cfg))) return st;
    } else {
        if (!o->config_path) return kiln_error(KILN_ERR_INVALID, "fl %s needs a CONFIG", what);
        if ((st = kiln_config_load(o->config_path, &G->cfg))) return st;
        for (int i = 0; i < o->n_sets; i++)
            if ((st = kiln_config_set(G->cfg, o->sets[i]))) return st;
        if ((st = kiln_config_resolve(G->cfg)) || (st = kiln_inputs_resolve_paths(G->cfg, NULL)))
            return st;
    }
    if ((st = kiln_model_build(G->cfg, &G->m))) return st;
    G->has_model = 1;
    if ((st = kiln_graph_init_params(G->m.graph))) return st;
    if (!(G->used = kiln_fl_used_mask(G->m.graph)))
        return kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
    if ((st = kiln_inputs_load(G->cfg, &G->m, &G->in))) {
        *usage = !G->in.data_error;
        return st;
    }
    G->has_inputs = 1;
    G->global = kiln_graph_params(G->m.graph);
    G->n = kiln_graph_params_size(G->m.graph),
    G->n_trainable = kiln_graph_trainable_size(G->m.graph);
    kiln_dataset *ds = G->in.test ? G->in.test : G->in.validation;
    G->eval_split = G->in.test ? "test" : "validation";
    if (ds) {
        int64_t rows = kiln_dataset_rows(ds);
        if (o->eval_limit > 0 && o->eval_limit < rows) {
            int64_t *r = malloc((size_t)o->eval_limit * sizeof *r);
            if (!r) return kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
            for (int64_t i = 0; i < o->eval_limit; i++) r[i] = i;
            st = kiln_dataset_subset(ds, r, o->eval_limit, &G->eval_ds);
            free(r);
            if (st) return st;
        } else {
            G->eval_ds = ds; /* borrowed: freed with the inputs */
        }
        if (!(G->mt = kiln_eval_metrics_new(G->cfg, &G->m))) return KILN_ERR_INVALID;
        G->ev.m = &G->m;
    }
    kiln_fl_opts so = o->strategy;
    so.seed = (uint64_t)kiln_cfg_int(G->cfg, "seed", 1);
    if ((st = kiln_fl_strategy_init(&G->strat, &so, G->n, G->n_trainable)) ||
        (st = kiln_fl_accum_init(&G->acc, G->n)))
        return st;
    G->strat.used = G->used;
    G->dp_q = o->fraction_fit > 1 ? 1 : o->fraction_fit;
    *usage = 0;
    if (o->resume) {
        if ((st = restore(G))) return st;
        kiln_run_set_status(G->run, KILN_RUN_RUNNING, NULL);
        kiln_run_save(G->run);
        kiln_fl_log(G, "fl %s: resumed %s after round %d", what, G->dir, G->round);
    } else {
        const char *exp = kiln_cfg_str(G->cfg, "experiment", "default");
        if ((st = kiln_run_create(runs, exp, o->name ? o->name : "fl", &G->run))) return st;
        kiln_registry_follow_run(G->run, 1);
        snprintf(G->dir, sizeof G->dir, "%s", kiln_run_get_info(G->run).path);
        if ((st = write_config(G))) return st;
        char hash[17];
        kiln_cfg_hash(G->cfg, hash);
        kiln_run_set_seed(G->run, (uint64_t)kiln_cfg_int(G->cfg, "seed", 1));
        kiln_run_set_config_hash(G->run, hash);
        if (o->argc) kiln_run_set_command(G->run, o->argc, o->argv);
        kiln_run_save(G->run);
    }
    kiln_tb_open(G->dir, &G->tb); /* TensorBoard is optional: a failure leaves it off */
    return KILN_OK;
}

kiln_status kiln_fl_global_write(fl_global *G, const char *path, int round) {
    char r[32];
    snprintf(r, sizeof r, "%d", round);
    const char *meta[] = {"round", r};
    return kiln_checkpoint_save(path, G->m.graph, NULL, NULL, meta, 1);
}

static kiln_status checkpoint(fl_global *G, int round) {
    char tmp[4200], path[4400], r[32];
    kiln_status st = kiln_run_checkpoint_begin(G->run, round, tmp, sizeof tmp);
    if (st) return st;
    snprintf(r, sizeof r, "%d", round);
    snprintf(path, sizeof path, "%s/weights.safetensors", tmp);
    const char *meta[] = {"round", r};
    st = kiln_checkpoint_save(path, G->m.graph, NULL, NULL, meta, 1);
    if (!st) {
        kiln_st_entry e[2];
        int n = 0;
        if (G->strat.m) {
            kiln_shape s = {.ndim = 1, .dims = {(int64_t)G->n_trainable}};
            e[n++] =
                (kiln_st_entry){.name = "fl.m", .dtype = KILN_F32, .shape = s, .data = G->strat.m};
            e[n++] =
                (kiln_st_entry){.name = "fl.v", .dtype = KILN_F32, .shape = s, .data = G->strat.v};
        }
        const char *kv[] = {"round", r, "strategy", kiln_fl_kind_name(G->strat.o.kind)};
        snprintf(path, sizeof path, "%s/fl_state.safetensors", tmp);
        st = kiln_safetensors_write(path, e, n, kv, 2);
    }
    if (st) {
        kiln_run_checkpoint_abort(G->run, tmp);
        return st;
    }
    kiln_run_set_progress(G->run, round, round);
    if ((st = kiln_run_checkpoint_commit(G->run, round, tmp))) return st;
    return kiln_run_checkpoint_prune(G->run, 3, NULL);
}

static void point(fl_global *G, int round, kiln_split split, const char *name, double v) {
    kiln_run_log_metric(G->run, round, round, split, name, v);
    if (G->tb) {
        char tag[160];
        snprintf(tag, sizeof tag, "round_%s%s", split == KILN_SPLIT_TEST ? "test_" : "", name);
        kiln_tb_scalar(G->tb, tag, round, (float)v);
    }
}

kiln_status kiln_fl_global_round(fl_global *G, int round, int clients, double samples, int rejected,
                                 const char *extra) {
    kiln_status st = KILN_OK;
    char summary[1024] = "";
    size_t used = 0;
    if (G->eval_ds) {
        if ((st = kiln_evaluate(&G->ev, G->eval_ds, &G->in.loader, G->mt))) return st;
        for (int i = 0; i < kiln_metrics_count(G->mt); i++) {
            const char *name = kiln_metrics_name(G->mt, i);
            double v = kiln_metrics_value(G->mt, i);
            point(G, round, KILN_SPLIT_TEST, name, v);
            char key[128];
            snprintf(key, sizeof key, "%s_%s", G->eval_split, name);
            kiln_run_set_metric(G->run, KILN_RUN_FINAL, key, v);
            if (!strcmp(name, "accuracy")) G->last_acc = v;
            if (used < sizeof summary - 64)
                used += (size_t)snprintf(summary + used, sizeof summary - used, " %s_%s=%.4f",
                                         G->eval_split, name, v);
        }
    }
    point(G, round, KILN_SPLIT_TRAIN, "fl_clients", clients);
    point(G, round, KILN_SPLIT_TRAIN, "fl_samples", samples);
    point(G, round, KILN_SPLIT_TRAIN, "fl_rejected", rejected);
    if (G->strat.o.dp_noise > 0) {
        double eps = kiln_fl_dp_epsilon(G->dp_q, G->strat.o.dp_noise, round, G->strat.o.dp_delta);
        point(G, round, KILN_SPLIT_TRAIN, "dp_epsilon", eps);
        kiln_run_set_metric(G->run, KILN_RUN_FINAL, "dp_epsilon", eps);
        if (used < sizeof summary - 64)
            used += (size_t)snprintf(summary + used, sizeof summary - used,
                                     " dp_epsilon=%.4g (delta %g)", eps, G->strat.o.dp_delta);
    }
    kiln_fl_log(G, "round %d/%d: %d client%s, %.0f samples, %d rejected%s%s%s", round, G->rounds,
                clients, clients == 1 ? "" : "s", samples, rejected, summary,
                extra && *extra ? " " : "", extra ? extra : "");
    G->round = round;
    if ((st = checkpoint(G, round))) return st;
    if (G->export_every > 0 && round % G->export_every == 0 && round < G->rounds) {
        int64_t v = 0;
        if ((st = kiln_export_run(G->dir, NULL, NULL, round, &v))) return st;
        kiln_fl_log(G, "round %d: exported version %lld", round, (long long)v);
    }
    return KILN_OK;
}

kiln_status kiln_fl_global_close(fl_global *G, kiln_status st) {
    if (G->run) {
        if (!st && G->round > 0 && G->round == G->rounds) {
            char p[4400];
            struct stat sb;
            snprintf(p, sizeof p, "%s/export/%d", G->dir, G->round);
            int64_t v = G->round;
            if (stat(p, &sb) != 0) st = kiln_export_run(G->dir, NULL, NULL, G->round, &v);
            if (!st)
                kiln_fl_log(G, "exported the global model of round %d as version %lld", G->round,
                            (long long)v);
        }
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st ? kiln_last_error() : "");
        kiln_run_set_status(G->run,
                            !st          ? KILN_RUN_FINISHED
                            : G->stopped ? KILN_RUN_STOPPED
                                         : KILN_RUN_FAILED,
                            st ? msg : NULL);
        kiln_run_save(G->run);
        kiln_run_close(G->run);
        if (st) kiln_error(st, "%s", msg);
    }
    kiln_tb_close(G->tb);
    kiln_metrics_free(G->mt);
    kiln_evaluator_free(&G->ev);
    if (G->has_inputs && G->eval_ds && G->eval_ds != G->in.test && G->eval_ds != G->in.validation)
        kiln_dataset_free(G->eval_ds);
    if (G->has_inputs) kiln_inputs_free(&G->in);
    if (G->has_model) kiln_model_free(&G->m);
    kiln_cfg_free(G->cfg);
    kiln_fl_strategy_free(&G->strat);
    kiln_fl_accum_free(&G->acc);
    free(G->used);
    return st;
}
