#!/usr/bin/python3
"""conv_torch.py — kiln's convolution family against PyTorch (torch.nn.functional), forward and
backward: conv1d, conv3d, conv_transpose2d, depthwise conv2d (groups = C), max/avg pooling 1d,
2d, 3d with ceil_mode and asymmetric pads (torch takes symmetric pads, so asymmetric ones are
applied with F.pad first, and so are ceil_mode's extra cells; average pooling excludes padding,
count_include_pad=False, computed through a mask of real cells).

    conv_torch.py ORACLE    (ORACLE: the kiln_conv_oracle program; see conv_oracle.c)

Each case writes random x, w, b and dL/dy to a temporary folder, runs the oracle and compares
y, dx, dw, db with torch's (float64) within 1e-4 relative to the largest magnitude. Prints
"N passed, N failed" and exits 1 on any failure."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(13)


def t(a, grad=True):
    return torch.tensor(a.astype(np.float64), requires_grad=grad)


def conv_ref(kind, nd, x, w, b, s, d, pb, pe, op, groups):
    """PyTorch's result with pads (pb, pe) per axis; torch pads symmetrically, so pad the
    difference explicitly (conv) or crop it (transposed)."""
    if kind == "transpose":
        y = F.conv_transpose2d(x, w, b, stride=s, padding=0, output_padding=0, groups=groups, dilation=d)
        # full output, then drop pb before and (pe - op) after each axis (op adds cells at the end)
        sl = [slice(None), slice(None)]
        for i in range(nd):
            n = y.shape[2 + i]
            end = n - (pe[i] - op[i])
            if end > n:  # extra cells after the end that no input reaches: zero (plus bias)
                pad = [0, 0] * nd
                pad[2 * (nd - 1 - i) + 1] = end - n
                y = F.pad(y - b.view([1, -1] + [1] * nd), pad) + b.view([1, -1] + [1] * nd)
            sl.append(slice(pb[i], end))
        return y[tuple(sl)]
    pad = []
    for i in reversed(range(nd)):
        pad += [pb[i], pe[i]]
    xp = F.pad(x, pad)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return fn(xp, w, b, stride=s, dilation=d, groups=groups)


def pool_ref(kind, nd, x, k, s, pb, pe, ceil):
    """Pads (pb, pe) and ceil_mode's extra cells after the end made explicit (torch's own ceil_mode
    only knows symmetric pads), then a plain pool: max over -inf padding, or the mean over the
    real cells of each window (window sums of x and of a mask of real cells, by a conv with a
    kernel of ones; count_include_pad=False)."""
    pad = []
    for i in reversed(range(nd)):
        n = x.shape[2 + i]
        span = n + pb[i] + pe[i] - k[i]
        out = (span + s[i] - 1) // s[i] + 1 if ceil else span // s[i] + 1
        if ceil and (out - 1) * s[i] >= n + pb[i]:  # a window may not start in the pad after
            out -= 1
        pad += [pb[i], pe[i] + max((out - 1) * s[i] + k[i] - (n + pb[i] + pe[i]), 0)]
    if kind == "maxpool":
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
        return fn(F.pad(x, pad, value=-float("inf")), k, s)
    B, C = x.shape[:2]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    ones = torch.ones([1, 1] + list(k))

    def sums(v):
        v = F.pad(v, pad)
        return conv(v.reshape([B * C, 1] + list(v.shape[2:])), ones, stride=s)

    y = sums(x) / sums(torch.ones_like(x))
    return y.reshape([B, C] + list(y.shape[2:]))


CASES = [
    # kind, nd, B, C, F, in, k, s, d, pads (begins + ends), output_padding, groups, ceil
    ("conv", 1, 2, 3, 4, [17], [5], [2], [1], [2, 1], [0], 1, 0),
    ("conv", 1, 2, 4, 6, [12], [3], [1], [2], [0, 0], [0], 2, 0),
    ("conv", 3, 2, 2, 3, [5, 6, 4], [3, 2, 3], [1, 2, 1], [1, 1, 1], [1, 0, 1, 1, 1, 0], [0, 0, 0], 1, 0),
    ("conv", 3, 1, 4, 4, [6, 5, 6], [3, 3, 3], [2, 1, 2], [1, 2, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0], 4, 0),
    ("transpose", 2, 2, 3, 4, [5, 4], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], [1, 1], 1, 0),
    ("transpose", 2, 1, 4, 6, [4, 5], [4, 3], [2, 1], [1, 2], [1, 0, 2, 1], [0, 0], 2, 0),
    ("transpose", 2, 2, 2, 3, [3, 4], [2, 2], [2, 2], [1, 1], [0, 0, 0, 0], [0, 0], 1, 0),
    ("depthwise", 2, 2, 4, 1, [9, 8], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], [0, 0], 1, 0),
    ("depthwise", 2, 2, 3, 2, [10, 9], [3, 3], [2, 2], [1, 1], [0, 0, 1, 1], [0, 0], 1, 0),
    ("maxpool", 1, 2, 3, 0, [11], [3], [2], [1], [1, 0], [0], 1, 1),
    ("avgpool", 1, 2, 3, 0, [10], [3], [2], [1], [1, 1], [0], 1, 1),
    ("maxpool", 2, 2, 2, 0, [9, 8], [3, 3], [2, 2], [1, 1], [0, 1, 1, 0], [0, 0], 1, 1),
    ("avgpool", 2, 2, 2, 0, [8, 7], [3, 2], [2, 2], [1, 1], [1, 0, 0, 1], [0, 0], 1, 0),
    ("maxpool", 3, 1, 2, 0, [5, 6, 5], [2, 3, 2], [2, 2, 2], [1, 1, 1], [0, 1, 0, 1, 0, 1], [0, 0, 0], 1, 1),
    ("avgpool", 3, 2, 2, 0, [4, 5, 6], [2, 2, 3], [2, 2, 2], [1, 1, 1], [1, 0, 1, 0, 1, 1], [0, 0, 0], 1, 1),
]


def run(oracle, case):
    kind, nd, B, C, Fo, inn, k, s, d, pads, op, groups, ceil = case
    pb, pe = pads[:nd], pads[nd:]
    conv = "pool" not in kind
    x = rng.standard_normal([B, C] + inn).astype(np.float32)
    if kind == "depthwise":
        w = rng.standard_normal([C * Fo, 1] + k).astype(np.float32) * 0.3
        b = rng.standard_normal([C * Fo]).astype(np.float32)
    elif kind == "transpose":
        w = rng.standard_normal([C, Fo // groups] + k).astype(np.float32) * 0.3
        b = rng.standard_normal([Fo]).astype(np.float32)
    elif conv:
        w = rng.standard_normal([Fo, C // groups] + k).astype(np.float32) * 0.3
        b = rng.standard_normal([Fo]).astype(np.float32)
    xt = t(x)
    if conv:
        wt, bt = t(w), t(b)
        g = C if kind == "depthwise" else groups
        y = conv_ref(kind, nd, xt, wt, bt, s, d, pb, pe, op, g)
    else:
        y = pool_ref(kind, nd, xt, k, s, pb, pe, bool(ceil))
    gy = rng.standard_normal(list(y.shape)).astype(np.float32)
    (y * t(gy, False)).sum().backward()
    with tempfile.TemporaryDirectory() as tmp:
        x.tofile(os.path.join(tmp, "x.bin"))
        gy.tofile(os.path.join(tmp, "gy.bin"))
        if conv:
            w.tofile(os.path.join(tmp, "w.bin"))
            b.tofile(os.path.join(tmp, "b.bin"))
        args = [oracle, kind, str(nd), str(B), str(C), str(Fo)] + [str(v) for v in inn + k + s + d + pads + op]
        args += [str(groups), str(ceil), tmp]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            return "oracle failed: " + r.stderr.strip()
        got = {"y": y, "dx": xt.grad}
        if conv:
            got.update(dw=wt.grad, db=bt.grad)
        for name, ref in got.items():
            ref = ref.detach().numpy()
            k_out = np.fromfile(os.path.join(tmp, name + ".bin"), dtype=np.float32)
            if k_out.size != ref.size:
                return "%s: kiln has %d values, torch %d (shape %s)" % (name, k_out.size, ref.size, list(ref.shape))
            err = np.abs(k_out - ref.ravel()).max() / max(np.abs(ref).max(), 1e-6)
            if not err <= 1e-4:
                return "%s: max error %.3g relative to the largest value" % (name, err)
    return None


def main():
    oracle = sys.argv[1]
    passed = failed = 0
    for case in CASES:
        why = run(oracle, case)
        if why:
            failed += 1
            print("FAIL %s: %s" % (case, why))
        else:
            passed += 1
            print("ok   %s %dd %s" % (case[0], case[1], case[5:9]))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
