/* kiln/onnx.h — ONNX models into kiln (`kiln import model.onnx --to DIR`).
 *
 * kiln_onnx_convert reads a serialized onnx.ModelProto (protobuf-c, proto/onnx/onnx.proto) and
 * maps its graph, node by node, onto kiln layers (docs/models.md "Importing ONNX" lists the ops
 * and the rules). The result is a kiln model config (YAML text, readable: layer names come
 * from the ONNX node names, `from:` only where the graph is not a chain) and its weights under
 * kiln's parameter names and layouts. Sub-graphs that repeat (same-shaped scopes such as torch's
 * layer1/0, layer1/1) become model.blocks with their differing values as block parameters, the
 * instance named after the scope, so the parameter names equal those of the flat form (every
 * layer written out), which kiln_onnx_set_flat selects. kiln_onnx_write puts both into a
 * folder together with a servable version built from them through kiln's own config, builder
 * and export code.
 *
 * Nothing in the bytes can crash the converter: every field is checked before use, and every
 * refusal is KILN_ERR_FORMAT (a malformed protobuf, a missing or non-float initializer, a
 * dynamic shape other than the batch) or KILN_ERR_INVALID (an op, attribute or attribute value
 * kiln cannot express) with a message naming the node (its name and index), the op and the
 * attribute. */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include <stddef.h>

#include "kiln/safetensors.h"
#include "kiln/status.h"

typedef struct kiln_onnx_model kiln_onnx_model;

/* Converts the model in bytes[len]; label names the source in messages (a file name). *out is
 * NULL on failure. */
kiln_status kiln_onnx_convert(const void *bytes, size_t len, const char *label,
                              kiln_onnx_model **out);
/* Reads and converts a .onnx file. */
kiln_status kiln_onnx_load(const char *path, kiln_onnx_model **out);

/* The model config as YAML (valid until kiln_onnx_free): with_data_comment 1 gives the file
 * `kiln import` writes (model.init_from: weights.safetensors and a commented data: section);
 * 0 gives the same model with a placeholder data: section and no init_from, which kiln's
 * schema resolves as it is (what the servable is built from). */
const char *kiln_onnx_yaml(const kiln_onnx_model *m, int with_data_comment);
/* flat 1: every layer written out, no model.blocks; 0 (the default): blocks where a sub-graph
 * repeats and the text gets shorter. Renders kiln_onnx_yaml again. */
kiln_status kiln_onnx_set_flat(kiln_onnx_model *m, int flat);
/* Block definitions in the YAML (0: the flat form). */
int kiln_onnx_block_count(const kiln_onnx_model *m);
/* The weights: n entries (F32, kiln names and layouts), valid until kiln_onnx_free. */
const kiln_st_entry *kiln_onnx_weights(const kiln_onnx_model *m, int *n);
/* Layers in the config, and ONNX nodes read. */
int kiln_onnx_layer_count(const kiln_onnx_model *m);
int kiln_onnx_node_count(const kiln_onnx_model *m);

/* Writes dir/model.yaml, dir/weights.safetensors and the servable version dir/servable/1/
 * (dir is created when missing; an existing dir/servable/1 is an error and nothing is written).
 * The two files come first; then the servable is built from the config with kiln_model_build,
 * given the weights (every name and shape must match) and exported with kiln_export_graph. A
 * config this kiln cannot build (a layer kind it does not have) fails there, naming the
 * model.yaml line, and leaves the two files. */
kiln_status kiln_onnx_write(const kiln_onnx_model *m, const char *dir);

void kiln_onnx_free(kiln_onnx_model *m); /* NULL is a no-op */

#endif
