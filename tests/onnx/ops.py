#!/usr/bin/python3
"""ops.py — `kiln import` of the rarer ONNX ops against PyTorch (ctest onnx_import_ops).

usage: ops.py KILN RUNNER WORKDIR

Small torch models, each exported by torch.onnx.export (dynamic batch, eval mode) or, where
torch does not emit the form (tf2onnx's auto_pad SAME_UPPER on a stride-2 conv and pool,
explicit asymmetric pads), built with onnx.helper and computed in torch by hand; each is
imported by `kiln import` and its servable run by RUNNER on 8 random inputs; kiln's outputs must
match torch's within 1e-4 of the largest output. Covered: Conv 1d/3d (strides, asymmetric
per-axis pads), ConvTranspose (output_padding, groups), Conv with group == C (depthwise),
Clip with general bounds, Mul with a [B, C, 1, 1] broadcast (a squeeze-and-excite block),
HardSigmoid, Resize nearest and linear (opset 13) and Upsample (opset 9),
HardSwish (opset 14; fused into the conv before it), GlobalMaxPool, GlobalAveragePool 3d,
MaxPool/AveragePool with ceil_mode (1d, 2d, 3d; torch's AveragePool comes with a no-op Pad),
auto_pad SAME_UPPER and asymmetric pads. Also checks YAML lines (the kinds emitted: a
group == C conv is depthwise_conv2d).
Prints "N passed, N failed".
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

KILN, RUNNER, WORK = sys.argv[1:4]
passed = failed = 0
nn = torch.nn


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def kiln_run(name, path, x):
    out = os.path.join(WORK, name)
    r = subprocess.run([KILN, "import", path, "--to", out], capture_output=True, text=True)
    if r.returncode:
        return None, r.stderr.strip()
    xp, yp = os.path.join(WORK, name + ".x"), os.path.join(WORK, name + ".y")
    x.numpy().astype("<f4").tofile(xp)
    r = subprocess.run([RUNNER, os.path.join(out, "servable", "1"), str(len(x)), xp, yp],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
    if r.returncode:
        return None, r.stderr.strip()
    return np.fromfile(yp, dtype="<f4").reshape(len(x), -1), open(out + "/model.yaml").read()


def compare(name, path, x, ref, *yaml_needles):
    got, yaml = kiln_run(name, path, x)
    if got is None:
        check(name, False, yaml)
        return
    ref = ref.reshape(len(x), -1)
    diff, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
    check(name, got.shape == ref.shape and diff <= 1e-4 * scale,
          "shape %s vs %s, max diff %g of %g" % (got.shape, ref.shape, diff, scale))
    missing = [n for n in yaml_needles if n not in yaml]
    check(name + "_yaml", not missing, "missing %s in:\n%s" % (missing, yaml))


def torch_case(name, m, in_shape, *yaml_needles, opset=13):
    torch.manual_seed(0)
    for p in m.parameters():  # away from the default init, so every weight matters
        p.data.uniform_(-0.5, 0.5)
    m.eval()
    x = torch.randn(8, *in_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = m(x).numpy()
    path = os.path.join(WORK, name + ".onnx")
    torch.onnx.export(m, x[:1], path, opset_version=opset, input_names=["input"],
                      output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    compare(name, path, x, ref, *yaml_needles)


class Signal1d(nn.Module):  # conv1d, ceil_mode pools 1d, global max pool 1d
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 5, stride=2, padding=2)
        self.pool = nn.MaxPool1d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv1d(8, 8, 3, dilation=2)
        self.avg = nn.AvgPool1d(2, ceil_mode=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.avg(self.conv2(x))
        return self.fc(torch.flatten(F.adaptive_max_pool1d(x, 1), 1))


class Volume3d(nn.Module):  # conv3d, hardswish, ceil_mode pools 3d, global avg pool 3d
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool3d(2, ceil_mode=True)
        self.conv2 = nn.Conv3d(4, 6, 3, stride=(1, 2, 2), padding=(1, 0, 1))
        self.avg = nn.AvgPool3d(2, ceil_mode=True)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.pool(F.hardswish(self.conv1(x)))
        x = self.avg(torch.tanh(self.conv2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(x, 1), 1))


class SqueezeExcite(nn.Module):  # depthwise conv, clip, SE (Mul broadcast), hard_*, gmp
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.hardswish(self.stem(x))
        x = torch.clamp(self.dw(x), -0.5, 2.0)
        s = F.hardsigmoid(self.se2(torch.relu(self.se1(F.adaptive_avg_pool2d(x, 1)))))
        x = x * s
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        return self.fc(torch.flatten(F.adaptive_max_pool2d(x, 1), 1))


class Decoder(nn.Module):  # conv transpose, upsampling nearest and bilinear
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.up2 = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        x = torch.relu(self.up1(torch.relu(self.conv(x))))
        x = F.interpolate(self.up2(x), scale_factor=2, mode="nearest")
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(x)


class NearestOld(nn.Module):  # opset 9: Upsample
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2, mode="nearest")


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
torch.set_num_threads(2)
torch_case("conv1d", Signal1d(), (3, 37), "conv1d: {name: conv1", "maxpool1d:", "ceil_mode: true")
torch_case("conv3d", Volume3d(), (2, 7, 9, 9), "conv3d: {name: conv1", "activation: hard_swish",
           "maxpool3d:", "avgpool3d:", "global_avgpool3d", opset=14)
torch_case("squeeze_excite", SqueezeExcite(), (3, 15, 15), "clip: {name:", "multiply: {name:",
           "activation: hard_sigmoid", "activation: hard_swish", "depthwise_conv2d: {name: dw, kernel: 3",
           "conv2d: {name: se1, filters: 4", "ceil_mode: true", opset=14)
torch_case("decoder", Decoder(), (3, 8, 8), "conv2d_transpose: {name: up1", "output_padding: 1",
           "groups: 2", "interpolation: nearest", "interpolation: bilinear")
torch_case("upsample_opset9", NearestOld(), (3, 5, 6), "upsampling2d:", opset=9)

# tf2onnx's forms, which torch does not emit: SAME_UPPER on stride 2, explicit asymmetric pads
rng = np.random.default_rng(4)
x = torch.from_numpy(rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.3
w2 = rng.standard_normal((4, 6, 2, 3)).astype(np.float32) * 0.3
b2 = rng.standard_normal(4).astype(np.float32)
nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_same", strides=[2, 2],
                          auto_pad="SAME_UPPER"),
         helper.make_node("Relu", ["a"], ["ar"], name="relu"),
         helper.make_node("MaxPool", ["ar"], ["p"], name="pool_same", kernel_shape=[2, 2],
                          strides=[2, 2], auto_pad="SAME_UPPER"),
         helper.make_node("Conv", ["p", "w2", "b2"], ["c"], name="conv_asym",
                          pads=[1, 0, 0, 2]),
         helper.make_node("GlobalMaxPool", ["c"], ["y"], name="gmp")]
g = helper.make_graph(nodes, "tf", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                  ["N", 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                      initializer=[numpy_helper.from_array(w1, "w1"),
                                   numpy_helper.from_array(w2, "w2"),
                                   numpy_helper.from_array(b2, "b2")])
path = os.path.join(WORK, "same_upper.onnx")
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
with torch.no_grad():
    a = torch.relu(F.conv2d(F.pad(x, (0, 1, 0, 1)), torch.from_numpy(w1), stride=2))  # 8 -> 4
    p = F.max_pool2d(a, 2, 2)
    c = F.conv2d(F.pad(p, (0, 2, 1, 0)), torch.from_numpy(w2), torch.from_numpy(b2))
    ref = c.amax(dim=(2, 3)).numpy()
compare("same_upper", path, x, ref, "conv_same, filters: 6, kernel: 3, strides: 2, padding: same",
        "padding: [1, 0, 0, 2]", "global_maxpool2d: {name: gmp}")

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
