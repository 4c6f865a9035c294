/* kiln/prune.h — magnitude pruning of a graph's parameters (docs/optimize.md "Pruning").
 *
 * The rule is per tensor: at sparsity s a tensor of n values keeps all but the k = round(s n)
 * values of smallest magnitude, exactly k (ties are broken by position, the lower index is
 * pruned first), so a pruned tensor has exactly k zeros (more only when kept values happen to be
 * zero). Values already zero are the smallest, so raising s only adds zeros (the masks of a
 * gradual schedule shrink monotonically).
 *
 * What is pruned: kernels (parameters named "<layer>.kernel": dense, convolutions, transposed
 * and depthwise convolutions) that are trainable. Globs select among them with train.freeze's
 * rule (fnmatch, '*' crosses '/' and '.'; a glob matches the parameter's name, its layer's name
 * or one of the layer's scopes); no globs: every kernel. Biases, batch-norm parameters and
 * embeddings are never pruned.
 *
 * Used by the trainer (train.prune: gradual, src/train/prune.c) and by `kiln optimize --prune`
 * (one-shot, kiln_prune_magnitude).
 */
#ifndef KILN_PRUNE_H
#define KILN_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/graph.h"
#include "kiln/status.h"

/* sel[i] (i < kiln_graph_param_count) = 1 for the parameters the globs select (see above), 0
 * otherwise. A glob that selects no kernel, or no kernel at all in the graph, is
 * KILN_ERR_INVALID naming it ("params[1]: 'dense_9' matches no kernel ..."). */
kiln_status kiln_prune_select(const kiln_graph *g, const char *const *globs, int n_globs,
                              unsigned char *sel);
/* k = round(sparsity n), the number of values pruned from a tensor of n at that sparsity. */
size_t kiln_prune_count(size_t n, double sparsity);
/* mask[i] = 0 for the k = kiln_prune_count(n, sparsity) values of w smallest in magnitude, 1 for
 * the others. sparsity in [0, 1]; KILN_ERR_NOMEM or KILN_ERR_INVALID otherwise. */
kiln_status kiln_prune_mask(const float *w, size_t n, double sparsity, unsigned char *mask);

/* One-shot magnitude pruning: zeroes the round(sparsity n) smallest values of every selected
 * kernel of weights (kiln_graph_params_size floats in the graph's layout; NULL: the graph's own
 * parameters). sparsity in [0, 1). *pruned (may be NULL) gets the number of values zeroed, and
 * *total the number of values in the selected kernels. */
kiln_status kiln_prune_magnitude(kiln_graph *g, double sparsity, const char *const *globs,
                                 int n_globs, float *weights, size_t *pruned, size_t *total);

#endif
