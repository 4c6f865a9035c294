/* profile.h — kiln train --profile: per-op events as a Chrome trace and a per-op time table. */
#ifndef KILN_PROFILE_H
#define KILN_PROFILE_H

#include <stdio.h>

#include "kiln/graph.h"

/* trace.json in the Chrome trace event format ("X" complete events: name, cat = phase, ph, ts,
 * dur in microseconds, pid, tid, args.op), which Perfetto and chrome://tracing open. */
kiln_status kiln_profile_write_trace(const char *path, const kiln_op_event *ev, int n);
/* The per-op table: total and mean time per step of each (node, phase), largest first. */
void kiln_profile_print_table(FILE *f, const kiln_op_event *ev, int n, int steps);

#endif
