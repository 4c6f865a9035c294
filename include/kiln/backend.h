/* kiln/backend.h — what every backend's kernels understand, below the layer builders of
 * kiln/nn.h: the fusable activations and the padding modes of convolutions and pools.
 * kiln/nn.h includes this header, so a program that uses the builders never names it.
 */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

typedef enum {
    KILN_ACT_NONE = 0,
    KILN_ACT_RELU,
    KILN_ACT_LEAKY_RELU, /* slope 0.01 when fused into a layer */
    KILN_ACT_GELU,       /* exact (erf) form */
    KILN_ACT_SIGMOID,
    KILN_ACT_TANH,
    KILN_ACT_RELU6,        /* min(max(x, 0), 6) (PyTorch ReLU6) */
    KILN_ACT_HARD_SIGMOID, /* relu6(x + 3) / 6 (PyTorch Hardsigmoid, ONNX alpha 1/6 beta 0.5) */
    KILN_ACT_HARD_SWISH,   /* x * relu6(x + 3) / 6 (PyTorch Hardswish, ONNX HardSwish) */
    KILN_ACT_COUNT
} kiln_act;

/* "relu" -> KILN_ACT_RELU; returns KILN_ACT_COUNT when unknown ("none"/"linear" are NONE). */
kiln_act kiln_act_from_name(const char *name);
const char *kiln_act_name(kiln_act a);

/* Convolution and pooling padding: TensorFlow's "valid" and "same", or explicit pads. */
typedef enum { KILN_PAD_VALID = 0, KILN_PAD_SAME, KILN_PAD_EXPLICIT } kiln_padding;

/* Upsampling: nearest neighbour, or (bi/tri)linear with half-pixel centres. */
typedef enum { KILN_UPSAMPLE_NEAREST = 0, KILN_UPSAMPLE_LINEAR } kiln_upsample_mode;

/* The CPU backend as kiln optimize reports it (src/backend/cpu/lowp.c): the instruction set
 * oneDNN dispatches to on this CPU ("avx2", "avx512_core_vnni", "avx512_core_amx", ...), and the
 * bits int8 weights keep here (8 with VNNI or AMX, else 7: docs/optimize.md). */
const char *kiln_backend_cpu_isa(void);
int kiln_backend_int8_weight_bits(void);

#endif
