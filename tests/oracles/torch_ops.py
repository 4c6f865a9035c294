"""torch_ops.py IN OUT — PyTorch's values for the cases tests/test_torch_ops.c writes.

IN holds, per case, three lines: "op ndim d0 .. dk p0 p1 ..." (the op, the input's shape, the
op's parameters), the input x, and the upstream gradient dy (values as text). For each case OUT
gets two lines: y = op(x) and dx = d(sum(y * dy))/dx, as PyTorch 1.13 on the CPU computes them.
Run with /usr/bin/python3 (Debian's python3-torch)."""
import sys

import torch
import torch.nn.functional as F


def apply(op, x, p):
    if op == "relu6":
        return torch.nn.ReLU6()(x)
    if op == "hard_sigmoid":
        return torch.nn.Hardsigmoid()(x)
    if op == "hard_swish":
        return torch.nn.Hardswish()(x)
    if op == "clip":
        return torch.clamp(x, p[0], p[1])
    if op == "upsample":  # p: linear (0/1), then one factor per spatial axis
        nsp = x.dim() - 2
        factors = tuple(float(v) for v in p[1:1 + nsp])
        if p[0]:
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[nsp]
            return torch.nn.Upsample(scale_factor=factors, mode=mode, align_corners=False)(x)
        return torch.nn.Upsample(scale_factor=factors, mode="nearest")(x)
    if op == "global_maxpool":
        pool = {3: F.adaptive_max_pool1d, 4: F.adaptive_max_pool2d, 5: F.adaptive_max_pool3d}
        return pool[x.dim()](x, 1).flatten(1)
    raise SystemExit("torch_ops.py: unknown op " + op)


def main():
    lines = open(sys.argv[1]).read().splitlines()
    out = []
    for i in range(0, len(lines) - 2, 3):
        head = lines[i].split()
        op, nd = head[0], int(head[1])
        dims = [int(v) for v in head[2:2 + nd]]
        params = [float(v) for v in head[2 + nd:]]
        x = torch.tensor([float(v) for v in lines[i + 1].split()], dtype=torch.float32)
        x = x.reshape(dims).requires_grad_()
        y = apply(op, x, params)
        dy = torch.tensor([float(v) for v in lines[i + 2].split()], dtype=torch.float32)
        y.backward(dy.reshape(y.shape))
        out.append(" ".join("%.9g" % v for v in y.detach().flatten().tolist()))
        out.append(" ".join("%.9g" % v for v in x.grad.flatten().tolist()))
    open(sys.argv[2], "w").write("\n".join(out) + "\n")


main()
