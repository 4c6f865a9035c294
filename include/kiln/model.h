/* kiln/model.h — a model built from a resolved config: the graph, its input, target, output
 * and loss nodes. model.layers is a list; each layer takes the previous layer's output, or the
 * layers named in its `from:` (earlier layers only; "input" names the model input), so one list
 * describes residual and multi-branch graphs. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include <stdio.h>

#include "kiln/config.h"
#include "kiln/graph.h"

typedef enum { KILN_TASK_CLASSIFICATION = 0, KILN_TASK_REGRESSION } kiln_task;

typedef struct {
    kiln_graph *graph;
    kiln_node *input;       /* F32 [B, model.input...] */
    kiln_node *target;      /* classification: I32 [B] class ids; regression: F32 like output */
    kiln_node *output;      /* the last layer: logits or predictions */
    kiln_node *penultimate; /* the layer before the last (embeddings for the projector) */
    kiln_node *loss;        /* scalar */
    /* data.augment with mixup or cutmix: soft labels F32 [B, classes] and the training loss on
     * them (softmax cross-entropy with probability targets); NULL otherwise. Evaluation keeps
     * target and loss. */
    kiln_node *soft_target, *soft_loss;
    /* train.distill (a classifier with output [B, classes]): the teacher's logits F32 [B, classes]
     * and the distillation loss over them, the output and the labels (soft ones with mixup);
     * NULL otherwise (src/train/distill.c feeds them). */
    kiln_node *teacher_logits, *distill_loss;
    kiln_task task;
    int64_t n_outputs;      /* features of output per row (classes for classifiers) */
    /* the output node of each layer of the flat list (model.blocks and backbones expanded, as
     * src/model/blocks.h's kiln_blocks_expand gives it), in order; kiln optimize reads it */
    kiln_node **layer_outputs;
    int n_layers;
} kiln_model;

/* Builds the graph of cfg (resolved) with the given seed. Errors name file:line:column and the
 * layer's key path: "cnn.yaml:15:7: model.layers[3].dense: <what was wrong>". */
kiln_status kiln_model_build(const kiln_cfg *cfg, kiln_model *m);
void kiln_model_free(kiln_model *m);

/* train.freeze of cfg (a resolved config, or a stage's effective one) on m's graph: sets every
 * parameter's frozen flag (globs on parameter, layer and scope names: docs/models.md
 * "Freezing") and runs batch norms whose parameters are all frozen in inference mode when
 * train.freeze_batchnorm (default true). A glob matching nothing, or nothing left to train, is
 * KILN_ERR_INVALID with file:line. Plans compiled afterwards follow it. */
kiln_status kiln_model_apply_freeze(kiln_model *m, const kiln_cfg *cfg);
/* Keras-style model.summary(): every layer (name, kind, output shape, parameter count,
 * trainable / frozen), then the totals (trainable, frozen, non-trainable). */
kiln_status kiln_model_summary(kiln_model *m, FILE *f);
/* model.init_from (docs/models.md): loads the parameters of g, by name, from the weights the
 * config names (a run, checkpoint or export folder, or a .safetensors file; convention kiln or
 * torchvision; a prefix map), checking shapes. *report (malloc'ed, several lines; NULL when the
 * config has no init_from) lists loaded / missing / unexpected / shape-mismatched names, like
 * PyTorch's load_state_dict(strict=False). With strict: true any of those is KILN_ERR_INVALID
 * naming them, and nothing is changed. Relative paths: see kiln_inputs_resolve_paths. */
kiln_status kiln_model_init_from(const kiln_cfg *cfg, kiln_graph *g, char **report);

#endif
