#!/usr/bin/python3
"""The PyTorch peer of bench/data_vs_torch.sh: torchvision's ImageFolder with the standard
training transforms (RandomResizedCrop, RandomHorizontalFlip, ColorJitter, ToTensor, Normalize)
through torch.utils.data.DataLoader, timed over whole passes with no model.

    /usr/bin/python3 bench/data_torch.py DIR WORKERS EPOCHS BATCH SIZE

Prints RESULT images=<n> seconds=<s> images_per_s=<r>. The first batch is taken before the clock
starts (the workers are started and persistent), as bench_data_loader does.
"""
import sys
import time

import torch
from torchvision import datasets, transforms

root, workers, epochs, batch, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tf = transforms.Compose([
    transforms.RandomResizedCrop(size),
    transforms.RandomHorizontalFlip(),
    transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])
ds = datasets.ImageFolder(root, transform=tf)
dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                 persistent_workers=workers > 0)
images = 0
it = iter(dl)
next(it)  # warm-up: the workers are running
t0 = time.perf_counter()
for x, y in it:
    images += x.shape[0]
for e in range(1, epochs):
    for x, y in dl:
        images += x.shape[0]
s = time.perf_counter() - t0
print("RESULT images=%d seconds=%.3f images_per_s=%.1f" % (images, s, images / s))
