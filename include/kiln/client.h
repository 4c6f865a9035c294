/* kiln/client.h — a client for TF Serving's REST API v1, the API `kiln serve` speaks (and TF
 * Serving itself): model metadata and row-format predictions, over libcurl.
 *
 * A client talks to one model (optionally one version) on one server and keeps one connection
 * open for all its requests (HTTP/1.1 keep-alive over a single curl handle), so a stream of
 * predictions pays for one TCP handshake. One thread at a time may use a client.
 *
 *   GET  URL/v1/models/NAME[/versions/V]/metadata   once, cached: the signature
 *   POST URL/v1/models/NAME[/versions/V]:predict    {"instances": [row, ...]} ->
 *                                                   {"predictions": [...]}
 *
 * Metadata. The "serving_default" signature must have exactly one input (kiln models do); its
 * shape is [-1, ...row]. Outputs are listed in the order the server gives them. kiln servers add
 * "kiln": {"task", "class_names", "preprocessing"} beside "signature_def"; their fields are NULL
 * or 0 when the server is not kiln.
 *
 * Predictions. Rows are sent nested in the input's row shape, each value written as the shortest
 * decimal that reads back as the same float32, so the server sees exactly the caller's floats.
 * Each prediction is either a list (a model with one output: that output's row) or an object
 * {"output name": row, ...}; rows may be nested and are read flat, and NaN / Infinity /
 * -Infinity tokens (which TF Serving writes) are accepted. Entries that are not numeric rows
 * ("classes": "Trouser") are skipped.
 *
 * Errors. A server that cannot be reached, a timeout or a broken connection is KILN_ERR_IO with
 * curl's reason. An HTTP error status is KILN_ERR_NOTFOUND (404), KILN_ERR_INVALID (400) or
 * KILN_ERR_IO (others), with the server's {"error": "..."} text (or the start of its body) and the
 * status in the message: "POST http://127.0.0.1:8501/v1/models/m:predict: HTTP 400:
 * instances[0]: expected 28 values, got 27". A response that is not what the API says is
 * KILN_ERR_FORMAT. kiln_client_http_status tells the last status either way.
 */
#ifndef KILN_CLIENT_H
#define KILN_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"
#include "kiln/tensor.h"

#define KILN_CLIENT_MAX_OUTPUTS  16
#define KILN_CLIENT_MAX_RESPONSE ((size_t)1 << 30) /* bytes of one response body */

typedef struct {
    const char *url;        /* "http://host:8501" ("host:8501" means http); a trailing '/' is ok */
    const char *model;      /* the model's name */
    int64_t version;        /* 0: the version the server picks (its latest) */
    double timeout_seconds; /* per request, connecting included; 0: 60 */
    int raw;                /* 1: a plain JSON client of url for kiln_client_request alone
                               (model and version unused): kiln's MLflow client */
    const char *bearer_token; /* NULL or "": none; else every request carries
                                 "Authorization: Bearer <token>" */
} kiln_client_config;

typedef struct {
    const char *name;  /* the key in the signature's inputs or outputs: "input", "probabilities" */
    const char *dtype; /* "DT_FLOAT", ... */
    kiln_shape shape;  /* dims[0] == -1: the batch */
} kiln_client_tensor;

typedef struct {
    const char *name; /* model_spec.name */
    int64_t version;  /* model_spec.version; 0 when the server did not say */
    kiln_client_tensor input;
    int n_outputs;
    kiln_client_tensor outputs[KILN_CLIENT_MAX_OUTPUTS];
    /* kiln servers only (NULL / 0 otherwise): */
    const char *task;               /* "classification" or "regression" */
    int n_classes;                  /* class names given, 0 when null */
    const char *const *class_names; /* [n_classes] */
} kiln_client_model;

typedef struct kiln_client kiln_client;

/* Checks the configuration and sets up the connection handle (nothing is sent yet). */
kiln_status kiln_client_open(const kiln_client_config *cfg, kiln_client **out);
void kiln_client_free(kiln_client *c); /* closes the connection; NULL is a no-op */

/* The model's metadata: fetched by the first call, then cached (valid until kiln_client_free). */
kiln_status kiln_client_metadata(kiln_client *c, const kiln_client_model **out);
/* The index of an output by name in m->outputs, or -1. */
int kiln_client_output_index(const kiln_client_model *m, const char *name);
/* Values per row of a tensor (its shape without the batch dim; -1 when a dim is unknown,
 * INT64_MAX when the product overflows). */
int64_t kiln_client_row_size(const kiln_client_tensor *t);

/* Sends rows rows of x [rows, input row size] and copies output i of every prediction into
 * outs[i] [rows, output i's row size] (outs has metadata's n_outputs entries; NULL entries, or
 * outs NULL, are not wanted). Fetches the metadata first when needed. */
kiln_status kiln_client_predict(kiln_client *c, const float *x, int64_t rows, float *const *outs);

/* One request to the server (path starts with '/'; body NULL for GET). On KILN_OK (any HTTP
 * status, errors included) *body gets the response body (malloc'd, NUL-terminated; free()) and
 * *status its status code; KILN_ERR_IO when no response came. */
kiln_status kiln_client_request(kiln_client *c, const char *method, const char *path,
                                const char *body, size_t len, int *status, char **resp,
                                size_t *resp_len);
/* The status of the last response (0 when none came). */
int kiln_client_http_status(const kiln_client *c);
/* TCP connections the client has opened so far (1 for any number of requests while the server
 * keeps the connection alive). */
int kiln_client_connections(const kiln_client *c);
/* The base URL requests go to ("http://host:8501/v1/models/NAME[/versions/V]"). */
const char *kiln_client_model_url(const kiln_client *c);

#endif
