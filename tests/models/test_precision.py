"""precision="auto": bfloat16 only where the device executes it natively (CPU flags, CUDA compute capability)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gim_plugins.conf import ConfError
from gim_plugins.models import precision
from gim_plugins.models.gim_dkm import GIMDKM
from gim_plugins.models.precision import cpu_bf16_flags, describe_precision, native_bf16, resolve_precision

NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpuinfo(tmp_path, flags: str) -> str:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nflags\t\t: {flags}\n")
    return str(path)


def test_feature_cpu_flags_are_read_from_cpuinfo(tmp_path):
    assert cpu_bf16_flags(cpuinfo(tmp_path, "fpu sse avx2 avx512f")) == ()
    assert cpu_bf16_flags(cpuinfo(tmp_path, "avx2 avx512f avx512_bf16 amx_tile amx_bf16")) == ("amx_bf16",
                                                                                                "avx512_bf16")
    assert cpu_bf16_flags(str(tmp_path / "absent")) is None


@pytest.mark.parametrize(("flags", "expected"), [((), torch.float32), (("avx512_bf16",), torch.bfloat16),
                                                 (("amx_bf16",), torch.bfloat16), (None, None)])
def test_feature_auto_follows_the_cpu(monkeypatch, flags, expected):
    monkeypatch.delenv("GIM_PLUGINS_NATIVE_BF16", raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    if flags is None:  # no /proc/cpuinfo: torch's capability string decides
        monkeypatch.setattr(precision, "_torch_cpu_capability", lambda: "AVX512_BF16")
        assert resolve_precision("auto", "cpu", NAMES) == torch.bfloat16
        monkeypatch.setattr(precision, "_torch_cpu_capability", lambda: "AVX2")
        expected = torch.float32
    assert resolve_precision("auto", "cpu", NAMES) == expected
    assert ("bfloat16" if expected == torch.bfloat16 else "float32") in describe_precision("cpu")


def test_feature_auto_follows_the_cuda_compute_capability(monkeypatch):
    monkeypatch.delenv("GIM_PLUGINS_NATIVE_BF16", raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for capability, expected in (((7, 5), False), ((8, 0), True), ((9, 0), True), ((6, 1), False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index, c=capability: c)
        ok, why = native_bf16("cuda")
        assert ok is expected and f"{capability[0]}.{capability[1]}" in why
    assert native_bf16("mps") == (False, "mps: float32 unless asked otherwise")


def test_feature_explicit_values_pass_through():
    assert resolve_precision("fp32", "cpu", NAMES) == torch.float32
    assert resolve_precision("bf16", "cpu", NAMES) == torch.bfloat16


def test_exception_unknown_precision():
    with pytest.raises(ValueError, match="'auto' or one of fp32, bf16"):
        resolve_precision("half", "cpu", NAMES)


@pytest.mark.parametrize("name", ["gim_dkm", "gim_loftr", "gim_roma"])
def test_exception_matchers_refuse_unknown_precisions(name):
    from gim_plugins.matching import load_matcher

    with pytest.raises((ValueError, ConfError), match="precision"):
        load_matcher(name, pretrained=False, precision="int8")


def test_feature_gim_dkm_auto_resolves_per_device(monkeypatch):
    torch.manual_seed(0)
    conf = {"h": 32, "w": 32, "upsample": False, "num_samples": 100, "seed": 0}
    auto = GIMDKM({**conf, "precision": "auto"}, pretrained=False)
    fp32 = GIMDKM({**conf, "precision": "fp32"}, weights=auto.net.state_dict())
    monkeypatch.setenv("GIM_PLUGINS_NATIVE_BF16", "1")
    assert auto.compute_dtype() == torch.bfloat16
    monkeypatch.setenv("GIM_PLUGINS_NATIVE_BF16", "0")
    assert auto.compute_dtype() == torch.float32
    image = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    a, b = auto.match(image, image[::-1].copy()), fp32.match(image, image[::-1].copy())
    assert torch.equal(a.keypoints0, b.keypoints0) and torch.equal(a.keypoints1, b.keypoints1)
    assert GIMDKM({**conf, "precision": "bf16"}, pretrained=False).compute_dtype() == torch.bfloat16


def test_feature_matchers_without_the_option_compute_in_float32():
    from gim_plugins.models.root_sift import RootSIFT

    assert RootSIFT().compute_dtype() == torch.float32
