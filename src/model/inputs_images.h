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

#endif
