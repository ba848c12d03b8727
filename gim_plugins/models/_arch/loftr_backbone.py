"""GIM-LoFTR's backbone: an RGB ResNet-50 trunk with a two-level feature pyramid (strides 8 and 2).

Upstream LoFTR (and kornia) use a small BasicBlock ResNet on gray images; GIM swapped in torchvision's ResNet-50
(``encode``: RGB stem without max-pool, ``layer1``–``layer3`` at strides 2, 4, 8 with 256, 512, 1024 channels) and
kept LoFTR's top-down pyramid with GIM's widths:

* coarse (1/8, 256 ch): ``layer3_outconv`` 1×1 1024→256 of the stride-8 trunk output;
* 1/4: ``layer2_outconv`` 1×1 512→256 plus the ×2 upsampled coarse map, then ``layer2_outconv2``
  (3×3 256→256, BN, LeakyReLU, 3×3 256→196);
* fine (1/2, 128 ch): ``layer1_outconv`` 1×1 256→196 plus the ×2 upsampled 1/4 map, then ``layer1_outconv2``
  (3×3 196→196, BN, LeakyReLU, 3×3 196→128).

Upsampling is bilinear with ``align_corners=True`` (LoFTR's choice); no convolution has a bias. Parameter names are
those of the original module (``backbone.*`` in ``tests/fixtures/manifests/gim_loftr.json``).

With ``fast=True`` (the default) inference folds every batch norm into the convolution before it and runs in
channels-last layout: the trunk and pyramid are ~85 % of GIM-LoFTR's FLOPs, much of it at 1/2 resolution where
separate batch-norm and addition passes over large activations cost a sizeable share of the convolution time. The
result equals the module path up to float rounding (relative differences ~1e-5 on random weights, the same size as
the original's own change between 1 and 2 threads). ``fast=False`` and training mode run the plain modules, which
reproduce the original bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gim_plugins.models._arch.resnet import Bottleneck, ResNet50Trunk

__all__ = ["GIMResNetFPN", "fold_batch_norm"]

BLOCK_DIMS = (64, 128, 196, 256, 512, 1024)
"""GIM's ``RESNETFPN.BLOCK_DIMS``; indices 1–5 set the pyramid widths (128 fine, 196 mid, 256 coarse)."""


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False)


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the convolution ``bn(conv(x))`` in eval mode (running statistics)."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return weight, bias


def _conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    weight, bias = fold_batch_norm(conv, bn)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _bottleneck_folded(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    out = F.relu_(_conv_bn(x, block.conv1, block.bn1))
    out = F.relu_(_conv_bn(out, block.conv2, block.bn2))
    out = _conv_bn(out, block.conv3, block.bn3)
    if block.downsample is None:
        identity = x
    else:
        conv, bn = block.downsample[0], block.downsample[1]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        identity = _conv_bn(x, conv, bn)
    return F.relu_(out.add_(identity))


def _trunk_folded(trunk: ResNet50Trunk, x: torch.Tensor) -> list[torch.Tensor]:
    """``trunk(x)`` with every batch norm folded (eval mode only); same outputs as the module's ``forward``."""
    x = F.relu_(_conv_bn(x, trunk.conv1, trunk.bn1))
    outputs = [x]
    x = trunk.maxpool(x)
    for index in range(trunk.num_layers):
        for block in getattr(trunk, f"layer{index + 1}"):
            x = _bottleneck_folded(block, x)
        outputs.append(x)
    return outputs


class GIMResNetFPN(nn.Module):
    """GIM's ``ResNetFPN_8_2``: RGB ``(N, 3, H, W)`` in [0, 1] → coarse ``(N, 256, H/8, W/8)``, fine
    ``(N, 128, H/2, W/2)``. H and W must be multiples of 8 (the wrapper resizes)."""

    def __init__(self, fast: bool = True) -> None:
        super().__init__()
        self.fast = fast
        d = BLOCK_DIMS
        self.encode = ResNet50Trunk(in_channels=3, num_layers=3, maxpool=False)
        self.layer3_outconv = _conv1x1(d[5], d[3])
        self.layer2_outconv = _conv1x1(d[4], d[3])
        self.layer2_outconv2 = nn.Sequential(_conv3x3(d[3], d[3]), nn.BatchNorm2d(d[3]), nn.LeakyReLU(),
                                             _conv3x3(d[3], d[2]))
        self.layer1_outconv = _conv1x1(d[3], d[2])
        self.layer1_outconv2 = nn.Sequential(_conv3x3(d[2], d[2]), nn.BatchNorm2d(d[2]), nn.LeakyReLU(),
                                             _conv3x3(d[2], d[1]))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _up2(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training or not self.fast:
            return self._forward_modules(x)
        return self._forward_folded(x)

    def _forward_modules(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, x1, x2, x3 = self.encode(x)
        coarse = self.layer3_outconv(x3)
        mid = self.layer2_outconv2(self.layer2_outconv(x2) + self._up2(coarse))
        fine = self.layer1_outconv2(self.layer1_outconv(x1) + self._up2(mid))
        return coarse, fine

    def _forward_folded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        _, x1, x2, x3 = _trunk_folded(self.encode, x)
        coarse = self.layer3_outconv(x3)
        mid = self.layer2_outconv(x2).add_(self._up2(coarse))
        mid = self._outconv2_folded(self.layer2_outconv2, mid)
        fine = self.layer1_outconv(x1).add_(self._up2(mid))
        fine = self._outconv2_folded(self.layer1_outconv2, fine)
        return coarse, fine  # channels-last: flattening the coarse map to (N, HW, C) is then free

    @staticmethod
    def _outconv2_folded(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        conv_a, bn, act, conv_b = seq
        assert isinstance(conv_a, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(conv_b, nn.Conv2d)
        assert isinstance(act, nn.LeakyReLU)
        return conv_b(F.leaky_relu_(_conv_bn(x, conv_a, bn), act.negative_slope))
