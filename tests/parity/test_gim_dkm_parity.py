"""Numeric parity of gim_dkm with GIM's original DKMv3 (same random weights, same seeded inputs).

Skipped unless the original code is importable (``imcui`` + ``torchvision``; set-up in ``parity/README.md``). Run::

    <refvenv>/bin/python -m pytest tests/parity/test_gim_dkm_parity.py -s            # 240×320, no upsampling
    <refvenv>/bin/python -m pytest tests/parity/test_gim_dkm_parity.py -s --runslow  # needs ≈14 GB free

The GIM-default case (672×896 + 1152×1536, ≈14 GB for the original) is ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from gim_plugins.models._arch.dkm_sampling import balanced_sample
from gim_plugins.models.dense_warp import padding_to_aspect
from gim_plugins.models.gim_dkm import GIMDKM
from parity.original_dkm import SETUP_HINT, build_original, gim_root, looped_inverse, parity_inputs, randomize_batchnorm

pytestmark = pytest.mark.skipif(gim_root() is None, reason=SETUP_HINT)

TOLERANCE = 1e-4


def _models(h: int, w: int, upsample: bool) -> tuple[torch.nn.Module, GIMDKM]:
    torch.manual_seed(0)
    original = build_original(h, w, upsample)
    randomize_batchnorm(original, torch.Generator().manual_seed(1))
    conf = {"h": h, "w": w, "upsample": upsample, "pad_to_aspect": False, "seed": 0}
    ours = GIMDKM(conf, weights=original.state_dict())
    return original, ours


def _dense_both(original: torch.nn.Module, ours: GIMDKM, image0: torch.Tensor,
                image1: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        with looped_inverse():
            warp_o, cert_o = original.match(image0, image1)
        warp_n, cert_n = ours.dense(image0, image1)
    return warp_o, cert_o, warp_n, cert_n


def _check(label: str, warp_o: torch.Tensor, cert_o: torch.Tensor, warp_n: torch.Tensor,
           cert_n: torch.Tensor) -> None:
    assert warp_o.shape == warp_n.shape and cert_o.shape == cert_n.shape
    warp_diff = (warp_o - warp_n).abs().max().item()
    cert_diff = (cert_o - cert_n).abs().max().item()
    print(f"\n[{label}] warp {tuple(warp_o.shape)}: max |Δ| {warp_diff:.3e}; certainty: max |Δ| {cert_diff:.3e}; "
          f"certainty > 0.05 on {(cert_o > 0.05).float().mean():.1%} of pixels")
    assert warp_diff <= TOLERANCE and cert_diff <= TOLERANCE


def _check_sampling(label: str, original: torch.nn.Module, ours: GIMDKM, warp: torch.Tensor,
                    certainty: torch.Tensor, warp_n: torch.Tensor, cert_n: torch.Tensor) -> None:
    torch.manual_seed(0)
    matches_o, conf_o = original.sample(warp, certainty, 5000)
    matches_n, conf_n = ours.sample(warp, certainty)  # seed=0: a generator seeded like torch.manual_seed(0)
    assert torch.equal(matches_o, matches_n) and torch.equal(conf_o, conf_n)
    matches_e, _ = balanced_sample(warp_n, cert_n, 5000, generator=torch.Generator().manual_seed(0))
    same = _same_rows(matches_e, matches_o)
    print(f"[{label}] sampling on the original's dense output: {len(matches_o)} matches, identical; end to end "
          f"(each on its own dense output): {same:.2%} of the samples are the same match (within {TOLERANCE})")


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of rows of ``a`` equal to the same row of ``b`` within the tolerance (the two dense warps differ by
    float rounding, so sampled match vectors are compared with it, not bit for bit)."""
    if a.shape != b.shape:
        return 0.0
    return ((a - b).abs().amax(dim=1) <= TOLERANCE).float().mean().item()


def test_feature_parity_240x320_without_upsampling() -> None:
    original, ours = _models(240, 320, upsample=False)
    image0, image1 = parity_inputs(300, 400)
    warp_o, cert_o, warp_n, cert_n = _dense_both(original, ours, image0, image1)
    _check("240x320", warp_o, cert_o, warp_n, cert_n)
    _check_sampling("240x320", original, ours, warp_o, cert_o, warp_n, cert_n)


@pytest.mark.slow
def test_feature_parity_gim_defaults() -> None:
    """GIM's demo setting: centred padding to 4:3, 672×896, 1152×1536 refinement pass (GP N = 2352 > 2000, so the
    original's sigma_noise slice behaviour is exercised)."""
    original, ours = _models(672, 896, upsample=True)
    image0, image1 = parity_inputs(500, 740)
    padded = []
    for image in (image0, image1):
        left, right, top, bottom = padding_to_aspect(*image.shape[-2:], 672, 896)
        padded.append(torch.nn.functional.pad(image, (left, right, top, bottom)))
    warp_o, cert_o, warp_n, cert_n = _dense_both(original, ours, *padded)
    _check("GIM defaults", warp_o, cert_o, warp_n, cert_n)
    _check_sampling("GIM defaults", original, ours, warp_o, cert_o, warp_n, cert_n)
