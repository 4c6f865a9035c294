#!/usr/bin/python3
"""PyTorch peer of bench/resnet_vs_torch.sh: torchvision's resnet18 (10 classes) on random
64x64 RGB images, batch 64, Adam 1e-3, the given number of threads; times training steps and
eval-mode inference after a warm-up, the same work kiln does in the bench.

    /usr/bin/python3 bench/peer_resnet_torch.py THREADS TRAIN_STEPS INFER_BATCHES
prints "RESULT train_samples_per_s=<x> infer_samples_per_s=<y>"
"""
import sys
import time

import torch
import torchvision

threads, train_steps, infer_batches = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(1)
B, H = 64, 64
model = torchvision.models.resnet18(num_classes=10)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
x = torch.randn(B, 3, H, H)
y = torch.randint(0, 10, (B,))


def train_step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()


model.train()
for _ in range(2):
    train_step()
t0 = time.perf_counter()
for _ in range(train_steps):
    train_step()
train_rate = B * train_steps / (time.perf_counter() - t0)

model.eval()
with torch.no_grad():
    for _ in range(2):
        model(x)
    t0 = time.perf_counter()
    for _ in range(infer_batches):
        model(x)
    infer_rate = B * infer_batches / (time.perf_counter() - t0)
print(f"RESULT train_samples_per_s={train_rate:.1f} infer_samples_per_s={infer_rate:.1f}")
