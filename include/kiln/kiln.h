/* kiln.h — the whole public API. */
#ifndef KILN_H
#define KILN_H

#include "kiln/version.h"
#include "kiln/cpu.h"

#include "kiln/status.h"
#include "kiln/tensor.h"
#include "kiln/mem.h"
#include "kiln/rng.h"
#include "kiln/graph.h"
#include "kiln/nn.h"
#include "kiln/optim.h"
#include "kiln/checkpoint.h"
#include "kiln/config.h"
#include "kiln/model.h"
#include "kiln/prune.h"
#include "kiln/fileio.h"
#include "kiln/safetensors.h"
#include "kiln/data.h"
#include "kiln/image.h"
#include "kiln/augment.h"
#include "kiln/metrics.h"
#include "kiln/run.h"
#include "kiln/optimize.h"
#include "kiln/bench.h"
#include "kiln/crc32c.h"
#include "kiln/tfrecord.h"
#include "kiln/tboard.h"
#include "kiln/explain.h"

#endif
