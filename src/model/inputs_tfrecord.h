/* inputs_tfrecord.h — data.source: tfrecord for inputs.c (library-private). */
#ifndef KILN_MODEL_INPUTS_TFRECORD_H
#define KILN_MODEL_INPUTS_TFRECORD_H

#include "kiln/inputs.h"

/* Loads split ("train", "validation", "test") of a tfrecord config: sp is data.<split>
 * ({path: FILE | DIR | GLOB}). The features come from data.features (default: image/encoded
 * decoded as an image, image/class/label), images are shaped by data.image and model.input.
 * With data.on_error: skip, bad records (and undecodable images) are left out and counted in
 * in->skipped. */
kiln_status kiln_inputs_tfrecord_split(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                                       const kiln_model *m, kiln_inputs *in, kiln_dataset **out);

/* data.features read as for source tfrecord (the same defaults and checks), for other sources of
 * tf.train.Example records (data.source: kafka): at most 256 features; *images: an image one. */
kiln_status kiln_inputs_tfrecord_features(const kiln_cfg *cfg, const kiln_model *m,
                                          kiln_tfrecord_feature feat[256], int *nfeat,
                                          const char **label_key, int *images);

#endif
