/* answer.c — the end of a prediction request: its answer body in the request's dialect (TF
 * Serving row or columnar, or Open Inference Protocol v2), its count in the metrics, and the
 * release of its version. Both paths end here: the HTTP worker that ran a job itself (job.c) and
 * the batch thread that ran it in a batch (batcher.c); keeping it apart from job.c is what lets
 * job.c hand jobs to the batcher without the batcher calling back into job.c.
 */
#include <stdio.h>
#include <stdlib.h>

#include "serve/serve_internal.h"

void serve_count(kiln_server *s, const char *model, const char *version, const char *api,
                 int status, const struct timespec *start) {
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    kiln_prom_add(kiln_prom_series_of(s->f_requests,
                                      (const char *[]){model, version, api, code}),
                  1);
    if (start)
        kiln_prom_observe(kiln_prom_series_of(s->f_latency, (const char *[]){model, api}),
                          serve_seconds_since(start));
}

const char *serve_api_name(serve_api api) {
    return api == API_V1 ? "v1_predict" : "v2_infer";
}

static void job_free(serve_job *j) {
    kiln_tj_request_free(&j->req);
    free(j->x_owned);
    free(j->out);
    free(j->probs);
    free(j);
}

/* The answer body for a job whose outputs are computed; *json_len: the JSON's length (less
 * than b's when binary tensor data follows it). */
static kiln_status write_answer(serve_job *j, kiln_sbuf *b, size_t *json_len) {
    served_version *v = j->v;
    kiln_tj_output outs[3];
    int n = 0;
    kiln_shape shape = kiln_servable_output(v->sv, 0)->shape;
    shape.dims[0] = j->rows;
    const char **classes = NULL;
    if (j->want & OUT_LOGITS) outs[n++] = (kiln_tj_output){"output", KILN_TJ_F32, shape, j->out};
    if (j->want & OUT_PROBS)
        outs[n++] = (kiln_tj_output){"probabilities", KILN_TJ_F32, shape, j->probs};
    if (j->want & OUT_CLASSES) {
        if (!(classes = malloc((size_t)j->rows * sizeof *classes)))
            return kiln_error(KILN_ERR_NOMEM, "out of memory");
        int k = (int)v->out_row;
        for (int64_t r = 0; r < j->rows; r++) {
            const float *p = j->probs + r * v->out_row; /* [k] */
            int best = 0;
            if (k == 1) /* one sigmoid unit: class 1 when p > 0.5 */
                best = p[0] > 0.5f;
            else
                for (int c = 1; c < k; c++)
                    if (p[c] > p[best]) best = c;
            const char *name = kiln_servable_class_name(v->sv, best);
            classes[r] = name ? name : "";
        }
        outs[n++] = (kiln_tj_output){"classes", KILN_TJ_BYTES,
                                     kiln_shape_make(1, (int64_t[]){j->rows}), classes};
    }
    kiln_status st;
    static const unsigned bits[3] = {OUT_LOGITS, OUT_PROBS, OUT_CLASSES};
    for (int i = 0, k = 0; i < 3; i++)
        if (j->want & bits[i]) outs[k++].binary = (j->binary & bits[i]) != 0;
    *json_len = 0;
    if (j->api == API_V2)
        st = kiln_tj_write_v2_binary(b, v->model->name, v->version_str, j->req.id, outs, n,
                                     json_len);
    else if (j->req.format == KILN_TJ_TF_ROW)
        st = kiln_tj_write_tf_row(b, outs, n);
    else
        st = kiln_tj_write_tf_columnar(b, outs, n);
    free(classes);
    return st;
}

void serve_job_finish(serve_job *j, kiln_http_response *resp, int err_status, const char *err) {
    kiln_server *s = j->srv;
    if (err_status) {
        kiln_http_json_error(resp, err_status, "%s", err);
    } else {
        kiln_sbuf b = KILN_SBUF_INIT;
        size_t json_len = 0;
        if (write_answer(j, &b, &json_len)) {
            kiln_http_json_error(resp, 500, "%s", kiln_last_error());
        } else {
            if (json_len && json_len < b.len) { /* binary tensor data follows the JSON */
                char n[24];
                snprintf(n, sizeof n, "%zu", json_len);
                resp->content_type = "application/octet-stream";
                kiln_http_add_header(resp, "Inference-Header-Content-Length", n);
            }
            kiln_http_body_sbuf(resp, &b);
        }
        kiln_sbuf_free(&b);
    }
    serve_count(s, j->v->model->name, j->v->version_str, serve_api_name(j->api), resp->status,
                &j->start);
    serve_version_release(j->v);
    job_free(j);
}
