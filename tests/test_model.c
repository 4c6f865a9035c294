/* test_model.c — model.layers from a config into a graph: sequential stacks, residual joins
 * with name/from, and the errors a config can make (shape chains, unknown names, cycles). */
#include <string.h>

#include "check.h"
#include "kiln/config.h"
#include "kiln/model.h"

static const char *HEAD =
    "data: {source: idx, train: {images: a, labels: b}}\n"
    "loss: softmax_cross_entropy\n"
    "model:\n"
    "  input: [1, 8, 8]\n"
    "  layers:\n";

static kiln_status build(const char *layers, kiln_model *m) {
    char text[4096];
    snprintf(text, sizeof text, "%s%s", HEAD, layers);
    kiln_cfg *c = NULL;
    kiln_status st = kiln_config_parse(text, "m.yaml", &c);
    if (st == KILN_OK) st = kiln_config_resolve(c);
    if (st == KILN_OK) st = kiln_model_build(c, m);
    kiln_cfg_free(c);
    return st;
}

static void test_sequential_cnn(void) {
    kiln_model m;
    CHECK_OK(build("    - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}\n"
                   "    - maxpool2d: {size: 2}\n"
                   "    - flatten\n"
                   "    - dense: {units: 10}\n", &m));
    if (!m.graph) return;
    kiln_shape s = kiln_node_shape(m.output);
    CHECK(s.ndim == 2 && s.dims[1] == 10 && m.n_outputs == 10);
    CHECK(kiln_graph_find(m.graph, "conv2d_1.kernel") && kiln_graph_find(m.graph, "dense_1.bias"));
    CHECK(kiln_node_dtype(m.target) == KILN_I32 && kiln_node_shape(m.target).ndim == 1);
    CHECK(strcmp(kiln_node_op(m.loss), "softmax_cross_entropy") == 0);
    kiln_model_free(&m);
}

static void test_residual_with_names(void) {
    kiln_model m;
    CHECK_OK(build("    - flatten: {name: flat}\n"
                   "    - dense: {units: 16, activation: relu, name: a}\n"
                   "    - dense: {units: 16, name: b}\n"
                   "    - add: {from: [a, b], name: res}\n"
                   "    - concat: {from: [res, flat], axis: 1}\n"
                   "    - dense: {units: 3, name: head}\n", &m));
    if (!m.graph) return;
    CHECK(kiln_graph_find(m.graph, "a.kernel") && kiln_graph_find(m.graph, "head.kernel"));
    CHECK(kiln_graph_find(m.graph, "res") != NULL);
    kiln_shape s = kiln_node_shape(kiln_graph_find(m.graph, "concatenate_1") ? kiln_graph_find(m.graph, "concatenate_1") : m.penultimate);
    CHECK(s.dims[1] == 16 + 64);
    kiln_model_free(&m);
}

static void expect(const char *layers, const char *sub) {
    kiln_model m = {0};
    kiln_status st = build(layers, &m);
    CHECK_MSG(st != KILN_OK, "accepted:\n%s", layers);
    CHECK_MSG(strstr(kiln_last_error(), sub) != NULL, "error '%s' lacks '%s'", kiln_last_error(), sub);
    if (st == KILN_OK) kiln_model_free(&m);
}

static void test_config_errors(void) {
    /* a bad shape chain names the layer's position, its path and the shapes */
    expect("    - flatten\n    - dense: {units: 4}\n    - conv2d: {filters: 2, kernel: 3}\n",
           "m.yaml:8:7: model.layers[2].conv2d: conv2d_1 (conv2d): input dense_1 has shape [1, 4]; need [batch, channels, height, width]");
    expect("    - flatten\n    - dense: {units: 4, name: a}\n    - dense: {units: 5, name: b}\n    - add: {from: [a, b]}\n",
           "model.layers[3].add");
    expect("    - flatten\n    - dense: {units: 4, from: nope}\n", "m.yaml:7:25: model.layers[1].dense.from: unknown layer 'nope'");
    expect("    - flatten: {name: f}\n    - dense: {units: 4, from: g}\n    - dense: {units: 4, name: g}\n",
           "'g' is defined later in the list; a layer may only take earlier layers (this would be a cycle)");
    expect("    - flatten\n    - dense: {units: 4, name: me, from: me}\n", "'me' is this layer itself");
    expect("    - flatten: {name: x}\n    - dense: {units: 4, name: x}\n", "model.layers[1].dense.name: 'x' is already used");
    expect("    - flatten\n    - dense: {units: 4}\n    - add: {from: [dense_1]}\n", "add needs at least two inputs");
    expect("    - flatten\n    - dense: {units: 4, from: [input, input]}\n", "dense takes one input, got 2");
}

int main(void) {
    RUN(test_sequential_cnn);
    RUN(test_residual_with_names);
    RUN(test_config_errors);
    return kiln_test_summary();
}
