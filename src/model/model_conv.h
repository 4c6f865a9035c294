/* model_conv.h — model.c's builder of the convolution and pooling layers (model_conv.c). */
#ifndef KILN_MODEL_CONV_H
#define KILN_MODEL_CONV_H

#include "kiln/config.h"
#include "kiln/nn.h"

/* When kind is one of conv1d, conv2d, conv3d, conv2d_transpose, depthwise_conv2d, maxpool1d/2d/3d,
 * avgpool1d/2d/3d: builds it from the resolved layer arguments a into *y (NULL on failure, with
 * the builder's message) and returns 1; returns 0 for any other kind. */
int kiln_model_conv_layer(kiln_graph *g, const char *kind, const kiln_cfg *a, const char *name,
                          kiln_node *x, kiln_act act, kiln_node **y);

#endif
