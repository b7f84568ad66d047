"""The model zoo of issue 19: seven small classifiers of the kinds deployed on a Raspberry Pi,
each in PyTorch, taking float pixels in [0, 1] (pixel / 255).

Each is a narrow version of its architecture (the ONNX files stay small), built from the layers
that give the architecture its name: VGG (Conv-BN-ReLU, MaxPool, Dropout, Linear, a Softmax
head), MobileNetV2 (depthwise, ReLU6, inverted residuals), MobileNetV3 (Hardswish,
squeeze-excitation with Hardsigmoid), SqueezeNet/Inception (Fire modules: channel Concat of two
branches, MaxPool ceil_mode, an Inception average-pool branch that excludes padding), ResNet-18
at 3x64x64 (7x7 stride-2 stem, MaxPool, 8 basic blocks), LeakyReLU/PReLU with
``padding="same"`` convolutions, and EfficientNet-lite (SiLU, a sigmoid-gated SE, a mean over
[-2, -1] and ``x.view(x.size(0), -1)``).
"""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_bn(cin, cout, k=3, stride=1, groups=1, act: type[nn.Module] | None = nn.ReLU):
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """1x28x28: two VGG stages (Conv-BN-ReLU x2, MaxPool), Dropout, Linear, Softmax head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            Normalize(0.29, 0.35),
            conv_bn(1, 16),
            conv_bn(16, 16),
            nn.MaxPool2d(2),
            conv_bn(16, 32),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(32 * 7 * 7, 64),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(64, 10),
            nn.Softmax(dim=1),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand=4, act=nn.ReLU6, se: bool = False):
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [conv_bn(cin, mid, 1, act=act), conv_bn(mid, mid, 3, stride, groups=mid, act=act)]
        if se:
            layers.append(SqueezeExcitation(mid, max(4, mid // 4)))
        layers.append(conv_bn(mid, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """3x32x32: stride-2 stem, inverted residual blocks (expand 1x1, depthwise 3x3, ReLU6,
    linear bottleneck), 1x1 head conv, global average pool, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.ReLU6),
            InvertedResidual(16, 16, 1),
            InvertedResidual(16, 24, 2),
            InvertedResidual(24, 24, 1),
            InvertedResidual(24, 32, 2),
            conv_bn(32, 64, 1, act=nn.ReLU6),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class SqueezeExcitation(nn.Module):
    """x * gate(mean(x)): pool, 1x1 reduce, ReLU, 1x1 expand, Hardsigmoid (or Sigmoid)."""

    def __init__(self, channels, reduced, gate: type[nn.Module] = nn.Hardsigmoid):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = gate()

    def forward(self, x):
        s = self.gate(self.expand(torch.relu(self.reduce(self.pool(x)))))
        return x * s


class MobileNetV3(nn.Module):
    """3x32x32: Hardswish stem, inverted residuals with squeeze-excitation, Hardswish head."""

    def __init__(self) -> None:
        super().__init__()
        hs = nn.Hardswish
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=hs),
            InvertedResidual(16, 16, 1, expand=2, act=nn.ReLU, se=True),
            InvertedResidual(16, 24, 2, expand=3, act=hs),
            InvertedResidual(24, 24, 1, expand=3, act=hs, se=True),
            conv_bn(24, 64, 1, act=hs),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), hs(), nn.Dropout(0.2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1(s)), torch.relu(self.expand3(s))], 1)


class SqueezeNet(nn.Module):
    """3x32x32: SqueezeNet's Fire modules (squeeze 1x1, expand 1x1 and 3x3, channel Concat),
    MaxPool with ceil_mode, an Inception-style branch (3x3 average pool that excludes the
    padding, then 1x1) concatenated on, a 1x1 classifier conv and global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(Normalize(0.22, 0.33), nn.Conv2d(3, 24, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fire1 = Fire(24, 8, 16)
        self.fire2 = Fire(32, 8, 16)
        self.branch = nn.Sequential(
            nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.Conv2d(32, 16, 1), nn.ReLU()
        )
        self.fire3 = Fire(48, 12, 24)
        self.classifier = nn.Sequential(nn.Conv2d(48, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        x = self.fire2(self.fire1(self.pool(self.stem(x))))
        x = torch.cat([x, self.branch(x)], 1)
        x = self.fire3(self.pool(x))
        return torch.flatten(self.classifier(x), 1)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, act=None))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = conv_bn(cin, cout, 1, stride, act=None)

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """3x64x64: ResNet-18's layout (7x7 stride-2 stem, 3x3 stride-2 MaxPool, 4 stages of 2 basic
    blocks, global average pool), at an eighth of its width."""

    def __init__(self, widths=(8, 16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, widths[0], 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(2):
                blocks.append(BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class LeakyNet(nn.Module):
    """1x28x28: ``padding="same"`` convolutions (ONNX ``auto_pad=SAME_UPPER``; torch.export pads
    an even kernel explicitly), LeakyReLU and PReLU, MaxPool, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            Normalize(0.29, 0.35),
            nn.Conv2d(1, 16, 3, padding="same"),
            nn.LeakyReLU(0.1),
            nn.Conv2d(16, 16, 4, padding="same"),  # even kernel: one more row/column at the end
            nn.PReLU(16),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding="same"),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class EfficientNetLite(nn.Module):
    """3x32x32: SiLU everywhere, MBConv blocks with a sigmoid-gated squeeze-excitation, the head
    as ``x.mean((-2, -1), keepdim=True)`` and ``x.view(x.size(0), -1)`` (shape arithmetic in
    ONNX: Shape, Gather, Unsqueeze, Concat)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2, act=nn.SiLU)
        self.block1 = InvertedResidual(16, 16, 1, expand=2, act=nn.SiLU)
        self.se = SqueezeExcitation(16, 4, gate=nn.Sigmoid)
        self.block2 = InvertedResidual(16, 32, 2, expand=3, act=nn.SiLU)
        self.head = conv_bn(32, 64, 1, act=nn.SiLU)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.head(self.block2(self.se(self.block1(self.stem(x)))))
        x = x.mean((-2, -1), keepdim=True)
        return self.fc(x.view(x.size(0), -1))


#: name -> (constructor, input shape C x H x W, bundled data file, upsampling factor)
ZOO = {
    "vgg": (VGG, (1, 28, 28), "fashion_mnist_test500.npz", 1),
    "mobilenet_v2": (MobileNetV2, (3, 32, 32), "fashion_mnist32_test500.npz", 1),
    "mobilenet_v3": (MobileNetV3, (3, 32, 32), "fashion_mnist32_test500.npz", 1),
    "squeezenet": (SqueezeNet, (3, 32, 32), "fashion_mnist32_test500.npz", 1),
    "resnet18": (ResNet18, (3, 64, 64), "fashion_mnist32_test500.npz", 2),
    "leaky_same": (LeakyNet, (1, 28, 28), "fashion_mnist_test500.npz", 1),
    "efficientnet_lite": (EfficientNetLite, (3, 32, 32), "fashion_mnist32_test500.npz", 1),
}
