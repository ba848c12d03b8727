"""A ResNet-50 trunk with torchvision's parameter names, without depending on torchvision.

GIM uses torchvision's ResNet-50 twice: as DKM's encoder (``encoder.net.*``, full trunk, features at strides 2–32)
and as the LoFTR backbone (``backbone.encode.*``, RGB ``conv1``, no max-pool, truncated after ``layer3``). Keeping
torchvision's module names (``conv1``, ``bn1``, ``layer{1..4}.{i}.{conv,bn}{1..3}``, ``downsample.{0,1}``) is what
makes the original checkpoints load strictly; the computation is the standard bottleneck ResNet (He et al., 2016)
with the stride on the 3×3 convolution ("ResNet v1.5", torchvision's choice).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Bottleneck", "ResNet50Trunk"]


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand (×4), batch norm after each, identity or projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Trunk(nn.Module):
    """torchvision's ``resnet50`` without ``avgpool``/``fc``, optionally without max-pool and truncated.

    Args:
        in_channels: input channels of ``conv1`` (3 for RGB).
        num_layers: how many of ``layer1..layer4`` to build (LoFTR's backbone: 3).
        maxpool: keep the 3×3/2 max-pool after the stem (torchvision and DKM: yes; GIM-LoFTR: no).
        blocks: bottleneck blocks per layer (ResNet-50: 3, 4, 6, 3).

    ``forward`` returns the stem output followed by the output of every built layer, finest first, e.g. for the full
    trunk with max-pool on an H×W input: strides 2 (64 ch), 4 (256), 8 (512), 16 (1024), 32 (2048).
    """

    def __init__(self, in_channels: int = 3, num_layers: int = 4, maxpool: bool = True,
                 blocks: Sequence[int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        if not 1 <= num_layers <= 4:
            raise ValueError(f"num_layers must be in 1..4, got {num_layers}")
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1) if maxpool else nn.Identity()
        self.num_layers = num_layers
        channels = 64
        for index in range(num_layers):
            width = 64 * 2**index
            stride = 1 if index == 0 else 2
            layer = [Bottleneck(channels, width, stride)]
            channels = width * Bottleneck.expansion
            layer += [Bottleneck(channels, width) for _ in range(blocks[index] - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for index in range(self.num_layers):
            x = getattr(self, f"layer{index + 1}")(x)
            features.append(x)
        return features
