/* kiln/registry.h — the run registry: <runs_dir>/kiln.db, an SQLite index of the run folders, and
 * the model registry (named, versioned, aliased servable packages).
 *
 * What it holds (schema version KILN_REGISTRY_SCHEMA, kept in the file's user_version and
 * upgraded in place by kiln_registry_open; the file's application_id marks it as kiln's):
 *   experiments      one row per experiment name
 *   runs             one row per run folder: id (the folder relative to the runs folder,
 *                    "<experiment>/<run-id>"), experiment, name, status, message, start and end
 *                    times, host, pid, kiln version, seed, config hash, command, progress
 *   params           the run's config.yaml flattened: key paths ("optimizer.adam.learning_rate",
 *                    "model.layers[1].dense.units") to the scalar's text, plus its value as a
 *                    number when it is one; a list of scalars is one param ("[1, 28, 28]")
 *   metrics          every point of metrics.jsonl: run, name, step, wall_time, value; the name
 *                    carries the split as run.json does: "loss", "val_accuracy", "test_loss"
 *                    (one point per run, name and step: a resumed run's later point wins)
 *   latest_metrics   per run and name, the point with the highest step (lists and filters)
 *   models, model_versions, aliases
 *                    a model name's versions: source run, checkpoint, the version folder
 *                    (<runs_dir>/models/<name>/<version>/, a servable package, so
 *                    <runs_dir>/models/<name> is a base folder kiln serve loads as is) and
 *                    aliases ("production" -> 3)
 *
 * The folders are the source of truth. kiln writes the registry as it writes a run (kiln/run.h:
 * kiln_run_create, kiln_run_log_metric, kiln_run_save, kiln_run_close), but a run folder is
 * complete without it, and kiln_registry_sync brings the index up to date with the folders: it
 * imports runs it lacks (folders made before the registry existed, or while it could not be
 * written), re-reads those whose run.json or metrics.jsonl changed since, and forgets runs whose
 * folder is gone. The CLI syncs before it answers; a sync of an unchanged registry costs two
 * stat() per run.
 *
 * Concurrency. The file is in WAL mode: readers never block writers or each other, and writers
 * (one at a time) wait for each other up to a busy timeout. Every change is one transaction, so
 * any number of processes (trainings in one runs folder, the CLI, the board) share the file and
 * a crash leaves it as it was before the interrupted change.
 *
 * Crashed runs. A run whose row says "running" while no process holds its folder's writer lock
 * (kiln/run.h: the flock that kiln_run_is_active probes; on a file system without flock, no
 * process with its pid on its host) has died: kiln_registry_open marks it failed, with the time
 * of its last sign of life (its newest file) as end time. Only the row changes; run.json keeps
 * saying what the dead process last wrote.
 *
 * Errors: a file that is not an SQLite database, or one of another program, is
 * KILN_ERR_FORMAT; one written by a newer kiln (a higher schema version) too; a registry still
 * locked by another process after the busy timeout, a full disk or an unreadable file is
 * KILN_ERR_IO. Messages name the file.
 *
 * Threads: a kiln_registry is one SQLite connection, used by one thread at a time; open one per
 * thread (or process) that needs it. Do not carry one across fork().
 */
#ifndef KILN_REGISTRY_H
#define KILN_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/run.h"
#include "kiln/status.h"

#define KILN_REGISTRY_SCHEMA 3
#define KILN_REGISTRY_FILE   "kiln.db"
/* Longest model name or alias, in bytes. */
#define KILN_REGISTRY_NAME_MAX 128

typedef struct kiln_registry kiln_registry;

/* ---- following a run while it is written ---- */

/* Keeps the registry of run's runs folder (<runs_dir>/<experiment>/<run-id>) current while run
 * is written, as its kiln_run_follower (kiln/run.h): the run's row now (created: 1 right after
 * kiln_run_create; 0 after kiln_run_open for writing, which first brings the registry up to date
 * with the folder), metric points in batches of up to 256 or a second, run.json at every save,
 * the last points at close. Never fails: the first registry error (a damaged or foreign kiln.db,
 * a lock held too long, a full disk) is written to log.txt and stderr once and the run goes on
 * without the registry; `kiln runs` later reads what it missed from the folder. KILN_REGISTRY=off
 * in the environment, or a run opened for reading, makes it a no-op. */
void kiln_registry_follow_run(kiln_rundir *run, int created);

/* ---- opening ---- */

/* Opens <runs_dir>/kiln.db, creating it (and its schema) when missing, upgrading an older
 * schema, and marking crashed runs failed. runs_dir must exist (KILN_ERR_NOTFOUND otherwise).
 * Writers wait up to 10 s for each other. A runs folder that cannot be written is opened read-only
 * (kiln_registry_read_only). *out is NULL on failure. */
kiln_status kiln_registry_open(const char *runs_dir, kiln_registry **out);
/* NULL is a no-op. */
void kiln_registry_close(kiln_registry *reg);
/* Where the registry lives is a URI (docs/tracking.md): "sqlite:" (<runs_dir>/kiln.db, the
 * default), "sqlite:PATH", "postgresql://..." or "postgres://..." (a libpq URI; ?schema=NAME
 * picks a schema), "off" (training does not record its run). It comes from the KILN_REGISTRY
 * environment variable (kiln's --registry option sets it), else the registry: key of the user
 * config file ($KILN_CONFIG, else $XDG_CONFIG_HOME/kiln/config.yaml or
 * ~/.config/kiln/config.yaml), else "sqlite:". On PostgreSQL one database (or schema) indexes one
 * runs folder. KILN_ERR_INVALID naming the forms for a URI kiln does not take. */
kiln_status kiln_registry_check_uri(const char *uri);
/* Lets this program open postgresql:// registries. The kiln command calls it first thing; a
 * program that never does (kiln-serve, so its image carries no libpq) gets KILN_ERR_INVALID
 * saying so when a PostgreSQL URI is opened. Idempotent; call before any thread that
 * opens a registry starts. */
void kiln_registry_use_postgres(void);
/* The runs folder as given to open (without trailing slashes), and the database file. */
const char *kiln_registry_runs_dir(const kiln_registry *reg);
const char *kiln_registry_path(const kiln_registry *reg);
/* 1 when the runs folder (or its kiln.db) cannot be written (an archive, a read-only mount, a
 * folder of another user): kiln_registry_open then works on a copy of kiln.db in memory (an
 * empty one when there is none), and syncing, crashed-run marking and everything else that reads
 * happens there, so listing and showing runs and models works and nothing is written. Changes
 * (kiln_registry_remove_run, kiln_registry_register_model, kiln_registry_set_alias,
 * kiln_registry_delete_alias) fail with KILN_ERR_IO. */
int kiln_registry_read_only(const kiln_registry *reg);

typedef struct {
    int imported;      /* run folders the registry lacked */
    int updated;       /* runs whose run.json, config.yaml or metrics.jsonl had changed */
    int removed;       /* rows of run folders that are gone */
    int skipped;       /* folders with a run.json that cannot be read (named in warning) */
    int models;        /* model versions found under models/ that the registry lacked */
    char warning[512]; /* the first unreadable run folder and why ("" when none) */
} kiln_registry_sync_stats;

/* Brings the registry up to date with the run folders under the runs folder (<experiment>/<run>
 * folders holding a run.json) and the model versions under <runs_dir>/models/. One transaction
 * per run, so a sync can be interrupted and other processes keep writing meanwhile. A run
 * folder that cannot be read is skipped (counted, the first one named in stats->warning), not an
 * error. stats may be NULL. */
kiln_status kiln_registry_sync(kiln_registry *reg, kiln_registry_sync_stats *stats);

/* ---- runs ---- */

/* A run as listed. Strings are NULL where unknown, and valid during the callback only. */
typedef struct {
    const char *id;         /* "<experiment folder>/<run folder>" */
    const char *experiment; /* as given in the config */
    const char *name;
    const char *status; /* "running", "finished", "failed", "stopped" */
    const char *message;
    const char *start_time, *end_time; /* ISO 8601 UTC; end_time NULL while running */
    double duration;                   /* seconds, up to now while running */
    const char *host;
    long pid;
    const char *kiln_version, *seed, *config_hash, *command, *checkpoint;
    int64_t epochs_completed, steps;
    const double *values;      /* [query's n_metrics]: latest values, NaN where the run has none */
    const char *const *params; /* [query's n_params]: values as text, NULL where it has none */
    /* With the query's all_metrics: every metric's latest value, by name ([n_latest]). */
    int n_latest;
    const char *const *latest_names;
    const double *latest_values;
} kiln_registry_run;
/* Return nonzero to stop. */
typedef int (*kiln_registry_run_fn)(const kiln_registry_run *run, void *ctx);

/* Filter expressions over runs, as `kiln runs list --filter` takes them:
 *   metrics.val_accuracy > 0.9 and params.optimizer.adam.learning_rate < 0.01
 *   (status = 'finished' or status = "running") and not name = 'baseline'
 * Names: metrics.NAME (the run's latest value; a number), params.KEY (a config key path; compared
 * as a number with numbers and as text with strings), and the attributes id, name, experiment,
 * status, message, start_time, end_time, host, kiln_version, config_hash (text) and pid, steps,
 * epochs_completed, duration (seconds) (numbers); a prefix "attributes." is allowed. A part of a
 * name that holds other characters goes in backquotes: metrics.`my metric`.
 * Values: numbers (1, -2.5, 1e-3) and strings in single or double quotes (a backslash escapes the
 * quote or a backslash). Operators: = (or ==), != (or <>), <, <=, >, >=; and, or, not (any case;
 * not binds tightest, then and, then or), parentheses. A comparison with a metric or param that
 * the run lacks is false. */
typedef struct kiln_registry_filter kiln_registry_filter;
/* Parses text. On a syntax or name error: KILN_ERR_INVALID, a message starting with
 * "column N: ", and N (1-based, in characters) in *error_column (may be NULL; 0 on success). */
kiln_status kiln_registry_filter_parse(const char *text, kiln_registry_filter **out,
                                       int *error_column);
void kiln_registry_filter_free(kiln_registry_filter *f);
/* The expression fully parenthesized, e.g. "((metrics.a > 1) or ((params.b = 'x') and (not
 * (status = 'failed'))))": how it was understood. KILN_ERR_INVALID when it does not fit. */
kiln_status kiln_registry_filter_format(const kiln_registry_filter *f, char *out, size_t cap);
/* The metric and param names the filter refers to, in order of appearance (repeats included):
 * the i-th, or NULL past the end; *is_param (may be NULL) tells which it is. */
const char *kiln_registry_filter_name(const kiln_registry_filter *f, int i, int *is_param);
/* What a sort key (see kiln_registry_query.sort) sorts by: *kind 1 a metric, 2 a param, 0 an
 * attribute, with the metric or param name in name. KILN_ERR_INVALID for a bad key. */
kiln_status kiln_registry_sort_key(const char *sort, int *kind, char *name, size_t cap);

typedef struct {
    const char *id;                     /* NULL, or exactly this run */
    const char *experiment;             /* NULL, or its name (as given, or its folder's name) */
    const kiln_registry_filter *filter; /* NULL: every run */
    /* NULL: newest first. Else a name as in filters, or a bare metric name ("val_accuracy"),
     * optionally followed by " asc" or " desc". Without a direction: metrics best first (as
     * kiln_metric_higher_is_better says; descending when it does not know the name), start_time
     * and end_time newest first, the rest ascending. Runs without the value come last; ties go
     * newest first. */
    const char *sort;
    const char *const *metrics; /* [n_metrics] names whose latest values fill run->values */
    int n_metrics;
    const char *const *params; /* [n_params] keys whose values fill run->params */
    int n_params;
    int all_metrics; /* fill run->latest_* with every metric's latest value */
    int64_t limit;   /* 0: no limit */
} kiln_registry_query;

/* Calls fn for every run the query selects, in order. KILN_ERR_INVALID for a bad sort key. */
kiln_status kiln_registry_list_runs(kiln_registry *reg, const kiln_registry_query *q,
                                    kiln_registry_run_fn fn, void *ctx);

/* The run a user means by ref, as its id into id: a run folder (a path to a folder holding a
 * run.json, which must lie in this runs folder), a run id ("exp/name-20240101-120000"), a run
 * folder's name, a run's name, or a prefix of one of these that only one run has.
 * KILN_ERR_NOTFOUND when no run matches; KILN_ERR_INVALID naming the candidates when several do. */
kiln_status kiln_registry_find_run(kiln_registry *reg, const char *ref, char *id, size_t cap);

typedef struct {
    const char *key, *value; /* value: the YAML scalar's text ("null" for null) */
    int is_number;
    double number;
} kiln_registry_param;
typedef int (*kiln_registry_param_fn)(const kiln_registry_param *p, void *ctx);
/* The run's params, by key. */
kiln_status kiln_registry_run_params(kiln_registry *reg, const char *id, kiln_registry_param_fn fn,
                                     void *ctx);

typedef struct {
    const char *name;
    int64_t points;
    int64_t last_step;
    double last, min, max; /* NaN when every value was NaN */
} kiln_registry_metric;
typedef int (*kiln_registry_metric_fn)(const kiln_registry_metric *m, void *ctx);
/* One summary per metric name of the run, by name. */
kiln_status kiln_registry_run_metrics(kiln_registry *reg, const char *id,
                                      kiln_registry_metric_fn fn, void *ctx);

/* The run's latest point of every metric (name, last_step, last; points is 1, min and max are
 * NaN), by name: cheaper than kiln_registry_run_metrics, for listing many runs. */
kiln_status kiln_registry_latest_metrics(kiln_registry *reg, const char *id,
                                         kiln_registry_metric_fn fn, void *ctx);

typedef struct {
    int64_t step;
    double wall_time, value; /* value NaN for null */
} kiln_registry_point;
typedef int (*kiln_registry_point_fn)(const kiln_registry_point *p, void *ctx);
/* A metric's points by step (e.g. for a chart). */
kiln_status kiln_registry_metric_history(kiln_registry *reg, const char *id, const char *name,
                                         kiln_registry_point_fn fn, void *ctx);

/* Removes the run's folder and its rows. KILN_ERR_IO when a process is writing the run
 * (it holds the folder's lock); KILN_ERR_NOTFOUND when the registry has no such run. A model
 * version registered from the run stays (its folder is under models/), with its source run
 * recorded by id. */
kiln_status kiln_registry_remove_run(kiln_registry *reg, const char *id);

/* ---- models ---- */

/* Model names and aliases: 1..KILN_REGISTRY_NAME_MAX bytes of letters, digits, '-', '_', '.',
 * not starting with '.' or '-'; an alias is not all digits (it would read as a version). */
int kiln_registry_valid_name(const char *name);

/* Registers a checkpoint of run id as version `version` of model `name` (0: the next after the
 * highest): exports it with kiln_export_run into <runs_dir>/models/<name>/<version>/ and records
 * it. checkpoint NULL exports the best checkpoint when the run kept one (early stopping), else
 * its newest; "step-N" or "best" pick one. name NULL is the run's experiment name, sanitized as
 * folder names are. The version written goes to *version_out (may be NULL); the model's name to
 * model_name (may be NULL; cap KILN_REGISTRY_NAME_MAX + 1 suffices). KILN_ERR_INVALID for a bad
 * name or a version that exists; KILN_ERR_NOTFOUND for an unknown run or a run without
 * checkpoints. */
kiln_status kiln_registry_register_model(kiln_registry *reg, const char *id, const char *name,
                                         const char *checkpoint, int64_t version,
                                         int64_t *version_out, char *model_name, size_t cap);
/* The same with export options (o->onnx: the version also holds model.onnx); o may be NULL. */
kiln_status kiln_registry_register_model_ex(kiln_registry *reg, const char *id, const char *name,
                                            const char *checkpoint, int64_t version,
                                            const kiln_export_run_opts *o, int64_t *version_out,
                                            char *model_name, size_t cap);

typedef struct {
    const char *model;
    int64_t version;
    const char *run;        /* the source run's id (NULL when unknown) */
    int run_exists;         /* the run is still in the registry */
    const char *checkpoint; /* "step-N" (NULL when unknown) */
    const char *path;       /* the version folder, under the runs folder */
    int path_exists;        /* it still holds a complete version */
    const char *created;    /* ISO 8601 UTC */
    const char *aliases;    /* "production, staging" ("" when none) */
} kiln_registry_model_version;
typedef int (*kiln_registry_model_fn)(const kiln_registry_model_version *v, void *ctx);
/* Every version of every model (or of model `name`), by name and version. */
kiln_status kiln_registry_list_models(kiln_registry *reg, const char *name,
                                      kiln_registry_model_fn fn, void *ctx);

/* Points alias at version `version` of model `name` (moving it when it pointed elsewhere).
 * KILN_ERR_NOTFOUND for an unknown model or version; KILN_ERR_INVALID for a bad alias. */
kiln_status kiln_registry_set_alias(kiln_registry *reg, const char *name, int64_t version,
                                    const char *alias);
/* Removes an alias. KILN_ERR_NOTFOUND when the model has no such alias. */
kiln_status kiln_registry_delete_alias(kiln_registry *reg, const char *name, const char *alias);

/* What `kiln serve` needs for a model URI of the runs folder runs_dir:
 *   "models:/NAME/VERSION"   that version            (*version = VERSION)
 *   "models:/NAME@ALIAS"     the version the alias names
 *   "models:/NAME/latest"    the highest version
 *   "models:/NAME"           every version            (*version = 0: serve by version policy)
 * base gets the model's base folder, "<runs_dir>/models/NAME" (its versions are the numbered
 * folders inside: pass it as --model_base_path and serve *version), and *version the version.
 * Reads the registry only (it does not sync, and never creates kiln.db). Errors:
 * KILN_ERR_INVALID for a malformed URI (naming the expected forms); KILN_ERR_NOTFOUND for a
 * runs folder without a registry, an unknown model (naming the known ones), an unknown version
 * or alias (naming the model's), or a version whose folder is gone. */
kiln_status kiln_registry_resolve_model_uri(const char *runs_dir, const char *uri, char *base,
                                            size_t cap, int64_t *version);

/* ---- studies (kiln tune: src/tune/, docs/tune.md) ----
 * studies: one row per study (name, experiment, objective metric and direction, when created,
 * spec: the JSON the tuner needs to resume it). trials: one row per trial (number from 0, state
 * running|finished|pruned|failed, its run's id, params as a JSON object of key -> value, x as a
 * JSON array of the sampler's values (null: inactive), the objective value, the resource (epoch
 * or step) reached, times, message). Each call is one transaction. */
typedef struct {
    const char *name, *experiment, *metric, *direction, *created, *spec;
    int64_t trials, finished, pruned, failed, running; /* counts (listing only) */
    int has_best;
    double best;
} kiln_registry_study;
typedef struct {
    int64_t number;
    const char *state, *run, *params, *x;
    int has_value, has_resource;
    double value, resource;
    const char *start_time, *end_time, *message;
} kiln_registry_trial;
typedef int (*kiln_registry_study_fn)(const kiln_registry_study *s, void *ctx);
typedef int (*kiln_registry_trial_fn)(const kiln_registry_trial *t, void *ctx);
/* Opens an existing registry for reading only: it is never created, upgraded or written (no
 * crashed-run marking), for readers that must not write to the runs folder (kiln board).
 * KILN_ERR_NOTFOUND when there is none, or only one older than this kiln's schema. */
kiln_status kiln_registry_open_read(const char *runs_dir, kiln_registry **out);
/* Creates the study (KILN_ERR_INVALID when the name is taken). created NULL: now. */
kiln_status kiln_registry_study_create(kiln_registry *reg, const kiln_registry_study *s);
/* Every study (name NULL), newest first, or the one named (KILN_ERR_NOTFOUND when none). */
kiln_status kiln_registry_studies(kiln_registry *reg, const char *name, kiln_registry_study_fn fn,
                                  void *ctx);
/* Inserts or replaces trial t->number of study. */
kiln_status kiln_registry_trial_put(kiln_registry *reg, const char *study, const kiln_registry_trial *t);
/* The study's trials by number. */
kiln_status kiln_registry_trials(kiln_registry *reg, const char *study, kiln_registry_trial_fn fn,
                                 void *ctx);

#endif
