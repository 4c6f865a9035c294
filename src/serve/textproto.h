/* textproto.h — the protocol-buffer text format, as TF Serving's config files use it
 * (--model_config_file, --batching_parameters_file), read into a small tree.
 *
 * Grammar (the part of the text format those files use):
 *   message := field*
 *   field   := NAME ':' scalar | NAME ':'? '{' message '}' | NAME ':'? '<' message '>'
 *   scalar  := a quoted string ('...' or "...", C escapes) | a bare token (number, identifier)
 * Fields may be separated by ',' or ';'; '#' starts a comment to the end of the line. Repeated
 * fields are simply several nodes with one name. The tree does not know the schema: readers
 * walk it and report unknown names themselves (textproto_unknown), with the line.
 */
#ifndef KILN_SERVE_TEXTPROTO_H
#define KILN_SERVE_TEXTPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

typedef struct tp_node {
    char *name;
    char *value;              /* scalar fields: the text (unquoted, unescaped); NULL for messages */
    int quoted;               /* the scalar was a quoted string */
    int line;                 /* where the field's name is, 1-based */
    struct tp_node *children; /* messages: the first field */
    struct tp_node *next;     /* the next field of the same message */
} tp_node;

/* Parses text (len bytes) into a root message. file names the source in errors
 * ("models.config:7: expected '}' ..."). KILN_ERR_FORMAT on a syntax error. */
kiln_status textproto_parse(const char *text, size_t len, const char *file, tp_node **root);
/* Reads a whole file and parses it. */
kiln_status textproto_parse_file(const char *path, tp_node **root);
void textproto_free(tp_node *root);

/* Scalar readers: KILN_ERR_FORMAT naming file:line and the field when n is not a scalar of
 * that kind (integers within [lo, hi]). */
kiln_status textproto_int(const tp_node *n, const char *file, int64_t lo, int64_t hi,
                          int64_t *out);
kiln_status textproto_string(const tp_node *n, const char *file, const char **out);
/* "file:line: unknown field 'x' in <where>" (KILN_ERR_FORMAT). */
kiln_status textproto_unknown(const tp_node *n, const char *file, const char *where);
/* A message field: KILN_ERR_FORMAT when n is a scalar. */
kiln_status textproto_message(const tp_node *n, const char *file);

#endif
