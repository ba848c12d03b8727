"""Real test images for parity runs: the Middlebury motorcycle pair bundled with scikit-image, resized."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from gim_plugins.datasets.motorcycle import paths
from gim_plugins.io import read_image


def motorcycle_pair(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The left and right images as float32 ``(3, height, width)`` RGB tensors in [0, 1]."""
    files = paths()
    out = []
    for side in ("left", "right"):
        image = cv2.resize(read_image(files[side]), (width, height), interpolation=cv2.INTER_AREA)
        out.append(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0)
    return out[0], out[1]


def calibrate_batch_norms(module: torch.nn.Module, images: torch.Tensor, seed: int) -> None:
    """Random BatchNorm affine parameters, running statistics measured on ``images`` (one train-mode pass).

    A randomly initialised ResNet-50 without calibrated statistics produces exploding, nearly constant features and
    LoFTR then finds one or two matches; calibrated statistics give informative features and many matches, and the
    non-trivial affine parameters make batch-norm folding matter.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the calibration pass
        module.train()
        module(images)
        module.eval()


def condition_random_loftr_backbone(backbone: torch.nn.Module, images: torch.Tensor, seed: int) -> None:
    """Make a randomly initialised LoFTR backbone produce informative features (for tests with random weights).

    The trunk's ReLU outputs are all positive, so random 1×1 projections give every coarse cell nearly the same
    dominant direction and the dual softmax finds a single match. Zero-mean projection rows remove that common
    component; batch norms get random affine parameters and statistics measured on ``images``. Finally the coarse
    and fine outputs are scaled to unit standard deviation, so that similarity logits have the moderate range of a
    trained network instead of hundreds (where float rounding alone moves dual-softmax scores by 1e-3).
    """
    with torch.no_grad():
        for name in ("layer3_outconv", "layer2_outconv", "layer1_outconv"):
            conv = getattr(backbone, name)
            conv.weight.sub_(conv.weight.mean(1, keepdim=True))
    calibrate_batch_norms(backbone, images, seed)
    with torch.no_grad():
        coarse, fine = backbone(images)
        backbone.layer3_outconv.weight.div_(coarse.std())
        backbone.layer1_outconv2[3].weight.div_(fine.std())


def condition_random_lightglue(lightglue: torch.nn.Module, gain: float = 6.0, seed: int = 0) -> None:
    """Make a randomly initialised LightGlue (GIM's or kornia's names) match like a trained one would.

    Random layers drive every descriptor towards one common direction, so a random LightGlue finds one or two mutual
    nearest neighbours. Here the residual branches are damped (×0.1), ``final_proj`` becomes ``gain``·identity plus
    noise and matchability is high, so the assignment follows the input descriptors' similarity: hundreds of mutual
    matches between the two motorcycle views, some above the 0.1 filter threshold.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in lightglue.named_parameters():
            if any(part in name for part in ("out_proj", "to_out", "ffn.3")):
                param.mul_(0.1)
            elif "final_proj.weight" in name:
                dim = param.shape[0]
                param.copy_(gain * torch.eye(dim) + 0.01 * torch.randn(dim, dim, generator=generator))
            elif "final_proj.bias" in name:
                param.zero_()
            elif "matchability.weight" in name:
                param.mul_(0.01)
            elif "matchability.bias" in name:
                param.fill_(3.0)


def condition_random_superpoint(superpoint: torch.nn.Module, seed: int = 0) -> None:
    """Random SuperPoint weights with informative descriptors (same parameter names in GIM's code and ours).

    With PyTorch's default initialisation the activations shrink layer by layer until the descriptor head outputs
    little more than its bias: every keypoint gets the same descriptor. He initialisation keeps them alive, and
    zero-mean ``convDb`` rows remove the component shared by all (ReLU inputs are positive).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in superpoint.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                module.bias.mul_(0.1)
        superpoint.convDb.weight.sub_(superpoint.convDb.weight.mean(1, keepdim=True))
