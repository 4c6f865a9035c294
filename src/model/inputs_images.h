/* inputs_images.h — data.source: images for inputs.c (library-private). */
#ifndef KILN_MODEL_INPUTS_IMAGES_H
#define KILN_MODEL_INPUTS_IMAGES_H

#include "kiln/inputs.h"

/* Loads split ("train", "validation", "test") of an images config: sp is data.<split>
 * ({path: DIR} or {manifest: FILE}). The geometry comes from data.image and model.input
 * ([C, H, W]); a validation or test split maps its classes onto in->train's names. With
 * data.on_error: skip, unreadable images are left out and counted in in->skipped. */
kiln_status kiln_inputs_images_split(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                                     const kiln_model *m, kiln_inputs *in, kiln_dataset **out);

/* The image geometry of data.image for model.input [C, H, W] (also the tfrecord source's image
 * feature): config errors (KILN_ERR_INVALID) name the keys and their positions. */
kiln_status kiln_inputs_image_spec(const kiln_cfg *cfg, const kiln_model *m, kiln_image_spec *s);
/* data.cache: decoded's budget for one more split of row_bytes-byte rows (in->cache_left keeps
 * what is left; half of the machine's memory to start with): 0 when the cache is off. */
int64_t kiln_inputs_cache_budget(const kiln_cfg *cfg, kiln_inputs *in);
/* After a split of rows rows of row_bytes bytes took a budget of given bytes: the rest. */
/* data.on_error: skip: *ds without the rows that cannot be read (each decoded once), counted in
 * in->skipped (the first one named in in->skipped_first). *ds is replaced, NULL on failure. */
kiln_status kiln_inputs_drop_unreadable(kiln_inputs *in, kiln_dataset **ds);
void kiln_inputs_cache_used(kiln_inputs *in, int64_t given, int64_t rows, int64_t row_bytes);

#endif
