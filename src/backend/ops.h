/* ops.h — the op table entries, one per op, each defined in its own file under src/backend/cpu/
 * (and later src/backend/cuda/), and the backends they name. Builders in src/nn/ add nodes that
 * point at them; a plan makes the stream of its ops' backend. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include "graph/graph_internal.h"

extern const kiln_backend kiln_backend_cpu; /* oneDNN + OpenMP (src/backend/cpu/) */

extern const kiln_op kiln_op_dense;      /* x, kernel [, bias] */
extern const kiln_op kiln_op_conv2d;     /* x, kernel [, bias] */
extern const kiln_op kiln_op_maxpool2d;  /* x */
extern const kiln_op kiln_op_avgpool2d;  /* x */
extern const kiln_op kiln_op_global_avgpool2d; /* x */
extern const kiln_op kiln_op_batchnorm;  /* x, [gamma], [beta], moving_mean, moving_variance */
extern const kiln_op kiln_op_layernorm;  /* x, [gamma], [beta] */
extern const kiln_op kiln_op_dropout;    /* x */
extern const kiln_op kiln_op_reshape;    /* x (flatten is a reshape) */
extern const kiln_op kiln_op_add;        /* a, b (b or a may broadcast: binary.c) */
extern const kiln_op kiln_op_concat;     /* x0 .. xn-1 */
extern const kiln_op kiln_op_activation; /* x */
extern const kiln_op kiln_op_softmax;    /* x */
extern const kiln_op kiln_op_embedding;  /* ids, embeddings */
extern const kiln_op kiln_op_softmax_cross_entropy; /* logits, labels */
extern const kiln_op kiln_op_binary_cross_entropy;  /* logits, targets */
extern const kiln_op kiln_op_mse;        /* pred, target */
extern const kiln_op kiln_op_mae;        /* pred, target */
extern const kiln_op kiln_op_huber;      /* pred, target */
/* issue 13: elementwise and resampling ops */
extern const kiln_op kiln_op_multiply;   /* a, b (add's broadcast rule) */
extern const kiln_op kiln_op_clip;       /* x */
extern const kiln_op kiln_op_upsample;   /* x [B, C, spatial...] */
extern const kiln_op kiln_op_global_maxpool; /* x [B, C, spatial...] -> [B, C] */
extern const kiln_op kiln_op_global_avgpool; /* x [B, C, spatial...] -> [B, C] */
/* 1-D and 3-D convolutions and pools, transposed conv (conv.c, pool.c: kiln_conv_attr, kiln_pool_attr) */
extern const kiln_op kiln_op_conv1d, kiln_op_conv3d; /* x, kernel [, bias] */
extern const kiln_op kiln_op_conv2d_transpose;       /* x, kernel [C, filters/groups, kh, kw] [, bias] */
extern const kiln_op kiln_op_maxpool1d, kiln_op_maxpool3d, kiln_op_avgpool1d, kiln_op_avgpool3d; /* x */

/* low precision (kiln optimize): kiln_lowp_attr; fp32 in and out, int8 or bf16 inside */
extern const kiln_op kiln_op_conv_lowp;  /* x, kernel [, bias] (lowp_conv.c) */
extern const kiln_op kiln_op_dense_lowp; /* x, kernel [, bias] (lowp_dense.c) */
/* issue 15: knowledge distillation (distill.c: kiln_distill_attr) */
extern const kiln_op kiln_op_softmax_distillation; /* logits, teacher logits, labels */

#endif
