"""The page's downloads: CSV and NPZ give every match back exactly; the PNGs are the pictures shown."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gim_plugins.app.export import CSV_HEADER, read_matches, write_downloads
from gim_plugins.app.run import AppResult


def _result(n: int, model: np.ndarray | None) -> AppResult:
    rng = np.random.default_rng(n)
    k0 = (rng.random((n, 2)) * [4000, 3000]).astype(np.float32)
    k0[:1] = [[1 / 3, 12345.678]] if n else k0[:1]
    k1 = (k0 + rng.normal(0, 5, (n, 2))).astype(np.float32)
    return AppResult(
        matcher="app_test_grid", keypoints0=k0, keypoints1=k1, confidence=rng.random(n).astype(np.float32),
        inliers=rng.random(n) > 0.3, robust="homography", threshold=2.5, model=model, image_size0=(3000, 4000),
        image_size1=(2999, 4001), match_picture=rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        warp_picture=rng.integers(0, 256, (10, 45, 3), dtype=np.uint8), timing={"match": 1.0},
        conf={"dx": 2.0, "size": [4, 4], "extra": None}, weights="none",
    )


@pytest.mark.parametrize(("n", "model"), [(257, np.diag([1.0, 2.0, 1.0])), (0, None)])
def test_feature_csv_and_npz_round_trip(tmp_path, n, model):
    result = _result(n, model)
    csv, npz, match_png, warp_png = write_downloads(result, tmp_path / "out")
    assert [p.name for p in (csv, npz, match_png, warp_png)] == [
        "app_test_grid_matches.csv", "app_test_grid_matches.npz", "app_test_grid_match.png", "app_test_grid_warp.png"]
    assert csv.read_text().splitlines()[0] == CSV_HEADER and len(csv.read_text().splitlines()) == n + 1
    for path in (csv, npz):
        back = read_matches(path)
        for key in ("keypoints0", "keypoints1", "confidence"):
            assert back[key].dtype == np.float32
            np.testing.assert_array_equal(back[key], getattr(result, key))  # bit-exact float32
        np.testing.assert_array_equal(back["inliers"], result.inliers)
    back = read_matches(npz)
    assert back["robust"] == "homography" and back["threshold"] == 2.5 and back["matcher"] == "app_test_grid"
    assert back["conf"] == {"dx": 2.0, "size": [4, 4], "extra": None} and back["weights"] == "none"
    assert tuple(back["image_size0"]) == (3000, 4000) and tuple(back["image_size1"]) == (2999, 4001)
    if model is None:
        assert back["model"] is None
    else:
        np.testing.assert_array_equal(back["model"], model)
    for png, picture in ((match_png, result.match_picture), (warp_png, result.warp_picture)):
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB), picture)


def test_exception_read_matches_rejects_other_files(tmp_path):
    bad = tmp_path / "other.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="expected the header 'x0,y0,x1,y1,confidence,inlier'"):
        read_matches(bad)
    with pytest.raises(ValueError, match=r"expected a \.csv or \.npz file"):
        read_matches(tmp_path / "matches.txt")
