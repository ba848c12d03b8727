"""Exported graphs vs PyTorch on the motorcycle pair: checker, standard operators, manifest, and parity.

aliked_lightglue runs with its real offline weights (skipped when ``gim weights fetch aliked_lightglue`` has not run);
gim_lightglue and gim_loftr with synthetic checkpoints built from ``tests/fixtures/manifests``. Both sides run every
LightGlue layer (the graphs cannot prune). Each matcher is exported once per session (tens of seconds each).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gim_plugins.datasets.motorcycle import paths
from gim_plugins.matching import load_matcher, match_pair, weights_available
from gim_plugins.types import MatchResult

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from _ll_synthetic import synthetic_state_dict  # noqa: E402

GLG_WEIGHTS = ("gim_lightglue_checkpoint_layout", 1)
LOFTR_WEIGHTS = ("gim_loftr", 3)
PAIR = paths()
SIZE = (500, 741)  # the motorcycle pair; GIM's squash to multiples of 8 gives 496 × 736


def _export(tmp_path_factory: pytest.TempPathFactory, name: str, **conf: object) -> Path:
    from gim_plugins.export.onnx_export import main

    out = tmp_path_factory.mktemp(name) / "export"
    main({"matcher": name, **conf}, out)
    return out


@pytest.fixture(scope="session")
def aliked_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not weights_available("aliked_lightglue"):
        pytest.skip("aliked_lightglue weights are not installed (gim weights fetch aliked_lightglue)")
    return _export(tmp_path_factory, "aliked_lightglue", size=SIZE)


@pytest.fixture(scope="session")
def glg_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dynamic height and width; filter threshold 0 so that random LightGlue weights still give matches."""
    weights = synthetic_state_dict(GLG_WEIGHTS[0], seed=GLG_WEIGHTS[1])
    return _export(tmp_path_factory, "gim_lightglue", weights=weights, matcher_conf={"filter_threshold": 0.0},
                   dynamic=True)


@pytest.fixture(scope="session")
def loftr_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory, "gim_loftr", weights=synthetic_state_dict(LOFTR_WEIGHTS[0], seed=LOFTR_WEIGHTS[1]),
                   size=(496, 736))


def _torch_twin(onnx_matcher):  # type: ignore[no-untyped-def]
    """The PyTorch matcher with the exported conf and weights (every LightGlue layer)."""
    name = onnx_matcher.name
    conf = dict(onnx_matcher.manifest["conf"])
    if name == "aliked_lightglue":
        return load_matcher(name, **conf)
    weights = {"gim_lightglue": GLG_WEIGHTS, "gim_loftr": LOFTR_WEIGHTS}[name]
    return load_matcher(name, weights=synthetic_state_dict(weights[0], seed=weights[1]), **conf)


def _one_to_one(k_torch: torch.Tensor, k_onnx: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Index of each PyTorch keypoint among the ONNX ones (nearest) and the largest distance."""
    distance, index = torch.cdist(k_torch.double(), k_onnx.double()).min(1)
    assert len(set(index.tolist())) == len(index), "two keypoints map to the same one"
    return index, float(distance.max())


def _match_rows(result: MatchResult) -> torch.Tensor:
    return torch.cat([result.keypoints0, result.keypoints1], 1).double()


def _shared_matches(a: MatchResult, b: MatchResult, tolerance: float) -> int:
    """How many matches of ``a`` have a match of ``b`` within ``tolerance`` px in all four coordinates."""
    if len(a) == 0 or len(b) == 0:
        return 0
    distance = torch.cdist(_match_rows(a), _match_rows(b), p=float("inf")).min(1).values
    return int((distance <= tolerance).sum())


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
    torch_matcher = _torch_twin(onnx_matcher)
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
    ft, fo = _torch_twin(onnx_matcher).extract(image), onnx_matcher.extract(image)
    assert fo.image_size == (250, 370)
    assert sorted(map(tuple, ft.keypoints.tolist())) == sorted(map(tuple, fo.keypoints.tolist()))
    index, _ = _one_to_one(ft.keypoints, fo.keypoints)
    assert torch.allclose(ft.descriptors, fo.descriptors[index], atol=1e-4, rtol=0)


def test_feature_aliked_keypoints_and_descriptors(aliked_export):
    onnx_matcher = load_matcher("aliked_lightglue", backend="onnxruntime", onnx=aliked_export)
    torch_matcher = _torch_twin(onnx_matcher)
    for image in (PAIR["left"], PAIR["right"]):
        ft, fo = torch_matcher.extract(image), onnx_matcher.extract(image)
        assert len(ft) == len(fo) == 2048
        index, distance = _one_to_one(ft.keypoints, fo.keypoints)
        assert distance < 1e-4  # sub-pixel (soft-argmax) keypoints: float rounding only
        assert torch.allclose(ft.descriptors, fo.descriptors[index], atol=1e-4, rtol=0)


@pytest.mark.parametrize("export", ["aliked_export", "glg_export"])
def test_feature_sparse_matches_99_percent_identical(request, export):
    onnx_matcher = load_matcher(_name(export), backend="onnxruntime", onnx=request.getfixturevalue(export))
    torch_matcher = _torch_twin(onnx_matcher)
    rt, ro = torch_matcher.match(PAIR["left"], PAIR["right"]), onnx_matcher.match(PAIR["left"], PAIR["right"])
    assert isinstance(ro, MatchResult) and ro.image_size0 == rt.image_size0
    assert len(rt) > 100
    shared = _shared_matches(rt, ro, 1e-3)
    assert shared >= 0.99 * max(len(rt), len(ro)), (shared, len(rt), len(ro))


def test_feature_loftr_matches_identical_within_1e3_px(loftr_export):
    onnx_matcher = load_matcher("gim_loftr", backend="onnxruntime", onnx=loftr_export)
    torch_matcher = _torch_twin(onnx_matcher)
    rt, ro = torch_matcher.match(PAIR["left"], PAIR["right"]), onnx_matcher.match(PAIR["left"], PAIR["right"])
    assert len(rt) > 50 and len(ro) == len(rt)
    assert _shared_matches(rt, ro, 1e-3) == len(rt)
    assert _shared_matches(ro, rt, 1e-3) == len(ro)


def test_feature_loftr_masks_are_graph_inputs(loftr_export):
    onnx_matcher = load_matcher("gim_loftr", backend="onnxruntime", onnx=loftr_export)
    torch_matcher = _torch_twin(onnx_matcher)
    mask = torch.ones(*SIZE, dtype=torch.bool)
    mask[:, 370:] = False
    rt = torch_matcher.match(PAIR["left"], PAIR["right"], mask0=mask)
    ro = onnx_matcher.match(PAIR["left"], PAIR["right"], mask0=mask)
    assert len(ro) == len(rt) and _shared_matches(rt, ro, 1e-3) == len(rt)
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
