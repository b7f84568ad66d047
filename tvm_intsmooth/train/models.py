"""The models the project trains: a small CNN and ResNet-20, both starting with input normalization.

Every model takes pixels in [0, 1] (pixel / 255) and begins with ``(x - mean) / std``, so the
exported ONNX graph holds that normalization as Sub and Div nodes. Only operators that the integer
quantizer supports appear: Conv, BatchNormalization, Relu, MaxPool, GlobalAveragePool, Flatten,
Gemm, Add, Sub, Div. ResNet-20 therefore uses a 1x1 convolution + batch norm projection where a
shortcut changes shape, instead of the original zero-padding (option A) shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tvm_intsmooth.errors import IntSmoothError

MODEL_NAMES = ("cnn", "resnet20")


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` on N x C x H x W inputs."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """Two conv-relu-maxpool stages (32 and 64 channels) and two linear layers."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int = 28,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        channels = len(mean)
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual connection (projection where the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20, CIFAR geometry (He et al. 2016): 3 stages of 3 basic blocks, 16/32/64 channels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], num_classes: int = 10) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(len(mean), 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_channels = 16
        for out_channels, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(BasicBlock(in_channels, out_channels, stride if i == 0 else 1))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem(self.normalize(x)))
        return self.fc(self.flatten(self.pool(out)))


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Module:
    """Build ``"cnn"`` or ``"resnet20"`` for inputs of shape C x H x W (square images)."""
    channels, height, width = input_shape
    if len(mean) != channels or len(std) != channels:
        raise IntSmoothError(
            f"mean/std have {len(mean)}/{len(std)} entries for {channels} channels"
        )
    if height != width:
        raise IntSmoothError(f"models expect square images, got {height} x {width}")
    if name == "cnn":
        if height % 4:
            raise IntSmoothError(f"the small CNN needs an image side divisible by 4, got {height}")
        return SmallCNN(mean, std, image_size=height, num_classes=num_classes)
    if name == "resnet20":
        return ResNet20(mean, std, num_classes=num_classes)
    raise IntSmoothError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
