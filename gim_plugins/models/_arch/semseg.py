"""CSAIL's ADE20K scene parser as GIM's video pipeline uses it: ResNet50-dilated encoder + PPM-deepsup decoder.

The architecture of MIT CSAIL's semantic-segmentation-pytorch (Zhou et al., "Scene Parsing through ADE20K
Dataset", CVPR 2017; pyramid pooling after Zhao et al., PSPNet, CVPR 2017) in the configuration GIM builds
(``arch='resnet50dilated'``, ``fc_dim=2048``; ``arch='ppm_deepsup'``, ``num_class=150``), with its parameter names
so that ``encoder_epoch_20.pth`` and ``decoder_epoch_20.pth`` load strictly:

* encoder: a ResNet-50 with a "deep" stem (three 3×3 convolutions 3→64 (stride 2)→64→128, each with batch norm and
  ReLU, then a 3×3/2 max-pool) and bottleneck layers 3-4-6-3 with the stride on the 3×3 convolution. ``layer3`` and
  ``layer4`` are dilated instead of strided (output stride 8): their strided convolutions get stride 1, the first
  3×3 of ``layer3`` keeps dilation 1 and the others get 2, the first 3×3 of ``layer4`` gets 2 and the others 4
  (padding = dilation);
* decoder: pyramid pooling of the stride-8 ``layer4`` features at 1, 2, 3 and 6 cells (1×1 conv 2048→512, batch norm,
  ReLU, bilinear upsampling back), concatenated with the features (4096 channels), a 3×3 conv 4096→512 with batch
  norm and ReLU, dropout (inactive at inference) and a 1×1 conv to the 150 classes. The deep-supervision branch
  (``cbr_deepsup``, ``conv_last_deepsup``) is trained but unused at inference; it is kept for the weights.

Plain :class:`torch.nn.BatchNorm2d` replaces CSAIL's synchronised batch norm; the three bookkeeping buffers that one
adds (``_tmp_running_mean``, ``_tmp_running_var``, ``_running_iter``) are dropped by
:func:`gim_plugins.models.semseg.remap_semseg` before the strict load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gim_plugins.models._arch.resnet import Bottleneck

__all__ = ["PPMDeepsupDecoder", "ResNet50DilatedEncoder"]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _dilate(layer: nn.Sequential, dilation: int) -> None:
    """Turn a strided layer into a dilated one (CSAIL's rule: the strided 3×3 gets ``dilation // 2``)."""
    for module in layer.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.stride == (2, 2):
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = module.padding = (dilation // 2, dilation // 2)
        elif module.kernel_size == (3, 3):
            module.dilation = module.padding = (dilation, dilation)


class ResNet50DilatedEncoder(nn.Module):
    """ResNet-50 with CSAIL's deep stem, dilated to output stride 8; returns the four layer outputs."""

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 128
        for index, (count, width, stride) in enumerate(zip(blocks, (64, 128, 256, 512), (1, 2, 2, 2)), start=1):
            layer = []
            for block in range(count):
                layer.append(Bottleneck(channels, width, stride if block == 0 else 1))
                channels = width * Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        _dilate(self.layer3, 2)
        _dilate(self.layer4, 4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` normalised RGB → outputs of layer1..4 (strides 4, 8, 8, 8; 256…2048 channels)."""
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        x = F.relu(self.bn3(self.conv3(x)), inplace=True)
        x = self.maxpool(x)
        outputs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs


class PPMDeepsupDecoder(nn.Module):
    """Pyramid pooling module + classifier (and the training-only deep-supervision head, kept for the weights)."""

    def __init__(self, num_classes: int = 150, fc_dim: int = 2048, pool_scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), nn.Conv2d(fc_dim, 512, 1, bias=False), nn.BatchNorm2d(512),
                          nn.ReLU(inplace=True))
            for scale in pool_scales
        )
        self.cbr_deepsup = _conv_bn_relu(fc_dim // 2, fc_dim // 4)
        self.conv_last = nn.Sequential(
            nn.Conv2d(fc_dim + len(pool_scales) * 512, 512, 3, padding=1, bias=False), nn.BatchNorm2d(512),
            nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(512, num_classes, 1),
        )
        self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, num_classes, 1)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Class scores ``(B, num_classes, *size)``: softmax probabilities, bilinearly upsampled to ``size``."""
        conv5 = features[-1]
        height, width = conv5.shape[-2:]
        pooled = [conv5] + [F.interpolate(branch(conv5), (height, width), mode="bilinear", align_corners=False)
                            for branch in self.ppm]
        logits = self.conv_last(torch.cat(pooled, dim=1))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits.softmax(dim=1)
