"""Exported graphs vs PyTorch on the motorcycle pair: checker, standard operators, manifest, and parity.

aliked_lightglue runs with its real offline weights (skipped when ``gim weights fetch aliked_lightglue`` has not run);
gim_lightglue and gim_loftr with synthetic checkpoints (``onnx_fixtures``, exported once per session). Both sides run
every LightGlue layer (the graphs cannot prune).
"""

from __future__ import annotations

import pytest
import torch

from gim_plugins.datasets.motorcycle import paths
from gim_plugins.matching import load_matcher, match_pair
from gim_plugins.types import MatchResult

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed")

from onnx_fixtures import SIZE, shared_matches, torch_twin  # noqa: E402

PAIR = paths()


def _one_to_one(k_torch: torch.Tensor, k_onnx: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Index of each PyTorch keypoint among the ONNX ones (nearest) and the largest distance."""
    distance, index = torch.cdist(k_torch.double(), k_onnx.double()).min(1)
    assert len(set(index.tolist())) == len(index), "two keypoints map to the same one"
    return index, float(distance.max())


# ------------------------------------------------------------------------------------------------ the graphs


@pytest.mark.parametrize("export", ["aliked_export", "glg_export", "loftr_export"])
def test_feature_graphs_pass_the_checker_with_standard_operators_only(request, export):
    from gim_plugins.export.runtime import create_session

    directory = request.getfixturevalue(export)
    manifest = load_matcher(_name(export), backend="onnxruntime", onnx=directory).manifest
    for graph in manifest["graphs"].values():
        path = directory / graph["file"]
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        domains = {node.domain for node in model.graph.node}
        assert domains <= {"", "ai.onnx"}, f"{path.name} uses custom operator domains {domains}"
        assert {opset.domain for opset in model.opset_import} <= {"", "ai.onnx"}
        assert create_session(path) is not None


def _name(export: str) -> str:
    return {"aliked_export": "aliked_lightglue", "glg_export": "gim_lightglue", "loftr_export": "gim_loftr"}[export]


def test_cardinality_manifest_of_a_sparse_export(glg_export):
    import json

    manifest = json.loads((glg_export / "manifest.json").read_text())
    assert manifest["matcher"] == "gim_lightglue" and manifest["opset"] == 18 and manifest["dynamic"] is True
    assert manifest["image_size"] is None
    assert manifest["conf"]["depth_confidence"] == -1.0 and manifest["conf"]["width_confidence"] == -1.0
    assert set(manifest["graphs"]) == {"extractor", "matcher"}
    extractor, matcher = manifest["graphs"]["extractor"], manifest["graphs"]["matcher"]
    assert [(v["name"], v["dtype"], v["shape"]) for v in extractor["inputs"]] == [
        ("image", "float32", [1, 1, "height", "width"])]
    assert [v["name"] for v in extractor["outputs"]] == ["keypoints", "scores", "descriptors", "dense_descriptors"]
    assert extractor["outputs"][2]["shape"] == ["num_keypoints", 256]
    assert [v["name"] for v in matcher["inputs"]] == ["keypoints0", "keypoints1", "descriptors0", "descriptors1",
                                                      "image_size0", "image_size1"]
    assert matcher["inputs"][0]["shape"] == [1, "num_keypoints0", 2]
    assert matcher["inputs"][4]["dtype"] == "int64"
    assert [(v["name"], v["dtype"]) for v in matcher["outputs"]] == [("matches", "int64"), ("scores", "float32")]
    assert matcher["dynamic_axes"]["descriptors1"] == {"1": "num_keypoints1"}
    assert len(manifest["weights"]["state_sha256"]) == 64 and manifest["weights"]["files"] == {}
    assert manifest["processing"]["extractor"]["nms_radius"] == 3
    assert {"torch", "onnx", "onnxruntime", "gim_plugins"} <= set(manifest["versions"])


def test_feature_manifest_records_weight_files(aliked_export):
    import json

    from gim_plugins.export.manifest import file_sha256
    from gim_plugins.weights import WEIGHTS, resolve_weights

    weights = json.loads((aliked_export / "manifest.json").read_text())["weights"]
    for name in ("aliked_lightglue", "aliked_n16"):
        assert weights["files"][name] == file_sha256(resolve_weights(name)) == WEIGHTS[name].sha256


# ------------------------------------------------------------------------------------------------- parity


def test_feature_superpoint_keypoints_identical_descriptors_within_1e4(glg_export):
    onnx_matcher = load_matcher("gim_lightglue", backend="onnxruntime", onnx=glg_export)
    torch_matcher = torch_twin(onnx_matcher)
    for image in (PAIR["left"], PAIR["right"]):
        ft, fo = torch_matcher.extract(image), onnx_matcher.extract(image)
        assert len(ft) == len(fo) == 2048
        # the same keypoints, bit for bit; their order may differ only among near-equal scores
        assert sorted(map(tuple, ft.keypoints.tolist())) == sorted(map(tuple, fo.keypoints.tolist()))
        index, distance = _one_to_one(ft.keypoints, fo.keypoints)
        assert distance == 0.0
        assert torch.allclose(ft.descriptors, fo.descriptors[index], atol=1e-4, rtol=0)
        assert torch.allclose(ft.scores, fo.scores[index], atol=1e-6, rtol=0)


def test_feature_dynamic_superpoint_graph_at_another_size(glg_export):
    """--dynamic: the graph traced at 480×640 gives PyTorch's keypoints at 250×370 (squashed to 248×368)."""
    import torch.nn.functional as F

    from gim_plugins.io import to_image_tensor

    image = F.interpolate(to_image_tensor(PAIR["left"])[None], size=(250, 370), mode="area")[0]
    onnx_matcher = load_matcher("gim_lightglue", backend="onnxruntime", onnx=glg_export)
    ft, fo = torch_twin(onnx_matcher).extract(image), onnx_matcher.extract(image)
    assert fo.image_size == (250, 370)
    assert sorted(map(tuple, ft.keypoints.tolist())) == sorted(map(tuple, fo.keypoints.tolist()))
    index, _ = _one_to_one(ft.keypoints, fo.keypoints)
    assert torch.allclose(ft.descriptors, fo.descriptors[index], atol=1e-4, rtol=0)


def test_feature_aliked_keypoints_and_descriptors(aliked_export):
    onnx_matcher = load_matcher("aliked_lightglue", backend="onnxruntime", onnx=aliked_export)
    torch_matcher = torch_twin(onnx_matcher)
    for image in (PAIR["left"], PAIR["right"]):
        ft, fo = torch_matcher.extract(image), onnx_matcher.extract(image)
        assert len(ft) == len(fo) == 2048
        index, distance = _one_to_one(ft.keypoints, fo.keypoints)
        assert distance < 1e-4  # sub-pixel (soft-argmax) keypoints: float rounding only
        assert torch.allclose(ft.descriptors, fo.descriptors[index], atol=1e-4, rtol=0)


@pytest.mark.parametrize("export", ["aliked_export", "glg_export"])
def test_feature_sparse_matches_99_percent_identical(request, export):
    onnx_matcher = load_matcher(_name(export), backend="onnxruntime", onnx=request.getfixturevalue(export))
    torch_matcher = torch_twin(onnx_matcher)
    rt, ro = torch_matcher.match(PAIR["left"], PAIR["right"]), onnx_matcher.match(PAIR["left"], PAIR["right"])
    assert isinstance(ro, MatchResult) and ro.image_size0 == rt.image_size0
    assert len(rt) > 100
    shared = shared_matches(rt, ro, 1e-3)
    assert shared >= 0.99 * max(len(rt), len(ro)), (shared, len(rt), len(ro))


def test_feature_loftr_matches_identical_within_1e3_px(loftr_export):
    onnx_matcher = load_matcher("gim_loftr", backend="onnxruntime", onnx=loftr_export)
    torch_matcher = torch_twin(onnx_matcher)
    rt, ro = torch_matcher.match(PAIR["left"], PAIR["right"]), onnx_matcher.match(PAIR["left"], PAIR["right"])
    assert len(rt) > 50 and len(ro) == len(rt)
    assert shared_matches(rt, ro, 1e-3) == len(rt)
    assert shared_matches(ro, rt, 1e-3) == len(ro)


def test_feature_loftr_masks_are_graph_inputs(loftr_export):
    onnx_matcher = load_matcher("gim_loftr", backend="onnxruntime", onnx=loftr_export)
    torch_matcher = torch_twin(onnx_matcher)
    mask = torch.ones(*SIZE, dtype=torch.bool)
    mask[:, 370:] = False
    rt = torch_matcher.match(PAIR["left"], PAIR["right"], mask0=mask)
    ro = onnx_matcher.match(PAIR["left"], PAIR["right"], mask0=mask)
    assert len(ro) == len(rt) and shared_matches(rt, ro, 1e-3) == len(rt)
    assert len(ro) and float(ro.keypoints0[:, 0].max()) < 370
    nothing = onnx_matcher.match(PAIR["left"], PAIR["right"], mask0=torch.zeros(*SIZE, dtype=torch.bool))
    assert len(nothing) == 0 and nothing.keypoints0.shape == (0, 2)


# ------------------------------------------------------------------------------------- as a matcher everywhere


def test_smoke_onnx_matcher_through_the_public_api(glg_export):
    from gim_plugins.models.base import SparseMatcher

    matcher = load_matcher("gim_lightglue", backend="onnxruntime", onnx=glg_export, padding_seed=3)
    assert isinstance(matcher, SparseMatcher) and matcher.name == "gim_lightglue"
    assert matcher.weights_id.startswith("onnx:")
    result = match_pair(matcher, PAIR["left"], PAIR["right"], max_size=400)
    assert result.image_size0 == SIZE and len(result) > 0
    assert float(result.keypoints0[:, 0].max()) <= SIZE[1] - 0.5
