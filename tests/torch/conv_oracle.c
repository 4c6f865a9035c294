/* conv_oracle.c — runs one kiln convolution or pooling layer for tests/torch/conv_torch.py, which
 * compares it with PyTorch (the same layer in torch.nn.functional).
 *
 *   kiln_conv_oracle KIND ND B C F in[ND] k[ND] s[ND] d[ND] pads[2 ND] op[ND] groups ceil DIR
 *
 * KIND: conv, transpose, depthwise (F = depth multiplier), maxpool, avgpool. pads are ONNX order
 * (begins, then ends). DIR holds x.bin, w.bin, b.bin (convs) and gy.bin, raw float32 in PyTorch's
 * layouts (which are kiln's); this writes y.bin, and after a backward pass with dL/dy = gy,
 * dx.bin, dw.bin and db.bin. Exit status 1 with a message when kiln refuses the layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"

static int io(const char *dir, const char *name, void *p, size_t n, int write) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, write ? "wb" : "rb");
    size_t got = f ? (write ? fwrite(p, 4, n, f) : fread(p, 4, n, f)) : 0;
    if (f) fclose(f);
    if (got != n) fprintf(stderr, "conv_oracle: %s %s: %zu of %zu floats\n", write ? "writing" : "reading", path, got, n);
    return got == n ? 0 : -1;
}

static size_t numel(kiln_plan *p, kiln_node *n) {
    kiln_shape s = kiln_plan_shape(p, n);
    return (size_t)kiln_shape_numel(&s);
}

int main(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "usage: see conv_oracle.c\n"), 2;
    const char *kind = argv[1];
    int nd = atoi(argv[2]), a = 3;
    if (nd < 1 || nd > 3 || argc != 3 + 3 + 7 * nd + 2 + 1) return fprintf(stderr, "conv_oracle: bad arguments\n"), 2;
    int B = atoi(argv[a++]), C = atoi(argv[a++]), F = atoi(argv[a++]), in[3], k[3], s[3], d[3], pb[3], pe[3], op[3];
    for (int i = 0; i < nd; i++) in[i] = atoi(argv[a++]);
    for (int i = 0; i < nd; i++) k[i] = atoi(argv[a++]);
    for (int i = 0; i < nd; i++) s[i] = atoi(argv[a++]);
    for (int i = 0; i < nd; i++) d[i] = atoi(argv[a++]);
    for (int i = 0; i < nd; i++) pb[i] = atoi(argv[a++]);
    for (int i = 0; i < nd; i++) pe[i] = atoi(argv[a++]);
    for (int i = 0; i < nd; i++) op[i] = atoi(argv[a++]);
    int groups = atoi(argv[a++]), ceil = atoi(argv[a++]);
    const char *dir = argv[a];
    kiln_graph *g = kiln_graph_new(1);
    int64_t xd[5] = {B, C};
    for (int i = 0; i < nd; i++) xd[2 + i] = in[i];
    kiln_node *x = kiln_param(g, "x", nd + 2, xd, (kiln_init){KILN_INIT_ZEROS}, 1, 0, 0), *y = NULL;
    int conv = strstr(kind, "pool") == NULL;
    if (!strcmp(kind, "depthwise")) {
        kiln_depthwise_conv2d_opts o = {.kernel = {k[0], k[1]}, .stride = {s[0], s[1]}, .dilation = {d[0], d[1]},
                                        .padding = KILN_PAD_EXPLICIT, .pad = {pb[0], pb[1]}, .pad_end = {pe[0], pe[1]},
                                        .asymmetric = 1, .depth_multiplier = F, .name = "l"};
        y = kiln_depthwise_conv2d_ex(g, x, &o);
    } else if (conv) {
        kiln_conv_opts o = {.filters = F, .padding = KILN_PAD_EXPLICIT, .asymmetric = 1, .groups = groups, .name = "l"};
        memcpy(o.kernel, k, sizeof k), memcpy(o.stride, s, sizeof s), memcpy(o.dilation, d, sizeof d);
        memcpy(o.pad, pb, sizeof pb), memcpy(o.pad_end, pe, sizeof pe), memcpy(o.output_padding, op, sizeof op);
        y = !strcmp(kind, "transpose") ? kiln_conv2d_transpose_ex(g, x, &o)
            : nd == 1                  ? kiln_conv1d_ex(g, x, &o)
            : nd == 3                  ? kiln_conv3d_ex(g, x, &o)
                                       : NULL;
    } else {
        kiln_pool_opts o = {.padding = KILN_PAD_EXPLICIT, .asymmetric = 1, .ceil_mode = ceil, .name = "l"};
        memcpy(o.size, k, sizeof k), memcpy(o.stride, s, sizeof s), memcpy(o.pad, pb, sizeof pb);
        memcpy(o.pad_end, pe, sizeof pe);
        int max = kind[1] == 'a';
        if (nd == 2) {
            kiln_pool2d_opts p = {.size = {k[0], k[1]}, .stride = {s[0], s[1]}, .padding = KILN_PAD_EXPLICIT,
                                  .pad = {pb[0], pb[1]}, .pad_end = {pe[0], pe[1]}, .asymmetric = 1,
                                  .ceil_mode = ceil, .name = "l"};
            y = max ? kiln_maxpool2d_ex(g, x, &p) : kiln_avgpool2d_ex(g, x, &p);
        } else {
            y = nd == 1 ? (max ? kiln_maxpool1d_ex(g, x, &o) : kiln_avgpool1d_ex(g, x, &o))
                        : (max ? kiln_maxpool3d_ex(g, x, &o) : kiln_avgpool3d_ex(g, x, &o));
        }
    }
    kiln_plan *p = y ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = B}) : NULL;
    if (!p) {
        fprintf(stderr, "conv_oracle: %s\n", kiln_last_error());
        kiln_graph_free(g);
        return 1;
    }
    kiln_node *w = conv ? kiln_graph_find(g, "l.kernel") : NULL, *b = conv ? kiln_graph_find(g, "l.bias") : NULL;
    int rc = io(dir, "x.bin", kiln_plan_data(p, x), numel(p, x), 0);
    if (conv) rc |= io(dir, "w.bin", kiln_plan_data(p, w), numel(p, w), 0) | io(dir, "b.bin", kiln_plan_data(p, b), numel(p, b), 0);
    rc |= io(dir, "gy.bin", kiln_plan_grad(p, y), numel(p, y), 0);
    if (!rc && (kiln_plan_forward(p) || kiln_plan_backward(p))) rc = -1, fprintf(stderr, "conv_oracle: %s\n", kiln_last_error());
    if (!rc) {
        rc |= io(dir, "y.bin", kiln_plan_data(p, y), numel(p, y), 1) | io(dir, "dx.bin", kiln_plan_grad(p, x), numel(p, x), 1);
        if (conv) rc |= io(dir, "dw.bin", kiln_plan_grad(p, w), numel(p, w), 1) | io(dir, "db.bin", kiln_plan_grad(p, b), numel(p, b), 1);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
    return rc ? 1 : 0;
}
