"""``--protocol gluefactory``: cvg/glue-factory's ZEB evaluation (pair subsampling, 1024 px resizing, scaled cameras,
1.0 px RANSAC over all four focal lengths, rounded AUC) and its separation from GIM-protocol results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gim_plugins.zeb import cli
from gim_plugins.zeb.dataset import get_subset, load_pairs
from gim_plugins.zeb.dumps import dump_file_name, read_dump
from gim_plugins.zeb.method import build_method
from gim_plugins.zeb.metrics import evaluate_pair, pose_auc
from gim_plugins.zeb.protocols import gluefactory
from gim_plugins.zeb.protocols.gluefactory import (
    gluefactory_camera,
    gluefactory_seed,
    gluefactory_size,
    prepare_image_gluefactory,
    select_pairs_gluefactory,
)
from gim_plugins.zeb.report import check, collect, format_report
from gim_plugins.zeb.runner import RunConfig, run
from gim_plugins.zeb.store import MethodStore, StaleResultsError

GF = RunConfig(matcher="root_sift", progress=False, protocol="gluefactory")
GF_DUMP = dump_file_name("root_sift", "MiniHomography", "vanilla+gluefactory")


# ------------------------------------------------------------------------- literal transcriptions of upstream rules


def _upstream_selection(root: Path, max_per_scene: int) -> dict[str, list[str]]:
    """glue-factory's ``ZEBPairs._init`` subsampling (scene_list=None, no overlap filter), transcribed."""
    scenes = [s.name for s in root.glob("*")]
    items = {}
    for i, scene in enumerate(sorted(scenes)):
        pair_files = list((root / scene).glob("*.txt")) if (root / scene).is_dir() else []
        if max_per_scene is not None and len(pair_files) > max_per_scene:
            pair_files = sorted(pair_files, key=lambda x: x.stem)
            pair_files = np.random.RandomState(i).choice(pair_files, max_per_scene, replace=False)
        items[scene] = [p.name for p in pair_files]
    return items


def _upstream_size(h: int, w: int, side_size: int = 1024) -> tuple[int, int]:
    """glue-factory's ``ImagePreprocessor.get_new_image_size`` for side="long", transcribed."""
    aspect_ratio = w / h
    if ("long" == "short") ^ (aspect_ratio < 1.0):
        return side_size, int(side_size * aspect_ratio)
    return int(side_size / aspect_ratio), side_size


def _write_pair_files(directory: Path, stems: list[str]) -> None:
    directory.mkdir(parents=True)
    K = "500 0 320 0 500 240 0 0 1"
    T = "1 0 0 0.1 0 1 0 0 0 0 1 0 0 0 0 1"
    for stem in stems:
        _, a, b = stem.split("_")
        (directory / f"{stem}.txt").write_text(f"{a}.png {b}.png 0.5 0.4 {K} {K} {T}\n")


# ------------------------------------------------------------------------------------------------------ tests


def test_feature_pair_selection_matches_glue_factory(tmp_path: Path):
    rng = np.random.default_rng(3)
    stems = [f"s{rng.integers(0, 40)}_{rng.integers(0, 10**6)}_{rng.integers(0, 10**6)}" for _ in range(260)]
    stems = list(dict.fromkeys(stems))
    _write_pair_files(tmp_path / "gl3d", stems)
    _write_pair_files(tmp_path / "blendedmvs", stems[:150])  # below the cap: every pair
    (tmp_path / "notes.md").write_text("a file also shifts the seeds, as upstream's glob('*')\n")
    expected = _upstream_selection(tmp_path, 200)
    gl3d, blended = get_subset("gl3d"), get_subset("blendedmvs")
    assert gluefactory_seed(tmp_path, gl3d) == 1 and gluefactory_seed(tmp_path, blended) == 0
    chosen = select_pairs_gluefactory(load_pairs(tmp_path, gl3d), gluefactory_seed(tmp_path, gl3d))
    assert [p.file for p in chosen] == expected["gl3d"]  # same pairs, same order
    assert len(chosen) == 200 == len({p.file for p in chosen})
    everything = select_pairs_gluefactory(load_pairs(tmp_path, blended), gluefactory_seed(tmp_path, blended))
    assert sorted(p.file for p in everything) == sorted(expected["blendedmvs"]) and len(everything) == 150
    smaller = select_pairs_gluefactory(load_pairs(tmp_path, gl3d), 1, max_per_scene=20)
    assert [p.file for p in smaller] == _upstream_selection(tmp_path, 20)["gl3d"]
    with pytest.raises(ValueError, match="positive"):
        select_pairs_gluefactory(chosen, 0, max_per_scene=0)


@pytest.mark.parametrize("shape", [(240, 320), (480, 320), (333, 500), (500, 333), (512, 512), (1600, 1072),
                                   (376, 1241), (7, 3000)])
def test_cardinality_resize_to_long_side_1024(shape: tuple[int, int]):
    assert gluefactory_size(*shape) == _upstream_size(*shape)
    h, w = gluefactory_size(*shape)
    assert max(h, w) == 1024


def test_feature_resize_is_kornia_bilinear_antialiased_and_scales_K():
    # a 1-px checkerboard at 2048×1536: antialiasing turns it grey; plain bilinear would keep strong aliasing
    board = ((np.indices((1536, 2048)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = prepare_image_gluefactory(np.repeat(board[..., None], 3, axis=2))
    assert image.image.shape == (768, 1024, 3) and image.image.dtype == np.float32
    assert image.resized_size == (768, 1024) and image.original_size == (1536, 2048)
    assert abs(float(image.image.mean()) - 0.5) < 0.01 and float(image.image[10:-10, 10:-10].std()) < 0.05
    # upsampling (no antialias effect): a smooth ramp stays a ramp, values in [0, 1], float (not re-quantised)
    ramp = np.tile(np.linspace(0, 255, 320).astype(np.uint8)[None, :, None], (240, 1, 3))
    up = prepare_image_gluefactory(ramp)
    assert up.image.shape == (768, 1024, 3) and 0.0 <= up.image.min() and up.image.max() <= 1.0
    assert np.all(np.diff(up.image[100, :, 0]) >= -1e-6) and len(np.unique(up.image)) > 256
    from kornia.geometry.transform import resize

    reference = resize(torch.tensor(ramp.transpose(2, 0, 1) / 255.0, dtype=torch.float), (768, 1024),
                       antialias=True)
    np.testing.assert_allclose(up.image, reference.permute(1, 2, 0).numpy(), atol=1e-6)
    np.testing.assert_allclose(up.scale, [320 / 1024, 240 / 768])
    # K follows the resize: projecting with the scaled K = scaling the projected pixels by (w/W, h/H)
    K = np.array([[280.0, 0.0, 160.0], [0.0, 270.0, 120.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    points = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0]], dtype=np.float32)
    scaled = gluefactory_camera(K, up)
    project = lambda k: (points @ k.T)[:, :2] / points[:, 2:]  # noqa: E731
    np.testing.assert_allclose(project(scaled), project(K) * [1024 / 320, 768 / 240], rtol=1e-6)


def _synthetic_pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    K0 = np.array([[600.0, 0, 500.0], [0, 620.0, 380.0], [0, 0, 1]], dtype=np.float32)
    K1 = np.array([[900.0, 0, 512.0], [0, 880.0, 300.0], [0, 0, 1]], dtype=np.float32)
    angle = np.deg2rad(12.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([-0.6, 0.1, 0.05])
    T = np.eye(4, dtype=np.float32)
    T[:3, :3], T[:3, 3] = R, t
    X0 = np.c_[rng.uniform(-2, 2, (300, 2)), rng.uniform(4, 9, 300)]
    X1 = X0 @ R.T + t
    k0 = (X0 @ K0.T)[:, :2] / X0[:, 2:]
    k1 = (X1 @ K1.T)[:, :2] / X1[:, 2:]
    return k0.astype(np.float32), k1.astype(np.float32), K0, K1, T


def test_feature_pose_with_glue_factory_threshold_recovers_known_pose(monkeypatch: pytest.MonkeyPatch):
    k0, k1, K0, K1, T = _synthetic_pair()
    metrics = evaluate_pair(k0, k1, K0, K1, T, threshold=1.0, focal_rule="all")
    assert metrics.R_err < 1e-2 and metrics.t_err < 1e-2 and metrics.num_inliers > 290
    # the threshold is 1.0 px over mean(fx0, fy0, fx1, fy1) = 750 (GIM's rule: mean(fx0, fy1, fx0, fy1) = 740)
    import cv2

    seen = []
    original = cv2.findEssentialMat

    def spy(*args, **kwargs):
        seen.append(kwargs["threshold"])
        return original(*args, **kwargs)

    monkeypatch.setattr(cv2, "findEssentialMat", spy)
    evaluate_pair(k0, k1, K0, K1, T, threshold=1.0, focal_rule="all")
    evaluate_pair(k0, k1, K0, K1, T)
    assert seen == [pytest.approx(1.0 / 750.0), pytest.approx(0.5 / 740.0)]
    with pytest.raises(ValueError, match="focal_rule"):
        evaluate_pair(k0, k1, K0, K1, T, focal_rule="median")


def test_feature_auc_rounding_matches_hand_computed_values():
    # errors 1, 3, 12, failure: curve (0,0) (1,.25) (3,.5) (12,.75); at 5°: (.125 + .75 + 2·.5) / 5
    assert pose_auc([1.0, 3.0, 12.0, float("inf")], [5, 10, 20], decimals=4) == [0.375, 0.4375, 0.625]
    # one pair at 2/3°: (5 − 1/3) / 5 = 0.93333… → glue-factory rounds to 4 decimals
    assert pose_auc([2 / 3], [5], decimals=4) == [0.9333]
    assert pose_auc([2 / 3], [5])[0] == pytest.approx(14 / 15, abs=1e-15)


@pytest.fixture(scope="module")
def gf_run(tiny_zeb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gluefactory")
    run(GF, tiny_zeb, out)
    return out


def test_smoke_gluefactory_run_end_to_end(tiny_zeb: Path, gf_run: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    rows = read_dump(gf_run / GF_DUMP)
    assert len(rows) == 6 and rows[0].identifier == "astronaut#v0#v1"
    (result,) = collect(gf_run)
    assert result.protocol == "gluefactory" and result.name == "root_sift vanilla+gluefactory"
    sub = result.subsets["MiniHomography"]
    assert sub.failures == 0 and sub.auc[20.0] > 0.5 and sub.auc[5.0] > 0.2
    assert all(round(v, 4) == v for v in sub.auc.values())
    assert result.pooled(5.0) == sub.auc[5.0]  # one subset: pooled = per subset
    sidecar = MethodStore(gf_run, "root_sift", "vanilla+gluefactory").read_sidecar()
    assert sidecar is not None
    fingerprint = sidecar["fingerprint"]
    assert fingerprint["protocol"] == "gluefactory" and fingerprint["keypoint_offset"] == 0.5
    assert fingerprint["gluefactory"]["resize"] == 1024 and fingerprint["gluefactory"]["ransac_th"] == 1.0
    assert "kornia" in fingerprint["versions"]
    # the matcher sees the 1024×768 image; a capped run draws glue-factory's subset of pairs
    sizes = []
    load = gluefactory.load_image_gluefactory

    def spy(path):
        image = load(path)
        sizes.append(image.image.shape)
        return image

    monkeypatch.setattr(gluefactory, "load_image_gluefactory", spy)
    summary = run(RunConfig(matcher="root_sift", progress=False, protocol="gluefactory", max_pairs=3), tiny_zeb,
                  tmp_path)
    assert summary.subsets[0].selected == 3 and set(sizes) == {(768, 1024, 3)}
    store = MethodStore(tmp_path, "root_sift", "vanilla+gluefactory")
    assert store.read_selection("MiniHomography") == _upstream_selection(tiny_zeb, 3)["minihomography"]


def test_feature_gim_and_gluefactory_results_stay_apart(tiny_zeb: Path, gf_run: Path):
    run(RunConfig(matcher="root_sift", progress=False, max_pairs=2), tiny_zeb, gf_run)
    results = {r.name: r for r in collect(gf_run)}
    assert set(results) == {"root_sift vanilla", "root_sift vanilla+gluefactory"}
    md = format_report(list(results.values()), "md")
    gim_part, _, gf_part = md.partition("glue-factory's protocol")
    assert "vanilla+gluefactory" not in gim_part.split("Pairs, pose failures")[0]
    assert "| root_sift vanilla+gluefactory |" in gf_part and "| Method | All pairs | Mean |" in gf_part
    data = json.loads(format_report(list(results.values()), "json"))
    assert data["root_sift vanilla+gluefactory"]["protocol"] == "gluefactory"
    assert "pooled" in data["root_sift vanilla+gluefactory"] and "pooled" not in data["root_sift vanilla"]
    lines = [c.line() for c in check(gf_run)]  # 2 GIM pairs vs 6 glue-factory pairs: not compared
    assert lines == ["MiniHomography: only one dump, nothing to compare (1 file(s))",
                     "MiniHomography (gluefactory): only one dump, nothing to compare (1 file(s))"]


def test_exception_protocols_never_mix(tiny_zeb: Path, gf_run: Path):
    gim_fingerprint = build_method(RunConfig(matcher="root_sift"), "cpu").fingerprint
    with pytest.raises(StaleResultsError, match="protocol: 'gluefactory' -> 'gim'"):
        MethodStore(gf_run, "root_sift", "vanilla+gluefactory").open(gim_fingerprint, {})
    other = RunConfig(matcher="root_sift", progress=False, protocol="gluefactory", conf={"ratio_threshold": 0.7})
    with pytest.raises(StaleResultsError, match="ratio_threshold"):
        run(other, tiny_zeb, gf_run)
    with pytest.raises(ValueError, match="reserved"):
        run(RunConfig(matcher="root_sift", version="vanilla+gluefactory", progress=False), tiny_zeb, gf_run)
    with pytest.raises(ValueError, match="protocol must be one of"):
        run(RunConfig(matcher="root_sift", protocol="hpatches", progress=False), tiny_zeb, gf_run)
    with pytest.raises(ValueError, match="--rescale"):
        run(RunConfig(matcher="root_sift", protocol="gluefactory", rescale="canvas", progress=False), tiny_zeb,
            gf_run)


def test_smoke_cli_protocol_flag(tiny_zeb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["run", "--matcher", "root_sift", "--data", str(tiny_zeb), "--out", str(tmp_path),
                     "--protocol", "gluefactory", "--max-pairs", "2", "--no-progress"]) == 0
    assert "vanilla+gluefactory" in capsys.readouterr().out and (tmp_path / GF_DUMP).is_file()
    assert cli.main(["report", str(tmp_path)]) == 0
    assert "glue-factory's protocol" in capsys.readouterr().out
