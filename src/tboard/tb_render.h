/* tb_render.h — pictures for TensorBoard's Images tab, drawn into RGB buffers (library-private):
 * a grid of input samples labelled with their true and predicted classes, and a confusion
 * matrix. Text is drawn with a built-in 3x5 pixel font (digits and the few letters used), so no
 * font library is needed. Both return a malloc'ed rgb[height][width][3] (free()), or NULL when
 * out of memory or the picture would exceed 16384 pixels a side (with a message). */
#ifndef KILN_TRACK_TB_RENDER_H
#define KILN_TRACK_TB_RENDER_H

#include <stdint.h>

/* x: n samples of c x h x w floats (NCHW, c = 1 gray or 3 RGB), any scale: each tile is
 * stretched from its own minimum (black) to maximum (white). truth[i], pred[i]: class ids
 * (pred < 0: unknown). Tiles are scaled up to about 64 pixels, framed green when pred == truth
 * and red otherwise, captioned "t<truth> p<pred>", and laid out in a near-square grid. */
unsigned char *kiln_tb_render_samples(const float *x, int n, int c, int h, int w, const int *truth,
                                      const int *pred, int *width, int *height);

/* counts[k][k] (rows: true class, columns: predicted class, as kiln eval prints it), 1 <= k <=
 * 256. Each cell is shaded by its share of its row (white 0 to dark blue 1) and shows its
 * count (blank for 0); the top row and left column hold the class ids, the corner "t/p". */
unsigned char *kiln_tb_render_confusion(const int64_t *counts, int k, int *width, int *height);

#endif
