/* lowp.h — what the low-precision kernels (lowp_conv.c, lowp_dense.c) share: quantizing the
 * input on its way in, the weights once per plan, and the numbers they are quantized with.
 *
 * int8 (oneDNN's model: x_f32 = scale * x_int8, zero point 0):
 *  - activations: q = saturate(round_half_even(x / in_scale)) into u8 (0..255, for inputs that
 *    calibration found non-negative) or s8 (-128..127), by a oneDNN reorder with that scale;
 *  - weights: symmetric, per output channel c: w_scale[c] = max|w_c| / qmax (1 when the channel
 *    is all zeros), q = round(w / w_scale[c]); qmax 127 on CPUs with int8 dot products (VNNI or
 *    AMX), 63 otherwise: without VNNI oneDNN multiplies u8 by s8 with vpmaddubsw, whose 16-bit
 *    pair sums saturate beyond 32767 (255 * 127 * 2 does), so 7-bit weights keep it exact;
 *  - the primitive accumulates in s32 (exact, so the result does not depend on threads) and
 *    writes f32: dst = act(in_scale * w_scale[c] * acc + bias[c]) (oneDNN 2.x adds the bias to
 *    the sum before the output scale, so the kernels hand it bias[c] / (in_scale * w_scale[c]));
 * bf16: input and weights rounded to bf16 by reorders, f32 accumulation and output.
 */
#ifndef KILN_LOWP_H
#define KILN_LOWP_H

#include "backend/attrs.h"
#include "backend/cpu/dnnl_util.h"

/* qmax for int8 weights on this CPU (127 or 63, see above). */
int kiln_lowp_weight_qmax(void);
/* scale[c] = max |w| over channel c / qmax (1 for an all-zero channel); channel c's elements
 * are w[c * ch_stride + i * el_stride] for i < per. */
void kiln_lowp_channel_scales(const float *w, int64_t channels, int64_t per, int64_t ch_stride,
                              int64_t el_stride, int qmax, float *scale);

/* A conversion by reorder from a plan's f32 tensor (layout have, at have_ptr) into a private
 * buffer in want (another data type and layout), multiplied by scale[] (mask as oneDNN's output
 * scales; count 0: none). */
typedef struct {
    dnnl_primitive_t r;
    dnnl_memory_t from, to;
    void *buf;
} kiln_lowp_conv;
kiln_status kiln_lowp_conv_init(kiln_lowp_conv *c, const dnnl_memory_desc_t *have, void *have_ptr,
                                const dnnl_memory_desc_t *want, int count, int mask,
                                const float *scale);
kiln_status kiln_lowp_conv_run(kiln_lowp_conv *c, dnnl_stream_t s);
void kiln_lowp_conv_release(kiln_lowp_conv *c);

/* Runs one conversion now on a stream of its own (weights at compile time). */
kiln_status kiln_lowp_convert_now(const dnnl_memory_desc_t *have, const void *ptr,
                                  const dnnl_memory_desc_t *want, int count, int mask,
                                  const float *scale, void **out);

/* What both kernels hold besides their geometry: the activation (fused into the primitive where
 * oneDNN has it, else own_act: kiln_act_forward after it), the input's conversion, the
 * converted weights, bias[channels] (int8: already divided by in_scale * wscale[c]) and the
 * weight scales (int8 only), and the primitive with its weight, bias and output memories. */
typedef struct {
    kiln_act act;
    float alpha;
    int own_act;
    kiln_lowp_conv src;
    void *wq;
    float *bias, *wscale;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t m_w, m_b, m_y;
} kiln_lowp_core;

/* The fp32 op's infer, run on the base attribute (the first member of kiln_lowp_attr); what
 * ("conv", "dense") names the op in the error when there is no base op. */
kiln_status kiln_lowp_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                            kiln_dtype *dt, const char *what);
/* Sets c->act, alpha and own_act; returns the eltwise algorithm to fuse (0: none). */
dnnl_alg_kind_t kiln_lowp_core_act(kiln_lowp_core *c, kiln_act act);
/* Allocates and fills bias (x's input 2, zeros without one) and wscale over channels; int8:
 * the weight scales of the f32 kernel w (kiln_lowp_channel_scales' layout) and the bias
 * divided by in_scale * wscale[c] (oneDNN 2.x adds an int8 primitive's bias to the s32 sum
 * before the output scale). */
kiln_status kiln_lowp_core_bias(kiln_lowp_core *c, const kiln_inst *x, const kiln_lowp_attr *la,
                                int64_t channels, int64_t per, int64_t ch_stride,
                                int64_t el_stride);
/* The primitive's attribute: the fused activation elt and, for int8, output scales
 * in_scale * wscale[c] per channel on axis 1. The caller destroys *out. */
kiln_status kiln_lowp_core_attr(const kiln_lowp_core *c, dnnl_alg_kind_t elt,
                                const kiln_lowp_attr *la, int64_t channels,
                                dnnl_primitive_attr_t *out);
/* Forward: the input's conversion, then the primitive (src, weights, bias, dst). */
kiln_status kiln_lowp_core_exec(kiln_lowp_core *c, dnnl_stream_t s);
void kiln_lowp_core_release(kiln_lowp_core *c);

/* md with data type dt (dims and layout unchanged). */
dnnl_memory_desc_t kiln_lowp_md_dt(const dnnl_memory_desc_t *md, dnnl_data_type_t dt);
/* The data type of the quantized input. */
dnnl_data_type_t kiln_lowp_src_dt(const kiln_lowp_attr *a);

#endif
