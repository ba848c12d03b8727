"""gim_lightglue: SuperPoint behaviour, strict checkpoint split, coordinate frames, CLI (random/synthetic weights)."""

from __future__ import annotations

import pytest
import torch
from _ll_synthetic import layout, manifest, one_thread, synthetic_state_dict

from gim_plugins.cli import main
from gim_plugins.conf import ConfError
from gim_plugins.datasets.motorcycle import paths
from gim_plugins.matching import load_matcher
from gim_plugins.models._arch.superpoint import SuperPoint, nms_max_pool, sample_descriptors_legacy
from gim_plugins.models.gim_lightglue import GIMLightGlue, remap_gim_lightglue
from gim_plugins.types import Features


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    yield from one_thread()


@pytest.fixture(scope="module")
def matcher() -> GIMLightGlue:
    return GIMLightGlue(pretrained=False)


def _heat_with_peaks(height: int, width: int, peaks: dict[tuple[int, int], float]) -> torch.Tensor:
    heat = torch.zeros(1, height, width)
    for (y, x), value in peaks.items():
        heat[0, y, x] = value
    return heat


# ------------------------------------------------------------------------------------------------ checkpoints


def test_cardinality_state_dicts_equal_manifests(matcher):
    assert layout(matcher.superpoint.state_dict()) == manifest("gim_lightglue_superpoint")
    lightglue = {k: v for k, v in matcher.lightglue.state_dict().items() if k != "confidence_thresholds"}
    assert layout(lightglue) == manifest("gim_lightglue_lightglue")
    assert sum(p.numel() for p in matcher.superpoint.parameters()) == 1_300_865
    assert sum(p.numel() for p in matcher.lightglue.parameters()) == 11_851_601


def test_feature_remap_splits_the_checkpoint():
    raw = synthetic_state_dict("gim_lightglue_checkpoint_layout")
    superpoint, lightglue = remap_gim_lightglue({"state_dict": raw})
    assert [k for k, *_ in manifest("gim_lightglue_superpoint")] == list(superpoint)
    assert [k for k, *_ in manifest("gim_lightglue_lightglue")] == list(lightglue)
    assert superpoint["convDb.bias"] is raw["superpoint.convDb.bias"]
    assert "superpoint.convDb.bias" in raw  # input untouched


@pytest.mark.parametrize("wrapped", [True, False])
def test_feature_synthetic_checkpoint_loads_strictly(tmp_path, wrapped):
    raw = synthetic_state_dict("gim_lightglue_checkpoint_layout", seed=5)
    path = tmp_path / "gim_lightglue_100h.ckpt"
    torch.save({"state_dict": raw} if wrapped else raw, path)
    model = load_matcher("gim_lightglue", weights=str(path))
    assert torch.equal(model.superpoint.convPb.weight, raw["superpoint.convPb.weight"])
    assert torch.equal(model.lightglue.state_dict()["log_assignment.8.final_proj.weight"],
                       raw["model.log_assignment.8.final_proj.weight"])
    thresholds = model.lightglue.confidence_thresholds  # the derived buffer kornia computes itself
    assert thresholds.shape == (9,) and torch.isfinite(thresholds).all()


def test_exception_wrong_checkpoints_name_keys():
    good = synthetic_state_dict("gim_lightglue_checkpoint_layout")
    with pytest.raises(ValueError, match=r"without a 'superpoint.' or 'model.' prefix: \['optimizer.lr'\]"):
        GIMLightGlue(weights={**good, "optimizer.lr": torch.zeros(())})
    only_lightglue = {k: v for k, v in good.items() if k.startswith("model.")}
    with pytest.raises(ValueError, match=r"no 'superpoint.\*' keys"):
        GIMLightGlue(weights=only_lightglue)
    missing = {k: v for k, v in good.items() if k != "model.transformers.4.cross_attn.to_out.bias"}
    with pytest.raises(RuntimeError, match=r"model\.\*\).*missing keys: transformers\.4\.cross_attn\.to_out\.bias$"):
        GIMLightGlue(weights=missing)
    extra = {**good, "superpoint.convPc.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match=r"superpoint\.\*\).*unexpected keys: convPc\.weight$"):
        GIMLightGlue(weights=extra)


def test_exception_bad_conf():
    with pytest.raises(ConfError, match="max_keypoint"):
        GIMLightGlue({"max_keypoint": 1024}, pretrained=False)
    with pytest.raises(ConfError, match="force_num_keypoints needs max_keypoints"):
        GIMLightGlue({"max_keypoints": -1}, pretrained=False)


# ------------------------------------------------------------------------------------------------ SuperPoint


def test_feature_nms_keeps_window_maxima():
    heat = _heat_with_peaks(20, 20, {(5, 5): 0.9, (5, 7): 0.5, (5, 9): 0.8, (15, 15): 0.4})
    kept = nms_max_pool(heat, radius=3)[0]
    # (5, 7) is within 3 px of the stronger (5, 5) and (5, 9); (5, 9) is 4 px from (5, 5) and survives
    assert kept[5, 5] == 0.9 and kept[5, 9] == 0.8 and kept[15, 15] == 0.4 and kept[5, 7] == 0
    assert (kept > 0).sum() == 3


def test_feature_detection_rules(monkeypatch):
    """Border removal, threshold, top-k sorted by score, then padding to exactly max_keypoints inside the bbox."""
    sp = SuperPoint(max_keypoints=3, nms_radius=1, remove_borders=4, force_num_keypoints=True).eval()
    peaks = {(2, 10): 0.99, (10, 10): 0.5, (10, 20): 0.7, (20, 12): 0.6, (12, 30): 0.2}
    heat = _heat_with_peaks(32, 40, peaks)
    dense = torch.nn.functional.normalize(torch.randn(1, 256, 4, 5), dim=1)
    monkeypatch.setattr(sp, "dense", lambda image: (heat.clone(), dense))
    out = sp(torch.zeros(1, 1, 32, 40))[0]
    assert out.keypoints.tolist() == [[20.0, 10.0], [12.0, 20.0], [10.0, 10.0]]  # (2, 10) is in the border
    assert torch.allclose(out.scores, torch.tensor([0.7, 0.6, 0.5]))
    sp.max_keypoints = 6
    g0, g1 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    out, again = sp(torch.zeros(1, 1, 32, 40), generator=g0)[0], sp(torch.zeros(1, 1, 32, 40), generator=g1)[0]
    assert out.num_detected == 4 and len(out.keypoints) == 6 and len(out.descriptors) == 6
    assert out.keypoints[:4].tolist() == [[10.0, 10.0], [20.0, 10.0], [30.0, 12.0], [12.0, 20.0]]  # row-major
    padded = out.keypoints[4:]
    assert ((padded >= torch.tensor([10.0, 10.0])) & (padded <= torch.tensor([30.0, 20.0]))).all()
    assert out.scores[4:].tolist() == [0.0, 0.0]
    assert torch.equal(out.keypoints, again.keypoints)  # same seed, same padding
    assert torch.allclose(out.descriptors.norm(dim=1), torch.ones(6))


def test_feature_legacy_descriptor_sampling_maps_cell_centres():
    """(p − s/2 + 0.5)/(size·s − s/2 − 0.5) with align_corners: x = 3.5 samples the first cell, x = 8w − 1 the last
    (the original SuperGlue release's mapping; a centred one would reach the last cell at 8w − 4.5)."""
    dense = torch.zeros(1, 2, 3, 4)
    dense[0, 0] = torch.arange(4.0)  # channel 0 = column index, channel 1 = 1
    dense[0, 1] = 1.0
    keypoints = torch.tensor([[3.5, 3.5], [4 * 8 - 1, 3.5], [(3.5 + 31) / 2, 3.5]])
    desc = sample_descriptors_legacy(keypoints, dense)
    ratio = desc[:, 0] / desc[:, 1]  # un-normalised column coordinate
    assert torch.allclose(ratio, torch.tensor([0.0, 3.0, 1.5]), atol=1e-6)


def test_feature_gray_conversion_is_itu601():
    rgb = torch.rand(1, 3, 8, 8)
    gray = SuperPoint.to_gray(rgb)
    assert torch.allclose(gray[0, 0], 0.299 * rgb[0, 0] + 0.587 * rgb[0, 1] + 0.114 * rgb[0, 2])
    assert SuperPoint.to_gray(gray) is gray


# ------------------------------------------------------------------------------------------------ frames


def test_cardinality_exactly_2048_keypoints_in_image_frame(matcher):
    image = torch.rand(3, 75, 101)  # processed at 72×96
    features = matcher.extract(image)
    assert isinstance(features, Features) and len(features) == 2048
    assert features.descriptors.shape == (2048, 256) and features.image_size == (75, 101)
    k = features.keypoints
    assert ((k >= -0.5) & (k <= torch.tensor([101 - 0.5, 75 - 0.5]))).all()
    assert torch.equal(matcher.extract(image).keypoints, k)  # deterministic, padding included


def test_feature_keypoints_map_back_exactly(matcher, monkeypatch):
    """Detected pixel k of the squashed image → (k + 0.5)·factor − 0.5; LightGlue gets GIM's frame back."""
    from gim_plugins.models._arch.superpoint import SuperPointOutput

    raw = torch.tensor([[4.0, 4.0], [95.0, 67.0]])
    fake = SuperPointOutput(raw, torch.tensor([0.5, 0.4]), torch.nn.functional.normalize(torch.ones(2, 256)), 2)
    seen = {}
    monkeypatch.setattr(matcher.superpoint, "forward", lambda gray, generator=None: seen.setdefault("g", [fake]))
    features = matcher.extract(torch.rand(3, 75, 101))
    factor = torch.tensor([101 / 96, 75 / 72])
    assert torch.allclose(features.keypoints, (raw + 0.5) * factor - 0.5)

    captured = {}

    def fake_lightglue(data):  # type: ignore[no-untyped-def]
        captured.update(data)
        return {"matches": [torch.tensor([[0, 1]])], "scores": [torch.tensor([0.8])]}

    monkeypatch.setattr(matcher.lightglue, "forward", fake_lightglue)
    result = matcher.match_features(features, features)
    side = captured["image0"]
    assert torch.allclose(side["keypoints"][0], raw + 0.5, atol=1e-5)  # GIM's corner-convention SuperPoint output
    assert side["image_size"].tolist() == [[96, 72]]  # (w, h) of the squashed image
    assert torch.equal(result.keypoints0, features.keypoints[:1]) and torch.equal(result.keypoints1,
                                                                                 features.keypoints[1:])


def test_smoke_match_contract():
    matcher = GIMLightGlue({"max_keypoints": 256}, pretrained=False)
    result = matcher.match(torch.rand(3, 64, 80), torch.rand(3, 72, 88))
    assert result.matcher == "gim_lightglue" and result.image_size1 == (72, 88)
    assert {"total", "extract", "match"} <= set(result.timing)
    assert len(result.keypoints0) == len(result.confidence)
    assert matcher.gim_keypoint_offset == 0.5


def test_smoke_cli_match_with_synthetic_weights(tmp_path, capsys):
    ckpt = tmp_path / "synthetic_gim_lightglue.ckpt"
    torch.save({"state_dict": synthetic_state_dict("gim_lightglue_checkpoint_layout")}, ckpt)
    files = paths()
    code = main(["match", str(files["left"]), str(files["right"]), "--matcher", "gim_lightglue", "--weights",
                 str(ckpt), "--out", str(tmp_path), "--max-size", "256", "--conf", "max_keypoints=256"])
    out = capsys.readouterr().out
    assert code == 0
    assert "matcher: gim_lightglue" in out
    assert (tmp_path / "motorcycle_left_motorcycle_right_gim_lightglue_warp.png").is_file()
