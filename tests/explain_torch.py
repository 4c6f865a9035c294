#!/usr/bin/python3
"""PyTorch reimplementation of kiln explain's gradient methods, for tests/cli/explain.sh and
bench/explain_vs_torch.sh. It rebuilds a kiln export's model (model.json's config: flatten,
dense, conv2d, maxpool2d, dropout; relu / none) from weights.safetensors with torch.nn, applies
the export's preprocessing like kiln does (float32 raw * scale), and computes attributions with
torch.autograd, independently of kiln's code.

    explain_torch.py parity EXPORT X.npy KILN_OUT_ROOT METHOD...
        compares kiln's <KILN_OUT_ROOT>/<method>/<x>-<i>.npy (and the JSON targets) with this
        reimplementation; prints the worst relative error per method (max |kiln - torch| over
        max |torch|, per input) and exits 1 when one is above 1e-4
    explain_torch.py bench EXPORT X.npy THREADS STEPS
        integrated gradients (black baseline, trapezoid, STEPS points, one batch per input) for
        every input; prints "RESULT seconds=<s>"
    explain_torch.py randomize EXPORT OUT        a copy of the export with re-drawn weights
                                                 (Adebayo et al. 2018's model randomization)
    explain_torch.py spearman DIR_A DIR_B N      mean Spearman rank correlation of the NPYs
    explain_torch.py occlude X.npy SAL_DIR OUT_PREFIX K SEED
        for each input, a copy with the KxK window of highest total saliency set to 0, and a
        copy with a random KxK window set to 0 (OUT_PREFIX-top.npy, OUT_PREFIX-rand.npy)
"""
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

METHODS = ("saliency", "grad_x_input", "integrated_gradients", "gradcam", "gradcam_pp")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=np.float32).reshape(v["shape"]).copy()
    return out, hdr


def write_safetensors(path, tensors, hdr):
    offs, blobs, at = {}, [], 0
    for k in sorted(tensors):
        b = tensors[k].astype(np.float32).tobytes()
        offs[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    if "__metadata__" in hdr:
        offs["__metadata__"] = hdr["__metadata__"]
    h = json.dumps(offs).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Net(torch.nn.Module):
    """The layer list of model.json's config, in dtype (float32, kiln's precision: ReLU and
    max-pooling decisions at the edge of float precision then fall alike; in float64 a few
    path points of integrated gradients land on the other side of a kink)."""

    def __init__(self, export, dtype=torch.float32):
        super().__init__()
        meta = json.load(open(os.path.join(export, "model.json")))
        self.scale = np.float32(meta["preprocessing"]["scale"] or 1)
        self.dtype = dtype
        w, _ = read_safetensors(os.path.join(export, "weights.safetensors"))
        self.ops, counts = [], {}
        for layer in meta["config"]["model"]["layers"]:
            kind, opt = (layer, {}) if isinstance(layer, str) else next(iter(layer.items()))
            opt = opt or {}
            counts[kind] = counts.get(kind, 0) + 1
            name = opt.get("name") or "%s_%d" % (kind, counts[kind])
            t = lambda k: torch.tensor(w[name + "." + k], dtype=dtype)
            act = opt.get("activation", "none")
            if act not in ("relu", "none", None):
                raise SystemExit("explain_torch.py: activation %s not reimplemented" % act)
            if kind == "dense":
                self.ops.append((name, "dense", t("kernel"), t("bias"), act))
            elif kind == "conv2d":
                if opt.get("padding") != "same" or opt.get("strides", 1) != 1:
                    raise SystemExit("explain_torch.py: only stride-1 'same' convolutions")
                self.ops.append((name, "conv2d", t("kernel"), t("bias"), act))
            elif kind == "maxpool2d":
                self.ops.append((name, "maxpool2d", opt.get("size", 2)))
            elif kind == "flatten":
                self.ops.append((name, "flatten"))
            elif kind == "dropout":
                pass  # identity at inference
            else:
                raise SystemExit("explain_torch.py: layer %s not reimplemented" % kind)

    def preprocess(self, raw):
        return torch.tensor(raw.astype(np.float32) * self.scale).to(self.dtype)

    def forward(self, x, keep=None):
        acts = {}
        for op in self.ops:
            if op[1] == "dense":
                x = x @ op[2] + op[3]
            elif op[1] == "conv2d":
                k = op[2]
                x = F.conv2d(x, k, op[3], padding=(k.shape[2] // 2, k.shape[3] // 2))
            elif op[1] == "maxpool2d":
                x = F.max_pool2d(x, op[2])
            elif op[1] == "flatten":
                x = x.reshape(x.shape[0], -1)
            if op[1] in ("dense", "conv2d") and op[4] == "relu":
                x = torch.relu(x)
            if keep is not None and op[0] == keep:
                x.retain_grad()
                acts[op[0]] = x
        return x, acts


def input_grad(net, x, target):
    x = x.clone().requires_grad_(True)
    z, _ = net(x)
    z[torch.arange(len(x)), target].sum().backward()
    return x.grad.detach(), z.detach()


def integrated(net, x, target, steps):
    """x [C, H, W] one input; black baseline (preprocessed zeros = 0 for a scaled input)."""
    # the path points as kiln forms them: float32 b + a (x - b)
    # max-pooling ties along the path then break alike
    a = (torch.arange(steps, dtype=torch.float32) / (steps - 1)).reshape(-1, 1, 1, 1)
    b = torch.zeros_like(x)
    path = (b.float()[None] + a * (x.float() - b.float())[None]).to(x.dtype)
    g, z = input_grad(net, path, torch.full((steps,), target, dtype=torch.long))
    w = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
    w[0] /= 2
    w[-1] /= 2
    return (x - b) * (w.reshape(-1, 1, 1, 1) * g.double()).sum(0).to(x.dtype), z[:, target]


def gradcam(net, x, target, layer, pp):
    x = x.clone().requires_grad_(True)
    z, acts = net(x, keep=layer)
    z[torch.arange(len(x)), target].sum().backward()
    A, G = acts[layer].detach(), acts[layer].grad.detach()
    if not pp:
        w = G.mean(dim=(2, 3), keepdim=True)
    else:
        g2, g3 = G**2, G**3
        sa = A.sum(dim=(2, 3), keepdim=True)
        den = 2 * g2 + sa * g3
        den = torch.where(den != 0, den, torch.full_like(den, 1e-7))
        al = torch.where(G != 0, g2 / den, torch.zeros_like(G))
        w = (al * torch.relu(G)).sum(dim=(2, 3), keepdim=True)
    cam = torch.relu((w * A).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def parity(export, xfile, root, methods):
    net = Net(export)
    raw = np.load(xfile)
    x = net.preprocess(raw)
    stem = os.path.splitext(os.path.basename(xfile))[0]
    convs = [op[0] for op in net.ops if op[1] == "conv2d"]
    bad = 0
    for m in methods:
        kdir = os.path.join(root, m)
        kiln = np.stack([np.load(os.path.join(kdir, "%s-%d.npy" % (stem, i))) for i in range(len(x))])
        tg = [json.load(open(os.path.join(kdir, "%s-%d.json" % (stem, i))))["target"] for i in range(len(x))]
        target = torch.tensor(tg)
        g, z = input_grad(net, x, target)
        pred_ok = bool((z.argmax(1) == target).all())
        if m == "saliency":
            ref = g.abs()
        elif m == "grad_x_input":
            ref = g * x
        elif m == "integrated_gradients":
            ref = torch.stack([integrated(net, x[i], tg[i], 64)[0] for i in range(len(x))])
        else:
            ref = gradcam(net, x, target, convs[-1], m == "gradcam_pp")
        ref = ref.numpy().reshape(kiln.shape)
        worst = max(np.abs(kiln[i] - ref[i]).max() / max(np.abs(ref[i]).max(), 1e-30) for i in range(len(x)))
        ok = worst <= 1e-4 and pred_ok
        bad += not ok
        print("%-22s max relative error %.3g  targets agree: %s  %s" % (m, worst, pred_ok, "ok" if ok else "FAIL"))
    return 1 if bad else 0


def bench(export, xfile, threads, steps):
    torch.set_num_threads(threads)
    net32 = Net(export)
    x = net32.preprocess(np.load(xfile))
    tg = input_grad(net32, x, torch.zeros(len(x), dtype=torch.long))[1].argmax(1)
    a = torch.arange(steps, dtype=torch.float32) / (steps - 1)
    w = torch.full((steps,), 1.0 / (steps - 1))
    w[0] /= 2
    w[-1] /= 2
    t0 = time.perf_counter()
    for i in range(len(x)):
        path = a.reshape(-1, 1, 1, 1) * x[i][None]
        g, _ = input_grad(net32, path, torch.full((steps,), int(tg[i]), dtype=torch.long))
        attr = x[i] * (w.reshape(-1, 1, 1, 1) * g).sum(0)
    print("RESULT seconds=%.3f" % (time.perf_counter() - t0))
    return 0 if torch.isfinite(attr).all() else 1


def randomize(export, out):
    os.makedirs(out, exist_ok=True)
    w, hdr = read_safetensors(os.path.join(export, "weights.safetensors"))
    rng = np.random.default_rng(7)
    r = {k: (rng.standard_normal(v.shape) * (v.std() + 1e-3)).astype(np.float32) for k, v in w.items()}
    write_safetensors(os.path.join(out, "weights.safetensors"), r, hdr)
    with open(os.path.join(export, "model.json")) as f, open(os.path.join(out, "model.json"), "w") as g:
        g.write(f.read())
    return 0


def ranks(a):
    r = np.empty(len(a))
    r[np.argsort(a, kind="stable")] = np.arange(len(a))
    return r


def spearman(da, db, n):
    rs = []
    for i in range(n):
        a = np.load(os.path.join(da, "x-%d.npy" % i)).ravel()
        b = np.load(os.path.join(db, "x-%d.npy" % i)).ravel()
        rs.append(np.corrcoef(ranks(a), ranks(b))[0, 1])
    print("RESULT spearman=%.4f" % np.mean(rs))
    return 0


def occlude(xfile, sal, prefix, k, seed):
    raw = np.load(xfile)
    rng = np.random.default_rng(seed)
    top, rnd = raw.copy(), raw.copy()
    H, W = raw.shape[-2:]
    for i in range(len(raw)):
        s = np.load(os.path.join(sal, "x-%d.npy" % i)).reshape(-1, H, W).sum(0)
        c = np.cumsum(np.cumsum(np.pad(s, ((1, 0), (1, 0))), 0), 1)
        box = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
        y, x = np.unravel_index(np.argmax(box), box.shape)
        top[i, ..., y : y + k, x : x + k] = 0
        y, x = rng.integers(0, H - k + 1), rng.integers(0, W - k + 1)
        rnd[i, ..., y : y + k, x : x + k] = 0
    np.save(prefix + "-top.npy", top)
    np.save(prefix + "-rand.npy", rnd)
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if cmd == "parity":
        sys.exit(parity(args[0], args[1], args[2], args[3:] or METHODS))
    if cmd == "bench":
        sys.exit(bench(args[0], args[1], int(args[2]), int(args[3])))
    if cmd == "randomize":
        sys.exit(randomize(args[0], args[1]))
    if cmd == "spearman":
        sys.exit(spearman(args[0], args[1], int(args[2])))
    if cmd == "occlude":
        sys.exit(occlude(args[0], args[1], args[2], int(args[3]), int(args[4])))
    raise SystemExit("explain_torch.py: unknown command " + cmd)
