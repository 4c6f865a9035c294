"""onnx_check.py — python3-onnx's verdict on a kiln export (run with /usr/bin/python3, onnx 1.12).

    /usr/bin/python3 onnx_check.py VERSION_DIR

Checks VERSION_DIR/model.onnx: onnx.checker.check_model(full_check=True); ir_version 8 and
opset 17; the graph's input and outputs are model.json's (names, float32, the batch a symbolic
"batch", the other dims equal); strict shape inference passes; and, with the outputs' declared
shapes taken away, inference alone derives the same output shapes (so the declared ones are not
just asserted); every pads attribute is >= 0 (the spec's "pixels added"; ONNX Runtime happens to
accept negative ones, other runtimes need not) and a pool's pads are below its window. Exit 0 when all hold, 1 with the reason otherwise.
"""
import json
import os
import sys

import onnx
from onnx import TensorProto


def dims(value_info):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in value_info.type.tensor_type.shape.dim]


def main(vdir):
    model = onnx.load(os.path.join(vdir, "model.onnx"))
    with open(os.path.join(vdir, "model.json")) as f:
        manifest = json.load(f)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8, f"ir_version {model.ir_version}"
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": 17}, f"opsets {opsets}"
    g = model.graph
    for declared, want in ((g.input, manifest["inputs"]), (g.output, manifest["outputs"])):
        assert [v.name for v in declared] == [t["name"] for t in want], \
            f"names {[v.name for v in declared]} vs model.json {[t['name'] for t in want]}"
        for v, t in zip(declared, want):
            assert v.type.tensor_type.elem_type == TensorProto.FLOAT, f"{v.name}: not float"
            expect = ["batch"] + t["shape"][1:]
            assert dims(v) == expect, f"{v.name}: shape {dims(v)} vs model.json {expect}"
    for n in g.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        pads = list(a.get("pads", []))
        assert all(p >= 0 for p in pads), f"node {n.name} ({n.op_type}): negative pads {pads}"
        if n.op_type in ("MaxPool", "AveragePool"):
            k = list(a["kernel_shape"])
            assert all(p < k[i % len(k)] for i, p in enumerate(pads)), \
                f"node {n.name} ({n.op_type}): pads {pads} not below the window {k}"
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    for v in bare.graph.output:
        v.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True)
    for v, w in zip(inferred.graph.output, g.output):
        assert dims(v) == dims(w), f"{v.name}: inferred {dims(v)}, declared {dims(w)}"
    print(f"onnx_check: {vdir}/model.onnx ok ({len(g.node)} nodes, {len(g.initializer)} initializers)")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as e:  # the checker's own exceptions included: report and fail
        print(f"onnx_check: {sys.argv[1] if len(sys.argv) > 1 else '?'}: {type(e).__name__}: {e}")
        sys.exit(1)
