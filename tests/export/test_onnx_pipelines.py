"""The onnxruntime backend through the pipelines: ``gim match --onnx DIR``, kornia's ``GIMMatcher`` and the hloc
adapter's conf — each gives what ``load_matcher(NAME, backend="onnxruntime", onnx=DIR)`` gives directly."""

from __future__ import annotations

import re

import pytest
import torch

from gim_plugins.cli import main
from gim_plugins.datasets.motorcycle import paths
from gim_plugins.matching import load_matcher, match_pair

pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

PAIR = paths()


def test_feature_gim_match_runs_the_exported_graphs(glg_export, tmp_path, capsys):
    """No --matcher: the manifest names it; the printed count is the backend's own on the same downscaled pair."""
    status = main(["match", str(PAIR["left"]), str(PAIR["right"]), "--onnx", str(glg_export),
                   "--out", str(tmp_path), "--max-size", "400"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "matcher: gim_lightglue" in out.splitlines()
    printed = int(re.search(r"^matches: (\d+)$", out, re.M).group(1))
    expected = match_pair(load_matcher("gim_lightglue", backend="onnxruntime", onnx=glg_export),
                          PAIR["left"], PAIR["right"], max_size=400)
    assert printed == len(expected) > 0
    pictures = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pictures == ["motorcycle_left_motorcycle_right_gim_lightglue_match.png",
                        "motorcycle_left_motorcycle_right_gim_lightglue_warp.png"]


def test_exception_gim_match_with_another_matchers_export(glg_export, tmp_path, capsys):
    status = main(["match", str(PAIR["left"]), str(PAIR["right"]), "--onnx", str(glg_export),
                   "--matcher", "aliked_lightglue", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "holds an export of 'gim_lightglue', not 'aliked_lightglue'" in err[0]
    assert not list(tmp_path.glob("*.png"))


def test_feature_kornia_gim_matcher_on_the_onnx_backend(loftr_export):
    pytest.importorskip("kornia")
    from gim_plugins.io import read_image, to_image_tensor
    from gim_plugins.kornia_ext import GIMMatcher

    module = GIMMatcher("gim_loftr", backend="onnxruntime", onnx=loftr_export)
    assert module.matcher.backend == "onnxruntime"
    image0, image1 = (to_image_tensor(read_image(PAIR[side]))[None] for side in ("left", "right"))
    out = module({"image0": image0, "image1": image1})
    direct = load_matcher("gim_loftr", backend="onnxruntime", onnx=loftr_export).match(image0[0], image1[0])
    assert len(direct) > 50
    assert torch.equal(out["keypoints0"], direct.keypoints0) and torch.equal(out["keypoints1"], direct.keypoints1)
    assert torch.equal(out["confidence"], direct.confidence)
    assert torch.equal(out["batch_indexes"], torch.zeros(len(direct), dtype=out["batch_indexes"].dtype))


def test_feature_hloc_conf_selects_the_onnx_backend(glg_export):
    pytest.importorskip("hloc")
    from gim_plugins.export.runtime import OnnxGIMLightGlue
    from gim_plugins.hloc_ext.matchers import build_matcher

    conf = {"name": "gim_plugins_sparse", "matcher": "gim_lightglue", "backend": "onnxruntime",
            "onnx": str(glg_export)}
    matcher = build_matcher(conf, None, sparse=True)
    assert isinstance(matcher, OnnxGIMLightGlue) and matcher.onnx_dir == glg_export
    features = matcher.extract(PAIR["left"])
    direct = load_matcher("gim_lightglue", backend="onnxruntime", onnx=glg_export).extract(PAIR["left"])
    assert torch.equal(features.keypoints, direct.keypoints)
    assert torch.equal(features.descriptors, direct.descriptors)
