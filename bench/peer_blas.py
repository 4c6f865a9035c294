#!/usr/bin/python3
"""Which BLAS the PyTorch peer really runs on, read from this process's memory map after a matmul.

Debian's python3-torch calls whatever libblas.so.3 the alternatives system points at. Without
an optimized BLAS installed that is the reference BLAS, 5-7x slower than OpenBLAS: a peer on it
makes kiln look better than it is. The benchmarks run this first and stop unless the peer is at
its best (libopenblas0-pthread; `KILN_WITH_BENCH=1 bash scripts/setup.sh` installs it).

    /usr/bin/python3 bench/peer_blas.py      prints "torch <version>: BLAS <library> (<path>)";
                                             exit 1 on the reference BLAS or none found
"""
import sys

import torch

a = torch.randn(256, 256, dtype=torch.float64)  # float64: goes through the system BLAS (dgemm)
(a @ a).sum().item()
libs = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if "blas" in path or "blis" in path or "mkl" in path or "lapack" in path:
            libs.add(path)
kind = None
for name, test in (("OpenBLAS", "openblas"), ("BLIS", "blis"), ("MKL", "mkl")):
    hits = sorted(p for p in libs if test in p)
    if hits:
        kind = (name, hits[0])
        break
if kind is None:
    ref = sorted(p for p in libs if "libblas.so" in p)
    print("torch %s: BLAS reference (%s): install libopenblas0-pthread "
          "(KILN_WITH_BENCH=1 bash scripts/setup.sh)" % (torch.__version__, ref[0] if ref else "none found"))
    sys.exit(1)
print("torch %s: BLAS %s (%s), %d threads" % (torch.__version__, kind[0], kind[1], torch.get_num_threads()))
