#!/usr/bin/python3
"""torchvision_backbones.py — the PyTorch side of kiln's backbone parity test (tests/test_backbone_parity.c).

    /usr/bin/python3 tests/oracles/torchvision_backbones.py OUT_DIR NAME[:SIZE[:CLASSES]]...

For each torchvision model NAME (resnet18, resnet34, resnet50, vgg11, vgg16, mobilenet_v2),
randomly initialised with a fixed seed, with random batch-norm statistics and affine parameters
(so that every tensor of the state dict matters), in eval mode, writes
  OUT_DIR/NAME.safetensors     the state dict (num_batches_tracked included, as I64), metadata
                               "parameters": sum of p.numel() over model.parameters()
  OUT_DIR/NAME.io.safetensors  "x": 16 random inputs [16, 3, SIZE, SIZE], "y": the model's outputs
The safetensors format is written by hand (torch 1.13 has no safetensors package): an 8-byte
little-endian header length, the JSON header (padded with spaces to a multiple of 8), the data.
"""
import json
import struct
import sys

import torch
import torchvision


def save(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        b = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    out = sys.argv[1]
    torch.set_num_threads(2)
    for spec in sys.argv[2:]:
        parts = spec.split(":")
        name = parts[0]
        size = int(parts[1]) if len(parts) > 1 else 64
        classes = int(parts[2]) if len(parts) > 2 else 1000
        torch.manual_seed(1234)
        model = getattr(torchvision.models, name)(num_classes=classes)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                elif isinstance(m, torch.nn.Linear) and m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1)
        model.eval()
        n = sum(p.numel() for p in model.parameters())
        save(f"{out}/{name}.safetensors", model.state_dict(), {"parameters": str(n)})
        x = torch.randn(16, 3, size, size)
        with torch.no_grad():
            y = model(x)
        save(f"{out}/{name}.io.safetensors", {"x": x, "y": y})
        print(name, n, float(y.abs().max()))


if __name__ == "__main__":
    main()
