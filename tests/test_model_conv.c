/* test_model_conv.c — the convolution and pooling layers of model.layers (src/model/model_conv.c
 * and the schema): conv1d, conv3d, conv2d_transpose, depthwise_conv2d, the 1-D and 3-D pools,
 * ceil_mode, and every form of padding (valid, same, N, d ints, 2 d ints in ONNX order), with the
 * shapes and parameters they make; and the errors a bad padding, kernel or window gives, each
 * with file:line and the key path. */
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
    memset(m, 0, sizeof *m);
    kiln_status st = kiln_config_parse(text, "m.yaml", &c);
    if (st == KILN_OK) st = kiln_config_resolve(c);
    if (st == KILN_OK) st = kiln_model_build(c, m);
    kiln_cfg_free(c);
    return st;
}

/* The shape of layer `name` (without the batch), as "[a, b, ...]". */
static int shape_is(kiln_model *m, const char *name, const char *want) {
    kiln_node *n = kiln_graph_find(m->graph, name);
    if (!n) return fprintf(stderr, "  no node %s\n", name), 0;
    kiln_shape s = kiln_node_shape(n);
    char buf[128];
    kiln_shape_str(&s, buf, sizeof buf);
    if (strcmp(buf, want)) fprintf(stderr, "  %s: %s, want %s\n", name, buf, want);
    return strcmp(buf, want) == 0;
}

static void test_conv1d_and_pools(void) {
    kiln_model m;
    CHECK_OK(build("[2, 16]",
                   "    - conv1d: {filters: 4, kernel: 3, padding: [1, 0], name: c}\n"
                   "    - maxpool1d: {size: 2, ceil_mode: true, name: p}\n"
                   "    - conv1d: {filters: 4, kernel: [3], strides: 2, dilation: 1, padding: same, groups: 2}\n"
                   "    - avgpool1d: {size: 3, strides: 1, padding: 1}\n"
                   "    - flatten\n"
                   "    - dense: {units: 3}\n",
                   &m));
    if (!m.graph) return;
    CHECK(shape_is(&m, "c", "[1, 4, 15]"));    /* 16 + 1 + 0 - 3 + 1 */
    CHECK(shape_is(&m, "p", "[1, 4, 8]"));     /* ceil(14 / 2) + 1 */
    CHECK(shape_is(&m, "c.kernel", "[4, 2, 3]"));
    CHECK(shape_is(&m, "conv1d_1", "[1, 4, 4]"));
    CHECK(shape_is(&m, "conv1d_1.kernel", "[4, 2, 3]"));
    CHECK(shape_is(&m, "average_pooling1d_1", "[1, 4, 4]"));
    kiln_model_free(&m);
}

static void test_conv3d(void) {
    kiln_model m;
    CHECK_OK(build("[1, 4, 6, 6]",
                   "    - conv3d: {filters: 2, kernel: [3, 3, 1], padding: same, activation: relu}\n"
                   "    - maxpool3d: {size: [1, 2, 2]}\n"
                   "    - conv3d: {filters: 3, kernel: 2, padding: [0, 0, 0, 1, 1, 1]}\n"
                   "    - avgpool3d: {size: 2, padding: valid}\n"
                   "    - flatten\n"
                   "    - dense: {units: 3}\n",
                   &m));
    if (!m.graph) return;
    CHECK(shape_is(&m, "conv3d_1", "[1, 2, 4, 6, 6]"));
    CHECK(shape_is(&m, "conv3d_1.kernel", "[2, 1, 3, 3, 1]"));
    CHECK(shape_is(&m, "max_pooling3d_1", "[1, 2, 4, 3, 3]"));
    CHECK(shape_is(&m, "conv3d_2", "[1, 3, 4, 3, 3]"));
    CHECK(shape_is(&m, "average_pooling3d_1", "[1, 3, 2, 1, 1]"));
    kiln_model_free(&m);
}

static void test_conv2d_padding_forms(void) {
    kiln_model m;
    CHECK_OK(build("[1, 8, 8]",
                   "    - conv2d: {filters: 2, kernel: 3, padding: [0, 0, 1, 1], name: onnx}\n"
                   "    - conv2d: {filters: 2, kernel: 3, padding: 1, name: one}\n"
                   "    - conv2d: {filters: 2, kernel: 3, padding: [1, 2], name: per_axis}\n"
                   "    - maxpool2d: {size: 3, strides: 2, padding: [1, 0, 0, 1], ceil_mode: true, name: mp}\n"
                   "    - avgpool2d: {size: 2, padding: 1, name: ap}\n"
                   "    - flatten\n"
                   "    - dense: {units: 3}\n",
                   &m));
    if (!m.graph) return;
    CHECK(shape_is(&m, "onnx", "[1, 2, 7, 7]"));
    CHECK(shape_is(&m, "one", "[1, 2, 7, 7]"));
    CHECK(shape_is(&m, "per_axis", "[1, 2, 7, 9]"));
    CHECK(shape_is(&m, "mp", "[1, 2, 4, 5]")); /* ceil((7 + 1 - 3) / 2) + 1, ceil((9 + 1 - 3) / 2) + 1 */
    CHECK(shape_is(&m, "ap", "[1, 2, 3, 3]"));
    kiln_model_free(&m);
}

static void test_depthwise_and_transpose(void) {
    kiln_model m;
    CHECK_OK(build("[3, 8, 8]",
                   "    - depthwise_conv2d: {kernel: 3, strides: 2, padding: same, depth_multiplier: 2,\n"
                   "                         activation: relu, use_bias: false}\n"
                   "    - conv2d_transpose: {filters: 4, kernel: 3, strides: 2, padding: 1, output_padding: 1}\n"
                   "    - conv2d_transpose: {filters: 2, kernel: [2, 3], strides: [2, 1], padding: same, groups: 2,\n"
                   "                         name: up}\n"
                   "    - flatten\n"
                   "    - dense: {units: 3}\n",
                   &m));
    if (!m.graph) return;
    CHECK(shape_is(&m, "depthwise_conv2d_1", "[1, 6, 4, 4]"));
    CHECK(shape_is(&m, "depthwise_conv2d_1.kernel", "[6, 1, 3, 3]"));
    CHECK(kiln_graph_find(m.graph, "depthwise_conv2d_1.bias") == NULL);
    CHECK(shape_is(&m, "conv2d_transpose_1", "[1, 4, 8, 8]")); /* (4 - 1) 2 + 3 + 1 - 2 */
    CHECK(shape_is(&m, "conv2d_transpose_1.kernel", "[6, 4, 3, 3]"));
    CHECK(shape_is(&m, "up", "[1, 2, 16, 8]"));
    CHECK(shape_is(&m, "up.kernel", "[4, 1, 2, 3]"));
    kiln_model_free(&m);
}

static void expect(const char *input, const char *layers, const char *sub) {
    kiln_model m;
    kiln_status st = build(input, layers, &m);
    CHECK_MSG(st == KILN_ERR_INVALID, "%s: got %s", layers, kiln_status_name(st));
    CHECK_ERR_HAS(sub);
    kiln_model_free(&m);
}

static void test_errors(void) {
    expect("[1, 8, 8]", "    - conv2d: {filters: 2, kernel: 3, padding: [1, 2, 3]}\n",
           "m.yaml:6:39: model.layers[0].conv2d.padding: expected valid, same, an integer, a list of 2 "
           "(one per axis) or of 4 integers (ONNX order: the 2 begins, then the 2 ends); got a list of 3");
    expect("[1, 8, 8]", "    - maxpool2d: {padding: sane}\n",
           "model.layers[0].maxpool2d.padding: expected valid, same, an integer or a list of integers; "
           "got 'sane' (did you mean 'same'?)");
    expect("[1, 8, 8]", "    - conv2d: {filters: 2, kernel: 3, padding: [0, -1]}\n",
           "m.yaml:6:52: model.layers[0].conv2d.padding[1]: -1 is out of range (0 .. 1e+06)");
    expect("[2, 16]", "    - conv1d: {filters: 2, kernel: [3, 3]}\n",
           "m.yaml:6:28: model.layers[0].conv1d.kernel: expected an integer or a list of 1 ([w]); got a list of 2");
    expect("[1, 4, 6, 6]", "    - avgpool3d: {size: [2, 2]}\n",
           "model.layers[0].avgpool3d.size: expected an integer or a list of 3 ([d, h, w]); got a list of 2");
    expect("[2, 16]", "    - maxpool1d: {size: 2, padding: [0, 2]}\n",
           "m.yaml:6:7: model.layers[0].maxpool1d: max_pooling1d: explicit pads 0x2 must be >= 0 and smaller "
           "than the window 2");
    expect("[2, 16]", "    - conv2d: {filters: 2, kernel: 3}\n", "need [batch, channels, height, width]");
    expect("[1, 8, 8]", "    - conv2d_transpose: {filters: 2, kernel: 3, output_padding: 1}\n",
           "model.layers[0].conv2d_transpose: conv2d_transpose_1 (conv2d_transpose): need filters > 0");
    expect("[1, 8, 8]", "    - depthwise_conv2d: {kernel: 3, filters: 2}\n",
           "model.layers[0].depthwise_conv2d: unknown key 'filters'");
    expect("[2, 16]", "    - conv1d: {filters: 2, kernel: 3, output_padding: 1}\n",
           "model.layers[0].conv1d: unknown key 'output_padding'");
}

int main(void) {
    RUN(test_conv1d_and_pools);
    RUN(test_conv3d);
    RUN(test_conv2d_padding_forms);
    RUN(test_depthwise_and_transpose);
    RUN(test_errors);
    return kiln_test_summary();
}
