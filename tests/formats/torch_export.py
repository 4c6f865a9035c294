"""torch_export.py — docs/formats.md checked against kiln's files, with PyTorch (ctest formats_torch).

    /usr/bin/python3 tests/formats/torch_export.py KILN KILN_EXPORT_LOGITS SOURCE_DIR

Trains a small CNN with kiln (convolutions with TensorFlow's asymmetric "same" padding, batch
norm, max and average pooling, flatten, dropout, dense; Adam with EMA), exports it, and checks:
  - the Python example of docs/formats.md (run as it is written there) gives kiln's logits
    (kiln_export_logits, the library's own forward pass) within 1e-5;
  - checkpoint and export tensor names, dtypes, shapes and metadata as the page lists them;
  - one Adam step and one EMA update, replayed from two consecutive checkpoints with the page's
    formulas and with torch.optim.Adam, give the second checkpoint's tensors;
  - the slot names of SGD with momentum and RMSprop with momentum.
Needs Debian's python3-torch and python3-numpy (scripts/setup.sh installs them): without them
the imports fail and so does the test. Prints "N passed, N failed" like the CLI tests; exit 1 on
any failure.
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

KILN, LOGITS, SRC = sys.argv[1:4]
FM = "/usr/share/datasets/fashion-mnist"
passed = failed = 0


def check(what, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok   {what}")
    else:
        failed += 1
        print(f"  FAIL {what} {detail}")


# The page's example, exactly as written there.
doc = open(os.path.join(SRC, "docs/formats.md")).read()
blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
assert len(blocks) == 1, f"docs/formats.md has {len(blocks)} python blocks, expected 1"
example = {}
exec(blocks[0], example)
load_safetensors, kiln_forward = example["load_safetensors"], example["kiln_forward"]

CONFIG = """experiment: formats
seed: 5
data:
  source: idx
  train: {images: %(fm)s/t10k-images-idx3-ubyte.gz, labels: %(fm)s/t10k-labels-idx1-ubyte.gz}
  validation_split: 0.1
  normalize: {scale: 0.00392156862745098}
  batch_size: 32
model:
  input: [1, 28, 28]
  layers:
    - conv2d: {filters: 6, kernel: 4, padding: same}
    - batchnorm
    - relu
    - maxpool2d: {size: 3, strides: 2, padding: same}
    - conv2d: {filters: 8, kernel: 3, strides: 2, padding: same, activation: relu, name: second}
    - avgpool2d: {size: 2, padding: same}
    - flatten
    - dropout: {rate: 0.2}
    - dense: {units: 16, activation: tanh}
    - dense: {units: 10}
loss: softmax_cross_entropy
optimizer: %(opt)s
train:
  max_steps: %(steps)d
  ema_decay: 0.9
  checkpoint: {every_steps: 1, keep: 2}
log: {tensorboard: false}
"""


def train(tmp, name, opt, steps):
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(CONFIG % {"fm": FM, "opt": opt, "steps": steps})
    runs = os.path.join(tmp, "runs")
    out = subprocess.run([KILN, "train", path, "--runs-dir", runs, "--name", name, "--quiet"],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"kiln train failed: {out.stderr}")
    base = os.path.join(runs, "formats")
    return os.path.join(base, next(d for d in sorted(os.listdir(base)) if d.startswith(name + "-")))


def header(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), n


with tempfile.TemporaryDirectory(prefix="kiln-formats-") as tmp:
    run = train(tmp, "adam", "{adam: {learning_rate: 0.01, epsilon: 0.001}}", 30)
    out = subprocess.run([KILN, "export", run, "--to", os.path.join(tmp, "export")],
                         capture_output=True, text=True)
    check("kiln export", out.returncode == 0, out.stderr)
    export = os.path.join(tmp, "export", "1")

    # ---- logits: the page's example against kiln's forward pass ----
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, (16, 1, 28, 28)).astype(np.float32)
    with open(os.path.join(tmp, "in.f32"), "wb") as f:
        f.write(raw.tobytes())
    out = subprocess.run([LOGITS, export, os.path.join(tmp, "in.f32"), os.path.join(tmp, "out.f32")],
                         capture_output=True, text=True)
    check("kiln_export_logits", out.returncode == 0, out.stderr)
    kiln = np.fromfile(os.path.join(tmp, "out.f32"), "<f4").reshape(16, 10)
    with torch.no_grad():
        mine = kiln_forward(export, raw).numpy()
    diff = float(np.abs(mine - kiln).max())
    check(f"logits within 1e-5 (max |diff| {diff:.2e}, logits up to {np.abs(kiln).max():.2f})",
          mine.shape == (16, 10) and diff <= 1e-5)

    # ---- names, dtypes, shapes, metadata ----
    params = {"conv2d_1.kernel": [6, 1, 4, 4], "conv2d_1.bias": [6],
              "batch_normalization_1.gamma": [6], "batch_normalization_1.beta": [6],
              "batch_normalization_1.moving_mean": [6], "batch_normalization_1.moving_variance": [6],
              "second.kernel": [8, 6, 3, 3], "second.bias": [8],
              "dense_1.kernel": [8 * 4 * 4, 16], "dense_1.bias": [16],
              "dense_2.kernel": [16, 10], "dense_2.bias": [10]}
    frozen = {"batch_normalization_1.moving_mean", "batch_normalization_1.moving_variance"}
    h, _ = header(os.path.join(export, "weights.safetensors"))
    meta = h.pop("__metadata__", None)
    check("export: one tensor per parameter, its shape", {k: v["shape"] for k, v in h.items()} == params,
          sorted(h))
    check("export: every tensor F32", all(v["dtype"] == "F32" for v in h.values()))
    check("export: metadata kiln.format 1 only", meta == {"kiln.format": "1"}, meta)
    ck = [os.path.join(run, "checkpoints", f"step-{s}", "weights.safetensors") for s in (29, 30)]
    h, _ = header(ck[1])
    meta = h.pop("__metadata__", None)
    want = {}
    for p, shape in params.items():
        want[p] = shape
        for slot in ([] if p in frozen else ["adam_m", "adam_v"]) + ["ema"]:
            want[f"{p}.{slot}"] = shape
    check("checkpoint: P, P.adam_m, P.adam_v (trainable), P.ema", {k: v["shape"] for k, v in h.items()} == want,
          sorted(set(h) ^ set(want)))
    check("checkpoint: every tensor F32", all(v["dtype"] == "F32" for v in h.values()))
    check("checkpoint: metadata keys in order",
          list(meta) == ["kiln.format", "kiln.optimizer", "kiln.iterations", "kiln.ema_updates",
                         "kiln.step", "kiln.config_hash"], meta)
    state = json.load(open(os.path.join(run, "checkpoints", "step-30", "state.json")))
    check("checkpoint: metadata values",
          meta["kiln.format"] == "1" and meta["kiln.optimizer"] == "adam" and meta["kiln.iterations"] == "30"
          and meta["kiln.ema_updates"] == "30" and meta["kiln.step"] == "30"
          and re.fullmatch(r"[0-9a-f]{16}", meta["kiln.config_hash"]) is not None, meta)
    check("checkpoint: config hash as state.json", meta["kiln.config_hash"] == state.get("config_hash"),
          state.get("config_hash"))
    T29, m29 = load_safetensors(ck[0])
    T30, m30 = load_safetensors(ck[1])
    E, _ = load_safetensors(os.path.join(export, "weights.safetensors"))
    check("export holds the EMA weights", all(torch.equal(E[p], T30[p + ".ema"]) for p in params))

    # ---- one Adam step and one EMA update, replayed ----
    b1, b2, eps, lr, t = 0.9, 0.999, 0.001, 0.01, 30
    worst_formula = worst_torch = worst_ema = 0.0
    d = min(0.9, (1 + 29) / (10 + 29))
    for p in params:
        if p not in frozen:
            m0, v0, m1, v1 = (T29[p + ".adam_m"].double(), T29[p + ".adam_v"].double(),
                              T30[p + ".adam_m"].double(), T30[p + ".adam_v"].double())
            g = (m1 - b1 * m0) / (1 - b1)  # the step's gradient, from the first moments
            p0 = T29[p].double()
            v = b2 * v0 + (1 - b2) * g * g
            mine = p0 - lr / (1 - b1 ** t) * m1 / (v.sqrt() / (1 - b2 ** t) ** 0.5 + eps)
            worst_formula = max(worst_formula, float((mine - T30[p]).abs().max()))
            w = torch.nn.Parameter(T29[p].clone())
            opt = torch.optim.Adam([w], lr=lr, betas=(b1, b2), eps=eps)
            opt.state[w] = {"step": torch.tensor(29.0), "exp_avg": T29[p + ".adam_m"].clone(),
                            "exp_avg_sq": T29[p + ".adam_v"].clone()}
            w.grad = g.float()
            opt.step()
            worst_torch = max(worst_torch, float((w.detach() - T30[p]).abs().max()))
        ema = d * T29[p + ".ema"].double() + (1 - d) * T30[p].double()
        worst_ema = max(worst_ema, float((ema - T30[p + ".ema"]).abs().max()))
    check(f"Adam step by the page's formula (max |diff| {worst_formula:.1e})", worst_formula < 2e-6)
    check(f"Adam step by torch.optim.Adam (max |diff| {worst_torch:.1e})", worst_torch < 2e-6)
    check(f"EMA update by the page's formula (max |diff| {worst_ema:.1e})", worst_ema < 1e-6)

    # ---- the other optimizers' slot names ----
    for opt, slots in (("{sgd: {learning_rate: 0.01, momentum: 0.9}}", ["momentum"]),
                       ("{rmsprop: {learning_rate: 0.001, momentum: 0.5}}", ["rms", "momentum"])):
        r = train(tmp, opt[1:4], opt, 2)
        h, _ = header(os.path.join(r, "checkpoints", "step-2", "weights.safetensors"))
        meta = h.pop("__metadata__")
        got = sorted({k.split(".")[-1] for k in h if k.startswith("dense_2.kernel.")})
        check(f"{opt}: slots {slots} and ema", got == sorted(slots + ["ema"]), got)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
