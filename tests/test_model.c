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

/* data.augment with mixup: the model gets F32 soft labels [B, classes] and a training loss on
 * them. Mixed one-hot labels give exactly the mixed loss, lambda L(a) + (1 - lambda) L(b) (label
 * smoothing is linear in the target too), and the gradient matches finite differences. */
static void test_mixup_soft_labels(void) {
    const char *text = "seed: 3\n"
                       "data: {source: idx, train: {images: a, labels: b},\n"
                       "       augment: [horizontal_flip, {mixup: {alpha: 0.4}}]}\n"
                       "loss: {softmax_cross_entropy: {label_smoothing: 0.1}}\n"
                       "model: {input: [6], layers: [{dense: {units: 8, activation: tanh}},\n"
                       "                             {dense: {units: 4}}]}\n";
    kiln_cfg *c = NULL;
    kiln_model m = {0};
    CHECK_OK(kiln_config_parse(text, "m.yaml", &c));
    CHECK_OK(kiln_config_resolve(c));
    CHECK_OK(kiln_model_build(c, &m));
    kiln_cfg_free(c);
    if (!m.graph) return;
    CHECK(m.soft_target && m.soft_loss);
    if (!m.soft_loss) return kiln_model_free(&m);
    kiln_shape ts = kiln_node_shape(m.soft_target);
    CHECK(kiln_node_dtype(m.soft_target) == KILN_F32 && ts.ndim == 2 && ts.dims[1] == 4);
    CHECK(kiln_node_dtype(m.target) == KILN_I32); /* evaluation keeps class ids */
    CHECK_OK(kiln_graph_init_params(m.graph));
    kiln_node *outs[2] = {m.loss, m.soft_loss};
    kiln_plan *p = kiln_plan_new(
        m.graph, &(kiln_plan_opts){.outputs = outs, .n_outputs = 2, .loss = m.soft_loss,
                                   .batch = 3, .training = 1});
    CHECK(p != NULL);
    if (!p) return kiln_model_free(&m);
    kiln_test_fill(kiln_plan_data(p, m.input), 18, -1, 1, 4);
    const int32_t a[3] = {0, 3, 2}, b[3] = {1, 3, 0};
    const float lam = 0.3f;
    int32_t *ids = kiln_plan_data(p, m.target);
    float *soft = kiln_plan_data(p, m.soft_target);
    memset(soft, 0, 12 * sizeof *soft);
    for (int r = 0; r < 3; r++) soft[r * 4 + a[r]] += lam, soft[r * 4 + b[r]] += 1 - lam;
    double la, lb;
    memcpy(ids, a, sizeof a);
    CHECK_OK(kiln_plan_forward(p));
    la = *(float *)kiln_plan_data(p, m.loss);
    memcpy(ids, b, sizeof b);
    CHECK_OK(kiln_plan_forward(p));
    lb = *(float *)kiln_plan_data(p, m.loss);
    double mixed = *(float *)kiln_plan_data(p, m.soft_loss);
    CHECK_NEAR(mixed, lam * la + (1 - lam) * lb, 1e-5 * fabs(mixed) + 1e-6);
    CHECK(kiln_test_gradcheck(m.graph, p, m.soft_loss, 1e-3, 1e-3, 3e-3, 100) == 0);
    kiln_plan_free(p);
    kiln_model_free(&m);
}

int main(void) {
    RUN(test_sequential_cnn);
    RUN(test_residual_with_names);
    RUN(test_config_errors);
    RUN(test_mixup_soft_labels);
    return kiln_test_summary();
}
