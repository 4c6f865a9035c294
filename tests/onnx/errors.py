#!/usr/bin/python3
"""errors.py — `kiln import` on small hand-made ONNX models (ctest onnx_import_cli).

usage: errors.py KILN RUNNER WORKDIR

Checks the refusals (exit 2, a message naming the node, its index, the op and the attribute
where there is one): bytes that are not a model, an unsupported op, attribute and attribute
value, a missing initializer, non-float weights, a dynamic spatial dimension, usage errors, an
existing servable; and the mappings a torchvision export does not reach, against numpy:
Gemm with transB=0, alpha and beta; Clip with opset-10 attributes (-> relu); Reshape with a
constant shape; a layout no-op Transpose; Identity; a chain gets no from:, a branch does;
model.init_from with an .onnx file (its report, convention torchvision and bad models refused);
repeated scopes become model.blocks (a differing value a block parameter; a unit whose inner
layer is read from outside stays flat), with --flat's parameter names and outputs.
Prints "N passed, N failed".
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KILN, RUNNER, WORK = sys.argv[1:4]
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def model(nodes, inits, in_shape=("N", 3, 8, 8), out_shape=None, opset=13, in_type=TensorProto.FLOAT):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", in_type, list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def run_import(name, m=None, raw=None, extra=()):
    path = os.path.join(WORK, name + ".onnx")
    with open(path, "wb") as f:
        f.write(raw if raw is not None else m.SerializeToString())
    out = os.path.join(WORK, name)
    args = [KILN, "import", path, "--to", out] + list(extra)
    return subprocess.run(args, capture_output=True, text=True), out


def refused(name, m, *needles, raw=None):
    r, _ = run_import(name, m, raw)
    ok = r.returncode == 2 and all(n in r.stderr for n in needles)
    check(name, ok, "exit %d, stderr: %s" % (r.returncode, r.stderr.strip()))


def w(name, *shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)


def predict(out, x):
    xp, yp = os.path.join(WORK, "x.f32"), os.path.join(WORK, "y.f32")
    x.astype("<f4").tofile(xp)
    r = subprocess.run([RUNNER, os.path.join(out, "servable", "1"), str(len(x)), xp, yp],
                       capture_output=True, text=True)
    if r.returncode:
        print(r.stderr)
        return None
    return np.fromfile(yp, dtype="<f4").reshape(len(x), -1)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
conv = helper.make_node("Conv", ["x", "w"], ["c"], name="/stem/Conv", pads=[1, 1, 1, 1])
gap = helper.make_node("GlobalAveragePool", ["c"], ["g"], name="/gap/GlobalAveragePool")
flat = helper.make_node("Flatten", ["g"], ["y"], name="/Flatten")
good = model([conv, gap, flat], [w("w", 4, 3, 3, 3)], out_shape=["N", 4])

# ---- refusals ----
refused("not_a_model", None, "not an ONNX model", raw=b"this is not a protobuf \xff\xff\xff")
refused("truncated", None, "not an ONNX model", raw=good.SerializeToString()[:-7])
erf = helper.make_node("Erf", ["c"], ["e"], name="my_erf")
refused("unsupported_op", model([conv, erf, helper.make_node("GlobalAveragePool", ["e"], ["g"]),
                                  flat], [w("w", 4, 3, 3, 3)]),
        "node 1 'my_erf' (Erf)", "not supported")
bad_attr = helper.make_node("Conv", ["x", "w"], ["c"], name="/stem/Conv", pads=[1, 1, 1, 1],
                            fancy=3)
refused("unsupported_attribute", model([bad_attr, gap, flat], [w("w", 4, 3, 3, 3)]),
        "node 0 '/stem/Conv' (Conv)", "attribute 'fancy'")
same_lower = helper.make_node("ConvTranspose", ["x", "w"], ["c"], name="up", auto_pad="SAME_UPPER")
refused("unsupported_attribute_value", model([same_lower, gap, flat], [w("w", 3, 4, 3, 3)]),
        "node 0 'up' (ConvTranspose)", "attribute 'auto_pad'", "SAME_UPPER")
tr = helper.make_node("Transpose", ["c"], ["t"], name="/perm/Transpose", perm=[0, 2, 3, 1])
refused("transpose_moving_data", model([conv, tr, helper.make_node("Flatten", ["t"], ["y"])],
                                       [w("w", 4, 3, 3, 3)]),
        "node 1 '/perm/Transpose' (Transpose)", "attribute 'perm'")
pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads")
refused("pad_nonzero", model([helper.make_node("Pad", ["x", "pads"], ["xp"], name="zp"),
                              helper.make_node("Conv", ["xp", "w"], ["c"], name="/stem/Conv"),
                              gap, flat], [pads, w("w", 4, 3, 3, 3)]),
        "node 0 'zp' (Pad)", "attribute 'pads'", "non-zero padding")
refused("missing_initializer", model([conv, gap, flat], []), "node 0 '/stem/Conv' (Conv)",
        "'w' is missing")
refused("non_float_weights", model([conv, gap, flat], [w("w", 4, 3, 3, 3, dtype=np.float64)]),
        "initializer 'w'", "data type 11")
refused("dynamic_spatial_dims", model([conv, gap, flat], [w("w", 4, 3, 3, 3)],
                                      in_shape=("N", 3, "H", "W")),
        "dimension 2 is dynamic", "'H'")
refused("non_float_input", model([conv, gap, flat], [w("w", 4, 3, 3, 3)],
                                 in_type=TensorProto.INT64), "not a float32 tensor")
refused("old_opset", model([conv, gap, flat], [w("w", 4, 3, 3, 3)], opset=5), "opset 5")
bad_shape = w("w", 4, 3, 3, 3)
bad_shape.raw_data = bad_shape.raw_data[:-4]
refused("short_weights", model([conv, gap, flat], [bad_shape]), "initializer 'w'", "values of data")
r = subprocess.run([KILN, "import", os.path.join(WORK, "good.onnx")], capture_output=True, text=True)
check("usage_missing_to", r.returncode == 2 and "--to" in r.stderr, r.stderr)
r = subprocess.run([KILN, "import", "--to", WORK + "/x"], capture_output=True, text=True)
check("usage_missing_model", r.returncode == 2, r.stderr)
r = subprocess.run([KILN, "import", os.path.join(WORK, "absent.onnx"), "--to", WORK + "/x"],
                   capture_output=True, text=True)
check("missing_file", r.returncode == 2 and "absent.onnx" in r.stderr, r.stderr)
r = subprocess.run([KILN, "import", "--help"], capture_output=True, text=True)
check("help", r.returncode == 0 and "kiln import MODEL.onnx --to DIR" in r.stdout)

# ---- a good model: files, chain without from:, re-import refused ----
r, out = run_import("good", good)
check("good_import", r.returncode == 0, r.stderr)
yaml = open(os.path.join(out, "model.yaml")).read() if r.returncode == 0 else ""
check("good_yaml", "conv2d: {name: stem, filters: 4, kernel: 3, padding: same, use_bias: false}"
      in yaml and ", from:" not in yaml and "init_from: weights.safetensors" in yaml
      and "# data:" in yaml and "input: [3, 8, 8]" in yaml, yaml)
check("good_files", all(os.path.exists(os.path.join(out, p)) for p in
                        ["weights.safetensors", "servable/1/model.json",
                         "servable/1/weights.safetensors"]))
r, _ = run_import("good", good)
check("existing_servable_refused", r.returncode == 2 and "already exists" in r.stderr, r.stderr)

# ---- model.init_from with an .onnx file (RUNNER --config builds a config and applies it) ----
def init_from(name, spec):
    cfg = os.path.join(WORK, name + ".yaml")
    with open(cfg, "w") as f:
        f.write("data: {source: npy, train: {}, task: classification}\nloss: softmax_cross_entropy\nmodel:\n"
                "  input: [3, 8, 8]\n  init_from: %s\n  layers:\n"
                "    - conv2d: {name: stem, filters: 4, kernel: 3, padding: same, use_bias: false}\n"
                "    - global_avgpool2d: {name: gap}\n    - dense: {name: head, units: 2}\n"
                % spec)
    return subprocess.run([RUNNER, "--config", cfg, os.path.join(WORK, name + "-out")],
                          capture_output=True, text=True)


good_onnx = os.path.join(WORK, "good.onnx")
r = init_from("init_onnx", good_onnx)
check("init_from_onnx_report", r.returncode == 0 and "good.onnx (convention kiln): loaded 1 of 3 "
      "parameters\n  missing in the file (2, left as initialized): head.kernel, head.bias" in
      r.stderr, r.stderr)
r = init_from("init_onnx_torch", "{path: %s, convention: torchvision}" % good_onnx)
check("init_from_onnx_torchvision_refused", r.returncode == 2 and "convention torchvision does "
      "not apply to an ONNX file" in r.stderr, r.stderr)
r = init_from("init_onnx_bad", os.path.join(WORK, "unsupported_op.onnx"))
check("init_from_onnx_unsupported", r.returncode == 2 and "model.init_from: " in r.stderr and
      "(Erf)" in r.stderr, r.stderr)

# ---- mappings against numpy ----
rng = np.random.default_rng(3)
x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
B = rng.standard_normal((192, 6)).astype(np.float32)
C = rng.standard_normal((6,)).astype(np.float32)
shape = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape")
nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 1, 2, 3]),
         helper.make_node("Identity", ["xt"], ["xi"]),
         helper.make_node("Reshape", ["xi", "shape"], ["f"], name="/flat/Reshape"),
         helper.make_node("Gemm", ["f", "B", "C"], ["d"], name="/head/Gemm", alpha=0.5, beta=2.0),
         helper.make_node("Clip", ["d"], ["y"], name="/act/Clip", min=0.0, max=3.4028234e38)]
m = model(nodes, [shape, numpy_helper.from_array(B, "B"), numpy_helper.from_array(C, "C")],
          out_shape=["N", 6], opset=10)
r, out = run_import("gemm_clip", m)
check("gemm_clip_import", r.returncode == 0, r.stderr)
yaml = open(os.path.join(out, "model.yaml")).read() if r.returncode == 0 else ""
check("gemm_clip_yaml", "dense: {name: head, units: 6, activation: relu}" in yaml, yaml)
got = predict(out, x) if r.returncode == 0 else None
want = np.maximum(0.5 * x.reshape(5, -1) @ B + 2.0 * C, 0)
check("gemm_clip_values", got is not None and np.abs(got - want).max() <= 1e-4 * np.abs(want).max(),
      "" if got is None else "max diff %g" % np.abs(got - want).max())

# a branch: from: appears exactly where the graph is not a chain
nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="/a/Conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["a"], ["ar"], name="/a/Relu"),
         helper.make_node("Conv", ["ar", "w2"], ["b"], name="/b/Conv", pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["b", "ar"], ["s"], name="/res/Add"),
         helper.make_node("GlobalAveragePool", ["s"], ["g"]),
         helper.make_node("Flatten", ["g"], ["y"])]
m = model(nodes, [w("w", 4, 3, 3, 3, seed=1), w("w2", 4, 4, 3, 3, seed=2)], out_shape=["N", 4])
r, out = run_import("branch", m)
yaml = open(os.path.join(out, "model.yaml")).read() if r.returncode == 0 else r.stderr
check("branch_from", "add: {name: res, from: [b, a]}" in yaml and yaml.count(", from:") == 1, yaml)
got = predict(out, x) if r.returncode == 0 else None


def conv_np(x, wt):
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, c, h, ww = x.shape
    y = np.zeros((n, wt.shape[0], h, ww), np.float64)
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,fc->nfhw", xp[:, :, i:i + h, j:j + ww], wt[:, :, i, j])
    return y


wa = numpy_helper.to_array(w("w", 4, 3, 3, 3, seed=1))
wb = numpy_helper.to_array(w("w2", 4, 4, 3, 3, seed=2))
ar = np.maximum(conv_np(x, wa), 0)
want = (conv_np(ar, wb) + ar).mean(axis=(2, 3))
check("branch_values", got is not None and np.abs(got - want).max() <= 1e-4 * np.abs(want).max(),
      "" if got is None else "max diff %g" % np.abs(got - want).max())


# blocks: units s/0 .. s/2 repeat (LeakyRelu's alpha differs: a block parameter); s/3's inner
# layer is also read after it (two outputs), so it stays flat
def st_names(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return [k for k in json.loads(f.read(n).decode()) if k != "__metadata__"]


nodes, inits, prev = [helper.make_node("Conv", ["x", "w"], ["h"], name="/stem/Conv")], \
    [w("w", 4, 3, 1, 1, seed=3)], "h"
for u, alpha in enumerate([0.1, 0.2, 0.1, 0.3]):
    p = "/s/s.%d/" % u
    nodes += [helper.make_node("Conv", [prev, "w1_%d" % u], [p + "c1"], name=p + "conv1/Conv",
                               pads=[1, 1, 1, 1]),
              helper.make_node("LeakyRelu", [p + "c1"], [p + "a"], name=p + "act/LeakyRelu",
                               alpha=alpha),
              helper.make_node("Conv", [p + "a", "w2_%d" % u], [p + "c2"], name=p + "conv2/Conv",
                               pads=[1, 1, 1, 1]),
              helper.make_node("Add", [p + "c2", prev], [p + "s"], name=p + "Add"),
              helper.make_node("Relu", [p + "s"], [p + "r"], name=p + "relu/Relu")]
    inits += [w("w1_%d" % u, 4, 4, 3, 3, seed=10 + u), w("w2_%d" % u, 4, 4, 3, 3, seed=20 + u)]
    prev = p + "r"
nodes += [helper.make_node("Add", [prev, "/s/s.3/a"], ["t"], name="/tail/Add"),
          helper.make_node("GlobalAveragePool", ["t"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
m = model(nodes, inits, out_shape=["N", 4])
r, out = run_import("blocks", m)
rf, out_flat = run_import("blocks_flat", m, extra=["--flat"])
yaml = open(os.path.join(out, "model.yaml")).read() if r.returncode == 0 else r.stderr
yflat = open(os.path.join(out_flat, "model.yaml")).read() if rf.returncode == 0 else rf.stderr
check("blocks_import", r.returncode == 0 and rf.returncode == 0 and "(in 1 block)" in r.stderr,
      r.stderr + rf.stderr)
check("blocks_definition", "  blocks:\n    residual:   # 5 layers, 3 uses\n      params: {alpha: null}\n"
      "      layers:\n" in yaml and "- leaky_relu: {name: act, alpha: \"${alpha}\"}" in yaml and
      "- add: {name: add, from: [conv2, input]}" in yaml, yaml)
check("blocks_uses", "- block: {use: residual, name: s/0, alpha: 0.1}\n"
      "    - block: {use: residual, name: s/1, alpha: 0.2}\n"
      "    - block: {use: residual, name: s/2, alpha: 0.1}\n"
      "    - conv2d: {name: s/3/conv1, " in yaml, yaml)
check("blocks_flat_form", "blocks:" not in yflat and "- leaky_relu: {name: s/0/act, alpha: 0.1}" in yflat,
      yflat)
sv = lambda o: os.path.join(o, "servable", "1", "weights.safetensors")
check("blocks_same_parameters", r.returncode == 0 and rf.returncode == 0 and
      st_names(sv(out)) == st_names(sv(out_flat)) and len(st_names(sv(out))) == 9)
gb = predict(out, x) if r.returncode == 0 else None
gf = predict(out_flat, x) if rf.returncode == 0 else None
check("blocks_same_outputs", gb is not None and gf is not None and np.array_equal(gb, gf))
r = subprocess.run([KILN, "import", os.path.join(WORK, "good.onnx"), "--to",
                    os.path.join(WORK, "good_flat"), "--flat"], capture_output=True, text=True)
check("flat_when_nothing_repeats", r.returncode == 0 and "block" not in r.stderr and
      open(os.path.join(WORK, "good_flat", "model.yaml")).read() ==
      open(os.path.join(WORK, "good", "model.yaml")).read(), r.stderr)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
