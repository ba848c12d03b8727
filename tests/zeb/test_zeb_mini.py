"""ZEB-mini: the folded-card ground truth is exact, the real stereo pair is calibrated, the folder is written
atomically and idempotently; an oracle matcher gets ~0° errors through the whole runner chain."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest
import torch
from zeb_helpers import write_tiny_subset

from gim_plugins.models.base import BaseMatcher
from gim_plugins.registry import register_matcher, unregister_matcher
from gim_plugins.types import MatchResult
from gim_plugins.zeb.dataset import find_subsets, get_subset, load_pairs
from gim_plugins.zeb.metrics import essential_from_pose, symmetric_epipolar_distance
from gim_plugins.zeb.mini import FoldedCard, View, look_at, middlebury_pair, relative_transform, write_mini
from gim_plugins.zeb.runner import RunConfig, run
from gim_plugins.zeb.store import MethodStore


def _gt_matches(pair, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Exact correspondences of a folded-card pair: grid points inside a half of image 0, through its homography."""
    k0s, k1s = [], []
    for half in ("left", "right"):
        outline = np.asarray(pair.extra["outline0"][half], np.float32)
        H = np.asarray(pair.extra["homographies_0to1"][half])
        ys, xs = np.mgrid[0:480:step, 0:640:step]
        grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
        inside = np.array([cv2.pointPolygonTest(outline, (float(x), float(y)), True) > 2 for x, y in grid])
        k0 = grid[inside]
        mapped = np.c_[k0, np.ones(len(k0))] @ H.T
        k1 = mapped[:, :2] / mapped[:, 2:]
        keep = (k1 >= 0).all(1)
        k0s.append(k0[keep])
        k1s.append(k1[keep])
    return np.concatenate(k0s), np.concatenate(k1s)


def test_feature_folded_card_ground_truth_is_exact(tmp_path: Path):
    pairs, images = write_tiny_subset(tmp_path, "minihomography", photos=("chelsea",), size=(240, 320))
    for pair in pairs:
        k0, k1 = _gt_matches(pair)
        assert len(k0) > 300
        inside = (k1[:, 0] < 319) & (k1[:, 1] < 239)
        k0, k1 = k0[inside], k1[inside]
        # the homographies agree with the pose: epipolar distance ~0 for every correspondence
        d = symmetric_epipolar_distance(k0, k1, essential_from_pose(pair.T_0to1), pair.K0, pair.K1)
        assert float(np.max(d)) < 1e-8
        # and with the renders: the colour at k0 in image 0 is the colour at k1 in image 1
        im0 = images[f"{pair.scene}-{pair.name0}"].astype(np.float32)
        im1 = images[f"{pair.scene}-{pair.name1}"].astype(np.float32)
        c0 = cv2.remap(im0, k0[:, 0:1].astype(np.float32), k0[:, 1:2].astype(np.float32), cv2.INTER_LINEAR)
        c1 = cv2.remap(im1, k1[:, 0:1].astype(np.float32), k1[:, 1:2].astype(np.float32), cv2.INTER_LINEAR)
        err = np.abs(c0 - c1).mean()
        shuffled = np.abs(c0 - c1[np.random.default_rng(0).permutation(len(c1))]).mean()
        assert err < 8.0 and shuffled > 4 * err
        assert 0.2 < pair.covisible0 <= 1.0 and 0.2 < pair.covisible1 <= 1.0


def test_cardinality_folded_card_geometry():
    card = FoldedCard(np.zeros((100, 200, 3), np.uint8), fold_deg=30.0)
    # both ends of the card come 0.5·sin(30°) = 0.25 m towards a camera on the −z side; the fold stays at z = 0
    left_end = card.half_matrix(-1) @ [-0.5, 49.5, 1]
    right_end = card.half_matrix(1) @ [199.5, 49.5, 1]
    fold = card.half_matrix(1) @ [99.5, 49.5, 1]
    np.testing.assert_allclose(left_end, [-0.5 * np.cos(np.pi / 6), 0, -0.25], atol=1e-12)
    np.testing.assert_allclose(right_end, [0.5 * np.cos(np.pi / 6), 0, -0.25], atol=1e-12)
    np.testing.assert_allclose(fold, [0, 0, 0], atol=1e-12)
    R, t = look_at(np.array([0.0, 0.0, -2.0]), np.zeros(3), 0.0)
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(t, [0, 0, 2.0])
    view = View(np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]), R, t)
    image, depth, side = card.render(view, (80, 100))
    assert image.shape == (80, 100, 3) and side[40, 60] == 1 and side[40, 40] == -1
    assert depth[40, 50] == pytest.approx(2.0, abs=0.02)
    T = relative_transform(view, View(view.K, R, t + np.array([0.1, 0, 0])))
    np.testing.assert_allclose(T[:3, 3], [0.1, 0, 0], atol=1e-12)


def test_feature_middlebury_pair_is_calibrated():
    images: dict[str, np.ndarray] = {}
    pair = middlebury_pair(images)
    assert images["motorcycle-left"].shape == (500, 741, 3)
    assert pair.T_0to1[0, 3] == pytest.approx(-0.193001) and np.allclose(pair.T_0to1[:3, :3], np.eye(3))
    assert pair.K1[0, 2] - pair.K0[0, 2] == pytest.approx(31.086)
    assert 0.6 < pair.covisible0 < 1.0


def test_feature_write_mini_layout_atomic_and_idempotent(tmp_path: Path):
    out = tmp_path / "zeb_mini"
    summary = write_mini(out, photos=("chelsea",), include_rendered=False)
    assert summary.created and summary.pairs == {"MiniScene": 1, "MiniHomography": 3}
    assert [s.key for s in find_subsets(out)] == ["MiniScene", "MiniHomography"]
    ids = [p.identifier for p in load_pairs(out, get_subset("MiniHomography"))]
    assert ids == ["chelsea#v0#v1", "chelsea#v0#v2", "chelsea#v0#v3"]
    assert [p.identifier for p in load_pairs(out, get_subset("MiniScene"))] == ["motorcycle#left#right"]
    meta = json.loads((out / "mini.json").read_text())
    assert set(meta["homographies"]) == {"chelsea-v0-v1", "chelsea-v0-v2", "chelsea-v0-v3"}
    assert not write_mini(out, photos=("chelsea",), include_rendered=False).created
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_mini(out, photos=("coffee",), include_rendered=False)
    assert write_mini(out, photos=("coffee",), include_rendered=False, overwrite=True).created
    assert not [p for p in tmp_path.iterdir() if p.name != "zeb_mini"]  # no temporary folder left


class _Oracle(BaseMatcher):
    """Returns the exact correspondences of a known pair (looked up by image content)."""

    name: ClassVar[str] = "zeb_test_oracle"
    default_conf: ClassVar[dict[str, Any]] = {}
    table: ClassVar[dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]] = {}

    def _init(self, conf: Any) -> None:
        pass

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        k0, k1 = self.table[(_digest(image0), _digest(image1))]
        return self._result(torch.from_numpy(k0), torch.from_numpy(k1), torch.ones(len(k0)), image0, image1)


def _digest(image: torch.Tensor | np.ndarray) -> str:
    if isinstance(image, torch.Tensor):
        image = (image.permute(1, 2, 0) * 255).round().byte().numpy()
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_feature_oracle_matches_give_zero_error_through_the_runner(tmp_path: Path):
    """322×242 images are floored to 320×240 (scale ≠ 1); exact matches must come back as ~0° errors, which needs
    the resize, the keypoint mapping, K, T and the pose protocol all to be right."""
    data = tmp_path / "zeb"
    pairs, images = write_tiny_subset(data, "minihomography", photos=("astronaut",), size=(242, 322))
    scale = np.array([322 / 320, 242 / 240], np.float32)
    for pair in pairs:
        k0, k1 = _gt_matches(pair)
        keep = (k1[:, 0] < 321) & (k1[:, 1] < 241)
        resized = [cv2.resize(images[f"{pair.scene}-{n}"], (320, 240)) for n in (pair.name0, pair.name1)]
        key = (_digest(resized[0]), _digest(resized[1]))
        _Oracle.table[key] = ((k0[keep] / scale).astype(np.float32), (k1[keep] / scale).astype(np.float32))
    register_matcher("zeb_test_oracle", _Oracle, overwrite=True)
    try:
        run(RunConfig(matcher="zeb_test_oracle", progress=False), data, tmp_path / "out")
    finally:
        unregister_matcher("zeb_test_oracle")
    records = MethodStore(tmp_path / "out", "zeb_test_oracle", "vanilla").selected_records("MiniHomography")
    assert len(records) == 3
    for record in records:
        assert max(record.row.R_err, record.row.t_err) < 0.1
        assert record.row.bef_prec == 1.0 and record.row.aft_num > 0.95 * record.num_matches
