"""The one strict-loading check every network uses (gim_plugins.models.state_dicts)."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gim_plugins.errors import UserError, is_user_error
from gim_plugins.models.state_dicts import CheckpointMismatchError, fit_state_dict, load_strict


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.register_buffer("grid", torch.arange(4.0))  # computed in the constructor; files lack it


def _file(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {"conv.weight": torch.randn(2, 1, 3, 3), "conv.bias": torch.randn(2), "grid": torch.randn(4)}


def test_feature_load_strict_loads_exactly_the_file():
    net, sd = _Net(), _file()
    load_strict(net, sd, "net")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())


def test_feature_derived_buffers_keep_the_module_values():
    net, sd = _Net(), _file()
    del sd["grid"]
    expected = r"^net: checkpoint does not fit the network; missing keys: grid$"
    with pytest.raises(CheckpointMismatchError, match=expected):
        load_strict(net, sd, "net")
    fitted = fit_state_dict(net, sd, "net", derived=frozenset({"grid"}))
    assert set(fitted) == {"conv.weight", "conv.bias", "grid"} and torch.equal(fitted["grid"], torch.arange(4.0))
    load_strict(net, sd, "net", derived=frozenset({"grid"}))
    assert torch.equal(net.grid, torch.arange(4.0)) and torch.equal(net.conv.bias, sd["conv.bias"])


def test_exception_names_every_offending_key_and_loads_nothing():
    net = _Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sd = _file()
    del sd["conv.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["conv.weight"] = torch.zeros(2, 3, 3, 3)
    sd["grid"] = torch.zeros(5)  # a derived buffer that is present must fit too
    with pytest.raises(CheckpointMismatchError) as info:
        load_strict(net, sd, "tiny (Net)", derived=frozenset({"grid"}), hint=" (a hint)")
    assert str(info.value) == ("tiny (Net): checkpoint does not fit the network; missing keys: conv.bias; unexpected "
                               "keys: extra.weight; wrong shapes: grid (5,) (expected (4,)), conv.weight (2, 3, 3, 3) "
                               "(expected (2, 1, 3, 3)) (a hint)")  # in the module's state_dict() order
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


def test_exception_long_key_lists_are_cut_with_a_count():
    net = nn.Sequential(*[nn.Linear(1, 1) for _ in range(20)])
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: 0\.weight, .*, … \(40 in all\)$"):
        load_strict(net, {}, "seq")


def test_exception_mismatch_is_a_user_error_of_the_types_callers_catch():
    error = CheckpointMismatchError("x: checkpoint does not fit the network; missing keys: a")
    assert isinstance(error, UserError) and isinstance(error, ValueError) and isinstance(error, RuntimeError)
    assert is_user_error(error)


def test_exception_cli_reports_a_wrong_checkpoint_in_one_line(tmp_path):
    """A checkpoint for another network, given to ``gim match``, ends in one line naming the keys and exit 2."""
    path = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {"model.not_loftr.weight": torch.zeros(1)}}, path)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    proc = subprocess.run([sys.executable, "-m", "gim_plugins", "match", str(image), str(image), "--matcher",
                           "gim_loftr", "--weights", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "gim_loftr_50h: checkpoint does not fit the network; missing keys: " in lines[0]
    assert "unexpected keys: not_loftr.weight" in lines[0]
