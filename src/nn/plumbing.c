/* plumbing.c (nn) — builders for add (residual joins). */
#include "backend/ops.h"

kiln_node *kiln_add(kiln_graph *g, kiln_node *a, kiln_node *b) {
    kiln_node *in[2] = {a, b};
    return kiln_graph_add_op(g, &kiln_op_add, in, 2, NULL, 0, NULL);
}
