/* embedding.c (nn) — the embedding builder: a table "<name>.embeddings" [vocab, dim] looked up
 * by integer ids.
 *
 * Initialization is Keras's default for Embedding, uniform(-0.05, 0.05). kiln has no plain
 * uniform initializer, so it is written as glorot_uniform with fans chosen to give exactly that
 * bound: a = sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 2400) = 0.05 (fan_in = fan_out = 1200).
 */
#include <stdio.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

kiln_node *kiln_embedding(kiln_graph *g, kiln_node *ids, int vocab, int dim) {
    if (!g || !ids) return NULL;
    char name[96], pname[128], sh[128];
    if (!kiln_graph_auto_name(g, "embedding", name, sizeof name)) {
        kiln_error(KILN_ERR_NOMEM, "embedding: out of memory");
        return NULL;
    }
    kiln_shape s = kiln_node_shape(ids);
    kiln_dtype dt = kiln_node_dtype(ids);
    if (vocab <= 0 || dim <= 0) {
        kiln_error(KILN_ERR_INVALID, "%s (embedding) on %s: vocab and dim must be > 0, got %d, %d",
                   name, kiln_node_name(ids), vocab, dim);
        return NULL;
    }
    if (dt != KILN_I32 && dt != KILN_I64) {
        kiln_error(KILN_ERR_INVALID, "%s (embedding): ids %s are %s %s; need I32 or I64", name,
                   kiln_node_name(ids), kiln_dtype_name(dt), kiln_shape_str(&s, sh, sizeof sh));
        return NULL;
    }
    if (s.ndim >= KILN_MAX_DIMS) {
        kiln_error(KILN_ERR_SHAPE,
                   "%s (embedding): ids %s have shape %s; at most %d dims (the "
                   "output adds one)",
                   name, kiln_node_name(ids), kiln_shape_str(&s, sh, sizeof sh), KILN_MAX_DIMS - 1);
        return NULL;
    }
    snprintf(pname, sizeof pname, "%s.embeddings", name);
    kiln_init init = {KILN_INIT_GLOROT_UNIFORM, 0};
    kiln_node *in[2] = {ids, kiln_param(g, pname, 2, (int64_t[]){vocab, dim}, init, 1, 1200, 1200)};
    kiln_embedding_attr a = {vocab, dim};
    return kiln_graph_add_op(g, &kiln_op_embedding, in, 2, &a, sizeof a, name);
}
