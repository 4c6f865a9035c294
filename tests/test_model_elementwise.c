/* test_model_elementwise.c — issue 13's elementwise layers from a config: relu6, hard_sigmoid,
 * hard_swish (as layers and as activation:), clip, multiply (squeeze-and-excite with from:),
 * upsampling1d/2d/3d, global max/avg pooling 1d-3d; the shapes and names they build, a training
 * plan's gradient through them, and the errors bad values give (file:line:column, key path). */
#include <string.h>

#include "check.h"
#include "kiln/config.h"
#include "kiln/model.h"

static kiln_status build(const char *input, const char *layers, kiln_model *m) {
    char text[4096];
    snprintf(text, sizeof text,
             "data: {source: idx, train: {images: a, labels: b}}\n"
             "loss: softmax_cross_entropy\n"
             "model:\n"
             "  input: %s\n"
             "  layers:\n%s",
             input, layers);
    kiln_cfg *c = NULL;
    kiln_status st = kiln_config_parse(text, "m.yaml", &c);
    if (st == KILN_OK) st = kiln_config_resolve(c);
    if (st == KILN_OK) st = kiln_model_build(c, m);
    kiln_cfg_free(c);
    return st;
}

static int dims_are(kiln_node *n, int nd, const int64_t *d) {
    if (!n) return 0;
    kiln_shape s = kiln_node_shape(n), w = kiln_shape_make(nd, d);
    return kiln_shape_equal(&s, &w);
}

static void test_image_layers(void) {
    kiln_model m = {0};
    CHECK_OK(build("[3, 6, 6]",
                   "    - conv2d: {filters: 4, kernel: 3, padding: same, activation: hard_swish,"
                   " name: c}\n"
                   "    - relu6\n"
                   "    - hard_sigmoid\n"
                   "    - global_avgpool2d\n"
                   "    - reshape: {shape: [4, 1, 1], name: s}\n"
                   "    - multiply: {from: [c, s], name: se}\n"
                   "    - hard_swish\n"
                   "    - clip: {min: -1}\n"
                   "    - clip: {max: 2}\n"
                   "    - clip: {min: 0.25, max: 1.5, name: clamp}\n"
                   "    - conv2d: {filters: 2, kernel: 1, activation: relu6}\n"
                   "    - upsampling2d: {size: 2, interpolation: bilinear, name: up}\n"
                   "    - upsampling2d: {size: [1, 2]}\n"
                   "    - add: {from: [up_sampling2d_2, up_sampling2d_2]}\n"
                   "    - global_maxpool2d: {name: gmp}\n"
                   "    - dense: {units: 3, activation: hard_sigmoid}\n",
                   &m));
    if (!m.graph) return;
    CHECK(dims_are(kiln_graph_find(m.graph, "se"), 4, (int64_t[]){1, 4, 6, 6}));
    CHECK(dims_are(kiln_graph_find(m.graph, "up"), 4, (int64_t[]){1, 2, 12, 12}));
    CHECK(dims_are(kiln_graph_find(m.graph, "up_sampling2d_2"), 4, (int64_t[]){1, 2, 12, 24}));
    CHECK(dims_are(kiln_graph_find(m.graph, "gmp"), 2, (int64_t[]){1, 2}));
    CHECK(kiln_graph_find(m.graph, "relu6_1") && kiln_graph_find(m.graph, "hard_sigmoid_1"));
    CHECK(kiln_graph_find(m.graph, "clip_2") && kiln_graph_find(m.graph, "clamp"));
    kiln_node *se = kiln_graph_find(m.graph, "se");
    CHECK(se && strcmp(kiln_node_op(se), "multiply") == 0);
    CHECK_OK(kiln_graph_init_params(m.graph));
    kiln_plan *p = kiln_plan_new(m.graph, &(kiln_plan_opts){.outputs = &m.loss, .n_outputs = 1,
                                                            .loss = m.loss, .batch = 2});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) {
        kiln_test_fill(kiln_plan_data(p, m.input), 216, -2, 2, 3);
        int32_t *ids = kiln_plan_data(p, m.target);
        ids[0] = 1, ids[1] = 2;
        CHECK(kiln_test_gradcheck(m.graph, p, m.loss, 1e-3, 2e-3, 1e-2, 30) == 0);
    }
    kiln_plan_free(p);
    kiln_model_free(&m);
}

static void test_1d_and_3d_layers(void) {
    kiln_model m = {0};
    CHECK_OK(build("[2, 5]",
                   "    - upsampling1d: {size: 3, interpolation: linear, name: u}\n"
                   "    - global_maxpool1d: {name: a}\n"
                   "    - global_avgpool1d: {from: u, name: b}\n"
                   "    - concat: {from: [a, b]}\n"
                   "    - dense: {units: 3}\n",
                   &m));
    CHECK(m.graph && dims_are(kiln_graph_find(m.graph, "u"), 3, (int64_t[]){1, 2, 15}));
    CHECK(m.graph && dims_are(kiln_graph_find(m.graph, "b"), 2, (int64_t[]){1, 2}));
    kiln_model_free(&m);
    CHECK_OK(build("[2, 2, 3, 4]",
                   "    - upsampling3d: {size: [1, 2, 3], interpolation: trilinear, name: u}\n"
                   "    - upsampling3d: {name: v}\n"
                   "    - global_maxpool3d: {name: a}\n"
                   "    - global_avgpool3d: {from: u, name: b}\n"
                   "    - multiply: {from: [a, b, a]}\n"
                   "    - dense: {units: 3}\n",
                   &m));
    CHECK(m.graph && dims_are(kiln_graph_find(m.graph, "u"), 5, (int64_t[]){1, 2, 2, 6, 12}));
    CHECK(m.graph && dims_are(kiln_graph_find(m.graph, "v"), 5, (int64_t[]){1, 2, 4, 12, 24}));
    CHECK(m.graph && kiln_graph_find(m.graph, "multiply_1") != NULL);
    kiln_model_free(&m);
}

static void expect(const char *input, const char *layers, const char *sub) {
    kiln_model m = {0};
    kiln_status st = build(input, layers, &m);
    CHECK_MSG(st != KILN_OK, "accepted:\n%s", layers);
    CHECK_MSG(strstr(kiln_last_error(), sub) != NULL, "error '%s' lacks '%s'", kiln_last_error(),
              sub);
    if (st == KILN_OK) kiln_model_free(&m);
}

static void test_config_errors(void) {
    const char *img = "[3, 4, 4]";
    expect(img, "    - clip: {min: low}\n",
           "m.yaml:6:14: model.layers[0].clip.min: expected a number, got 'low'");
    expect(img, "    - clip: {max: .inf}\n", "model.layers[0].clip.max: expected a finite number");
    expect(img, "    - clip: {mni: 1}\n",
           "model.layers[0].clip: unknown key 'mni' (did you mean 'min'?)");
    expect(img, "    - upsampling2d: {size: 0}\n",
           "m.yaml:6:22: model.layers[0].upsampling2d.size: 0 is out of range (1 .. 65536)");
    expect(img, "    - upsampling2d: {interpolation: cubic}\n",
           "model.layers[0].upsampling2d.interpolation: got 'cubic'; expected one of: nearest, "
           "bilinear");
    expect("[2, 5]", "    - upsampling1d: {interpolation: bilinear}\n",
           "expected one of: nearest, linear");
    expect("[1, 2, 2, 2]", "    - upsampling3d: {size: [2, 2]}\n",
           "m.yaml:6:22: model.layers[0].upsampling3d.size: expected an integer 1 .. 65536 or a "
           "list of 3 of them");
    expect("[1, 2, 2, 2]", "    - upsampling3d: {size: big}\n", "upsampling3d.size: expected");
    expect("[1, 2, 2, 2]", "    - upsampling3d: {size: [1, 0, 1]}\n", "upsampling3d.size");
    expect(img, "    - upsampling3d\n",
           "m.yaml:6:7: model.layers[0].upsampling3d: up_sampling3d_1 (upsampling) got "
           "input=[1, 3, 4, 4]: upsampling3d needs an input "
           "[batch, channels, depth, height, width]");
    expect(img, "    - conv2d: {filters: 2, kernel: 3, activation: hard_swsh}\n",
           "got 'hard_swsh' (did you mean 'hard_swish'?); expected one of: none, linear, relu, "
           "leaky_relu, gelu, sigmoid, tanh, relu6, hard_sigmoid, hard_swish");
    expect(img, "    - relu6: {alpha: 1}\n", "model.layers[0].relu6: unknown key 'alpha'");
    expect(img, "    - hard_swish: {name: h}\n    - multiply: {from: [h]}\n",
           "m.yaml:7:7: model.layers[1].multiply: multiply needs at least two inputs in from:");
    expect(img, "    - flatten: {name: f}\n    - multiply: {from: [f, input]}\n",
           "model.layers[1].multiply: multiply_1 (multiply) got f=[1, 48], input=[1, 3, 4, 4]");
    expect(img, "    - global_maxpool3d\n",
           "model.layers[0].global_maxpool3d: global_max_pooling3d_1");
    expect("[7]", "    - global_avgpool1d\n", "[batch, channels, length]");
}

int main(void) {
    RUN(test_image_layers);
    RUN(test_1d_and_3d_layers);
    RUN(test_config_errors);
    return kiln_test_summary();
}
