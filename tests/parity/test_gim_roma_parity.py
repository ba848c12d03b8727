"""Numeric parity of gim_roma with GIM's original RoMa (same random weights, same seeded inputs).

Skipped unless the original code is importable (``imcui`` + ``torchvision`` + ``einops``; set-up in
``parity/README.md``). Each network holds ≈2 GB of weights::

    <refvenv>/bin/python -m pytest tests/parity/test_gim_roma_parity.py -s             # 224², no upsampling
    <refvenv>/bin/python -m pytest tests/parity/test_gim_roma_parity.py -s --runslow   # needs ≈15 GB free

The default case is a 224×224 coarse pass without upsampling; GIM's defaults (672² + 1344², ≈15 GB for the
original) are ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from gim_plugins.models._arch.dinov2 import DinoV2ViTL14
from gim_plugins.models._arch.dkm_sampling import balanced_sample
from gim_plugins.models.dense_warp import padding_to_aspect
from gim_plugins.models.gim_roma import GIMRoMa
from parity.original_dkm import looped_inverse, parity_inputs, randomize_batchnorm
from parity.original_roma import SETUP_HINT, build_original_roma, roma_root

pytestmark = pytest.mark.skipif(roma_root() is None, reason=SETUP_HINT)

TOLERANCE = 1e-4


def _dinov2_weights() -> dict[str, torch.Tensor]:
    """Random DINOv2 weights with non-trivial LayerScale and norms (default init leaves them at 1/0)."""
    torch.manual_seed(3)
    state = DinoV2ViTL14().state_dict()
    gen = torch.Generator().manual_seed(4)
    for key, value in state.items():
        if key.endswith(("gamma", "norm1.weight", "norm2.weight", "norm.weight")):
            value.copy_(1 + 0.1 * torch.randn(value.shape, generator=gen))
        elif key.endswith(("norm1.bias", "norm2.bias", "norm.bias", "cls_token", "mask_token")):
            value.copy_(0.1 * torch.randn(value.shape, generator=gen))
    return state


def _models(size: int, upsample: bool) -> tuple[torch.nn.Module, GIMRoMa]:
    dinov2 = _dinov2_weights()
    torch.manual_seed(0)
    original = build_original_roma(size, upsample, dinov2)
    randomize_batchnorm(original, torch.Generator().manual_seed(1))
    conf = {"h": size, "w": size, "upsample": upsample, "upsample_res": (2 * size, 2 * size),
            "pad_to_aspect": False, "seed": 0}
    ours = GIMRoMa(conf, weights={"gim_roma_100h": original.state_dict(), "dinov2_vitl14": dinov2})
    return original, ours


def _compare(label: str, original: torch.nn.Module, ours: GIMRoMa, image0: torch.Tensor,
             image1: torch.Tensor) -> None:
    with torch.inference_mode():
        with looped_inverse():
            warp_o, cert_o = original.match(image0, image1)
        warp_n, cert_n = ours.dense(image0, image1)
    assert warp_o.shape == warp_n.shape and cert_o.shape == cert_n.shape
    warp_diff = (warp_o - warp_n).abs().max().item()
    cert_diff = (cert_o - cert_n).abs().max().item()
    print(f"\n[{label}] warp {tuple(warp_o.shape)}: max |Δ| {warp_diff:.3e}; certainty: max |Δ| {cert_diff:.3e}; "
          f"certainty > 0.05 on {(cert_o > 0.05).float().mean():.1%} of pixels")
    torch.manual_seed(0)
    matches_o, conf_o = original.sample(warp_o, cert_o, 5000)
    matches_n, conf_n = ours.sample(warp_o, cert_o)  # seed=0: a generator seeded like torch.manual_seed(0)
    identical = torch.equal(matches_o, matches_n) and torch.equal(conf_o, conf_n)
    matches_e, _ = balanced_sample(warp_n, cert_n, 5000, generator=torch.Generator().manual_seed(0),
                                   kde_dtype=torch.float16)
    same = (((matches_e - matches_o).abs().amax(dim=1) <= TOLERANCE).float().mean().item()
            if matches_e.shape == matches_o.shape else 0.0)
    print(f"[{label}] sampling on the original's dense output: {len(matches_o)} matches, identical: {identical}; "
          f"end to end (each on its own dense output): {same:.2%} of the samples are the same match")
    assert warp_diff <= TOLERANCE and cert_diff <= TOLERANCE
    assert identical


def test_feature_parity_224_without_upsampling() -> None:
    original, ours = _models(224, upsample=False)
    image0, image1 = parity_inputs(300, 260)
    _compare("224", original, ours, image0, image1)


@pytest.mark.slow
def test_feature_parity_gim_defaults() -> None:
    """GIM's demo setting: centred padding to a square, 672² coarse pass (GP N = 48² = 2304), 1344² refinement."""
    original, ours = _models(672, upsample=True)
    image0, image1 = parity_inputs(500, 740)
    padded = []
    for image in (image0, image1):
        left, right, top, bottom = padding_to_aspect(*image.shape[-2:], 672, 672)
        padded.append(torch.nn.functional.pad(image, (left, right, top, bottom)))
    _compare("GIM defaults", original, ours, *padded)
