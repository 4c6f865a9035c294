#!/usr/bin/python3
"""parity.py — `kiln import` against PyTorch on one network (ctest onnx_parity_*).

usage: parity.py NET KILN RUNNER WORKDIR [--opset N] [--size S] [--fold-bn]

NET: resnet18 | mobilenet_v2 | vgg11 (torchvision 0.14, random weights from torch.manual_seed,
eval mode) | keras_cnn (a small Keras-style CNN built in torch from the ops tf2onnx emits for
Conv2D/BatchNormalization/ReLU/MaxPooling2D/Dense/Softmax: Conv with bias, MatMul + Add, a
final Softmax). The network is exported by torch.onnx.export (dynamic batch; with
training=PRESERVE on the eval-mode model, so BatchNormalization nodes stay in the graph as kiln
keeps them; --fold-bn exports as torch does by default, batch norm folded into the convs),
imported by
`kiln import`, and its servable DIR/servable/1 run on 16 random inputs by RUNNER
(tests/onnx/run_servable.c: the servable's "output", the logits) and by `kiln predict
--model_dir ... --json` (its "probabilities"). Passes when max |kiln - torch| <= 1e-4 * max
|torch logit| (for keras_cnn, whose final Softmax kiln drops into the loss, on the
probabilities, which the servable computes from the logits).
The import writes repeated sub-graphs as model.blocks: for resnet18 (its basic blocks) and
mobilenet_v2 (its inverted residuals, Add inside) model.yaml must use them and be shorter than
`kiln import --flat`'s; for the others (nothing repeats) it must equal the flat one. Either
way the two servables have the same parameter names (and bytes) and give identical outputs.
Then model.yaml with `init_from:` pointing at the .onnx itself (instead of
weights.safetensors) is built by `RUNNER --config`: every parameter must load, and its outputs
must equal the imported servable's exactly (for resnet18, also kiln's built-in `resnet`
backbone scoped as `backbone` with init_from {path: the .onnx, map: {"": backbone/}}).
Prints the numbers; exit 0 on pass, 1 on a mismatch, 2 when a step fails.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import torch
import torchvision


class KerasCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(16)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc1 = torch.nn.Linear(32 * 8 * 8, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = self.pool(x)
        x = torch.flatten(x, 1)
        x = torch.relu(torch.matmul(x, self.fc1.weight.t()) + self.fc1.bias)  # MatMul + Add
        return torch.softmax(self.fc2(x), dim=-1)


def build(net, size):
    torch.manual_seed(0)
    if net == "keras_cnn":
        m = KerasCNN()
    else:
        m = getattr(torchvision.models, net)(num_classes=10)
    # random running statistics, so that batch norm is not the identity
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def st_header(path):
    """The safetensors header (name -> dtype, shape, offsets), names in file order."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n).decode())


def check_blocks(net, kiln, runner, onnx_path, out, work, logits, env):
    """The block form against `kiln import --flat`; returns an exit code (0: pass)."""
    flat = os.path.join(work, "imported_flat")
    r = subprocess.run([kiln, "import", onnx_path, "--to", flat, "--flat"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        print(r.stderr)
        print("kiln import --flat failed with exit %d" % r.returncode)
        return 2
    yb = open(os.path.join(out, "model.yaml")).read()
    yf = open(os.path.join(flat, "model.yaml")).read()
    hb = st_header(os.path.join(out, "servable", "1", "weights.safetensors"))
    hf = st_header(os.path.join(flat, "servable", "1", "weights.safetensors"))
    hb.pop("__metadata__", None), hf.pop("__metadata__", None)
    if list(hb) != list(hf) or hb != hf:
        print("servable parameters differ: block form %d names, --flat %d; only in one: %s" %
              (len(hb), len(hf), sorted(set(hb) ^ set(hf))[:8]))
        return 1
    if "blocks:" in yf:
        print("kiln import --flat wrote model.blocks")
        return 1
    uses = yb.count("- block: {use: ")
    if net in ("resnet18", "mobilenet_v2"):
        need = {"resnet18": "- block: {use: residual, name: layer1/0, filters: 64}",
                "mobilenet_v2": "- add: {name: add, from: [input, conv/3]}"}[net]
        if "\n  blocks:\n" not in yb or need not in yb or len(yb) >= len(yf):
            print(yb)
            print("%s: model.yaml should use model.blocks (with '%s') and be shorter than the "
                  "flat one (%d vs %d bytes)" % (net, need, len(yb), len(yf)))
            return 1
    elif yb != yf:
        print(yb)
        print("%s: nothing repeats, so model.yaml should be the flat one" % net)
        return 1
    xp, yp = os.path.join(work, "x.f32"), os.path.join(work, "y_flat.f32")
    r = subprocess.run([runner, os.path.join(flat, "servable", "1"), "16", xp, yp],
                       capture_output=True, text=True, env=env)
    yflat = np.fromfile(yp, dtype="<f4").reshape(16, -1) if r.returncode == 0 else None
    if yflat is None or not np.array_equal(yflat, logits):
        print(r.stderr)
        print("the --flat servable's outputs differ from the block form's")
        return 1
    print("model.yaml: %d block uses, %d bytes (--flat: %d bytes); the same %d parameters and "
          "outputs" % (uses, len(yb), len(yf), len(hb)))
    return 0


def main():
    args = sys.argv[1:]
    if len(args) < 4:
        print(__doc__)
        return 2
    net, kiln, runner, work = args[0], args[1], args[2], args[3]
    opset, size = 13, None
    if "--opset" in args:
        opset = int(args[args.index("--opset") + 1])
    if "--size" in args:
        size = int(args[args.index("--size") + 1])
    size = size or {"vgg11": 224, "keras_cnn": 32}.get(net, 64)
    torch.set_num_threads(2)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    m = build(net, size)
    x = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = m(x).numpy()
    onnx_path = os.path.join(work, net + ".onnx")
    torch.onnx.export(m, x[:1], onnx_path, opset_version=opset, input_names=["input"],
                      output_names=["output"],
                      training=(torch.onnx.TrainingMode.EVAL if "--fold-bn" in args
                                else torch.onnx.TrainingMode.PRESERVE),
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    out = os.path.join(work, "imported")
    r = subprocess.run([kiln, "import", onnx_path, "--to", out], capture_output=True, text=True)
    print(r.stderr.strip())
    if r.returncode != 0:
        print("kiln import failed with exit %d" % r.returncode)
        return 2
    version = os.path.join(out, "servable", "1")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    x.numpy().astype("<f4").tofile(os.path.join(work, "x.f32"))
    r = subprocess.run([runner, version, "16", os.path.join(work, "x.f32"),
                        os.path.join(work, "y.f32")], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(r.stderr)
        print("run_servable failed with exit %d" % r.returncode)
        return 2
    logits = np.fromfile(os.path.join(work, "y.f32"), dtype="<f4").reshape(16, -1)
    rc = check_blocks(net, kiln, runner, onnx_path, out, work, logits, env)
    if rc:
        return rc
    # model.init_from: the .onnx itself instead of weights.safetensors gives the same model
    cfg = open(os.path.join(out, "model.yaml")).read()
    cfg = cfg.replace("init_from: weights.safetensors", "init_from: " + onnx_path, 1)
    cfg = cfg.replace("# data:\n", "data: {source: npy, train: {}, task: classification}\n", 1)
    with open(os.path.join(work, "from_onnx.yaml"), "w") as f:
        f.write(cfg)
    r = subprocess.run([runner, "--config", os.path.join(work, "from_onnx.yaml"),
                        os.path.join(work, "from_onnx")], capture_output=True, text=True, env=env)
    print(r.stderr.strip())
    loaded = re.search(r"init_from \S+\.onnx \(convention kiln\): loaded (\d+) of (\d+) "
                       r"parameters\n?$", r.stderr)
    if r.returncode != 0 or not loaded or loaded.group(1) != loaded.group(2):
        print("init_from %s.onnx: not every parameter loaded (exit %d)" % (net, r.returncode))
        return 1
    r = subprocess.run([runner, os.path.join(work, "from_onnx", "1"), "16",
                        os.path.join(work, "x.f32"), os.path.join(work, "y2.f32")],
                       capture_output=True, text=True, env=env)
    y2 = np.fromfile(os.path.join(work, "y2.f32"), dtype="<f4").reshape(16, -1) \
        if r.returncode == 0 else None
    if y2 is None or not np.array_equal(y2, logits):
        print(r.stderr)
        print("init_from %s.onnx: outputs differ from the imported weights' (%s)" %
              (net, "failed" if y2 is None else "max diff %g" % np.abs(y2 - logits).max()))
        return 1
    print("init_from %s.onnx: %s parameters loaded, same outputs as weights.safetensors" %
          (net, loaded.group(1)))
    if net == "resnet18" and "--fold-bn" not in args:
        # the built-in backbone (torchvision's names, scoped) from the same .onnx
        with open(os.path.join(work, "backbone.yaml"), "w") as f:
            f.write("data: {source: npy, train: {}, task: classification}\n"
                    "loss: softmax_cross_entropy\nmodel:\n  input: [3, %d, %d]\n"
                    "  init_from: {path: %s, map: {\"\": backbone/}}\n  layers:\n"
                    "    - resnet: {depth: 18, classes: 10, name: backbone}\n"
                    % (size, size, onnx_path))
        r = subprocess.run([runner, "--config", os.path.join(work, "backbone.yaml"),
                            os.path.join(work, "backbone")], capture_output=True, text=True)
        print(r.stderr.strip())
        r2 = subprocess.run([runner, os.path.join(work, "backbone", "1"), "16",
                             os.path.join(work, "x.f32"), os.path.join(work, "y3.f32")],
                            capture_output=True, text=True, env=env)
        y3 = np.fromfile(os.path.join(work, "y3.f32"), dtype="<f4").reshape(16, -1) \
            if r.returncode == 0 and r2.returncode == 0 else None
        if "loaded 102 of 102 parameters" not in r.stderr or y3 is None or \
                not np.array_equal(y3, logits):
            print(r2.stderr)
            print("init_from resnet18.onnx into the resnet backbone: not the same model")
            return 1
        print("init_from resnet18.onnx into `- resnet: {name: backbone}`: same outputs")
    np.save(os.path.join(work, "x.npy"), x.numpy())
    r = subprocess.run([kiln, "predict", "--model_dir", version, "--json", "--batch", "16",
                        os.path.join(work, "x.npy")], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(r.stderr)
        print("kiln predict failed with exit %d" % r.returncode)
        return 2
    probs = np.array([p["probabilities"] for p in json.loads(r.stdout)["predictions"]])
    if net == "keras_cnn":
        got = probs
    else:
        got = logits
        want = torch.softmax(torch.from_numpy(ref), -1).numpy()
        pd = float(np.abs(probs - want).max())
        print("probabilities from kiln predict: max difference %.3g" % pd)
        if pd > 1e-5:
            print("MISMATCH in the served probabilities")
            return 1
    if got.shape != ref.shape:
        print("shape: kiln %s, torch %s" % (got.shape, ref.shape))
        return 1
    diff = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    ok = diff <= 1e-4 * scale
    print("%s opset %d %dx%d: max |kiln - torch| = %.3g, max |torch| = %.3g, ratio %.3g: %s" %
          (net, opset, size, size, diff, scale, diff / scale, "ok" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
