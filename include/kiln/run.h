/* kiln/run.h — the run folder: run.json, metrics.jsonl, log.txt and the checkpoint folders.
 *
 * Every training run (and every evaluation that records one) gets a folder
 *
 *   <runs_dir>/<experiment>/<name>-<YYYYmmdd-HHMMSS>[-n]/     (local time; -2, -3, ... on clashes)
 *     run.json        status, times, host, pid, kiln version, seed, config hash, command, counters,
 *                     final and best metrics, newest checkpoint
 *     metrics.jsonl   one JSON object per logged point
 *     log.txt         what the terminal showed
 *     checkpoints/step-<N>/   complete checkpoints (the trainer writes the files inside)
 *     checkpoints/latest      "step-<N>\n": the newest complete one, written last
 *
 * A kiln_rundir is one open run folder. The type is not called kiln_run because that name is the
 * graph's per-step context (src/graph/graph_internal.h); the functions are kiln_run_*.
 *
 * Naming. The experiment and run names are sanitized for the file system (kiln_run_sanitize);
 * run.json keeps them as given. The folder is claimed with mkdir, which fails with EEXIST when
 * the name is taken, so any number of processes starting in the same second get different
 * folders. The folder exists a moment before its run.json: kiln_run_find_latest skips folders
 * without one.
 *
 * Writers and readers. One process writes a run at a time: kiln_run_create and kiln_run_open with
 * KILN_RUN_WRITE hold an exclusive flock on the run folder until kiln_run_close (or the process's
 * death), and a second writer is refused. Any number of readers (kiln eval, the board) open it
 * with KILN_RUN_READ, which takes no lock and refuses whatever would write. kiln_run_is_active
 * tells a reader whether a writer still holds the run, so "running" in run.json with no writer
 * means the process died (the kernel drops the lock however the process ends). On a file system
 * without flock (some network file systems) runs are opened unlocked.
 *
 * Crash safety. run.json and checkpoints/latest are replaced atomically (kiln/fileio.h: temporary
 * file, fsync, rename, fsync of the folder): a reader sees the old or the new file, never half of
 * one. A checkpoint is written into checkpoints/.tmp-step-<N>-<pid>/, its files fsync'ed, the
 * folder renamed to step-<N>, checkpoints/ fsync'ed, and only then is latest rewritten; so a
 * step-<N> folder is always complete and latest only ever names a complete one.
 *
 * metrics.jsonl, one line per point (wall_time: seconds since the Unix epoch, like TensorBoard's):
 *   {"step":120,"epoch":1,"wall_time":1714567890.123456,"split":"train","name":"loss","value":0.25}
 * Each line goes to the file in one write() with O_APPEND, so a concurrent reader sees whole
 * lines only, plus at most a partial last line without its newline, which readers skip. Lines
 * are not fsync'ed: those written before a crash of the process survive (they are in the OS's
 * page cache); an OS crash or power loss may lose the last seconds of them. A resumed run goes on
 * from its checkpoint, so it may log points for steps that are already in the file: readers take
 * the last line for a given (step, split, name). If a write was ever cut short (disk full, or a
 * crash in the middle of one), the next line starts with a newline, so that fragment stays a
 * line of its own that readers skip.
 *
 * JSON numbers. NaN and +-Inf are not valid JSON: metric values and epochs that are not finite
 * are written as null (in metrics.jsonl and run.json alike) and read back as NaN. The seed is
 * written as a JSON number when it is at most 2^53 (exact in every JSON reader) and as a decimal
 * string above that.
 *
 * Times in run.json are ISO 8601 UTC to the second ("2024-05-01T12:34:56Z"). The folder name
 * uses local time, as people read it; find_latest orders by it, so a run started in the hour a
 * daylight-saving clock goes back may sort before the one just before it.
 */
#ifndef KILN_RUN_H
#define KILN_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

/* Longest sanitized experiment or run name, in bytes (longer ones are cut). */
#define KILN_RUN_NAME_MAX 128

typedef struct kiln_rundir kiln_rundir;

typedef enum {
    KILN_RUN_RUNNING = 0,
    KILN_RUN_FINISHED,
    KILN_RUN_FAILED,
    KILN_RUN_STOPPED, /* interrupted on purpose (Ctrl-C, early stop by the user) */
    KILN_RUN_PRUNED,  /* stopped by kiln tune's pruner (SIGUSR1; docs/tune.md): not resumed */
} kiln_run_state;

/* Which metric map of run.json: final_metrics or best_metrics. */
typedef enum { KILN_RUN_FINAL = 0, KILN_RUN_BEST } kiln_run_which;

typedef enum { KILN_SPLIT_TRAIN = 0, KILN_SPLIT_VALIDATION, KILN_SPLIT_TEST } kiln_split;

typedef enum { KILN_RUN_READ = 0, KILN_RUN_WRITE } kiln_run_mode;

/* "running", "finished", "failed", "stopped", "pruned" / "train", "validation", "test" ("?" out of range). */
const char *kiln_run_state_name(kiln_run_state s);
const char *kiln_split_name(kiln_split s);

/* The file-system form of an experiment or run name: letters, digits, '-', '_' and '.' are kept,
 * every other character (a whole UTF-8 sequence counts as one) becomes '_', a leading '.' becomes
 * '_', an empty or NULL name becomes "_", and the result is cut to KILN_RUN_NAME_MAX bytes. */
void kiln_run_sanitize(const char *in, char out[KILN_RUN_NAME_MAX + 1]);

/* ---- opening ---- */

/* Creates <runs_dir>/<experiment>/<name>-<YYYYmmdd-HHMMSS>[-n]/ with checkpoints/ inside (and any
 * missing parent folders), an empty metrics.jsonl and log.txt, and run.json with status
 * "running", start_time now, this host and pid, and nulls for what the caller sets later. name
 * NULL means the experiment's name. The run is open for writing. On failure *out is NULL and no
 * half-made folder is left behind. */
kiln_status kiln_run_create(const char *runs_dir, const char *experiment, const char *name,
                            kiln_rundir **out);
/* Opens an existing run folder and reads its run.json. KILN_RUN_WRITE (kiln train --resume) takes
 * the run's lock (KILN_ERR_INVALID when another process holds it), records this host and pid,
 * and appends to the run's metrics.jsonl and log.txt; the status is left as it was (set it
 * running with kiln_run_set_status). KILN_RUN_READ (kiln eval, the board) refuses every call
 * that writes to the folder. */
kiln_status kiln_run_open(const char *path, kiln_run_mode mode, kiln_rundir **out);
/* Closes the files and releases the lock; it does not save run.json. NULL is a no-op. */
void kiln_run_close(kiln_rundir *run);
/* The newest run folder of experiment (NULL: of any experiment under runs_dir) into out, as
 * "<runs_dir>/<experiment>/<run-id>". Newest means the latest timestamp in the folder name, then
 * the highest -n. Only folders holding a run.json count. KILN_ERR_NOTFOUND when there is none. */
kiln_status kiln_run_find_latest(const char *runs_dir, const char *experiment, char *out,
                                 size_t cap);
/* 1 when a process holds the run open for writing (this one included), 0 when none does. */
int kiln_run_is_active(const kiln_rundir *run);

/* ---- a follower ----
 * A run open for writing tells one follower of each change once it is in the folder: the
 * registry (kiln_registry_follow_run in kiln/registry.h) keeps runs/kiln.db current this way. A
 * higher layer installs it after kiln_run_create or kiln_run_open (the trainer does), so the run
 * folder knows nothing above it. A follower cannot fail the run; it may remove itself
 * (kiln_run_set_follower(run, NULL, NULL)) from inside a callback. */
typedef struct {
    /* A point now in metrics.jsonl (wall_time as a reader of the line gets it back), whose size
     * is now end. */
    void (*point)(void *ctx, kiln_rundir *run, int64_t step, double wall_time, kiln_split split,
                  const char *name, double value, int64_t end);
    void (*saved)(void *ctx, kiln_rundir *run);   /* run.json was saved */
    void (*closing)(void *ctx, kiln_rundir *run); /* first in kiln_run_close; releases ctx */
} kiln_run_follower;
/* Installs f with its ctx (replacing any follower without telling it); NULL removes it. Refused
 * (KILN_ERR_INVALID) on a run opened for reading. */
kiln_status kiln_run_set_follower(kiln_rundir *run, const kiln_run_follower *f, void *ctx);

/* ---- run.json ---- */

/* What run.json says. Strings are NULL where run.json has null, and stay valid until the next
 * setter or kiln_run_close. */
typedef struct {
    const char *path;       /* the run folder as opened */
    const char *id;         /* the folder's name */
    const char *experiment; /* as given, before sanitizing */
    const char *name;
    kiln_run_state status;
    const char *start_time, *end_time; /* ISO 8601 UTC; end_time NULL while running */
    const char *host;
    long pid;
    const char *kiln_version; /* of the process that last wrote the run */
    int has_seed;
    uint64_t seed;
    const char *config_hash; /* kiln_cfg_hash of the resolved config */
    const char *command;     /* the command line, shell-quoted */
    const char *message;     /* why the run failed or stopped */
    int64_t epochs_completed, steps;
    int64_t best_step;      /* -1: null */
    const char *checkpoint; /* name of the newest checkpoint ("step-500") */
    int64_t data_skipped;   /* samples data.on_error: skip left out (0 when none) */
} kiln_run_info;
/* A NULL run: the info of none (empty strings). The setters, kiln_run_save, kiln_run_log and
 * kiln_run_log_metric accept a NULL run too and do nothing: the trainer of a data-parallel
 * rank other than 0, which writes no run folder (docs/distributed.md). */
kiln_run_info kiln_run_get_info(const kiln_rundir *run);

/* Setters change the run in memory; kiln_run_save writes run.json (atomically). */

/* Status transitions: a running run may become finished, failed, stopped or pruned (end_time = now); any
 * run may become running again (a resume: end_time is cleared). Ending a run that has already
 * ended is KILN_ERR_INVALID. message (the reason, or NULL) replaces run.json's message. */
kiln_status kiln_run_set_status(kiln_rundir *run, kiln_run_state status, const char *message);
void kiln_run_set_seed(kiln_rundir *run, uint64_t seed);
/* NULL clears it. */
kiln_status kiln_run_set_config_hash(kiln_rundir *run, const char *hash);
/* argv[0..argc) joined by spaces, each argument shell-quoted when it needs it. */
kiln_status kiln_run_set_command(kiln_rundir *run, int argc, const char *const *argv);
void kiln_run_set_progress(kiln_rundir *run, int64_t epochs_completed, int64_t steps);
/* Adds the metric or replaces its value (maps keep the order of first setting). */
kiln_status kiln_run_set_metric(kiln_rundir *run, kiln_run_which which, const char *name,
                                double value);
/* Forgets every metric of the map. */
void kiln_run_clear_metrics(kiln_rundir *run, kiln_run_which which);
/* step < 0 writes null. */
void kiln_run_set_best_step(kiln_rundir *run, int64_t step);
/* Unreadable samples that data.on_error: skip left out of the data (run.json data_skipped). */
void kiln_run_set_data_skipped(kiln_rundir *run, int64_t n);
/* Writes run.json atomically (KILN_ERR_INVALID on a run opened for reading). */
kiln_status kiln_run_save(kiln_rundir *run);

/* KILN_ERR_NOTFOUND when the map has no such metric (NaN when run.json holds null). */
kiln_status kiln_run_get_metric(const kiln_rundir *run, kiln_run_which which, const char *name,
                                double *value);
int kiln_run_metric_count(const kiln_rundir *run, kiln_run_which which);
/* The i-th metric's name (NULL when i is out of range) and value. */
const char *kiln_run_metric_at(const kiln_rundir *run, kiln_run_which which, int i, double *value);

/* ---- metrics.jsonl and log.txt ---- */

/* stages: metric points logged from now on carry "stage": stage (1-based); 0: none (default). */
void kiln_run_set_stage(kiln_rundir *run, int stage);
/* Appends one point. epoch is the caller's count (it may be fractional); name is 1 to 200 bytes.
 * A value or epoch that is not finite is written as null. */
kiln_status kiln_run_log_metric(kiln_rundir *run, int64_t step, double epoch, kiln_split split,
                                const char *name, double value);
/* The same with the point's wall_time given (seconds since the Unix epoch, kept to the
 * microsecond; < 0: now): points that another tracker timed (kiln board's MLflow API). */
kiln_status kiln_run_log_metric_at(kiln_rundir *run, int64_t step, double epoch, kiln_split split,
                                   const char *name, double value, double wall_time);

/* One point as read back. name is valid only during the callback. */
typedef struct {
    int64_t step;
    double epoch; /* NaN for null */
    double wall_time;
    kiln_split split;
    const char *name;
    double value; /* NaN for null */
    int stage;    /* "stage" of the line (1-based, kiln_run_set_stage); 0 when it has none */
} kiln_metric_point;
/* Return nonzero to stop reading. */
typedef int (*kiln_metric_fn)(const kiln_metric_point *p, void *ctx);

/* Calls fn for every point of a metrics.jsonl file, in file order. A last line without its
 * newline is a line still being written (or cut by a crash) and is skipped; so are complete lines
 * that are not a valid point (blank lines are ignored; others are counted in *skipped, which may
 * be NULL). offset (may be NULL) is where to start and, on return, the byte just past the last
 * complete line read: a reader that follows a live run passes it back to read only new lines. */
kiln_status kiln_run_read_metrics(const char *path, int64_t *offset, kiln_metric_fn fn, void *ctx,
                                  int64_t *skipped);

/* Appends a line to log.txt (a newline is added unless the text ends with one). The caller shows
 * it on the terminal itself. */
kiln_status kiln_run_log(kiln_rundir *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- checkpoints ---- */

/* Makes checkpoints/.tmp-step-<step>-<pid>/ (emptied first if an earlier attempt of this process
 * left it) and puts its path into tmpdir; the trainer writes the checkpoint's files there. */
kiln_status kiln_run_checkpoint_begin(kiln_rundir *run, int64_t step, char *tmpdir, size_t cap);
/* Makes the checkpoint begun at tmpdir complete: fsyncs every file in it, renames it to
 * checkpoints/step-<step> (replacing a step-<step> left by an earlier attempt, which is removed),
 * fsyncs checkpoints/, writes checkpoints/latest, and saves run.json with checkpoint =
 * "step-<step>". If anything fails before latest is written, latest still names the previous
 * checkpoint. */
kiln_status kiln_run_checkpoint_commit(kiln_rundir *run, int64_t step, const char *tmpdir);
/* Removes a begun checkpoint that will not be committed (the trainer failed to write it). */
kiln_status kiln_run_checkpoint_abort(kiln_rundir *run, const char *tmpdir);
/* The newest complete checkpoint's name ("step-500") into name. When latest is missing, cannot be
 * read or names a folder that is gone, the highest complete step-<N> is used instead and warning
 * (may be NULL) says what happened; otherwise warning is "". KILN_ERR_NOTFOUND when there is no
 * checkpoint at all. Works on runs opened for reading. */
kiln_status kiln_run_checkpoint_latest(const kiln_rundir *run, char *name, size_t cap,
                                       char *warning, size_t warning_cap);
/* The steps of the complete checkpoints (folders step-<N>), ascending, in a new array (free it
 * with kiln_free; NULL when there are none). Works on runs opened for reading. */
kiln_status kiln_run_checkpoint_list(const kiln_rundir *run, int64_t **steps, int *n);
/* "<run>/checkpoints/<name>" into out. */
kiln_status kiln_run_checkpoint_path(const kiln_rundir *run, const char *name, char *out,
                                     size_t cap);
/* Removes complete checkpoints older than the keep_last newest, except protect (the best
 * checkpoint's name, or NULL) and the one latest names (or, when latest names none, the newest).
 * Also removes what crashed attempts left in checkpoints/ (.tmp-* entries), except the checkpoint
 * this process has begun and not yet committed. keep_last >= 0. */
kiln_status kiln_run_checkpoint_prune(kiln_rundir *run, int keep_last, const char *protect);

/* ---- export (src/run/export_run.c) ---- */

/* Exports a checkpoint of a run folder: checkpoint NULL is the newest, "best" the one early
 * stopping kept, "step-N" that one. Uses the run's config.yaml and the checkpoint's EMA weights
 * when it has them (what evaluation used). base_dir NULL is <run_dir>/export. Preprocessing
 * comes from data.normalize; the training data is read only when the config needs it to
 * recompute what the loader applied (standardize: true) or to name the classes (CSV string
 * labels without model.class_names). KILN_ERR_NOTFOUND: no such run or checkpoint;
 * KILN_ERR_INVALID: a bad argument or config, an existing version. (Declared in kiln/export.h
 * before the run folder and the servable package became layers of their own.) */
kiln_status kiln_export_run(const char *run_dir, const char *checkpoint, const char *base_dir,
                            int64_t version, int64_t *version_out);
/* kiln_export_run with options: onnx 1 also writes model.onnx in the version (kiln/export.h,
 * "ONNX"). o NULL is all defaults (kiln_export_run). */
typedef struct {
    int onnx;
} kiln_export_run_opts;
kiln_status kiln_export_run_ex(const char *run_dir, const char *checkpoint, const char *base_dir,
                               int64_t version, const kiln_export_run_opts *o,
                               int64_t *version_out);

#endif
