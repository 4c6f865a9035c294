/* instances_internal.h — pieces of the instance readers (kiln/instances.h) shared across files. */
#ifndef KILN_INSTANCES_INTERNAL_H
#define KILN_INSTANCES_INTERNAL_H

#include <stddef.h>

#include "kiln/instances.h"

/* Decodes one image (PNG, JPEG, GIF, BMP, PGM/PPM) into x [row size] for the row shape
 * [C, H, W] or [H, W]: C channels (1 gray, 3 RGB, 4 RGBA), channel-major, values 0..255. The
 * size is checked against H x W before the pixels are decoded. Messages start with name. */
kiln_status kiln_instances_image(const char *name, const unsigned char *data, size_t len,
                                 const kiln_shape *row, float *x);

#endif
