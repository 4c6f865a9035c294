/* trainer.c — kiln train: the loop and its hooks (see kiln/trainer.h).
 *
 * Determinism is what makes --resume exact: the batch order of epoch e depends only on (seed, e)
 * (kiln_loader_seek), dropout masks on (seed, node, step), and a checkpoint holds everything
 * else that changes: parameters (batch-norm statistics included), optimizer slots and iteration
 * count, EMA weights and update count, and state.json (step, epoch, batch within the epoch,
 * early-stopping counters and best value). Evaluation never changes parameters (EMA weights are
 * swapped in and back bit for bit). So a run killed at any point and resumed from its newest
 * checkpoint ends with the weights an uninterrupted run ends with.
 *
 * Steps: a step is one optimizer update; `step` counts completed updates, `batch` the batches
 * completed in the current epoch. A checkpoint is taken after a step (every_steps), at epoch ends
 * (every_epochs, after validation and early stopping so their state is in it), whenever the
 * monitored metric improves (that one is kept as "best"), on SIGINT/SIGTERM, and at the end.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/checkpoint.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "kiln/optim.h"
#include "kiln/registry.h"
#include "kiln/export.h"
#include "kiln/inputs.h"
#include "kiln/run.h"
#include "kiln/trainer.h"
#include "train/distill.h"
#include "train/evaluate.h"
#include "train/profile.h"
#include "train/progress.h"
#include "train/prune.h"
#include "train/signals.h"
#include "train/tb_hooks.h"
#include "run/train_state.h"

static volatile sig_atomic_t stop_signal, prune_signal;
/* Any thread may run the handler, two at once when two signals come together (a prune and the
 * tuner's SIGTERM): so no read-then-write of one flag, where the second could undo the first. A
 * run that got kiln tune's SIGUSR1 ends pruned, as the study records it, whatever came with it. */
static void on_signal(int sig) {
    if (sig == SIGUSR1) prune_signal = 1;
    stop_signal = sig;
}
static int signalled(void) { return prune_signal ? SIGUSR1 : stop_signal; }

typedef struct {
    kiln_cfg *cfg;  /* the run's config (stages: included): hashed, written to config.yaml */
    kiln_cfg *scfg; /* stages: the current stage's effective config (NULL: none, cfg is it) */
    int n_stages;   /* 0 without stages: */
    int64_t total_epochs; /* over all stages (progress lines) */
    char hash[17];
    kiln_model m;
    kiln_inputs in;
    kiln_rundir *run;
    kiln_optim *opt;
    kiln_ema *ema;
    kiln_schedule sched;
    float base_lr;
    kiln_plan *train, *train_tail; /* batch B, and the final partial batch (NULL when none) */
    kiln_node *tloss, *ttarget;    /* what training minimizes and feeds: the soft-label pair with
                                      mixup / cutmix, else the model's loss and target */
    kiln_evaluator ev;
    kiln_loader *loader;
    kiln_metrics *train_mt, *val_mt;
    kiln_progress prog;
    kiln_tb_hooks *tb; /* TensorBoard output (NULL: log.tensorboard off) */
    kiln_train_state s;
    float *best_params; /* restore_best: the weights that scored best */
    float *swap;        /* EMA evaluation: parameters set aside */
    int64_t B, n_train, batches, epochs, max_steps, every_steps, every_epochs, keep, log_every, validate_every;
    int64_t export_steps, export_epochs; /* train.export (0: never) */
    int early, restore_best, higher, monitor_val;
    const char *monitor; /* metric name without the val_ prefix */
    double min_delta;
    int64_t patience;
    double loss_sum;
    int64_t loss_n;
    /* --profile */
    kiln_op_event *events;
    int n_events, cap_events, prof_steps, prof_done;
    int64_t prof_from; /* first profiled step */
    char *init_report; /* model.init_from's report, logged once the run folder exists */
    const kiln_train_hooks *hooks; /* NULL: a plain single process (see kiln/trainer.h) */
    int stop;                      /* with hooks: the signal every process stops on */
    kiln_pruner *prune;            /* train.prune (NULL: off; train/prune.c) */
    kiln_distill *distill;         /* train.distill (NULL: off; train/distill.c) */
} trainer;

/* The signal training stops on: with hooks, the one every process agreed on at the last step. */
static int stopping(const trainer *t) { return t->hooks ? t->stop : signalled(); }

/* ---- setup ---- */

#define CFG(t) ((t)->scfg ? (t)->scfg : (t)->cfg) /* what this stage trains with */

static kiln_status usage(kiln_train_result *r, kiln_status st) {
    r->usage_error = 1;
    return st;
}

static void log_line(void *ctx, const char *line) { kiln_run_log(ctx, "%s", line); }

/* A data source's own lines (a Kafka stream pausing): on stderr as before, and in log.txt. */
static void source_log_line(void *ctx, const char *line) {
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    kiln_run_log(ctx, "%s", line);
}

static kiln_status build_optimizer(trainer *t) {
    const kiln_cfg *oc = kiln_cfg_at(CFG(t), "optimizer")->items[0];
    kiln_optim_config c = {.kind = kiln_optim_kind_from_name(oc->key)};
    t->base_lr = (float)kiln_cfg_num(oc, "learning_rate", 0.001);
    c.weight_decay = (float)kiln_cfg_num(oc, "weight_decay", 0);
    c.clip_norm = (float)kiln_cfg_num(CFG(t), "train.clip_norm", 0);
    switch (c.kind) {
    case KILN_OPT_SGD:
        c.momentum = (float)kiln_cfg_num(oc, "momentum", 0);
        c.nesterov = kiln_cfg_bool(oc, "nesterov", 0);
        break;
    case KILN_OPT_ADAM:
    case KILN_OPT_ADAMW:
        c.beta1 = (float)kiln_cfg_num(oc, "beta_1", 0.9);
        c.beta2 = (float)kiln_cfg_num(oc, "beta_2", 0.999);
        c.epsilon = (float)kiln_cfg_num(oc, "epsilon", 1e-7);
        break;
    case KILN_OPT_RMSPROP:
        c.rho = (float)kiln_cfg_num(oc, "rho", 0.9);
        c.momentum = (float)kiln_cfg_num(oc, "momentum", 0);
        c.epsilon = (float)kiln_cfg_num(oc, "epsilon", 1e-7);
        break;
    default: break;
    }
    if (!(t->opt = kiln_optim_new(&c, kiln_graph_trainable_size(t->m.graph)))) {
        kiln_error_prefix("optimizer.%s", oc->key);
        return KILN_ERR_INVALID;
    }
    /* schedule */
    const kiln_cfg *sc = kiln_cfg_at(CFG(t), "schedule")->items[0];
    kiln_schedule *s = &t->sched;
    memset(s, 0, sizeof *s);
    s->kind = kiln_schedule_kind_from_name(sc->key);
    int64_t total = t->max_steps ? t->max_steps : t->epochs * t->batches;
    switch (s->kind) {
    case KILN_SCHED_STEP:
        s->step_size = kiln_cfg_int(sc, "step_size", 1);
        s->gamma = (float)kiln_cfg_num(sc, "gamma", 0.1);
        break;
    case KILN_SCHED_EXPONENTIAL:
        s->decay_steps = kiln_cfg_int(sc, "decay_steps", 1);
        s->decay_rate = (float)kiln_cfg_num(sc, "decay_rate", 1);
        s->staircase = kiln_cfg_bool(sc, "staircase", 0);
        break;
    case KILN_SCHED_COSINE:
        s->total_steps = kiln_cfg_int(sc, "total_steps", total);
        s->alpha = (float)kiln_cfg_num(sc, "alpha", 0);
        break;
    case KILN_SCHED_ONE_CYCLE:
        s->total_steps = kiln_cfg_int(sc, "total_steps", total);
        s->pct_start = (float)kiln_cfg_num(sc, "pct_start", 0.3);
        s->div_factor = (float)kiln_cfg_num(sc, "div_factor", 25);
        s->final_div_factor = (float)kiln_cfg_num(sc, "final_div_factor", 1e4);
        break;
    default: break;
    }
    if (s->kind != KILN_SCHED_ONE_CYCLE) s->warmup_steps = kiln_cfg_int(sc, "warmup_steps", 0);
    if (kiln_schedule_validate(s) != KILN_OK) {
        kiln_error_prefix("schedule.%s", sc->key);
        return KILN_ERR_INVALID;
    }
    float decay = (float)kiln_cfg_num(t->cfg, "train.ema_decay", 0);
    if (decay > 0 && !t->ema &&
        !(t->ema = kiln_ema_new(kiln_graph_params_size(t->m.graph), decay,
                                kiln_graph_params(t->m.graph))))
        return KILN_ERR_NOMEM;
    return KILN_OK;
}

/* The metric names of the config: "accuracy", "top_k_accuracy", ... */
/* The metrics the stage's config lists (train/evaluate.c builds them as kiln eval does). */
static kiln_metrics *new_metrics(trainer *t) { return kiln_eval_metrics_new(CFG(t), &t->m); }

static kiln_status read_settings(trainer *t) {
    const kiln_cfg *c = CFG(t);
    t->epochs = kiln_cfg_int(c, "train.epochs", 10);
    t->max_steps = kiln_cfg_int(c, "train.max_steps", 0);
    t->every_steps = kiln_cfg_int(c, "train.checkpoint.every_steps", 0);
    t->every_epochs = kiln_cfg_int(c, "train.checkpoint.every_epochs", 1);
    t->keep = kiln_cfg_int(c, "train.checkpoint.keep", 3);
    t->log_every = kiln_cfg_int(c, "log.every_steps", 50);
    if (kiln_cfg_at(c, "train.export")) {
        t->export_steps = kiln_cfg_int(c, "train.export.every_steps", 0);
        t->export_epochs = kiln_cfg_int(c, "train.export.every_epochs", 1);
    }
    t->validate_every = kiln_cfg_int(c, "train.validate_every_steps", 0);
    t->early = kiln_cfg_at(c, "train.early_stopping") != NULL;
    const char *mon = kiln_cfg_str(c, "train.early_stopping.monitor", "val_loss");
    t->monitor_val = strncmp(mon, "val_", 4) == 0;
    t->monitor = t->monitor_val ? mon + 4 : mon;
    const char *mode = kiln_cfg_str(c, "train.early_stopping.mode", "auto");
    t->higher = !strcmp(mode, "max") || (!strcmp(mode, "auto") && kiln_metric_higher_is_better(t->monitor));
    t->min_delta = kiln_cfg_num(c, "train.early_stopping.min_delta", 0);
    t->patience = kiln_cfg_int(c, "train.early_stopping.patience", 3);
    t->restore_best = t->early && kiln_cfg_bool(c, "train.early_stopping.restore_best", 1);
    char where[300];
    kiln_cfg *mc = kiln_cfg_at(c, "train.early_stopping.monitor");
    if (t->early && t->monitor_val && !t->in.validation)
        return kiln_error(KILN_ERR_INVALID, "%s: train.early_stopping.monitor: %s needs validation data (data.validation or data.validation_split)",
                          mc ? kiln_cfg_where(mc, where, sizeof where) : "config", mon);
    if (t->early) {
        int found = 0;
        kiln_metrics_get(t->val_mt, t->monitor, &found);
        if (!found)
            return kiln_error(KILN_ERR_INVALID, "%s: train.early_stopping.monitor: '%s' is not logged (loss or one of metrics:)",
                              mc ? kiln_cfg_where(mc, where, sizeof where) : "config", mon);
    }
    return KILN_OK;
}

static kiln_status make_plans(trainer *t) {
    t->tloss = t->distill    ? kiln_distill_loss(t->distill)
               : t->m.soft_loss ? t->m.soft_loss
                                : t->m.loss;
    t->ttarget = t->m.soft_target ? t->m.soft_target : t->m.target;
    kiln_node *outs[2] = {t->tloss, t->m.output};
    int det = kiln_cfg_bool(CFG(t), "train.deterministic", 1);
    kiln_plan_opts po = {.outputs = outs, .n_outputs = 2, .loss = t->tloss, .batch = (int)t->B, .training = 1,
                         .deterministic = det};
    if (!(t->train = kiln_plan_new(t->m.graph, &po))) return KILN_ERR_INVALID;
    const kiln_loader_config *lc = &t->in.train_loader; /* this process's rows of the last batch */
    int tail = (int)kiln_loader_shard_rows(t->n_train, lc->batch_size, t->batches - 1, lc->shard_rank, lc->shard_count);
    if (tail == t->B) tail = 0;
    if (tail) {
        po.batch = tail;
        if (!(t->train_tail = kiln_plan_new(t->m.graph, &po))) return KILN_ERR_INVALID;
    }
    if (t->hooks) { /* gradients reduced while backward goes on */
        kiln_plan_on_grads(t->train, t->hooks->grads_ready, t->hooks->ctx);
        if (t->train_tail) kiln_plan_on_grads(t->train_tail, t->hooks->grads_ready, t->hooks->ctx);
        if (t->hooks->batch_reduce) { /* dist.sync_batchnorm */
            kiln_plan_on_reduce(t->train, t->hooks->batch_reduce, t->hooks->ctx);
            if (t->train_tail) kiln_plan_on_reduce(t->train_tail, t->hooks->batch_reduce, t->hooks->ctx);
        }
    }
    t->ev.m = &t->m;
    t->ev.fast = !det;
    return KILN_OK;
}

/* ---- checkpoints ---- */

/* With hooks: non-trainable state (batch-norm statistics, and their EMA) made equal on every
 * process before it is evaluated or saved. */
static kiln_status sync_buffers(trainer *t) {
    if (!t->hooks) return KILN_OK;
    size_t nt = kiln_graph_trainable_size(t->m.graph), n = kiln_graph_params_size(t->m.graph);
    kiln_status st = t->hooks->sync_buffers(t->hooks->ctx, kiln_graph_params(t->m.graph) + nt, n - nt);
    if (!st && t->ema) st = t->hooks->sync_buffers(t->hooks->ctx, kiln_ema_weights(t->ema) + nt, n - nt);
    return st;
}

static kiln_status checkpoint(trainer *t, int is_best) {
    char tmp[4096], path[4200], name[64];
    kiln_status st = sync_buffers(t);
    if (st || !t->run) return st; /* only the writer writes checkpoints */
    st = kiln_run_checkpoint_begin(t->run, t->s.step, tmp, sizeof tmp);
    if (st) return st;
    snprintf(name, sizeof name, "step-%lld", (long long)t->s.step);
    if (is_best) snprintf(t->s.best_checkpoint, sizeof t->s.best_checkpoint, "%s", name);
    snprintf(path, sizeof path, "%s/weights.safetensors", tmp);
    char step_s[32];
    snprintf(step_s, sizeof step_s, "%lld", (long long)t->s.step);
    char stage_s[32];
    snprintf(stage_s, sizeof stage_s, "%lld", (long long)t->s.stage + 1);
    const char *meta[] = {"kiln.step", step_s, "kiln.config_hash", t->hash, "kiln.stage", stage_s};
    if (!(st = kiln_checkpoint_save(path, t->m.graph, t->opt, t->ema, meta, t->n_stages ? 3 : 2)) &&
        t->prune) {
        snprintf(path, sizeof path, "%s/prune.safetensors", tmp);
        st = kiln_pruner_save(t->prune, t->m.graph, path);
    }
    if (!st) {
        snprintf(path, sizeof path, "%s/state.json", tmp);
        st = kiln_train_state_write(path, &t->s);
    }
    if (!st) st = kiln_inputs_save_state(&t->in, t->s.epoch, tmp); /* data.source: kafka */
    if (!st) st = kiln_run_checkpoint_commit(t->run, t->s.step, tmp);
    if (!st) st = kiln_inputs_commit_state(&t->in); /* offsets follow the checkpoint */
    if (!st) st = kiln_run_checkpoint_prune(t->run, (int)t->keep, t->s.best_checkpoint[0] ? t->s.best_checkpoint : NULL);
    if (!st) {
        kiln_run_set_progress(t->run, t->s.epoch, t->s.step);
        st = kiln_run_save(t->run);
    }
    return st;
}

/* train.export: a new servable version under <run>/export/ with the weights evaluation uses
 * (EMA when kept), so a server polling that folder picks it up while training goes on. */
static kiln_status export_version(trainer *t) {
    if (!t->run) return KILN_OK; /* only the writer exports */
    const char *run = kiln_run_get_info(t->run).path;
    char base[4200], real[PATH_MAX];
    if (snprintf(base, sizeof base, "%s/export", run) >= (int)sizeof base)
        return kiln_error(KILN_ERR_INVALID, "train.export: run path %s is too long", run);
    const char *names[256];
    int k = (int)t->m.n_outputs, named = 0;
    for (int c = 0; c < k && c < 256; c++) named |= (names[c] = kiln_dataset_class_name(t->in.train, c)) != NULL;
    const char *rp = realpath(run, real);
    kiln_export_source src = {.model = &t->m,
                              .cfg = CFG(t),
                              .weights = t->ema ? kiln_ema_weights(t->ema) : NULL,
                              .preprocessing = t->in.loader.norm,
                              .class_names = named && k <= 256 && !kiln_cfg_at(t->cfg, "model.class_names") ? names : NULL,
                              .n_class_names = k,
                              .source_run = rp ? rp : run,
                              .sparse = t->prune != NULL}; /* train.prune: pruned kernels sparse */
    /* Name the checkpoint only when one was written at this step. */
    char step[32], ckpt[4400];
    struct stat sb;
    snprintf(step, sizeof step, "step-%lld", (long long)t->s.step);
    if (!kiln_run_checkpoint_path(t->run, step, ckpt, sizeof ckpt) && stat(ckpt, &sb) == 0) src.source_checkpoint = step;
    int64_t version = 0;
    kiln_status st = kiln_export_graph(&src, base, 0, &version);
    if (st) {
        kiln_error_prefix("train.export");
        return st;
    }
    kiln_progress_line(&t->prog, "exported version %lld: %s/%lld", (long long)version, base, (long long)version);
    return KILN_OK;
}

static kiln_status enter_stage(trainer *t, int k);

/* Resuming: the newest checkpoint's data-source state (kafka.json), or NULL. */
static const char *data_state(trainer *t, const kiln_train_opts *o, char path[4400]) {
    char name[256];
    struct stat sb;
    if (!o->resume || !t->run || kiln_run_checkpoint_latest(t->run, name, sizeof name, NULL, 0))
        return NULL;
    snprintf(path, 4400, "%s/checkpoints/%s/kafka.json", kiln_run_get_info(t->run).path, name);
    return stat(path, &sb) == 0 ? path : NULL;
}

static kiln_status restore(trainer *t) {
    char name[256], dir[4200], path[4300], warning[512] = "";
    kiln_status st = kiln_run_checkpoint_latest(t->run, name, sizeof name, warning, sizeof warning);
    if (st) return st;
    if (warning[0]) kiln_progress_line(&t->prog, "warning: %s", warning);
    snprintf(dir, sizeof dir, "%s/checkpoints/%s", kiln_run_get_info(t->run).path, name);
    snprintf(path, sizeof path, "%s/state.json", dir);
    if ((st = kiln_train_state_read(path, &t->s))) return st;
    if (strcmp(t->s.config_hash, t->hash) != 0)
        return kiln_error(KILN_ERR_FORMAT, "%s: written for config %s, the run's config.yaml is %s", path, t->s.config_hash, t->hash);
    if (t->s.stage && t->s.stage >= t->n_stages)
        return kiln_error(KILN_ERR_FORMAT, "%s: stage %lld, but the config has %d stages", path,
                          (long long)t->s.stage + 1, t->n_stages);
    if (t->s.stage) { /* that stage's model, optimizer and plans, before its weights and slots */
        int64_t k = t->s.stage;
        t->s.stage = 0;
        if ((st = enter_stage(t, (int)k))) return st;
    }
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    if ((st = kiln_checkpoint_load(path, t->m.graph, t->opt, t->ema))) return st;
    snprintf(path, sizeof path, "%s/prune.safetensors", dir);
    if (t->prune && (st = kiln_pruner_load(t->prune, t->m.graph, path))) return st;
    if (t->restore_best && t->s.best_checkpoint[0]) { /* the best weights, for the end */
        size_t n = kiln_graph_params_size(t->m.graph);
        float *now = malloc(n * sizeof *now);
        if (!now) return KILN_ERR_NOMEM;
        memcpy(now, kiln_graph_params(t->m.graph), n * sizeof *now);
        snprintf(path, sizeof path, "%s/checkpoints/%s/weights.safetensors", kiln_run_get_info(t->run).path, t->s.best_checkpoint);
        st = kiln_checkpoint_load_weights(path, t->m.graph, t->ema != NULL);
        if (!st) memcpy(t->best_params, kiln_graph_params(t->m.graph), n * sizeof *now);
        memcpy(kiln_graph_params(t->m.graph), now, n * sizeof *now);
        free(now);
        if (st) return st;
    }
    kiln_progress_line(&t->prog, "resumed %s from %s (epoch %lld, step %lld)", kiln_run_get_info(t->run).path, name,
                       (long long)t->s.epoch + 1, (long long)t->s.step);
    return KILN_OK;
}

/* ---- evaluation ---- */

/* Evaluates ds with the EMA weights when there are any (swapped in and back bit for bit). */
static kiln_status evaluate(trainer *t, const kiln_dataset *ds, kiln_metrics *mt) {
    size_t n = kiln_graph_params_size(t->m.graph) * sizeof(float);
    float *p = kiln_graph_params(t->m.graph);
    kiln_status st = sync_buffers(t);
    if (st) return st;
    if (t->ema) memcpy(t->swap, p, n), memcpy(p, kiln_ema_weights(t->ema), n);
    st = kiln_evaluate(&t->ev, ds, &t->in.loader, mt);
    if (t->ema) memcpy(p, t->swap, n);
    if (!st && t->hooks) st = t->hooks->reduce_metrics(t->hooks->ctx, mt); /* the whole split's */
    return st;
}

/* One metric point: metrics.jsonl, and TensorBoard when it is on. per_batch: a running value of
 * the step loop (batch_loss, learning_rate, samples_per_second), else a value over a whole pass
 * of the split (loss, accuracy, ...: what the metrics compute). The two kinds never share a name,
 * so (step, split, name) is unique in metrics.jsonl: the running loss logged at an epoch's last
 * step and that epoch's mean loss are two points, batch_loss and loss. */
static void log_point(trainer *t, kiln_split split, const char *name, double value, int per_batch) {
    kiln_run_log_metric(t->run, t->s.step, (double)t->s.epoch, split, name, value);
    kiln_tb_hooks_scalar(t->tb, t->s.step, split, name, value, per_batch);
}

static void log_metrics(trainer *t, const kiln_metrics *mt, kiln_split split, char *summary, size_t cap) {
    static const char *prefix[] = {"", "val_", "test_"};
    for (int i = 0; i < kiln_metrics_count(mt); i++) {
        const char *name = kiln_metrics_name(mt, i);
        double v = kiln_metrics_value(mt, i);
        log_point(t, split, name, v, 0);
        size_t used = strlen(summary);
        snprintf(summary + used, cap - used, "  %s%s %.4f", prefix[split], name, v);
    }
}

static void record_final(trainer *t, const kiln_metrics *mt, const char *prefix) {
    for (int i = 0; i < kiln_metrics_count(mt); i++) {
        char name[96];
        snprintf(name, sizeof name, "%s%s", prefix, kiln_metrics_name(mt, i));
        kiln_run_set_metric(t->run, KILN_RUN_FINAL, name, kiln_metrics_value(mt, i));
    }
}

/* Validation and early stopping at an epoch end (or every N steps). Returns 1 when training
 * should stop early. */
static int validate(trainer *t, kiln_status *st, char *summary, size_t cap) {
    if (!t->in.validation) return 0;
    if ((*st = evaluate(t, t->in.validation, t->val_mt))) return 1;
    log_metrics(t, t->val_mt, KILN_SPLIT_VALIDATION, summary, cap);
    record_final(t, t->val_mt, "val_");
    if (!t->early) return 0;
    int found;
    double v = kiln_metrics_get(t->monitor_val ? t->val_mt : t->train_mt, t->monitor, &found);
    int better = !t->s.has_best || (t->higher ? v > t->s.best + t->min_delta : v < t->s.best - t->min_delta);
    if (better) {
        t->s.has_best = 1, t->s.best = v, t->s.best_step = t->s.step, t->s.wait = 0;
        if (t->restore_best)
            memcpy(t->best_params, t->ema ? kiln_ema_weights(t->ema) : kiln_graph_params(t->m.graph),
                   kiln_graph_params_size(t->m.graph) * sizeof(float));
        char name[96];
        snprintf(name, sizeof name, "%s%s", t->monitor_val ? "val_" : "", t->monitor);
        kiln_run_set_metric(t->run, KILN_RUN_BEST, name, v);
        kiln_run_set_best_step(t->run, t->s.step);
        return 0;
    }
    return ++t->s.wait >= t->patience;
}

/* ---- the loop ---- */

static kiln_status fail_numeric(trainer *t, const char *what) {
    char last[256] = "none";
    if (t->run) kiln_run_checkpoint_latest(t->run, last, sizeof last, NULL, 0);
    return kiln_error(KILN_ERR_NUMERIC, "step %lld: %s; stopping (the last good checkpoint, %s, is intact)",
                      (long long)t->s.step + 1, what, last);
}

/* Writes trace.json and profile.txt for the steps profiled so far (once). */
static kiln_status finish_profile(trainer *t) {
    if (!t->events || t->prof_done) return KILN_OK;
    t->prof_done = 1;
    if (!t->run) return KILN_OK;
    int steps = 0;
    for (int i = 0; i < t->n_events; i++) steps += strcmp(t->events[i].phase, "update") == 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/trace.json", kiln_run_get_info(t->run).path);
    kiln_status st = kiln_profile_write_trace(path, t->events, t->n_events);
    if (st) return st;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return KILN_ERR_NOMEM;
    kiln_profile_print_table(f, t->events, t->n_events, steps);
    fclose(f);
    snprintf(path, sizeof path, "%s/profile.txt", kiln_run_get_info(t->run).path);
    st = kiln_file_write_atomic(path, buf, len);
    free(buf);
    kiln_progress_line(&t->prog, "profile of %d steps: %s/trace.json (open in Perfetto or chrome://tracing), profile.txt",
                       steps, kiln_run_get_info(t->run).path);
    return st;
}

/* train.prune after `step` updates: the masks on their schedule (logged as prune_sparsity when
 * recomputed), pruned values held at zero in the parameters, optimizer slots and EMA. */
static kiln_status prune_step(trainer *t, int64_t step) {
    int updated = 0;
    kiln_status st = kiln_pruner_step(t->prune, t->m.graph, t->opt,
                                      t->ema ? kiln_ema_weights(t->ema) : NULL, step, &updated);
    if (!st && updated) {
        double s = kiln_pruner_target(t->prune, step);
        kiln_run_log_metric(t->run, step, (double)t->s.epoch, KILN_SPLIT_TRAIN, "prune_sparsity",
                            s);
        kiln_tb_hooks_scalar(t->tb, step, KILN_SPLIT_TRAIN, "prune_sparsity", s, 1);
    }
    return st;
}

/* One epoch from t->s.batch on. Returns 1 when the epoch ended, 0 when it stopped early (steps,
 * signal), with *st set on failure. */
static int run_epoch(trainer *t, kiln_status *st) {
    kiln_graph *g = t->m.graph;
    float *x = kiln_plan_data(t->train, t->m.input);
    void *y = kiln_plan_data(t->train, t->ttarget);
    kiln_shape xs = kiln_plan_shape(t->train, t->m.input), ys = kiln_plan_shape(t->train, t->ttarget);
    size_t xrow = (size_t)(kiln_shape_numel(&xs) / t->B) * sizeof(float);
    size_t yrow = (size_t)(kiln_shape_numel(&ys) / t->B) * kiln_dtype_size(kiln_node_dtype(t->ttarget));
    int rows, r;
    while ((r = kiln_loader_next(t->loader, x, y, &rows)) == 1) {
        kiln_plan *p = t->train;
        if (rows < t->B) {
            p = t->train_tail;
            memcpy(kiln_plan_data(p, t->m.input), x, (size_t)rows * xrow);
            memcpy(kiln_plan_data(p, t->ttarget), y, (size_t)rows * yrow);
        }
        if (t->distill &&
            (*st = kiln_distill_feed(t->distill, p, kiln_plan_data(p, t->m.input), rows)))
            return 0;
        if (t->hooks) t->hooks->step_begin(t->hooks->ctx, t->s.batch, rows, kiln_graph_grads(g));
        kiln_plan_set_step(p, (uint64_t)t->s.step);
        int profiling = t->events && !t->prof_done && t->s.step >= t->prof_from;
        if (profiling) kiln_plan_profile(p, t->events, t->cap_events, &t->n_events);
        if ((*st = kiln_plan_forward(p))) return 0;
        float loss = *(const float *)kiln_plan_data(p, t->tloss);
        if (!isfinite(loss)) {
            *st = fail_numeric(t, isnan(loss) ? "the loss is NaN" : "the loss is infinite");
            return 0;
        }
        if (t->m.soft_target) /* mixed labels: each row counts as its most probable class */
            kiln_metrics_add_probs(t->train_mt, kiln_plan_data(p, t->m.output), kiln_plan_data(p, t->ttarget), rows, loss);
        else
            kiln_metrics_add(t->train_mt, kiln_plan_data(p, t->m.output), kiln_plan_data(p, t->ttarget), rows, loss);
        if ((*st = kiln_plan_backward(p))) return 0;
        if (t->hooks) { /* the global batch's gradients, loss and rows, and the agreed stop */
            t->stop = signalled();
            if ((*st = t->hooks->step_end(t->hooks->ctx, kiln_graph_grads(g), &loss, &rows, &t->stop))) return 0;
        }
        kiln_pruner_mask_grads(t->prune, kiln_graph_grads(g));
        float lr = kiln_schedule_lr(&t->sched, t->base_lr, t->s.step - t->s.stage_step);
        double u0 = profiling ? kiln_time_us() : 0;
        *st = kiln_optim_step(t->opt, kiln_graph_params(g), kiln_graph_grads(g), lr);
        if (*st == KILN_ERR_NUMERIC) {
            *st = fail_numeric(t, "the gradient is not finite");
            return 0;
        }
        if (*st) return 0;
        if (t->ema) kiln_ema_update(t->ema, kiln_graph_params(g));
        if ((*st = prune_step(t, t->s.step + 1))) return 0;
        if (profiling) {
            if (t->n_events < t->cap_events)
                t->events[t->n_events++] = (kiln_op_event){"optimizer", kiln_optim_kind_name(kiln_optim_get_config(t->opt)->kind),
                                                           "update", u0, kiln_time_us() - u0};
            kiln_plan_profile(p, NULL, 0, NULL);
            if (t->s.step + 1 >= t->prof_from + t->prof_steps && (*st = finish_profile(t))) return 0;
        }
        t->s.step++, t->s.batch++;
        t->loss_sum += loss, t->loss_n++;
        kiln_progress_step(&t->prog, t->s.epoch, t->total_epochs, t->s.batch, t->batches, t->s.step,
                           t->loss_sum / t->loss_n, lr, rows);
        if (t->s.step % t->log_every == 0) {
            log_point(t, KILN_SPLIT_TRAIN, "batch_loss", t->loss_sum / t->loss_n, 1);
            log_point(t, KILN_SPLIT_TRAIN, "learning_rate", lr, 1);
            log_point(t, KILN_SPLIT_TRAIN, "samples_per_second", kiln_progress_rate(&t->prog), 1);
            if (t->n_stages)
                kiln_tb_hooks_scalar(t->tb, t->s.step, KILN_SPLIT_TRAIN, "stage",
                                     (double)t->s.stage + 1, 1);
            t->loss_sum = 0, t->loss_n = 0;
        }
        if (t->validate_every && t->s.step % t->validate_every == 0 && t->in.validation) {
            char summary[1024] = "";
            if ((*st = evaluate(t, t->in.validation, t->val_mt))) return 0;
            log_metrics(t, t->val_mt, KILN_SPLIT_VALIDATION, summary, sizeof summary);
            kiln_progress_line(&t->prog, "step %lld:%s", (long long)t->s.step, summary);
        }
        if (t->every_steps && t->s.step % t->every_steps == 0 && (*st = checkpoint(t, 0))) return 0;
        if (t->export_steps && t->s.step % t->export_steps == 0 && (*st = export_version(t))) return 0;
        if (stopping(t) || (t->max_steps && t->s.step - t->s.stage_step >= t->max_steps)) return 0;
    }
    if (r < 0) *st = KILN_ERR_INVALID;
    return r == 0;
}

/* ---- stages ---- */

/* Hands the optimizer's update ranges the parameters that are not frozen. */
static kiln_status set_ranges(trainer *t) {
    kiln_graph *g = t->m.graph;
    int n = kiln_graph_active_ranges(g, NULL, NULL, 0);
    size_t *off = malloc((size_t)(n + 1) * sizeof *off);
    size_t *len = malloc((size_t)(n + 1) * sizeof *len);
    kiln_status st = KILN_ERR_NOMEM;
    if (off && len) {
        kiln_graph_active_ranges(g, off, len, n);
        st = kiln_optim_set_ranges(t->opt, off, len, n);
    }
    free(off), free(len);
    return st;
}

/* Logs the model summary (stage k of the run) into log.txt and summary.txt of the run folder. */
static void log_summary(trainer *t) {
    char *buf = NULL, path[4200];
    size_t len = 0;
    if (!t->run) return; /* a process that does not write (data parallel, rank > 0) */
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    if (t->n_stages) fprintf(f, "stage %lld/%d\n", (long long)t->s.stage + 1, t->n_stages);
    kiln_model_summary(&t->m, f);
    fclose(f);
    for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        if ((nl = strchr(line, '\n'))) *nl = 0;
        kiln_run_log(t->run, "%s", line);
        if (nl) *nl = '\n';
    }
    snprintf(path, sizeof path, "%s/summary.txt", kiln_run_get_info(t->run).path);
    if (t->s.stage == 0 || !t->n_stages) kiln_file_write_atomic(path, buf, len);
    else { /* one section per stage */
        void *old = NULL;
        size_t olen = 0;
        if (kiln_file_read_all(path, &old, &olen, 1 << 24) == KILN_OK) {
            char *all = malloc(olen + len + 1);
            if (all) {
                memcpy(all, old, olen), memcpy(all + olen, buf, len);
                kiln_file_write_atomic(path, all, olen + len);
                free(all);
            }
            kiln_free(old);
        }
    }
    free(buf);
}

/* Switches to stage k (0-based): its config, a model built from it carrying the current
 * parameters over (same layout: the model cannot change between stages), its freeze, data
 * augmentation, metrics, settings, optimizer (fresh slots unless train.optimizer_state: keep),
 * schedule and plans. The caller sets the stage's start (stage_step, stage_epoch). */
static kiln_status enter_stage(trainer *t, int k) {
    kiln_cfg *c = NULL;
    kiln_model m2;
    memset(&m2, 0, sizeof m2);
    kiln_status st = kiln_config_stage(t->cfg, k, &c);
    if (!st) st = kiln_model_build(c, &m2);
    if (!st) st = kiln_graph_init_params(m2.graph);
    if (!st && kiln_graph_params_size(m2.graph) != kiln_graph_params_size(t->m.graph))
        st = kiln_error(KILN_ERR_INVALID,
                        "stages[%d]: the model differs from the previous stage's", k);
    if (st) {
        kiln_model_free(&m2);
        kiln_cfg_free(c);
        return st;
    }
    memcpy(kiln_graph_params(m2.graph), kiln_graph_params(t->m.graph),
           kiln_graph_params_size(m2.graph) * sizeof(float));
    kiln_plan_free(t->train), kiln_plan_free(t->train_tail);
    t->train = t->train_tail = NULL;
    kiln_evaluator_free(&t->ev);
    memset(&t->ev, 0, sizeof t->ev);
    kiln_tb_hooks_model_changed(t->tb);
    kiln_model_free(&t->m);
    t->m = m2;
    kiln_cfg_free(t->scfg);
    t->scfg = c;
    kiln_metrics_free(t->train_mt), kiln_metrics_free(t->val_mt);
    t->train_mt = new_metrics(t), t->val_mt = new_metrics(t);
    kiln_optim *old = t->opt;
    t->opt = NULL;
    int keep = !strcmp(kiln_cfg_str(c, "train.optimizer_state", "reset"), "keep");
    if (!t->train_mt || !t->val_mt) st = KILN_ERR_NOMEM;
    if (!st) st = kiln_model_apply_freeze(&t->m, c);
    if (!st) st = kiln_inputs_set_augment(c, &t->m, &t->in);
    kiln_distill_free(t->distill); /* this stage's train.distill, on the new graph */
    t->distill = NULL;
    if (!st) st = kiln_distill_new(c, &t->m, &t->in.loader.norm, &t->distill);
    if (!st) st = read_settings(t);
    if (!st) st = build_optimizer(t);
    if (!st && keep && old) { /* the same kind's slots and step count carry over */
        int same = kiln_optim_slot_count(old) == kiln_optim_slot_count(t->opt);
        for (int i = 0; same && i < kiln_optim_slot_count(old); i++)
            same = !strcmp(kiln_optim_slot_name(old, i), kiln_optim_slot_name(t->opt, i));
        if (!same) {
            char where[300];
            kiln_cfg *at = kiln_cfg_at(c, "train.optimizer_state");
            st = kiln_error(KILN_ERR_INVALID, "%s: stages[%d].optimizer_state: keep needs the "
                            "optimizer state of the previous stage, but it was %s and this stage "
                            "uses %s", at ? kiln_cfg_where(at, where, sizeof where) : "config", k,
                            kiln_optim_kind_name(kiln_optim_get_config(old)->kind),
                            kiln_optim_kind_name(kiln_optim_get_config(t->opt)->kind));
        }
        for (int i = 0; !st && i < kiln_optim_slot_count(old); i++)
            memcpy(kiln_optim_slot(t->opt, i), kiln_optim_slot(old, i),
                   kiln_graph_trainable_size(t->m.graph) * sizeof(float));
        if (!st) kiln_optim_set_iterations(t->opt, kiln_optim_iterations(old));
    }
    kiln_optim_free(old);
    kiln_pruner *old_prune = t->prune; /* train.prune of this stage; masks carry over */
    t->prune = NULL;
    if (!st) st = kiln_pruner_new(c, t->m.graph, t->batches, t->total_epochs, old_prune, &t->prune);
    kiln_pruner_free(old_prune);
    if (!st) st = set_ranges(t);
    if (!st) st = make_plans(t);
    if (!st && t->loader) {
        kiln_loader_free(t->loader);
        t->loader = NULL;
        if (!(st = kiln_loader_new(t->in.train, &t->in.train_loader, &t->loader)))
            st = kiln_loader_seek(t->loader, t->s.epoch, t->s.batch);
    }
    if (st) return st;
    t->s.stage = k;
    t->prog.stage = k + 1;
    kiln_run_set_stage(t->run, k + 1);
    return KILN_OK;
}

/* The end of a stage that is not the last: its best weights (early stopping's restore_best),
 * then the next stage from the next epoch's start, with early stopping starting over, and a
 * checkpoint there (a resume from it starts the new stage). */
static kiln_status next_stage(trainer *t) {
    if (t->restore_best && t->s.has_best) {
        size_t n = kiln_graph_params_size(t->m.graph) * sizeof(float);
        memcpy(kiln_graph_params(t->m.graph), t->best_params, n);
        if (t->ema) memcpy(kiln_ema_weights(t->ema), t->best_params, n);
    }
    if (t->s.batch) t->s.epoch++, t->s.batch = 0; /* a stage cut short by train.max_steps */
    kiln_status st = enter_stage(t, (int)t->s.stage + 1);
    if (st) return st;
    t->s.stage_step = t->s.step, t->s.stage_epoch = t->s.epoch;
    t->s.has_best = 0, t->s.best = 0, t->s.best_step = 0, t->s.wait = 0;
    t->s.best_checkpoint[0] = 0;
    if ((st = prune_step(t, t->s.step))) return st;
    kiln_progress_line(&t->prog, "stage %lld/%d from epoch %lld, step %lld",
                       (long long)t->s.stage + 1, t->n_stages, (long long)t->s.epoch + 1,
                       (long long)t->s.step);
    kiln_tb_hooks_scalar(t->tb, t->s.step, KILN_SPLIT_TRAIN, "stage", (double)t->s.stage + 1, 1);
    log_summary(t);
    return checkpoint(t, 0);
}

static kiln_status train_loop(trainer *t, kiln_train_result *res) {
    kiln_status st = KILN_OK;
    int stopped_early = 0;
    for (;;) { /* each stage (one without stages:) */
        /* resumed after an early stop but before what followed it: stop again */
        stopped_early = t->early && t->s.has_best && t->s.wait >= t->patience;
        while (t->s.epoch < t->s.stage_epoch + t->epochs &&
               !(t->max_steps && t->s.step - t->s.stage_step >= t->max_steps) && !stopped_early) {
            kiln_progress_epoch_start(&t->prog);
            if (t->s.batch == 0) kiln_metrics_reset(t->train_mt);
            double t0 = kiln_now(), w0 = kiln_loader_wait_seconds(t->loader);
            if ((st = kiln_inputs_epoch(&t->in, t->s.epoch))) return st; /* a stream's window */
            int ended = run_epoch(t, &st);
            double train_rate = kiln_progress_rate(&t->prog); /* before validation */
            double train_s = kiln_now() - t0, waited = kiln_loader_wait_seconds(t->loader) - w0;
            double wait_frac = train_s > 0 ? waited / train_s : 0; /* of the step loop's time */
            if (st) return st;
            if (stopping(t)) {
                if ((st = checkpoint(t, 0))) return st;
                kiln_progress_line(
                    &t->prog,
                    "stopped by signal %d at step %lld; resume with: kiln train --resume %s",
                    stopping(t), (long long)t->s.step, res->run_dir); /* every rank knows it */
                res->status = "stopped";
                return KILN_OK;
            }
            if (!ended) break; /* max_steps */
            t->s.epoch++, t->s.batch = 0;
            if (t->hooks && (st = t->hooks->reduce_metrics(t->hooks->ctx, t->train_mt))) return st;
            char summary[2048] = "";
            log_metrics(t, t->train_mt, KILN_SPLIT_TRAIN, summary, sizeof summary);
            record_final(t, t->train_mt, "");
            stopped_early = validate(t, &st, summary, sizeof summary);
            if (st) return st;
            kiln_tb_hooks_epoch_end(t->tb,
                                    &(kiln_tb_epoch){t->s.step, t->s.epoch,
                                                     t->ema ? kiln_ema_weights(t->ema) : NULL,
                                                     t->swap, t->in.validation ? t->val_mt : NULL});
            kiln_progress_line(
                &t->prog,
                "epoch %lld/%lld:%s  (%.1f s, training %.0f samples/s, waiting for data %.1f%%)",
                (long long)t->s.epoch, (long long)t->total_epochs, summary, kiln_now() - t0,
                train_rate, 100 * wait_frac);
            kiln_run_set_metric(t->run, KILN_RUN_FINAL, "train_samples_per_second", train_rate);
            kiln_run_set_metric(t->run, KILN_RUN_FINAL, "train_data_wait_fraction", wait_frac);
            int is_best = t->early && t->s.best_step == t->s.step && t->s.wait == 0;
            if (is_best || (t->every_epochs && t->s.epoch % t->every_epochs == 0))
                if ((st = checkpoint(t, is_best))) return st;
            if (t->export_epochs && t->s.epoch % t->export_epochs == 0 && (st = export_version(t)))
                return st;
        }
        if (stopped_early)
            kiln_progress_line(&t->prog,
                               "early stopping: %s%s did not improve for %lld evaluations "
                               "(best %.4f at step %lld)",
                               t->monitor_val ? "val_" : "", t->monitor, (long long)t->s.wait,
                               t->s.best, (long long)t->s.best_step);
        if (t->s.stage + 1 >= t->n_stages) break;
        if ((st = next_stage(t))) return st;
    }
    if (t->restore_best && t->s.has_best) {
        size_t n = kiln_graph_params_size(t->m.graph) * sizeof(float);
        memcpy(kiln_graph_params(t->m.graph), t->best_params, n);
        if (t->ema) memcpy(kiln_ema_weights(t->ema), t->best_params, n);
    }
    if ((st = checkpoint(t, 0))) return st;
    if (t->events && t->n_events) {
        if ((st = finish_profile(t))) return st;
        char path[4200];
        snprintf(path, sizeof path, "%s/profile.txt", kiln_run_get_info(t->run).path);
        void *text;
        size_t len;
        if (!t->prog.quiet && kiln_file_read_all(path, &text, &len, 1 << 20) == KILN_OK) {
            fwrite(text, 1, len, stdout);
            kiln_free(text);
        }
    }
    if (t->in.test) {
        char summary[1024] = "";
        double t0 = kiln_now();
        if ((st = evaluate(t, t->in.test, t->val_mt))) return st;
        double rate = (double)kiln_dataset_rows(t->in.test) / (kiln_now() - t0);
        log_metrics(t, t->val_mt, KILN_SPLIT_TEST, summary, sizeof summary);
        record_final(t, t->val_mt, "test_");
        log_point(t, KILN_SPLIT_TEST, "samples_per_second", rate, 0);
        kiln_run_set_metric(t->run, KILN_RUN_FINAL, "test_samples_per_second", rate);
        kiln_progress_line(&t->prog, "test:%s  (%.0f samples/s)", summary, rate);
    }
    res->status = "finished";
    return KILN_OK;
}

/* ---- entry ---- */

static kiln_status open_config(const kiln_train_opts *o, trainer *t, kiln_train_result *res) {
    kiln_status st;
    if (o->resume) {
        if (o->n_sets) return usage(res, kiln_error(KILN_ERR_INVALID, "--set cannot change a run being resumed"));
        char dir[4096];
        const char *runs = o->runs_dir ? o->runs_dir : "runs";
        if (!strcmp(o->resume, "latest")) {
            if ((st = kiln_run_find_latest(runs, NULL, dir, sizeof dir)))
                return usage(res, st);
        } else {
            snprintf(dir, sizeof dir, "%s", o->resume);
        }
        if ((!o->hooks || o->hooks->writer) && (st = kiln_run_open(dir, KILN_RUN_WRITE, &t->run))) {
            struct stat sb; /* no such run: usage; a run busy or read-only: a runtime failure */
            int there = stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
            return st == KILN_ERR_NOTFOUND || !there ? usage(res, st) : st;
        }
        if (t->run) kiln_registry_follow_run(t->run, 0);
        char path[4200];
        snprintf(path, sizeof path, "%s/config.yaml", dir);
        if ((st = kiln_config_load(path, &t->cfg)) || (st = kiln_config_resolve(t->cfg))) return usage(res, st);
        return KILN_OK;
    }
    if (!o->config_path) return usage(res, kiln_error(KILN_ERR_INVALID, "kiln train needs a config file (or --resume)"));
    if ((st = kiln_config_load(o->config_path, &t->cfg))) return usage(res, st);
    for (int i = 0; i < o->n_sets; i++)
        if ((st = kiln_config_set(t->cfg, o->sets[i]))) return usage(res, st);
    if ((st = kiln_config_resolve(t->cfg))) return usage(res, st);
    return kiln_inputs_resolve_paths(t->cfg, NULL); /* the config file's folder, or the cwd */
}

static kiln_status write_config(trainer *t) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", kiln_run_get_info(t->run).path);
    return kiln_config_save(t->cfg, path);
}

static void trainer_free(trainer *t) {
    kiln_tb_hooks_close(t->tb, NULL);
    kiln_loader_free(t->loader);
    kiln_plan_free(t->train);
    kiln_plan_free(t->train_tail);
    kiln_evaluator_free(&t->ev);
    kiln_metrics_free(t->train_mt);
    kiln_metrics_free(t->val_mt);
    kiln_optim_free(t->opt);
    kiln_pruner_free(t->prune);
    kiln_distill_free(t->distill);
    kiln_ema_free(t->ema);
    kiln_free(t->best_params);
    kiln_free(t->swap);
    free(t->events);
    kiln_inputs_free(&t->in);
    kiln_model_free(&t->m);
    kiln_run_close(t->run);
    kiln_cfg_free(t->scfg);
    kiln_cfg_free(t->cfg);
    free(t->init_report);
}

/* kiln train --dry-run: every stage's model, frozen parameters and summary; no data read. */
static kiln_status dry_run(trainer *t) {
    int n = t->n_stages ? t->n_stages : 1;
    for (int k = 0; k < n; k++) {
        kiln_cfg *c = NULL;
        kiln_model m;
        memset(&m, 0, sizeof m);
        kiln_status st = t->n_stages ? kiln_config_stage(t->cfg, k, &c) : KILN_OK;
        const kiln_cfg *use = c ? c : t->cfg;
        if (!st) st = kiln_model_build(use, &m);
        if (!st) st = kiln_graph_init_params(m.graph);
        if (!st) st = kiln_model_apply_freeze(&m, use);
        if (!st) {
            const kiln_cfg *oc = kiln_cfg_at(use, "optimizer")->items[0];
            if (t->n_stages) printf("%sstage %d/%d: ", k ? "\n" : "", k + 1, t->n_stages);
            printf("%lld epochs, %s (learning rate %g), optimizer state %s\n",
                   (long long)kiln_cfg_int(use, "train.epochs", 10), oc->key,
                   kiln_cfg_num(oc, "learning_rate", 0.001),
                   k ? kiln_cfg_str(use, "train.optimizer_state", "reset") : "new");
            st = kiln_model_summary(&m, stdout);
        }
        kiln_model_free(&m);
        kiln_cfg_free(c);
        if (st) return st;
    }
    fflush(stdout);
    return KILN_OK;
}

/* With hooks: every process's setup outcome combined (kiln_train_hooks.setup). */
/* Data-parallel training shards one dataset that every rank holds alike; a Kafka source is a
 * consumer group whose members get different partitions and windows, so ranks would disagree
 * on the steps of an epoch. Refused before any rank connects (docs/kafka.md). */
static kiln_status refuse_parallel_kafka(const trainer *t, const kiln_train_opts *o) {
    if (!o->hooks || strcmp(kiln_cfg_str(CFG(t), "data.source", "idx"), "kafka")) return KILN_OK;
    return kiln_error(KILN_ERR_INVALID,
                      "data.source: kafka: data-parallel training (mpirun, srun) does not read "
                      "Kafka (its consumers get different partitions); train from Kafka with "
                      "one process, or from files, which every rank shards alike");
}

static kiln_status hook_setup(trainer *t, const kiln_train_opts *o, kiln_status st, kiln_train_result *res) {
    if (!o->hooks) return st;
    int usage = res->usage_error;
    kiln_status all = o->hooks->setup(o->hooks->ctx, st, &usage, st ? "" : t->hash, st ? NULL : t->cfg,
                                       st ? NULL : &t->in);
    if (all) res->usage_error = usage;
    return all;
}

static kiln_status train_run(const kiln_train_opts *o, kiln_train_result *res, kiln_train_signals *sig);

/* The signals are blocked before anything starts a thread (signals.h says why). */
kiln_status kiln_train(const kiln_train_opts *o, kiln_train_result *res) {
    kiln_train_signals sig;
    kiln_train_signals_begin(&sig, on_signal, NULL, 0);
    kiln_status st = train_run(o, res, &sig);
    kiln_train_signals_end(&sig);
    return st;
}

static kiln_status train_run(const kiln_train_opts *o, kiln_train_result *res, kiln_train_signals *signals) {
    trainer t;
    memset(&t, 0, sizeof t);
    memset(res, 0, sizeof *res);
    res->status = "failed";
    t.hooks = o->hooks;
    int writer = !o->hooks || o->hooks->writer;
    kiln_status st = open_config(o, &t, res);
    if (st) {
        st = hook_setup(&t, o, st, res);
        trainer_free(&t);
        return st;
    }
    kiln_cfg_hash(t.cfg, t.hash); /* stages: included */
    t.n_stages = kiln_config_stage_count(t.cfg);
    t.total_epochs = kiln_cfg_int(t.cfg, "train.epochs", 10);
    for (int k = 0; k < t.n_stages; k++) { /* stage 1's config now; every stage's epochs */
        kiln_cfg *c = NULL;
        if ((st = kiln_config_stage(t.cfg, k, &c))) {
            res->usage_error = 1;
            trainer_free(&t);
            return st;
        }
        t.total_epochs = (k ? t.total_epochs : 0) + kiln_cfg_int(c, "train.epochs", 10);
        if (k == 0) t.scfg = c;
        else kiln_cfg_free(c);
    }
    if (o->dry_run) {
        st = dry_run(&t);
        res->usage_error = st != KILN_OK;
        res->status = st ? "failed" : "finished";
        trainer_free(&t);
        return st;
    }
    int threads = o->threads ? o->threads : (int)kiln_cfg_int(t.cfg, "train.threads", 0);
    char kstate[4400];
    if (threads > 0) omp_set_num_threads(threads);
    /* model and data: config errors */
    if ((st = kiln_model_build(CFG(&t), &t.m)) || (st = kiln_graph_init_params(t.m.graph)) ||
        /* model.init_from: not on --resume, which takes the run's own checkpoint */
        (!o->resume && (st = kiln_model_init_from(t.cfg, t.m.graph, &t.init_report))) ||
        (st = kiln_model_apply_freeze(&t.m, CFG(&t))) ||
        (st = refuse_parallel_kafka(&t, o)) ||
        (st = kiln_inputs_load_at(CFG(&t), &t.m, data_state(&t, o, kstate), &t.in)) ||
        (st = kiln_inputs_check_class_names(CFG(&t), &t.m)) ||
        (st = kiln_distill_new(CFG(&t), &t.m, &t.in.loader.norm, &t.distill)))
        res->usage_error = !t.in.data_error; /* damaged TFRecord data: exit 1 */
    if ((st = hook_setup(&t, o, st, res))) { /* data parallel: shards the loaders */
        trainer_free(&t);
        return st;
    }
    int64_t G = t.in.train_loader.batch_size; /* the global batch; B: this process's part */
    t.B = t.in.train_loader.shard_count > 1 ? G / t.in.train_loader.shard_count : G;
    t.n_train = kiln_dataset_rows(t.in.train);
    t.batches = t.in.train_loader.drop_last ? t.n_train / G : (t.n_train + G - 1) / G;
    t.train_mt = new_metrics(&t);
    t.val_mt = new_metrics(&t);
    if (!t.train_mt || !t.val_mt || (st = read_settings(&t)) || (st = build_optimizer(&t)) ||
        (st = set_ranges(&t)) || (st = make_plans(&t)) ||
        (st = kiln_pruner_new(CFG(&t), t.m.graph, t.batches, t.total_epochs, NULL, &t.prune))) {
        res->usage_error = 1;
        trainer_free(&t);
        return st ? st : KILN_ERR_INVALID;
    }
    if (o->profile_steps > 0) { /* events: every op forward and backward, plus the update, per step */
        t.prof_steps = o->profile_steps;
        t.cap_events = o->profile_steps * (2 * kiln_graph_node_count(t.m.graph) + 1);
        if (!(t.events = calloc((size_t)t.cap_events, sizeof *t.events))) {
            trainer_free(&t);
            return KILN_ERR_NOMEM;
        }
    }
    size_t np = kiln_graph_params_size(t.m.graph) * sizeof(float);
    if (!(t.swap = kiln_alloc(np)) || (t.restore_best && !(t.best_params = kiln_alloc(np)))) {
        trainer_free(&t);
        return KILN_ERR_NOMEM;
    }
    /* the run folder */
    if (!o->resume && writer) {
        const char *exp = kiln_cfg_str(t.cfg, "experiment", "default");
        if (!(st = kiln_run_create(o->runs_dir ? o->runs_dir : "runs", exp, o->name, &t.run)))
            kiln_registry_follow_run(t.run, 1); /* runs/kiln.db follows the run folder */
        if (!st) st = write_config(&t);
        if (!st) {
            kiln_run_set_seed(t.run, (uint64_t)kiln_cfg_int(t.cfg, "seed", 1));
            kiln_run_set_config_hash(t.run, t.hash);
            if (o->argc) kiln_run_set_command(t.run, o->argc, o->argv);
        }
    }
    if (t.init_report) /* model.init_from */
        kiln_run_log(t.run, "%.*s", (int)strlen(t.init_report) - 1, t.init_report),
            fputs(t.init_report, stderr);
    snprintf(res->run_dir, sizeof res->run_dir, "%s", kiln_run_get_info(t.run).path);
    if (o->hooks) st = o->hooks->run_folder(o->hooks->ctx, st, res->run_dir, sizeof res->run_dir);
    if (st) {
        trainer_free(&t);
        return st;
    }
    t.prog = (kiln_progress){.out = stdout, .tty = isatty(1), .quiet = o->quiet, .every = t.log_every,
                             .log = writer ? log_line : o->hooks->log,
                             .log_ctx = writer ? (void *)t.run : o->hooks->ctx, .stage = 1,
                             .n_stages = t.n_stages};
    if (t.n_stages && t.run) kiln_run_set_stage(t.run, 1);
    if (writer && t.run) kiln_inputs_set_log(&t.in, source_log_line, t.run);
    snprintf(t.s.config_hash, sizeof t.s.config_hash, "%s", t.hash);
    if (o->resume && writer) st = restore(&t);
    if (o->hooks) { /* every process starts from the writer's state */
        kiln_train_sync sy = {.graph = t.m.graph, .opt = t.opt, .ema = t.ema, .state = &t.s, .state_size = sizeof t.s,
                              .best = t.restore_best ? t.best_params : NULL, .run = t.run, .signal = &stop_signal};
        st = o->hooks->begin(o->hooks->ctx, st, &sy);
    }
    if (st) {
        kiln_progress_line(&t.prog, "error: %s", kiln_last_error());
        trainer_free(&t);
        return st;
    }
    log_summary(&t);
    kiln_run_set_status(t.run, KILN_RUN_RUNNING, NULL);
    kiln_run_save(t.run);
    if ((st = kiln_loader_new(t.in.train, &t.in.train_loader, &t.loader)) ||
        (st = kiln_loader_seek(t.loader, t.s.epoch, t.s.batch))) {
        trainer_free(&t);
        return st;
    }
    if (t.in.skipped) { /* data.on_error: skip */
        kiln_progress_line(&t.prog, "data: skipped %lld unreadable sample%s (data.on_error: skip); the first: %s",
                           (long long)t.in.skipped, t.in.skipped == 1 ? "" : "s", t.in.skipped_first);
        kiln_run_set_data_skipped(t.run, t.in.skipped);
        kiln_run_save(t.run);
    }
    if (!o->resume)
        kiln_progress_line(&t.prog, "run %s: %lld training rows, %lld batches of %lld per epoch, %zu parameters",
                           res->run_dir, (long long)t.n_train, (long long)t.batches, (long long)t.B,
                           kiln_graph_trainable_size(t.m.graph));
    if (t.run) kiln_tb_hooks_open(t.cfg, &t.m, &t.in, t.run, &t.prog, t.s.step, o->resume != NULL, &t.tb);
    t.prof_from = t.s.step + 5; /* past the first steps' page faults and JIT */
    stop_signal = 0, prune_signal = 0;
    kiln_train_signals_arm(signals); /* SIGUSR1: kiln tune's pruner, a stop recorded as "pruned" */
    st = prune_step(&t, t.s.step); /* an update point at the start (start_epoch 0) */
    if (!st) st = train_loop(&t, res);
    int sig = stopping(&t); /* signals from here on find the run ending: they change nothing */
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        kiln_progress_line(&t.prog, "error: %s", msg);
        kiln_run_set_status(t.run, KILN_RUN_FAILED, msg);
        res->status = "failed";
        kiln_error(st, "%s", msg);
    } else {
        int stopped = strcmp(res->status, "stopped") == 0;
        if (stopped && sig == SIGUSR1) res->status = "pruned";
        kiln_run_set_status(t.run, !stopped ? KILN_RUN_FINISHED
                                   : sig == SIGUSR1 ? KILN_RUN_PRUNED : KILN_RUN_STOPPED,
                            !stopped ? NULL : sig == SIGUSR1 ? "pruned by kiln tune"
                                                              : "stopped by a signal");
        kiln_progress_line(&t.prog, "%s: %s", res->status, kiln_run_get_info(t.run).path);
    }
    kiln_tb_hooks_close(t.tb, res->status);
    t.tb = NULL;
    kiln_run_set_progress(t.run, t.s.epoch, t.s.step);
    kiln_status st2 = kiln_run_save(t.run);
    /* the handlers stay until the run says how it ended: a second Ctrl-C or the tuner's SIGTERM
     * right after a stop used to kill the process before run.json said stopped or pruned */
    kiln_train_signals_disarm(signals);
    trainer_free(&t);
    return st ? st : st2;
}
