"""The exports shared by this folder's tests (its conftest imports the fixtures): each matcher is exported once per
session (tens of seconds each), with the weights its PyTorch twin is built from.

aliked_lightglue runs with its real offline weights (skipped when ``gim weights fetch aliked_lightglue`` has not run);
gim_lightglue and gim_loftr with synthetic checkpoints built from ``tests/fixtures/manifests``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from gim_plugins.matching import load_matcher, weights_available
from gim_plugins.types import MatchResult

MODELS_TESTS = Path(__file__).resolve().parents[1] / "models"
if str(MODELS_TESTS) not in sys.path:
    sys.path.insert(0, str(MODELS_TESTS))

from _ll_synthetic import synthetic_state_dict  # noqa: E402

__all__ = ["LOFTR_SIZE", "SIZE", "aliked_export", "gim_lightglue_weights", "glg_export", "loftr_export",
           "loftr_weights", "shared_matches", "torch_twin"]

SIZE = (500, 741)
"""The motorcycle pair's ``(h, w)``."""
LOFTR_SIZE = (496, 736)
"""GIM's squash of the pair to multiples of 8: the size gim_loftr is exported at."""


def gim_lightglue_weights() -> dict[str, torch.Tensor]:
    """A synthetic gim_lightglue checkpoint whose LightGlue half passes descriptors through.

    Random LightGlue weights collapse the descriptors (a handful of matches); here every block's last FFN layer is
    zero (the residual keeps the input: attention still runs, its message is multiplied by zero), the final
    projection is 4·I and matchability is high, so the assignment is SuperPoint's descriptor similarity and the
    motorcycle pair gives hundreds of mutual matches. LightGlue's transformer numerics are measured with
    aliked_lightglue's real weights.
    """
    state = synthetic_state_dict("gim_lightglue_checkpoint_layout", seed=1)
    for key, value in state.items():
        if re.fullmatch(r"model\.transformers\.\d+\.(self|cross)_attn\.ffn\.3\.(weight|bias)", key):
            state[key] = torch.zeros_like(value)
        elif re.fullmatch(r"model\.log_assignment\.\d+\.final_proj\.weight", key):
            state[key] = torch.eye(value.shape[0]) * 4
        elif re.fullmatch(r"model\.log_assignment\.\d+\.final_proj\.bias", key):
            state[key] = torch.zeros_like(value)
        elif re.fullmatch(r"model\.log_assignment\.\d+\.matchability\.bias", key):
            state[key] = torch.full_like(value, 10.0)
    return state


def loftr_weights() -> dict[str, torch.Tensor]:
    """A synthetic GIM-LoFTR checkpoint (random weights in GIM's layout)."""
    return synthetic_state_dict("gim_loftr", seed=3)


def _export(tmp_path_factory: pytest.TempPathFactory, name: str, **conf: object) -> Path:
    for module in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(module, reason="the onnx extra is not installed")
    from gim_plugins.export.onnx_export import main

    out = tmp_path_factory.mktemp(name) / "export"
    main({"matcher": name, **conf}, out)
    return out


@pytest.fixture(scope="session")
def aliked_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aliked_lightglue's real weights, at the pair's size."""
    if not weights_available("aliked_lightglue"):
        pytest.skip("aliked_lightglue weights are not installed (gim weights fetch aliked_lightglue)")
    return _export(tmp_path_factory, "aliked_lightglue", size=SIZE)


@pytest.fixture(scope="session")
def glg_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dynamic height and width; filter threshold 0: the synthetic assignment scores are small."""
    return _export(tmp_path_factory, "gim_lightglue", weights=gim_lightglue_weights(),
                   matcher_conf={"filter_threshold": 0.0}, dynamic=True)


@pytest.fixture(scope="session")
def loftr_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Coarse threshold 0 (mutual nearest neighbours only): random weights never reach GIM's 0.2."""
    return _export(tmp_path_factory, "gim_loftr", weights=loftr_weights(), size=LOFTR_SIZE,
                   matcher_conf={"coarse_threshold": 0.0})


def torch_twin(onnx_matcher: Any) -> Any:
    """The PyTorch matcher with the exported conf and weights (every LightGlue layer)."""
    name = onnx_matcher.name
    conf = dict(onnx_matcher.manifest["conf"])
    if name == "aliked_lightglue":
        return load_matcher(name, **conf)
    if name == "gim_lightglue":
        return load_matcher(name, weights=gim_lightglue_weights(), **conf)
    return load_matcher(name, weights=loftr_weights(), **conf)


def _match_rows(result: MatchResult) -> torch.Tensor:
    return torch.cat([result.keypoints0, result.keypoints1], 1).double()


def shared_matches(a: MatchResult, b: MatchResult, tolerance: float) -> int:
    """How many matches of ``a`` have a match of ``b`` within ``tolerance`` px in all four coordinates."""
    if len(a) == 0 or len(b) == 0:
        return 0
    distance = torch.cdist(_match_rows(a), _match_rows(b), p=float("inf")).min(1).values
    return int((distance <= tolerance).sum())
