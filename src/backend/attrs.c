/* attrs.c — the one rule shared by every backend's convolution and pooling ops and by their
 * builders: output size and padding of one spatial axis (declared in attrs.h). It lives with the
 * ops, below src/nn/, so that kernels never reach up into the builders. */
#include "backend/attrs.h"

int64_t kiln_conv_axis(int64_t in, int k, int stride, int dil, kiln_padding pad, int explicit_before,
                       int explicit_after, int ceil_mode, int64_t *pad_before, int64_t *pad_after) {
    *pad_before = *pad_after = 0;
    if (in < 1 || k < 1 || stride < 1 || dil < 1 || explicit_before < 0 || explicit_after < 0) return 0;
    int64_t eff = (int64_t)(k - 1) * dil + 1; /* the dilated window's extent */
    if (pad == KILN_PAD_SAME) {
        int64_t out = (in + stride - 1) / stride;
        int64_t total = (out - 1) * stride + eff - in;
        if (total > 0) *pad_before = total / 2, *pad_after = total - total / 2;
        return out;
    }
    if (pad == KILN_PAD_EXPLICIT)
        *pad_before = explicit_before, *pad_after = explicit_after;
    else if (pad != KILN_PAD_VALID)
        return 0;
    int64_t span = in + *pad_before + *pad_after;
    if (span < eff) return 0;
    int64_t out = (span - eff) / stride + 1;
    if (ceil_mode && (span - eff) % stride) {
        out++;
        if ((out - 1) * stride >= in + *pad_before) out--; /* would start in the pad after */
        int64_t need = (out - 1) * stride + eff - in - *pad_before;
        if (need > *pad_after) *pad_after = need;
    }
    return out;
}

int64_t kiln_conv_out_size(int64_t in, int k, int stride, int dil, kiln_padding pad,
                           int explicit_pad, int64_t *pad_before, int64_t *pad_after) {
    return kiln_conv_axis(in, k, stride, dil, pad, explicit_pad, explicit_pad, 0, pad_before,
                          pad_after);
}

int64_t kiln_deconv_axis(int64_t in, int k, int stride, int dil, kiln_padding pad,
                         int explicit_before, int explicit_after, int output_padding,
                         int64_t *pad_before, int64_t *pad_after) {
    *pad_before = *pad_after = 0;
    if (in < 1 || k < 1 || stride < 1 || dil < 1 || explicit_before < 0 || explicit_after < 0 ||
        output_padding < 0)
        return 0;
    int64_t eff = (int64_t)(k - 1) * dil + 1, full = (in - 1) * stride + eff + output_padding;
    if (pad == KILN_PAD_SAME) {
        int64_t total = full - in * stride;
        *pad_before = total > 0 ? total / 2 : 0;
        *pad_after = total - *pad_before;
    } else if (pad == KILN_PAD_EXPLICIT) {
        *pad_before = explicit_before, *pad_after = explicit_after;
    } else if (pad != KILN_PAD_VALID) {
        return 0;
    }
    int64_t out = full - *pad_before - *pad_after;
    *pad_after -= output_padding;
    return out;
}
