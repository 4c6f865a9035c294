/* test_onnx_export.c — model.onnx (kiln_onnx_export, export with src.onnx) against independent
 * readers: ONNX Runtime (npm onnxruntime-node, tests/oracles/onnx_run.js) runs it, python3-onnx
 * 1.12 (tests/oracles/onnx_check.py) checks it with full shape inference.
 *
 * A round trip loads the exported version folder with kiln_servable_load, runs it on fixed
 * inputs at batch 1 and batch 5 (the ONNX batch is symbolic), runs model.onnx in ONNX Runtime on
 * the same inputs, and compares both outputs ("output" and "probabilities") within 1e-5 of the
 * largest |value|; then onnx_check.py must accept the file and derive model.json's shapes.
 *
 *   test_onnx_export                      the built-in cases below
 *   test_onnx_export --config A.yaml ...  each config's model (random weights) round-trips
 *                                         (ctest: tests/onnx/export_resnet18.yaml and
 *                                         export_mobilenet_v2.yaml, kiln's own backbones)
 *   test_onnx_export --version-dir DIR    an exported version folder round-trips (the CLI test
 *                                         uses it on trained runs)
 * Built-in: an MLP, a CNN, a residual CNN with batch norm, concat, average pooling, dropout,
 * GELU and layer norm; every other op and variant (dense on 3-D inputs as MatMul + Add, conv with
 * stride, dilation, groups and odd "same" pads, pools with "same", batch and layer norm without
 * scale or center, reshape, each activation, softmax, sigmoid probabilities; issue 13's ops:
 * fused relu6 / hard_swish / hard_sigmoid, depthwise and transposed convs, asymmetric pads,
 * ceil_mode, upsampling, global max pooling, adaptive average pooling, clip, broadcasting add and
 * multiply); 1-D and 3-D models of the same kinds; a regression whose last layer is dropout
 * (the output is an Identity) and whose inner layer is named "output".
 * Errors: an op with no ONNX form fails the export naming the layer and op, with no version and
 * no temporary folder left; the same op off the output's path does not matter.
 */
#include <dirent.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "graph/graph_internal.h"
#include "kiln/export.h"

static char root[] = "/tmp/kiln-test-onnx-XXXXXX";
static const char *src_dir = ".";

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static const char *at(const char *fmt, ...) {
    static char bufs[8][2048];
    static int k;
    char *b = bufs[k++ % 8];
    int n = snprintf(b, sizeof bufs[0], "%s/", root);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof bufs[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static int write_bin(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(v, sizeof *v, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* n floats from path: 1 when the file holds exactly that many. */
static int read_bin(const char *path, float *v, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t got = fread(v, sizeof *v, n, f);
    int at_end = fgetc(f) == EOF;
    fclose(f);
    return got == n && at_end;
}

/* max |a - b| <= 1e-5 * max |a| (and not NaN). */
static int close_to(const char *what, int batch, const float *a, const float *b, size_t n) {
    float big = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        big = fabsf(a[i]) > big ? fabsf(a[i]) : big;
        diff = fabsf(d) > diff || d != d ? fabsf(d) : diff;
    }
    int ok = diff <= 1e-5f * (big > 0 ? big : 1);
    if (!ok)
        fprintf(stderr, "  %s at batch %d: max |kiln - onnxruntime| = %g, max |kiln| = %g\n",
                what, batch, diff, big);
    return ok;
}

/* The version folder vdir (with model.onnx) run by kiln and by ONNX Runtime; work: a scratch
 * folder. Returns 1 when every check passed (CHECKs report what did not). */
static int roundtrip(const char *vdir, const char *work) {
    int before = kiln_test_failed_now;
    kiln_test_failed_now = 0;
    char cmd[8192], path[2200];
    kiln_servable *s = NULL;
    CHECK_OK(kiln_servable_load(vdir, &s));
    if (!s) return 0;
    const kiln_servable_tensor *in = kiln_servable_input(s, 0);
    int64_t row = kiln_servable_row_size(in),
            orow = kiln_servable_row_size(kiln_servable_output(s, 0));
    int has_prob = kiln_servable_output_count(s) == 2;
    const int batches[2] = {1, 5};
    for (int bi = 0; bi < 2; bi++) {
        int B = batches[bi];
        float *x = malloc((size_t)(B * row) * sizeof *x), *out = malloc((size_t)(B * orow) * 4),
              *prob = malloc((size_t)(B * orow) * 4), *got = malloc((size_t)(B * orow) * 4);
        kiln_test_fill(x, (size_t)(B * row), -2, 2, 1000 + (uint64_t)B);
        kiln_plan *p = kiln_servable_plan(s, B);
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        if (p) CHECK_OK(kiln_servable_predict(s, p, x, B, out, has_prob ? prob : NULL));
        snprintf(path, sizeof path, "%s/x.bin", work);
        CHECK(write_bin(path, x, (size_t)(B * row)));
        int n = snprintf(cmd, sizeof cmd,
                         "node '%s/tests/oracles/onnx_run.js' '%s/model.onnx' '%s' %d", src_dir,
                         vdir, path, B);
        for (int d = 1; d < in->shape.ndim; d++)
            n += snprintf(cmd + n, sizeof cmd - (size_t)n, ",%lld", (long long)in->shape.dims[d]);
        snprintf(cmd + n, sizeof cmd - (size_t)n, " '%s/ort_'", work);
        int rc = system(cmd);
        CHECK_MSG(rc == 0, "%s exited %d", cmd, rc);
        snprintf(path, sizeof path, "%s/ort_output.bin", work);
        CHECK_MSG(read_bin(path, got, (size_t)(B * orow)), "%s: not %lld floats", path,
                  (long long)(B * orow));
        CHECK(close_to("output", B, out, got, (size_t)(B * orow)));
        if (B > 1) { /* a comparison of constants would prove little: the rows must differ */
            int varies = 0;
            for (int64_t j = orow; j < B * orow && !varies; j++) varies = out[j] != out[j % orow];
            CHECK_MSG(varies, "%s: kiln's output is the same for every input", vdir);
        }
        snprintf(path, sizeof path, "%s/ort_probabilities.bin", work);
        CHECK(exists(path) == has_prob);
        if (has_prob) {
            CHECK_MSG(read_bin(path, got, (size_t)(B * orow)), "%s", path);
            CHECK(close_to("probabilities", B, prob, got, (size_t)(B * orow)));
        }
        /* the session's signature: one input "input", the outputs of model.json in order */
        snprintf(path, sizeof path, "%s/ort_names.txt", work);
        size_t len = 0;
        char *names = NULL;
        CHECK_OK(kiln_file_read_all(path, (void **)&names, &len, 1 << 16));
        char want[256];
        snprintf(want, sizeof want, "input input\noutput output %d,%lld\n%s", B, (long long)orow,
                 has_prob ? "output probabilities " : "");
        CHECK_MSG(names && !strncmp(names, want, strlen(want)), "names: %s", names ? names : "");
        kiln_free(names);
        for (int k = 0; k < 3; k++) {
            static const char *const files[] = {"x.bin", "ort_output.bin", "ort_probabilities.bin"};
            snprintf(path, sizeof path, "%s/%s", work, files[k]);
            remove(path);
        }
        free(x), free(out), free(prob), free(got);
    }
    kiln_servable_free(s);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/oracles/onnx_check.py' '%s'", src_dir,
             vdir);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s exited %d", cmd, rc);
    int ok = !kiln_test_failed_now;
    kiln_test_failed_now |= before;
    return ok;
}

/* ---- models from config text ---- */

static kiln_status build_only(const char *yaml, const char *name, kiln_cfg **cfg,
                              kiln_model *m) {
    memset(m, 0, sizeof *m);
    *cfg = NULL;
    kiln_status st = kiln_config_parse(yaml, name, cfg);
    if (!st) st = kiln_config_resolve(*cfg);
    if (!st) st = kiln_model_build(*cfg, m);
    return st;
}

static kiln_status build(const char *yaml, const char *name, kiln_cfg **cfg, kiln_model *m) {
    kiln_status st = build_only(yaml, name, cfg, m);
    return st ? st : kiln_graph_init_params(m->graph);
}

/* Random weights; moving variances in [0.5, 2) so the statistics matter. */
static void randomize(kiln_graph *g) {
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        float *w = kiln_graph_params(g) + pi->offset;
        if (strstr(pi->name, "moving_variance"))
            kiln_test_fill(w, pi->numel, 0.5f, 2.0f, 50 + (uint64_t)i);
        else
            kiln_test_fill(w, pi->numel, -0.5f, 0.5f, 50 + (uint64_t)i);
    }
}

/* Exports the config's model (random weights) with model.onnx into base and round-trips it. */
static void export_and_roundtrip(const char *yaml, const char *name, const char *base) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    kiln_status st = build(yaml, name, &cfg, &m);
    CHECK_MSG(st == KILN_OK, "%s: %s", name, kiln_last_error());
    if (!st) {
        randomize(m.graph);
        kiln_export_source src = {.model = &m, .cfg = cfg, .onnx = 1,
                                  .preprocessing = {.scale = 1.0f / 255}};
        int64_t v = 0;
        CHECK_OK(kiln_export_graph(&src, base, 0, &v));
        char vdir[2100], work[2100];
        snprintf(vdir, sizeof vdir, "%s/%lld", base, (long long)v);
        snprintf(work, sizeof work, "%s/work", base);
        mkdir(work, 0777);
        CHECK(exists(vdir) && exists(work));
        char p[2200];
        snprintf(p, sizeof p, "%s/model.onnx", vdir);
        CHECK(exists(p));
        /* model.json says the version has model.onnx */
        snprintf(p, sizeof p, "%s/model.json", vdir);
        char *json = NULL;
        size_t len = 0;
        CHECK_OK(kiln_file_read_all(p, (void **)&json, &len, 1 << 24));
        CHECK(json && strstr(json, "\"onnx\": {") && strstr(json, "\"file\": \"model.onnx\"") &&
              strstr(json, "\"opset\": 17"));
        kiln_free(json);
        CHECK_MSG(roundtrip(vdir, work), "%s: round trip failed", name);
    }
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

#define HEAD(input, loss)                                                                          \
    "experiment: onnx-test\nseed: 3\ndata: {source: npy, train: {x: a.npy, y: b.npy}}\n"          \
    "loss: " loss "\nmodel:\n  input: " input "\n  layers:\n"

static void test_mlp(void) {
    export_and_roundtrip(HEAD("[1, 28, 28]", "softmax_cross_entropy")
                         "    - flatten\n"
                         "    - dense: {units: 64, activation: relu}\n"
                         "    - dense: {units: 32, activation: relu}\n"
                         "    - dense: {units: 10}\n",
                         "mlp.yaml", at("mlp"));
}

static void test_cnn(void) {
    export_and_roundtrip(HEAD("[1, 28, 28]", "softmax_cross_entropy")
                         "    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}\n"
                         "    - maxpool2d: {size: 2}\n"
                         "    - conv2d: {filters: 16, kernel: 3, padding: same, activation: relu}\n"
                         "    - maxpool2d: {size: 2}\n"
                         "    - flatten\n"
                         "    - dense: {units: 32, activation: relu}\n"
                         "    - dense: {units: 10}\n",
                         "cnn.yaml", at("cnn"));
}

/* Residual adds, batch norm with its moving statistics, concat of branches (from:). */
static void test_residual_batchnorm_concat(void) {
    export_and_roundtrip(HEAD("[3, 10, 10]", "softmax_cross_entropy")
                         "    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu,\n"
                         "               name: c1}\n"
                         "    - conv2d: {filters: 8, kernel: 3, padding: same, name: c2}\n"
                         "    - batchnorm: {name: bn1}\n"
                         "    - relu\n"
                         "    - maxpool2d: {size: 2, name: p1}\n"
                         "    - conv2d: {filters: 8, kernel: 3, padding: same, name: c3}\n"
                         "    - batchnorm: {name: bn2}\n"
                         "    - add: {from: [bn2, p1], name: res}\n"
                         "    - conv2d: {filters: 4, kernel: 1, name: side, from: res}\n"
                         "    - concat: {from: [res, side], axis: 1}\n"
                         "    - avgpool2d: {size: 5}\n"
                         "    - flatten\n"
                         "    - dropout: {rate: 0.3}\n"
                         "    - dense: {units: 16, activation: gelu}\n"
                         "    - layernorm\n"
                         "    - dense: {units: 5}\n",
                         "residual.yaml", at("residual"));
}

/* Every other op and variant kiln maps, each on a branch of its own from the input, all
 * flattened and concatenated into the output, so no later op can squash an error away; sigmoid
 * probabilities. */
static void test_every_op(void) {
    export_and_roundtrip(
        HEAD("[4, 9, 7]", "binary_cross_entropy")
        "    - conv2d: {filters: 6, kernel: [3, 2], strides: 2, dilation: [1, 2], padding: same,\n"
        "               groups: 2, activation: leaky_relu, from: input}\n"
        "    - flatten: {name: f_conv}\n"
        "    - conv2d: {filters: 4, kernel: 2, activation: sigmoid, use_bias: false, from: input}\n"
        "    - flatten: {name: f_conv_nobias}\n"
        "    - conv2d: {filters: 3, kernel: 4, strides: [2, 3], padding: same, activation: gelu,\n"
        "               from: input}\n"
        "    - flatten: {name: f_conv_gelu}\n"
        "    - batchnorm: {scale: false, center: false, epsilon: 0.01, from: input}\n"
        "    - flatten: {name: f_bn}\n"
        "    - maxpool2d: {size: 3, strides: 2, padding: same, from: input}\n"
        "    - flatten: {name: f_max}\n"
        "    - avgpool2d: {size: [2, 3], strides: 1, padding: same, from: input}\n"
        "    - flatten: {name: f_avg}\n"
        "    - avgpool2d: {size: 2, from: input}\n"
        "    - flatten: {name: f_avg_valid}\n"
        "    - global_avgpool2d: {from: input, name: f_gap}\n"
        "    - reshape: {shape: [4, -1], from: input}\n"
        "    - dense: {units: 5, activation: tanh, name: d3}\n"
        "    - layernorm: {scale: false, center: false}\n"
        "    - flatten: {name: f_ln_plain}\n"
        "    - dense: {units: 4, use_bias: false, activation: gelu, from: d3}\n"
        "    - layernorm: {epsilon: 0.001}\n"
        "    - flatten: {name: f_ln}\n"
        "    - flatten: {from: input}\n"
        "    - dense: {units: 12, name: v}\n"
        "    - leaky_relu: {alpha: 0.2, from: v, name: a_leaky}\n"
        "    - gelu: {from: v, name: a_gelu}\n"
        "    - tanh: {from: v, name: a_tanh}\n"
        "    - sigmoid: {from: v, name: a_sigmoid}\n"
        "    - activation: {activation: relu, from: v, name: a_relu}\n"
        "    - softmax: {from: v, name: a_softmax}\n"
        "    - dense: {units: 6, use_bias: false, activation: leaky_relu, from: v, name: d_nb}\n"
        /* issue 13's ops: fused relu6 / hard_swish / hard_sigmoid, asymmetric pads */
        "    - conv2d: {filters: 3, kernel: [2, 3], padding: [0, 1, 1, 2], activation: relu6,\n"
        "               from: input}\n"
        "    - flatten: {name: f_conv_asym}\n"
        "    - conv2d: {filters: 3, kernel: 3, padding: 1, activation: hard_swish, from: input}\n"
        "    - flatten: {name: f_conv_hswish}\n"
        "    - conv2d: {filters: 3, kernel: 1, activation: hard_sigmoid, from: input}\n"
        "    - flatten: {name: f_conv_hsig}\n"
        "    - depthwise_conv2d: {kernel: 3, depth_multiplier: 2, strides: 2, padding: same,\n"
        "                         activation: relu6, from: input}\n"
        "    - flatten: {name: f_dw}\n"
        "    - conv2d_transpose: {filters: 6, kernel: [3, 2], strides: 2, dilation: [1, 2],\n"
        "                         output_padding: 1, groups: 2, activation: tanh, from: input}\n"
        "    - flatten: {name: f_convt}\n"
        /* "same" with stride > window: kiln's pad after is negative (ONNX: output_padding) */
        "    - conv2d_transpose: {filters: 3, kernel: 2, strides: 3, padding: same,\n"
        "                         use_bias: false, from: input}\n"
        "    - flatten: {name: f_convt_same}\n"
        "    - conv2d_transpose: {filters: 2, kernel: 3, strides: [2, 1], padding: [1, 0, 0, 2],\n"
        "                         activation: hard_swish, from: input}\n"
        "    - flatten: {name: f_convt_asym}\n"
        "    - maxpool2d: {size: 3, strides: 2, padding: [1, 0, 0, 1], ceil_mode: true,\n"
        "                  from: input}\n"
        "    - flatten: {name: f_max_ceil}\n"
        "    - avgpool2d: {size: 2, ceil_mode: true, from: input}\n"
        "    - flatten: {name: f_avg_ceil}\n"
        "    - avgpool2d: {size: 3, strides: 2, padding: 1, ceil_mode: true, from: input}\n"
        "    - flatten: {name: f_avg_ceil_pad}\n"
        "    - avgpool2d: {size: [2, 3], strides: [1, 2], padding: [1, 0, 0, 2], from: input}\n"
        "    - flatten: {name: f_avg_asym}\n"
        "    - global_maxpool2d: {from: input, name: f_gmp}\n"
        "    - upsampling2d: {size: [2, 3], from: input}\n"
        "    - flatten: {name: f_up_nearest}\n"
        "    - upsampling2d: {size: 2, interpolation: bilinear, from: input, name: up_bl}\n"
        "    - flatten: {name: f_up_bilinear}\n"
        "    - adaptive_avgpool2d: {size: [9, 7], from: up_bl}\n"
        "    - flatten: {name: f_adaptive}\n"
        /* squeeze-and-excite broadcasting: [B, 4, 1, 1] against [B, 4, 9, 7] */
        "    - global_avgpool2d: {from: input}\n"
        "    - reshape: {shape: [4, 1, 1], name: se}\n"
        "    - multiply: {from: [input, se]}\n"
        "    - flatten: {name: f_mul_bcast}\n"
        "    - add: {from: [se, input]}\n"
        "    - flatten: {name: f_add_bcast}\n"
        "    - adaptive_avgpool2d: {size: [2, 3], from: se}\n"
        "    - flatten: {name: f_adaptive_rep}\n"
        "    - relu6: {from: v, name: a_relu6}\n"
        "    - hard_swish: {from: v, name: a_hswish}\n"
        "    - hard_sigmoid: {from: v, name: a_hsig}\n"
        "    - clip: {min: -0.3, max: 0.4, from: v, name: a_clip}\n"
        "    - clip: {max: 0.2, from: v, name: a_clip_max}\n"
        "    - clip: {min: 0.1, from: v, name: a_clip_min}\n"
        "    - clip: {from: v, name: a_clip_none}\n"
        "    - multiply: {from: [v, a_tanh, a_sigmoid], name: a_mul}\n"
        "    - dense: {units: 5, activation: hard_sigmoid, from: v, name: d_hsig}\n"
        "    - dense: {units: 5, activation: relu6, from: v, name: d_relu6}\n"
        "    - concat: {from: [f_conv, f_conv_nobias, f_conv_gelu, f_bn, f_max, f_avg,\n"
        "                      f_avg_valid, f_gap, f_ln_plain, f_ln, a_leaky, a_gelu, a_tanh,\n"
        "                      a_sigmoid, a_relu, a_softmax, d_nb, v, f_conv_asym,\n"
        "                      f_conv_hswish, f_conv_hsig, f_dw, f_convt, f_convt_same,\n"
        "                      f_convt_asym, f_max_ceil, f_avg_ceil, f_avg_ceil_pad, f_avg_asym,\n"
        "                      f_gmp, f_up_nearest, f_up_bilinear, f_adaptive, f_mul_bcast,\n"
        "                      f_add_bcast, f_adaptive_rep, a_relu6, a_hswish, a_hsig, a_clip,\n"
        "                      a_clip_max, a_clip_min, a_clip_none, a_mul, d_hsig, d_relu6]}\n",
        "every_op.yaml", at("every_op"));
}

/* 1-D signals: conv1d (dilated "same", grouped with asymmetric pads), 1-D pools with pads and
 * ceil_mode, upsampling (nearest, linear), global pools, broadcasting multiply. */
static void test_1d(void) {
    export_and_roundtrip(
        HEAD("[3, 20]", "binary_cross_entropy")
        "    - conv1d: {filters: 4, kernel: 3, strides: 2, dilation: 2, padding: same,\n"
        "               activation: hard_swish, from: input}\n"
        "    - flatten: {name: f_c}\n"
        "    - conv1d: {filters: 6, kernel: 2, padding: [1, 2], groups: 3, activation: relu6,\n"
        "               from: input}\n"
        "    - flatten: {name: f_c_asym}\n"
        "    - maxpool1d: {size: 3, strides: 2, ceil_mode: true, from: input}\n"
        "    - flatten: {name: f_max}\n"
        "    - avgpool1d: {size: 4, strides: 3, padding: [1, 2], from: input}\n"
        "    - flatten: {name: f_avg}\n"
        "    - avgpool1d: {size: 3, strides: 2, padding: 1, ceil_mode: true, from: input}\n"
        "    - flatten: {name: f_avg_ceil}\n"
        "    - upsampling1d: {size: 3, from: input}\n"
        "    - flatten: {name: f_up}\n"
        "    - upsampling1d: {size: 2, interpolation: linear, from: input}\n"
        "    - flatten: {name: f_up_linear}\n"
        "    - global_maxpool1d: {from: input, name: f_gmp}\n"
        "    - global_avgpool1d: {from: input, name: f_gap}\n"
        "    - reshape: {shape: [3, 1], name: se}\n"
        "    - multiply: {from: [input, se]}\n"
        "    - flatten: {name: f_mul}\n"
        "    - concat: {from: [f_c, f_c_asym, f_max, f_avg, f_avg_ceil, f_up, f_up_linear,\n"
        "                      f_gmp, f_gap, f_mul]}\n",
        "conv1d.yaml", at("conv1d"));
}

/* 3-D volumes: conv3d ("same" with strides, dilated and grouped with asymmetric pads), 3-D
 * pools, upsampling (nearest, trilinear), global pools, broadcasting add. */
static void test_3d(void) {
    export_and_roundtrip(
        HEAD("[2, 6, 7, 5]", "binary_cross_entropy")
        "    - conv3d: {filters: 4, kernel: [3, 2, 3], strides: [1, 2, 1], padding: same,\n"
        "               activation: relu6, from: input}\n"
        "    - flatten: {name: f_c}\n"
        "    - conv3d: {filters: 4, kernel: 2, dilation: [2, 1, 1], groups: 2,\n"
        "               padding: [0, 1, 0, 1, 0, 1], activation: hard_sigmoid, from: input}\n"
        "    - flatten: {name: f_c_asym}\n"
        "    - maxpool3d: {size: [2, 3, 2], strides: 2, ceil_mode: true, from: input}\n"
        "    - flatten: {name: f_max}\n"
        "    - avgpool3d: {size: 3, strides: [1, 2, 2], padding: 1, from: input}\n"
        "    - flatten: {name: f_avg}\n"
        "    - avgpool3d: {size: 2, ceil_mode: true, from: input}\n"
        "    - flatten: {name: f_avg_ceil}\n"
        "    - upsampling3d: {size: [1, 2, 3], from: input}\n"
        "    - flatten: {name: f_up}\n"
        "    - upsampling3d: {size: 2, interpolation: trilinear, from: input}\n"
        "    - flatten: {name: f_up_linear}\n"
        "    - global_maxpool3d: {from: input, name: f_gmp}\n"
        "    - global_avgpool3d: {from: input, name: f_gap}\n"
        "    - reshape: {shape: [2, 1, 1, 1], name: se}\n"
        "    - add: {from: [input, se]}\n"
        "    - flatten: {name: f_add}\n"
        "    - concat: {from: [f_c, f_c_asym, f_max, f_avg, f_avg_ceil, f_up, f_up_linear,\n"
        "                      f_gmp, f_gap, f_add]}\n",
        "conv3d.yaml", at("conv3d"));
}

/* A regression (no probabilities) ending in dropout, with a layer named "output" inside. */
static void test_regression_dropout_last(void) {
    export_and_roundtrip("experiment: onnx-reg\nseed: 4\n"
                         "data: {source: npy, task: regression, train: {x: a.npy, y: b.npy}}\n"
                         "loss: mse\nmodel:\n  input: [6]\n  layers:\n"
                         "    - dense: {units: 8, activation: relu, name: output}\n"
                         "    - dense: {units: 2, name: probabilities}\n"
                         "    - dropout: {rate: 0.5}\n",
                         "regression.yaml", at("regression"));
}

/* ---- errors ---- */

static kiln_status mystery_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                 kiln_dtype *dt) {
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}
static const kiln_op mystery = {.name = "mystery", .infer = mystery_infer};

static void test_unknown_op(void) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build_only("experiment: u\ndata: {source: npy, task: regression, train: {x: a, "
                        "y: b}}\nloss: mse\nmodel:\n  input: [5]\n  layers:\n"
                        "    - dense: {units: 3}\n",
                        "u.yaml", &cfg, &m));
    if (!m.graph) return kiln_cfg_free(cfg);
    kiln_node *out = m.output;
    kiln_node *odd = kiln_graph_add_op(m.graph, &mystery, &out, 1, NULL, 0, "weird_layer");
    CHECK(odd != NULL);
    CHECK_OK(kiln_graph_init_params(m.graph));
    /* off the output's path it does not matter */
    kiln_export_source src = {.model = &m, .cfg = cfg, .onnx = 1};
    CHECK_OK(kiln_export_graph(&src, at("unknown_ok"), 0, NULL));
    CHECK(exists(at("unknown_ok/1/model.onnx")));
    /* on it, the export fails naming the layer and op, and writes nothing */
    m.output = odd;
    kiln_status st = kiln_export_graph(&src, at("unknown"), 0, NULL);
    CHECK(st == KILN_ERR_FORMAT);
    CHECK_MSG(strstr(kiln_last_error(), "layer 'weird_layer' (op mystery)") &&
                  strstr(kiln_last_error(), "ONNX"),
              "%s", kiln_last_error());
    CHECK(!exists(at("unknown/1")) && entries(at("unknown")) <= 0);
    /* the kiln format alone still exports it (ONNX was not asked for) */
    src.onnx = 0;
    m.output = out;
    CHECK_OK(kiln_export_graph(&src, at("unknown"), 0, NULL));
    CHECK(exists(at("unknown/1/model.json")) && !exists(at("unknown/1/model.onnx")));
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* The serialized model directly: names of the signature, no initializer for unused parameters. */
static void test_bytes(void) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(HEAD("[5]", "softmax_cross_entropy") "    - dense: {units: 3}\n", "b.yaml",
                   &cfg, &m));
    if (!m.graph) return kiln_cfg_free(cfg);
    void *bytes = NULL;
    size_t len = 0;
    kiln_onnx_opts o = {.name = "tiny", .probabilities = "softmax"};
    CHECK_OK(kiln_onnx_export(&m, &o, &bytes, &len));
    CHECK(bytes && len > 60);
    /* the kernel's 15 floats are in it as raw data, byte for byte */
    const kiln_node *k = kiln_graph_find(m.graph, "dense_1.kernel");
    CHECK(k != NULL);
    if (k && bytes) {
        const float *w = kiln_graph_params(m.graph) +
                         kiln_graph_param_info(m.graph, k->param_index)->offset;
        CHECK(memmem(bytes, len, w, 15 * sizeof *w) != NULL);
    }
    CHECK(bytes && memmem(bytes, len, "probabilities", 13) && memmem(bytes, len, "batch", 5));
    free(bytes);
    o.probabilities = "relu";
    CHECK(kiln_onnx_export(&m, &o, &bytes, &len) == KILN_ERR_INVALID && bytes == NULL);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

static int g_argc;
static char **g_argv;

static void test_version_dir(void) {
    CHECK_MSG(roundtrip(g_argv[2], root), "%s: round trip failed", g_argv[2]);
}

static void test_configs(void) {
    for (int i = 2; i < g_argc; i++) {
        void *text = NULL;
        size_t len = 0;
        CHECK_OK(kiln_file_read_all(g_argv[i], &text, &len, 1 << 24));
        if (text) export_and_roundtrip(text, g_argv[i], at("config%d", i - 1));
        kiln_free(text);
    }
}

int main(int argc, char **argv) {
    if (getenv("KILN_SOURCE_DIR")) src_dir = getenv("KILN_SOURCE_DIR");
    if (!mkdtemp(root)) return perror("mkdtemp"), 1;
    g_argc = argc, g_argv = argv;
    if (argc > 2 && !strcmp(argv[1], "--version-dir")) {
        RUN(test_version_dir);
    } else if (argc > 2 && !strcmp(argv[1], "--config")) {
        RUN(test_configs);
    } else if (argc > 1) {
        fprintf(stderr, "usage: test_onnx_export [--version-dir DIR | --config A.yaml ...]\n");
        return 2;
    } else {
        RUN(test_mlp);
        RUN(test_cnn);
        RUN(test_residual_batchnorm_concat);
        RUN(test_every_op);
        RUN(test_1d);
        RUN(test_3d);
        RUN(test_regression_dropout_last);
        RUN(test_unknown_op);
        RUN(test_bytes);
    }
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return kiln_test_summary();
}
