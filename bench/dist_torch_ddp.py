#!/usr/bin/env python3
"""dist_torch_ddp.py MODEL STEPS GLOBAL_BATCH [PROCS] — PyTorch DistributedDataParallel (gloo) peer
of bench/dist_scaling.sh: PROCS processes (default 2) x 1 thread train the Fashion-MNIST MLP or
CNN of examples/fashion_mnist/ (Adam 1e-3), each on GLOBAL_BATCH / PROCS rows of every global
batch, for STEPS steps after 5 warm-up steps. Prints
"RESULT model=M procs=P samples_per_s=R". Debian's python3-torch (/usr/bin/python3)."""
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist"


def load():
    with gzip.open(DATA + "/train-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(DATA + "/train-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def model(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                             nn.Linear(256, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def run(rank, procs, name, steps, gb, out):
    torch.set_num_threads(1)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("gloo", rank=rank, world_size=procs)
    torch.manual_seed(1)
    x, y = load()
    net = nn.parallel.DistributedDataParallel(model(name))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(x.shape[0], generator=g)
    b = gb // procs
    t0 = None
    for s in range(steps + 5):
        if s == 5:
            dist.barrier()
            t0 = time.perf_counter()
        i = perm[(s * gb) % (x.shape[0] - gb):][rank * b:(rank + 1) * b]
        opt.zero_grad()
        loss_fn(net(x[i]), y[i]).backward()
        opt.step()
    dist.barrier()
    if rank == 0:
        out.put(steps * gb / (time.perf_counter() - t0))
    dist.destroy_process_group()


def main():
    name, steps, gb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    procs = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=run, args=(r, procs, name, steps, gb, q)) for r in range(procs)]
    for p in ps:
        p.start()
    rate = q.get()
    for p in ps:
        p.join()
    print("RESULT model=%s procs=%d samples_per_s=%.1f" % (name, procs, rate))


if __name__ == "__main__":
    main()
