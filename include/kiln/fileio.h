/* kiln/fileio.h — atomic file writes, bounded whole-file reads, mkdir -p.
 *
 * Every file another process may read while it is being written (checkpoints, exports, the
 * `latest` pointer, run.json) goes through an atomic write: the bytes go to a temporary file in
 * the same folder ("<dir>/.tmp-<name>-<pid>-<random>", created with O_EXCL), which is fsync'ed
 * and then renamed over the target, and the folder is fsync'ed so the rename itself is durable.
 * A reader sees either the old file or the complete new one, never half of it; a crash or a full
 * disk leaves the old file as it was (at worst a stray .tmp-* file if the process dies between
 * create and rename).
 *
 * Any failure (a write, the fsync, the rename) unlinks the temporary file at once, so a full disk
 * gets its space back, and leaves the target untouched. Errors name the target path and the
 * system's reason; ENOSPC and EDQUOT say "disk full" outright.
 *
 * The new file gets mode 0666 minus the umask (not the old file's mode). When the target is a
 * symbolic link, the link itself is replaced, not the file it points to.
 */
#ifndef KILN_FILEIO_H
#define KILN_FILEIO_H

#include <stddef.h>

#include "kiln/status.h"

/* Writes len bytes to path atomically (open + write + commit below). */
kiln_status kiln_file_write_atomic(const char *path, const void *data, size_t len);

/* ---- streaming form: open, write any number of pieces, then commit or abort ---- */
typedef struct kiln_atomic_file kiln_atomic_file;

/* Creates the temporary file next to path; *out is NULL on failure. The folder must exist
 * (see kiln_mkdirs). */
kiln_status kiln_atomic_open(const char *path, kiln_atomic_file **out);
/* Appends len bytes (each call is one write loop, unbuffered: batch tiny pieces yourself). After
 * a failure the temporary file is already gone and every later write and the commit return the
 * same error, so a caller may check only the commit. */
kiln_status kiln_atomic_write(kiln_atomic_file *f, const void *data, size_t len);
/* fsync, rename over the target, fsync the folder; frees f whatever happens. Returns the first
 * error of any earlier write when there was one (the target then keeps its old content). Only a
 * failed folder fsync comes after the rename: the new content is then in place, but a crash may
 * still bring back the old one, and the error says so. */
kiln_status kiln_atomic_commit(kiln_atomic_file *f);
/* Unlinks the temporary file and frees f; the target keeps its old content. NULL is a no-op. */
void kiln_atomic_abort(kiln_atomic_file *f);
/* Where the bytes go until commit (for messages and tests). */
const char *kiln_atomic_temp_path(const kiln_atomic_file *f);

/* ---- reading ---- */

/* Reads a whole file into *buf (NUL-terminated one byte past *len, so text can be parsed in
 * place; free it with kiln_free). Fails with KILN_ERR_FORMAT, without reading it, when the file
 * holds more than max_len bytes; works on pipes and /proc files (no size known up front) too.
 * On failure *buf is NULL and *len 0. */
kiln_status kiln_file_read_all(const char *path, void **buf, size_t *len, size_t max_len);

/* mkdir -p: creates path and its missing parents (mode 0777 minus the umask). Succeeds when
 * they already exist; fails, naming the part, when a part exists and is not a folder. */
kiln_status kiln_mkdirs(const char *path);

#endif
