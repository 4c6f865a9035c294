#!/usr/bin/env python3
"""compare_weights.py A B [TOL] — compares two kiln weights.safetensors files tensor by tensor.

Prints the largest relative difference ||a - b|| / ||b|| over the tensors (parameters only: the
optimizer slots and EMA copies in a checkpoint, named "<parameter>.<slot>", are skipped) and exits 1 when it exceeds TOL (default
1e-5), 2 when the tensor names or shapes differ. Only the standard library is used."""
import json
import math
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in head.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = (info["shape"], struct.unpack("<%df" % ((b - a) // 4), data[a:b]))
    return out


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
    # a slot of the optimizer or EMA is named "<parameter>.<slot>": keep the parameters
    params = lambda d: sorted(k for k in d if not any(k.startswith(p + ".") for p in d))
    names = params(a)
    if names != params(b):
        print("tensor names differ:", sorted(a), sorted(b))
        return 2
    worst, where = 0.0, ""
    for k in names:
        (sa, va), (sb, vb) = a[k], b[k]
        if sa != sb:
            print("shape of %s differs: %s vs %s" % (k, sa, sb))
            return 2
        num = math.sqrt(sum((x - y) ** 2 for x, y in zip(va, vb)))
        den = math.sqrt(sum(y * y for y in vb)) or 1.0
        if num / den > worst:
            worst, where = num / den, k
    print("max relative difference %.3g (%s) over %d tensors" % (worst, where, len(names)))
    return 0 if worst <= tol else 1


sys.exit(main())
