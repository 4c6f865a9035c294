/* predict.h — the pieces of `kiln predict` (cmd_predict.c): one way to run a model whether it is
 * in a local export or behind a server (predict_backend.c), and the ways to print what it said
 * (predict_print.c). */
#ifndef KILN_CLI_PREDICT_H
#define KILN_CLI_PREDICT_H

#include <stdint.h>
#include <stdio.h>

#include "kiln/client.h"
#include "kiln/export.h"
#include "kiln/instances.h"
#include "kiln/kafka.h"
#include "kiln/sbuf.h"

/* A model to ask: a servable loaded in-process, or a model on a TF Serving REST server. Both
 * take raw rows (the servable's preprocessing is applied here; a server applies its own) and
 * give the model's "output" rows and, for classifiers, its "probabilities" rows. */
typedef struct {
    kiln_instances_spec spec;       /* the input's row shape and name */
    int64_t out_size;               /* values per row of the output */
    int64_t prob_size;              /* values per row of the probabilities; 0: not a classifier */
    int n_classes;                  /* class names known (0: unnamed) */
    const char *const *class_names; /* [n_classes] */
    int batch;                      /* rows per plan run or request */
    /* in-process */
    kiln_servable *sv;
    kiln_plan *plan;
    float *scratch; /* [batch, input row size]: preprocessed rows */
    /* server */
    kiln_client *cl;
    int out_i, prob_i, n_outputs;
} kiln_cli_predictor;

/* dir: a version folder (it has model.json) or a base folder (its highest complete version, or
 * `version` when not 0). *usage is set when the fault is the caller's (no such folder). */
kiln_status kiln_cli_predictor_open_dir(kiln_cli_predictor *p, const char *dir, int64_t version,
                                        int batch, int *usage);
kiln_status kiln_cli_predictor_open_server(kiln_cli_predictor *p, const kiln_client_config *cfg,
                                           int batch);
/* Runs rows raw rows x [rows, input row size] in pieces of at most p->batch rows: out [rows,
 * out_size], probs [rows, prob_size] (NULL when not a classifier). */
kiln_status kiln_cli_predictor_run(kiln_cli_predictor *p, const float *x, int64_t rows, float *out,
                                   float *probs);
void kiln_cli_predictor_close(kiln_cli_predictor *p);

/* One prediction as a JSON object: {"class", "class_index", "probability", "probabilities"} for
 * classifiers, {"output": [...]} otherwise; "input" first when input is not NULL. */
void kiln_cli_predict_json_one(kiln_sbuf *b, const kiln_cli_predictor *p, const float *out,
                               const float *probs, const char *input);
/* Every prediction: a {"predictions": [...]} document (json) or an aligned table with the top
 * top_k classes (classifiers) or the output values (regressions). */
void kiln_cli_predict_print(FILE *f, const kiln_cli_predictor *p, const kiln_instances *in,
                            const float *out, const float *probs, int json, int top_k);

/* kiln predict --kafka-in (predict_kafka.c): records of in_topic answered into out_topic, keyed
 * like their inputs, until max records (0: no limit) or idle_s seconds without one (0: never). */
typedef struct {
    const char *brokers, *in_topic, *out_topic, *group;
    kiln_kafka_format format;
    int64_t max;
    double idle_s;
} kiln_cli_kafka_opts;
int kiln_cli_predict_kafka(kiln_cli_predictor *p, const kiln_cli_kafka_opts *o);

#endif
