"""gim_loftr: strict checkpoint layout, remapping, input rules, coordinate mapping, CLI (random/synthetic weights)."""

from __future__ import annotations

import pytest
import torch
from _ll_synthetic import layout, manifest, one_thread, synthetic_state_dict
from torch import nn

from gim_plugins.cli import main
from gim_plugins.conf import ConfError
from gim_plugins.datasets.motorcycle import paths
from gim_plugins.matching import load_matcher
from gim_plugins.models._arch.loftr import GIMLoFTRNetwork
from gim_plugins.models.gim_loftr import GIMLoFTR, remap_gim_loftr


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    yield from one_thread()


@pytest.fixture(scope="module")
def matcher() -> GIMLoFTR:
    return GIMLoFTR(pretrained=False)


class RecordingNet(nn.Module):
    """Stands in for the network: records its inputs, returns fixed raw (corner-convention) keypoints."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, color0, color1, mask0=None, mask1=None):  # type: ignore[no-untyped-def]
        self.calls.append((color0, color1, mask0, mask1))
        return {"keypoints0": torch.tensor([[16.0, 24.0], [100.0, 60.0]]),
                "keypoints1": torch.tensor([[18.5, 23.25], [97.0, 64.0]]),
                "confidence": torch.tensor([0.9, 0.3])}


def test_cardinality_state_dict_equals_manifest():
    net = GIMLoFTRNetwork()
    assert layout(net.state_dict()) == manifest("gim_loftr")  # keys, shapes, dtypes and order
    assert sum(p.numel() for p in net.parameters()) == 16_180_312
    assert "pos_encoding.pe" not in net.state_dict()  # non-persistent, as in the original


@pytest.mark.parametrize("prefix", ["model.", "matcher.", ""])
def test_feature_synthetic_checkpoint_loads_strictly(tmp_path, prefix):
    raw = synthetic_state_dict("gim_loftr", prefix=prefix, seed=3)
    path = tmp_path / "gim_loftr_50h.ckpt"
    torch.save({"state_dict": raw, "epoch": 7}, path)
    model = load_matcher("gim_loftr", weights=str(path))
    key = "loftr_fine.layers.1.merge.weight"
    assert torch.equal(model.net.state_dict()[key], raw[prefix + key])
    assert model.weights_id == "gim_loftr_50h=gim_loftr_50h.ckpt"


def test_feature_remap_is_pure_and_strips_one_prefix():
    raw = {"model.backbone.encode.conv1.weight": torch.zeros(1), "matcher.loftr_fine.x": torch.ones(1),
           "loftr_coarse.y": torch.ones(1), "model.model.z": torch.ones(1)}
    out = remap_gim_loftr({"state_dict": raw})
    assert sorted(out) == ["backbone.encode.conv1.weight", "loftr_coarse.y", "loftr_fine.x", "model.z"]
    assert "model.backbone.encode.conv1.weight" in raw  # input untouched
    with pytest.raises(ValueError, match="twice"):
        remap_gim_loftr({"model.a": torch.zeros(1), "a": torch.zeros(1)})


def test_exception_wrong_checkpoints_name_keys():
    good = synthetic_state_dict("gim_loftr", prefix="model.")
    missing = dict(good)
    del missing["model.loftr_coarse.layers.3.norm2.bias"]
    with pytest.raises(RuntimeError, match=r"missing keys: loftr_coarse\.layers\.3\.norm2\.bias$"):
        GIMLoFTR(weights=missing)
    extra = {**good, "model.fine_preprocess.down_proj.weight": torch.zeros(128, 256)}  # kornia's default config
    with pytest.raises(RuntimeError, match=r"unexpected keys.*fine_preprocess\.down_proj\.weight"):
        GIMLoFTR(weights=extra)
    shaped = {**good, "model.backbone.encode.conv1.weight": torch.zeros(64, 1, 7, 7)}  # gray, upstream LoFTR
    with pytest.raises(RuntimeError, match=r"backbone\.encode\.conv1\.weight"):
        GIMLoFTR(weights=shaped)


def test_exception_missing_default_weights_say_how(monkeypatch, tmp_path):
    monkeypatch.setenv("GIM_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gim weights fetch gim_loftr_50h"):
        GIMLoFTR()


@pytest.mark.parametrize(("option", "value"), [("oversize", "crop"), ("max_side", 4096), ("precision", "int8"),
                                               ("coarse_threshold", 1.5), ("coarse_thr", 0.2)])
def test_exception_bad_conf(option, value):
    with pytest.raises(ConfError, match=option):
        GIMLoFTR({option: value}, pretrained=False)


def test_exception_oversize_image_names_the_limit(matcher):
    big = torch.zeros(3, 64, 2056)
    with pytest.raises(ValueError, match=r"64×2056 px is larger than gim_loftr accepts \(2048 px"):
        matcher.match(big, big)


def test_feature_oversize_resize_and_divisible_by_8():
    model = GIMLoFTR({"oversize": "resize", "max_side": 1024}, pretrained=False)
    batch, scale = model.preprocess(torch.rand(3, 1500, 3001))
    assert batch.shape == (1, 3, 504, 1024)
    assert torch.allclose(scale, torch.tensor([3001 / 1024, 1500 / 504]))
    exact = torch.rand(3, 40, 48)
    batch, scale = model.preprocess(exact)
    assert torch.equal(batch[0], exact) and torch.equal(scale, torch.ones(2))


def test_feature_keypoints_mapped_to_original_pixels(monkeypatch):
    """Raw keypoints (corner convention, squashed frame) × per-axis factor − 0.5 = package convention."""
    model = GIMLoFTR(pretrained=False)
    net = RecordingNet()
    monkeypatch.setattr(model, "net", net)
    result = model.match(torch.rand(3, 251, 333), torch.rand(3, 120, 160))
    color0, color1, mask0, mask1 = net.calls[0]
    assert color0.shape == (1, 3, 248, 328) and color1.shape == (1, 3, 120, 160)
    assert mask0 is None and mask1 is None
    f0 = torch.tensor([333 / 328, 251 / 248])
    assert torch.allclose(result.keypoints0, torch.tensor([[16.0, 24.0], [100.0, 60.0]]) * f0 - 0.5)
    assert torch.allclose(result.keypoints1, torch.tensor([[18.5, 23.25], [97.0, 64.0]]) - 0.5)
    assert result.image_size0 == (251, 333) and result.image_size1 == (120, 160)
    assert model.gim_keypoint_offset == 0.5


def test_feature_masks_reach_the_coarse_grid(monkeypatch):
    model = GIMLoFTR(pretrained=False)
    net = RecordingNet()
    monkeypatch.setattr(model, "net", net)
    mask = torch.ones(120, 160, dtype=torch.bool)
    mask[:, 100:] = False  # invalid right part: cells whose top-left pixel is at x >= 100
    model.match(torch.rand(3, 120, 160), torch.rand(3, 120, 160), mask0=mask.numpy())
    _, _, coarse0, coarse1 = net.calls[0]
    assert coarse0.shape == coarse1.shape == (1, 15, 20)
    assert coarse0[0, :, :13].all() and not coarse0[0, :, 13:].any() and coarse1.all()
    with pytest.raises(ValueError, match="mask1: expected an H×W mask"):
        model.match(torch.rand(3, 120, 160), torch.rand(3, 120, 160), mask1=torch.ones(60, 80))


def test_feature_temp_bug_fix_selects_the_position_encoding():
    buggy, fixed = GIMLoFTRNetwork(temp_bug_fix=False), GIMLoFTRNetwork(temp_bug_fix=True)
    assert buggy.pos_encoding.pe.shape == (1, 256, 256, 256)
    assert not torch.allclose(buggy.pos_encoding.pe, fixed.pos_encoding.pe)
    assert layout(buggy.state_dict()) == layout(fixed.state_dict())  # the flag is not in checkpoints


def test_feature_fast_backbone_equals_module_path():
    torch.manual_seed(0)
    backbone = GIMLoFTRNetwork().backbone.eval()
    with torch.no_grad():  # non-trivial batch norms, so that folding them matters
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        fast = backbone(x)
        backbone.fast = False
        exact = backbone(x)
    for a, b in zip(fast, exact):
        assert a.shape == b.shape
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-4


def test_smoke_match_contract(matcher):
    left, right = torch.rand(3, 100, 130), torch.rand(3, 96, 128)
    result = matcher.match(left, right)
    assert result.matcher == "gim_loftr" and result.image_size0 == (100, 130)
    assert result.keypoints0.dtype == torch.float32 and result.keypoints0.shape == result.keypoints1.shape
    for k, (h, w) in ((result.keypoints0, (100, 130)), (result.keypoints1, (96, 128))):
        assert ((k >= -0.5) & (k <= torch.tensor([w - 0.5, h - 0.5]))).all()
    assert "total" in result.timing


def test_smoke_bfloat16_precision_runs():
    model = GIMLoFTR({"precision": "bfloat16"}, pretrained=False)
    result = model.match(torch.rand(3, 64, 80), torch.rand(3, 64, 80))
    assert result.keypoints0.dtype == torch.float32 and result.confidence.dtype == torch.float32


def test_smoke_cli_match_with_synthetic_weights(tmp_path, capsys):
    ckpt = tmp_path / "synthetic_gim_loftr.ckpt"
    torch.save({"state_dict": synthetic_state_dict("gim_loftr", prefix="model.")}, ckpt)
    files = paths()
    code = main(["match", str(files["left"]), str(files["right"]), "--matcher", "gim_loftr", "--weights", str(ckpt),
                 "--out", str(tmp_path), "--max-size", "256", "--conf", "coarse_threshold=0.05"])
    out = capsys.readouterr().out
    assert code == 0
    assert "matcher: gim_loftr" in out
    assert (tmp_path / "motorcycle_left_motorcycle_right_gim_loftr_match.png").is_file()
