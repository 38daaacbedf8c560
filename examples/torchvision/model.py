"""A torchvision classifier: ``mobilenet_v3_small`` with 10 classes, random weights from a seed,
on small 64x64 images (no download, so it builds offline and the same everywhere).
"""
import torch
import torchvision

IMAGE_SIZE, CLASSES = 64, 10


def build_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(weights=None, num_classes=CLASSES).eval()


def make_samples():
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) for batch in (1, 4)]
