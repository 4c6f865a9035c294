/* kiln/instances.h — the rows a user asks a model about, read from files: what `kiln predict`
 * sends to a server or runs in-process.
 *
 * An instance is one row of the model's single input, as raw values like those in the training
 * data (0..255 pixels): whoever runs the model applies the preprocessing recorded in the export
 * (the server, or kiln_servable_preprocess in-process). Readers only check shapes and turn
 * values into float32.
 *
 * Formats, chosen by the file's extension, else by its first bytes (always for stdin, "-"):
 *   JSON   .json      a TF Serving predict body {"instances": [...]} or {"inputs": ...} (named
 *                     inputs allowed when there is one, with the model's input name), or a bare
 *                     list of instances, or one bare instance. An instance is a nested list in
 *                     the row's shape or a flat list of row-size numbers.
 *   CSV    .csv .txt  one instance per line, comma-separated numbers (spaces around them and
 *                     double quotes are allowed; blank lines skipped; CRLF and a UTF-8 BOM
 *                     accepted). A first line that is not all numbers is a header and skipped.
 *   NPY    .npy[.gz]  [N, ...row shape] (N instances), or a single row; any dtype the data
 *                     module's NPY reader takes (f4, f8, u1, i4, i8).
 *   images .png .jpg .jpeg .bmp .gif .pgm .ppm .pnm (stb_image): one instance per file. The
 *                     input must be [C, H, W] with C = 1 (gray), 3 (RGB) or 4 (RGBA), or [H, W]
 *                     (gray); the image is converted to C channels and laid out channel by
 *                     channel (CHW), values 0..255. A width or height other than the input's is
 *                     an error naming both sizes: images are never resized.
 *
 * Shapes. "Fits the row" means: the same dims as the row once dims of size 1 are dropped from
 * both (so [28, 28] fits [1, 28, 28]), or a flat list of row-size values. A JSON body or NPY
 * array of shape [N, ...] whose trailing dims fit the row is N instances; a bare JSON list or
 * NPY array that as a whole fits the row is one instance. `kiln serve` applies the same rule to
 * the instances of a request (kiln_instances_check_batch), so both accept the same instances.
 *
 * Errors (KILN_ERR_FORMAT for bad content, KILN_ERR_IO / KILN_ERR_NOTFOUND for files that cannot
 * be read, KILN_ERR_NOMEM) name the file and where in it: "x.csv:7: column 3: 'abc' is not a
 * number", "x.json: instances[3][1]: expected 28 values, got 27", "x.json: invalid JSON at line
 * 2, column 5: ...", "cat.png: the image is 32x32 (W x H), the model's input is 28x28". No file
 * content can crash a reader or make it allocate more than the file's size calls for (image
 * sizes are checked against the input before decoding).
 */
#ifndef KILN_INSTANCES_H
#define KILN_INSTANCES_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"
#include "kiln/tensor.h"

#define KILN_INSTANCES_MAX_FILE ((size_t)1 << 30) /* bytes read from one JSON, CSV or image file   \
                                                   */

/* What the model takes. */
typedef struct {
    kiln_shape row;         /* one instance: the input's shape without its batch dim */
    const char *input_name; /* accepted as the key of named JSON inputs; NULL accepts any */
} kiln_instances_spec;

/* Instances read so far, from any number of files, in order. */
typedef struct {
    int64_t n;        /* instances */
    int64_t row_size; /* values per instance (set by the first read) */
    float *x;         /* [n, row_size] raw values */
    char **where;     /* [n] where each came from: "a.png", "b.npy[3]", "c.csv:7", "stdin[0]" */
    int64_t cap;      /* rows allocated */
} kiln_instances;

typedef enum {
    KILN_INSTANCES_UNKNOWN = 0,
    KILN_INSTANCES_JSON,
    KILN_INSTANCES_CSV,
    KILN_INSTANCES_NPY,
    KILN_INSTANCES_IMAGE,
} kiln_instances_format;

/* The format a file name's extension says (case-insensitive; UNKNOWN when it says nothing). */
kiln_instances_format kiln_instances_format_of_name(const char *path);
/* The format len bytes of content look like: NPY, PNG/JPEG/GIF/BMP/PGM/PPM magic, a first
 * non-blank character '[' or '{' (JSON), else CSV when the bytes are text; UNKNOWN otherwise. */
kiln_instances_format kiln_instances_format_of_data(const void *data, size_t len);
const char *kiln_instances_format_name(kiln_instances_format f); /* "JSON", "CSV", ... */

/* Appends the instances of the file at path ("-" reads stdin, named "stdin") to in. On failure
 * in is as it was before the call. */
kiln_status kiln_instances_read(kiln_instances *in, const char *path,
                                const kiln_instances_spec *spec);
/* The same for content in memory; name is used in messages and in `where`; fmt UNKNOWN sniffs
 * the content. NPY content is parsed through a temporary file (the NPY reader reads files). */
kiln_status kiln_instances_read_data(kiln_instances *in, const char *name, const void *data,
                                     size_t len, kiln_instances_format fmt,
                                     const kiln_instances_spec *spec);
/* One instance from one line of text (`kiln predict --stream`): a JSON list (nested in the
 * row's shape or flat) or comma-separated numbers. x gets the row's values. Messages carry no
 * file name or line (the caller adds them). */
kiln_status kiln_instances_parse_line(const char *line, size_t len, const kiln_instances_spec *spec,
                                      float *x);
void kiln_instances_free(kiln_instances *in); /* empties in (it may be reused) */

/* Whether shape (ndim dims) fits the row (see the top of this file). */
int kiln_instances_fits(const int64_t *dims, int ndim, const kiln_shape *row);

/* The one rule for a batch of instances, shared by `kiln serve` and `kiln predict`: t is
 * [N, ...instance] with N >= 1, and each instance fits the row (kiln_instances_fits: the row's
 * shape, the same once dims of size 1 are dropped, or row-size flat values). Otherwise
 * KILN_ERR_FORMAT with a message that starts with what and names the instance's shape and the
 * row ("instances: each instance has shape [28, 27], but model m's input row is [1, 28, 28] (784
 * values): ..."); model NULL says "the model's". */
kiln_status kiln_instances_check_batch(const char *what, const kiln_shape *t,
                                      const kiln_shape *row, const char *model);

#endif
