"""A ResNet-50-shaped classifier in plain torch (no torchvision), random weights from a fixed seed.

Weights are made at load time (about 100 MB would not belong in git); the seed makes them the same
on every machine, so the model's digest-relevant source is this file alone.
"""
import torch
from torch import nn

SEED = 0
IMAGE_SIZE = 224


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, channels_in: int, width: int, stride: int) -> None:
        super().__init__()
        channels_out = width * self.expansion
        self.conv1 = nn.Conv2d(channels_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, channels_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels_out)
        self.downsample = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.downsample = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + self.downsample(x))


class ResNet50(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages, channels = [], 64
        for index, (blocks, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            for block in range(blocks):
                stride = 2 if block == 0 and index > 0 else 1
                stages.append(Bottleneck(channels, width, stride))
                channels = width * Bottleneck.expansion
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(image))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build_model() -> nn.Module:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    model = ResNet50()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, Bottleneck):
            nn.init.constant_(module.bn3.weight, 0.2)  # keeps activations bounded through 16 blocks
    torch.random.set_rng_state(generator_state)
    return model.eval()


def make_samples():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) for batch in (1, 8)]
