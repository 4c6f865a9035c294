/* blocks.h — model.blocks and the built-in backbones expanded into one flat list of layers
 * (src/model/blocks.c; docs/models.md "Blocks" and "Backbones"). Internal to src/model/ (and the
 * tests). */
#ifndef KILN_MODEL_BLOCKS_H
#define KILN_MODEL_BLOCKS_H

#include "kiln/config.h"
#include "kiln/graph.h"

typedef struct {
    kiln_cfg *layers; /* a sequence of resolved {kind: {args}} items, no block or backbone left */
    char **paths;     /* per item: its key path and, for expanded ones, the uses it came from */
    int n;
} kiln_flat_layers;

/* Expands cfg's model.layers (resolved) with model.blocks and the built-in backbones. A from:
 * name "@<i>" in the result means the output of flat layer i (model.c resolves it). On error
 * the message names file:line of the definition and of every use on the way. */
kiln_status kiln_blocks_expand(const kiln_cfg *cfg, kiln_flat_layers *out);
void kiln_blocks_free(kiln_flat_layers *f);

/* adaptive_avgpool2d (PyTorch AdaptiveAvgPool2d) for the sizes it has an exact form in kiln's
 * ops: per axis, in == out (nothing), in a multiple of out (an average pool of in / out), or
 * in == 1 (the value repeated out times, as PyTorch does). Other sizes are an error naming them.
 * (src/model/adaptive_pool.c) */
kiln_node *kiln_model_adaptive_avgpool2d(kiln_graph *g, kiln_node *x, const int size[2],
                                         const char *name);

/* The built-in backbone files (the .yaml files of src/model/backbones/), compiled in by CMake
 * (cmake/embed_backbones.cmake): names ("resnet.yaml") and NUL-terminated texts. */
extern const char *const kiln_backbone_files[];
extern const char *const kiln_backbone_texts[];
extern const int kiln_backbone_n_files;

#endif
