#!/usr/bin/python3
"""Whether the torchvision peer of bench/data_vs_torch.sh decodes at its best: Pillow built with
libjpeg-turbo (Debian's python3-pil is; a Pillow on the reference libjpeg decodes JPEG about 2x
slower) and torchvision's image backend PIL. Prints the versions; exit 1 when not at its best.
"""
import sys

import PIL
import torch
import torchvision
from PIL import features

turbo = features.check_feature("libjpeg_turbo")
print("torch %s, torchvision %s (image backend %s), Pillow %s: JPEG through %s" % (
    torch.__version__, torchvision.__version__, torchvision.get_image_backend(), PIL.__version__,
    "libjpeg-turbo %s" % features.version_feature("libjpeg_turbo") if turbo else "libjpeg (not turbo)"))
if not turbo or torchvision.get_image_backend() != "PIL":
    sys.exit(1)
