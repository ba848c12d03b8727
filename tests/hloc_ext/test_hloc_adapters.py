"""Parts of gim_plugins.hloc_ext that need no hloc: the torchvision stand-in, the confs, ``gim hloc`` without hloc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gim_plugins.hloc_ext import confs
from gim_plugins.hloc_ext.torchvision_compat import resize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def pattern() -> torch.Tensor:
    """The deterministic (3, 37, 29) input the torchvision fixture was made from."""
    yy, xx = np.meshgrid(np.arange(37), np.arange(29), indexing="ij")
    return torch.from_numpy(np.stack([0.5 + 0.5 * np.sin(0.7 * xx + 0.3 * yy + k) * np.cos(0.2 * yy * xx / 10 + k)
                                      for k in range(3)]).astype(np.float32))


def test_feature_resize_matches_torchvision() -> None:
    """Against ``torchvision.transforms.functional.resize`` 0.29.1 outputs stored in the fixture (down and up)."""
    reference = np.load(FIXTURES / "torchvision_resize_0.29.1.npz")
    image = pattern()
    np.testing.assert_allclose(resize(image, size=(32, 24)).numpy(), reference["down"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(resize(image, size=(48, 40)).numpy(), reference["up"], rtol=0, atol=1e-6)


def test_feature_resize_identity_and_shapes() -> None:
    image = pattern()
    assert resize(image, (37, 29)) is image  # torchvision returns the input unchanged when the size fits
    assert resize(image[:1], (16, 8)).shape == (1, 16, 8)
    assert resize(image[None], (16, 8)).shape == (1, 3, 16, 8)
    assert resize(image[0], (16, 8)).shape == (16, 8)
    as_uint8 = (image * 255).round().to(torch.uint8)
    out = resize(as_uint8, (16, 8))
    assert out.dtype == torch.uint8 and out.shape == (3, 16, 8)


def test_exception_resize_unsupported_calls() -> None:
    image = pattern()
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        resize(image.numpy(), (16, 8))
    with pytest.raises(ValueError, match="explicit"):
        resize(image, 16)
    with pytest.raises(ValueError, match="nearest"):
        resize(image, (16, 8), interpolation="nearest")


def test_cardinality_confs_follow_gim() -> None:
    dense = {"gim_dkm": confs.GIM_DKM, "gim_loftr": confs.GIM_LOFTR, "gim_roma": confs.GIM_ROMA}
    for name, conf in dense.items():
        assert conf["model"] == {"name": name}
        assert (conf["max_error"], conf["cell_size"]) == (2, 8)  # GIM's reconstruction settings
        assert conf["preprocessing"]["grayscale"] is False
    assert confs.GIM_DKM["preprocessing"]["dfactor"] == 1 and confs.GIM_DKM["preprocessing"]["resize_max"] is None
    assert confs.GIM_LOFTR["preprocessing"]["dfactor"] == 8  # LoFTR needs multiples of 8, ≤ 2048 px per side
    assert confs.GIM_LOFTR["preprocessing"]["resize_max"] <= 2048
    assert confs.GIM_SUPERPOINT["preprocessing"] == {"grayscale": True, "resize_max": 1920}
    assert confs.GIM_LIGHTGLUE["model"] == {"name": "gim_lightglue"}


def test_feature_gim_roma_conf_only_when_registered() -> None:
    from gim_plugins.models.base import BaseMatcher
    from gim_plugins.registry import list_matchers, register_matcher, unregister_matcher

    if "gim_roma" in list_matchers():
        assert confs.gim_roma() == confs.GIM_ROMA
        return
    assert confs.gim_roma() is None

    class FakeRoMa(BaseMatcher):
        name = "gim_roma"

        def _init(self, conf):
            pass

        def _match(self, image0, image1):
            raise NotImplementedError

    register_matcher("gim_roma", FakeRoMa)
    try:
        assert confs.gim_roma() == confs.GIM_ROMA
    finally:
        unregister_matcher("gim_roma")


def test_feature_unit_range_clips_only_float_noise() -> None:
    pytest.importorskip("hloc", reason="the adapters subclass hloc's BaseModel")
    from gim_plugins.hloc_ext.matchers import unit_range

    noisy = torch.tensor([[[0.0, 0.5, 1.0000001]]])
    assert unit_range(noisy).max().item() == 1.0
    wrong_scale = torch.tensor([[[0.0, 128.0, 255.0]]])
    assert unit_range(wrong_scale) is wrong_scale  # a real error is left for the matcher's input check


def test_exception_gim_hloc_without_hloc(tmp_path: Path) -> None:
    """``gim hloc`` says what is missing and exits 1 when hloc cannot be imported."""
    (tmp_path / "hloc").mkdir()
    (tmp_path / "hloc" / "__init__.py").write_text("raise ImportError('hloc is broken here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "gim_plugins", "hloc"], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 1
    assert "hloc: not importable (hloc is broken here)" in proc.stdout
    assert "problem: hloc is not installed" in proc.stderr
