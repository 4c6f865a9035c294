/* act.h — activation functions, forward and backward, as plain OpenMP loops.
 *
 * Used by the standalone activation ops and by layers that fuse an activation (dense, conv2d):
 * those compute y = act(z) and keep y; most activations have a derivative expressible from y
 * alone (relu, leaky relu with alpha > 0, sigmoid, tanh, relu6), so z need not be kept; GELU,
 * hard_sigmoid and hard_swish need z (kiln_act_grad_from_output says which).
 */
#ifndef KILN_ACT_H
#define KILN_ACT_H

#include <stdint.h>

#include "kiln/backend.h"

/* y[i] = act(x[i]); y may alias x. */
void kiln_act_forward(kiln_act a, float alpha, const float *x, float *y, int64_t n);
/* dx[i] (=|+=) dy[i] * act'(x[i]). x is the pre-activation (needed only where
 * kiln_act_grad_from_output is 0; may be NULL otherwise), y the output. dx may alias dy when accum is 0. */
void kiln_act_backward(kiln_act a, float alpha, const float *x, const float *y, const float *dy,
                       float *dx, int64_t n, int accum);
/* 1 when act' can be computed from y alone. */
int kiln_act_grad_from_output(kiln_act a);

#endif
