"""GIMMatcher over gim_roma: two weight files (GIM's checkpoint + DINOv2), batches of pairs, tiny sizes, CPU.

RoMa holds ≈1.7 GB of weights (DINOv2 ViT-L), so the test that loads files (its own instance) runs first and the
shared random-weight matcher is built afterwards; at most one instance is alive at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kornia_helpers import shifted_pair

from gim_plugins import list_matchers
from gim_plugins.kornia_ext import GIMMatcher

MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"
OPTIONS = {"h": 56, "w": 56, "upsample": False, "num_samples": 200, "seed": 0}
SIZES = ((64, 96), (72, 88))

pytestmark = pytest.mark.skipif("gim_roma" not in list_matchers(), reason="gim_roma is not registered")


def _constant_file(manifest: str, prefix: str, path: Path) -> Path:
    """Manifest keys/shapes/dtypes, one stored value per tensor (a few kB on disk)."""
    state = {}
    for key, shape, dtype in json.loads((MANIFESTS / manifest).read_text()):
        value = torch.tensor(1, dtype=torch.int64) if dtype == "int64" else torch.tensor([0.5]).expand(shape)
        state[prefix + key] = value
    torch.save({"state_dict": state} if prefix else state, path)
    return path


def test_smoke_two_weight_files(tmp_path: Path) -> None:
    weights = {"gim_roma_100h": _constant_file("gim_roma.json", "model.", tmp_path / "gim_roma_100h.ckpt"),
               "dinov2_vitl14": _constant_file("dinov2_vitl14.json", "", tmp_path / "dinov2_vitl14_pretrain.pth")}
    matcher = GIMMatcher("gim_roma", weights=weights, **OPTIONS)
    assert matcher.matcher.weights_id == ("gim_roma_100h=gim_roma_100h.ckpt, "
                                          "dinov2_vitl14=dinov2_vitl14_pretrain.pth")
    assert float(matcher.matcher.net.encoder.dinov2.pos_embed[0, 0, 0]) == 0.5


@pytest.fixture(scope="module")
def matcher() -> GIMMatcher:
    torch.manual_seed(0)
    return GIMMatcher("gim_roma", pretrained=False, **OPTIONS)


def test_cardinality_batch_equals_per_pair(matcher: GIMMatcher) -> None:
    pairs = [shifted_pair(*SIZES, seed=seed) for seed in (0, 1)]
    out = matcher({"image0": torch.stack([p[0] for p in pairs]), "image1": torch.stack([p[1] for p in pairs])})
    assert set(out["batch_indexes"].tolist()) == {0, 1}
    for b, (image0, image1) in enumerate(pairs):
        keep = out["batch_indexes"] == b
        result = matcher.matcher.match(image0, image1)
        assert torch.equal(out["keypoints0"][keep], result.keypoints0)
        assert torch.equal(out["keypoints1"][keep], result.keypoints1)
        assert torch.equal(out["confidence"][keep], result.confidence)
        for k, (h, w) in ((result.keypoints0, SIZES[0]), (result.keypoints1, SIZES[1])):
            assert bool((k > -0.5).all()) and bool((k[:, 0] <= w - 1.5).all()) and bool((k[:, 1] <= h - 1.5).all())


def test_exception_half_cast_is_refused(matcher: GIMMatcher) -> None:
    with pytest.raises(TypeError, match="float32"):
        matcher.half()
