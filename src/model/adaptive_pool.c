/* adaptive_pool.c — the adaptive_avgpool2d layer (PyTorch's AdaptiveAvgPool2d, which
 * torchvision's VGG puts before its classifier), composed of existing ops.
 *
 * PyTorch's output cell i of an axis averages input cells floor(i * in / out) ..
 * ceil((i + 1) * in / out) - 1. When in is a multiple of out those windows are the tiles of an
 * average pool of size in / out; when in is 1 every window is that one cell (a repeat, made
 * by concatenating the input out times along the axis). Those two cases and in == out are
 * exact; other sizes give overlapping windows of varying size, which no kiln op computes, and
 * are refused with the sizes named (a 224x224 VGG has 7x7 features, a 32x32 one 1x1).
 */
#include <stdio.h>

#include "kiln/nn.h"
#include "model/blocks.h"

kiln_node *kiln_model_adaptive_avgpool2d(kiln_graph *g, kiln_node *x, const int size[2],
                                         const char *name) {
    kiln_shape s = kiln_node_shape(x);
    if (s.ndim != 4) {
        kiln_error(
            KILN_ERR_INVALID,
            "adaptive_avgpool2d: expected an input [batch, channels, height, width], got %d dims",
            s.ndim);
        return NULL;
    }
    int win[2] = {1, 1}, rep[2] = {1, 1};
    for (int i = 0; i < 2; i++) {
        int64_t in = s.dims[2 + i], out = size[i];
        if (in == out) continue;
        if (in % out == 0)
            win[i] = (int)(in / out);
        else if (in == 1 && out <= 64)
            rep[i] = (int)out;
        else {
            kiln_error(KILN_ERR_INVALID,
                       "adaptive_avgpool2d: input %lldx%lld to %dx%d is not supported (each input "
                       "side must equal the output side, be a multiple of it, or be 1)",
                       (long long)s.dims[2], (long long)s.dims[3], size[0], size[1]);
            return NULL;
        }
    }
    kiln_node *y = x;
    if (win[0] > 1 || win[1] > 1) {
        kiln_pool2d_opts o = {
            .size = {win[0], win[1]}, .stride = {win[0], win[1]}, .padding = KILN_PAD_VALID};
        y = kiln_avgpool2d_ex(g, y, &o);
    }
    for (int i = 0; i < 2 && y; i++)
        if (rep[i] > 1) {
            kiln_node *copies[64];
            for (int k = 0; k < rep[i]; k++) copies[k] = y;
            y = kiln_concat(g, copies, rep[i], 2 + i);
        }
    if (y == x) y = kiln_reshape(g, x, 3, s.dims + 1); /* an identity with its own name */
    if (y && name && kiln_graph_rename(g, y, name) != KILN_OK) return NULL;
    return y;
}
