/* run_internal.h — the kiln_rundir struct and helpers shared by run.c (the folder, run.json,
 * log.txt), jsonl.c (metrics.jsonl) and checkpoints.c (checkpoints/) (library-private).
 *
 * Invariants:
 *   - every owned string is a malloc'ed copy or NULL (NULL = null in run.json);
 *   - writable == 1 exactly when dir_fd holds the run's exclusive flock and metrics_fd, log_fd are
 *     open with O_APPEND; a read-only run has both at -1 and keeps dir_fd only to probe the lock;
 *   - *_torn is set when the file's last line may lack its newline (a short write, or found so
 *     at open): the next append starts with '\n';
 *   - ckpt_tmp is the checkpoint folder begun and not yet committed or aborted (NULL if none);
 *   - follower is NULL or was installed on a writable run (kiln_run_set_follower); it is told
 *     of every point and save, and of the close before anything is released.
 */
#ifndef KILN_TRACK_RUN_INTERNAL_H
#define KILN_TRACK_RUN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/run.h"

typedef struct {
    char *name;
    double value; /* NaN when run.json had null */
} kiln_run_metric;

struct kiln_rundir {
    char *path, *id, *experiment, *name;
    kiln_run_state status;
    char start_time[24], end_time[24]; /* end_time "" = null */
    char *host;
    long pid;
    char *kiln_version;
    int has_seed;
    uint64_t seed;
    char *config_hash, *command, *message, *checkpoint;
    int64_t epochs_completed, steps, best_step;
    int64_t data_skipped; /* data.on_error: skip: samples left out */
    int stage;            /* kiln_run_set_stage: metric points carry "stage" when > 0 */
    kiln_run_metric *metrics[2]; /* [KILN_RUN_FINAL], [KILN_RUN_BEST] */
    int n_metrics[2], cap_metrics[2];

    int writable;
    int dir_fd, metrics_fd, log_fd;
    int metrics_torn, log_torn;
    char *ckpt_tmp;
    const kiln_run_follower *follower;
    void *follower_ctx;
};

/* "a/b" into out; KILN_ERR_INVALID naming both when it does not fit. */
kiln_status kiln_run_join(char *out, size_t cap, const char *a, const char *b);
/* Appends len bytes to fd in one write() (O_APPEND), after a '\n' when *torn; keeps *torn true
 * after a short write. what names the file in messages. */
kiln_status kiln_run_append_line(int fd, int *torn, const char *line, size_t len, const char *what);
/* Opens path for appending (created 0666 minus umask) and sets *torn when its last byte is not
 * a newline. */
kiln_status kiln_run_open_append(const char *path, int *fd, int *torn);
/* Refuses calls that write on a run opened for reading; op names the call. */
kiln_status kiln_run_need_write(const kiln_rundir *run, const char *op);
/* rm -r of name relative to the folder dirfd (symbolic links are removed, not followed).
 * 0, or -1 with errno; a name that does not exist is not an error. */
int kiln_run_rmtree(int dirfd, const char *name);
/* v as JSON with the fewest significant digits (15 to 17) that read back as exactly v, or
 * "null" when v is not finite; returns the length (cap >= 32 always suffices). */
int kiln_run_format_number(char *out, size_t cap, double v);
/* unix_seconds as ISO 8601 UTC ("2024-05-01T12:34:56Z"). */
void kiln_run_iso_time(long long unix_seconds, char out[24]);

/* runjson.c: the record's defaults (status running, best_step -1), and run.json in and out. */
void kiln_run_record_init(kiln_rundir *run);
void kiln_run_record_free(kiln_rundir *run);
/* Reads <run->path>/run.json into run. */
kiln_status kiln_run_record_load(kiln_rundir *run);
/* Sets *s (malloc'ed copy of s, or NULL for NULL); KILN_ERR_NOMEM naming what. */
kiln_status kiln_run_set_string(char **dst, const char *s, const char *what);

#endif
