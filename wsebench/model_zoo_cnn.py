"""Convolutional models of the zoo: ResNet-18 and ResNet-50 shapes at any width (He et al. 2016,
"Deep Residual Learning for Image Recognition", Table 1), laid out as torchvision's `resnet18` /
`resnet50` (module names `conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`), so their kernels carry
the same names on the wafer.

- Stem: 7x7 stride-2 convolution, BatchNorm, ReLU, 3x3 stride-2 max pool.
- Four stages of blocks: BasicBlock (two 3x3 convolutions, depth 18: 2-2-2-2 blocks) or
  Bottleneck (1x1, 3x3, 1x1 with 4x expansion, depth 50: 3-4-6-3 blocks); each stage after
  the first halves the resolution with a stride-2 3x3 (the "ResNet v1.5" placement torchvision
  uses) and a 1x1 stride-2 projection on the shortcut.
- Head: adaptive average pool to 1x1, Linear to `classes`.
`width` is the first stage's channels (64 in the paper); the stages have width x 1, 2, 4, 8.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from compiler.errors import ConfigError

from .zoo_checks import positive

BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, width, 3, stride)
        self.conv2, self.bn2 = _conv_bn(width, width, 3)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, width, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, width, 1)
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = _conv_bn(width, width * 4, 1)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, width * 4, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """The projection shortcut where the block changes resolution or channels."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(*_conv_bn(cin, cout, 1, stride))


class ResNet(nn.Module):
    def __init__(self, block: type, counts: tuple[int, ...], width: int, classes: int,
                 in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for stage, count in enumerate(counts):
            blocks = []
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(block(cin, width * 2 ** stage, stride))
                cin = width * 2 ** stage * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.stages = len(counts)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet(depth: int = 18, width: int = 8, classes: int = 10, in_channels: int = 3,
           seed: int | None = None) -> ResNet:
    """A ResNet of `depth` (18, 34: BasicBlock; 50, 101: Bottleneck) whose first stage has
    `width` channels (64 in the paper; small widths keep it quick on the simulator)."""
    if depth not in BLOCKS:
        raise ConfigError(f"resnet depth must be one of {', '.join(map(str, BLOCKS))}, got {depth!r}")
    for name, value in (("width", width), ("classes", classes), ("in_channels", in_channels)):
        positive(name, value, "resnet")
    if seed is not None:
        torch.manual_seed(seed)
    kind, counts = BLOCKS[depth]
    return ResNet(BasicBlock if kind == "basic" else Bottleneck, counts, width, classes, in_channels)
